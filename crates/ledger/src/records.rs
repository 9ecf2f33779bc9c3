//! The records the ledger keeps per account, model, worker, validator and task.

use crate::params::{COMMITTEE_MAX, UNBONDING_ENTRIES_MAX};
use polylink_types::codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use polylink_types::{
    __bytes::BufMut, ARCHITECTURE_LEN_MAX, Amount, BoundedString, BoundedVec, DeviceProfile,
    ENDPOINT_LEN_MAX, Hash32, ModelId, PublicKey, RECEIPTS_MAX, SERVED_MAX, STAGES_MAX, ServedRange,
    SettleOutcome, TaskId, WorkReceipt, amount_serde, codec_fields,
};
use serde::{Deserialize, Serialize};

/// Most gateways one account allows at a time.
pub const ALLOWANCES_MAX: usize = 8;

/// Spendable balance, replay-protection nonce and the gateways allowed to spend from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable base units.
    #[serde(with = "amount_serde")]
    pub balance: Amount,
    /// Nonce the next transaction of this account must carry.
    pub nonce: u64,
    /// Its deposits, one per gateway allowed to spend them (`polylink_types::Allow`).
    pub allowances: BoundedVec<Allowance, ALLOWANCES_MAX>,
}
codec_fields!(Account { balance, nonce, allowances });

/// An account's deposit for one gateway: funds locked from its balance that only that gateway
/// can spend, on the account's tasks, so they cannot be spent twice across gateways.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    /// The gateway.
    pub gateway: PublicKey,
    /// Base units locked in the deposit; a task's escrow and fee come out of it and its unused
    /// escrow comes back to it.
    #[serde(with = "amount_serde")]
    pub limit: Amount,
    /// Hash of the API key the gateway accepts for the account (`polylink_types::ApiKey::hash`);
    /// zero: no API key, the deposit pays only for requests the account signed (vouchers).
    pub key_hash: Hash32,
    /// A pending cut: what the deposit falls to once `release_ms` has passed (the rest goes back
    /// to the balance at the account's next Allow or Withdraw).
    #[serde(with = "amount_serde")]
    pub lower_to: Amount,
    /// When the pending cut may be released, block time ms (0: none pending). Until then the
    /// whole deposit stays spendable, so a task the gateway opened before the cut still pays.
    pub release_ms: u64,
    /// Vouchers spent on this deposit that have not expired yet (each pays once).
    pub vouchers: BoundedVec<VoucherUse, VOUCHERS_LIVE_MAX>,
}
codec_fields!(Allowance { gateway, limit, key_hash, lower_to, release_ms, vouchers });

/// Most unexpired vouchers one deposit remembers (a voucher lives at most
/// `polylink_types::VOUCHER_TTL_MAX_MS`).
pub const VOUCHERS_LIVE_MAX: usize = 256;

/// A voucher spent on a deposit, remembered until it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherUse {
    /// `polylink_types::Voucher::id`.
    pub id: Hash32,
    /// When it expires, block time ms.
    pub expires_ms: u64,
}
codec_fields!(VoucherUse { id, expires_ms });

impl Account {
    /// The deposit for `gateway`, if any.
    pub fn allowance(&self, gateway: &PublicKey) -> Option<&Allowance> {
        self.allowances.iter().find(|a| a.gateway == *gateway)
    }
}

impl Allowance {
    /// An empty deposit for `gateway`.
    pub fn empty(gateway: PublicKey) -> Self {
        Self {
            gateway,
            limit: 0,
            key_hash: Hash32::ZERO,
            lower_to: 0,
            release_ms: 0,
            vouchers: BoundedVec::default(),
        }
    }

    /// What a gateway may still open tasks on without risk: the deposit, or the pending cut's
    /// level when that is lower (a cut announced is treated as done).
    pub fn spendable(&self) -> Amount {
        if self.release_ms == 0 { self.limit } else { self.limit.min(self.lower_to) }
    }

    /// Whether it holds nothing and remembers nothing (then it leaves the account).
    pub fn is_idle(&self) -> bool {
        self.limit == 0 && self.release_ms == 0 && self.vouchers.is_empty()
    }
}

/// Stake on its way out: still slashable until released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbonding {
    /// Base units.
    #[serde(with = "amount_serde")]
    pub amount: Amount,
    /// Height from which Withdraw releases it …
    pub release_height: u64,
    /// … once the block time has reached this too, ms.
    pub release_ms: u64,
}
codec_fields!(Unbonding { amount, release_height, release_ms });

