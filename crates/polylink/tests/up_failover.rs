//! Fail-over as a user sees it: through `polylink up` (2-stage pipeline with one standby per stage,
//! three validators) the official `openai` client streams a greedy answer while a pipeline stage
//! process is killed in the middle. The stream completes, its text equals the uninterrupted answer,
//! and the user is charged once, for the tokens delivered, and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod up_common;

use std::collections::HashMap;
use up_common::{Up, assert_only_these_tasks_moved_money, balance, nonce, stream, watched_accounts};

#[test]
fn killing_a_stage_mid_stream_loses_no_token_and_charges_once() {
    let up = Up::start(&["--no-whole", "--standby", "1"]);
    let rpc = up.rpc();
    let before: HashMap<String, u128> =
        watched_accounts(&up).into_iter().map(|a| (a.clone(), balance(&rpc, &a))).collect();

    let reference = stream(&up, 64, None);
    assert_eq!(reference["usage"]["completion_tokens"], 64, "{reference}");
    let victim = up.worker_pid("worker-stage1");
    // `up` restarts the killed worker, which may register again (its own fee).
    let stage1 = up.worker_account("worker-stage1");
    let restarted = [(stage1.clone(), nonce(&rpc, &stage1))];
    let interrupted = stream(&up, 64, Some((victim, 8)));
    assert_eq!(interrupted["killed_at_chunk"], 8, "{interrupted}");
    assert_eq!(interrupted["content"], reference["content"], "the fail-over lost or repeated tokens");
    assert_eq!(interrupted["usage"], reference["usage"]);
    assert_eq!(interrupted["finish_reason"], "length");

    let user = up.summary["account"].as_str().unwrap();
    assert_only_these_tasks_moved_money(&rpc, user, &before, &[&reference, &interrupted], &restarted);
}
