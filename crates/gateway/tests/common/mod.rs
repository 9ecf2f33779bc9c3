//! Shared by the integration tests: a gateway over the real SmolLM2 on 127.0.0.1, and an HTTP
//! client that reads server-sent events.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use polylink_gateway::{ApiKeys, Gateway, Limits};
use polylink_pipeline::{LocalBackend, LocalOptions};
use polylink_types::SecretKey;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

/// The API key the tests use.
pub const KEY: &str = "sk-test-alice-0001";
/// A second key, bound to another account.
pub const KEY_BOB: &str = "sk-test-bob-0002";
/// The model id the gateway serves.
pub const MODEL: &str = "smollm2";

/// A running gateway; the server task stops when the test's runtime ends.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub backend: Arc<LocalBackend>,
    pub http: reqwest::Client,
}

/// Loads SmolLM2 and serves it on a free port with `limits`.
pub async fn start(limits: Limits) -> TestGateway {
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M)
        .expect("SmolLM2 is not fetched: run scripts/test.sh (it runs `polylink models fetch`)");
    let options =
        LocalOptions { threads: 1, sessions_max: 4, model_id: Some(MODEL.into()), ..LocalOptions::default() };
    let backend = Arc::new(LocalBackend::load(&path, &options).expect("load SmolLM2"));
    let mut keys = ApiKeys::new();
    keys.insert(KEY, SecretKey::from_label("alice").public_key());
    keys.insert(KEY_BOB, SecretKey::from_label("bob").public_key());
    let gateway = Arc::new(Gateway::new(backend.clone(), keys, limits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.clone().serve(listener));
    TestGateway { addr, gateway, backend, http: reqwest::Client::new() }
}

impl TestGateway {
    /// `http://127.0.0.1:PORT/v1`.
    pub fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// POSTs raw `body` to `path` with `key`; returns status and JSON body.
    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: Vec<u8>) -> (u16, Value) {
        let mut req =
            self.http.post(format!("http://{}{path}", self.addr)).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POSTs JSON with the test key.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, Some(KEY), serde_json::to_vec(body).unwrap()).await
    }

    /// Sends `body` to `path` with the test key and returns the response unread.
    pub async fn open(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("http://{}{path}", self.addr))
            .header("authorization", format!("Bearer {KEY}"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Reads a whole SSE answer: every `data:` payload, in order.
    pub async fn stream(&self, path: &str, body: &Value) -> (u16, Vec<String>) {
        let resp = self.open(path, body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let events =
            text.split("\n\n").filter_map(|frame| frame.strip_prefix("data: ")).map(str::to_string).collect();
        (status, events)
    }
}
