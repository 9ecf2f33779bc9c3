//! The running validator: registers, follows finalized blocks, and carries out one duty per
//! committee seat — fetch, check, score, persist, commit, then reveal.

use crate::chain::Chain;
use crate::error::{Result, ValidatorError};
use crate::fetch::{Fetched, fetch};
use crate::journal::{Journal, Pending};
use crate::schedule::{Phase, Seat, Tip, seats};
use crate::scorer::{Scorer, ScorerConfig};
use crate::verify::{self, OnChain, Verdict};
use futures::StreamExt;
use polylink_chain::rpc::FinalizedBlock;
use polylink_ledger::{ABSTAIN, BUSY};
use polylink_protocol::ValidatorReady;
use polylink_types::{Amount, CommitScore, Hash32, PublicKey, RevealScore, SecretKey, TaskId, TxKind};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Pause between fetch attempts of a transcript that is not there yet.
const FETCH_RETRY_MS: u64 = 250;

/// Blocks read again when the validator starts: seats drawn while it was down (a restart, a
/// crash) are still served if their commit window is open. Longer than any commit window the
/// chain runs with in practice; seats already committed or out of time are skipped.
const LOOKBACK_BLOCKS: u64 = 256;

/// Everything a validator needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The chain node's RPC address.
    pub chain_url: String,
    /// The validator's account key.
    pub key: SecretKey,
    /// Where pending commitments are kept (none: a restart forgets them).
    pub data_dir: Option<PathBuf>,
    /// Stake to bond (the chain's minimum when `None`).
    pub stake: Option<Amount>,
    /// How the evaluators are loaded.
    pub scorer: ScorerConfig,
    /// Tests only: commit this score for every seat instead of evaluating (a dishonest validator).
    pub score_override: Option<u16>,
}

struct Shared {
    chain: Chain,
    http: reqwest::Client,
    cfg: Config,
    journal: Journal,
    tip: watch::Receiver<Tip>,
    scorers: Mutex<HashMap<Hash32, Arc<Scorer>>>,
    /// The `--model` files by sha256, hashed once at start.
    local_models: HashMap<String, std::path::PathBuf>,
}

/// A started validator; dropping it (or [`Running::stop`]) stops every duty.
pub struct Running {
    tasks: JoinSet<()>,
    /// What it announced.
    pub ready: ValidatorReady,
}

