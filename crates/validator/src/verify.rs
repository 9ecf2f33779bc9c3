//! Checks a fetched transcript against the chain before any model runs. The transcript is the
//! gateway's word: it is scored only when it agrees with the chain (prompt ids, output, token
//! counts) and with what the workers signed (their receipts' digests of the token ids fed to the
//! first stage and of the sampling and tokens the last stage drew). One that contradicts either,
//! or that is no transcript at all (oversized, not JSON, not UTF-8), is the gateway's fault and
//! no evidence against other workers: the validator abstains, so nobody is paid for the task and
//! the user gets the fee back, but no worker is struck for what a gateway wrote. Only when the
//! gateway itself signed every receipt (one operator, one key, serving the whole task) are its
//! transcript's faults its own worker's: that scores 0. Any prompt shape is scored: a chat
//! with a system prompt or several turns, or a raw completion (the scorer checks that it encodes
//! to the hashed prompt ids, and teacher-forces the answer after those ids).

use polylink_ledger::Task;
use polylink_protocol::{Ending, PromptRecord, Transcript, output_hash, prompt_hash};
use polylink_types::{Hash32, ModelId, PublicKey, TaskId, TokenDigest, WorkReceipt};

use crate::error::{Result, ValidatorError};

/// Largest transcript body read, bytes; a larger one is not scored.
pub(crate) const TRANSCRIPT_BYTES_MAX: usize = 1 << 20;

/// What the chain says about a task that is being scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnChain {
    /// The task.
    pub task: TaskId,
    /// Its model.
    pub model: ModelId,
    /// Prompt plus completion tokens the user escrowed.
    pub max_tokens: u32,
    /// sha256 of the prompt token ids.
    pub prompt_hash: Hash32,
    /// sha256 of the output, from the result.
    pub output_hash: Hash32,
    /// Prompt tokens billed.
    pub prompt_tokens: u32,
    /// Completion tokens billed.
    pub completion_tokens: u32,
    /// The sampling seed the task fixed.
    pub seed: u64,
    /// The workers' receipts in the result.
    pub receipts: Vec<WorkReceipt>,
    /// The gateway that opened the task and wrote its transcript.
    pub gateway: PublicKey,
}

impl OnChain {
    /// Whether the task's gateway signed every receipt: the transcript's author is then its
    /// only worker, and what the transcript gets wrong is that worker's doing.
    pub(crate) fn gateway_served(&self) -> bool {
        !self.receipts.is_empty() && self.receipts.iter().all(|r| r.worker == self.gateway)
    }
}

impl OnChain {
    /// What the chain's record of task `task` says; the task must have its result.
    pub(crate) fn from_task(task: TaskId, record: &Task) -> Result<Self> {
        let result = record
            .result
            .as_ref()
            .ok_or_else(|| ValidatorError::Chain(format!("task {task} has no result on chain yet")))?;
        Ok(Self {
            task,
            model: record.model,
            max_tokens: record.max_tokens,
            prompt_hash: record.prompt_hash,
            output_hash: result.output_hash,
            prompt_tokens: result.prompt_tokens,
            completion_tokens: result.completion_tokens,
            seed: record.seed,
            receipts: result.receipts.as_slice().to_vec(),
            gateway: record.gateway,
        })
    }
}

/// A transcript consistent with the chain and the receipts, ready for the evaluators.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    /// The task.
    pub task: TaskId,
    /// The request's prompt, as the gateway recorded it.
    pub prompt: PromptRecord,
    /// The prompt token ids (hash checked).
    pub prompt_ids: Vec<u32>,
    /// The output (hash checked).
    pub output: String,
    /// The worker's token ids for it, as the gateway recorded them (may be empty).
    pub output_ids: Vec<u32>,
    /// Every token the last stage drew (checked against the receipts; the delivered ids first).
    pub drawn_ids: Vec<u32>,
    /// Completion tokens billed on chain (equal to the ids' count when there are ids; the
    /// scorer bounds it by the text otherwise).
    pub completion_tokens: u32,
    /// Completion tokens the client asked for.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// The sampling seed, from the chain.
    pub seed: u64,
    /// The claimed ending.
    pub ending: Ending,
    /// Whether the gateway signed every receipt (see [`OnChain::gateway_served`]).
    pub gateway_served: bool,
}

