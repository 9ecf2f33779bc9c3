//! `polylink validator run` as a process: against a `polylink chain dev` node it bonds and
//! registers, prints one JSON ready line on stdout, shows up in the chain's validator list, and
//! stops cleanly on Ctrl-C (SIGINT); `polylink validator register` is still there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_common;

use chain_common::{BIN, Proc, get_json, run_cli, spawn_node, wait_height};
use polylink_ledger::dev_key;
use polylink_protocol::ValidatorReady;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn validator_run_registers_announces_itself_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let base = chain_common::free_ports(2, 31);
    let (rpc, p2p) = (format!("127.0.0.1:{base}"), format!("127.0.0.1:{}", base + 1));
    let data = dir.path().join("dev");
    let node_args = [
        "chain",
        "dev",
        "--data-dir",
        data.to_str().unwrap(),
        "--rpc",
        &rpc,
        "--p2p",
        &p2p,
        "--block-interval-ms",
        "200",
    ];
    let (_node, url) = spawn_node(&node_args, &dir.path().join("node.log"));
    wait_height(&url, 1, Duration::from_secs(60));

    let key = dev_key(3);
    let log = std::fs::File::create(dir.path().join("validator.log")).unwrap();
    let vdir = dir.path().join("validator");
    let mut child = Command::new(BIN)
        .args(["validator", "run", "--chain", &url])
        .args(["--data-dir", vdir.to_str().unwrap(), "--stake", "5000"])
        .env("POLYLINK_VALIDATOR_KEY_SEED", hex::encode(key.seed()))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut guard = Proc(child);
    let line = lines.next().unwrap().unwrap();
    let ready = ValidatorReady::from_line(&line).unwrap_or_else(|| panic!("not a ready line: {line}"));
    assert_eq!(ready.key, key.public_key());
    assert!(ready.registered);
    assert_eq!(ready.bonded, 5000);
    let validators = get_json(&url, "/validators");
    assert!(
        validators.as_array().unwrap().iter().any(|v| v["account"] == key.public_key().to_string()),
        "{validators}"
    );

    let pid = guard.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the validator did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");

    let help = run_cli(&["validator", "register", "--help"]);
    assert!(help.status.success());
    let missing = run_cli(&["validator", "run", "--chain", &url]);
    assert!(!missing.status.success(), "run needs a key");
}