impl Running {
    /// Stops following the chain and abandons the duties in flight (their commitments stay on disk).
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Registers (bonding if needed), loads the evaluators of the registered models found locally,
/// resumes pending commitments, and starts following finalized blocks.
pub async fn start(cfg: Config) -> Result<Running> {
    let chain = Chain::connect(&cfg.chain_url, cfg.key.clone()).await?;
    let bonded = chain.register(cfg.stake).await?;
    let journal = Journal::open(cfg.data_dir.as_deref())?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        // Idle links are dropped before the gateways' idle limit (see `polylink_chain::http`).
        .pool_idle_timeout(polylink_chain::http::CLIENT_IDLE_MAX)
        .build()
        .map_err(|e| ValidatorError::Config(format!("http client: {e}")))?;
    let status = chain.client().status().await.map_err(|e| ValidatorError::Chain(e.to_string()))?;
    let (tip_tx, tip) = watch::channel(Tip { height: status.height, time_ms: status.time_ms });
    let ready = ValidatorReady {
        key: chain.public_key(),
        registered: true,
        bonded,
        chain_id: chain.chain_id().to_string(),
        resumed: 0,
    };
    let files = cfg.scorer.models.clone();
    let local_models = tokio::task::spawn_blocking(move || crate::scorer::hash_models(&files))
        .await
        .map_err(|e| ValidatorError::Tiqe(format!("hashing the --model files: {e}")))?;
    let scorers = Mutex::new(HashMap::new());
    let shared = Arc::new(Shared { chain, http, cfg, journal, tip, scorers, local_models });
    if shared.cfg.score_override.is_none() {
        preload(&shared).await;
    }
    let from = status.height.saturating_sub(LOOKBACK_BLOCKS) + 1;
    let events = shared
        .chain
        .client()
        .events_from(Some(from))
        .await
        .map_err(|e| ValidatorError::Chain(e.to_string()))?;
    let mut tasks = JoinSet::new();
    let pending = shared.journal.load();
    let ready = ValidatorReady { resumed: pending.len(), ..ready };
    let handled: HashMap<TaskId, u64> =
        pending.iter().map(|p| (p.seat.task, p.seat.elected_height)).collect();
    for p in pending {
        info!(task = %p.seat.task, "resuming a pending commitment");
        tasks.spawn(reveal(shared.clone(), p));
    }
    tasks.spawn(poll_tip(shared.clone(), tip_tx.clone()));
    tasks.spawn(follow(shared, tip_tx, events, handled));
    Ok(Running { tasks, ready })
}

/// Loads the evaluators of every registered model whose file is here, so the first task is quick.
async fn preload(sh: &Arc<Shared>) {
    let Ok(models) = sh.chain.client().models().await else { return };
    for artifact in models.into_iter().map(|m| m.model.artifact_hash) {
        if crate::scorer::gguf_for(&artifact, &sh.local_models).is_ok()
            && let Err(e) = scorer(sh, artifact).await
        {
            warn!(%artifact, error = %e, "cannot load the evaluators of a registered model");
        }
    }
}

/// Moves the tip forward (never back).
fn advance(tip: &watch::Sender<Tip>, seen: Tip) {
    tip.send_if_modified(|old| {
        let newer = seen.height > old.height;
        if newer {
            *old = seen;
        }
        newer
    });
}

/// The block stream: the tip, and a duty for every new seat. Reconnects when the stream ends,
/// reading from the block after the last one seen, so a node restart loses no seat. `handled`:
/// the seats already served or being served, by the height that drew them (each is served once,
/// whatever the replays).
async fn follow(
    sh: Arc<Shared>,
    tip: watch::Sender<Tip>,
    mut events: futures::stream::BoxStream<'static, FinalizedBlock>,
    mut handled: HashMap<TaskId, u64>,
) {
    let me = sh.chain.public_key();
    let mut duties = JoinSet::new();
    let mut last = 0;
    loop {
        while let Some(block) = events.next().await {
            last = last.max(block.executed.height);
            advance(&tip, Tip { height: block.executed.height, time_ms: block.timestamp_ms });
            // Seats older than any replay reaches are forgotten.
            handled.retain(|_, elected| *elected + 2 * LOOKBACK_BLOCKS > last);
            for seat in seats(&block, &me) {
                if handled.insert(seat.task, seat.elected_height).is_some() {
                    continue;
                }
                info!(task = %seat.task, commit_end = seat.commit_end_height, reveal_end = seat.reveal_end_height, "elected to a committee");
                duties.spawn(duty(sh.clone(), seat));
            }
            while duties.try_join_next().is_some() {}
        }
        warn!("block stream ended; reconnecting");
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match sh.chain.client().events_from(Some(last + 1)).await {
                Ok(stream) => {
                    events = stream;
                    break;
                }
                Err(e) => warn!(error = %e, "cannot reach the block stream"),
            }
        }
    }
}

/// Keeps the tip moving when the stream stalls (reveals depend on it).
async fn poll_tip(sh: Arc<Shared>, tip: watch::Sender<Tip>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(s) = sh.chain.client().status().await {
            advance(&tip, Tip { height: s.height, time_ms: s.time_ms });
        }
    }
}

fn now(sh: &Shared) -> Tip {
    *sh.tip.borrow()
}

async fn wait_until(sh: &Shared, mut done: impl FnMut(Tip) -> bool) {
    let mut rx = sh.tip.clone();
    let _ = rx.wait_for(|tip| done(*tip)).await;
}

