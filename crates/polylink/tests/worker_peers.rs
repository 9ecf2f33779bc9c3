#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Workers publish where they listen and how far their peers are, and the planner reads it back:
//! on a real dev chain, two `polylink worker` processes start one after the other; the second
//! measures the first over an authenticated echo link, both register their endpoints, and
//! `polylink plan --chain` plans over the registered workers.

mod chain_common;

use chain_common::{BIN, Proc, cli_ok, get_json, register_model, run_cli, spawn_node, wait_height};
use polylink_ledger::dev_key;
use polylink_protocol::WorkerReady;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `polylink worker` with the key of dev account `dev` and returns its ready line.
fn spawn_worker(gguf: &str, rpc: &str, dev: u32, log: &std::path::Path) -> (Proc, WorkerReady) {
    let seed = hex::encode(dev_key(dev).seed());
    let mut child = Command::new(BIN)
        .args(["worker", "--model", gguf, "--chain", rpc, "--threads", "1", "--key-seed", &seed])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ready) = WorkerReady::from_line(&line) {
                let _ = tx.send(ready);
            }
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("worker {dev} did not get ready; see {}", log.display()));
    (Proc(child), ready)
}

fn registered<'a>(workers: &'a Value, account: &str) -> &'a Value {
    let all = workers.as_array().unwrap();
    let entry = all.iter().find(|w| w["account"] == account);
    &entry.unwrap_or_else(|| panic!("{account} is not in /workers: {workers}"))["worker"]
}

#[test]
fn workers_register_endpoints_and_peer_latency_and_the_planner_reads_them() {
    let gguf = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let gguf = gguf.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = chain_common::free_ports(2, 31);
    let (rpc_addr, p2p_addr) = (format!("127.0.0.1:{base}"), format!("127.0.0.1:{}", base + 1));
    let data = dir.path().join("chain");
    let node_args =
        ["chain", "dev", "--data-dir", data.to_str().unwrap(), "--rpc", &rpc_addr, "--p2p", &p2p_addr];
    let (_node, url) = spawn_node(&node_args, &dir.path().join("chain.log"));
    wait_height(&url, 1, Duration::from_secs(60));

    let wallet = dir.path().join("wallet.json");
    let common = ["--wallet", wallet.to_str().unwrap(), "--rpc", url.as_str()];
    cli_ok(&[&["wallet", "new", "--secret", &hex::encode(dev_key(1).seed())][..], &common].concat());
    let artifact = polylink_models::sha256_file(std::path::Path::new(gguf)).unwrap();
    register_model(&artifact, &common);
    let model_id = get_json(&url, "/models")[0]["id"].as_u64().unwrap();

    let (_first, a) = spawn_worker(gguf, &url, 2, &dir.path().join("worker-a.log"));
    let (_second, b) = spawn_worker(gguf, &url, 3, &dir.path().join("worker-b.log"));
    let (a_account, b_account) = (a.account.to_string(), b.account.to_string());
    let (a_account, b_account) = (a_account.as_str(), b_account.as_str());
    assert_eq!(a.model, Some(model_id), "{a:?}");
    assert_eq!(a.endpoint, a.addr, "a worker registers where it listens: {a:?}");
    assert!(a.peers.is_empty(), "the first worker had no peer to measure: {a:?}");
    assert_eq!(a.link.map(|l| l.latency_us), Some(0), "{a:?}");
    // The second worker measured the first over the pipeline link.
    assert_eq!(b.peers.len(), 1, "{b:?}");
    let peer = &b.peers[0];
    assert_eq!(peer.account, a.account);
    assert_eq!(peer.endpoint, a.addr);
    assert_eq!(peer.error, None, "{b:?}");
    let measure = peer.measure.unwrap_or_else(|| panic!("the peer was not measured: {b:?}"));
    assert!(measure.rtt_us > 0 && measure.bandwidth_kbps > 0, "{b:?}");

    // The chain holds what each worker measured and where it listens.
    let workers = get_json(&url, "/workers");
    let (on_a, on_b) = (registered(&workers, a_account), registered(&workers, b_account));
    assert_eq!(on_a["endpoint"], a.addr.to_string(), "{workers}");
    assert_eq!(on_b["endpoint"], b.addr.to_string(), "{workers}");
    assert_eq!(on_a["profile"]["latency_us"], 0, "{workers}");
    let b_latency = on_b["profile"]["latency_us"].as_u64().unwrap();
    assert_eq!(b_latency, (measure.rtt_us / 2).max(1), "{workers}");
    assert_eq!(on_b["profile"]["bandwidth_kbps"], measure.bandwidth_kbps, "{workers}");

    // The planner plans over the registered workers.
    let id = model_id.to_string();
    let plan = cli_ok(&["plan", "--model", gguf, "--chain", &url, "--model-id", &id]);
    assert!(plan.contains("stage 0: "), "{plan}");
    assert!(
        plan.contains(a_account) || plan.contains(b_account),
        "the plan names no registered worker:\n{plan}"
    );
    assert!(plan.contains("predicted per-token latency"), "{plan}");
    let json = cli_ok(&["plan", "--model", gguf, "--chain", &url, "--model-id", &id, "--json"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    for stage in json["stages"].as_array().unwrap() {
        let device = stage["device"].as_str().unwrap();
        assert!(device == a_account || device == b_account, "{json}");
    }
    // A model nobody serves is a clear error.
    let none = run_cli(&["plan", "--model", gguf, "--chain", &url, "--model-id", "99"]);
    assert!(!none.status.success());
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(stderr.contains("no registered worker serves model 99"), "{stderr}");
}