/// An account's stake; one stake backs every role the account holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stake {
    /// Bonded base units (counts for role minimums and committee weight).
    #[serde(with = "amount_serde")]
    pub bonded: Amount,
    /// Unbonding entries, oldest first.
    pub unbonding: BoundedVec<Unbonding, UNBONDING_ENTRIES_MAX>,
    /// Unsettled tasks that can still slash this account (as a named worker, a stand-in or a
    /// committee member): Withdraw waits until there are none, so a slash always lands before
    /// the stake can leave, however long a task takes.
    pub at_risk_tasks: u32,
    /// Strikes: tasks this account served that settled under q_min, not yet worn off.
    pub strikes: u8,
    /// Paid tasks served since the last strike was added or worn off.
    pub clean_tasks: u32,
}
codec_fields!(Stake { bonded, unbonding, at_risk_tasks, strikes, clean_tasks });

impl Task {
    /// Whether the commit window is open in a block at `height` and `time_ms`.
    pub fn commit_open(&self, height: u64, time_ms: u64) -> bool {
        height <= self.commit_end_height || time_ms <= self.commit_end_ms
    }

    /// Whether the reveal window is open in a block at `height` and `time_ms`.
    pub fn reveal_open(&self, height: u64, time_ms: u64) -> bool {
        !self.commit_open(height, time_ms)
            && (height <= self.reveal_end_height || time_ms <= self.reveal_end_ms)
    }
}

impl Stake {
    /// Bonded plus unbonding: what a slash can reach.
    pub fn slashable(&self) -> Amount {
        self.unbonding.iter().fold(self.bonded, |sum, u| sum.saturating_add(u.amount))
    }
}

/// A registered model and its current price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Developer: the royalty receiver its artifact names, or [`crate::TREASURY`] while it
    /// names none (excluded from its tasks' committees).
    pub developer: PublicKey,
    /// sha256 of the GGUF artifact.
    pub artifact_hash: Hash32,
    /// Architecture name.
    pub architecture: BoundedString<ARCHITECTURE_LEN_MAX>,
    /// Transformer layers.
    pub layer_count: u32,
    /// Developer royalty, bps.
    pub royalty_bps: u16,
    /// p_min, per token.
    #[serde(with = "amount_serde")]
    pub price_floor: Amount,
    /// Current price per token.
    #[serde(with = "amount_serde")]
    pub price: Amount,
    /// Tokens of the current epoch's paid tasks (wash trades, where the user served its own
    /// task, not counted).
    pub epoch_tokens: u64,
}
codec_fields!(Model {
    developer,
    artifact_hash,
    architecture,
    layer_count,
    royalty_bps,
    price_floor,
    price,
    epoch_tokens
});

/// A registered worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Device profile.
    pub profile: DeviceProfile,
    /// Models and layer ranges served.
    pub served: BoundedVec<ServedRange, SERVED_MAX>,
    /// Where its pipeline server listens (`host:port`, a valid socket address).
    pub endpoint: BoundedString<ENDPOINT_LEN_MAX>,
    /// Height of the latest registration.
    pub registered_height: u64,
}
codec_fields!(Worker { profile, served, endpoint, registered_height });

/// A registered gateway: where the transcripts of the tasks it opens are fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// Where it serves transcripts (`host:port`, a valid socket address).
    pub endpoint: BoundedString<ENDPOINT_LEN_MAX>,
    /// Height of the latest registration.
    pub registered_height: u64,
}
codec_fields!(Gateway { endpoint, registered_height });

/// A registered score validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// Height of registration.
    pub registered_height: u64,
}
codec_fields!(Validator { registered_height });

/// One committee seat of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The validator.
    pub validator: PublicKey,
    /// Its commitment, once made.
    pub commitment: Option<Hash32>,
    /// Its revealed score, once revealed.
    pub score: Option<u16>,
    /// The digest of its evaluation, revealed with the score.
    pub work: Option<Hash32>,
}
codec_fields!(Member { validator, commitment, score, work });

/// What the task's gateway reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// sha256 of the output.
    pub output_hash: Hash32,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// What each worker that computed it signed for (signatures checked when the result was
    /// applied): only these workers are paid or struck for the task.
    pub receipts: BoundedVec<WorkReceipt, RECEIPTS_MAX>,
    /// Fee (billed tokens x price), held in escrow until settlement.
    #[serde(with = "amount_serde")]
    pub fee: Amount,
    /// Height at which the result was included.
    pub height: u64,
}
codec_fields!(TaskResult { output_hash, prompt_tokens, completion_tokens, receipts, fee, height });

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Escrowed, waiting for its result.
    Open,
    /// Result recorded; the committee is drawn at the next block.
    AwaitingCommittee,
    /// Committee drawn; commit and reveal windows running.
    Scoring,
    /// Settled with this outcome.
    Settled(SettleOutcome),
    /// The user took the escrow back after the deadline.
    Reclaimed,
}

