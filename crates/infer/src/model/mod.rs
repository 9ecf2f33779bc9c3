//! Model definition: hyper-parameters, weights of a layer range, and the forward pass of the
//! llama family; and the BERT-class encoder ([`bert`]) that shares their kernels.

mod attention;
pub(crate) mod bert;
pub(crate) mod config;
pub(crate) mod info;
mod ops;
pub(crate) mod shard;
mod weights;
