//! The RPC's wire types, declared once: the server renders them and the [`super::client`]
//! decodes them, so every field a caller reads is checked by the compiler on both sides.
use polylink_ledger::{Allowance, Gateway, LedgerError, Model, Params, Stake, Totals, Validator, Worker};
use polylink_types::{Amount, Event, Hash32, ModelId, PublicKey, ServedRange, SignedTx, TxId, amount_serde};
use serde::{Deserialize, Serialize};

/// Largest request body the server reads, bytes.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// Why the node refused something, as a caller can match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The signature does not verify (wrong key, chain id or bytes).
    BadSignature,
    /// The nonce is not the account's next one (replayed, or another client used it).
    WrongNonce,
    /// The spendable balance does not cover the transaction.
    InsufficientBalance,
    /// The paying account has not allowed the gateway that much.
    AllowanceShort,
    /// The balance does not cover the transaction fee.
    FeeUnpaid,
    /// The bonded stake does not cover the action.
    InsufficientStake,
    /// A zero amount.
    ZeroAmount,
    /// Too many unbonding entries; withdraw first.
    TooManyUnbonding,
    /// No unbonding entry has matured.
    NothingToWithdraw,
    /// Withdraw while the stake still answers for unsettled tasks.
    StakeAtRisk,
    /// A role's bonded stake is under its minimum.
    StakeBelowMinimum,
    /// The account already holds the role.
    AlreadyRegistered,
    /// The artifact is registered already (one model per artifact).
    ArtifactRegistered,
    /// An artifact claim that proves no developer for its artifact.
    BadArtifactClaim,
    /// The model's royalty goes to its artifact's developer already.
    ModelClaimed,
    /// No such model.
    UnknownModel,
    /// No such task.
    UnknownTask,
    /// No such (active) worker.
    UnknownWorker,
    /// A worker endpoint that is not a socket address.
    BadEndpoint,
    /// A field out of its allowed range.
    Invalid,
    /// A result's work receipt that the ledger cannot accept.
    BadReceipt,
    /// The model's price is above what the user accepts.
    PriceAboveMax,
    /// The signer may not take this action.
    WrongRole,
    /// The task is not in the state the action needs.
    WrongTaskStatus,
    /// The action's height window is not open.
    OutsideWindow,
    /// A commitment or reveal was already recorded.
    Duplicate,
    /// A reveal that does not open its commitment.
    CommitmentMismatch,
    /// Checked arithmetic overflowed.
    Overflow,
    /// The ledger refused a block, genesis or snapshot.
    Ledger,
    /// The same transaction is already pending.
    AlreadyPending,
    /// The mempool is full.
    MempoolFull,
    /// The sender has the most transactions pending that one sender may.
    SenderQueueFull,
    /// The node cannot read its state right now.
    Unavailable,
    /// The request does not parse (body, hex, transaction bytes, path).
    BadRequest,
    /// The thing asked for does not exist.
    NotFound,
}

impl From<&LedgerError> for ErrorCode {
    fn from(error: &LedgerError) -> Self {
        match error {
            LedgerError::BadSignature(_) => Self::BadSignature,
            LedgerError::WrongNonce { .. } => Self::WrongNonce,
            LedgerError::InsufficientBalance { .. } => Self::InsufficientBalance,
            LedgerError::AllowanceShort { .. } => Self::AllowanceShort,
            LedgerError::FeeUnpaid { .. } => Self::FeeUnpaid,
            LedgerError::InsufficientStake { .. } => Self::InsufficientStake,
            LedgerError::ZeroAmount => Self::ZeroAmount,
            LedgerError::TooManyUnbonding { .. } => Self::TooManyUnbonding,
            LedgerError::NothingToWithdraw { .. } => Self::NothingToWithdraw,
            LedgerError::StakeAtRisk { .. } => Self::StakeAtRisk,
            LedgerError::StakeBelowMinimum { .. } => Self::StakeBelowMinimum,
            LedgerError::AlreadyRegistered { .. } => Self::AlreadyRegistered,
            LedgerError::ArtifactRegistered { .. } => Self::ArtifactRegistered,
            LedgerError::BadArtifactClaim { .. } => Self::BadArtifactClaim,
            LedgerError::ModelClaimed { .. } => Self::ModelClaimed,
            LedgerError::UnknownModel(_) => Self::UnknownModel,
            LedgerError::UnknownTask(_) => Self::UnknownTask,
            LedgerError::UnknownWorker(_) => Self::UnknownWorker,
            LedgerError::BadEndpoint { .. } => Self::BadEndpoint,
            LedgerError::Invalid { .. } => Self::Invalid,
            LedgerError::BadReceipt { .. } => Self::BadReceipt,
            LedgerError::PriceAboveMax { .. } => Self::PriceAboveMax,
            LedgerError::WrongRole { .. } => Self::WrongRole,
            LedgerError::WrongTaskStatus { .. } => Self::WrongTaskStatus,
            LedgerError::OutsideWindow { .. } => Self::OutsideWindow,
            LedgerError::Duplicate { .. } => Self::Duplicate,
            LedgerError::CommitmentMismatch { .. } => Self::CommitmentMismatch,
            LedgerError::Overflow(_) => Self::Overflow,
            LedgerError::WrongHeight { .. } | LedgerError::InvalidGenesis(_) | LedgerError::Snapshot(_) => {
                Self::Ledger
            }
        }
    }
}

