//! `polylink bench soak`: a whole local network under steady traffic for a long time, with its
//! processes killed and restarted as machines fail.
//!
//! Starts `polylink up` (this binary) in a fresh directory and sends the mixed traffic of
//! `polylink bench traffic` (chat and completions, streamed or not, temperatures, clients that hang
//! up, long answers) in rounds until the time is up. Every few rounds one process fails in the
//! middle of a round, in turn: a worker is killed outright (SIGKILL), a score validator is
//! restarted, the chain node is restarted (both SIGTERM, as an operator's restart). `up` starts
//! each again with its key, data and addresses. After each round it prints one JSON line: the
//! requests sent and failed, latency (p50/p99 of whole requests and of the first token of
//! streams), the chain's height, and the resident memory of every process of the network. At the
//! end it waits for the chain to settle every task and checks the promises: every task settled,
//! no honest worker or validator slashed, the supply moved only by the fees burned, every charge
//! exact, and no request failed outside the minute after a failure.

use super::traffic::{SCRIPT, Sent, check_charge, holding, outcome, tasks_of, wait_settled, with_up};
use anyhow::{Context, bail};
use clap::Args;
use polylink_chain::rpc::{Client, RESTART_PATIENCE};
use polylink_types::{Amount, PublicKey};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long and how hard.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Minutes of traffic.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds per round (one report line each).
    #[arg(long, default_value_t = 120)]
    round_s: u64,
    /// A process fails in every this many rounds (0: none).
    #[arg(long, default_value_t = 1)]
    fault_every: u64,
    /// Seconds into a round at which its failure happens.
    #[arg(long, default_value_t = 20)]
    fault_at_s: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Most tokens of an ordinary answer.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Tokens of each long answer.
    #[arg(long, default_value_t = 200)]
    long_tokens: usize,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest wait for the chain to settle everything after the last round, seconds.
    #[arg(long, default_value_t = 900)]
    settle_timeout_s: u64,
    /// Keep the network's data (chain, transcripts, logs of every role) in this new directory.
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// A process of the network, as `/proc` shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    /// `chain`, `worker-whole`, `worker-0..15`, `validator-1`, …
    role: String,
    rss_kb: u64,
}

/// A failure the soak caused.
#[derive(Debug, Clone, serde::Serialize)]
struct Fault {
    round: u64,
    role: String,
    signal: &'static str,
    /// Seconds since the Unix epoch.
    at: f64,
}

