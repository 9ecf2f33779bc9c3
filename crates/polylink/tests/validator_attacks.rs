//! Attacks on a real dev chain, with real gateways and real models, scored by real validators:
//! - workers that serve another model (Gemma-3-270M registered as SmolLM2, its receipts claiming
//!   SmolLM2's layers so that it is paid) or truncate their
//!   answers (signing for an end token it never drew) are scored low, not paid and slashed, and
//!   the user is refunded, while an honest worker on the same chain is paid; a gateway that cuts
//!   its honest worker's answer short and says the model ended it cannot get the worker struck
//!   (its transcript disagrees with the worker's receipt: every validator abstains); one that withholds its transcript gets no score (every
//!   validator abstains: a transcript a validator could not fetch is no evidence, and a gateway
//!   that withheld it from some validators only must not make them outliers), so no quorum: it
//!   is not paid and the user is refunded;
//! - a colluding minority of validators (under a third of the committee's stake) reporting false
//!   scores without evaluating cannot move the median and is slashed (its evaluation digest
//!   contradicts the majority's); a lazy validator that commits a guess and then
//!   copies a revealed score cannot open its commitment and is slashed for not revealing;
//! - the negative control: a colluding majority does move the median — the limit of the scheme.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod validator_common;

use polylink_chain::rpc::ErrorCode;
use polylink_ledger::{Params, Task, TaskStatus};
use polylink_pipeline::LocalBackend;
use polylink_protocol::{
    Closed, FinishReason, GenerationParams, InferenceBackend, ModelCard, Prompt, ProtocolError, Receipts,
    TokenEvent, TokenStream,
};
use polylink_types::{
    Bond, CommitScore, Hash32, RevealScore, SecretKey, SettleOutcome, SignedReceipt, TaskId, TokenDigest,
    TxKind, WorkReceipt, score_commitment,
};
use std::str::FromStr;
use std::sync::Arc;
use validator_common::*;

/// A generation cut after `keep` tokens and reported as ended by the model. With `forge` (the
/// worker's own key: gateway and worker are one operator) it is the worker's cheat: it signs
/// for having drawn those tokens and then an end token (`eos`), as a worker that stops early to
/// save work would. Without, it is a gateway's doing alone: the workers' receipts still say what
/// they drew.
struct Truncating {
    inner: Arc<LocalBackend>,
    keep: usize,
    forge: Option<(SecretKey, u32)>,
}

impl InferenceBackend for Truncating {
    fn models(&self) -> Vec<ModelCard> {
        self.inner.models()
    }

    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>, ProtocolError> {
        self.inner.tokenize(model, prompt)
    }

    fn generate(
        &self,
        model: &str,
        ids: Vec<u32>,
        params: GenerationParams,
    ) -> Result<TokenStream, ProtocolError> {
        let prompt = ids.clone();
        let mut inner = self.inner.generate(model, ids, params)?;
        let genuine = inner.take_receipts();
        let (tx, stream) = TokenStream::channel();
        let (closed_tx, closed) = Receipts::channel();
        let (keep, forge) = (self.keep, self.forge.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            while let Some(event) = inner.next().await {
                let last = matches!(event, TokenEvent::Done(_) | TokenEvent::Failed(_));
                if tx.unbounded_send(event).is_err() || last {
                    break;
                }
                sent += 1;
                if sent == keep {
                    let _ = tx.unbounded_send(TokenEvent::Done(FinishReason::Stop));
                    break;
                }
            }
            // Dropping the stream stops the generation; its stages then sign.
            drop(inner);
            let Some(genuine) = genuine else { return };
            let mut record = genuine.wait().await;
            if let Some((key, eos)) = forge {
                let mut drawn = record.drawn[..keep].to_vec();
                let fed: Vec<u32> = prompt.iter().chain(&drawn).copied().collect();
                drawn.push(eos);
                let sampling = TokenDigest::drawn(params.temperature, 0, params.top_p, params.seed);
                let (fed, drawn_digest) = (TokenDigest::fed().over(&fed), sampling.over(&drawn));
                let rows = (prompt.len() + keep) as u32;
                let forged =
                    |r: SignedReceipt| WorkReceipt { rows, fed, drawn: drawn_digest, ..r.receipt }.sign(&key);
                record = Closed { receipts: record.receipts.into_iter().map(forged).collect(), drawn };
            }
            let _ = closed_tx.send(record);
        });
        Ok(stream.with_receipts(closed))
    }
}

