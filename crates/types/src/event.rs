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
    /// The gateway that opened the task on the user's allowance, repaid the fee of that
    /// transaction.
    Gateway,
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
    /// Too few judgements because elected validators ran out of time (they revealed
    /// `ledger::BUSY`), and none of those made failed the worker: paid as a pass (at the
    /// judgements' median, full marks with none), the validators that judged it paid.
    Unchecked,
}

/// One state change worth telling a client about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Balance moved between accounts.
    Transferred {
        /// The paying account.
        from: PublicKey,
        /// The receiving account.
        to: PublicKey,
        /// Base units moved.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// Balance locked as stake.
    Bonded {
        /// The staking account.
        account: PublicKey,
        /// Base units moved from its balance into bonded stake.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// Stake entered unbonding; released to the balance by Withdraw once the block is at
    /// `release_height` and its time at `release_ms`.
    UnbondStarted {
        /// The staking account.
        account: PublicKey,
        /// Base units moved from bonded to unbonding.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
        /// First block height at which the entry may be withdrawn.
        release_height: u64,
        /// First block time (ms) at which the entry may be withdrawn.
        release_ms: u64,
    },
    /// Matured unbonding stake returned to the balance.
    Withdrawn {
        /// The staking account.
        account: PublicKey,
        /// Base units released to its balance.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// A model was registered.
    ModelRegistered {
        /// The new model's id.
        model: ModelId,
        /// Who earns its royalty (the treasury's account when no developer is named).
        developer: PublicKey,
    },
    /// A model's artifact was shown to name `developer`, who earns its royalty from now on.
    ModelClaimed {
        /// The claimed model.
        model: ModelId,
        /// The key the artifact's trailer names.
        developer: PublicKey,
    },
    /// A worker registered or updated its profile.
    WorkerRegistered {
        /// The worker's account.
        worker: PublicKey,
    },
    /// A gateway registered or moved its endpoint.
    GatewayRegistered {
        /// The gateway's account.
        gateway: PublicKey,
    },
    /// A user set (or, with `limit` 0, revoked) what a gateway may spend from its balance.
    AllowanceSet {
        /// The paying account.
        user: PublicKey,
        /// The gateway allowed.
        gateway: PublicKey,
        /// Base units it may hold in escrow or have charged from now on.
        #[serde(with = "crate::amount_serde")]
        limit: Amount,
    },
    /// A validator registered.
    ValidatorRegistered {
        /// The validator's account.
        validator: PublicKey,
    },
    /// A task opened; `escrow = max_tokens x price`.
    TaskSubmitted {
        /// The task's id (its SubmitTask transaction's id).
        task: TaskId,
        /// The paying user.
        user: PublicKey,
        /// The model the task runs on.
        model: ModelId,
        /// Price per token fixed for this task.
        #[serde(with = "crate::amount_serde")]
        price: Amount,
        /// Base units locked from the user's balance.
        #[serde(with = "crate::amount_serde")]
        escrow: Amount,
    },
    /// A result was recorded; `fee` stays escrowed until settlement, the rest went back.
    ResultSubmitted {
        /// The task.
        task: TaskId,
        /// Prompt plus completion tokens, at most the task's `max_tokens`.
        billed_tokens: u64,
        /// `billed_tokens x price`, kept in escrow until the task settles.
        #[serde(with = "crate::amount_serde")]
        fee: Amount,
        /// Escrow returned to the user at once.
        #[serde(with = "crate::amount_serde")]
        refund: Amount,
    },
    /// The scoring committee was drawn. Each window stays open until both its last height and
    /// its last time (block timestamp, ms) have passed.
    CommitteeElected {
        /// The task to score.
        task: TaskId,
        /// The drawn validators, in draw order.
        members: Vec<PublicKey>,
        /// Last height of the commit window.
        commit_end_height: u64,
        /// Last block time (ms) of the commit window.
        commit_end_ms: u64,
        /// Last height of the reveal window.
        reveal_end_height: u64,
        /// Last block time (ms) of the reveal window.
        reveal_end_ms: u64,
    },
    /// A committee member committed a score.
    ScoreCommitted {
        /// The task.
        task: TaskId,
        /// The committing member.
        validator: PublicKey,
    },
    /// A committee member revealed a score.
    ScoreRevealed {
        /// The task.
        task: TaskId,
        /// The revealing member.
        validator: PublicKey,
        /// The revealed score, `0..=SCORE_MAX` or the abstain marker.
        score: u16,
    },
    /// A task was settled.
    TaskSettled {
        /// The task.
        task: TaskId,
        /// How it ended.
        outcome: SettleOutcome,
        /// The committee's median score; `None` without a quorum.
        median_score: Option<u16>,
    },
    /// Someone was paid out of a task's escrow.
    Paid {
        /// The task whose escrow paid.
        task: TaskId,
        /// The payee (the all-zero key for the treasury).
        account: PublicKey,
        /// Why the payee was paid.
        role: PayeeRole,
        /// Base units paid.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// Stake was slashed (burned), bonded first, then unbonding entries.
    Slashed {
        /// The slashed account.
        account: PublicKey,
        /// Base units burned.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
        /// What it did wrong.
        reason: SlashReason,
        /// The task the fault was found in.
        task: TaskId,
    },
    /// A worker of a task that settled under q_min earned a strike; `strikes` is its count now
    /// (a slash at `strikes_to_slash` resets it; paid tasks wear strikes off).
    Struck {
        /// The struck worker.
        account: PublicKey,
        /// The low-quality task.
        task: TaskId,
        /// The worker's strike count after this one.
        strikes: u8,
    },
    /// A task's escrow went back to its user: reclaimed, or returned by the chain at the first
    /// block past the deadline.
    TaskReclaimed {
        /// The task.
        task: TaskId,
        /// Base units returned to the user.
        #[serde(with = "crate::amount_serde")]
        amount: Amount,
    },
    /// A model's price changed at an epoch boundary.
    PriceUpdated {
        /// The repriced model.
        model: ModelId,
        /// Price per token before the epoch boundary.
        #[serde(with = "crate::amount_serde")]
        old_price: Amount,
        /// Price per token from now on.
        #[serde(with = "crate::amount_serde")]
        new_price: Amount,
        /// The epoch's paid demand over the staked capacity, in ppm.
        utilization_ppm: u64,
    },
}