/// Requests that fail this soon after a failure are the failure's, not a broken promise.
const FAULT_WINDOW_S: f64 = 60.0;

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl SoakArgs {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::ensure!(cfg!(target_os = "linux"), "the soak reads /proc: it runs on Linux");
        with_up(self.keep.as_deref(), true, async |summary, dir, pid| self.drive(summary, dir, pid).await)
    }

    async fn drive(
        &self,
        summary: &polylink_node::up::Summary,
        dir: &Path,
        up_pid: u32,
    ) -> anyhow::Result<()> {
        let client = Client::new(&summary.rpc_url)?.with_patience(RESTART_PATIENCE);
        let parse = |s: &str| PublicKey::from_str(s).map_err(|e| anyhow::anyhow!("{e}"));
        let (user, gateway) = (parse(&summary.account)?, parse(&summary.gateway)?);
        let workers: Vec<PublicKey> = summary.workers.iter().map(|w| w.account).collect();
        let validators: Vec<PublicKey> = summary.validators.iter().map(|v| v.account).collect();
        let mut before = BTreeMap::new();
        for who in workers.iter().chain(&validators).chain([&user, &gateway]) {
            before.insert(*who, holding(&client, who).await?);
        }
        let totals_before = client.params().await?.totals;
        let script = dir.join("traffic.py");
        std::fs::write(&script, SCRIPT)?;

        let started = Instant::now();
        let total = Duration::from_secs(self.minutes * 60);
        let mut sent: Vec<Sent> = Vec::new();
        let mut faults: Vec<Fault> = Vec::new();
        let mut rounds = Vec::new();
        let mut batch = 0u64;
        let mut round = 0u64;
        while started.elapsed() < total {
            round += 1;
            let round_end = Instant::now() + Duration::from_secs(self.round_s);
            let fault = (self.fault_every > 0 && round.is_multiple_of(self.fault_every))
                .then(|| self.schedule_fault(round, faults.len(), up_pid));
            let first = sent.len();
            while Instant::now() < round_end && started.elapsed() < total {
                batch += 1;
                sent.extend(self.batch(summary, &script, batch).await?);
            }
            if let Some(fault) = fault {
                match fault.join() {
                    Ok(Ok(f)) => faults.push(f),
                    Ok(Err(e)) => eprintln!("soak: round {round}: the failure was not caused: {e}"),
                    Err(_) => bail!("the failure thread panicked"),
                }
            }
            let report = round_report(round, &sent[first..], &faults, up_pid, &client).await;
            println!("{report}");
            rounds.push(report);
        }
        let traffic_s = started.elapsed().as_secs_f64();
        eprintln!("soak: traffic over after {traffic_s:.0} s; waiting for the chain to settle every task");

        let mut problems = Vec::new();
        let near_fault =
            |s: &Sent| faults.iter().any(|f| s.ended_at >= f.at && s.ended_at - f.at <= FAULT_WINDOW_S);
        let tasks = tasks_of(&sent, near_fault, &mut problems);
        let settled =
            wait_settled(&client, tasks.keys().copied(), Duration::from_secs(self.settle_timeout_s)).await?;
        let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut charged: Amount = 0;
        for (id, record) in &settled {
            let o = outcome(&record.status);
            *outcomes.entry(o).or_default() += 1;
            if o == "open" {
                problems.push(format!("task {id} was never settled"));
            }
            if let Some(result) = &record.result {
                charged += result.fee;
                check_charge(tasks[id], id, result, &mut problems);
            }
        }
        let mut after = BTreeMap::new();
        for who in before.keys() {
            after.insert(*who, holding(&client, who).await?);
        }
        for who in workers.iter().chain(&validators) {
            if after[who].bonded < before[who].bonded {
                problems.push(format!("honest {who} lost stake: {:?} -> {:?}", before[who], after[who]));
            }
        }
        for w in &workers {
            if after[w].balance <= before[w].balance {
                problems
                    .push(format!("worker {w} is not richer: {} -> {}", before[w].balance, after[w].balance));
            }
        }
        let totals = client.params().await?.totals;
        let burned = totals.fees_burned - totals_before.fees_burned;
        let slashed = totals.slashed - totals_before.slashed;
        if totals_before.supply != totals.supply + burned + slashed {
            problems.push(format!(
                "supply moved by more than the fees burned and the slashes: {} -> {} (burned {burned}, slashed {slashed})",
                totals_before.supply, totals.supply
            ));
        }
        if slashed > 0 {
            problems.push(format!("{slashed} was slashed from honest parties"));
        }
        let ok: Vec<&Sent> = sent.iter().filter(|s| s.error.is_none()).collect();
        let report = json!({
            "minutes": traffic_s / 60.0,
            "rounds": rounds.len(),
            "requests": sent.len(),
            "failed_requests": sent.len() - ok.len(),
            "hung_up": sent.iter().filter(|s| s.hung_up).count(),
            "faults": faults,
            "tasks": settled.len(),
            "outcomes": outcomes,
            "charged": charged.to_string(),
            "supply_before": totals_before.supply.to_string(),
            "supply_after": totals.supply.to_string(),
            "fees_burned": burned.to_string(),
            "slashed": slashed.to_string(),
            "worker_strikes": workers.iter().map(|w| (w.to_string(), after[w].strikes)).collect::<BTreeMap<_, _>>(),
            "latency_s": percentiles(ok.iter().map(|s| s.seconds)),
            "first_token_s": percentiles(ok.iter().filter_map(|s| s.first_token_s)),
            "rss_growth": rss_growth(&rounds),
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        if !problems.is_empty() {
            bail!("{} promise(s) broken", problems.len());
        }
        Ok(())
    }

    /// One batch of traffic (a few ordinary requests, a client that hangs up, and every other
    /// batch a long answer), as the clients saw it.
    async fn batch(
        &self,
        summary: &polylink_node::up::Summary,
        script: &Path,
        batch: u64,
    ) -> anyhow::Result<Vec<Sent>> {
        let plan = json!({
            "requests": 4, "disconnects": 1, "long": batch % 2, "long_tokens": self.long_tokens,
            "max_tokens": self.max_tokens, "seed": self.seed.wrapping_mul(1_000_003).wrapping_add(batch),
            "concurrency": self.concurrency,
        });
        let out = tokio::process::Command::new("python3")
            .arg(script)
            .args([&summary.base_url, &summary.api_key, polylink_node::up::MODEL_ID, &plan.to_string()])
            .output()
            .await
            .context("running python3 (the openai package must be installed)")?;
        if !out.status.success() {
            bail!("the traffic script failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).context("reading the traffic script's output")
    }

    /// Fails one process `fault_at_s` into the round, on a thread of its own: the `n`-th failure
    /// of the soak takes, in turn, a worker (killed), a validator and the chain node (restarted).
    fn schedule_fault(
        &self,
        round: u64,
        n: usize,
        up_pid: u32,
    ) -> std::thread::JoinHandle<anyhow::Result<Fault>> {
        let at = Duration::from_secs(self.fault_at_s);
        std::thread::spawn(move || {
            std::thread::sleep(at);
            let procs = processes(up_pid);
            let of = |prefix: &str| -> Vec<Proc> {
                let mut v: Vec<Proc> = procs.iter().filter(|p| p.role.starts_with(prefix)).cloned().collect();
                v.sort_by(|a, b| a.role.cmp(&b.role));
                v
            };
            let (candidates, signal) = match n % 3 {
                0 => (of("worker"), "KILL"),
                1 => (of("validator"), "TERM"),
                _ => (of("chain"), "TERM"),
            };
            let Some(victim) = candidates.get((n / 3) % candidates.len().max(1)) else {
                bail!("no process to fail (up has {} children)", procs.len());
            };
            let status =
                Command::new("kill").args([&format!("-{signal}"), &victim.pid.to_string()]).status()?;
            anyhow::ensure!(status.success(), "kill -{signal} {} failed", victim.pid);
            eprintln!("soak: round {round}: sent SIG{signal} to {} (pid {})", victim.role, victim.pid);
            Ok(Fault { round, role: victim.role.clone(), signal, at: now_s() })
        })
    }
}

/// One round's line: requests, failures, latency, the chain's height, every process's memory.
async fn round_report(
    round: u64,
    sent: &[Sent],
    faults: &[Fault],
    up_pid: u32,
    client: &Client,
) -> serde_json::Value {
    let ok: Vec<&Sent> = sent.iter().filter(|s| s.error.is_none()).collect();
    let mut rss: BTreeMap<String, u64> = processes(up_pid).into_iter().map(|p| (p.role, p.rss_kb)).collect();
    rss.insert("up".into(), rss_kb(up_pid).unwrap_or(0));
    json!({
        "round": round,
        "requests": sent.len(),
        "failed": sent.len() - ok.len(),
        "errors": sent.iter().filter_map(|s| s.error.clone()).collect::<Vec<_>>(),
        "latency_s": percentiles(ok.iter().map(|s| s.seconds)),
        "first_token_s": percentiles(ok.iter().filter_map(|s| s.first_token_s)),
        "fault": faults.iter().find(|f| f.round == round).map(|f| format!("SIG{} {}", f.signal, f.role)),
        "height": client.status().await.map(|s| s.height).ok(),
        "rss_kb": rss,
    })
}

/// p50 and p99 of `values` (nearest rank), with their count.
fn percentiles(values: impl Iterator<Item = f64>) -> serde_json::Value {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return json!({"n": 0});
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    json!({"n": v.len(), "p50": rank(0.50), "p99": rank(0.99)})
}

/// Per role, the resident memory at the first round and the last, in KiB: the network's memory
/// growth over the soak (a role restarted meanwhile starts again from its load).
fn rss_growth(rounds: &[serde_json::Value]) -> serde_json::Value {
    let (Some(first), Some(last)) = (rounds.first(), rounds.last()) else { return json!({}) };
    let mut out = serde_json::Map::new();
    if let (Some(a), Some(b)) = (first["rss_kb"].as_object(), last["rss_kb"].as_object()) {
        for (role, kb) in a {
            out.insert(role.clone(), json!({"first": kb, "last": b.get(role)}));
        }
    }
    serde_json::Value::Object(out)
}

/// The children of `up` (pid `parent`) with their roles, read from `/proc`.
fn processes(parent: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let ppid = field(&status, "PPid:").and_then(|v| v.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let Some(role) = role(&args) else { continue };
        let rss_kb = field(&status, "VmRSS:").and_then(|v| v.trim_end_matches(" kB").trim().parse().ok());
        out.push(Proc { pid, role, rss_kb: rss_kb.unwrap_or(0) });
    }
    out
}

/// A child's role from its command line (`polylink chain dev …`, `polylink worker … --layers
/// 0..15`, `polylink validator run … --data-dir …/validators/1`).
fn role(args: &[String]) -> Option<String> {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    match args.get(1).map(String::as_str)? {
        "chain" => Some("chain".into()),
        "worker" => Some(match value("--layers") {
            Some(layers) => format!("worker-{layers}"),
            None => "worker-whole".into(),
        }),
        "validator" => {
            let i = value("--data-dir").and_then(|d| Path::new(d).file_name()?.to_str().map(String::from));
            Some(format!("validator-{}", i.unwrap_or_default()))
        }
        _ => None,
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field(&status, "VmRSS:")?.trim_end_matches(" kB").trim().parse().ok()
}

/// The value of `/proc/*/status`'s line `name`.
fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim)
}
