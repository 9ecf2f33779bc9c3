//! Running `polylink up` as a user would: a child process with its own data dir, the summary line
//! it prints, and the chain RPC it reports.
#![allow(dead_code)] // each test binary uses its own part of this module

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `polylink up`; stopped (SIGTERM, like Ctrl-C) when dropped.
pub struct Up {
    child: Child,
    /// The JSON summary it printed.
    pub summary: Value,
    _dir: tempfile::TempDir,
}

impl Up {
    /// Starts `polylink up` with `args` (on free ports of the `--bind` address, 127.0.0.1 unless
    /// `args` names one, in a fresh data dir) and waits for its summary.
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bind = args.iter().position(|a| *a == "--bind").map_or("127.0.0.1", |i| args[i + 1]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_polylink"))
            .arg("up")
            .args(["--listen", &format!("{bind}:0"), "--rpc-port", "0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let summary: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                panic!("polylink up did not come up ({e}); it printed {line:?}")
            }
        };
        Self { child, summary, _dir: dir }
    }

    /// The chain RPC base URL.
    pub fn rpc(&self) -> String {
        self.summary["rpc_url"].as_str().unwrap().to_string()
    }

    /// The OpenAI base URL (`…/v1`).
    pub fn base_url(&self) -> String {
        self.summary["base_url"].as_str().unwrap().to_string()
    }

    /// The process id of `up` itself.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The account of the worker named `name`.
    pub fn worker_account(&self, name: &str) -> String {
        let workers = self.summary["workers"].as_array().unwrap();
        let w = workers.iter().find(|w| w["name"] == name).unwrap_or_else(|| panic!("no worker {name}"));
        w["account"].as_str().unwrap().to_string()
    }

