//! The HTTP server: routes, limits and the state every handler shares.

use crate::backend::InferenceBackend;
use crate::billing::Billing;
use crate::error::GatewayError;
use crate::handler;
use crate::keys::ApiKeys;
use crate::metrics::Metrics;
use crate::wire::{self, Endpoint};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub body_bytes_max: usize,
    /// Longest prompt, tokens (after the chat template).
    pub prompt_tokens_max: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_max: usize,
    /// `max_tokens` when the request gives none.
    pub max_tokens_default: usize,
    /// Requests in flight per API key.
    pub requests_per_key_max: usize,
    /// Requests in flight for the whole gateway.
    pub requests_max: usize,
    /// Longest a generation may run; it then ends with `finish_reason: "length"`.
    pub request_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes_max: 1 << 20,
            prompt_tokens_max: 4096,
            max_tokens_max: 2048,
            max_tokens_default: 256,
            requests_per_key_max: 4,
            requests_max: 64,
            request_timeout_ms: 300_000,
        }
    }
}

/// Everything the handlers share.
pub struct Gateway {
    pub(crate) backend: Arc<dyn InferenceBackend>,
    pub(crate) billing: Option<Arc<dyn Billing>>,
    pub(crate) keys: ApiKeys,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) seq: AtomicU64,
    pub(crate) started_s: u64,
    pub(crate) transcripts: Option<Arc<crate::transcripts::Transcripts>>,
}

impl Gateway {
    /// A gateway over `backend` accepting `keys`; no billing until [`Gateway::with_billing`].
    pub fn new(backend: Arc<dyn InferenceBackend>, keys: ApiKeys, limits: Limits) -> Self {
        let started_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Self {
            backend,
            billing: None,
            keys: keys.limit_per_key(limits.requests_per_key_max),
            in_flight: Arc::new(Semaphore::new(limits.requests_max.max(1))),
            limits,
            metrics: Arc::new(Metrics::default()),
            seq: AtomicU64::new(0),
            started_s,
            transcripts: None,
        }
    }

    /// Opens and settles a task on chain for every request.
    pub fn with_billing(mut self, billing: Arc<dyn Billing>) -> Self {
        self.billing = Some(billing);
        self
    }

    /// Keeps a transcript of every billed request and serves it to the task's committee.
    pub fn with_transcripts(mut self, transcripts: Arc<crate::transcripts::Transcripts>) -> Self {
        self.transcripts = Some(transcripts);
        self
    }

    /// Whether requests are billed.
    pub fn billed(&self) -> bool {
        self.billing.is_some()
    }

    /// The models the backend serves.
    pub fn models(&self) -> Vec<crate::backend::ModelCard> {
        self.backend.models()
    }

    /// The metrics (what `/metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(|s, h, b| handler::completions(s, Endpoint::Chat, h, b)))
            .route("/v1/completions", post(|s, h, b| handler::completions(s, Endpoint::Completion, h, b)))
            .route("/polylink/v1/transcripts/{task_id}", get(crate::transcripts::serve))
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { "ok" }))
            .fallback(not_found)
            .with_state(self)
    }

    /// Serves on `listener` until the task is dropped or the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    gw.metrics.request("/v1/models", 200);
    axum::Json(wire::model_list(&gw.backend.models(), gw.started_s)).into_response()
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gw.metrics.render()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let e = GatewayError::invalid("path", format!("unknown path {}", uri.path()));
    (StatusCode::NOT_FOUND, axum::Json(e.body())).into_response()
}
