//! Re-planning as a user sees it: the default `polylink up` has no spare stages, only a worker
//! serving SmolLM2 whole beside the 2-stage pipeline. The official `openai` client streams a
//! greedy answer through the pipeline and its second stage (layers 15..30) is killed after 8
//! chunks: the head re-plans those layers onto the whole-model worker, which runs just that span,
//! and the stream completes with exactly the uninterrupted text, charged once. The whole-model
//! worker is paid on chain as a stand-in for the part of stage 2 it ran; the dead worker only for
//! what it computed before it died.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod up_common;

use serde_json::Value;
use std::collections::HashMap;
use up_common::{Up, assert_only_these_tasks_moved_money, balance, get, nonce, stream, watched_accounts};

/// The accounts of the workers a task was placed on, in pipeline order.
fn task_workers(rpc: &str, answer: &Value) -> Vec<String> {
    let task = get(rpc, &format!("/task/{}", answer["polylink"]["task_id"].as_str().unwrap()));
    task["workers"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect()
}

#[test]
fn with_no_spare_a_dead_stage_is_replanned_onto_the_whole_model_worker() {
    let up = Up::start(&[]);
    let rpc = up.rpc();
    let before: HashMap<String, u128> =
        watched_accounts(&up).into_iter().map(|a| (a.clone(), balance(&rpc, &a))).collect();
    let account = |name: &str| {
        let workers = up.summary["workers"].as_array().unwrap();
        workers.iter().find(|w| w["name"] == name).unwrap()["account"].as_str().unwrap().to_string()
    };

    // Idle deployments are taken in turn: the first request goes to the whole-model worker, the
    // second through the pipeline.
    let reference = stream(&up, 64, None);
    assert_eq!(task_workers(&rpc, &reference), [account("worker-whole")]);
    // `up` restarts the killed worker, which may register again (its own fee).
    let restarted = [(account("worker-stage1"), nonce(&rpc, &account("worker-stage1")))];
    let interrupted = stream(&up, 64, Some((up.worker_pid("worker-stage1"), 8)));
    assert_eq!(task_workers(&rpc, &interrupted), [account("worker-stage0"), account("worker-stage1")]);
    assert_eq!(interrupted["killed_at_chunk"], 8, "{interrupted}");
    assert_eq!(interrupted["content"], reference["content"], "the re-plan lost or repeated tokens");
    assert_eq!(interrupted["usage"], reference["usage"]);

    let user = up.summary["account"].as_str().unwrap();
    assert_only_these_tasks_moved_money(&rpc, user, &before, &[&reference, &interrupted], &restarted);

    // Only the workers that computed signed receipts: stage 0, and the whole-model worker that
    // replayed and finished stage 2's layers; the killed stage signed nothing and is paid nothing.
    let task = get(&rpc, &format!("/task/{}", interrupted["polylink"]["task_id"].as_str().unwrap()));
    let result = &task["result"];
    let receipts = result["receipts"].as_array().unwrap();
    let signers: Vec<&str> = receipts.iter().map(|r| r["worker"].as_str().unwrap()).collect();
    assert_eq!(signers, [account("worker-stage0"), account("worker-whole")], "{result}");
    let rows = |r: &Value| r["rows"].as_u64().unwrap();
    let billed = result["prompt_tokens"].as_u64().unwrap() + result["completion_tokens"].as_u64().unwrap();
    assert!(
        receipts.iter().all(|r| rows(r) + 1 >= billed && rows(r) <= billed + 1),
        "the stand-in replayed every row: {result}"
    );
    assert_eq!(receipts[0]["layer_start"], 0);
    assert_eq!(receipts[1]["layer_start"], receipts[0]["layer_end"], "{result}");
}
