//! On-chain types of PolyLink: ids, amounts, ed25519 keys, signed transactions, blocks and
//! events, with one canonical binary encoding.
//!
//! Key types:
//! - [`Hash32`] (sha256 digests, also [`TxId`]/[`TaskId`]), [`PublicKey`] (account address),
//!   [`SecretKey`], [`Signature`]; [`Amount`] is a `u128` of base units, never floating point.
//! - [`UnsignedTx`] `{ signer, nonce, kind: TxKind }` is signed over
//!   `"polylink-tx-v1" || len(chain_id) || chain_id || canonical(tx)` into a [`SignedTx`]; its id is
//!   sha256 of the canonical signed bytes. A task's id is the id of its SubmitTask.
//! - [`TxKind`]: transfer, bond/unbond/withdraw, model/worker/validator registration, task
//!   submission, result, score commit/reveal, reclaim, model claim, a gateway's registration and
//!   a user's deposit for a gateway (spent with an [`ApiKey`] or the user's own [`SignedVoucher`]s).
//! - [`ArtifactClaim`]: proof from an artifact's hash alone that it names its developer.
//! - [`Block`] `{ height, parent, txs }` and [`BlockContext`] `{ height, seed }`, which the chain
//!   node fills with the seed of an earlier certified round.
//! - [`Event`]: what the ledger reports per transaction and per block hook.
//!
//! Encoding: `commonware-codec` (`Write`/`Read`/`EncodeSize`), fixed-width big-endian integers,
//! varint lengths, one-byte enum tags. Every variable-length field has its limit in its type
//! ([`BoundedVec`], [`BoundedString`]); blocks take a [`BlockLimits`]. Decoders bound lengths before
//! allocating, never panic and reject trailing bytes ([`SignedTx::from_bytes`],
//! [`Block::from_bytes`]); a successful decode re-encodes to the same bytes.
#![warn(missing_docs, unreachable_pub)]

// A module, not a re-export: `#[serde(with = "polylink_types::amount_serde")]` names a path.
pub mod amount_serde;
mod api_key;
mod artifact;
mod block;
mod bounded;
mod codec_macro;
mod error;
mod event;
mod hexbytes;
mod keys;
mod receipt;
mod signed;
mod tx;
mod voucher;

pub use api_key::ApiKey;
pub use artifact::{ArtifactClaim, CLAIM_TAIL_MAX, DEVELOPER_TRAILER_LEN, developer_trailer};
pub use block::{BLOCK_TXS_MAX, Block, BlockContext, BlockLimits};
pub use bounded::{BoundedString, BoundedVec};
pub use error::Error;
pub use event::{Event, PayeeRole, SettleOutcome, SlashReason};
pub use hexbytes::{Hash32, PublicKey, Signature};
pub use keys::SecretKey;
pub use receipt::{RECEIPTS_MAX, SignedReceipt, TokenDigest, WorkReceipt, uncovered_layer};
pub use signed::{CHAIN_ID_LEN_MAX, SignedTx, TX_BYTES_MAX, TxId, UnsignedTx};
pub use tx::{
    ARCHITECTURE_LEN_MAX, Allow, Bond, ClaimModel, CommitScore, DeviceProfile, ENDPOINT_LEN_MAX, ReclaimTask,
    RegisterGateway, RegisterModel, RegisterWorker, RevealScore, SERVED_MAX, STAGES_MAX, ServedRange,
    SubmitResult, SubmitTask, Transfer, TxKind, Unbond, score_commitment,
};
pub use voucher::{SignedVoucher, VOUCHER_HEADER, VOUCHER_TTL_MAX_MS, Voucher};

/// The codec traits, re-exported so users encode and decode with the same version.
pub use commonware_codec as codec;

#[doc(hidden)]
pub use bytes as __bytes;

/// A token amount in base units.
pub type Amount = u128;
/// A model's id, assigned in registration order starting at 1.
pub type ModelId = u64;
/// A task's id: the id of the SubmitTask transaction that opened it.
pub type TaskId = Hash32;
