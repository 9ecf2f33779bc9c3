//! The HTTP JSON RPC: wire types shared by the [`server`] and the typed [`client`].
//!
//! Endpoints: `POST /tx` (hex canonical `SignedTx`), `GET /status`, `GET /account/{pk}`,
//! `GET /models`, `GET /model/{id}`, `GET /workers`, `GET /validators`, `GET /task/{id}`,
//! `GET /params`, `GET /block/{height}`, `GET /events` (server-sent events, one `block` event per
//! executed finalized block with its receipts and ledger events).
pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// Largest request body the server reads, bytes.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// `POST /tx` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Canonical `SignedTx` bytes, hex.
    pub tx: String,
}

/// `POST /tx` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction id (hex).
    pub id: String,
}

/// Any error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// `GET /status` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The chain id.
    pub chain_id: String,
    /// Height of the latest executed block.
    pub height: u64,
    /// State root after it.
    pub state_root: String,
    /// Pending transactions in this node's mempool.
    pub mempool: usize,
    /// Committee size.
    pub validators: usize,
}

/// `GET /block/{height}` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockView {
    /// Height.
    pub height: u64,
    /// Digest (hex).
    pub digest: String,
    /// Parent digest (hex).
    pub parent: String,
    /// Consensus view.
    pub view: u64,
    /// Proposer's timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The transactions.
    pub txs: Vec<polylink_types::SignedTx>,
}
