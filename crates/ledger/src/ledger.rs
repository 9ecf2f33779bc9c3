//! The API the chain node calls: genesis, mempool checks, block application, queries, snapshots.

use crate::records::{
    Account, Gateway, Model, SettleKey, Stake, Task, TaskStatus, Totals, Validator, Worker,
};
use crate::state::State;
use crate::view::View;
use crate::{Genesis, LedgerError, Params, Result, committee, exec, pricing, settle, tasks};
use polylink_types::codec::{Copying, Decode, Encode};
use polylink_types::{BlockContext, Event, Hash32, ModelId, PublicKey, SignedTx, TaskId, TxId};

/// What happened to one transaction of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction's id.
    pub tx_id: TxId,
    /// Its events, or why it was refused. A refused transaction changed nothing, except that one
    /// with a valid signature and the sender's next nonce consumed that nonce.
    pub result: Result<Vec<Event>>,
}

/// How a transaction would fare in the next block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxCheck {
    /// It applies.
    Applies,
    /// It would be included and refused by its rules: it consumes its nonce, nothing else.
    Fails(LedgerError),
    /// It cannot be included (bad signature, not the sender's next nonce): nothing changes.
    Excluded(LedgerError),
}

impl TxCheck {
    /// Whether it applies.
    pub fn is_ok(&self) -> bool {
        matches!(self, TxCheck::Applies)
    }

    /// Whether a block may carry it (it applies, or fails consuming its nonce).
    pub fn includable(&self) -> bool {
        !matches!(self, TxCheck::Excluded(_))
    }

    /// Why it does not apply.
    pub fn error(&self) -> Option<&LedgerError> {
        match self {
            TxCheck::Applies => None,
            TxCheck::Fails(e) | TxCheck::Excluded(e) => Some(e),
        }
    }
}

impl From<exec::Outcome> for TxCheck {
    fn from(outcome: exec::Outcome) -> Self {
        match outcome {
            exec::Outcome::Applied => TxCheck::Applies,
            exec::Outcome::Failed(e) => TxCheck::Fails(e),
            exec::Outcome::Excluded(e) => TxCheck::Excluded(e),
        }
    }
}

/// The result of applying a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Events of the block hooks: committee draws (begin), settlements and price updates (end).
    pub events: Vec<Event>,
    /// Hook steps that failed an internal check (should never happen; log them). The task stays
    /// as it was and its escrow stays accounted.
    pub hook_failures: Vec<(TaskId, LedgerError)>,
    /// Tasks that left the state at the end of the block, `task_retention_blocks` after they
    /// became final, with their last record (for the node's own index).
    pub pruned: Vec<(TaskId, Task)>,
    /// Root of the state after the block.
    pub state_root: Hash32,
}

/// First bytes of every state snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"PLST";
/// The state snapshot format this build writes and reads; raised with every change to the state's
/// encoding, so a node never misreads a snapshot another release wrote.
pub const SNAPSHOT_VERSION: u16 = 2;

/// The pure, deterministic ledger state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    state: State,
}

impl Ledger {
    /// The height-0 ledger of a validated genesis.
    pub fn genesis(genesis: &Genesis) -> Result<Ledger> {
        Ok(Ledger { state: genesis.build()? })
    }

    /// Mempool admission: would `tx` apply in the next block on the latest state?
    pub fn check_tx(&self, tx: &SignedTx) -> Result<()> {
        let mut v = View::new(&self.state, self.state.height + 1, self.state.time_ms);
        exec::execute(&mut v, tx, tx.id()).into_result()
    }

    /// Checks a sequence as if applied in order in the next block (e.g. pending txs of one sender
    /// with consecutive nonces, then a new one): one that fails still consumes its nonce, as in a
    /// block. Costs O(n x writes) for n txs.
    pub fn check_txs(&self, txs: &[SignedTx]) -> Vec<TxCheck> {
        let mut v = View::new(&self.state, self.state.height + 1, self.state.time_ms);
        txs.iter().map(|tx| exec::execute(&mut v, tx, tx.id()).into()).collect()
    }

    /// Applies a block: begin hook (committee draws), every tx (a refused one changes nothing),
    /// end hook (settlements whose blocks and time have both passed, escrow of tasks past their
    /// deadline, epoch pricing). Fails only if `ctx.height` is not the next height. A timestamp
    /// below the last block's counts as the last block's (consensus never lets one through).
    pub fn apply_block(&mut self, ctx: &BlockContext, txs: &[SignedTx]) -> Result<BlockOutcome> {
        if Some(ctx.height) != self.state.height.checked_add(1) {
            return Err(LedgerError::WrongHeight { expected_parent: self.state.height, got: ctx.height });
        }
        self.state.height = ctx.height;
        self.state.time_ms = ctx.time_ms.max(self.state.time_ms);
        let now_ms = self.state.time_ms;
        let mut events = Vec::new();
        let mut hook_failures = Vec::new();
        let draws = std::mem::take(&mut self.state.draw_queue);
        for id in draws {
            self.hook_step(&id, &mut events, &mut hook_failures, |v| committee::draw(v, &id, &ctx.seed));
            if let Some(t) = self.state.tasks.get(&id).filter(|t| t.status == TaskStatus::Scoring) {
                self.state.settle_queue.insert(SettleKey { height: t.reveal_end_height, task: id });
            }
        }
        let receipts = txs.iter().map(|tx| self.apply_tx(tx)).collect();
        let later =
            self.state.settle_queue.split_off(&SettleKey { height: ctx.height + 1, task: Hash32::ZERO });
        let due = std::mem::replace(&mut self.state.settle_queue, later);
        for key in due {
            let reveal_end_ms = self.state.tasks.get(&key.task).map_or(0, |t| t.reveal_end_ms);
            if now_ms <= reveal_end_ms {
                // Its blocks have passed but not its time: look again at the next block.
                self.state.settle_queue.insert(SettleKey { height: ctx.height + 1, task: key.task });
                continue;
            }
            self.hook_step(&key.task, &mut events, &mut hook_failures, |v| settle::settle(v, &key.task));
        }
        let later = self.state.expiry_queue.split_off(&SettleKey { height: now_ms, task: Hash32::ZERO });
        let expired = std::mem::replace(&mut self.state.expiry_queue, later);
        for key in expired {
            self.hook_step(&key.task, &mut events, &mut hook_failures, |v| tasks::expire(v, &key.task));
        }
        if ctx.height.is_multiple_of(self.state.params.epoch_length_blocks) {
            events.extend(pricing::epoch_update(&mut self.state));
        }
        let pruned = self.prune(ctx.height);
        Ok(BlockOutcome { receipts, events, hook_failures, pruned, state_root: self.state.root() })
    }

