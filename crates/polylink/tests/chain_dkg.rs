//! A chain across machines with no dealer: four validators, each on its own host (a network
//! namespace behind a shaped link on one emulated switch), make their identities on their own
//! hosts, agree on a network file that holds only public keys, addresses and a real account,
//! and deal the committee's threshold key among themselves (`polylink chain dkg`). Their nodes
//! then finalize blocks, carry a transfer from the genesis account, and keep finalizing with one
//! host's link cut (2f+1 = 3). Needs root and iproute2; a kernel without netem gets tbf shaping,
//! and the test says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_common;

use chain_common::{Proc, cli_ok, command_in, get_json, spawn_node_in, wait_height};
use polylink_node::netem::{EmulatedLan, LAN_NETEM};
use std::time::{Duration, Instant};

#[test]
fn four_hosts_deal_their_committee_key_among_themselves_and_finalize() {
    let (lan, shaping) =
        EmulatedLan::shaped(4).unwrap_or_else(|e| panic!("cannot emulate the hosts this test needs: {e}"));
    if shaping != LAN_NETEM {
        eprintln!("no netem in this kernel; the links are shaped with `{shaping}` instead, no added delay");
    }
    let dir = tempfile::tempdir().unwrap();
    let host_dir = |k: usize| dir.path().join(format!("host{k}"));
    let path = |k: usize, name: &str| host_dir(k).join(name).to_str().unwrap().to_string();

    // Each validator makes its identity on its own host.
    let keys: Vec<String> = (0..4)
        .map(|k| {
            let out = command_in(
                Some(&lan.hosts[k].netns),
                &["chain", "keygen", "--key", &path(k, "validator.key")],
            )
            .output()
            .unwrap();
            assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
            let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(line["event"], "created");
            line["public_key"].as_str().unwrap().to_string()
        })
        .collect();
    // A user's account, its key in the user's own wallet.
    let wallet = dir.path().join("user.json");
    let wallet = wallet.to_str().unwrap();
    cli_ok(&["wallet", "new", "--wallet", wallet]);
    let user = cli_ok(&["wallet", "show", "--wallet", wallet]).trim().to_string();

    // The network file: public keys, addresses and the genesis account, nothing secret.
    let network = dir.path().join("network.toml");
    let network = network.to_str().unwrap();
    let mut genesis =
        vec!["chain", "genesis", "--chain-id", "polylink-dkg-test", "--block-interval-ms", "200"];
    let entries: Vec<String> = (0..4).map(|k| format!("{}@{}:3000", keys[k], lan.hosts[k].addr)).collect();
    for entry in &entries {
        genesis.extend(["--validator", entry.as_str()]);
    }
    let account = format!("{user}=5000000");
    genesis.extend(["--account", account.as_str(), "--out", network]);
    cli_ok(&genesis);
    let text = std::fs::read_to_string(network).unwrap();
    for k in 0..4 {
        let secret = std::fs::read_to_string(path(k, "validator.key")).unwrap();
        assert!(!text.contains(secret.trim()), "the network file holds no validator's secret");
    }

    // The ceremony: all four at once, each on its own host.
    let ceremonies: Vec<Proc> = (0..4)
        .map(|k| {
            let rpc = format!("{}:8645", lan.hosts[k].addr);
            let args = [
                "chain",
                "dkg",
                "--key",
                &path(k, "validator.key"),
                "--network",
                network,
                "--rpc",
                &rpc,
                "--data-dir",
                &path(k, "data"),
                "--timeout-s",
                "300",
                "--out",
                &path(k, "config.toml"),
            ];
            let out = std::fs::File::create(path(k, "dkg.out")).unwrap();
            let log = std::fs::File::create(path(k, "dkg.log")).unwrap();
            Proc(
                command_in(Some(&lan.hosts[k].netns), &args)
                    .env("RUST_LOG", "info")
                    .stdout(out)
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let outputs: Vec<String> = ceremonies
        .into_iter()
        .enumerate()
        .map(|(k, mut proc)| {
            let status = proc.0.wait().unwrap();
            let log = std::fs::read_to_string(path(k, "dkg.log")).unwrap_or_default();
            assert!(status.success(), "validator {k}'s ceremony failed:\n{log}");
            let line: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path(k, "dkg.out")).unwrap()).unwrap();
            assert_eq!(line["public_key"], keys[k].as_str());
            line["output"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "every validator computed the same group key: {outputs:?}"
    );
    // Each config holds its own identity and share and no other validator's.
    let configs: Vec<toml::Value> = (0..4)
        .map(|k| toml::from_str(&std::fs::read_to_string(path(k, "config.toml")).unwrap()).unwrap())
        .collect();
    for (k, config) in configs.iter().enumerate() {
        let secret = std::fs::read_to_string(path(k, "validator.key")).unwrap();
        assert_eq!(config["private_key"].as_str().unwrap(), secret.trim());
        for (j, other) in configs.iter().enumerate().filter(|(j, _)| *j != k) {
            assert_ne!(config["share"], other["share"], "validators {k} and {j} hold different shares");
            assert_eq!(config["polynomial"], other["polynomial"], "one public polynomial");
        }
    }

    // The nodes: each on its host, dialing the others at their listed addresses.
    let nodes: Vec<(Proc, String)> = (0..4)
        .map(|k| {
            spawn_node_in(
                Some(&lan.hosts[k].netns),
                &["chain", "run", "--config", &path(k, "config.toml")],
                &host_dir(k).join("node.log"),
            )
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|(_, url)| url.clone()).collect();
    for (k, url) in urls.iter().enumerate() {
        assert_eq!(url, &format!("http://{}:8645", lan.hosts[k].addr));
        wait_height(url, 3, Duration::from_secs(180));
    }

    // The genesis account pays from its own wallet through host 0's node; host 3's node sees it.
    let to = "11".repeat(32);
    let out = cli_ok(&[
        "wallet", "transfer", "--wallet", wallet, "--rpc", &urls[0], "--to", &to, "--amount", "1234",
    ]);
    assert!(out.contains("\"outcome\":\"applied\""), "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_json(&urls[3], &format!("/account/{to}"))["balance"] != "1234" {
        assert!(Instant::now() < deadline, "host 3's node never executed the transfer");
        std::thread::sleep(Duration::from_millis(200));
    }

    // One host's link is cut: the other three still finalize.
    lan.set_link(3, false).unwrap();
    let height = wait_height(&urls[0], 0, Duration::from_secs(5)).height;
    wait_height(&urls[0], height + 4, Duration::from_secs(120));
    wait_height(&urls[1], height + 4, Duration::from_secs(60));
    drop(nodes);
}
