//! A chain across machines with no dealer: four validators, each on its own host (a network
//! namespace behind a shaped link on one emulated switch), make their identities on their own
//! hosts, agree on a network file that holds only public keys, addresses and a real account,
//! and deal the committee's threshold key among themselves (`polylink chain dkg`). Their nodes
//! then finalize blocks, carry a transfer from the genesis account, and keep finalizing with one
//! host's link cut (2f+1 = 3). Needs root and iproute2; a kernel without netem gets tbf shaping,
//! and the test says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chain_common;

use chain_common::{cli_ok, dkg_chain, get_json, wait_height};
use std::time::{Duration, Instant};

#[test]
fn four_hosts_deal_their_committee_key_among_themselves_and_finalize() {
    let lan = chain_common::lan(4);
    let dir = tempfile::tempdir().unwrap();

    // A user's account, its key in the user's own wallet.
    let wallet = dir.path().join("user.json");
    let wallet = wallet.to_str().unwrap();
    cli_ok(&["wallet", "new", "--wallet", wallet]);
    let user = cli_ok(&["wallet", "show", "--wallet", wallet]).trim().to_string();
    let chain = dkg_chain(&lan, &[0, 1, 2, 3], &[(user, 5_000_000)], dir.path(), "polylink-dkg-test");
    let path =
        |k: usize, name: &str| dir.path().join(format!("host{k}")).join(name).to_str().unwrap().to_string();

    // The network file holds no validator's secret.
    let text = std::fs::read_to_string(dir.path().join("network.toml")).unwrap();
    for k in 0..4 {
        let secret = std::fs::read_to_string(path(k, "validator.key")).unwrap();
        assert!(!text.contains(secret.trim()), "the network file holds no validator's secret");
    }
    assert!(
        chain.outputs.windows(2).all(|w| w[0] == w[1]),
        "every validator computed the same group key: {:?}",
        chain.outputs
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
    let urls = &chain.urls;

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
    drop(chain);
}