/// The verdict of the checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Consistent; score it.
    Score(Checked),
    /// The gateway's transcript contradicts the chain or the receipts: no evidence about the
    /// workers, for this reason.
    Abstain(String),
    /// As `Abstain`, but the gateway was the task's only worker: its own fault, scored 0.
    Zero(String),
}

/// Checks a transcript body against the chain.
pub(crate) fn check(body: &[u8], chain: &OnChain) -> Verdict {
    match consistent(body, chain) {
        Ok(checked) => Verdict::Score(checked),
        Err(why) if chain.gateway_served() => Verdict::Zero(why),
        Err(why) => Verdict::Abstain(why),
    }
}

fn consistent(body: &[u8], chain: &OnChain) -> std::result::Result<Checked, String> {
    if body.len() > TRANSCRIPT_BYTES_MAX {
        return Err(format!("transcript of {} bytes exceeds {TRANSCRIPT_BYTES_MAX}", body.len()));
    }
    let t: Transcript =
        serde_json::from_slice(body).map_err(|e| format!("transcript is not valid UTF-8 JSON: {e}"))?;
    if t.task != chain.task {
        return Err(format!("transcript is of task {}, not {}", t.task, chain.task));
    }
    let ids_hash = prompt_hash(&t.prompt_ids);
    if ids_hash != chain.prompt_hash {
        return Err(format!("prompt ids hash to {ids_hash}, the chain holds {}", chain.prompt_hash));
    }
    let out_hash = output_hash(&t.output);
    if out_hash != chain.output_hash {
        return Err(format!("output hashes to {out_hash}, the chain holds {}", chain.output_hash));
    }
    let prompt_tokens = t.prompt_ids.len() as u64;
    if prompt_tokens != u64::from(chain.prompt_tokens)
        || prompt_tokens + u64::from(t.max_tokens) != u64::from(chain.max_tokens)
    {
        return Err(format!(
            "{prompt_tokens} prompt ids and max_tokens {} disagree with the chain's {} prompt tokens of {} escrowed",
            t.max_tokens, chain.prompt_tokens, chain.max_tokens
        ));
    }
    // The user pays for the completion tokens the result claims: the transcript's ids count them.
    if !t.output_ids.is_empty() && t.output_ids.len() as u64 != u64::from(chain.completion_tokens) {
        return Err(format!(
            "the result bills {} completion tokens, the transcript holds {} token ids",
            chain.completion_tokens,
            t.output_ids.len()
        ));
    }
    if !(0.0..=2.0).contains(&t.temperature) || t.max_tokens == 0 {
        return Err(format!("temperature {} or max_tokens {} out of range", t.temperature, t.max_tokens));
    }
    if t.prompt.to_prompt().is_none() {
        return Err("the prompt record names an unknown role".into());
    }
    drawn_as_signed(&t, chain)?;
    Ok(Checked {
        task: chain.task,
        prompt: t.prompt,
        prompt_ids: t.prompt_ids,
        output: t.output,
        output_ids: t.output_ids,
        drawn_ids: t.drawn_ids,
        completion_tokens: chain.completion_tokens,
        max_tokens: t.max_tokens,
        temperature: t.temperature,
        top_p: t.top_p,
        seed: chain.seed,
        ending: t.finish,
        gateway_served: chain.gateway_served(),
    })
}