/// The evaluators of the model with `artifact`, loaded once.
async fn scorer(sh: &Shared, artifact: Hash32) -> Result<Arc<Scorer>> {
    let mut scorers = sh.scorers.lock().await;
    if let Some(s) = scorers.get(&artifact) {
        return Ok(s.clone());
    }
    let s = Arc::new(Scorer::start(artifact, &sh.cfg.scorer, &sh.local_models).await?);
    scorers.insert(artifact, s.clone());
    Ok(s)
}

/// One seat, start to end.
async fn duty(sh: Arc<Shared>, seat: Seat) {
    let task = seat.task;
    // A seat read again after a restart: nothing to do once its commit is out of time or on
    // chain (a pending reveal is resumed from the journal).
    if seat.phase(now(&sh)) != Phase::Commit || committed(&sh, &task).await {
        return;
    }
    // A seat left empty is slashed: one this validator cannot judge is committed as an
    // abstention (excluded from the median, neither paid nor slashed).
    // Scoring that runs into the last call is abandoned for a busy seat (the scorer drops a job
    // nobody waits for), so an overloaded validator still commits in time.
    let abstain = (ABSTAIN, Hash32::ZERO);
    let (score, work) = tokio::select! {
        scored = evaluate(&sh, &seat) => match scored {
            Ok(Some(scored)) => scored,
            Ok(None) => abstain,
            Err(e) => {
                warn!(%task, error = %e, "cannot score; abstaining");
                abstain
            }
        },
        () = wait_until(&sh, |tip| seat.last_call(tip)) => {
            let tip = now(&sh);
            warn!(%task, height = tip.height, time_ms = tip.time_ms, "not scored by the last call; committing busy");
            // Out of time: no evidence about the worker (a task whose committee was busy is
            // paid unchecked, where a missing transcript pays nobody).
            (BUSY, Hash32::ZERO)
        }
    };
    if seat.phase(now(&sh)) != Phase::Commit {
        let tip = now(&sh);
        warn!(%task, height = tip.height, time_ms = tip.time_ms, commit_end = seat.commit_end_height, "scored too late to commit");
        return;
    }
    let pending = Pending::new(seat, score, work);
    // On disk before the commitment leaves: a restart must still be able to open it.
    if let Err(e) = sh.journal.save(&pending) {
        warn!(%task, error = %e, "cannot persist the salt; not committing");
        return;
    }
    let commitment = pending.commitment(&sh.chain.public_key());
    // Sent again while the node does not answer (it may be restarting) and the window is open.
    loop {
        match sh.chain.try_send(TxKind::CommitScore(CommitScore { task, commitment })).await {
            Ok(_) => {
                info!(%task, score, "score committed");
                break;
            }
            Err(e) if e.code().is_none() && seat.phase(now(&sh)) == Phase::Commit => {
                warn!(%task, error = %e, "the node did not take the commitment; sending it again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if committed(&sh, &task).await {
                    break;
                }
            }
            Err(e) => {
                warn!(%task, error = %e, "commit refused");
                sh.journal.remove(&task);
                return;
            }
        }
    }
    reveal(sh, pending).await;
}

/// Whether the chain holds this validator's commitment for `task`.
async fn committed(sh: &Shared, task: &TaskId) -> bool {
    let me = sh.chain.public_key();
    sh.chain
        .task(task)
        .await
        .is_ok_and(|record| record.committee.iter().any(|m| m.validator == me && m.commitment.is_some()))
}

