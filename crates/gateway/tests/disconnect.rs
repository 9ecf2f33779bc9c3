//! A client that goes away mid-stream stops its generation within a few tokens, and only the
//! tokens that were delivered are reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::MODEL;
use futures::StreamExt;
use polylink_gateway::Limits;
use serde_json::json;
use std::time::Duration;

fn gauge(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("polylink_gateway_{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_mid_stream_stops_generation_and_reports_only_delivered_tokens() {
    let gw = common::start(Limits::default()).await;
    // Counting goes on for far more than the 1,000 tokens allowed: only the disconnect stops it.
    let body = json!({"model": MODEL, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 1000, "temperature": 0, "stream": true});
    let resp = gw.open("/v1/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut received = String::new();
    while received.matches("\"text\":\"").count() < 6 {
        received.push_str(&String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()));
    }
    drop(stream);

    // The server notices on its next writes; then the engine stops sampling for this session.
    let mut metrics = String::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        metrics = gw.gateway.metrics().render();
        if gauge(&metrics, "generations_cancelled_total") == 1 {
            break;
        }
    }
    assert_eq!(gauge(&metrics, "generations_cancelled_total"), 1, "{metrics}");
    assert_eq!(gauge(&metrics, "requests_in_flight"), 0, "{metrics}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sampled = gw.backend.tokens_sampled();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.backend.tokens_sampled(), sampled, "the engine kept generating after the disconnect");

    let delivered = gauge(&metrics, "completion_tokens_total");
    assert!(delivered >= 5, "at least the chunks the client read were delivered: {delivered}");
    assert!(
        sampled <= delivered + 4,
        "generation ran {} tokens past what was delivered",
        sampled - delivered
    );
    assert!(sampled < 100, "generation did not stop early: {sampled} tokens");

    // The engine is free again.
    let (status, answer) =
        gw.post("/v1/completions", &json!({"model": MODEL, "prompt": "Hello", "max_tokens": 3})).await;
    assert_eq!(status, 200, "{answer}");
}
