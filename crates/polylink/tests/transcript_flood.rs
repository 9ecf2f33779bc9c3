//! Adversarial (#11 item 3): anyone may sign transcript requests, but only a member of a task's
//! committee takes a place in the gateway's replay window, and each key only up to its own cap.
//! Before, the window was one shared bound filled before the committee check: an outsider's flood
//! of signed requests locked the validators out, the transcript scored 0 and the honest worker
//! was struck. Here an outsider floods a gateway whose window is small, and the honest task is
//! still fetched, scored and paid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod validator_common;

use polylink_gateway::StoreConfig;
use polylink_protocol::{SKEW_MS_MAX, TRANSCRIPTS_PATH, TranscriptRequest, now_ms};
use polylink_types::{SecretKey, SettleOutcome, TaskId};
use validator_common::*;

/// The window per key in this test: a flood many times larger is sent.
const PER_KEY: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsiders_flood_of_signed_fetches_locks_no_validator_out() {
    let net = start_with(1, |p| p.reveals_min = 1).await;
    let store = StoreConfig {
        entries_max: 100,
        dir: Some(net.dir.path().join("transcripts")),
        fetches_per_key_max: PER_KEY,
        ..StoreConfig::default()
    };
    let gw = gateway_with(&net, local(&smollm2(), &worker(0)), &worker(0), Some(store)).await;

    // The flood: validly signed, fresh (as late as the skew allows, so they would stay longest),
    // each for a task id of its own.
    let outsider = SecretKey::from_label("flooder");
    let http = reqwest::Client::new();
    for i in 0..PER_KEY * 4 {
        let task = TaskId::digest(&[b"flood", &i.to_be_bytes()]);
        let request =
            TranscriptRequest::sign(&outsider, "polylink-validator-test", &task, now_ms() + SKEW_MS_MAX / 2);
        let mut get = http.get(format!("{gw}{TRANSCRIPTS_PATH}/{task}"));
        for (name, value) in request.headers() {
            get = get.header(name, value);
        }
        let status = get.send().await.unwrap().status().as_u16();
        assert_eq!(status, 404, "request {i} of the flood: the chain knows no such task");
    }

    let node = validator_node(&net, 0, None).await;
    let strikes_before = net.client.account(&worker(0).public_key()).await.unwrap().stake.strikes;
    let (task, _) = ask(&gw, "Name a colour.", 8).await;
    let record = settled(&net, &task).await;
    assert_eq!(record.status, polylink_ledger::TaskStatus::Settled(SettleOutcome::Paid), "{record:?}");
    let score = record.committee.as_slice()[0].score.expect("the validator revealed");
    assert!(score > 0, "the transcript was fetched and scored ({score})");
    let strikes = net.client.account(&worker(0).public_key()).await.unwrap().stake.strikes;
    assert_eq!(strikes, strikes_before, "the honest worker was not struck");
    node.stop().await;
}
