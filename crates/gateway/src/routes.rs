//! The routes: which handler answers which path, and serving them on a socket.

use crate::error::GatewayError;
use crate::handler;
use crate::state::Gateway;
use crate::state::ProbeError;
use crate::transcript_route;
use crate::wire::{self, Endpoint};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use polylink_protocol::{
    GatewayInfo, INFO_PATH, PROBE_PATH, PROBE_UNREACHABLE, ProbeAnswer, ProbeRequest, TRANSCRIPTS_PATH,
};
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
            .route(PROBE_PATH, post(probe))
            .route(INFO_PATH, get(info))
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
        let limits = polylink_chain::http::HttpLimits::with_body_max(self.limits.body_bytes_max);
        polylink_chain::http::serve(listener, self.router(), limits).await
    }
}

async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    gw.metrics.request("/v1/models", 200);
    axum::Json(wire::model_list(&gw.backend.models(), gw.started_s)).into_response()
}

async fn probe(State(gw): State<Arc<Gateway>>, body: axum::body::Bytes) -> Response {
    let Some(prober) = gw.probe.clone() else {
        let e = GatewayError::invalid("path", "this gateway answers no reachability probes");
        return (StatusCode::NOT_FOUND, axum::Json(e.body())).into_response();
    };
    let request: ProbeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let e = GatewayError::invalid(
                "body",
                format!("expected {{\"account\", \"endpoint\", \"expires_ms\", \"signature\"}}: {e}"),
            );
            return (StatusCode::BAD_REQUEST, axum::Json(e.body())).into_response();
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if let Some(why) = request.refusal(now_ms) {
        let e = GatewayError::invalid("signature", why);
        return (StatusCode::UNAUTHORIZED, axum::Json(e.body())).into_response();
    }
    // One probe at a time: a gateway is no free port scanner.
    let Ok(_turn) = gw.probing.clone().try_acquire_owned() else {
        let e = GatewayError::invalid("probe", "another probe is running; try again in a few seconds");
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(e.body())).into_response();
    };
    let answer = match prober.probe(request.account, request.endpoint).await {
        Ok(()) => ProbeAnswer { reachable: true, error: None },
        Err(ProbeError::Unreachable) => {
            ProbeAnswer { reachable: false, error: Some(PROBE_UNREACHABLE.into()) }
        }
        Err(ProbeError::Refused(why)) => {
            let e = GatewayError::invalid("account", why);
            return (StatusCode::FORBIDDEN, axum::Json(e.body())).into_response();
        }
    };
    axum::Json(answer).into_response()
}

/// What a signed request is signed for (empty without a chain).
async fn info(State(gw): State<Arc<Gateway>>) -> Response {
    let info = match &gw.billing {
        Some(billing) => billing.info(),
        None => GatewayInfo { chain_id: None, account: None, models: Default::default() },
    };
    axum::Json(info).into_response()
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gw.metrics.render()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let e = GatewayError::invalid("path", format!("unknown path {}", uri.path()));
    (StatusCode::NOT_FOUND, axum::Json(e.body())).into_response()
}
