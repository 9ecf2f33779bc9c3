//! Transaction kinds and their payloads (what a user, developer, worker or validator asks for).

use crate::codec_fields;
use crate::{
    Amount, ArtifactClaim, BoundedString, BoundedVec, Hash32, ModelId, PublicKey, RECEIPTS_MAX,
    SignedReceipt, TaskId,
};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use serde::{Deserialize, Serialize};

/// Most models or layer ranges one worker may declare.
pub const SERVED_MAX: usize = 16;
/// Most pipeline stages (workers) one task may use.
pub const STAGES_MAX: usize = 8;
/// Longest architecture name in bytes (`llama`, `gemma3`, `qwen2`, ...).
pub const ARCHITECTURE_LEN_MAX: usize = 32;
/// Longest worker endpoint in bytes (`host:port`; a bracketed IPv6 address with a port fits).
pub const ENDPOINT_LEN_MAX: usize = 64;

/// Move `amount` from the signer to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Receiver.
    pub to: PublicKey,
    /// Base units moved.
    #[serde(with = "crate::amount_serde")]
    pub amount: Amount,
}
codec_fields!(Transfer { to, amount });

/// Lock `amount` of the signer's balance as stake (one stake backs every role the signer has).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bond {
    /// Base units bonded.
    #[serde(with = "crate::amount_serde")]
    pub amount: Amount,
}
codec_fields!(Bond { amount });

/// Start unbonding `amount` of bonded stake; it stays slashable until released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unbond {
    /// Base units to unbond.
    #[serde(with = "crate::amount_serde")]
    pub amount: Amount,
}
codec_fields!(Unbond { amount });

/// Register a model (once per artifact). Its royalty goes to the key the artifact itself names
/// (proved by `claim`), else to the treasury: whoever signs the registration earns nothing by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterModel {
    /// sha256 of the GGUF artifact.
    pub artifact_hash: Hash32,
    /// Proof that the artifact ends with its developer's trailer; `None` for an artifact that
    /// names nobody (its royalty goes to the treasury until its developer claims it).
    pub claim: Option<ArtifactClaim>,
    /// Architecture name as in the GGUF metadata.
    pub architecture: BoundedString<ARCHITECTURE_LEN_MAX>,
    /// Number of transformer layers.
    pub layer_count: u32,
    /// Developer royalty in basis points of each fee.
    pub royalty_bps: u16,
    /// Lowest price per token in base units; also the starting price.
    #[serde(with = "crate::amount_serde")]
    pub price_floor: Amount,
}
codec_fields!(RegisterModel { artifact_hash, claim, architecture, layer_count, royalty_bps, price_floor });

/// What a device offers, measured by the worker itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Memory available for model weights and caches, MiB.
    pub memory_mib: u64,
    /// Link bandwidth, kbit/s (the median over the peers measured).
    pub bandwidth_kbps: u64,
    /// Measured one-way latency to its peers, the median, microseconds; 0 when no peer was measured.
    pub latency_us: u64,
}
codec_fields!(DeviceProfile { memory_mib, bandwidth_kbps, latency_us });

/// One model (or a contiguous layer range of it) served by a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedRange {
    /// The model.
    pub model: ModelId,
    /// First layer served.
    pub layer_start: u32,
    /// One past the last layer served (`layer_count` for the whole model).
    pub layer_end: u32,
    /// Measured time per layer per token for this model on this device, microseconds.
    pub layer_time_us: u32,
}
codec_fields!(ServedRange { model, layer_start, layer_end, layer_time_us });

/// Register (or update) the signer as a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterWorker {
    /// The device.
    pub profile: DeviceProfile,
    /// Models and layer ranges served.
    pub served: BoundedVec<ServedRange, SERVED_MAX>,
    /// Where its pipeline server listens, `host:port` (the ledger requires a socket address).
    pub endpoint: BoundedString<ENDPOINT_LEN_MAX>,
}
codec_fields!(RegisterWorker { profile, served, endpoint });

/// Register (or update) the signer as a gateway: it opens tasks for its users, relays their
/// workers' answers, reports each task's result and keeps its transcript for the committee,
/// served at `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterGateway {
    /// Where it serves transcripts to committees, `host:port` (the ledger requires a socket
    /// address; validators fetch `http://{endpoint}/v1/transcripts/...`).
    pub endpoint: BoundedString<ENDPOINT_LEN_MAX>,
}
codec_fields!(RegisterGateway { endpoint });

