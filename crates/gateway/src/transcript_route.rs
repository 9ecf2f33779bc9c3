//! `GET /polylink/v1/transcripts/{task_id}`: a task's transcript for a member of its committee
//! (the checks are `Transcripts`'), or the refusal in the gateway's error shape.

use crate::state::Gateway;
use crate::transcripts::Refusal;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use polylink_protocol::{TRANSCRIPTS_PATH, TranscriptRequest};
use polylink_types::TaskId;
use serde_json::json;
use std::str::FromStr;
use std::sync::Arc;
use tracing::{info, warn};

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": "transcript_error", "code": self.code}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// `GET /polylink/v1/transcripts/{task_id}`.
pub(crate) async fn serve(
    State(gw): State<Arc<Gateway>>,
    Path(task): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let t = gw
            .transcripts
            .as_ref()
            .ok_or_else(|| Refusal::not_found("this gateway keeps no transcripts".into()))?;
        let task =
            TaskId::from_str(&task).map_err(|e| Refusal::not_found(format!("unknown task {task}: {e}")))?;
        let request = TranscriptRequest::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
            .map_err(|e| Refusal::unauthorized(e.to_string()))?;
        let (key, transcript) = t.fetch(&request, &task).await?;
        info!(%task, validator = %key, "transcript served");
        Ok::<_, Refusal>(axum::Json(transcript.as_ref().clone()).into_response())
    };
    match answer.await {
        Ok(response) => {
            gw.metrics.request(TRANSCRIPTS_PATH, 200);
            response
        }
        Err(refusal) => {
            warn!(status = refusal.status.as_u16(), reason = %refusal.message, "transcript refused");
            gw.metrics.request(TRANSCRIPTS_PATH, refusal.status.as_u16());
            refusal.into_response()
        }
    }
}