impl TaskStatus {
    /// Lowercase name for errors.
    pub fn name(&self) -> &'static str {
        match self {
            TaskStatus::Open => "open",
            TaskStatus::AwaitingCommittee => "awaiting its committee",
            TaskStatus::Scoring => "scoring",
            TaskStatus::Settled(_) => "settled",
            TaskStatus::Reclaimed => "reclaimed",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            TaskStatus::Open => 0,
            TaskStatus::AwaitingCommittee => 1,
            TaskStatus::Scoring => 2,
            TaskStatus::Settled(SettleOutcome::Paid) => 3,
            TaskStatus::Settled(SettleOutcome::LowQuality) => 4,
            TaskStatus::Settled(SettleOutcome::NoQuorum) => 5,
            TaskStatus::Reclaimed => 6,
            TaskStatus::Settled(SettleOutcome::Unchecked) => 7,
        }
    }
}

impl Write for TaskStatus {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.tag());
    }
}

impl EncodeSize for TaskStatus {
    fn encode_size(&self) -> usize {
        1
    }
}

impl Read for TaskStatus {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => TaskStatus::Open,
            1 => TaskStatus::AwaitingCommittee,
            2 => TaskStatus::Scoring,
            3 => TaskStatus::Settled(SettleOutcome::Paid),
            4 => TaskStatus::Settled(SettleOutcome::LowQuality),
            5 => TaskStatus::Settled(SettleOutcome::NoQuorum),
            6 => TaskStatus::Reclaimed,
            7 => TaskStatus::Settled(SettleOutcome::Unchecked),
            other => return Err(CodecError::InvalidEnum(other)),
        })
    }
}

/// An inference task from submission to settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Who pays.
    pub user: PublicKey,
    /// Whether the gateway opened it on the user's allowance (its unused escrow then goes back
    /// to that allowance as well as to the balance).
    pub allowed: bool,
    /// Model.
    pub model: ModelId,
    /// Most tokens paid for.
    pub max_tokens: u32,
    /// sha256 of the prompt.
    pub prompt_hash: Hash32,
    /// Price per token fixed at submission.
    #[serde(with = "amount_serde")]
    pub price: Amount,
    /// Base units currently escrowed (max_tokens x price, then the fee, then 0).
    #[serde(with = "amount_serde")]
    pub escrow: Amount,
    /// Workers in pipeline order.
    pub workers: BoundedVec<PublicKey, STAGES_MAX>,
    /// The gateway that reports the result and serves the transcript to the committee.
    pub gateway: PublicKey,
    /// Height of SubmitTask.
    pub submitted_height: u64,
    /// Block time of SubmitTask, ms.
    pub submitted_ms: u64,
    /// Last block time (ms) at which a result is accepted; the escrow goes back at the first
    /// block past it.
    pub deadline_ms: u64,
    /// The sampling seed the SubmitTask fixed.
    pub seed: u64,
    /// Status.
    pub status: TaskStatus,
    /// The reported result.
    pub result: Option<TaskResult>,
    /// Scoring committee, in draw order.
    pub committee: BoundedVec<Member, COMMITTEE_MAX>,
    /// Commits are accepted until both this height and `commit_end_ms` have passed (0 until
    /// drawn).
    pub commit_end_height: u64,
    /// See `commit_end_height`.
    pub commit_end_ms: u64,
    /// Reveals are accepted after the commit window until both this height and `reveal_end_ms`
    /// have passed; settlement runs at the end of the first block past both (0 until drawn).
    pub reveal_end_height: u64,
    /// See `reveal_end_height`.
    pub reveal_end_ms: u64,
    /// Median of revealed scores, once settled with enough reveals.
    pub median_score: Option<u16>,
}
codec_fields!(Task {
    user,
    allowed,
    model,
    max_tokens,
    prompt_hash,
    price,
    escrow,
    workers,
    gateway,
    submitted_height,
    submitted_ms,
    deadline_ms,
    seed,
    status,
    result,
    committee,
    commit_end_height,
    commit_end_ms,
    reveal_end_height,
    reveal_end_ms,
    median_score
});

/// Global counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Total supply: genesis balances minus everything slashed and every fee burned.
    #[serde(with = "amount_serde")]
    pub supply: Amount,
    /// Treasury balance.
    #[serde(with = "amount_serde")]
    pub treasury: Amount,
    /// Everything slashed (burned) so far.
    #[serde(with = "amount_serde")]
    pub slashed: Amount,
    /// Every transaction fee (burned) so far.
    #[serde(with = "amount_serde")]
    pub fees_burned: Amount,
    /// Id the next registered model gets.
    pub next_model_id: ModelId,
}
codec_fields!(Totals { supply, treasury, slashed, fees_burned, next_model_id });

/// A task due at the end of the first block at or past `height` (settlement), or past the
/// block time `height` ms (a deadline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SettleKey {
    /// The height (or time, ms) it is due at.
    pub height: u64,
    /// The task.
    pub task: TaskId,
}
codec_fields!(SettleKey { height, task });
