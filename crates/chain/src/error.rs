//! The crate's one error type.
use std::path::PathBuf;

/// Everything that can go wrong in the chain node, its config and its RPC client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config or genesis file could not be read or written.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A config or genesis file did not parse.
    #[error("invalid config {path}: {message}")]
    Config {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Key material or a share in the config did not decode or did not match the committee.
    #[error("invalid key material: {0}")]
    Keys(String),
    /// The ledger rejected the genesis or a snapshot.
    #[error("ledger error: {0}")]
    Ledger(String),
    /// Persistent storage failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// The node refused a request or transaction: match on its [`ErrorCode`](crate::rpc::ErrorCode).
    #[error("refused ({:?}): {}", .0.code, .0.message)]
    Refused(crate::rpc::Refusal),
    /// An RPC call failed on the wire, timed out, or its answer did not decode.
    #[error("rpc error: {0}")]
    Rpc(String),
    /// A distributed key generation ceremony failed (who did not take part, or who cheated).
    #[error("key generation failed: {0}")]
    Dkg(String),
}

impl Error {
    /// The refusal's code, when the node refused (rather than the call failing).
    pub fn code(&self) -> Option<crate::rpc::ErrorCode> {
        match self {
            Self::Refused(refusal) => Some(refusal.code),
            _ => None,
        }
    }
}
