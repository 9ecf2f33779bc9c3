//! The validator's one error type.

use thiserror::Error;

/// Everything that can stop the validator or one of its duties.
#[derive(Debug, Error)]
pub enum ValidatorError {
    /// The chain node refused or could not be reached.
    #[error("chain: {0}")]
    Chain(String),
    /// The data directory could not be read or written.
    #[error("data directory {path}: {reason}")]
    Disk {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No local GGUF matches the model's on-chain artifact hash.
    #[error("no local model file has artifact hash {0} (see `polylink models list`)")]
    NoModel(String),
    /// The evaluators failed (or could not be loaded).
    #[error("tiqe: {0}")]
    Tiqe(String),
    /// Setup (keys, config) is wrong.
    #[error("config: {0}")]
    Config(String),
}

/// The validator's result type.
pub type Result<T> = std::result::Result<T, ValidatorError>;
