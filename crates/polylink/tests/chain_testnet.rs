//! Four validators as four processes on 127.0.0.1: they finalize blocks; with one killed the
//! other three keep finalizing (2f+1 = 3); restarted, the fourth catches up to the same chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_common;

use chain_common::{cli_ok, get_json, spawn_node, wait_height};
use polylink_ledger::dev_key;
use std::time::Duration;

#[test]
fn four_validators_tolerate_a_killed_validator_that_later_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let p2p = chain_common::free_ports(4, 101);
    let rpc = chain_common::free_ports(4, 211);
    cli_ok(&[
        "chain",
        "testnet-init",
        "--validators",
        "4",
        "--out",
        net.to_str().unwrap(),
        "--p2p-base-port",
        &p2p.to_string(),
        "--rpc-base-port",
        &rpc.to_string(),
        "--block-interval-ms",
        "200",
    ]);
    let config = |k: usize| net.join(format!("node{k}/config.toml")).to_str().unwrap().to_string();
    let start = |k: usize, attempt: &str| {
        let cfg = config(k);
        spawn_node(&["chain", "run", "--config", &cfg], &dir.path().join(format!("node{k}-{attempt}.log")))
    };
    let mut nodes: Vec<_> = (0..4).map(|k| start(k, "a")).collect();
    let urls: Vec<String> = nodes.iter().map(|(_, url)| url.clone()).collect();
    for url in &urls {
        wait_height(url, 3, Duration::from_secs(120));
    }

    // Kill validator 3: the other three still finalize, and a transfer goes through.
    nodes[3].0.kill();
    let height = wait_height(&urls[0], 0, Duration::from_secs(5)).height;
    wait_height(&urls[0], height + 5, Duration::from_secs(120));
    let wallet = dir.path().join("wallet.json");
    let common = ["--wallet", wallet.to_str().unwrap(), "--rpc", urls[1].as_str()];
    cli_ok(&[&["wallet", "new", "--secret", &hex::encode(dev_key(2).seed())][..], &common].concat());
    let to = dev_key(3).public_key().to_string();
    let out = cli_ok(&[&["wallet", "transfer", "--to", &to, "--amount", "777"][..], &common].concat());
    assert!(out.contains("\"outcome\":\"applied\""), "{out}");
    // Read it where the receipt came from: another node may still be a block behind.
    let balance = get_json(&urls[1], &format!("/account/{to}"))["balance"].clone();
    assert_eq!(balance, "1000000000000777", "the dev account's balance plus the transfer");

    // Restart validator 3 on its data: it catches up to the others' height and chain.
    nodes[3] = start(3, "b");
    // The node that confirmed the transfer has executed its block; catch up to at least there.
    let target = wait_height(&urls[1], 0, Duration::from_secs(5)).height;
    wait_height(&urls[0], target, Duration::from_secs(60));
    wait_height(&urls[3], target, Duration::from_secs(180));
    assert_eq!(get_json(&urls[3], &format!("/account/{to}"))["balance"], balance);
    let block_0 = get_json(&urls[0], &format!("/block/{target}"));
    let block_3 = get_json(&urls[3], &format!("/block/{target}"));
    assert_eq!(block_0["digest"], block_3["digest"]);
}
