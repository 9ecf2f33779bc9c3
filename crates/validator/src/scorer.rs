//! The evaluators on their own thread: the TIQE cascade over the registered model, found among
//! the local model files by its on-chain artifact hash. The cascade (and the models it holds)
//! lives on that thread; duties send it checked transcripts and await the score.

use crate::error::{Result, ValidatorError};
use crate::verify::Checked;
use polylink_models::{CATALOGUE, MINILM_L6_V2};
use polylink_protocol::Ending;
use polylink_tiqe::{
    CascadeConfig, Files, Finish, Generation, Head, Limits, MiniLmFiles, Submission, open_cascade,
    open_registered,
};
use polylink_types::{Hash32, TaskId};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// How the evaluators are loaded.
#[derive(Debug, Clone)]
pub struct ScorerConfig {
    /// Threads of the model forwards.
    pub threads: usize,
    /// Cross-encoder head weights (`None`: the head built into the binary).
    pub head: Option<PathBuf>,
    /// Seed of the judge's calibration draw.
    pub seed: u64,
    /// GGUF files beyond the catalogue's that this validator can judge: one is used for the
    /// registered model whose artifact hash is its sha256.
    pub models: Vec<PathBuf>,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self { threads: 1, head: None, seed: 0, models: Vec::new() }
    }
}

/// A score with what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scored {
    /// 0..=1000.
    pub score: u16,
    /// Each stage's evidence, or why the transcript was refused.
    pub evidence: Value,
    /// The digest of the evaluation ([`work_digest`]), revealed with the score.
    pub work: Hash32,
    /// Milliseconds the evaluators ran (not counting the queue).
    pub ms: u64,
}

/// The digest of an evaluation of `task`'s transcript: what every validator that really ran the
/// checks computes alike, from the consistency stage's deterministic figures (token counts,
/// agreement counts, the teacher-forced mean log-probability and the sampling margins, rounded
/// to 1e-3; the numerics rule makes them the same on every machine). A validator that reveals a
/// score without evaluating cannot reveal it, and the ledger slashes a digest a majority
/// contradicts (`SlashReason::Unproven`). A transcript refused before any model ran has the
/// digest of its refusal.
pub(crate) fn work_digest(task: &TaskId, evidence: Option<&Value>) -> Hash32 {
    let Some(c) = evidence.map(|e| &e["stages"]["consistency"]["evidence"]) else {
        return Hash32::digest(&[b"polylink-work-v1", &task.0, b"rejected"]);
    };
    let count = |k: &str| c[k].as_u64().map_or_else(|| "-".to_string(), |n| n.to_string());
    let milli = |k: &str| c[k].as_f64().map_or_else(|| "-".to_string(), |x| format!("{:.0}", x * 1000.0));
    let flag = |k: &str| c[k].as_bool().map_or("-", |b| if b { "1" } else { "0" });
    let line = [
        count("prompt_tokens"),
        count("output_tokens"),
        count("top1_agree"),
        count("split_agree"),
        count("topk"),
        milli("mean_logprob"),
        milli("agree_rate"),
        milli("drawn_rate"),
        milli("margin_max"),
        flag("end_ok").into(),
        flag("seeded").into(),
        flag("retokenized").into(),
    ]
    .join("|");
    Hash32::digest(&[b"polylink-work-v1", &task.0, line.as_bytes()])
}

