//! Fetching a transcript from the gateway that served the task, signed with the validator's key
//! (a `polylink_protocol::TranscriptRequest`), with a bounded body.

use crate::verify::TRANSCRIPT_BYTES_MAX;
use polylink_protocol::{TRANSCRIPTS_PATH, TranscriptRequest, now_ms};
use polylink_types::{SecretKey, TaskId};
use std::time::Duration;

/// What one fetch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// A 200 answer's body (at most one byte past the limit: the check refuses it).
    Body(Vec<u8>),
    /// A refusal: status and body text.
    Refused(u16, String),
    /// No answer.
    Unreachable(String),
}

/// One signed `GET {base}/polylink/v1/transcripts/{task}`.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    base: &str,
    chain_id: &str,
    key: &SecretKey,
    task: &TaskId,
) -> Fetched {
    let request = TranscriptRequest::sign(key, chain_id, task, now_ms());
    let url = format!("{}{TRANSCRIPTS_PATH}/{task}", base.trim_end_matches('/'));
    let mut get = http.get(&url).timeout(Duration::from_secs(10));
    for (name, value) in request.headers() {
        get = get.header(name, value);
    }
    let sent = get.send().await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => return Fetched::Unreachable(format!("GET {url}: {e}")),
    };
    let status = response.status();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = (TRANSCRIPT_BYTES_MAX + 1).saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() > TRANSCRIPT_BYTES_MAX {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Fetched::Unreachable(format!("reading {url}: {e}")),
        }
    }
    if status.is_success() {
        Fetched::Body(body)
    } else {
        body.truncate(300);
        Fetched::Refused(status.as_u16(), String::from_utf8_lossy(&body).into_owned())
    }
}