/// A refusal: its code and a message with the values that matter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// Human-readable reason.
    #[serde(rename = "error")]
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<&LedgerError> for Refusal {
    fn from(error: &LedgerError) -> Self {
        Self::new(error.into(), error.to_string())
    }
}

/// `POST /tx` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Canonical `SignedTx` bytes, hex.
    pub tx: String,
}

/// `POST /faucet` body: a dev chain's faucet sends its amount to `account`, once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaucetRequest {
    /// Who gets the funds.
    pub account: PublicKey,
}

/// `POST /tx` answer (and `POST /faucet`'s: the faucet's transfer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction id.
    pub id: TxId,
}

/// `GET /status` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The chain id.
    pub chain_id: String,
    /// Height of the latest executed block.
    pub height: u64,
    /// Its timestamp, ms since the Unix epoch (0 before the first block).
    pub time_ms: u64,
    /// State root after it.
    pub state_root: Hash32,
    /// Pending transactions in this node's mempool.
    pub mempool: usize,
    /// Tasks in the state (unsettled and recently final; older ones are in the node's archive).
    pub tasks_held: usize,
    /// Committee size.
    pub validators: usize,
}

/// `GET /account/{key}` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub account: PublicKey,
    /// Spendable balance.
    #[serde(with = "amount_serde")]
    pub balance: Amount,
    /// Nonce of the account's next transaction once the pending ones are included.
    pub nonce: u64,
    /// The account's transactions waiting in this node's mempool (their nonces follow `nonce`).
    pub pending: u64,
    /// Bonded and unbonding stake.
    pub stake: Stake,
    /// Its worker registration, if any.
    pub worker: Option<Worker>,
    /// Its validator registration, if any.
    pub validator: Option<Validator>,
    /// Its gateway registration, if any.
    pub gateway: Option<Gateway>,
    /// The gateways it allows to open tasks paid from its balance.
    pub allowances: Vec<Allowance>,
}

impl AccountView {
    /// The nonce the account's next new transaction takes: after everything already pending.
    pub fn next_nonce(&self) -> u64 {
        self.nonce.saturating_add(self.pending)
    }
}

/// One entry of `GET /models`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// On-chain model id.
    pub id: ModelId,
    /// Its record.
    pub model: Model,
}

/// One entry of `GET /workers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEntry {
    /// The worker's account.
    pub account: PublicKey,
    /// Its registration.
    pub worker: Worker,
    /// Its stake (a worker under the minimum can be named on no task).
    #[serde(default)]
    pub stake: Stake,
}

impl WorkerEntry {
    /// Its widest range of `model` (the measurement over the most layers), if it serves the model.
    pub fn range_of(&self, model: ModelId) -> Option<&ServedRange> {
        self.worker
            .served
            .iter()
            .filter(|r| r.model == model)
            .max_by_key(|r| r.layer_end.saturating_sub(r.layer_start))
    }
}

/// One entry of `GET /gateways`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEntry {
    /// The gateway's account.
    pub account: PublicKey,
    /// Its registration.
    pub gateway: Gateway,
    /// Its stake (a gateway under the minimum can open no task).
    pub stake: Stake,
}

/// One entry of `GET /validators`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorEntry {
    /// The validator's account.
    pub account: PublicKey,
    /// Its registration.
    pub validator: Validator,
    /// Its stake.
    pub stake: Stake,
}

/// `GET /params` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamsView {
    /// The chain id.
    pub chain_id: String,
    /// Height of the latest executed block.
    pub height: u64,
    /// The ledger's parameters.
    pub params: Params,
    /// Supply, treasury and the other totals.
    pub totals: Totals,
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
    pub txs: Vec<SignedTx>,
}

/// What one transaction of an executed block did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    /// The transaction.
    pub tx_id: TxId,
    /// Its events when it was applied, or why it was refused (a refused one changed nothing).
    #[serde(flatten)]
    pub outcome: TxOutcome,
}

/// A transaction's outcome in its block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TxOutcome {
    /// Applied, with the events it emitted.
    Applied {
        /// Its events.
        events: Vec<Event>,
    },
    /// Refused by the ledger.
    Refused {
        /// Why.
        refusal: Refusal,
    },
}

/// What executing one finalized block produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    /// Height of the executed block.
    pub height: u64,
    /// State root after the block.
    pub state_root: Hash32,
    /// One receipt per transaction, in block order.
    pub receipts: Vec<TxReceipt>,
    /// Every event the block emitted, settlement included.
    pub events: Vec<Event>,
}

/// A finalized, executed block as `GET /events` streams it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizedBlock {
    /// Block digest (hex).
    pub digest: String,
    /// Parent digest (hex).
    pub parent: String,
    /// Consensus view the block was proposed in.
    pub view: u64,
    /// Proposer's timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Ids of the block's transactions, in order.
    pub tx_ids: Vec<TxId>,
    /// The ledger seed the block was executed with.
    pub seed: Hash32,
    /// Receipts, events and the resulting state root.
    #[serde(flatten)]
    pub executed: Executed,
}

impl FinalizedBlock {
    /// The receipt of transaction `id`, when this block includes it.
    pub fn receipt(&self, id: &TxId) -> Option<&TxReceipt> {
        self.executed.receipts.iter().find(|r| &r.tx_id == id)
    }
}
