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
//! - Three hosts run TIQE score validators, which find each task's gateway through the chain.
//! - A user host runs the official `openai` client with the API key the user's own wallet made
//!   (`wallet allow`): the gateway spends from the user's balance and holds no key but its own.
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
    _proc: Proc,
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
        Self { name: name.to_string(), _proc: Proc(child), lines, log }
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
    // Hosts: 0-3 chain validators, 4 the gateway, 5-7 workers, 8-10 score validators, 11 the user.
    let lan = chain_common::lan(12);
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
    let accounts = [
        (treasury_account, 1_000_000_000_000u128),
        (developer_account, 10_000_000),
        (user_account.clone(), 1_000_000_000),
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
    let gateway_addr = format!("{}:8080", lan.hosts[4].addr);
    let gateway_key = host(4).join("key.json");
    let gateway_transcripts = host(4).join("transcripts");
    let gateway = Role::start(
        "gateway",
        &ns(4),
        &[
            "gateway",
            "--chain",
            &rpc(1),
            "--model",
            gguf,
            "--model-name",
            MODEL,
            "--listen",
            &gateway_addr,
            "--key-file",
            gateway_key.to_str().unwrap(),
            "--transcripts-dir",
            gateway_transcripts.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    let gateway_account = fund_on_request(&gateway, &rpc(0), &treasury);
    let ready = gateway.next(Some("ready"));
    assert_eq!(ready["account"], gateway_account.as_str(), "{ready}");
    assert_eq!(ready["base_url"], format!("http://{gateway_addr}/v1"), "{ready}");

    // Three devices join, each from its own host with one command: one holds the model whole,
    // two cannot, and split it between them.
    let join = |k: usize, memory_mib: &str| {
        let listen = format!("{}:7100", lan.hosts[k].addr);
        let key = host(k).join("key.json");
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
                &listen,
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

    // Three score validators, each with its own key on its own host.
    let params = get(&rpc(0), "/params")["params"].clone();
    let validator_stake = amount(&params["validator_stake_min"]) * 4 + amount(&params["tx_fee"]) * 20;
    let validators: Vec<(Role, String)> = (8..11)
        .map(|k| {
            let seed: [u8; 32] = rand::random();
            let account = polylink_types::SecretKey::from_seed(seed).public_key().to_string();
            transfer(&rpc(0), &treasury, &account, validator_stake);
            let data = host(k).join("validator");
            let role = Role::start(
                &format!("validator{k}"),
                &ns(k),
                &["validator", "run", "--chain", &rpc(k), "--data-dir", data.to_str().unwrap()],
                &[("POLYLINK_VALIDATOR_KEY_SEED", &hex::encode(seed))],
                dir.path(),
            );
            let ready = role.next(None);
            assert_eq!(ready["key"], account.as_str(), "{ready}");
            (role, account)
        })
        .collect();

    // The gateway found both deployments through the chain: the whole-model worker, and the
    // pipeline it assembled from the two split devices.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let log = std::fs::read_to_string(&gateway.log).unwrap_or_default();
        if log.matches("deployment added").count() >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the gateway never served both deployments:\n{log}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The user lets the gateway spend from its own balance and calls it from its own host with
    // the official client.
    let allowed = cli_ok(&[
        "wallet",
        "allow",
        "--wallet",
        &user,
        "--rpc",
        &rpc(3),
        "--gateway",
        &gateway_account,
        "--limit",
        "100000000",
    ]);
    // The transaction's receipt, then the key.
    let api_key = serde_json::from_str::<Value>(allowed.lines().last().unwrap()).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
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
    let tx_fee = amount(&params["tx_fee"]) as i128;
    let mut expected: HashMap<String, i128> = HashMap::from([(user_account.clone(), -2 * tx_fee)]);
    for (task_id, charge, usage) in [
        (chat["task_id"].as_str().unwrap(), amount(&chat["charge"]), &chat["usage"]),
        (
            stream["polylink"]["task_id"].as_str().unwrap(),
            amount(&stream["polylink"]["charge"]),
            &stream["usage"],
        ),
    ] {
        let task = get(&rpc(2), &format!("/task/{task_id}"));
        assert_eq!(task["gateway"], gateway_account.as_str(), "the task names its gateway: {task}");
        let tokens = usage["total_tokens"].as_u64().unwrap() as u128;
        for (who, delta) in settle_and_split(&rpc(2), task_id, &user_account, charge, tokens).deltas {
            *expected.entry(who).or_default() += delta;
        }
    }
    for who in &watched {
        let now = balance(&rpc(2), who) as i128;
        let want = before[who] as i128 + expected.get(who).copied().unwrap_or(0);
        assert_eq!(now, want, "balance of {who}: got {now}, want {want}");
    }
    drop((validators, workers, gateway, chain));
}
