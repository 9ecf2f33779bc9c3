#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A device that joins a running network with `polylink join` is found through the chain, routed
//! to and paid, with no restart: `polylink up` serves SmolLM2 on its own whole-model worker; then
//! `polylink join` creates an encrypted key file, gets the funds its stake needs from the dev
//! chain's faucet (once per account), checks that its endpoint answers, bonds, registers and
//! serves. The gateway's registry follower probes and deploys it; a request reaches it (the task
//! names it), its greedy answer is the first worker's, it is paid and says so (`earned`). A head that is not a registered gateway is refused inference
//! by it. Ctrl-C leaves: its whole stake unbonds and the gateway stops routing to it.
//! A user with a wallet of its own lets the gateway spend from it (`polylink wallet allow`) and
//! calls with the API key that prints: the task is paid from that wallet, and its key never left it.

mod up_common;

use polylink_ledger::dev_key;
use polylink_pipeline::transport;
use polylink_pipeline::wire::{ErrorCode, Input, Request, Response, SampleSpec, Want, WireLimits};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use up_common::{Up, amount, balance, get, wait_settled};

/// Kills the worker when the test ends, however it ends.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One greedy chat request through the gateway with `api_key`: its status, the task it opened (if
/// any) and the answer's text.
fn request(up: &Up, api_key: &str, question: &str) -> (u16, Option<String>, String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{}/chat/completions", up.base_url()))
            .bearer_auth(api_key)
            .json(&json!({
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 6, "temperature": 0,
            }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let task = resp.headers().get("x-polylink-task-id").map(|v| v.to_str().unwrap().to_string());
        let body: Value = resp.json().await.unwrap_or_default();
        (status, task, body["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string())
    })
}

/// [`request`] with the network's key, which must succeed: the task and the answer.
fn ask(up: &Up, question: &str) -> (String, String) {
    let (status, task, answer) = request(up, up.summary["api_key"].as_str().unwrap(), question);
    assert_eq!(status, 200, "{answer}");
    (task.unwrap(), answer)
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
    // The network's endpoints on one loopback address, the joining device on another.
    let up = Up::start(&["--stages", "0", "--validators", "2", "--bind", "127.0.0.2"]);
    assert!(up.rpc().contains("127.0.0.2") && up.base_url().contains("127.0.0.2"), "{}", up.summary);
    let worker_addr = up.summary["workers"][0]["addr"].as_str().unwrap();
    assert!(worker_addr.starts_with("127.0.0.2:"), "{worker_addr}");
    let rpc = up.rpc();
    let first = up.summary["workers"][0]["account"].as_str().unwrap().to_string();
    let (task, reference) = ask(&up, "Name a colour.");
    assert_eq!(task_workers(&rpc, &task), vec![first.clone()]);

    // A new device joins with one command; its key lives in an encrypted file it creates.
    let gguf = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    let log = dir.path().join("join.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_polylink"))
        .args(["join", "--chain", &rpc, "--model", gguf.to_str().unwrap(), "--threads", "1"])
        .args(["--memory-mib", "2048", "--key-file", key_file.to_str().unwrap(), "--listen", "127.0.0.3:0"])
        .env("POLYLINK_PASSPHRASE", "a long test passphrase")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let events = lines(child.stdout.take().unwrap());
    let worker = Worker(child);
    let next = |what: &str| -> Value {
        let event = events.recv_timeout(Duration::from_secs(180)).unwrap_or_else(|_| {
            panic!(
                "no `{what}` line from polylink join: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        assert_eq!(event["event"], what, "{event}");
        event
    };
    // The dev chain's faucet funds it (on a chain without one it says how much to send).
    let funded = next("faucet");
    let joined = funded["account"].as_str().unwrap().to_string();
    let again = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        polylink_chain::rpc::Client::new(&rpc).unwrap().faucet(&joined.parse().unwrap()).await
    });
    assert!(
        again.as_ref().is_err_and(|e| e.code() == Some(polylink_chain::rpc::ErrorCode::Duplicate)),
        "the faucet funds an account once: {again:?}"
    );
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    assert!(key_text.contains(&joined) && key_text.contains("argon2id"), "{key_text}");
    let ready = next("ready");
    assert_eq!(ready["account"], joined.as_str(), "{ready}");
    assert_eq!(ready["layers"], json!([0, 30]), "{ready}");
    let endpoint: std::net::SocketAddr = ready["endpoint"].as_str().unwrap().parse().unwrap();
    assert_eq!(endpoint.ip().to_string(), "127.0.0.3", "{ready}");
    let registered = get(&rpc, &format!("/account/{joined}"));
    assert_eq!(registered["worker"]["endpoint"], endpoint.to_string(), "{registered}");
    assert_eq!(registered["worker"]["profile"]["memory_mib"], 2048, "the owner's limit is what it offers");
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
    let earned = next("earned");
    assert!(earned["since_ready"].as_str().unwrap().parse::<u128>().unwrap() > 0, "{earned}");

    // Anyone may measure its link, but only a registered gateway may run inference on it.
    let (echo, refusal) = outsider_asks(endpoint, &joined.parse().unwrap());
    assert_eq!(echo, Response::Echo(vec![1; 16]));
    assert!(
        matches!(&refusal, Response::Error { code: ErrorCode::Forbidden, message } if message.contains("registered gateways")),
        "{refusal:?}"
    );

    // Ctrl-C leaves: the whole stake unbonds, and the gateway stops routing to it.
    let bonded = amount(&get(&rpc, &format!("/account/{joined}"))["stake"]["bonded"]);
    let mut worker = worker;
    assert!(Command::new("kill").args(["-INT", &worker.0.id().to_string()]).status().unwrap().success());
    let left = next("left");
    assert_eq!(left["unbonding"], bonded.to_string(), "{left}");
    assert!(worker.0.wait().unwrap().success());
    assert_eq!(amount(&get(&rpc, &format!("/account/{joined}"))["stake"]["bonded"]), 0);
    // From then on every request is served, by the first worker: a placement on the leaver is
    // refused by the chain, avoided, and the task opened on the first worker instead.
    for _ in 0..3 {
        let (task, answer) = ask(&up, "Name a colour.");
        assert_eq!(task_workers(&rpc, &task), vec![first.clone()]);
        assert_eq!(answer, reference);
    }

    // A user with a wallet of its own: funded by a friend, it allows the gateway 10^9 and calls
    // with the key that prints. The gateway signs the task; the wallet pays it.
    let funder = dir.path().join("funder.json");
    let wallet = ["--wallet", funder.to_str().unwrap(), "--rpc", rpc.as_str()];
    cli(&[&["wallet", "new", "--secret", &hex::encode(dev_key(3).seed())][..], &wallet].concat());
    let own = dir.path().join("own.json");
    let own_wallet = ["--wallet", own.to_str().unwrap(), "--rpc", rpc.as_str()];
    let account = cli(&[&["wallet", "new"][..], &own_wallet].concat()).trim().to_string();
    cli(&[&["wallet", "transfer", "--to", &account, "--amount", "1000000000000"][..], &wallet].concat());
    let gateway = up.summary["gateway"].as_str().unwrap();
    let allowed =
        cli(&[&["wallet", "allow", "--gateway", gateway, "--limit", "1000000000"][..], &own_wallet].concat());
    let allowed: Value = serde_json::from_str(allowed.lines().last().unwrap()).unwrap();
    let api_key = allowed["api_key"].as_str().unwrap();
    assert!(!std::fs::read_to_string(&own).unwrap().contains(&api_key[68..]), "the key is not the wallet's");
    let before = balance(&rpc, &account);
    let (status, task, answer) = request(&up, api_key, "Name a colour.");
    assert_eq!((status, answer.as_str()), (200, reference.as_str()));
    let record = wait_settled(&rpc, task.as_deref().unwrap(), Duration::from_secs(240));
    assert_eq!(record["user"], account.as_str(), "{record}");
    let paid = before - balance(&rpc, &account);
    assert!(paid > 0, "{record}");
    let allowances = &get(&rpc, &format!("/account/{account}"))["allowances"];
    assert_eq!(amount(&allowances[0]["limit"]), 1_000_000_000 - paid, "{allowances}");
    // A key whose secret the chain does not know is refused, and charges nothing.
    let forged = format!("{}{}", &api_key[..api_key.len() - 4], "0000");
    assert_eq!(request(&up, &forged, "Name a colour.").0, 401);
    assert_eq!(balance(&rpc, &account), before - paid);
}

/// Every JSON line `stdout` prints, in order.
fn lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(value);
            }
        }
    });
    rx
}

/// Runs `polylink <args>`, failing the test unless it succeeds; returns what it printed.
fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_polylink")).args(args).output().unwrap();
    assert!(out.status.success(), "polylink {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
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
