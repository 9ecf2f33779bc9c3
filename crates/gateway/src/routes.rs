//! The routes: which handler answers which path, and serving them on a socket.

use crate::error::GatewayError;
use crate::handler;
use crate::state::Gateway;
use crate::transcript_route;
use crate::wire::{self, Endpoint};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use polylink_protocol::TRANSCRIPTS_PATH;
use std::sync::Arc;
use tokio::net::TcpListener;

impl Gateway {
    /// The routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(|s, h, b| handler::completions(s, Endpoint::Chat, h, b)))
            .route("/v1/completions", post(|s, h, b| handler::completions(s, Endpoint::Completion, h, b)))
            .route(&format!("{TRANSCRIPTS_PATH}/{{task_id}}"), get(transcript_route::serve))
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { "ok" }))
            .fallback(not_found)
            .with_state(self)
    }

    /// Serves on `listener` until the task is dropped or the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        if let Some(transcripts) = &self.transcripts {
            transcripts.keep_swept();
        }
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
