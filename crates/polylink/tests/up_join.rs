#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A worker that joins a running network is found through the chain, routed to and paid, with no
//! restart: `polylink up` serves SmolLM2 on its own whole-model worker; then a second
//! `polylink worker --chain` starts with a key of its own, bonds and registers. The gateway's
//! registry follower probes it and deploys it; requests reach it (the task names it), its greedy
//! answer is the first worker's, and once the task settles it is paid. A head that is not a
//! registered gateway is refused inference by that worker.

mod up_common;

use polylink_ledger::dev_key;
use polylink_pipeline::transport;
use polylink_pipeline::wire::{ErrorCode, Input, Request, Response, SampleSpec, Want, WireLimits};
use polylink_protocol::WorkerReady;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use up_common::{Up, balance, get, wait_settled};

/// Kills the worker when the test ends, however it ends.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One greedy chat request through the gateway: the task it opened and the answer's text.
fn ask(up: &Up, question: &str) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/chat/completions", up.base_url()))
            .bearer_auth(up.summary["api_key"].as_str().unwrap())
            .json(&json!({
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 6, "temperature": 0,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let task = resp.headers()["x-polylink-task-id"].to_str().unwrap().to_string();
        let body: Value = resp.json().await.unwrap();
        (task, body["choices"][0]["message"]["content"].as_str().unwrap().to_string())
    })
}

/// The workers a task names.
fn task_workers(rpc: &str, task: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record = get(rpc, &format!("/task/{task}"));
        if let Some(workers) = record["workers"].as_array() {
            return workers.iter().map(|w| w.as_str().unwrap().to_string()).collect();
        }
        assert!(Instant::now() < deadline, "task {task} never appeared: {record}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_worker_that_joins_a_running_network_is_routed_to_and_paid() {
    let up = Up::start(&["--stages", "0", "--validators", "2"]);
    let rpc = up.rpc();
    let first = up.summary["workers"][0]["account"].as_str().unwrap().to_string();
    let (task, reference) = ask(&up, "Name a colour.");
    assert_eq!(task_workers(&rpc, &task), vec![first.clone()]);

    // A new device joins with its own key (a funded dev account here).
    let gguf = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let key = dev_key(3);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_polylink"))
        .args(["worker", "--model", gguf.to_str().unwrap(), "--chain", &rpc, "--threads", "1"])
        .env("POLYLINK_WORKER_SEED", hex::encode(key.seed()))
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _worker = Worker(child);
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| WorkerReady::from_line(&line))
        .unwrap_or_else(|| {
            panic!(
                "the joining worker never got ready: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            )
        });
    let joined = key.public_key().to_string();
    assert_eq!(ready.account.to_string(), joined);
    assert!(ready.model.is_some(), "it registered on chain: {ready:?}");
    let before = balance(&rpc, &joined);

    // The gateway finds it through the chain: within a few of its reads, a request runs on it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (task, answer) = loop {
        let (task, answer) = ask(&up, "Name a colour.");
        if task_workers(&rpc, &task) == vec![joined.clone()] {
            break (task, answer);
        }
        assert!(Instant::now() < deadline, "no request reached the joined worker");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(answer, reference, "the joined worker's greedy answer is the network's");
    let record = wait_settled(&rpc, &task, Duration::from_secs(240));
    let outcome = record["status"]["settled"].as_str().unwrap().to_string();
    assert!(outcome == "paid" || outcome == "unchecked", "{record}");
    assert!(balance(&rpc, &joined) > before, "the joined worker was paid: {record}");
    let stake = &get(&rpc, &format!("/account/{joined}"))["stake"];
    assert_eq!(stake["strikes"], 0, "{stake}");

    // Anyone may measure its link, but only a registered gateway may run inference on it.
    let (echo, refusal) = outsider_asks(ready.addr, &ready.key);
    assert_eq!(echo, Response::Echo(vec![1; 16]));
    assert!(
        matches!(&refusal, Response::Error { code: ErrorCode::Forbidden, message } if message.contains("registered gateways")),
        "{refusal:?}"
    );
}

/// An outsider (a key registered as nothing) dials the worker at `addr`: its echo's answer, then
/// the answer to a forward.
fn outsider_asks(addr: std::net::SocketAddr, worker: &polylink_types::PublicKey) -> (Response, Response) {
    use commonware_runtime::Runner;
    let peer = transport::peer_from_bytes(&worker.0).unwrap();
    commonware_runtime::tokio::Runner::default().start(|context| async move {
        let key = transport::key_from_seed(&[42; 32]).unwrap();
        let mut link = transport::dial(context, key, addr, peer, WireLimits::default()).await.unwrap();
        let echo = link.call(&Request::Echo { payload: vec![1; 16] }).await.unwrap();
        let forward = Request::Forward {
            session: 1,
            task: polylink_types::Hash32::ZERO,
            pos: 0,
            layers: 0..30,
            input: Input::Tokens(vec![1, 2, 3]),
            want: Want::Sample(SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }),
        };
        (echo, link.call(&forward).await.unwrap())
    })
}