/// Open a task: escrows `max_tokens x current price` of the signer's balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitTask {
    /// Model asked for.
    pub model: ModelId,
    /// Most tokens (prompt + completion) the user pays for.
    pub max_tokens: u32,
    /// sha256 of the prompt (the prompt itself stays off chain).
    pub prompt_hash: Hash32,
    /// Highest price per token the user accepts; the task fails if the current price is higher.
    #[serde(with = "crate::amount_serde")]
    pub max_price: Amount,
    /// The worker(s) serving it, in pipeline order.
    pub workers: BoundedVec<PublicKey, STAGES_MAX>,
    /// The registered gateway that relays it, reports its result and keeps its transcript.
    pub gateway: PublicKey,
    /// The sampling seed, fixed before inference starts: token i of the answer is drawn with
    /// randomness keyed by (seed, i), so a validator can reproduce an honest sample.
    pub seed: u64,
    /// Who pays, when not the signer: the gateway (the signer, which must be the task's gateway)
    /// spends from that account's deposit for it ([`Allow`]). `None`: the signer pays.
    pub payer: Option<PublicKey>,
    /// The payer's own authorization of this request ([`crate::SignedVoucher`]): required when the
    /// deposit has no API key (`key_hash` zero), accepted on any deposit.
    pub voucher: Option<crate::SignedVoucher>,
}
codec_fields!(SubmitTask {
    model,
    max_tokens,
    prompt_hash,
    max_price,
    workers,
    gateway,
    seed,
    payer,
    voucher
});

/// Sets the signer's deposit for `gateway` to `limit`: a raise is locked from the balance at once;
/// a cut stays spendable for the chain's notice period (`deposit_notice_ms`) and is then released
/// to the balance by the signer's next Allow or Withdraw. The gateway opens the signer's tasks from
/// the deposit (the unused escrow of each comes back to it), so the deposit bounds what it can
/// spend, and no other gateway can spend the same funds. The user keeps its key: `key_hash` is the
/// hash of the API key the user gives the gateway (`ApiKey::hash`), by which the gateway knows the
/// user's requests; zero means no API key, and then the deposit pays only for requests the user
/// signed ([`crate::SignedVoucher`]). `limit` 0 empties it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    /// The gateway allowed.
    pub gateway: PublicKey,
    /// What the deposit holds from now on (after the notice, for a cut).
    #[serde(with = "crate::amount_serde")]
    pub limit: Amount,
    /// Hash of the API key the gateway accepts for this account (zero: signed requests only).
    pub key_hash: Hash32,
}
codec_fields!(Allow { gateway, limit, key_hash });

/// The task's gateway reports the work done for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResult {
    /// The task.
    pub task: TaskId,
    /// sha256 of the output text.
    pub output_hash: Hash32,
    /// Prompt tokens processed.
    pub prompt_tokens: u32,
    /// Completion tokens generated.
    pub completion_tokens: u32,
    /// The signed receipts of the workers that computed it: the listed workers that served and
    /// any stand-in that took over a failed stage. Only they are paid (by rows x layers) or
    /// answer for the result.
    pub receipts: BoundedVec<SignedReceipt, RECEIPTS_MAX>,
}
codec_fields!(SubmitResult { task, output_hash, prompt_tokens, completion_tokens, receipts });

/// A committee member commits to its score and the digest of its evaluation:
/// `commitment = score_commitment(score, work, salt, signer)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitScore {
    /// The task.
    pub task: TaskId,
    /// The hiding commitment.
    pub commitment: Hash32,
}
codec_fields!(CommitScore { task, commitment });

/// A committee member opens its commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealScore {
    /// The task.
    pub task: TaskId,
    /// Quality score, 0..=1000.
    pub score: u16,
    /// Digest of the evaluation: what every validator that really evaluated this transcript
    /// computes alike (the validator's `work_digest`); zero for an abstention.
    pub work: Hash32,
    /// The salt used in the commitment.
    pub salt: Hash32,
}
codec_fields!(RevealScore { task, score, work, salt });

/// The user takes back the escrow of a task that got no result before its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimTask {
    /// The task.
    pub task: TaskId,
}
codec_fields!(ReclaimTask { task });

/// Anyone shows that a registered model's artifact names its developer; the royalty goes to
/// that key from then on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimModel {
    /// The model.
    pub model: ModelId,
    /// Proof over the model's artifact hash.
    pub claim: ArtifactClaim,
}
codec_fields!(ClaimModel { model, claim });

/// The commitment a validator publishes for `score` and the digest `work` of its evaluation,
/// with secret `salt`.
pub fn score_commitment(score: u16, work: &Hash32, salt: &Hash32, validator: &PublicKey) -> Hash32 {
    Hash32::digest(&[b"polylink-score-v2", &score.to_be_bytes(), &work.0, &salt.0, &validator.0])
}