    /// Removes the final tasks whose retention ends at `height`.
    fn prune(&mut self, height: u64) -> Vec<(TaskId, Task)> {
        let later = self.state.prune_queue.split_off(&SettleKey { height: height + 1, task: Hash32::ZERO });
        let due = std::mem::replace(&mut self.state.prune_queue, later);
        due.into_iter().filter_map(|key| self.state.tasks.remove(&key.task).map(|t| (key.task, t))).collect()
    }

    fn apply_tx(&mut self, tx: &SignedTx) -> Receipt {
        let tx_id = tx.id();
        let mut v = View::new(&self.state, self.state.height, self.state.time_ms);
        let result = match exec::execute(&mut v, tx, tx_id) {
            exec::Outcome::Applied => Ok(self.state.commit(v.into_changes())),
            exec::Outcome::Failed(e) => {
                // Only the nonce moved: the sender's next transactions stay valid.
                self.state.commit(v.into_changes());
                Err(e)
            }
            exec::Outcome::Excluded(e) => Err(e),
        };
        Receipt { tx_id, result }
    }

    fn hook_step(
        &mut self,
        id: &TaskId,
        events: &mut Vec<Event>,
        failures: &mut Vec<(TaskId, LedgerError)>,
        step: impl FnOnce(&mut View) -> Result<()>,
    ) {
        let mut v = View::new(&self.state, self.state.height, self.state.time_ms);
        match step(&mut v) {
            Ok(()) => {
                let changes = v.into_changes();
                events.extend(self.state.commit(changes));
            }
            Err(e) => failures.push((*id, e)),
        }
    }

    /// Root of the current state (sha256 over the canonical encoding; O(state)).
    pub fn state_root(&self) -> Hash32 {
        self.state.root()
    }

    /// The whole state, read-only.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.state.height
    }

    /// Timestamp of the last applied block, ms since the Unix epoch (0 at genesis).
    pub fn time_ms(&self) -> u64 {
        self.state.time_ms
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        self.state.chain_id.as_str()
    }

    /// Genesis parameters.
    pub fn params(&self) -> &Params {
        &self.state.params
    }

    /// Supply, treasury, slashed total, next model id.
    pub fn totals(&self) -> &Totals {
        &self.state.totals
    }

    /// An account (zero balance and nonce if never seen).
    pub fn account(&self, who: &PublicKey) -> Account {
        self.state.accounts.get(who).cloned().unwrap_or_default()
    }

    /// An account's stake (zero if never bonded).
    pub fn stake(&self, who: &PublicKey) -> Stake {
        self.state.stakes.get(who).cloned().unwrap_or_default()
    }

    /// A model.
    pub fn model(&self, id: ModelId) -> Option<&Model> {
        self.state.models.get(&id)
    }

    /// A worker.
    pub fn worker(&self, who: &PublicKey) -> Option<&Worker> {
        self.state.workers.get(who)
    }

    /// A gateway.
    pub fn gateway(&self, who: &PublicKey) -> Option<&Gateway> {
        self.state.gateways.get(who)
    }

    /// A validator.
    pub fn validator(&self, who: &PublicKey) -> Option<&Validator> {
        self.state.validators.get(who)
    }

    /// A task, while it is in the state (until `task_retention_blocks` after it became final).
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.state.tasks.get(id)
    }

    /// Deterministic bytes of the whole state (same blocks give the same bytes): [`SNAPSHOT_MAGIC`],
    /// [`SNAPSHOT_VERSION`] (big-endian `u16`), then the canonical state.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&self.state.encode());
        bytes
    }

    /// Restores a ledger from [`Ledger::snapshot`] bytes; refuses another format version by name
    /// (never misreading it), and malformed or trailing bytes.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Ledger> {
        let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
            return Err(LedgerError::Snapshot("not a PolyLink state snapshot (no magic bytes)".into()));
        };
        let (version, rest) = match rest {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
            _ => return Err(LedgerError::Snapshot("snapshot ends before its version".into())),
        };
        if version != SNAPSHOT_VERSION {
            return Err(LedgerError::Snapshot(format!(
                "state snapshot format version {version}; this node reads version {SNAPSHOT_VERSION} \
                 (run the release that wrote it, or start from a fresh data directory and sync)"
            )));
        }
        let state =
            State::decode_cfg(Copying(rest), &()).map_err(|e| LedgerError::Snapshot(e.to_string()))?;
        state.params.validate()?;
        Ok(Ledger { state })
    }
}
