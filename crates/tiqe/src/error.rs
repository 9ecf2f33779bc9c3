//! The crate's one error type.

/// Why an evaluator could not produce a verdict (a verdict about a bad answer is not an error).
#[derive(Debug, thiserror::Error)]
pub enum TiqeError {
    /// The inference engine failed.
    #[error("inference engine: {0}")]
    Infer(#[from] polylink_infer::InferError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A weights or vocabulary file is malformed.
    #[error("bad model file {path}: {why}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A file's sha256 differs from the one recorded for it.
    #[error("checksum mismatch for {path}: expected {expected}, found {found}")]
    Checksum {
        /// The file.
        path: String,
        /// The recorded sha256 (hex).
        expected: String,
        /// The file's sha256 (hex).
        found: String,
    },
    /// The validator loaded another model than the one the task registers.
    #[error("task is for model {task} but this validator loaded {loaded}")]
    WrongModel {
        /// Artifact sha256 on chain (hex).
        task: String,
        /// Artifact sha256 of the loaded file (hex).
        loaded: String,
    },
    /// The task itself (its prompt) is beyond what a validator evaluates.
    #[error("task refused: {0}")]
    Refused(String),
    /// Training data or configuration cannot produce a head.
    #[error("training: {0}")]
    Training(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TiqeError>;

/// An I/O error tagged with its path.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TiqeError + '_ {
    move |source| TiqeError::Io { path: path.display().to_string(), source }
}
