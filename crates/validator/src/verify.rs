//! Checks a fetched transcript against the chain before any model runs. A transcript that
//! contradicts the chain (prompt ids, output, token counts), or that is no transcript at all
//! (oversized, not JSON, not UTF-8), is the worker's fault and scores 0. Any prompt shape is
//! scored: a chat with a system prompt or several turns, or a raw completion (the scorer checks
//! that it encodes to the hashed prompt ids, and teacher-forces the answer after those ids).

use crate::error::{Result, ValidatorError};
use polylink_ledger::Task;
use polylink_protocol::{Ending, PromptRecord, Transcript, output_hash, prompt_hash};
use polylink_types::{Hash32, ModelId, TaskId};

/// Largest transcript body read, bytes; a larger one scores 0.
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
        })
    }
}

/// A transcript consistent with the chain, ready for the evaluators.
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
}

/// The verdict of the checks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Consistent; score it.
    Score(Checked),
    /// The worker is at fault: score 0, for this reason.
    Zero(String),
}

/// Checks a transcript body against the chain.
pub(crate) fn check(body: &[u8], chain: &OnChain) -> Verdict {
    if body.len() > TRANSCRIPT_BYTES_MAX {
        return Verdict::Zero(format!("transcript of {} bytes exceeds {TRANSCRIPT_BYTES_MAX}", body.len()));
    }
    let t: Transcript = match serde_json::from_slice(body) {
        Ok(t) => t,
        Err(e) => return Verdict::Zero(format!("transcript is not valid UTF-8 JSON: {e}")),
    };
    if t.task != chain.task {
        return Verdict::Zero(format!("transcript is of task {}, not {}", t.task, chain.task));
    }
    let ids_hash = prompt_hash(&t.prompt_ids);
    if ids_hash != chain.prompt_hash {
        return Verdict::Zero(format!(
            "prompt ids hash to {ids_hash}, the chain holds {}",
            chain.prompt_hash
        ));
    }
    let out_hash = output_hash(&t.output);
    if out_hash != chain.output_hash {
        return Verdict::Zero(format!("output hashes to {out_hash}, the chain holds {}", chain.output_hash));
    }
    let prompt_tokens = t.prompt_ids.len() as u64;
    if prompt_tokens != u64::from(chain.prompt_tokens)
        || prompt_tokens + u64::from(t.max_tokens) != u64::from(chain.max_tokens)
    {
        return Verdict::Zero(format!(
            "{prompt_tokens} prompt ids and max_tokens {} disagree with the chain's {} prompt tokens of {} escrowed",
            t.max_tokens, chain.prompt_tokens, chain.max_tokens
        ));
    }
    // The user pays for the completion tokens the result claims: the transcript's ids count them.
    if !t.output_ids.is_empty() && t.output_ids.len() as u64 != u64::from(chain.completion_tokens) {
        return Verdict::Zero(format!(
            "the result bills {} completion tokens, the transcript holds {} token ids",
            chain.completion_tokens,
            t.output_ids.len()
        ));
    }
    let ending = t.finish;
    if !(0.0..=2.0).contains(&t.temperature) || t.max_tokens == 0 {
        return Verdict::Zero(format!(
            "temperature {} or max_tokens {} out of range",
            t.temperature, t.max_tokens
        ));
    }
    if t.prompt.to_prompt().is_none() {
        return Verdict::Zero("the prompt record names an unknown role".into());
    }
    Verdict::Score(Checked {
        task: chain.task,
        prompt: t.prompt,
        prompt_ids: t.prompt_ids,
        output: t.output,
        output_ids: t.output_ids,
        completion_tokens: chain.completion_tokens,
        max_tokens: t.max_tokens,
        temperature: t.temperature,
        top_p: t.top_p,
        seed: chain.seed,
        ending,
    })
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
        }
    }

    fn body(t: &Transcript) -> Vec<u8> {
        serde_json::to_vec(t).unwrap_or_default()
    }

    fn zero(v: Verdict) -> String {
        match v {
            Verdict::Zero(why) => why,
            other => panic!("expected a zero, got {other:?}"),
        }
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
    fn contradictions_with_the_chain_score_zero() {
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
        let mut other = t.clone();
        other.task = TaskId::digest(&[b"else"]);
        assert!(zero(check(&body(&other), &on_chain)).contains("not"));
    }

    #[test]
    fn bad_bytes_score_zero_and_every_prompt_shape_is_scored() {
        let t = transcript();
        let on_chain = chain(&t);
        let mut bytes = body(&t);
        let at = bytes.windows(5).position(|w| w == b"Blue.").unwrap_or(0);
        bytes[at] = 0xff;
        assert!(zero(check(&bytes, &on_chain)).contains("UTF-8"));
        assert!(zero(check(&vec![b' '; TRANSCRIPT_BYTES_MAX + 1], &on_chain)).contains("exceeds"));
        // A system prompt, several turns, a raw completion: all scored (the scorer checks they
        // render to the hashed ids); a role the gateway never writes is the worker's fault.
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
}
