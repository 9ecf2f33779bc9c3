//! A corpus of bad requests gets 4xx answers in OpenAI's error shape, runs nothing, and never
//! stops the gateway from serving the good requests sent at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{KEY, KEY_BOB, MODEL};
use futures::StreamExt;
use polylink_gateway::Limits;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";
const COMPLETION: &str = "/v1/completions";

fn chat(extra: Value) -> Vec<u8> {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    serde_json::to_vec(&body).unwrap()
}

/// One bad request: (what, path, key, body, expected status, expected error code).
type Case = (&'static str, &'static str, Option<&'static str>, Vec<u8>, u16, &'static str);

fn corpus() -> Vec<Case> {
    let long_prompt = "word ".repeat(3000);
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    vec![
        (
            "malformed json",
            CHAT,
            Some(KEY),
            b"{\"model\": \"smollm2\", \"messages\": [".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "invalid utf-8",
            CHAT,
            Some(KEY),
            b"{\"model\": \"\xff\xfe\", \"messages\": []}".to_vec(),
            400,
            "invalid_json",
        ),
        ("not an object", CHAT, Some(KEY), b"[1, 2, 3]".to_vec(), 400, "invalid_json"),
        ("deeply nested", CHAT, Some(KEY), deep.into_bytes(), 400, "invalid_json"),
        ("unknown model", CHAT, Some(KEY), chat(json!({"model": "gpt-17"})), 404, "model_not_found"),
        ("missing model", COMPLETION, Some(KEY), b"{\"prompt\": \"Hi\"}".to_vec(), 400, "invalid_value"),
        ("model not a string", CHAT, Some(KEY), chat(json!({"model": 42})), 400, "invalid_value"),
        (
            "empty prompt",
            COMPLETION,
            Some(KEY),
            serde_json::to_vec(&json!({"model": MODEL, "prompt": ""})).unwrap(),
            400,
            "invalid_value",
        ),
        ("no messages", CHAT, Some(KEY), chat(json!({"messages": []})), 400, "invalid_value"),
        (
            "empty message content",
            CHAT,
            Some(KEY),
            chat(json!({"messages": [{"role": "user", "content": "  "}]})),
            400,
            "invalid_value",
        ),
        ("messages not an array", CHAT, Some(KEY), chat(json!({"messages": "hi"})), 400, "invalid_value"),
        (
            "unknown role",
            CHAT,
            Some(KEY),
            chat(json!({"messages": [{"role": "wizard", "content": "hi"}]})),
            400,
            "invalid_value",
        ),
        (
            "body over the byte limit",
            COMPLETION,
            Some(KEY),
            serde_json::to_vec(&json!({"model": MODEL, "prompt": "x".repeat(70_000)})).unwrap(),
            413,
            "request_too_large",
        ),
        (
            "prompt over the token limit",
            COMPLETION,
            Some(KEY),
            serde_json::to_vec(&json!({"model": MODEL, "prompt": long_prompt})).unwrap(),
            400,
            "context_length_exceeded",
        ),
        (
            "absurd max_tokens",
            CHAT,
            Some(KEY),
            chat(json!({"max_tokens": 1_000_000_000_000u64})),
            400,
            "invalid_value",
        ),
        ("negative max_tokens", CHAT, Some(KEY), chat(json!({"max_tokens": -1})), 400, "invalid_value"),
        ("zero max_tokens", CHAT, Some(KEY), chat(json!({"max_tokens": 0})), 400, "invalid_value"),
        ("fractional max_tokens", CHAT, Some(KEY), chat(json!({"max_tokens": 2.5})), 400, "invalid_value"),
        ("max_tokens as a string", CHAT, Some(KEY), chat(json!({"max_tokens": "10"})), 400, "invalid_value"),
        ("temperature too high", CHAT, Some(KEY), chat(json!({"temperature": 5})), 400, "invalid_value"),
        ("negative temperature", CHAT, Some(KEY), chat(json!({"temperature": -0.5})), 400, "invalid_value"),
        (
            "temperature as a string",
            CHAT,
            Some(KEY),
            chat(json!({"temperature": "hot"})),
            400,
            "invalid_value",
        ),
        ("top_p zero", CHAT, Some(KEY), chat(json!({"top_p": 0})), 400, "invalid_value"),
        ("top_p above one", CHAT, Some(KEY), chat(json!({"top_p": 1.5})), 400, "invalid_value"),
        ("stream not a boolean", CHAT, Some(KEY), chat(json!({"stream": "yes"})), 400, "invalid_value"),
        (
            "stream_options without stream",
            CHAT,
            Some(KEY),
            chat(json!({"stream_options": {"include_usage": true}})),
            400,
            "invalid_value",
        ),
        (
            "too many stop sequences",
            CHAT,
            Some(KEY),
            chat(json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            "invalid_value",
        ),
        ("several choices", CHAT, Some(KEY), chat(json!({"n": 3})), 400, "unsupported_parameter"),
        (
            "tool calls",
            CHAT,
            Some(KEY),
            chat(json!({"tools": [{"type": "function"}]})),
            400,
            "unsupported_parameter",
        ),
        ("missing api key", CHAT, None, chat(json!({})), 401, "missing_api_key"),
        ("wrong api key", CHAT, Some("sk-not-a-real-key"), chat(json!({})), 401, "invalid_api_key"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_while_good_requests_keep_succeeding() {
    let limits = Limits {
        body_bytes_max: 64 * 1024,
        prompt_tokens_max: 512,
        max_tokens_max: 256,
        ..Limits::default()
    };
    let gw = std::sync::Arc::new(common::start(limits).await);

    // Good requests from another key run all along, on both endpoints.
    let good = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut prompt_tokens = 0;
            for i in 0..6 {
                let (path, body) = if i % 2 == 0 {
                    (CHAT, chat(json!({"messages": [{"role": "user", "content": format!("Say {i}")}]})))
                } else {
                    (
                        COMPLETION,
                        serde_json::to_vec(
                            &json!({"model": MODEL, "prompt": format!("{i} + {i} ="), "max_tokens": 4}),
                        )
                        .unwrap(),
                    )
                };
                let (status, answer) = gw.post_raw(path, Some(KEY_BOB), body).await;
                assert_eq!(status, 200, "good request {i} failed: {answer}");
                prompt_tokens += answer["usage"]["prompt_tokens"].as_u64().unwrap();
            }
            prompt_tokens
        })
    };

    let answers: Vec<_> = futures::stream::iter(corpus())
        .map(|(what, path, key, body, status, code)| {
            let gw = gw.clone();
            async move { (what, status, code, gw.post_raw(path, key, body).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for (what, status, code, (got_status, body)) in answers {
        assert_eq!(got_status, status, "{what}: {body}");
        let error = &body["error"];
        assert_eq!(error["code"], code, "{what}: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
        assert!(error["type"].is_string() && error.get("param").is_some(), "{what}: {body}");
    }

    let good_prompt_tokens = good.await.unwrap();
    // Only the good requests reached the engine: the bad ones processed no prompt at all.
    let metrics = gw.gateway.metrics().render();
    assert!(
        metrics.contains(&format!("polylink_gateway_prompt_tokens_total {good_prompt_tokens}\n")),
        "{metrics}"
    );
    assert!(metrics.contains("polylink_gateway_generation_seconds_count 6\n"), "{metrics}");

    // And the gateway still serves.
    let (status, _) = gw.post_raw(CHAT, Some(KEY), chat(json!({}))).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_at_its_concurrency_limit_gets_429_while_other_keys_are_served() {
    let limits = Limits { requests_per_key_max: 1, ..Limits::default() };
    let gw = common::start(limits).await;
    let long =
        json!({"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 200, "temperature": 0, "stream": true});
    let held = gw.open("/v1/completions", &long).await;
    assert_eq!(held.status(), 200);
    let mut held = held.bytes_stream();
    held.next().await.unwrap().unwrap();

    let (status, body) = gw.post_raw(CHAT, Some(KEY), chat(json!({}))).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let (status, body) = gw.post_raw(CHAT, Some(KEY_BOB), chat(json!({}))).await;
    assert_eq!(status, 200, "{body}");

    drop(held);
    // The slot comes back once the server notices the disconnect.
    let mut status = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        status = gw.post_raw(CHAT, Some(KEY), chat(json!({}))).await.0;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200);
}
