//! The crate's one error type.

/// Everything that can go wrong while decoding, verifying or building on-chain types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a canonical encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Decode(#[from] commonware_codec::Error),
    /// The input is longer than the type's size limit.
    #[error("encoding of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// A public key is not a valid ed25519 point.
    #[error("invalid ed25519 public key {0}")]
    InvalidPublicKey(String),
    /// The signature does not verify for this signer, chain id and transaction.
    #[error("bad signature from {signer} on chain {chain_id}")]
    BadSignature {
        /// Claimed signer.
        signer: String,
        /// Chain id the signature was checked against.
        chain_id: String,
    },
    /// A hex string could not be parsed.
    #[error("invalid hex: expected {expected_bytes} bytes, got {input:?}")]
    Hex {
        /// Expected length in bytes.
        expected_bytes: usize,
        /// The offending text (truncated).
        input: String,
    },
    /// A bounded collection or string is over its limit.
    #[error("{what} has {len} items, limit is {max}")]
    OverLimit {
        /// Which field.
        what: &'static str,
        /// Items offered.
        len: usize,
        /// Items allowed.
        max: usize,
    },
}
