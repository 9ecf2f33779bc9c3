//! Fail-over as a user sees it: through `polylink up` (2-stage pipeline with one standby per stage,
//! three validators) the official `openai` client streams a greedy answer while a pipeline stage
//! process is killed in the middle. The stream completes, its text equals the uninterrupted answer,
//! and the user is charged once, for the tokens delivered, and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod up_common;

use serde_json::Value;
use std::collections::HashMap;
use up_common::{Up, amount, balance, settle_and_split};

const MODEL: &str = "smollm2-135m-instruct";

fn stream(up: &Up, max_tokens: usize, kill: Option<(i32, usize)>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_stream_kill.py");
    let mut args =
        vec![script.to_string(), up.base_url(), up.summary["api_key"].as_str().unwrap().into(), MODEL.into()];
    args.push(max_tokens.to_string());
    if let Some((pid, after)) = kill {
        args.push(pid.to_string());
        args.push(after.to_string());
    }
    let out = std::process::Command::new("python3").args(&args).output().unwrap();
    assert!(out.status.success(), "openai client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn killing_a_stage_mid_stream_loses_no_token_and_charges_once() {
    let probe = std::process::Command::new("python3").args(["-c", "import openai"]).output().unwrap();
    assert!(probe.status.success(), "the `openai` Python package is missing; run scripts/test.sh");
    let up = Up::start(&["--no-whole", "--standby", "1"]);
    let rpc = up.rpc();
    let user = up.summary["account"].as_str().unwrap().to_string();
    let mut watched: Vec<String> = vec![user.clone(), up.summary["developer"].as_str().unwrap().to_string()];
    for role in ["workers", "validators"] {
        for r in up.summary[role].as_array().unwrap() {
            watched.push(r["account"].as_str().unwrap().to_string());
        }
    }
    let before: HashMap<String, u128> = watched.iter().map(|a| (a.clone(), balance(&rpc, a))).collect();

    let reference = stream(&up, 64, None);
    assert_eq!(reference["usage"]["completion_tokens"], 64, "{reference}");
    let victim = up.worker_pid("worker-stage1");
    let interrupted = stream(&up, 64, Some((victim, 8)));
    assert_eq!(interrupted["killed_at_chunk"], 8, "{interrupted}");
    assert_eq!(interrupted["content"], reference["content"], "the fail-over lost or repeated tokens");
    assert_eq!(interrupted["usage"], reference["usage"]);
    assert_eq!(interrupted["finish_reason"], "length");

    let mut expected: HashMap<String, i128> = HashMap::new();
    for seen in [&reference, &interrupted] {
        let tokens = seen["usage"]["total_tokens"].as_u64().unwrap() as u128;
        let settled = settle_and_split(
            &rpc,
            seen["polylink"]["task_id"].as_str().unwrap(),
            &user,
            amount(&seen["polylink"]["charge"]),
            tokens,
        );
        for (who, delta) in settled.deltas {
            *expected.entry(who).or_default() += delta;
        }
    }
    // Exactly these two tasks moved money: one charge per request, nothing more.
    for who in &watched {
        let now = balance(&rpc, who) as i128;
        let want = before[who] as i128 + expected.get(who).copied().unwrap_or(0);
        assert_eq!(now, want, "balance of {who}: got {now}, want {want}");
    }
}
