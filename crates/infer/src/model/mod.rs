//! Model definition: hyper-parameters, weights of a layer range, and the forward pass.

mod attention;
pub mod config;
pub mod info;
mod ops;
pub mod shard;
mod weights;