/// A worker that serves another model and, to be paid, signs receipts claiming every layer of
/// the registered one (its engine ran a model of fewer layers).
struct Claiming {
    inner: Arc<LocalBackend>,
    key: SecretKey,
    layers: u32,
}

impl InferenceBackend for Claiming {
    fn models(&self) -> Vec<ModelCard> {
        self.inner.models()
    }

    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>, ProtocolError> {
        self.inner.tokenize(model, prompt)
    }

    fn generate(
        &self,
        model: &str,
        ids: Vec<u32>,
        params: GenerationParams,
    ) -> Result<TokenStream, ProtocolError> {
        let mut stream = self.inner.generate(model, ids, params)?;
        let Some(genuine) = stream.take_receipts() else { return Ok(stream) };
        let (tx, claimed) = Receipts::channel();
        let (key, layers) = (self.key.clone(), self.layers);
        tokio::spawn(async move {
            let genuine = genuine.wait().await;
            let receipts = genuine
                .receipts
                .into_iter()
                .map(|r| WorkReceipt { layer_start: 0, layer_end: layers, ..r.receipt }.sign(&key))
                .collect();
            let _ = tx.send(Closed { receipts, ..genuine });
        });
        Ok(stream.with_receipts(claimed))
    }
}

/// An end-of-generation token of the registered model.
fn end_token() -> u32 {
    let gguf = polylink_infer::Gguf::open(&smollm2()).unwrap();
    let tok = polylink_infer::Tokenizer::from_gguf(&gguf, usize::MAX).unwrap();
    (0..tok.vocab_size() as u32).find(|&id| tok.is_eog(id)).unwrap()
}

async fn params(net: &Net) -> Params {
    net.client.params().await.unwrap().params
}

