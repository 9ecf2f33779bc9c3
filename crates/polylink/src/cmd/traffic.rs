//! `polylink bench traffic`: honest traffic through a whole local network, as its users send it.
//!
//! Starts `polylink up` (this binary) in a fresh directory, sends a mix of ordinary requests,
//! clients that hang up mid-stream and long answers through the official `openai` package
//! (`traffic.py`, built into the binary), waits until the chain has settled every task, and checks
//! what fair settlement promises: every request served, every task settled (none left open), no
//! honest worker or validator slashed, every worker richer, and every charge exactly the tokens
//! the gateway generated and sent at the task's price. Prints the counts as JSON (tasks the
//! evaluators failed, and the workers' strikes, included) and fails when a promise is broken.

use anyhow::{Context, bail};
use clap::Args;
use polylink_chain::rpc::Client;
use polylink_ledger::{Task, TaskResult, TaskStatus};
use polylink_types::{Amount, PublicKey, SettleOutcome, TaskId};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The traffic generator, run with `python3`.
pub(super) const SCRIPT: &str = include_str!("traffic.py");

/// What to send.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Ordinary requests (chat and completions, temperature 0–1.5, top_p, streamed or not,
    /// system prompts, several turns).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Streamed requests whose client hangs up after a few chunks.
    #[arg(long, default_value_t = 20)]
    disconnects: usize,
    /// Long streamed answers.
    #[arg(long, default_value_t = 5)]
    long: usize,
    /// Tokens of each long answer.
    #[arg(long, default_value_t = 2_048)]
    long_tokens: usize,
    /// Most tokens of an ordinary answer.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest wait for the chain to settle everything after the last answer, seconds.
    #[arg(long, default_value_t = 900)]
    settle_timeout_s: u64,
    /// Keep the network's data (chain, transcripts, logs of every role) in this new directory
    /// instead of a temporary one.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

/// One request as the client saw it (`traffic.py`'s output).
#[derive(Debug, Deserialize)]
pub(super) struct Sent {
    pub(super) label: String,
    pub(super) kind: String,
    pub(super) stream: bool,
    pub(super) hung_up: bool,
    pub(super) max_tokens: u32,
    pub(super) task_id: Option<String>,
    charge: Option<String>,
    usage: Option<Usage>,
    pub(super) error: Option<String>,
    pub(super) seconds: f64,
    /// Seconds to the first token of a stream.
    #[serde(default)]
    pub(super) first_token_s: Option<f64>,
    /// When the request ended, seconds since the Unix epoch.
    #[serde(default)]
    pub(super) ended_at: f64,
}

#[derive(Debug, Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// An account's money: spendable (its balance and its deposits for gateways), bonded, strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Holding {
    pub(super) balance: Amount,
    pub(super) bonded: Amount,
    pub(super) strikes: u8,
}

pub(super) async fn holding(client: &Client, who: &PublicKey) -> anyhow::Result<Holding> {
    let a = client.account(who).await?;
    let deposits: Amount = a.allowances.iter().map(|d| d.limit).sum();
    Ok(Holding { balance: a.balance + deposits, bonded: a.stake.bonded, strikes: a.stake.strikes })
}

