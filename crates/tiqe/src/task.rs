//! What a validator scores: the worker's raw submission, the checked [`Task`] built from it, and
//! the [`Verdict`] every [`Evaluator`] returns.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::Result;

/// Why generation ended, as the worker claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// The model emitted its end-of-generation token.
    Eos,
    /// The task's `max_tokens` was reached.
    Length,
    /// Someone other than the model cut the answer short (the client left, the backend failed,
    /// a timeout): no claim about the end; the delivered prefix is judged token by token.
    #[serde(rename = "cut_short")]
    CutShort,
}

/// The generation settings of the task (from the chain) and the worker's claim of how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Sampling temperature; 0 means greedy.
    pub temperature: f32,
    /// Top-k the worker sampled with (0 = all).
    pub top_k: usize,
    /// Top-p the worker sampled with (1 = all).
    pub top_p: f32,
    /// The task's sampling seed, when the chain fixed it before inference: every token (greedy
    /// or sampled) is then checked against the verifiable-sampling rule
    /// (`polylink_infer::sample`); without it sampled answers get the statistical test.
    pub seed: Option<u64>,
    /// Most tokens the task allows.
    pub max_tokens: usize,
    /// How the worker says its answer ended.
    pub finish: Finish,
}

impl Default for Generation {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: 0, top_p: 1.0, seed: None, max_tokens: 128, finish: Finish::Eos }
    }
}

/// What arrives from off chain: the prompt, the worker's output bytes, and what the chain holds.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The user's message.
    pub prompt: String,
    /// The model's input exactly as served, when it is not `prompt` rendered as one user turn
    /// (a system prompt, several turns, a raw completion): the caller checked these ids against
    /// the chain and the request; `prompt` is then the question the text evaluators read.
    pub prompt_ids: Option<Vec<u32>>,
    /// The output exactly as the worker delivered it (may be anything).
    pub output: Vec<u8>,
    /// The token ids the worker says it produced, when it sent them.
    pub output_ids: Option<Vec<u32>>,
    /// sha256 of the output recorded on chain by SubmitResult.
    pub output_sha256: Option<[u8; 32]>,
    /// Artifact sha256 of the registered model.
    pub model_sha256: Option<[u8; 32]>,
    /// Generation settings and finish claim.
    pub generation: Generation,
}

/// Sizes a validator accepts before it spends any compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest prompt, in bytes.
    pub prompt_bytes_max: usize,
    /// Largest output, in bytes.
    pub output_bytes_max: usize,
    /// Largest `max_tokens` a task may claim.
    pub max_tokens_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { prompt_bytes_max: 8 * 1024, output_bytes_max: 16 * 1024, max_tokens_max: 1024 }
    }
}

/// A submission that passed the checks: valid UTF-8, within limits, matching the chain's hash.
#[derive(Debug, Clone)]
pub struct Task {
    /// The user's message.
    pub prompt: String,
    /// The model's input exactly as served, if not `prompt` as one user turn (see
    /// [`Submission::prompt_ids`]).
    pub prompt_ids: Option<Vec<u32>>,
    /// The worker's answer.
    pub output: String,
    /// Token ids the worker claims, if sent.
    pub output_ids: Option<Vec<u32>>,
    /// Artifact sha256 of the registered model.
    pub model_sha256: Option<[u8; 32]>,
    /// Generation settings and finish claim.
    pub generation: Generation,
}

impl Task {
    /// A greedy task with no chain hashes (tools and tests).
    pub fn greedy(prompt: &str, output: &str, max_tokens: usize, finish: Finish) -> Self {
        Self {
            prompt: prompt.to_string(),
            prompt_ids: None,
            output: output.to_string(),
            output_ids: None,
            model_sha256: None,
            generation: Generation { max_tokens, finish, ..Generation::default() },
        }
    }

    /// sha256 over the prompt and output (length-prefixed), used to seed per-task choices.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((self.prompt.len() as u64).to_le_bytes());
        h.update(self.prompt.as_bytes());
        h.update(self.output.as_bytes());
        h.finalize().into()
    }
}

