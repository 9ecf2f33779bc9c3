//! Signed transactions: who, which nonce, what; signature over chain id + canonical bytes.

use crate::codec_fields;
use crate::{Error, Hash32, PublicKey, SecretKey, Signature, TxKind};
use commonware_codec::{Copying, Decode, Encode};
use serde::{Deserialize, Serialize};

/// Largest canonical encoding of a signed transaction, bytes (every kind fits well inside).
pub const TX_BYTES_MAX: usize = 3072;
/// Longest chain id, bytes.
pub const CHAIN_ID_LEN_MAX: usize = 64;
/// Domain separator for transaction signatures.
const TX_SIGNING_DOMAIN: &[u8] = b"polylink-tx-v1";

/// A transaction id: sha256 of the canonical signed encoding. A task's id is its SubmitTask's id.
pub type TxId = Hash32;

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedTx {
    /// The account that acts and pays.
    pub signer: PublicKey,
    /// Must equal the signer's account nonce; it rises by one with each applied transaction.
    pub nonce: u64,
    /// What to do.
    pub kind: TxKind,
}
codec_fields!(UnsignedTx { signer, nonce, kind });

impl UnsignedTx {
    /// The exact bytes signed: a domain tag, the length-prefixed chain id, the canonical tx.
    /// Binding the chain id means a transaction cannot be replayed on another network.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        let body = self.encode();
        let id = chain_id.as_bytes();
        let mut msg = Vec::with_capacity(TX_SIGNING_DOMAIN.len() + 1 + id.len() + body.len());
        msg.extend_from_slice(TX_SIGNING_DOMAIN);
        // Chain ids are limited to CHAIN_ID_LEN_MAX bytes by genesis validation; a longer one
        // still gets an unambiguous prefix because the length saturates and the id follows whole.
        msg.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        msg.extend_from_slice(id);
        msg.extend_from_slice(&body);
        msg
    }

    /// Signs for `chain_id` with `key` (whose public key should be `self.signer`).
    pub fn sign(self, key: &SecretKey, chain_id: &str) -> SignedTx {
        let signature = key.sign(&self.signing_message(chain_id));
        SignedTx { tx: self, signature }
    }
}

/// A transaction with its signature: what blocks carry and the mempool admits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The signed content.
    pub tx: UnsignedTx,
    /// ed25519 signature by `tx.signer` over `tx.signing_message(chain_id)`.
    pub signature: Signature,
}
codec_fields!(SignedTx { tx, signature });

impl SignedTx {
    /// The transaction id (sha256 of the canonical encoding).
    pub fn id(&self) -> TxId {
        Hash32::digest(&[&self.encode()])
    }

    /// Checks the signature for `chain_id` with strict ed25519 rules.
    pub fn verify(&self, chain_id: &str) -> Result<(), Error> {
        if self.tx.signer.verify(&self.tx.signing_message(chain_id), &self.signature) {
            Ok(())
        } else {
            Err(Error::BadSignature { signer: self.tx.signer.to_string(), chain_id: chain_id.to_string() })
        }
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode().to_vec()
    }

    /// Decodes canonical bytes: rejects oversized input before parsing, and trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(Error::TooLarge { len: bytes.len(), max: TX_BYTES_MAX });
        }
        Ok(Self::decode_cfg(Copying(bytes), &())?)
    }
}
