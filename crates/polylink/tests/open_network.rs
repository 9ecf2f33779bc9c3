//! An open network across hosts, set up as its README tells people on separate machines to: every
//! role is a process on its own host (a network namespace on one emulated switch, links shaped
//! with netem, or tbf where the kernel lacks it), each with its own key, and the only thing they
//! share is the chain.
//!
//! - Four chain validators deal their committee key among themselves (no dealer) from a network
//!   file that funds three wallets: a treasury (pays the others' stakes, as any funded wallet
//!   would), the model's developer and a user.
//! - A gateway host runs `polylink gateway` and three worker hosts each run `polylink join`: one
//!   whose memory holds the model whole, two whose memory does not, so the model is split across
//!   them and the gateway assembles that pipeline from the registry. None of them has a faucet:
//!   each says what it needs and the treasury sends it.
//! - Three hosts run TIQE score validators (each its own key file and funds), which find each
//!   task's gateway through the chain.
//! - A user host runs the official `openai` client with the API key the user's own wallet made
//!   (`wallet allow`): the gateway spends from the user's deposit and holds no key but its own.
//!   A second user pays from its own key: a deposit with no API key, and a request its wallet
//!   signs (`wallet ask`), which the chain checks.
//!
//! Every task settles as paid and every balance moves exactly as the split of its fee says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_common;
mod up_common;

use chain_common::{Proc, cli_ok, command_in, dkg_chain};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::Duration;
use up_common::{amount, balance, get, settle_and_split};

const PASSPHRASE: &str = "a long test passphrase";
const MODEL: &str = "smollm2-135m-instruct";

/// A role's process and the JSON lines it prints.
struct Role {
    name: String,
    proc: Proc,
    lines: Receiver<Value>,
    log: std::path::PathBuf,
}

impl Role {
    fn start(name: &str, netns: &str, args: &[&str], env: &[(&str, &str)], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut command = command_in(Some(netns), args);
        command.env("RUST_LOG", "info").env("POLYLINK_PASSPHRASE", PASSPHRASE);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child =
            command.stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        Self { name: name.to_string(), proc: Proc(child), lines, log }
    }

    /// Waits for it to exit, which must be a failure; returns its log.
    fn failed(mut self) -> String {
        let status = self.proc.0.wait().unwrap();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(!status.success(), "{} should have failed:\n{log}", self.name);
        log
    }

    /// The next line it prints, which must be `event` (validators print no event field: any line).
    fn next(&self, event: Option<&str>) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(300)).unwrap_or_else(|_| {
            panic!("no line from {}: {}", self.name, std::fs::read_to_string(&self.log).unwrap_or_default())
        });
        if let Some(event) = event {
            assert_eq!(line["event"], event, "{}: {line}", self.name);
        }
        line
    }
}

/// Waits until `gateway` serves `count` deployments it found through the chain.
fn serves_deployments(gateway: &Role, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let log = std::fs::read_to_string(&gateway.log).unwrap_or_default();
        if log.matches("deployment added").count() >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never served {count} deployments:\n{log}",
            gateway.name
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The user's API key for `gateway`, made by its own wallet (`wallet allow`).
fn allow(rpc: &str, user: &str, gateway: &str) -> String {
    let allowed = cli_ok(&[
        "wallet",
        "allow",
        "--wallet",
        user,
        "--rpc",
        rpc,
        "--gateway",
        gateway,
        "--limit",
        "100000000",
    ]);
    // The transaction's receipt, then the key.
    serde_json::from_str::<Value>(allowed.lines().last().unwrap()).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One greedy chat request through the gateway at `addr`: its task, charge and total tokens.
fn ask(addr: &str, api_key: &str) -> (String, u128, u128) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(api_key)
            .json(&serde_json::json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "Name a colour."}],
                "max_tokens": 6, "temperature": 0,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let header = |name: &str| resp.headers().get(name).unwrap().to_str().unwrap().to_string();
        let (task, charge) = (header("x-polylink-task-id"), header("x-polylink-charge").parse().unwrap());
        let body: Value = resp.json().await.unwrap();
        (task, charge, body["usage"]["total_tokens"].as_u64().unwrap() as u128)
    })
}

