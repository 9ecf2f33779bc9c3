//! The official `openai` Python package (pinned, installed by scripts/test.sh) works unchanged
//! against the gateway: list models, one chat completion, one streamed chat completion, and an
//! error it maps to its own exception type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_gateway::Limits;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_client_lists_chats_and_streams() {
    let probe = std::process::Command::new("python3").args(["-c", "import openai"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the `openai` Python package is missing ({}); run scripts/test.sh, which installs the pinned version",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 is not available ({e}); install Python 3 and run scripts/test.sh"),
    }
    let gw = common::start(Limits::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let base = gw.base();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args([script, &base, common::KEY, common::MODEL]).output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "openai client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(seen["models"], serde_json::json!([common::MODEL]));
    let chat = &seen["chat"];
    let content = chat["content"].as_str().unwrap();
    assert!(!content.trim().is_empty(), "{seen}");
    assert_eq!(chat["finish_reason"], "length");
    assert_eq!(chat["usage"]["completion_tokens"], 8);
    assert_eq!(chat["headers"]["x-polylink-billing"], "off");
    let stream = &seen["stream"];
    assert_eq!(stream["content"], content, "streamed greedy answer differs: {seen}");
    assert_eq!(stream["finish_reason"], "length");
    assert_eq!(stream["usage"]["total_tokens"], chat["usage"]["total_tokens"]);
    assert_eq!(seen["unknown_model_error"]["status"], 404);
    assert_eq!(seen["unknown_model_error"]["code"], "model_not_found");
}
