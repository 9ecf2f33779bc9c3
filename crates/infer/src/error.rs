//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong loading a model, tokenizing, or running it.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// Reading the model file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A safetensors, vocabulary or encoder weights file is malformed.
    #[error("bad model file {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is not a GGUF file this reader understands.
    #[error("not a gguf file: {0}")]
    BadMagic(String),
    /// The GGUF is truncated, corrupt or hostile.
    #[error("malformed gguf at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset where reading failed.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A tensor uses a quantization type this engine does not implement.
    #[error("tensor {name}: unsupported tensor type {type_id}")]
    UnsupportedType {
        /// Tensor name.
        name: String,
        /// The GGML type number.
        type_id: u32,
    },
    /// A tensor the architecture needs is absent.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// A tensor has the wrong shape for the model's hyper-parameters.
    #[error("tensor {name}: shape {actual:?}, expected {expected:?}")]
    BadShape {
        /// Tensor name.
        name: String,
        /// Shape in the file (GGUF order, innermost first).
        actual: Vec<u64>,
        /// Shape the architecture expects.
        expected: Vec<u64>,
    },
    /// A metadata key is missing or has the wrong type or value.
    #[error("metadata {key}: {reason}")]
    BadMetadata {
        /// The key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The architecture is not one this engine runs.
    #[error("unsupported architecture {0:?}")]
    UnsupportedArch(String),
    /// The tokenizer metadata does not fit the model or itself.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A layer range outside the model.
    #[error("layer range {start}..{end} invalid for a model of {n_layers} layers")]
    BadLayerRange {
        /// First layer.
        start: usize,
        /// One past the last layer.
        end: usize,
        /// Layers in the model.
        n_layers: usize,
    },
    /// The prompt plus cached tokens do not fit the context.
    #[error("{needed} tokens exceed the context length of {context} tokens")]
    ContextFull {
        /// Positions needed.
        needed: usize,
        /// The context length.
        context: usize,
    },
    /// The input does not fit the shard (tokens to a middle shard, wrong hidden size, bad id).
    #[error("bad input: {0}")]
    BadInput(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, InferError>;

pub(crate) fn malformed(offset: u64, reason: impl Into<String>) -> InferError {
    InferError::Malformed { offset, reason: reason.into() }
}

pub(crate) fn bad_meta(key: &str, reason: impl Into<String>) -> InferError {
    InferError::BadMetadata { key: key.to_string(), reason: reason.into() }
}
