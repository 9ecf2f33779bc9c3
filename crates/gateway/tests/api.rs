//! The OpenAI surface over the real SmolLM2: model list, completions and chat completions, as
//! one JSON answer and as server-sent events, with `usage`, finish reasons and stop sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use polylink_gateway::Limits;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_completions_and_streams_answer_in_openai_shape() {
    let gw = common::start(Limits::default()).await;

    let models: Value =
        gw.http.get(format!("{}/models", gw.base())).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], common::MODEL);
    assert_eq!(models["data"][0]["object"], "model");

    // Non-streamed chat, greedy, cut by max_tokens.
    let ask = json!({"model": common::MODEL, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                     "max_tokens": 6, "temperature": 0});
    let (status, chat) = gw.post("/v1/chat/completions", &ask).await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["object"], "chat.completion");
    assert!(chat["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(chat["created"].as_u64().unwrap() > 1_700_000_000);
    let message = &chat["choices"][0]["message"];
    assert_eq!(message["role"], "assistant");
    let answer = message["content"].as_str().unwrap().to_string();
    assert!(!answer.trim().is_empty(), "{chat}");
    let usage = &chat["usage"];
    assert_eq!(usage["completion_tokens"], 6);
    assert_eq!(chat["choices"][0]["finish_reason"], "length");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + 6,
        "{usage}"
    );
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 8, "the chat template adds its system turn: {usage}");

    // The same request streamed gives the same greedy text, chunk by chunk, then usage and [DONE].
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, events) = gw.stream("/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, answer, "streamed and non-streamed greedy answers differ");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(last["usage"], *usage);

    // Text completion with a stop sequence: the answer ends before it, with finish_reason "stop".
    let count = json!({"model": common::MODEL, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 24, "temperature": 0, "stop": [" 9"]});
    let (status, done) = gw.post("/v1/completions", &count).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["object"], "text_completion");
    let text = done["choices"][0]["text"].as_str().unwrap();
    assert_eq!(done["choices"][0]["finish_reason"], "stop", "{text:?}");
    assert!(text.starts_with(" 6, 7, 8,") && !text.contains('9'), "{text:?}");
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() < 24);

    // Streamed text completion ends with a finish chunk and [DONE] (no usage chunk unless asked).
    let mut count_stream = count.clone();
    count_stream["stream"] = json!(true);
    let (status, events) = gw.stream("/v1/completions", &count_stream).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let streamed_text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(streamed_text, text);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));

    let metrics =
        gw.http.get(format!("http://{}/metrics", gw.addr)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("polylink_gateway_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("polylink_gateway_requests_in_flight 0"), "{metrics}");
}