/// Whether the transcript's prompt and drawn tokens are what the workers signed for: a first
/// stage computed the prompt then each drawn token fed back (all but the last, its rows long), a
/// last stage drew one token per row past the prompt's last, with the transcript's sampling and
/// the chain's seed. The delivered ids are the first drawn ones, and nothing is billed beyond
/// what was drawn.
fn drawn_as_signed(t: &Transcript, chain: &OnChain) -> std::result::Result<(), String> {
    let drawn = &t.drawn_ids;
    if !drawn.starts_with(&t.output_ids) {
        return Err("the delivered token ids are not the first of those drawn".into());
    }
    if u64::from(chain.completion_tokens) > drawn.len() as u64 {
        return Err(format!(
            "the result bills {} completion tokens, the transcript holds {} drawn",
            chain.completion_tokens,
            drawn.len()
        ));
    }
    let prompt = t.prompt_ids.len();
    let fed: Vec<u32> = t.prompt_ids.iter().chain(drawn).copied().collect();
    for r in &chain.receipts {
        let rows = r.rows as usize;
        if r.layer_start == 0 {
            let ids = fed.get(..rows).ok_or_else(|| {
                format!("{} computed {rows} positions, the transcript holds {} ids", r.worker, fed.len())
            })?;
            if TokenDigest::fed().over(ids) != r.fed {
                return Err(format!(
                    "the token ids {} signed for are not the transcript's prompt and drawn tokens",
                    r.worker
                ));
            }
        }
        if r.drawn != Hash32::ZERO {
            let k = (rows + 1).saturating_sub(prompt);
            let ids = drawn.get(..k).filter(|_| rows >= prompt).ok_or_else(|| {
                format!("{} drew {k} tokens, the transcript holds {}", r.worker, drawn.len())
            })?;
            if TokenDigest::drawn(t.temperature, 0, t.top_p, chain.seed).over(ids) != r.drawn {
                return Err(format!(
                    "the tokens {} signed for drawing are not the transcript's drawn tokens and sampling",
                    r.worker
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            task: TaskId::digest(&[b"task"]),
            model: "m".into(),
            prompt_ids: vec![1, 2, 3],
            prompt: PromptRecord::Chat { messages: vec![("user".into(), "Name a colour.".into())] },
            max_tokens: 5,
            temperature: 0.0,
            top_p: 1.0,
            finish: Ending::Stop,
            output: "Blue.".into(),
            output_ids: Vec::new(),
            drawn_ids: vec![9, 9, 0],
        }
    }

    fn chain(t: &Transcript) -> OnChain {
        OnChain {
            task: t.task,
            model: 1,
            max_tokens: 8,
            prompt_hash: prompt_hash(&t.prompt_ids),
            output_hash: output_hash(&t.output),
            prompt_tokens: 3,
            completion_tokens: 2,
            seed: 7,
            receipts: receipts(t, 7),
            gateway: polylink_types::SecretKey::from_label("gateway").public_key(),
        }
    }

    /// The receipts of a two-stage pipeline that computed `t` with `seed`.
    fn receipts(t: &Transcript, seed: u64) -> Vec<WorkReceipt> {
        let key = polylink_types::SecretKey::from_label("stage");
        let rows = (t.prompt_ids.len() + t.drawn_ids.len() - 1) as u32;
        let fed: Vec<u32> = t.prompt_ids.iter().chain(&t.drawn_ids).copied().collect();
        let first = WorkReceipt {
            task: t.task,
            worker: key.public_key(),
            layer_start: 0,
            layer_end: 4,
            rows,
            fed: TokenDigest::fed().over(&fed[..rows as usize]),
            drawn: Hash32::ZERO,
        };
        let drawn = TokenDigest::drawn(t.temperature, 0, t.top_p, seed).over(&t.drawn_ids);
        vec![first, WorkReceipt { layer_start: 4, layer_end: 8, fed: Hash32::ZERO, drawn, ..first }]
    }

    fn body(t: &Transcript) -> Vec<u8> {
        serde_json::to_vec(t).unwrap_or_default()
    }

    fn zero(v: Verdict) -> String {
        match v {
            Verdict::Abstain(why) => why,
            other => panic!("expected an abstention, got {other:?}"),
        }
    }

    #[test]
    fn a_gateway_that_served_the_task_alone_answers_for_its_transcript() {
        let t = transcript();
        let mut own = chain(&t);
        own.gateway = own.receipts[0].worker;
        let mut other = t.clone();
        other.output = "Red.".into();
        assert!(matches!(check(&body(&other), &own), Verdict::Zero(why) if why.contains("output hashes")));
        // With another owner's stage in the task, the gateway's fault strikes nobody.
        own.receipts[1].worker = polylink_types::SecretKey::from_label("other").public_key();
        assert!(zero(check(&body(&other), &own)).contains("output hashes"));
    }

    #[test]
    fn a_consistent_transcript_is_scored() {
        let t = transcript();
        let Verdict::Score(c) = check(&body(&t), &chain(&t)) else { panic!("not scored") };
        assert_eq!(
            (c.prompt.question().as_str(), c.output.as_str(), c.ending),
            ("Name a colour.", "Blue.", Ending::Stop)
        );
    }

    #[test]
    fn contradictions_with_the_chain_are_not_scored() {
        let t = transcript();
        let on_chain = chain(&t);
        let mut other = t.clone();
        other.output = "Red.".into();
        assert!(zero(check(&body(&other), &on_chain)).contains("output hashes"));
        let mut other = t.clone();
        other.prompt_ids = vec![1, 2, 4];
        assert!(zero(check(&body(&other), &on_chain)).contains("prompt ids"));
        let mut other = t.clone();
        other.max_tokens = 50;
        assert!(zero(check(&body(&other), &on_chain)).contains("disagree"));
        // Ids that count other than the billed completion tokens: overbilled (or underreported).
        let mut other = t.clone();
        other.output_ids = vec![9, 9, 9];
        assert!(zero(check(&body(&other), &on_chain)).contains("bills 2 completion tokens"));
        other.output_ids = vec![9, 9];
        assert!(matches!(check(&body(&other), &on_chain), Verdict::Score(_)));
        other.output_ids = vec![9, 8];
        assert!(zero(check(&body(&other), &on_chain)).contains("not the first of those drawn"));
        let mut other = t.clone();
        other.task = TaskId::digest(&[b"else"]);
        assert!(zero(check(&body(&other), &on_chain)).contains("not"));
    }

    #[test]
    fn bad_bytes_are_not_scored_and_every_prompt_shape_is() {
        let t = transcript();
        let on_chain = chain(&t);
        let mut bytes = body(&t);
        let at = bytes.windows(5).position(|w| w == b"Blue.").unwrap_or(0);
        bytes[at] = 0xff;
        assert!(zero(check(&bytes, &on_chain)).contains("UTF-8"));
        assert!(zero(check(&vec![b' '; TRANSCRIPT_BYTES_MAX + 1], &on_chain)).contains("exceeds"));
        // A system prompt, several turns, a raw completion: all scored (the scorer checks they
        // render to the hashed ids); a role the gateway never writes is not.
        let turns = |roles: &[&str]| PromptRecord::Chat {
            messages: roles.iter().map(|r| (r.to_string(), format!("{r} text"))).collect(),
        };
        let shapes = [
            turns(&["system", "user"]),
            turns(&["user", "assistant", "user"]),
            PromptRecord::Text { text: "Once upon a time".into() },
        ];
        for prompt in shapes {
            let shaped = Transcript { prompt: prompt.clone(), ..t.clone() };
            assert!(matches!(check(&body(&shaped), &on_chain), Verdict::Score(c) if c.prompt == prompt));
        }
        let odd = Transcript { prompt: turns(&["tool", "user"]), ..t.clone() };
        assert!(zero(check(&body(&odd), &on_chain)).contains("unknown role"));
    }

    #[test]
    fn a_transcript_is_scored_only_as_the_workers_signed_it() {
        let t = transcript();
        let on_chain = chain(&t);
        assert!(matches!(check(&body(&t), &on_chain), Verdict::Score(_)));
        // A gateway that swaps a drawn token, names another temperature or prompt than the
        // workers ran, or leaves out what they drew cannot get them scored on it.
        let mut other = t.clone();
        other.drawn_ids = vec![9, 8, 0];
        assert!(zero(check(&body(&other), &on_chain)).contains("signed for are not"));
        let mut other = t.clone();
        other.drawn_ids = vec![9, 9, 1];
        assert!(zero(check(&body(&other), &on_chain)).contains("signed for drawing"));
        let mut other = t.clone();
        other.temperature = 1.3;
        assert!(zero(check(&body(&other), &on_chain)).contains("signed for drawing"));
        let mut other = t.clone();
        other.drawn_ids = vec![9, 9];
        assert!(zero(check(&body(&other), &on_chain)).contains("drew 3 tokens"));
        other.drawn_ids.clear();
        assert!(zero(check(&body(&other), &on_chain)).contains("bills 2"));
        // Another seed than the chain's.
        let mut reseeded = on_chain.clone();
        reseeded.receipts = receipts(&t, 8);
        assert!(zero(check(&body(&t), &reseeded)).contains("signed for drawing"));
        // A stand-in's receipt for a prefix only (it failed before the end) still agrees.
        let mut partial = on_chain.clone();
        let mut early = t.clone();
        early.drawn_ids.truncate(1);
        partial.receipts.extend(receipts(&early, 7));
        assert!(matches!(check(&body(&t), &partial), Verdict::Score(_)));
    }
}
