//! The crate's one error type: why a transaction, block, genesis or snapshot was refused.

use polylink_types::{Amount, Hash32, ModelId, PublicKey, TaskId};

/// Every reason the ledger refuses something. A refused transaction changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Signature check failed (wrong key, chain id or bytes).
    #[error("{0}")]
    BadSignature(String),
    /// Nonce is not the account's next nonce (replayed or out of order).
    #[error("wrong nonce for {account}: expected {expected}, got {got}")]
    WrongNonce {
        /// Signer.
        account: PublicKey,
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// Not enough spendable balance.
    #[error("insufficient balance in {account}: need {needed}, have {available}")]
    InsufficientBalance {
        /// Payer.
        account: PublicKey,
        /// Amount required.
        needed: Amount,
        /// Amount available.
        available: Amount,
    },
    /// A gateway opened a task for an account that has not allowed it that much.
    #[error("{user} allows gateway {gateway} {available} more, the task escrows {needed}")]
    AllowanceShort {
        /// The paying account.
        user: PublicKey,
        /// The gateway that opened the task.
        gateway: PublicKey,
        /// The escrow.
        needed: Amount,
        /// What the allowance has left (0 without one).
        available: Amount,
    },
    /// The sender's balance (after the transaction) does not cover the transaction fee.
    #[error("{account} cannot pay the transaction fee {fee}: its balance would be {available}")]
    FeeUnpaid {
        /// Sender.
        account: PublicKey,
        /// The fee.
        fee: Amount,
        /// Its balance after the transaction's own effects.
        available: Amount,
    },
    /// Not enough bonded stake.
    #[error("insufficient bonded stake in {account}: need {needed}, have {available}")]
    InsufficientStake {
        /// Staker.
        account: PublicKey,
        /// Amount required.
        needed: Amount,
        /// Amount bonded.
        available: Amount,
    },
    /// Zero amounts are refused (they would only burn a nonce).
    #[error("amount must be positive")]
    ZeroAmount,
    /// The account already has the most unbonding entries allowed.
    #[error("{account} already has {max} unbonding entries; withdraw first")]
    TooManyUnbonding {
        /// Staker.
        account: PublicKey,
        /// Limit.
        max: usize,
    },
    /// No unbonding entry has matured yet.
    #[error("nothing to withdraw for {account} at height {height}")]
    NothingToWithdraw {
        /// Staker.
        account: PublicKey,
        /// Current height.
        height: u64,
    },
    /// A role needs more bonded stake.
    #[error("{role} {account} has bonded {have}, minimum is {need}")]
    StakeBelowMinimum {
        /// "worker" or "validator".
        role: &'static str,
        /// Account.
        account: PublicKey,
        /// Bonded stake.
        have: Amount,
        /// Minimum.
        need: Amount,
    },
    /// The account already holds this role.
    #[error("{account} is already a registered {role}")]
    AlreadyRegistered {
        /// Role.
        role: &'static str,
        /// Account.
        account: PublicKey,
    },
    /// The artifact is registered already (one model per artifact).
    #[error("artifact {artifact} is registered already as model {model}")]
    ArtifactRegistered {
        /// The artifact's sha256.
        artifact: Hash32,
        /// The model registered for it.
        model: ModelId,
    },
    /// An artifact claim does not prove a developer for the artifact it is offered for.
    #[error("the claim does not prove that artifact {artifact} names a developer")]
    BadArtifactClaim {
        /// The artifact's sha256.
        artifact: Hash32,
    },
    /// The model's royalty already goes to the developer its artifact names.
    #[error("model {model} is claimed already by {developer}")]
    ModelClaimed {
        /// The model.
        model: ModelId,
        /// Its developer.
        developer: PublicKey,
    },
    /// No such model.
    #[error("unknown model {0}")]
    UnknownModel(ModelId),
    /// No such task.
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// No such (active) worker.
    #[error("{0} is not a registered worker")]
    UnknownWorker(PublicKey),
    /// A worker's endpoint is not a socket address, so no head could dial it.
    #[error("worker endpoint {endpoint:?} is not a socket address (ip:port): {reason}")]
    BadEndpoint {
        /// The endpoint as registered.
        endpoint: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A result carries a receipt the ledger cannot accept (wrong task, forged signature, a
    /// worker that serves no such layers, a duplicate, or receipts that leave layers uncovered).
    #[error("receipt of {worker} for task {task}: {reason}")]
    BadReceipt {
        /// The task.
        task: TaskId,
        /// The worker the receipt names.
        worker: PublicKey,
        /// What is wrong.
        reason: String,
    },
    /// A registration or task field is out of its allowed range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// What is wrong, with the values.
        reason: String,
    },
    /// The model's current price is above what the user accepts.
    #[error("current price {price} of model {model} is above the accepted maximum {max_price}")]
    PriceAboveMax {
        /// Model.
        model: ModelId,
        /// Current price per token.
        price: Amount,
        /// User's maximum.
        max_price: Amount,
    },
    /// The signer may not take this action.
    #[error("{account} may not {action}: {reason}")]
    WrongRole {
        /// Signer.
        account: PublicKey,
        /// Action attempted.
        action: &'static str,
        /// Who may.
        reason: &'static str,
    },
    /// The task is not in the state this action needs.
    #[error("task {task} is {status}, cannot {action}")]
    WrongTaskStatus {
        /// Task.
        task: TaskId,
        /// Its status.
        status: &'static str,
        /// Action attempted.
        action: &'static str,
    },
    /// The action's window is closed (or not open yet).
    #[error("{action} for task {task} is not allowed now: {window}")]
    OutsideWindow {
        /// Task.
        task: TaskId,
        /// Action attempted.
        action: &'static str,
        /// The window and where the block is, with the values.
        window: String,
    },
    /// The account's stake still answers for unsettled tasks.
    #[error("{account} still answers for {tasks} unsettled task(s); withdraw once they settle")]
    StakeAtRisk {
        /// Staker.
        account: PublicKey,
        /// Unsettled tasks that can still slash it.
        tasks: u32,
    },
    /// A score commitment or reveal was already recorded.
    #[error("{validator} already did {action} for task {task}")]
    Duplicate {
        /// Task.
        task: TaskId,
        /// Validator.
        validator: PublicKey,
        /// "commit" or "reveal".
        action: &'static str,
    },
    /// The reveal does not open the commitment (or there is none).
    #[error("reveal by {validator} does not match a commitment for task {task}")]
    CommitmentMismatch {
        /// Task.
        task: TaskId,
        /// Validator.
        validator: PublicKey,
    },
    /// Checked arithmetic overflowed.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// A block's height is not the next one.
    #[error("block height {got} does not follow state height {expected_parent}")]
    WrongHeight {
        /// Current state height.
        expected_parent: u64,
        /// Offered height.
        got: u64,
    },
    /// Genesis or parameters fail validation.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
    /// A snapshot could not be decoded.
    #[error("invalid snapshot: {0}")]
    Snapshot(String),
}

/// Shorthand for ledger results.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Checked addition that names the place it overflowed.
pub(crate) fn add(a: Amount, b: Amount, place: &'static str) -> Result<Amount> {
    a.checked_add(b).ok_or(LedgerError::Overflow(place))
}

/// Checked multiplication that names the place it overflowed.
pub(crate) fn mul(a: Amount, b: Amount, place: &'static str) -> Result<Amount> {
    a.checked_mul(b).ok_or(LedgerError::Overflow(place))
}

/// `amount * bps / 10_000`, checked.
pub(crate) fn bps_of(amount: Amount, bps: u16) -> Result<Amount> {
    Ok(mul(amount, Amount::from(bps), "basis points")? / 10_000)
}