/// Reveals a committed score once the reveal window opens; resends while the chain lacks it.
async fn reveal(sh: Arc<Shared>, p: Pending) {
    let (task, seat) = (p.seat.task, p.seat);
    wait_until(&sh, |tip| matches!(seat.phase(tip), Phase::Reveal | Phase::Over)).await;
    let me = sh.chain.public_key();
    while seat.phase(now(&sh)) == Phase::Reveal {
        let sent = now(&sh).height;
        let reveal = RevealScore { task, score: p.score, work: p.work, salt: p.salt };
        match sh.chain.send(TxKind::RevealScore(reveal)).await {
            Ok(_) => info!(%task, score = p.score, "score revealed"),
            Err(e) => warn!(%task, error = %e, "reveal refused"),
        }
        wait_until(&sh, |tip| tip.height >= sent + 3 || seat.phase(tip) == Phase::Over).await;
        let revealed = sh
            .chain
            .task(&task)
            .await
            .is_ok_and(|record| record.committee.iter().any(|m| m.validator == me && m.score.is_some()));
        if revealed {
            break;
        }
    }
    sh.journal.remove(&task);
}

/// This validator's score for a seat and the digest of its evaluation: `None` to abstain.
async fn evaluate(sh: &Shared, seat: &Seat) -> Result<Option<(u16, Hash32)>> {
    let task = seat.task;
    if let Some(score) = sh.cfg.score_override {
        // A lazy validator: a score, and a digest it did not compute.
        return Ok(Some((score, Hash32::digest(&[b"lazy", &task.0]))));
    }
    let record = sh.chain.task(&task).await?;
    let on_chain = OnChain::from_task(task, &record)?;
    // A transcript this validator could not get is no evidence against the worker (a gateway
    // may withhold it from some validators only, and a validator may be cut off): it abstains.
    // A worker whose transcript no one gets is not paid (no quorum).
    let Some(body) = transcript(sh, seat, &record.gateway).await else {
        info!(%task, "transcript not served by the fetch deadline; abstaining");
        return Ok(None);
    };
    let checked = match verify::check(&body, &on_chain) {
        Verdict::Score(c) => c,
        Verdict::Abstain(why) => {
            // The gateway's word against the workers' signatures: no evidence about them.
            warn!(%task, %why, "transcript disagrees with the chain or the receipts; abstaining");
            return Ok(None);
        }
        Verdict::Zero(why) => {
            info!(%task, %why, "the gateway served the task alone and its transcript is wrong; scoring 0");
            return Ok(Some((0, crate::scorer::work_digest(&task, None))));
        }
    };
    let artifact = sh.chain.artifact(on_chain.model).await?;
    let started = std::time::Instant::now();
    let scorer = scorer(sh, artifact).await?;
    let Some(scored) = scorer.score(checked, seat.commit_end_ms).await? else { return Ok(None) };
    let waited_and_scored_ms = started.elapsed().as_millis() as u64;
    info!(%task, score = scored.score, work = %scored.work, waited_and_scored_ms, scoring_ms = scored.ms, evidence = %scored.evidence, "scored");
    Ok(Some((scored.score, scored.work)))
}

/// Fetches the transcript from the task's gateway at the endpoint it registered on chain (looked
/// up on every try: a gateway may move), retrying until the seat's fetch deadline.
async fn transcript(sh: &Shared, seat: &Seat, gateway: &PublicKey) -> Option<Vec<u8>> {
    let key = &sh.cfg.key;
    loop {
        match sh.chain.client().account(gateway).await.map(|a| a.gateway) {
            Ok(Some(registered)) => {
                let url = format!("http://{}", registered.endpoint);
                match fetch(&sh.http, &url, sh.chain.chain_id(), key, &seat.task).await {
                    Fetched::Body(body) => return Some(body),
                    Fetched::Refused(status, why) => {
                        debug!(task = %seat.task, %url, status, %why, "transcript not served")
                    }
                    Fetched::Unreachable(why) => {
                        debug!(task = %seat.task, %url, %why, "transcript server unreachable")
                    }
                }
            }
            Ok(None) => debug!(task = %seat.task, %gateway, "the task's gateway is not registered"),
            Err(e) => debug!(task = %seat.task, error = %e, "looking the task's gateway up"),
        }
        if seat.fetch_over(now(sh)) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(FETCH_RETRY_MS)).await;
    }
}
