//! The seam between consensus and the application state machine: what the node needs from the
//! ledger to admit, execute, persist and serve transactions.
use crate::rpc::{
    AccountView, Executed, GatewayEntry, ModelEntry, ParamsView, Refusal, ValidatorEntry, WorkerEntry,
};
use polylink_ledger::{Model, Task};
use polylink_types::{BlockContext, Hash32, ModelId, PublicKey, SignedTx, TaskId};

/// How a transaction would fare in the next block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Whether it applies, else why not.
    pub result: Result<(), Refusal>,
    /// Whether a block may still carry it: it applies, or it fails by its own rules and only
    /// consumes its nonce (the sender's later transactions depend on that nonce).
    pub includable: bool,
}

/// A deterministic replicated state machine driven by finalized blocks.
pub trait Machine: Send + Sync + 'static {
    /// Admission check of a sequence (e.g. one sender's pending transactions, then a new one) as
    /// if applied in order in the next block on the latest executed state (signatures included);
    /// an error is the refusal shown to the submitter.
    fn check_txs(&self, txs: &[SignedTx]) -> Vec<Checked>;
    /// Applies a finalized block's transactions; invalid ones fail in their receipt and change
    /// nothing. Returns what it executed and the tasks it pruned from its state (the node keeps
    /// them in its own index). An error means the block does not fit this state (e.g. a wrong
    /// height).
    fn apply_block(
        &mut self,
        ctx: &BlockContext,
        txs: &[SignedTx],
    ) -> Result<(Executed, Vec<(TaskId, Task)>), String>;
    /// Commitment to the whole current state.
    fn state_root(&self) -> Hash32;
    /// Canonical bytes of the whole state, for persistence.
    fn snapshot(&self) -> Vec<u8>;
    /// Rebuilds a state from [`Machine::snapshot`] bytes.
    fn restore(&self, bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized;
}

/// A state machine the RPC can query: each answer is a typed view of the ledger's records.
pub trait Queryable: Machine {
    /// Balance, nonce, stake and roles of `account`; `pending` is what the mempool holds of it.
    fn account(&self, account: &PublicKey, pending: u64) -> AccountView;
    /// Every registered model.
    fn models(&self) -> Vec<ModelEntry>;
    /// One model.
    fn model(&self, id: ModelId) -> Option<Model>;
    /// Every registered worker.
    fn workers(&self) -> Vec<WorkerEntry>;
    /// Every registered gateway with its stake.
    fn gateways(&self) -> Vec<GatewayEntry>;
    /// Every registered score validator with its stake.
    fn validators(&self) -> Vec<ValidatorEntry>;
    /// One task, while it is in the state.
    fn task(&self, id: &TaskId) -> Option<Task>;
    /// How many tasks the state holds (recent and unsettled ones only).
    fn tasks_held(&self) -> usize;
    /// Parameters and totals.
    fn params(&self) -> ParamsView;
}