/// What one streamed answer gave: its text, task, charge and total tokens.
struct Streamed {
    content: String,
    task: String,
    charge: u128,
    tokens: u128,
}

/// Streams one greedy story through the gateway at `addr` on a thread of its own; the receiver
/// gets the task id once the first content chunk arrived.
fn stream_story(addr: &str, api_key: &str) -> (Receiver<String>, std::thread::JoinHandle<Streamed>) {
    use futures::StreamExt;
    let (tx, rx) = std::sync::mpsc::channel();
    let (url, api_key) = (format!("http://{addr}/v1/chat/completions"), api_key.to_string());
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(api_key)
                .json(&serde_json::json!({
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}],
                    "max_tokens": 160, "temperature": 0, "stream": true,
                    "stream_options": {"include_usage": true},
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let task = resp.headers().get("x-polylink-task-id").unwrap().to_str().unwrap().to_string();
            let (mut body, mut buffer) = (resp.bytes_stream(), String::new());
            let mut streamed = Streamed { content: String::new(), task: task.clone(), charge: 0, tokens: 0 };
            let mut told = false;
            while let Some(bytes) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.trim().strip_prefix("data: ") else { continue };
                    if data == "[DONE]" {
                        continue;
                    }
                    let chunk: Value = serde_json::from_str(data).unwrap();
                    if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                        streamed.content.push_str(text);
                        if !told {
                            told = true;
                            let _ = tx.send(task.clone());
                        }
                    }
                    if let Some(tokens) = chunk["usage"]["total_tokens"].as_u64() {
                        streamed.tokens = u128::from(tokens);
                    }
                    if chunk["polylink"]["charge"].is_string() {
                        streamed.charge = amount(&chunk["polylink"]["charge"]);
                    }
                }
            }
            streamed
        })
    });
    (rx, handle)
}

/// Checks that every balance in `before` moved by exactly the splits of `tasks` (each a request
/// the user paid a transaction fee for), read at `rpc`.
fn expect_moves(
    rpc: &str,
    before: &HashMap<String, u128>,
    tasks: &[(String, u128, u128)],
    user: &str,
    tx_fee: i128,
) {
    let mut expected: HashMap<String, i128> = HashMap::new();
    for (task, charge, tokens) in tasks {
        *expected.entry(user.to_string()).or_default() -= tx_fee;
        for (who, delta) in settle_and_split(rpc, task, user, *charge, *tokens).deltas {
            *expected.entry(who).or_default() += delta;
        }
    }
    for (who, was) in before {
        let now = balance(rpc, who) as i128;
        let want = *was as i128 + expected.get(who).copied().unwrap_or(0);
        assert_eq!(now, want, "balance of {who}: got {now}, want {want}");
    }
}

