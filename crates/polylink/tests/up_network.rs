//! `polylink up` as a new user runs it: the whole local network (chain node, a worker serving
//! SmolLM2 whole, two workers serving it as a 2-stage pipeline, the gateway, three validators),
//! used through the official `openai` Python package unchanged. Every request is a task on chain:
//! the charge is what the chain took, the task is visible through the RPC, and once the validators
//! have committed and revealed, the fee is split between the workers, the validators, the model's
//! developer and the treasury exactly as `Params` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod up_common;

use serde_json::Value;
use std::collections::HashMap;
use up_common::{Up, amount, balance, settle_and_split};

#[test]
fn openai_client_through_up_pays_workers_validators_and_developer() {
    let probe = std::process::Command::new("python3").args(["-c", "import openai"]).output().unwrap();
    assert!(
        probe.status.success(),
        "the `openai` Python package is missing; run scripts/test.sh, which installs the pinned version"
    );
    let up = Up::start(&[]);
    let rpc = up.rpc();
    let user = up.summary["account"].as_str().unwrap().to_string();
    let developer = up.summary["developer"].as_str().unwrap().to_string();
    let mut watched: Vec<String> = vec![user.clone(), developer.clone()];
    for w in up.summary["workers"].as_array().unwrap() {
        watched.push(w["account"].as_str().unwrap().to_string());
    }
    for v in up.summary["validators"].as_array().unwrap() {
        watched.push(v["account"].as_str().unwrap().to_string());
    }
    let before: HashMap<String, u128> = watched.iter().map(|a| (a.clone(), balance(&rpc, a))).collect();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_up.py");
    let out = std::process::Command::new("python3")
        .args([script, &up.base_url(), up.summary["api_key"].as_str().unwrap(), "smollm2-135m-instruct"])
        .output()
        .unwrap();
    assert!(out.status.success(), "openai client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["models"], serde_json::json!(["smollm2-135m-instruct"]));
    let chat = &seen["chat"];
    let stream = &seen["stream"];
    assert!(!chat["content"].as_str().unwrap().trim().is_empty(), "{seen}");
    // The two requests went to different deployments (whole, then the pipeline) and greedy
    // decoding gives the same text on both.
    assert_eq!(stream["content"], chat["content"], "{seen}");
    assert_eq!(stream["usage"]["total_tokens"], chat["usage"]["total_tokens"]);

    let mut expected: HashMap<String, i128> = HashMap::new();
    // Each request is one SubmitTask the user signed, and each costs the transaction fee.
    let tx_fee = amount(&up_common::get(&rpc, "/params")["params"]["tx_fee"]) as i128;
    expected.insert(user.clone(), -2 * tx_fee);
    let mut heads = Vec::new();
    for (task_id, charge, usage) in [
        (chat["task_id"].as_str().unwrap(), amount(&chat["charge"]), &chat["usage"]),
        (
            stream["polylink"]["task_id"].as_str().unwrap(),
            amount(&stream["polylink"]["charge"]),
            &stream["usage"],
        ),
    ] {
        let tokens = usage["total_tokens"].as_u64().unwrap() as u128;
        let settled = settle_and_split(&rpc, task_id, &user, charge, tokens);
        for (who, delta) in settled.deltas {
            *expected.entry(who).or_default() += delta;
        }
        heads.push(settled.stages);
    }
    heads.sort_unstable();
    assert_eq!(heads, vec![1, 2], "one request should run whole and one on the 2-stage pipeline");
    for who in &watched {
        let now = balance(&rpc, who) as i128;
        let want = before[who] as i128 + expected.get(who).copied().unwrap_or(0);
        assert_eq!(now, want, "balance of {who}: got {now}, want {want}");
    }
}
