//! Events the ledger emits while applying transactions and block hooks (served by the RPC).

use crate::{Amount, ModelId, PublicKey, TaskId};
use serde::{Deserialize, Serialize};

/// Who received a payment out of a task's fee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayeeRole {
    /// A worker (pipeline stage).
    Worker,
    /// A committee validator that revealed a score within delta of the median.
    Validator,
    /// The model developer's royalty.
    Developer,
    /// The protocol treasury.
    Treasury,
    /// The user (unused or failed-quality escrow).
    User,
}

/// Why stake was slashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlashReason {
    /// Revealed a score farther than delta from the committee median.
    ScoreOutlier,
    /// Committed a score and never revealed it.
    NoReveal,
    /// Served work whose median score fell under q_min, the last of `strikes_to_slash` strikes.
    LowQuality,
    /// Was elected to a committee and committed nothing.
    NoCommit,
    /// Revealed a score with an evaluation digest that a majority of the committee's reveals
    /// contradict: it did not evaluate the transcript (a lazy validator).
    Unproven,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleOutcome {
    /// Median at or above q_min: fee split between workers, validators, developer, treasury.
    Paid,
    /// Median under q_min: workers unpaid and struck (slashed at the last strike), user refunded.
    LowQuality,
    /// Too few reveals (or no eligible validator): nobody paid, user refunded, no worker slash.
    NoQuorum,
}

/// One state change worth telling a client about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Balance moved between accounts.
    Transferred {
        from: PublicKey,
        to: PublicKey,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// Balance locked as stake.
    Bonded {
        account: PublicKey,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// Stake entered unbonding; released to the balance by Withdraw once the block is at
    /// `release_height` and its time at `release_ms`.
    UnbondStarted {
        account: PublicKey,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
        release_height: u64,
        release_ms: u64,
    },
    /// Matured unbonding stake returned to the balance.
    Withdrawn {
        account: PublicKey,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// A model was registered.
    ModelRegistered { model: ModelId, developer: PublicKey },
    /// A model's artifact was shown to name `developer`, who earns its royalty from now on.
    ModelClaimed { model: ModelId, developer: PublicKey },
    /// A worker registered or updated its profile.
    WorkerRegistered { worker: PublicKey },
    /// A validator registered.
    ValidatorRegistered { validator: PublicKey },
    /// A task opened; `escrow = max_tokens x price`.
    TaskSubmitted {
        task: TaskId,
        user: PublicKey,
        model: ModelId,
        #[serde(with = "crate::amount_serde")]
        price: Amount,
        #[serde(with = "crate::amount_serde")]
        escrow: Amount,
    },
    /// A result was recorded; `fee` stays escrowed until settlement, the rest went back.
    ResultSubmitted {
        task: TaskId,
        billed_tokens: u64,
        #[serde(with = "crate::amount_serde")]
        fee: Amount,
        #[serde(with = "crate::amount_serde")]
        refund: Amount,
    },
    /// The scoring committee was drawn. Each window stays open until both its last height and
    /// its last time (block timestamp, ms) have passed.
    CommitteeElected {
        task: TaskId,
        members: Vec<PublicKey>,
        commit_end_height: u64,
        commit_end_ms: u64,
        reveal_end_height: u64,
        reveal_end_ms: u64,
    },
    /// A committee member committed a score.
    ScoreCommitted { task: TaskId, validator: PublicKey },
    /// A committee member revealed a score.
    ScoreRevealed { task: TaskId, validator: PublicKey, score: u16 },
    /// A task was settled.
    TaskSettled { task: TaskId, outcome: SettleOutcome, median_score: Option<u16> },
    /// Someone was paid out of a task's escrow.
    Paid {
        task: TaskId,
        account: PublicKey,
        role: PayeeRole,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// Stake was slashed (burned), bonded first, then unbonding entries.
    Slashed {
        account: PublicKey,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
        reason: SlashReason,
        task: TaskId,
    },
    /// A worker of a task that settled under q_min earned a strike; `strikes` is its count now
    /// (a slash at `strikes_to_slash` resets it; paid tasks wear strikes off).
    Struck { account: PublicKey, task: TaskId, strikes: u8 },
    /// A task's escrow went back to its user: reclaimed, or returned by the chain at the first
    /// block past the deadline.
    TaskReclaimed {
        task: TaskId,
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// A model's price changed at an epoch boundary.
    PriceUpdated {
        model: ModelId,
        #[serde(with = "crate::amount_serde")]
        old_price: Amount,
        #[serde(with = "crate::amount_serde")]
        new_price: Amount,
        utilization_ppm: u64,
    },
}
