//! Model definition: hyper-parameters, weights of a layer range, and the forward pass of the
//! llama family; and the BERT-class encoder ([`bert`]) that shares their kernels.

mod attention;
pub mod bert;
pub mod config;
pub mod info;
mod ops;
pub mod shard;
mod weights;