/// Why a submission was refused before evaluation; the worker is at fault, so it scores 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Output larger than the limit.
    OutputTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Output is not UTF-8.
    NotUtf8 {
        /// Offset of the first bad byte.
        at: usize,
    },
    /// Output's sha256 differs from the chain's.
    HashMismatch {
        /// On chain (hex).
        chain: String,
        /// Of the delivered bytes (hex).
        delivered: String,
    },
    /// `finish = length` but more tokens claimed than allowed, or `max_tokens` out of range.
    BadGeneration(String),
}

impl Rejection {
    /// The verdict for a refused submission: score 0, certain, with the reason.
    pub fn verdict(&self) -> Verdict {
        Verdict { score: 0, uncertain: false, evidence: json!({ "rejected": format!("{self:?}") }) }
    }
}

impl Submission {
    /// Checks the submission the way a careful validator does before running any model.
    /// `Err(Rejection)` means the worker delivered something unacceptable;
    /// an oversized prompt is the task's fault and is an error instead.
    pub fn check(self, limits: &Limits) -> Result<std::result::Result<Task, Rejection>> {
        if self.prompt.len() > limits.prompt_bytes_max {
            return Err(crate::TiqeError::Refused(format!(
                "prompt of {} bytes exceeds {}",
                self.prompt.len(),
                limits.prompt_bytes_max
            )));
        }
        let g = self.generation;
        if g.max_tokens == 0
            || g.max_tokens > limits.max_tokens_max
            || !(0.0..=100.0).contains(&g.temperature)
            || !(g.top_p > 0.0 && g.top_p <= 1.0)
        {
            return Ok(Err(Rejection::BadGeneration(format!(
                "max_tokens {} (limit {}), temperature {}, top_p {}",
                g.max_tokens, limits.max_tokens_max, g.temperature, g.top_p
            ))));
        }
        if self.output.len() > limits.output_bytes_max {
            return Ok(Err(Rejection::OutputTooLarge {
                bytes: self.output.len(),
                max: limits.output_bytes_max,
            }));
        }
        if let Some(chain) = self.output_sha256 {
            let delivered: [u8; 32] = Sha256::digest(&self.output).into();
            if delivered != chain {
                return Ok(Err(Rejection::HashMismatch {
                    chain: hex::encode(chain),
                    delivered: hex::encode(delivered),
                }));
            }
        }
        if let Some(ids) = &self.output_ids
            && ids.len() > g.max_tokens + 1
        {
            return Ok(Err(Rejection::BadGeneration(format!(
                "{} output ids for max_tokens {}",
                ids.len(),
                g.max_tokens
            ))));
        }
        let output = match String::from_utf8(self.output) {
            Ok(s) => s,
            Err(e) => return Ok(Err(Rejection::NotUtf8 { at: e.utf8_error().valid_up_to() })),
        };
        Ok(Ok(Task {
            prompt: self.prompt,
            prompt_ids: self.prompt_ids,
            output,
            output_ids: self.output_ids,
            model_sha256: self.model_sha256,
            generation: g,
        }))
    }
}

/// One evaluator's (or the cascade's) judgement of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Quality score, 0 (cheat or useless) to 1000 (honest and good).
    pub score: u16,
    /// The evaluator is not sure; a cascade escalates such tasks.
    pub uncertain: bool,
    /// What the score rests on, for audit.
    pub evidence: Value,
}

/// The highest score.
pub const SCORE_MAX: u16 = 1000;

/// A unit-interval value as a score, rounded and clamped (NaN scores 0).
pub fn to_score(x: f64) -> u16 {
    if x.is_nan() { 0 } else { (x.clamp(0.0, 1.0) * f64::from(SCORE_MAX)).round() as u16 }
}

/// A pluggable evaluator.
pub trait Evaluator {
    /// Short stable name, used as the key of its evidence.
    fn name(&self) -> &'static str;
    /// Scores one task.
    fn evaluate(&self, task: &Task) -> Result<Verdict>;
}
