//! `polylink bench traffic`, small: a whole `polylink up` network under honest traffic from the
//! official `openai` client — chat and completions at temperatures 0 to 1.5, top_p, streaming
//! and not, system prompts, several turns, clients that hang up mid-stream, and a longer answer.
//! The benchmark itself checks the promises (every task settled, no honest worker or validator
//! slashed, every worker richer, every charge exact) and fails otherwise;
//! this test runs it as a user would and reads its report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::process::Command;

#[test]
fn honest_traffic_through_up_settles_every_task_and_costs_the_honest_nothing() {
    let probe = Command::new("python3").args(["-c", "import openai"]).output().unwrap();
    assert!(
        probe.status.success(),
        "the `openai` Python package is missing; run scripts/test.sh, which installs the pinned version"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_polylink"))
        .args(["bench", "traffic", "--requests", "14", "--disconnects", "4", "--long", "1"])
        .args(["--long-tokens", "160", "--max-tokens", "48", "--seed", "7"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the traffic benchmark found broken promises:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["requests"], 19, "{report}");
    assert_eq!(report["hung_up"], 4, "{report}");
    assert_eq!(report["failed_requests"], 0, "{report}");
    assert_eq!(report["tasks"], 19, "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
}