/// The workers `task` names, once its block is executed.
fn task_workers(rpc: &str, task: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Not found until its block is executed.
        let record = runtime.block_on(async {
            reqwest::get(format!("{rpc}/task/{task}")).await.ok()?.json::<Value>().await.ok()
        });
        if let Some(named) = record.as_ref().and_then(|r| r["workers"].as_array()) {
            return named.iter().map(|w| w.as_str().unwrap().to_string()).collect();
        }
        assert!(std::time::Instant::now() < deadline, "task {task} never reached the chain");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A new wallet file under `dir`: its path and account.
fn wallet(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(format!("{name}.json")).to_str().unwrap().to_string();
    cli_ok(&["wallet", "new", "--wallet", &path]);
    let account = cli_ok(&["wallet", "show", "--wallet", &path]).trim().to_string();
    (path, account)
}

/// Sends `amount` from the wallet at `from` to `to`, waiting until it is finalized.
fn transfer(rpc: &str, from: &str, to: &str, amount: u128) {
    let amount = amount.to_string();
    let out =
        cli_ok(&["wallet", "transfer", "--wallet", from, "--rpc", rpc, "--to", to, "--amount", &amount]);
    assert!(out.contains("\"outcome\":\"applied\""), "{out}");
}

/// A role that asked for funds (`funds_needed`) is sent what it needs from the treasury.
fn fund_on_request(role: &Role, rpc: &str, treasury: &str) -> String {
    let asked = role.next(Some("funds_needed"));
    let account = asked["account"].as_str().unwrap().to_string();
    let need = amount(&asked["need"]) - amount(&asked["have"]);
    transfer(rpc, treasury, &account, need);
    account
}

#[test]
fn devices_of_different_owners_join_from_their_own_hosts_serve_and_are_paid() {
    // Hosts: 0-3 chain validators, 4 the gateway, 5-7 workers, 8-10 score validators, 11 the user,
    // 12 a second gateway, 13 a device that joins later.
    let lan = chain_common::lan(14);
    let ns = |k: usize| lan.hosts[k].netns.clone();
    let dir = tempfile::tempdir().unwrap();
    let host = |k: usize| {
        let d = dir.path().join(format!("host{k}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (treasury, treasury_account) = wallet(dir.path(), "treasury");
    let (developer, developer_account) = wallet(dir.path(), "developer");
    let (user, user_account) = wallet(dir.path(), "user");
    let (signer, signer_account) = wallet(&host(11), "signer");
    let accounts = [
        (treasury_account, 1_000_000_000_000u128),
        (developer_account, 10_000_000),
        (user_account.clone(), 1_000_000_000),
        (signer_account.clone(), 1_000_000_000),
    ];
    let chain = dkg_chain(&lan, &[0, 1, 2, 3], &accounts, dir.path(), "polylink-open-test");
    let rpc = |k: usize| chain.urls[k % 4].clone();

    // The developer registers the model from its own wallet.
    let gguf = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let gguf = gguf.to_str().unwrap();
    let artifact = polylink_models::sha256_file(Path::new(gguf)).unwrap();
    cli_ok(&[
        "model",
        "register",
        "--wallet",
        &developer,
        "--rpc",
        &rpc(0),
        "--artifact-hash",
        &artifact,
        "--architecture",
        "llama",
        "--layer-count",
        "30",
        "--royalty-bps",
        "1000",
        "--price-floor",
        "1000",
    ]);

    // The gateway, on its own host.
    let start_gateway = |k: usize| {
        let listen = format!("{}:8080", lan.hosts[k].addr);
        let (key, transcripts) = (host(k).join("key.json"), host(k).join("transcripts"));
        let gateway = Role::start(
            &format!("gateway{k}"),
            &ns(k),
            &[
                "gateway",
                "--chain",
                &rpc(k),
                "--model",
                gguf,
                "--model-name",
                MODEL,
                "--listen",
                &listen,
                "--key-file",
                key.to_str().unwrap(),
                "--transcripts-dir",
                transcripts.to_str().unwrap(),
            ],
            &[],
            dir.path(),
        );
        let account = fund_on_request(&gateway, &rpc(0), &treasury);
        let ready = gateway.next(Some("ready"));
        assert_eq!(ready["account"], account.as_str(), "{ready}");
        assert_eq!(ready["base_url"], format!("http://{listen}/v1"), "{ready}");
        (gateway, account, listen)
    };
    let (gateway, gateway_account, gateway_addr) = start_gateway(4);

    // Three devices join, each from its own host with one command: one holds the model whole,
    // two cannot, and split it between them.
    let join_at = |k: usize, memory_mib: &str, listen: &str, key: &str| {
        let key = host(k).join(key);
        Role::start(
            &format!("worker{k}"),
            &ns(k),
            &[
                "join",
                "--chain",
                &rpc(k),
                "--model",
                gguf,
                "--listen",
                listen,
                "--key-file",
                key.to_str().unwrap(),
                "--threads",
                "1",
                "--memory-mib",
                memory_mib,
            ],
            &[],
            dir.path(),
        )
    };
    let join = |k: usize, memory_mib: &str| {
        join_at(k, memory_mib, &format!("{}:7100", lan.hosts[k].addr), "key.json")
    };
    let mut workers = Vec::new();
    for (k, memory_mib) in [(5, "2048"), (6, "200"), (7, "200")] {
        let worker = join(k, memory_mib);
        let account = fund_on_request(&worker, &rpc(0), &treasury);
        let ready = worker.next(Some("ready"));
        assert_eq!(ready["account"], account.as_str(), "{ready}");
        assert_eq!(ready["endpoint"], format!("{}:7100", lan.hosts[k].addr), "{ready}");
        workers.push((worker, account, ready["layers"].clone()));
    }
    assert_eq!(workers[0].2, serde_json::json!([0, 30]), "2 GiB holds the model whole");
    let (a, b) = (&workers[1].2, &workers[2].2);
    assert!(a[1].as_u64().unwrap() < 30 && a[0] == 0, "200 MiB holds only part of it: {a}");
    assert_eq!(b[0], a[1], "the second split device takes the layers the first left: {a} {b}");
    assert_eq!(b[1], 30, "{b}");

    // Three score validators, each with its own key file on its own host.
    let validators: Vec<(Role, String)> = (8..11)
        .map(|k| {
            let (data, key) = (host(k).join("validator"), host(k).join("key.json"));
            let role = Role::start(
                &format!("validator{k}"),
                &ns(k),
                &[
                    "validator",
                    "run",
                    "--chain",
                    &rpc(k),
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--key-file",
                    key.to_str().unwrap(),
                ],
                &[],
                dir.path(),
            );
            let account = fund_on_request(&role, &rpc(0), &treasury);
            let ready = role.next(None);
            assert_eq!(ready["key"], account.as_str(), "{ready}");
            (role, account)
        })
        .collect();

    // The gateway found both deployments through the chain: the whole-model worker, and the
    // pipeline it assembled from the two split devices.
    serves_deployments(&gateway, 2);

    // The user lets the gateway spend from its own balance and calls it from its own host with
    // the official client.
    let api_key = allow(&rpc(3), &user, &gateway_account);
    let mut watched: Vec<String> = vec![user_account.clone(), gateway_account.clone()];
    watched.extend(workers.iter().map(|(_, a, _)| a.clone()));
    watched.extend(validators.iter().map(|(_, a)| a.clone()));
    let before: HashMap<String, u128> = watched.iter().map(|a| (a.clone(), balance(&rpc(0), a))).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_up.py");
    let base_url = format!("http://{gateway_addr}/v1");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns(11), "python3", script, &base_url, &api_key, MODEL])
        .output()
        .unwrap();
    assert!(out.status.success(), "openai client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the client printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(seen["models"], serde_json::json!([MODEL]));
    let (chat, stream) = (&seen["chat"], &seen["stream"]);
    assert!(!chat["content"].as_str().unwrap().trim().is_empty(), "{seen}");
    assert_eq!(
        stream["content"], chat["content"],
        "greedy answers agree whichever deployment served: {seen}"
    );

    // Every task settles as paid, and every balance moves exactly as the split says.
    let tx_fee = amount(&get(&rpc(0), "/params")["params"]["tx_fee"]) as i128;
    let mut tasks = Vec::new();
    for (task_id, charge, usage) in [
        (&chat["task_id"], &chat["charge"], &chat["usage"]),
        (&stream["polylink"]["task_id"], &stream["polylink"]["charge"], &stream["usage"]),
    ] {
        let task_id = task_id.as_str().unwrap().to_string();
        let task = get(&rpc(2), &format!("/task/{task_id}"));
        assert_eq!(task["gateway"], gateway_account.as_str(), "the task names its gateway: {task}");
        tasks.push((task_id, amount(charge), usage["total_tokens"].as_u64().unwrap() as u128));
    }
    expect_moves(&rpc(2), &before, &tasks, &user_account, tx_fee);

    // A second user pays from its own key: its deposit takes no API key, and its wallet signs
    // each request (`wallet ask`, on the user host), which the gateway cannot spend without.
    cli_ok(&[
        "wallet",
        "allow",
        "--wallet",
        &signer,
        "--rpc",
        &rpc(2),
        "--gateway",
        &gateway_account,
        "--limit",
        "100000000",
        "--signed-only",
    ]);
    watched.push(signer_account.clone());
    let before: HashMap<String, u128> = watched.iter().map(|a| (a.clone(), balance(&rpc(0), a))).collect();
    let gateway_url = format!("http://{gateway_addr}");
    let asked = command_in(
        Some(&ns(11)),
        &["wallet", "ask", "--wallet", &signer, "--rpc", &rpc(11), "--gateway-url", &gateway_url, "--stream"],
    )
    .arg("Name a colour.")
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&asked.stderr);
    assert!(asked.status.success(), "wallet ask failed:\n{said}");
    assert!(!String::from_utf8_lossy(&asked.stdout).trim().is_empty(), "{said}");
    let said: Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    let task = said["task"].as_str().unwrap().to_string();
    let record = get(&rpc(2), &format!("/task/{task}"));
    assert_eq!(
        (&record["user"], &record["gateway"]),
        (&Value::from(signer_account.clone()), &Value::from(gateway_account.clone())),
        "{record}"
    );
    let signed = (task, amount(&said["charge"]), said["tokens"].as_u64().unwrap() as u128);
    expect_moves(&rpc(2), &before, &[signed], &signer_account, tx_fee);

    // A second gateway on its own host serves the same network, and a fourth device joins while
    // it serves: with no restart anywhere, requests through the second gateway reach the new
    // device, and their tasks are scored (the validators find this gateway's transcripts
    // through the chain) and settled, paying the new device.
    let (gateway2, gateway2_account, gateway2_addr) = start_gateway(12);
    serves_deployments(&gateway2, 2);
    let api_key2 = allow(&rpc(1), &user, &gateway2_account);
    // A device that advertises an address only it can dial (its own loopback) is told so by the
    // gateways it asks, and does not register.
    let hidden = join_at(13, "2048", "127.0.0.1:7100", "hidden-key.json");
    fund_on_request(&hidden, &rpc(0), &treasury);
    let log = hidden.failed();
    assert!(log.contains("answers here but not from the network") && log.contains("--advertise"), "{log}");
    let late = join(13, "2048");
    let late_account = fund_on_request(&late, &rpc(0), &treasury);
    assert_eq!(late.next(Some("ready"))["layers"], serde_json::json!([0, 30]));
    watched.extend([gateway2_account.clone(), late_account.clone()]);
    let before: HashMap<String, u128> = watched.iter().map(|a| (a.clone(), balance(&rpc(0), a))).collect();
    let mut tasks = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let (task, charge, tokens) = ask(&gateway2_addr, &api_key2);
        let on_late = task_workers(&rpc(3), &task).contains(&late_account);
        let record = get(&rpc(3), &format!("/task/{task}"));
        assert_eq!(record["gateway"], gateway2_account.as_str(), "{record}");
        tasks.push((task, charge, tokens));
        if on_late {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no request reached the device that joined late");
    }
    expect_moves(&rpc(3), &before, &tasks, &user_account, tx_fee);
    assert!(balance(&rpc(3), &late_account) > before[&late_account], "the device that joined late was paid");

    // A worker host's link is cut mid-stream: the greedy stream through the first gateway still
    // gives exactly the text it would have (the head re-plans the lost stage's layers onto a
    // worker that holds them), and the task settles as paid.
    let before: HashMap<String, u128> = watched.iter().map(|a| (a.clone(), balance(&rpc(0), a))).collect();
    let (_, reference) = stream_story(&gateway_addr, &api_key);
    let reference = reference.join().unwrap();
    let mut tasks = vec![(reference.task.clone(), reference.charge, reference.tokens)];
    let pipeline = [workers[1].1.clone(), workers[2].1.clone()];
    let mut cut = None;
    for _ in 0..6 {
        let (started, streaming) = stream_story(&gateway_addr, &api_key);
        let task = started.recv_timeout(Duration::from_secs(120)).expect("the stream never started");
        let workers_of_task = task_workers(&rpc(0), &task);
        let on_pipeline = workers_of_task == pipeline;
        if on_pipeline {
            lan.set_link(6, false).unwrap();
        }
        let streamed = streaming.join().unwrap();
        tasks.push((streamed.task.clone(), streamed.charge, streamed.tokens));
        if on_pipeline {
            cut = Some(streamed);
            break;
        }
        assert_eq!(streamed.content, reference.content, "greedy answers agree on every deployment");
    }
    let cut = cut.expect("no stream ran on the pipeline of the two split devices");
    assert_eq!(cut.content, reference.content, "the stream survived the cut link with the same tokens");
    expect_moves(&rpc(0), &before, &tasks, &user_account, tx_fee);
    drop((validators, workers, late, gateway, gateway2, chain));
}