/// Runs `polylink up` (this binary) in `keep` (a new directory) or a temporary one, its log to
/// `up.log` there when `log_to_file` (else to this process's stderr), calls `drive` with its
/// summary, data dir and process id inside a Tokio runtime, then stops it.
pub(super) fn with_up<T>(
    keep: Option<&std::path::Path>,
    log_to_file: bool,
    drive: impl AsyncFnOnce(&polylink_node::up::Summary, &std::path::Path, u32) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let temp = tempfile::tempdir()?;
    let dir = match keep {
        Some(keep) => {
            anyhow::ensure!(!keep.exists(), "{} exists; --keep takes a new directory", keep.display());
            std::fs::create_dir_all(keep)?;
            keep.to_path_buf()
        }
        None => temp.path().to_path_buf(),
    };
    let stderr = if log_to_file {
        eprintln!("polylink up starting (its log: {})", dir.join("up.log").display());
        Stdio::from(std::fs::File::create(dir.join("up.log"))?)
    } else {
        Stdio::inherit()
    };
    let mut up = Command::new(std::env::current_exe()?)
        .args(["up", "--listen", "127.0.0.1:0", "--rpc-port", "0", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("starting polylink up")?;
    let result = (|| {
        let mut line = String::new();
        BufReader::new(up.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let summary: polylink_node::up::Summary =
            serde_json::from_str(&line).with_context(|| format!("polylink up printed {line:?}"))?;
        tokio::runtime::Runtime::new()?.block_on(drive(&summary, &dir, up.id()))
    })();
    let _ = Command::new("kill").args(["-TERM", &up.id().to_string()]).status();
    let _ = up.wait();
    result
}

impl TrafficArgs {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        with_up(self.keep.as_deref(), false, async |summary, dir, _| self.drive(summary, dir).await)
    }

    async fn drive(&self, summary: &polylink_node::up::Summary, dir: &std::path::Path) -> anyhow::Result<()> {
        let client = Client::new(&summary.rpc_url)?;
        let user = PublicKey::from_str(&summary.account).map_err(|e| anyhow::anyhow!("{e}"))?;
        let workers: Vec<PublicKey> = summary.workers.iter().map(|w| w.account).collect();
        let validators: Vec<PublicKey> = summary.validators.iter().map(|v| v.account).collect();
        let gateway = PublicKey::from_str(&summary.gateway).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut before = BTreeMap::new();
        for who in workers.iter().chain(&validators).chain([&user, &gateway]) {
            before.insert(*who, holding(&client, who).await?);
        }
        let script = dir.join("traffic.py");
        std::fs::write(&script, SCRIPT)?;
        let plan = json!({
            "requests": self.requests, "disconnects": self.disconnects, "long": self.long,
            "long_tokens": self.long_tokens, "max_tokens": self.max_tokens, "seed": self.seed,
            "concurrency": self.concurrency,
        });
        let model = "smollm2-135m-instruct";
        let started = Instant::now();
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .args([&summary.base_url, &summary.api_key, model, &plan.to_string()])
            .output()
            .await
            .context("running python3 (the openai package must be installed)")?;
        if !out.status.success() {
            bail!("the traffic script failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let sent: Vec<Sent> =
            serde_json::from_slice(&out.stdout).context("reading the traffic script's output")?;
        let traffic_s = started.elapsed().as_secs_f64();

        let mut problems = Vec::new();
        let tasks = tasks_of(&sent, |_| false, &mut problems);
        let settled =
            wait_settled(&client, tasks.keys().copied(), Duration::from_secs(self.settle_timeout_s)).await?;
        let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut false_positives = Vec::new();
        let mut charged: Amount = 0;
        for (id, record) in &settled {
            let s = tasks[id];
            let outcome = outcome(&record.status);
            *outcomes.entry(outcome).or_default() += 1;
            if outcome == "open" {
                problems.push(format!("task {id} ({} {}) was never settled", s.label, s.kind));
            }
            if record.gateway != gateway {
                problems.push(format!("task {id} names gateway {}, not the network's", record.gateway));
            }
            if outcome == "low_quality" {
                // An evaluator's false positive: the worker loses that task's pay and gets a
                // strike, never stake; reported, not a broken promise.
                let delivered = record.result.as_ref().map_or(0, |r| r.completion_tokens);
                false_positives.push(format!(
                    "{id} ({} {}, {delivered} of max {} tokens)",
                    s.label, s.kind, s.max_tokens
                ));
            }
            let Some(result) = &record.result else { continue };
            let billed = u128::from(result.prompt_tokens) + u128::from(result.completion_tokens);
            if result.fee != billed * record.price {
                problems
                    .push(format!("task {id}: fee {} is not {billed} tokens x {}", result.fee, record.price));
            }
            charged += result.fee;
            check_charge(s, id, result, &mut problems);
        }
        let mut after = BTreeMap::new();
        for who in before.keys() {
            after.insert(*who, holding(&client, who).await?);
        }
        for w in &workers {
            let (b, a) = (before[w], after[w]);
            if a.bonded < b.bonded {
                problems.push(format!("honest worker {w} lost stake: {b:?} -> {a:?}"));
            }
            if a.balance <= b.balance {
                problems.push(format!("worker {w} is not richer: {} -> {}", b.balance, a.balance));
            }
        }
        for v in &validators {
            if after[v].bonded < before[v].bonded {
                problems.push(format!("validator {v} was slashed: {:?} -> {:?}", before[v], after[v]));
            }
        }
        // Reporting a result is a duty (free): the gateway neither pays nor earns by the traffic.
        if after[&gateway] != before[&gateway] {
            problems.push(format!(
                "the gateway's holding moved: {:?} -> {:?}",
                before[&gateway], after[&gateway]
            ));
        }
        let user_paid = before[&user].balance.saturating_sub(after[&user].balance);
        let report = json!({
            "requests": sent.len(),
            "ordinary": sent.iter().filter(|s| s.label == "ordinary").count(),
            "streamed": sent.iter().filter(|s| s.stream).count(),
            "hung_up": sent.iter().filter(|s| s.hung_up).count(),
            "long": sent.iter().filter(|s| s.label == "long").count(),
            "longest_answer_s": sent.iter().map(|s| s.seconds).fold(0.0, f64::max),
            "failed_requests": sent.iter().filter(|s| s.error.is_some()).count(),
            "tasks": settled.len(),
            "outcomes": outcomes,
            "charged": charged.to_string(),
            "user_paid_net": user_paid.to_string(),
            "traffic_s": traffic_s,
            "low_quality_tasks": false_positives,
            "worker_strikes": workers.iter().map(|w| (w.to_string(), after[w].strikes)).collect::<BTreeMap<_, _>>(),
            "worker_earnings": workers.iter().map(|w| (w.to_string(), (after[w].balance - before[w].balance.min(after[w].balance)).to_string())).collect::<BTreeMap<_, _>>(),
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        if !problems.is_empty() {
            bail!("{} promise(s) broken", problems.len());
        }
        Ok(())
    }
}

/// The task each served request names. A failed request is a problem unless `excused` (one
/// that failed beside a failure the benchmark caused), as is a served one that names no task.
pub(super) fn tasks_of<'a>(
    sent: &'a [Sent],
    excused: impl Fn(&Sent) -> bool,
    problems: &mut Vec<String>,
) -> BTreeMap<TaskId, &'a Sent> {
    let mut tasks = BTreeMap::new();
    for s in sent {
        if let Some(e) = &s.error
            && !excused(s)
        {
            problems.push(format!("{} {} request failed: {e}", s.label, s.kind));
        }
        match s.task_id.as_deref().map(TaskId::from_str) {
            Some(Ok(id)) => {
                tasks.insert(id, s);
            }
            _ if s.error.is_none() => problems.push(format!("{} {} request named no task", s.label, s.kind)),
            _ => {}
        }
    }
    tasks
}

/// How a task ended, as the reports name it (`open` while it has not).
pub(super) fn outcome(status: &TaskStatus) -> &'static str {
    match status {
        TaskStatus::Settled(SettleOutcome::Paid) => "paid",
        TaskStatus::Settled(SettleOutcome::LowQuality) => "low_quality",
        TaskStatus::Settled(SettleOutcome::NoQuorum) => "no_quorum",
        TaskStatus::Settled(SettleOutcome::Unchecked) => "unchecked",
        TaskStatus::Reclaimed => "reclaimed",
        _ => "open",
    }
}

/// The client's view of a request against the chain's: a finished answer's charge is what the
/// gateway said, for the tokens the client was told; a hung-up stream was billed fewer tokens
/// than asked.
pub(super) fn check_charge(s: &Sent, id: &TaskId, result: &TaskResult, problems: &mut Vec<String>) {
    if s.hung_up {
        if result.completion_tokens >= s.max_tokens {
            problems.push(format!("task {id}: a client that hung up was billed all {} tokens", s.max_tokens));
        }
        return;
    }
    if let Some(charge) = s.charge.as_deref().and_then(|c| c.parse::<Amount>().ok())
        && charge != result.fee
    {
        problems.push(format!("task {id}: the gateway said {charge}, the chain took {}", result.fee));
    }
    let billed = (u64::from(result.prompt_tokens), u64::from(result.completion_tokens));
    if let Some(u) = &s.usage
        && (u.prompt_tokens, u.completion_tokens) != billed
    {
        problems.push(format!(
            "task {id}: the client was told {} + {} tokens, the chain billed {} + {}",
            u.prompt_tokens, u.completion_tokens, billed.0, billed.1
        ));
    }
}

/// Polls every task until none is open or being scored, or `timeout` passes.
pub(super) async fn wait_settled(
    client: &Client,
    ids: impl Iterator<Item = TaskId>,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<TaskId, Task>> {
    let deadline = Instant::now() + timeout;
    let mut out = BTreeMap::new();
    for id in ids {
        loop {
            let record = client.task(&id).await?;
            let done = matches!(record.status, TaskStatus::Settled(_) | TaskStatus::Reclaimed);
            if done || Instant::now() > deadline {
                out.insert(id, record);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(out)
}
