//! The crate's one error type: what a backend or a transcript request can fail with.

/// Result with [`ProtocolError`].
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// What can go wrong across the seams this crate defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The backend does not serve this model.
    #[error("the model '{0}' does not exist or is not served by this gateway")]
    UnknownModel(String),
    /// The backend could not run the generation.
    #[error("inference failed: {0}")]
    Backend(String),
    /// Loading a model or starting a backend failed.
    #[error("{0}")]
    Setup(String),
    /// A transcript request lacks one of its headers.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A transcript request header does not parse.
    #[error("{name}: {reason}")]
    BadHeader {
        /// The header.
        name: &'static str,
        /// Why it does not parse.
        reason: String,
    },
}
