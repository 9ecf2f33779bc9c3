//! The seam between consensus and the application state machine: what the node needs from the
//! ledger to admit, execute, persist and serve transactions.
use polylink_types::{BlockContext, Hash32, SignedTx};
use serde::Serialize;

/// What executing one finalized block produced, as the RPC and event stream show it.
#[derive(Clone, Debug, Serialize)]
pub struct Executed {
    /// Height of the executed block.
    pub height: u64,
    /// State root after the block.
    pub state_root: Hash32,
    /// One entry per transaction, in block order (JSON rendering of the ledger's receipts).
    pub receipts: Vec<serde_json::Value>,
    /// Events the block emitted (JSON rendering of the ledger's events).
    pub events: Vec<serde_json::Value>,
}

/// A deterministic replicated state machine driven by finalized blocks.
pub trait Machine: Send + Sync + 'static {
    /// Admission check of a sequence (e.g. one sender's pending transactions, then a new one) as
    /// if applied in order in the next block on the latest executed state (signatures included);
    /// an error is the reason shown to the submitter.
    fn check_txs(&self, txs: &[SignedTx]) -> Vec<Result<(), String>>;
    /// Applies a finalized block's transactions; invalid ones fail in their receipt and change
    /// nothing. An error means the block does not fit this state (e.g. a wrong height).
    fn apply_block(&mut self, ctx: &BlockContext, txs: &[SignedTx]) -> Result<Executed, String>;
    /// Commitment to the whole current state.
    fn state_root(&self) -> Hash32;
    /// Canonical bytes of the whole state, for persistence.
    fn snapshot(&self) -> Vec<u8>;
    /// Rebuilds a state from [`Machine::snapshot`] bytes.
    fn restore(&self, bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
}

/// A read-only question the RPC asks the state machine; answers are JSON renderings of the
/// ledger's own types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Balance, nonce and stakes of an account (hex public key).
    Account(polylink_types::PublicKey),
    /// All registered models.
    Models,
    /// One model by id.
    Model(u64),
    /// All registered workers.
    Workers,
    /// All registered score validators.
    Validators,
    /// One task by id.
    Task(Hash32),
    /// The ledger's parameters.
    Params,
}

/// A state machine the RPC can query.
pub trait Queryable: Machine {
    /// Answers `query`; `None` when the thing asked for does not exist.
    fn query(&self, query: &Query) -> Option<serde_json::Value>;
}
