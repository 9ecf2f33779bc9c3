//! `POST /polylink/probe`: a gateway dials a joining device's advertised endpoint for it and says
//! what it saw; a malformed request gets a clear error, a second probe while one runs is told to
//! come back, and a gateway without a prober has no such route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::future::BoxFuture;
use polylink_gateway::{ApiKeys, EndpointProbe, Gateway, Limits};
use polylink_protocol::{PROBE_PATH, ProbeAnswer, ProbeRequest};
use polylink_types::SecretKey;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Answers as if only `open` were reachable; a probe of `slow` waits until `release` fires.
struct FakeNetwork {
    open: SocketAddr,
    slow: SocketAddr,
    release: Arc<Notify>,
}

impl EndpointProbe for FakeNetwork {
    fn probe(
        &self,
        _account: polylink_types::PublicKey,
        endpoint: SocketAddr,
    ) -> BoxFuture<'static, Result<(), String>> {
        let (open, slow, release) = (self.open, self.slow, self.release.clone());
        Box::pin(async move {
            if endpoint == slow {
                release.notified().await;
            }
            if endpoint == open { Ok(()) } else { Err(format!("{endpoint} refused the connection")) }
        })
    }
}

#[tokio::test]
async fn a_gateway_probes_one_endpoint_at_a_time_and_refuses_malformed_requests() {
    let plain = common::start(Limits::default()).await;
    let request = |endpoint: &str| {
        serde_json::to_vec(&ProbeRequest {
            account: SecretKey::from_label("device").public_key(),
            endpoint: endpoint.parse().unwrap(),
        })
        .unwrap()
    };
    let (status, body) = plain.post_raw(PROBE_PATH, None, request("10.0.0.9:7100")).await;
    assert_eq!(status, 404, "a gateway without a prober answers no probes: {body}");

    let release = Arc::new(Notify::new());
    let network = FakeNetwork {
        open: "10.0.0.9:7100".parse().unwrap(),
        slow: "10.0.0.8:7100".parse().unwrap(),
        release: release.clone(),
    };
    let gateway =
        Gateway::new(plain.backend.clone(), ApiKeys::new(), Limits::default()).with_probe(Arc::new(network));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Arc::new(gateway).serve(listener));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}{PROBE_PATH}");
    let post = |body: Vec<u8>| http.post(&url).header("content-type", "application/json").body(body).send();

    let answer: ProbeAnswer = post(request("10.0.0.9:7100")).await.unwrap().json().await.unwrap();
    assert_eq!(answer, ProbeAnswer { reachable: true, error: None });
    let answer: ProbeAnswer = post(request("10.0.0.7:7100")).await.unwrap().json().await.unwrap();
    assert!(!answer.reachable && answer.error.unwrap().contains("refused"));

    let malformed = post(b"{\"endpoint\": 7}".to_vec()).await.unwrap();
    assert_eq!(malformed.status(), 400);
    let text = malformed.text().await.unwrap();
    assert!(text.contains("account"), "{text}");

    // While one probe runs, another is turned away rather than queued.
    let running = tokio::spawn(post(request("10.0.0.8:7100")));
    let busy = loop {
        let resp = post(request("10.0.0.9:7100")).await.unwrap();
        if resp.status() == 429 {
            break resp;
        }
        // The slow probe may not have taken its turn yet.
        tokio::task::yield_now().await;
    };
    assert!(busy.text().await.unwrap().contains("another probe"));
    release.notify_one();
    let answer: ProbeAnswer = running.await.unwrap().unwrap().json().await.unwrap();
    assert!(!answer.reachable);
    let answer: ProbeAnswer = post(request("10.0.0.9:7100")).await.unwrap().json().await.unwrap();
    assert!(answer.reachable, "the turn is free again");
}