/// The `--model` files by sha256 (hex), hashed once when the validator starts; a file that
/// cannot be read is left out with a warning.
pub(crate) fn hash_models(models: &[PathBuf]) -> HashMap<String, PathBuf> {
    let mut by_sha = HashMap::new();
    for path in models {
        match polylink_models::sha256_file(path) {
            Ok(sha) => {
                by_sha.insert(sha, path.clone());
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot hash a model file"),
        }
    }
    by_sha
}

/// The local GGUF whose sha256 is `artifact`: a catalogue model's pinned file, else one of the
/// `local` files (see [`hash_models`]).
pub(crate) fn gguf_for(artifact: &Hash32, local: &HashMap<String, PathBuf>) -> Result<PathBuf> {
    let want = artifact.to_string();
    let found = CATALOGUE.iter().find_map(|m| {
        m.files.iter().find(|f| f.name.ends_with(".gguf") && f.sha256 == want).map(|f| (m.id, f.name))
    });
    if let Some((model, file)) = found {
        return polylink_models::path(model, file)
            .map_err(|e| ValidatorError::NoModel(format!("{want} ({e})")));
    }
    local.get(&want).cloned().ok_or_else(|| {
        ValidatorError::NoModel(format!("{want} (neither in the catalogue nor among --model files)"))
    })
}

struct Job {
    checked: Checked,
    reply: oneshot::Sender<Result<Option<Scored>>>,
}

/// The queued jobs, taken earliest commit deadline first (in arrival order among equals): a
/// short answer's window closes sooner than a long one's (the chain scales the commit window
/// by the tokens to check), so a burst of short tasks is not stuck behind one long check, and
/// a long one still comes up when its deadline is the nearest.
struct Queue<T> {
    /// (deadline, job) in arrival order.
    jobs: Vec<(u64, T)>,
}

impl<T> Queue<T> {
    fn new() -> Self {
        Self { jobs: Vec::new() }
    }

    /// Waits for work when there is none, takes in everything sent meanwhile, and returns the
    /// job with the nearest deadline; `None` once every sender is gone and nothing is queued.
    fn next(&mut self, rx: &mpsc::Receiver<(u64, T)>) -> Option<T> {
        if self.jobs.is_empty() {
            self.jobs.push(rx.recv().ok()?);
        }
        self.jobs.extend(rx.try_iter());
        // `min_by_key` keeps the first of equal deadlines: the earliest arrival.
        let first = (0..self.jobs.len()).min_by_key(|&i| self.jobs[i].0)?;
        Some(self.jobs.remove(first).1)
    }
}

/// Handle to the evaluation thread of one registered model.
pub(crate) struct Scorer {
    jobs: mpsc::Sender<(u64, Job)>,
}

fn tiqe(e: impl std::fmt::Display) -> ValidatorError {
    ValidatorError::Tiqe(e.to_string())
}

impl Scorer {
    /// Finds the model file of `artifact`, checks its hash and loads the cascade on a new thread.
    pub(crate) async fn start(
        artifact: Hash32,
        cfg: &ScorerConfig,
        local: &HashMap<String, PathBuf>,
    ) -> Result<Self> {
        let files = Files {
            registered: gguf_for(&artifact, local)?,
            minilm: MiniLmFiles {
                weights: polylink_models::path(MINILM_L6_V2, "model.safetensors").map_err(tiqe)?,
                vocab: polylink_models::path(MINILM_L6_V2, "vocab.txt").map_err(tiqe)?,
            },
        };
        let (jobs, queue) = mpsc::channel::<(u64, Job)>();
        let (ready_tx, ready) = oneshot::channel();
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("tiqe-scorer".into())
            .spawn(move || {
                let loaded = (|| {
                    let head = cfg.head.as_deref().map_or_else(Head::shipped, Head::load).map_err(tiqe)?;
                    let (model, sha) = open_registered(&files, cfg.threads).map_err(tiqe)?;
                    if sha != artifact.0 {
                        return Err(ValidatorError::NoModel(format!(
                            "{artifact} ({} hashes to {})",
                            files.registered.display(),
                            hex::encode(sha)
                        )));
                    }
                    let limits = Limits {
                        prompt_bytes_max: 64 << 10,
                        output_bytes_max: 64 << 10,
                        max_tokens_max: 8192,
                    };
                    let cascade_cfg = CascadeConfig {
                        limits,
                        seed: cfg.seed,
                        stop_when_sure: true,
                        ..CascadeConfig::default()
                    };
                    let cascade = open_cascade(&files, model.clone(), sha, head, cascade_cfg, cfg.threads)
                        .map_err(tiqe)?;
                    Ok((model, cascade))
                })();
                let (model, cascade) = match loaded {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                info!(model = %files.registered.display(), "tiqe cascade loaded");
                let mut pending = Queue::new();
                while let Some(job) = pending.next(&queue) {
                    if job.reply.is_closed() {
                        // Its seat gave up waiting (and abstained): scoring it would only delay the next.
                        continue;
                    }
                    let c = job.checked;
                    let tok = &model.tokenizer;
                    let rendered = c.prompt.to_prompt().map(|p| model.template.encode(tok, &p));
                    let task = c.task;
                    // What the gateway wrote that the workers' tokens do not bear out is no
                    // evidence about them: abstain.
                    let reply = job.reply;
                    if rendered.as_ref() != Some(&c.prompt_ids) {
                        let why = "the prompt does not render to the hashed prompt ids";
                        unattributable(reply, &task, c.gateway_served, why);
                        continue;
                    }
                    let (finish, max_tokens) = match c.ending {
                        Ending::Stop => (Finish::Eos, c.max_tokens as usize),
                        Ending::Length => (Finish::Length, c.max_tokens as usize),
                        // A stop sequence cut the text: its length is what it is.
                        Ending::StopSequence => {
                            (Finish::Length, tok.encode_with(&c.output, false).len().max(1))
                        }
                        // Cut short by the client, the backend or the clock: judged on what
                        // was delivered, never as a truncation.
                        Ending::Cancelled | Ending::Failed | Ending::TimedOut => {
                            (Finish::CutShort, c.max_tokens as usize)
                        }
                    };
                    let mut output = c.output;
                    let output_ids = if matches!(c.ending, Ending::Stop | Ending::Length) {
                        // A whole answer is every token drawn and the text they spell (the
                        // sampling rule checks each token, and the end token the model drew):
                        // the worker's own output, whatever the gateway delivered.
                        match whole_answer(tok, &c.drawn_ids, c.ending, c.max_tokens) {
                            Ok(ids) => {
                                let body: Vec<u32> =
                                    ids.iter().copied().filter(|&i| !tok.is_eog(i)).collect();
                                output = tok.decode(&body);
                                Some(ids)
                            }
                            Err(why) => {
                                unattributable(reply, &task, c.gateway_served, &why);
                                continue;
                            }
                        }
                    } else {
                        // The worker's own ids when they spell the text (the sampling rule is
                        // checked on them); otherwise the text is re-tokenized.
                        let body: Vec<u32> =
                            c.output_ids.iter().copied().filter(|&i| !tok.is_eog(i)).collect();
                        // (An empty answer is spelled by no ids: the seeded rule checks its end.)
                        let spelled =
                            if body.is_empty() { output.is_empty() } else { tok.decode(&body) == output };
                        // Without ids that spell it, the text bounds the tokens billed.
                        if !spelled {
                            let counted = tok.encode_with(&output, false).len();
                            if let Some(why) = overbilled(c.completion_tokens, counted) {
                                unattributable(reply, &task, c.gateway_served, &why);
                                continue;
                            }
                        }
                        spelled.then_some(c.output_ids)
                    };
                    let sub = Submission {
                        prompt: c.prompt.question(),
                        prompt_ids: Some(c.prompt_ids),
                        output_ids,
                        output: output.into_bytes(),
                        output_sha256: None,
                        model_sha256: Some(artifact.0),
                        generation: Generation {
                            temperature: c.temperature,
                            top_k: 0,
                            top_p: c.top_p,
                            // The seed the chain fixed: with the worker's ids the rule checks
                            // every token; on re-tokenized text the statistical test applies.
                            seed: Some(c.seed),
                            max_tokens,
                            finish,
                        },
                    };
                    let answer = match cascade.score_submission(sub) {
                        Ok(r) => Ok(Some(Scored {
                            ms: (r.cheap_ms + r.judge_ms) as u64,
                            score: r.verdict.score,
                            work: work_digest(&task, Some(&r.verdict.evidence)),
                            evidence: r.verdict.evidence,
                        })),
                        // The task itself is out of reach (prompt too long for the model): abstain.
                        Err(polylink_tiqe::TiqeError::Refused(why)) => {
                            info!(%why, "task not scorable; abstaining");
                            Ok(None)
                        }
                        Err(e) => Err(tiqe(e)),
                    };
                    let _ = reply.send(answer);
                }
            })
            .map_err(|e| ValidatorError::Tiqe(format!("cannot start the scorer thread: {e}")))?;
        ready.await.map_err(|_| ValidatorError::Tiqe("the scorer thread stopped while loading".into()))??;
        Ok(Self { jobs })
    }

    /// Scores a checked transcript whose seat commits by `deadline_ms` (block time; the nearest
    /// deadline is scored first); `None` when the evaluators cannot judge it (abstain).
    pub(crate) async fn score(&self, checked: Checked, deadline_ms: u64) -> Result<Option<Scored>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((deadline_ms, Job { checked, reply }))
            .map_err(|_| ValidatorError::Tiqe("the scorer thread stopped".into()))?;
        answer.await.map_err(|_| ValidatorError::Tiqe("the scorer thread stopped".into()))?
    }
}

/// Answers a job whose transcript the workers' tokens do not bear out: no evidence about them
/// (abstain), unless the gateway that wrote it was the task's only worker (score 0).
fn unattributable(
    reply: oneshot::Sender<Result<Option<Scored>>>,
    task: &TaskId,
    gateway_served: bool,
    why: &str,
) {
    if !gateway_served {
        warn!(%task, %why, "transcript not as the workers signed it; abstaining");
        let _ = reply.send(Ok(None));
        return;
    }
    info!(%task, %why, "the gateway served the task alone and its transcript is wrong; scoring 0");
    let evidence = serde_json::json!({ "rejected": why });
    let _ = reply.send(Ok(Some(Scored { score: 0, evidence, work: work_digest(task, None), ms: 0 })));
}

/// The ids of a whole answer (one that ended with an end token or at `max_tokens`): every token
/// drawn, which must end as the transcript says (an end token drawn for `stop`, `max_tokens`
/// drawn for `length`). `Err` says how the transcript departs from them. (The bill is held to
/// the drawn count before: at most every token drawn.)
fn whole_answer(
    tok: &polylink_infer::Tokenizer,
    drawn: &[u32],
    ending: Ending,
    max_tokens: u32,
) -> std::result::Result<Vec<u32>, String> {
    let body = drawn.iter().filter(|&&i| !tok.is_eog(i)).count();
    let ended = drawn.last().is_some_and(|&e| tok.is_eog(e));
    match ending {
        Ending::Stop if !ended => Err("the transcript says the model ended, but it drew no end token".into()),
        Ending::Length if ended || body != max_tokens as usize => Err(format!(
            "the transcript says the answer reached max_tokens {max_tokens}, {body} tokens were drawn"
        )),
        _ => Ok(drawn.to_vec()),
    }
}

/// Why `billed` completion tokens are more than a text of `counted` tokens can account for, if
/// they are. A generation's own tokens may split the text more finely than its re-encoding,
/// and a stop sequence may cut tokens whose text was never sent: a margin of 16 tokens plus an
/// eighth is allowed.
fn overbilled(billed: u32, counted: usize) -> Option<String> {
    let allowed = counted + 16 + counted / 8;
    (billed as usize > allowed).then(|| {
        format!("{billed} completion tokens billed for a text of {counted} tokens (at most {allowed})")
    })
}

#[cfg(test)]
mod tests {
    use super::{Queue, overbilled};
    use std::sync::mpsc;

    #[test]
    fn the_nearest_deadline_is_scored_first() {
        let (tx, rx) = mpsc::channel();
        let mut q = Queue::new();
        tx.send((90_000, "long")).unwrap();
        tx.send((40_000, "short")).unwrap();
        tx.send((40_000, "short, later")).unwrap();
        assert_eq!(q.next(&rx), Some("short"));
        tx.send((10_000, "urgent")).unwrap();
        assert_eq!(q.next(&rx), Some("urgent"), "a job sent meanwhile is taken in");
        assert_eq!(q.next(&rx), Some("short, later"), "arrival order among equal deadlines");
        assert_eq!(q.next(&rx), Some("long"));
        drop(tx);
        assert_eq!(q.next(&rx), None, "no senders and nothing queued");
    }

    #[test]
    fn billing_beyond_what_the_text_accounts_for_is_caught() {
        assert!(overbilled(10, 10).is_none());
        assert!(overbilled(27, 10).is_none(), "the margin: 16 tokens and an eighth");
        assert!(overbilled(28, 10).is_some());
        assert!(overbilled(0, 0).is_none());
        assert!(overbilled(1_000, 80).is_some());
    }
}
