//! End to end on the one-validator dev chain: the CLI wallet sends a transfer, a bond and a model
//! registration, the RPC shows them, bad input is refused without harm, and a killed and
//! restarted node comes back to the same height and state root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_common;

use chain_common::{cli_ok, get_json, register_model, rt, run_cli, spawn_node, status, wait_height};
use polylink_chain::pending_log::PendingLog;
use polylink_chain::rpc::{Client, ErrorCode};
use polylink_ledger::dev_key;
use polylink_types::{Transfer, TxKind, UnsignedTx};
use std::time::Duration;

#[test]
fn dev_chain_cli_transactions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let wallet = dir.path().join("wallet.json");
    let base = chain_common::free_ports(2, 11);
    let (rpc_addr, p2p_addr) = (format!("127.0.0.1:{base}"), format!("127.0.0.1:{}", base + 1));
    // A long block interval: empty blocks are rare, so the height holds still around the kill.
    let node_args = [
        "chain",
        "dev",
        "--data-dir",
        data.to_str().unwrap(),
        "--rpc",
        &rpc_addr,
        "--p2p",
        &p2p_addr,
        "--block-interval-ms",
        "4000",
    ];
    let (mut node, url) = spawn_node(&node_args, &dir.path().join("node1.log"));
    wait_height(&url, 1, Duration::from_secs(60));

    let seed = hex::encode(dev_key(0).seed());
    let w = wallet.to_str().unwrap();
    let common = ["--wallet", w, "--rpc", url.as_str()];
    cli_ok(&[&["wallet", "new", "--secret", &seed][..], &common].concat());
    let me = cli_ok(&[&["wallet", "show"][..], &common].concat()).trim().to_string();
    assert_eq!(me, dev_key(0).public_key().to_string());

    let to = dev_key(1).public_key().to_string();
    let before: u128 =
        get_json(&url, &format!("/account/{to}"))["balance"].as_str().unwrap().parse().unwrap();
    let out = cli_ok(&[&["wallet", "transfer", "--to", &to, "--amount", "12345"][..], &common].concat());
    assert!(out.contains("finalized at height") && out.contains("\"outcome\":\"applied\""), "{out}");
    let out = cli_ok(&[&["stake", "bond", "--amount", "5000000"][..], &common].concat());
    assert!(out.contains("\"outcome\":\"applied\""), "{out}");
    let artifact = "ab".repeat(32);
    let out = register_model(&artifact, &common);
    assert!(out.contains("\"outcome\":\"applied\""), "{out}");

    let after: u128 = get_json(&url, &format!("/account/{to}"))["balance"].as_str().unwrap().parse().unwrap();
    assert_eq!(after, before + 12345);
    let mine = get_json(&url, &format!("/account/{me}"));
    assert_eq!(mine["stake"]["bonded"].as_str(), Some("5000000"), "{mine}");
    let models = get_json(&url, "/models");
    assert_eq!(models.as_array().map(Vec::len), Some(1), "{models}");

    // Bad input is refused with a reason and changes nothing; the node keeps serving.
    let client = Client::new(&url).unwrap();
    let rt = rt();
    let nonce = mine["nonce"].as_u64().unwrap();
    let replay = UnsignedTx {
        signer: dev_key(0).public_key(),
        nonce: nonce - 1,
        kind: TxKind::Transfer(Transfer { to: dev_key(1).public_key(), amount: 1 }),
    }
    .sign(&dev_key(0), "polylink-dev");
    let err = rt.block_on(client.submit(&replay)).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WrongNonce), "{err}");
    let mut forged = replay.clone();
    forged.tx.nonce = nonce;
    let err = rt.block_on(client.submit(&forged)).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadSignature), "{err}");
    let http = chain_common::post_raw(&url, "{\"tx\":\"zz\"}");
    assert!(http.contains("not hex"), "{http}");
    let http = chain_common::post_raw(&url, &format!("{{\"tx\":\"{}\"}}", "00".repeat(40_000)));
    assert!(http.contains("413") || http.contains("too large") || http.contains("length limit"), "{http}");
    let held = status(&url).unwrap();
    assert_eq!(get_json(&url, &format!("/account/{me}"))["nonce"].as_u64(), Some(nonce));

    // Kill -9 and restart on the same data dir. A transfer the node had admitted to its mempool
    // (and logged) but not yet executed when it died is executed after the restart.
    node.kill();
    let (log, kept) = PendingLog::open(&data.join("data").join("mempool.log")).unwrap();
    let pending = UnsignedTx {
        signer: dev_key(0).public_key(),
        nonce,
        kind: TxKind::Transfer(Transfer { to: dev_key(1).public_key(), amount: 777 }),
    }
    .sign(&dev_key(0), "polylink-dev");
    assert!(!kept.contains(&pending));
    log.append(&pending);
    drop(log);
    let (_node, url) = spawn_node(&node_args, &dir.path().join("node2.log"));
    let restored = status(&url).unwrap();
    assert!(restored.height >= held.height, "restarted at {} < {}", restored.height, held.height);
    if restored.height == held.height {
        assert_eq!(restored.state_root, held.state_root);
    }
    assert_eq!(get_json(&url, "/models").as_array().map(Vec::len), Some(1));
    wait_height(&url, restored.height + 1, Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let again: u128 =
            get_json(&url, &format!("/account/{to}"))["balance"].as_str().unwrap().parse().unwrap();
        if again == after + 777 {
            break;
        }
        assert_eq!(again, after, "the restarted node moved the balance by something else");
        assert!(
            std::time::Instant::now() < deadline,
            "the logged transfer was not executed after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A subscriber that asks for the blocks from an earlier height gets every block this node
    // has executed since it started, in order, then the new ones.
    let now = status(&url).unwrap().height;
    let heights: Vec<u64> = rt.block_on(async {
        use futures::StreamExt;
        let stream = Client::new(&url).unwrap().events_from(Some(1)).await.unwrap();
        stream.take((now - restored.height + 1) as usize).map(|b| b.executed.height).collect().await
    });
    let want: Vec<u64> = (restored.height + 1..=now + 1).collect();
    assert_eq!(heights, want, "blocks since the restart, then the next one");
    let out = run_cli(&[&["wallet", "balance"][..], &common].concat());
    assert!(out.status.success());
}
