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
use up_common::{Up, assert_only_these_tasks_moved_money, balance, get, stream, watched_accounts};

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
    let interrupted = stream(&up, 64, Some((up.worker_pid("worker-stage1"), 8)));
    assert_eq!(task_workers(&rpc, &interrupted), [account("worker-stage0"), account("worker-stage1")]);
    assert_eq!(interrupted["killed_at_chunk"], 8, "{interrupted}");
    assert_eq!(interrupted["content"], reference["content"], "the re-plan lost or repeated tokens");
    assert_eq!(interrupted["usage"], reference["usage"]);

    let user = up.summary["account"].as_str().unwrap();
    assert_only_these_tasks_moved_money(&rpc, user, &before, &[&reference, &interrupted]);

    // The result names the stand-in and splits stage 2's share by the rows each worker computed.
    let task = get(&rpc, &format!("/task/{}", interrupted["polylink"]["task_id"].as_str().unwrap()));
    let result = &task["result"];
    let stand_ins = result["stand_ins"].as_array().unwrap();
    assert_eq!(stand_ins.len(), 1, "{result}");
    assert_eq!(stand_ins[0]["worker"], account("worker-whole"), "{result}");
    let bps = |v: &Value| v.as_u64().unwrap();
    let (stage0, stage1, stand_in) = (
        bps(&result["stage_shares_bps"][0]),
        bps(&result["stage_shares_bps"][1]),
        bps(&stand_ins[0]["share_bps"]),
    );
    assert_eq!(stage0 + stage1 + stand_in, 10_000, "{result}");
    assert!(
        stage1 > 0 && stand_in > stage1,
        "the stand-in ran most of stage 2 (and replayed the rest): {result}"
    );
}
