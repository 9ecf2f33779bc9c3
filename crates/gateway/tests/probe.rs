//! `POST /polylink/probe`: a gateway dials a joining device's advertised endpoint for it and says
//! whether that account answered, and nothing more about what is there; the request must be the
//! account's own, signed and fresh; an account the prober refuses is told why without a dial; a
//! malformed request gets a clear error, a second probe while one runs is told to come back, and
//! a gateway without a prober has no such route.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::future::BoxFuture;
use polylink_gateway::{ApiKeys, EndpointProbe, Gateway, Limits, ProbeError};
use polylink_protocol::{PROBE_PATH, PROBE_TTL_MAX_MS, PROBE_UNREACHABLE, ProbeAnswer, ProbeRequest};
use polylink_types::SecretKey;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Answers as if only `open` were reachable; a probe of `slow` waits until `release` fires; the
/// account `poor` is refused without a dial.
struct FakeNetwork {
    open: SocketAddr,
    slow: SocketAddr,
    release: Arc<Notify>,
    poor: polylink_types::PublicKey,
}

impl EndpointProbe for FakeNetwork {
    fn probe(
        &self,
        account: polylink_types::PublicKey,
        endpoint: SocketAddr,
    ) -> BoxFuture<'static, Result<(), ProbeError>> {
        let (open, slow, release, poor) = (self.open, self.slow, self.release.clone(), self.poor);
        Box::pin(async move {
            if account == poor {
                return Err(ProbeError::Refused(format!("account {account} holds too little")));
            }
            if endpoint == slow {
                release.notified().await;
            }
            if endpoint == open { Ok(()) } else { Err(ProbeError::Unreachable) }
        })
    }
}

fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .unwrap()
}

#[tokio::test]
async fn a_gateway_probes_one_endpoint_at_a_time_and_refuses_malformed_requests() {
    let plain = common::start(Limits::default()).await;
    let device = SecretKey::from_label("device");
    let signed = |key: &SecretKey, endpoint: &str, expires_ms: u64| {
        serde_json::to_vec(&ProbeRequest::signed(key, endpoint.parse().unwrap(), expires_ms)).unwrap()
    };
    let request = |endpoint: &str| signed(&device, endpoint, now_ms() + 30_000);
    let (status, body) = plain.post_raw(PROBE_PATH, None, request("10.0.0.9:7100")).await;
    assert_eq!(status, 404, "a gateway without a prober answers no probes: {body}");

    let release = Arc::new(Notify::new());
    let network = FakeNetwork {
        open: "10.0.0.9:7100".parse().unwrap(),
        slow: "10.0.0.8:7100".parse().unwrap(),
        release: release.clone(),
        poor: SecretKey::from_label("poor").public_key(),
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
    // Whatever failed there, the caller hears the same thing.
    let answer: ProbeAnswer = post(request("10.0.0.7:7100")).await.unwrap().json().await.unwrap();
    assert_eq!(answer, ProbeAnswer { reachable: false, error: Some(PROBE_UNREACHABLE.into()) });

    let malformed = post(b"{\"endpoint\": 7}".to_vec()).await.unwrap();
    assert_eq!(malformed.status(), 400);
    let text = malformed.text().await.unwrap();
    assert!(text.contains("account"), "{text}");

    // Not the account's own request, stale, or too long-lived: refused before any dial.
    let mut forged = ProbeRequest::signed(&device, "10.0.0.9:7100".parse().unwrap(), now_ms() + 30_000);
    forged.account = SecretKey::from_label("someone else").public_key();
    let bad = [
        ("not signed by", serde_json::to_vec(&forged).unwrap()),
        ("expired", signed(&device, "10.0.0.9:7100", now_ms() - 1)),
        ("at most", signed(&device, "10.0.0.9:7100", now_ms() + PROBE_TTL_MAX_MS + 60_000)),
    ];
    for (says, body) in bad {
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status(), 401, "{says}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(says), "{says}: {text}");
    }
    // An account the prober will not serve is told why, and nothing was dialed.
    let resp =
        post(signed(&SecretKey::from_label("poor"), "10.0.0.9:7100", now_ms() + 30_000)).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("holds too little"));

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