fn outcome(task: &Task) -> Option<SettleOutcome> {
    match task.status {
        TaskStatus::Settled(outcome) => Some(outcome),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheating_workers_are_scored_low_slashed_and_the_user_refunded() {
    // One strike slashes here: the count itself is the ledger's tests' business; this one shows
    // each cheat caught, unpaid and costing stake end to end.
    let net = start_with(3, |p| p.strikes_to_slash = 1).await;
    let p = params(&net).await;
    // Each worker computes on its own machine and signs its own receipts.
    let gemma = local(&polylink_models::gguf_path(polylink_models::GEMMA3_270M).unwrap(), &worker(1));
    let honest = gateway(&net, local(&smollm2(), &worker(0)), &worker(0), false).await;
    let layers = net.client.model(net.model_id).await.unwrap().layer_count;
    let claiming = Arc::new(Claiming { inner: gemma, key: worker(1), layers });
    let substitute = gateway(&net, claiming, &worker(1), false).await;
    let inner = local(&smollm2(), &worker(2));
    let forge = Some((worker(2), end_token()));
    let truncating = gateway(&net, Arc::new(Truncating { inner, keep: 3, forge }), &worker(2), false).await;
    let withholding = gateway(&net, local(&smollm2(), &worker(3)), &worker(3), true).await;
    // A gateway (another owner's) that cuts its honest worker's answer short and says the model
    // ended it.
    let inner = local(&smollm2(), &worker(4));
    let cutting = Arc::new(Truncating { inner, keep: 3, forge: None });
    let framing = gateway_operated_by(&net, cutting, &worker(4), &worker(5)).await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(validator_node(&net, i, None).await);
    }
    let user_before = balance(&net, &user()).await;
    let mut worker_before = Vec::new();
    for i in 0..5 {
        worker_before.push(balance(&net, &worker(i)).await);
    }

    let (paid, _) = ask(&honest, "Name a colour.", 16).await;
    let (swapped, _) = ask(&substitute, "Name a colour.", 16).await;
    let (cut, text) = ask(&truncating, "Write one sentence about the sea.", 32).await;
    let (hidden, _) = ask(&withholding, "Name a colour.", 16).await;
    let (framed, _) = ask(&framing, "Write one sentence about the sea.", 32).await;
    assert!(!text.is_empty(), "the truncated answer still says something");

    let honest_task = settled(&net, &paid).await;
    assert_eq!(outcome(&honest_task), Some(SettleOutcome::Paid), "{honest_task:?}");
    let withheld = settled(&net, &hidden).await;
    assert_eq!(outcome(&withheld), Some(SettleOutcome::NoQuorum), "{withheld:?}");
    assert!(withheld.committee.iter().all(|m| m.score == Some(polylink_ledger::ABSTAIN)), "{withheld:?}");
    assert_eq!(bonded(&net, &worker(3)).await, STAKE, "no evidence, no slash");
    assert_eq!(balance(&net, &worker(3)).await, worker_before[3], "the withholding worker is not paid");
    // The gateway's word against the worker's receipt: no evidence, so no slash and no pay.
    let framed = settled(&net, &framed).await;
    assert_eq!(outcome(&framed), Some(SettleOutcome::NoQuorum), "{framed:?}");
    assert!(framed.committee.iter().all(|m| m.score == Some(polylink_ledger::ABSTAIN)), "{framed:?}");
    assert_eq!(bonded(&net, &worker(4)).await, STAKE, "a gateway cannot frame its worker");
    assert_eq!(balance(&net, &worker(4)).await, worker_before[4]);
    for (i, task) in [(1, &swapped), (2, &cut)] {
        let t = settled(&net, task).await;
        assert_eq!(outcome(&t), Some(SettleOutcome::LowQuality), "worker {i}: {t:?}");
        assert!(t.median_score.unwrap() < p.quality_min, "{t:?}");
        assert_eq!(
            bonded(&net, &worker(i)).await,
            STAKE - STAKE * u128::from(p.worker_slash_bps) / 10_000,
            "worker {i} slashed"
        );
        assert_eq!(balance(&net, &worker(i)).await, worker_before[i as usize], "worker {i} not paid");
    }
    assert_eq!(bonded(&net, &worker(0)).await, STAKE, "the honest worker keeps its stake");
    assert!(balance(&net, &worker(0)).await > worker_before[0], "the honest worker is paid");

    // The user paid only for the honest task: every cheated fee came back.
    let fee = honest_task.result.as_ref().unwrap().fee;
    let median = u128::from(honest_task.median_score.unwrap());
    let bps = |b: u16| fee * u128::from(b) / 10_000;
    let workers_share = fee - bps(p.validator_share_bps) - bps(p.treasury_share_bps) - bps(ROYALTY_BPS);
    let unearned = workers_share - workers_share * median / 1000;
    // Five requests, five SubmitTasks, each at the transaction fee.
    assert_eq!(user_before - balance(&net, &user()).await, fee - unearned + 5 * p.tx_fee);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colluding_minority_and_a_lazy_copier_lose_a_colluding_majority_wins() {
    let net = start(9).await;
    let p = params(&net).await;
    let gw = gateway(&net, local(&smollm2(), &worker(0)), &worker(0), false).await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(validator_node(&net, i, None).await);
    }
    // Validator 3 reports 0 whatever it is shown (1/5 of the committee's stake).
    nodes.push(validator_node(&net, 3, Some(0)).await);
    // Validator 4 is lazy: driven by hand below.
    let lazy = validator(4);
    send(&net.client, &lazy, TxKind::Bond(Bond { amount: STAKE })).await;
    send(&net.client, &lazy, TxKind::RegisterValidator).await;
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(balance(&net, &validator(i)).await);
    }

    let (task, _) = ask(&gw, "Name a colour.", 16).await;
    let record = scoring(&net, &task).await;
    assert_eq!(record.committee.len(), 5);
    // The lazy validator must commit before anyone reveals: it commits a guess.
    let salt = Hash32([7; 32]);
    let id = TaskId::from_str(&task).unwrap();
    let guess = score_commitment(500, &Hash32::ZERO, &salt, &lazy.public_key());
    send(&net.client, &lazy, TxKind::CommitScore(CommitScore { task: id, commitment: guess })).await;
    // Once an honest score is revealed it copies it; its commitment cannot be opened with it.
    let honest_key = validator(0).public_key();
    let copied = wait_for("an honest reveal", async || {
        let record = validator_common::task(&net, &task).await?;
        record.committee.iter().find(|m| m.validator == honest_key)?.score
    })
    .await;
    assert_ne!(copied, 500, "the guess happened to be right; the test proves nothing");
    // It copies the revealed evaluation digest too: still not what it committed to.
    let work =
        validator_common::task(&net, &task).await.unwrap().committee.iter().find_map(|m| m.work).unwrap();
    let refused = try_send(
        &net.client,
        &lazy,
        TxKind::RevealScore(RevealScore { task: id, score: copied, work, salt }),
    )
    .await;
    assert!(refused.as_ref().is_err_and(|e| e.code() == Some(ErrorCode::CommitmentMismatch)), "{refused:?}");

    let done = settled(&net, &task).await;
    assert_eq!(outcome(&done), Some(SettleOutcome::Paid), "{done:?}");
    let median = done.median_score.unwrap();
    assert!(median.abs_diff(copied) <= p.score_delta, "the minority did not move the median: {done:?}");
    let slashed = |bps: u16| STAKE - STAKE * u128::from(bps) / 10_000;
    assert_eq!(
        bonded(&net, &validator(3)).await,
        slashed(p.outlier_slash_bps),
        "colluder slashed: its evaluation digest is not the majority's"
    );
    assert_eq!(
        bonded(&net, &lazy).await,
        slashed(p.no_reveal_slash_bps),
        "lazy validator slashed for not revealing"
    );
    assert_eq!(balance(&net, &validator(3)).await, before[3], "colluder not paid");
    assert_eq!(balance(&net, &lazy).await, before[4], "lazy validator not paid");
    for i in 0..3 {
        assert!(balance(&net, &validator(i)).await > before[i as usize], "honest validator {i} paid");
        assert_eq!(bonded(&net, &validator(i)).await, STAKE);
    }

    // Negative control: four more colluders make five of eight revealers; now the lie wins.
    for i in 5..9 {
        nodes.push(validator_node(&net, i, Some(0)).await);
    }
    let (task, _) = ask(&gw, "Name a colour.", 16).await;
    let done = settled(&net, &task).await;
    assert_eq!(done.median_score, Some(0), "{done:?}");
    assert_eq!(outcome(&done), Some(SettleOutcome::LowQuality), "the honest worker is failed: {done:?}");
    let stake = net.client.account(&worker(0).public_key()).await.unwrap().stake;
    assert_eq!(
        (stake.bonded, stake.strikes),
        (STAKE, 1),
        "and struck, unpaid; one strike costs no stake, so even a captured committee needs three lies"
    );
    for i in 0..3 {
        assert_eq!(
            bonded(&net, &validator(i)).await,
            slashed(p.outlier_slash_bps),
            "honest {i} now the outlier"
        );
    }
    for n in nodes {
        n.stop().await;
    }
}