    /// The process id of the worker named `name`.
    pub fn worker_pid(&self, name: &str) -> i32 {
        let workers = self.summary["workers"].as_array().unwrap();
        let w = workers.iter().find(|w| w["name"] == name).unwrap_or_else(|| panic!("no worker {name}"));
        w["pid"].as_i64().unwrap() as i32
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET rpc + path` as JSON, read by field name as any HTTP client of the RPC would.
pub fn get(rpc: &str, path: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime
        .block_on(async {
            reqwest::get(format!("{rpc}{path}")).await?.error_for_status()?.json::<Value>().await
        })
        .unwrap_or_else(|e| panic!("GET {rpc}{path}: {e}"))
}

/// An account's funds: its balance plus its deposits (what a user has paid from is in a deposit).
pub fn balance(rpc: &str, account: &str) -> u128 {
    let record = get(rpc, &format!("/account/{account}"));
    let deposits: u128 =
        record["allowances"].as_array().map_or(0, |d| d.iter().map(|d| amount(&d["limit"])).sum());
    amount(&record["balance"]) + deposits
}

/// Waits until `task` reaches a settled state (or panics after `timeout`); returns its record.
pub fn wait_settled(rpc: &str, task: &str, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let record = get(rpc, &format!("/task/{task}"));
        if record["status"].get("settled").is_some() {
            return record;
        }
        assert!(std::time::Instant::now() < deadline, "task {task} not settled in {timeout:?}: {record}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A base-unit amount in a JSON answer (a decimal string, or a number).
pub fn amount(v: &Value) -> u128 {
    v.as_str().map(|s| s.parse().unwrap()).or_else(|| v.as_u64().map(u128::from)).unwrap()
}

fn bps(x: u128, bps: u128) -> u128 {
    x * bps / 10_000
}

/// What one settled task did to balances.
pub struct Settled {
    /// Balance change per account, as ARCHITECTURE §5's split gives it.
    pub deltas: Vec<(String, i128)>,
    /// Workers that served it.
    pub stages: usize,
    /// The task's result as the chain recorded it.
    pub result: Value,
}

/// Checks that `task_id` (a request by `user` the gateway said it charged `charge` for `tokens`
/// tokens) is visible through the RPC with exactly that fee, waits for its committee to settle it
/// as paid, and recomputes from `Params` what each account must have received.
pub fn settle_and_split(rpc: &str, task_id: &str, user: &str, charge: u128, tokens: u128) -> Settled {
    let task = get(rpc, &format!("/task/{task_id}"));
    assert_eq!(task["user"], user);
    let price = amount(&task["price"]);
    assert_eq!(charge, tokens * price, "charge of {task_id}: {task}");
    let task = wait_settled(rpc, task_id, Duration::from_secs(180));
    assert_eq!(task["status"]["settled"], "paid", "an honest answer must be paid: {task}");
    let fee = amount(&task["result"]["fee"]);
    assert_eq!(fee, charge, "{task}");
    let params = get(rpc, "/params")["params"].clone();
    let model = get(rpc, &format!("/model/{}", task["model"]));
    let median = task["median_score"].as_u64().unwrap() as u128;
    assert!(median >= params["quality_min"].as_u64().unwrap() as u128, "{task}");
    let royalty = bps(fee, model["royalty_bps"].as_u64().unwrap() as u128);
    let treasury = bps(fee, params["treasury_share_bps"].as_u64().unwrap() as u128);
    let validators = bps(fee, params["validator_share_bps"].as_u64().unwrap() as u128);
    let workers = fee - royalty - treasury - validators;
    let worker_pay = workers * median / 1000;
    let mut deltas = vec![(user.to_string(), -(fee as i128) + (workers - worker_pay) as i128)];
    // An artifact that names no developer pays its royalty to the treasury, not to an account.
    let developer = model["developer"].as_str().unwrap();
    if developer != polylink_ledger::TREASURY.to_string() {
        deltas.push((developer.to_string(), royalty as i128));
    }
    let delta_max = params["score_delta"].as_u64().unwrap() as i128;
    let honest: Vec<&Value> = task["committee"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["score"].as_u64().is_some_and(|s| (s as i128 - median as i128).abs() <= delta_max))
        .collect();
    assert!(!honest.is_empty(), "no validator revealed: {task}");
    for m in &honest {
        deltas.push((
            m["validator"].as_str().unwrap().to_string(),
            (validators / honest.len() as u128) as i128,
        ));
    }
    // The workers that signed receipts share the workers' pay by layers x rows (rows counted
    // up to the billed tokens); the dust goes to the head when it signed, else the first signer.
    let stage_workers: Vec<&str> =
        task["workers"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    let billed = task["result"]["prompt_tokens"].as_u64().unwrap() as u128
        + task["result"]["completion_tokens"].as_u64().unwrap() as u128;
    let receipts: Vec<(&str, u128)> = task["result"]["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let layers =
                r["layer_end"].as_u64().unwrap() as u128 - r["layer_start"].as_u64().unwrap() as u128;
            let rows = (r["rows"].as_u64().unwrap() as u128).min(billed);
            (r["worker"].as_str().unwrap(), layers * rows)
        })
        .collect();
    let total: u128 = receipts.iter().map(|(_, w)| w).sum();
    let mut paid = 0;
    for (who, weight) in &receipts {
        let part = (worker_pay * weight).checked_div(total).unwrap_or(0);
        deltas.push((who.to_string(), part as i128));
        paid += part;
    }
    let dust_to = receipts
        .iter()
        .map(|(w, _)| *w)
        .find(|w| *w == stage_workers[0])
        .or(receipts.first().map(|(w, _)| *w));
    deltas.push((dust_to.unwrap_or(user).to_string(), (worker_pay - paid) as i128));
    Settled { deltas, stages: stage_workers.len(), result: task["result"].clone() }
}

/// Every account a task can move money between: the user, the model's developer, each worker
/// and each validator of `up`.
pub fn watched_accounts(up: &Up) -> Vec<String> {
    let mut watched = vec![up.summary["account"].as_str().unwrap().to_string()];
    watched.push(up.summary["developer"].as_str().unwrap().to_string());
    for role in ["workers", "validators"] {
        for r in up.summary[role].as_array().unwrap() {
            watched.push(r["account"].as_str().unwrap().to_string());
        }
    }
    watched
}

/// Streams one greedy chat completion of `max_tokens` through the official `openai` client; with
/// `kill = Some((pid, n))` it SIGKILLs `pid` after `n` chunks and reads the stream to its end.
/// Returns what `openai_stream_kill.py` printed.
pub fn stream(up: &Up, max_tokens: usize, kill: Option<(i32, usize)>) -> Value {
    let probe = Command::new("python3").args(["-c", "import openai"]).output().unwrap();
    assert!(probe.status.success(), "the `openai` Python package is missing; run scripts/test.sh");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_stream_kill.py");
    let mut args = vec![script.to_string(), up.base_url(), up.summary["api_key"].as_str().unwrap().into()];
    args.extend(["smollm2-135m-instruct".to_string(), max_tokens.to_string()]);
    if let Some((pid, after)) = kill {
        args.extend([pid.to_string(), after.to_string()]);
    }
    let out = Command::new("python3").args(&args).output().unwrap();
    assert!(out.status.success(), "openai client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The nonce of `account`'s next transaction.
pub fn nonce(rpc: &str, account: &str) -> u64 {
    get(rpc, &format!("/account/{account}"))["nonce"].as_u64().unwrap()
}

/// Waits for each request in `seen` (client answers carrying their task id and charge) to settle,
/// and checks that every balance in `before` moved by exactly those tasks' splits: each request
/// charged once, and nothing else paid. `restarted`: workers killed and restarted by `up`, with
/// their nonce before; each may have paid the fee of registering again (its own transactions).
pub fn assert_only_these_tasks_moved_money(
    rpc: &str,
    user: &str,
    before: &std::collections::HashMap<String, u128>,
    seen: &[&Value],
    restarted: &[(String, u64)],
) {
    let mut expected: std::collections::HashMap<String, i128> = Default::default();
    // Each request is one SubmitTask the user signed, and each costs the transaction fee.
    let tx_fee = amount(&get(rpc, "/params")["params"]["tx_fee"]) as i128;
    *expected.entry(user.to_string()).or_default() -= tx_fee * seen.len() as i128;
    for answer in seen {
        let tokens = answer["usage"]["total_tokens"].as_u64().unwrap() as u128;
        let task = answer["polylink"]["task_id"].as_str().unwrap();
        let settled = settle_and_split(rpc, task, user, amount(&answer["polylink"]["charge"]), tokens);
        for (who, delta) in settled.deltas {
            *expected.entry(who).or_default() += delta;
        }
    }
    for (who, was) in before {
        let record = get(rpc, &format!("/account/{who}"));
        let deposits: u128 =
            record["allowances"].as_array().map_or(0, |d| d.iter().map(|d| amount(&d["limit"])).sum());
        let now = (amount(&record["balance"]) + deposits) as i128;
        let own_fees = restarted
            .iter()
            .find(|(a, _)| a == who)
            .map_or(0, |(_, nonce)| (record["nonce"].as_u64().unwrap() - nonce) as i128 * tx_fee);
        let want = *was as i128 + expected.get(who).copied().unwrap_or(0) - own_fees;
        assert_eq!(now, want, "balance of {who}: got {now}, want {want}");
    }
}