/// Every transaction kind. The encoding is a one-byte tag then the payload.
// SubmitTask, the most frequent kind, carries its voucher inline (about 200 bytes): boxing it
// would add an allocation to the common case to save bytes on rare ones (the codec has no Box).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TxKind {
    /// Tag 0.
    Transfer(Transfer),
    /// Tag 1.
    Bond(Bond),
    /// Tag 2.
    Unbond(Unbond),
    /// Tag 3: release every matured unbonding entry to the balance.
    Withdraw,
    /// Tag 4.
    RegisterModel(RegisterModel),
    /// Tag 5.
    RegisterWorker(RegisterWorker),
    /// Tag 6: register the signer as a score validator.
    RegisterValidator,
    /// Tag 7.
    SubmitTask(SubmitTask),
    /// Tag 8.
    SubmitResult(SubmitResult),
    /// Tag 9.
    CommitScore(CommitScore),
    /// Tag 10.
    RevealScore(RevealScore),
    /// Tag 11.
    ReclaimTask(ReclaimTask),
    /// Tag 12.
    ClaimModel(ClaimModel),
    /// Tag 13.
    RegisterGateway(RegisterGateway),
    /// Tag 14.
    Allow(Allow),
}

/// Applies `$body` to the payload of every payload-carrying variant.
macro_rules! with_payload {
    ($kind:expr, $p:ident => $body:expr, $unit:expr) => {
        match $kind {
            TxKind::Transfer($p) => $body,
            TxKind::Bond($p) => $body,
            TxKind::Unbond($p) => $body,
            TxKind::RegisterModel($p) => $body,
            TxKind::RegisterWorker($p) => $body,
            TxKind::SubmitTask($p) => $body,
            TxKind::SubmitResult($p) => $body,
            TxKind::CommitScore($p) => $body,
            TxKind::RevealScore($p) => $body,
            TxKind::ReclaimTask($p) => $body,
            TxKind::ClaimModel($p) => $body,
            TxKind::RegisterGateway($p) => $body,
            TxKind::Allow($p) => $body,
            TxKind::Withdraw | TxKind::RegisterValidator => $unit,
        }
    };
}

impl TxKind {
    /// The encoding tag.
    pub fn tag(&self) -> u8 {
        match self {
            TxKind::Transfer(_) => 0,
            TxKind::Bond(_) => 1,
            TxKind::Unbond(_) => 2,
            TxKind::Withdraw => 3,
            TxKind::RegisterModel(_) => 4,
            TxKind::RegisterWorker(_) => 5,
            TxKind::RegisterValidator => 6,
            TxKind::SubmitTask(_) => 7,
            TxKind::SubmitResult(_) => 8,
            TxKind::CommitScore(_) => 9,
            TxKind::RevealScore(_) => 10,
            TxKind::ReclaimTask(_) => 11,
            TxKind::ClaimModel(_) => 12,
            TxKind::RegisterGateway(_) => 13,
            TxKind::Allow(_) => 14,
        }
    }

    /// A short lowercase name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer(_) => "transfer",
            TxKind::Bond(_) => "bond",
            TxKind::Unbond(_) => "unbond",
            TxKind::Withdraw => "withdraw",
            TxKind::RegisterModel(_) => "register_model",
            TxKind::RegisterWorker(_) => "register_worker",
            TxKind::RegisterValidator => "register_validator",
            TxKind::SubmitTask(_) => "submit_task",
            TxKind::SubmitResult(_) => "submit_result",
            TxKind::CommitScore(_) => "commit_score",
            TxKind::RevealScore(_) => "reveal_score",
            TxKind::ReclaimTask(_) => "reclaim_task",
            TxKind::ClaimModel(_) => "claim_model",
            TxKind::RegisterGateway(_) => "register_gateway",
            TxKind::Allow(_) => "allow",
        }
    }
}

impl Write for TxKind {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.tag());
        with_payload!(self, p => p.write(buf), ());
    }
}

impl EncodeSize for TxKind {
    fn encode_size(&self) -> usize {
        1 + with_payload!(self, p => p.encode_size(), 0)
    }
}

impl Read for TxKind {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(match u8::read(buf)? {
            0 => TxKind::Transfer(ReadExt::read(buf)?),
            1 => TxKind::Bond(ReadExt::read(buf)?),
            2 => TxKind::Unbond(ReadExt::read(buf)?),
            3 => TxKind::Withdraw,
            4 => TxKind::RegisterModel(ReadExt::read(buf)?),
            5 => TxKind::RegisterWorker(ReadExt::read(buf)?),
            6 => TxKind::RegisterValidator,
            7 => TxKind::SubmitTask(ReadExt::read(buf)?),
            8 => TxKind::SubmitResult(ReadExt::read(buf)?),
            9 => TxKind::CommitScore(ReadExt::read(buf)?),
            10 => TxKind::RevealScore(ReadExt::read(buf)?),
            11 => TxKind::ReclaimTask(ReadExt::read(buf)?),
            12 => TxKind::ClaimModel(ReadExt::read(buf)?),
            13 => TxKind::RegisterGateway(ReadExt::read(buf)?),
            14 => TxKind::Allow(ReadExt::read(buf)?),
            other => return Err(CodecError::InvalidEnum(other)),
        })
    }
}
