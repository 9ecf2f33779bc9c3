//! `polylink up` keeps its network alive as machines fail: the chain node, the worker and a
//! validator are each killed outright (SIGKILL, as a crash or the OOM killer would), and `up`
//! starts each again with its key, data and addresses. The chain resumes at the same RPC address
//! with the same history, the worker serves again, the validator scores again; a request made after
//! all three is served and settled as paid, and nobody lost stake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod up_common;

use serde_json::Value;
use std::time::{Duration, Instant};
use up_common::{Up, amount, get, wait_settled};

/// The children of `up` with their command lines, from `/proc`.
fn children(up: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(|v| v.trim().to_string());
        if ppid != Some(up.to_string()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        out.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
    }
    out
}

/// The pid of `up`'s child whose command line starts with `polylink <what>` (waits for one).
fn child(up: u32, what: &str, not: Option<u32>, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let found = children(up)
            .into_iter()
            .find(|(pid, cmd)| Some(*pid) != not && cmd.split(' ').nth(1) == Some(what))
            .map(|(pid, _)| pid);
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "no `{what}` child of up after {timeout:?}: {:?}", children(up));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kill(pid: u32) {
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// One greedy chat completion through the gateway: its task id, or why it failed.
fn chat(up: &Up) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = serde_json::json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 12, "temperature": 0,
    });
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}/chat/completions", up.base_url()))
            .bearer_auth(up.summary["api_key"].as_str().unwrap())
            .json(&body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let task =
            response.headers().get("x-polylink-task-id").and_then(|v| v.to_str().ok()).map(String::from);
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        match task {
            Some(task) if status.is_success() => Ok(task),
            _ => Err(format!("{status}: {answer}")),
        }
    })
}

/// Retries `chat` until it is served (a restarted part takes a while to come back).
fn chat_until_served(up: &Up, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match chat(up) {
            Ok(answer) => return answer,
            Err(e) => assert!(Instant::now() < deadline, "not served again within {timeout:?}: {e}"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn bonded(rpc: &str, account: &str) -> u128 {
    amount(&get(rpc, &format!("/account/{account}"))["stake"]["bonded"])
}

#[test]
fn up_restarts_a_killed_chain_node_worker_and_validator() {
    let up = Up::start(&["--stages", "0"]);
    let rpc = up.rpc();
    let roles: Vec<String> = ["workers", "validators"]
        .iter()
        .flat_map(|r| {
            up.summary[*r].as_array().unwrap().iter().map(|x| x["account"].as_str().unwrap().to_string())
        })
        .collect();
    let stake_before: Vec<u128> = roles.iter().map(|a| bonded(&rpc, a)).collect();
    let first = chat(&up).expect("served before any failure");

    // The chain node: back at the same address, with its history, producing blocks.
    let height = get(&rpc, "/status")["height"].as_u64().unwrap();
    let chain = child(up.pid(), "chain", None, Duration::from_secs(5));
    kill(chain);
    child(up.pid(), "chain", Some(chain), Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status =
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                reqwest::get(format!("{rpc}/status")).await.ok()?.json::<Value>().await.ok()
            });
        if status.as_ref().and_then(|s| s["height"].as_u64()).is_some_and(|h| h > height) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted chain node made no block: {status:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The worker, then a validator.
    let worker = child(up.pid(), "worker", None, Duration::from_secs(5));
    kill(worker);
    child(up.pid(), "worker", Some(worker), Duration::from_secs(60));
    let validator = child(up.pid(), "validator", None, Duration::from_secs(5));
    kill(validator);
    child(up.pid(), "validator", Some(validator), Duration::from_secs(60));

    // Served again, and settled as paid by a committee that may include the restarted validator.
    let answer = chat_until_served(&up, Duration::from_secs(240));
    for task in [&first, &answer] {
        let record = wait_settled(&rpc, task, Duration::from_secs(300));
        assert_eq!(record["status"]["settled"], "paid", "{record}");
    }
    let stake_after: Vec<u128> = roles.iter().map(|a| bonded(&rpc, a)).collect();
    assert_eq!(stake_after, stake_before, "an honest worker or validator lost stake");
}
