//! Fetching a transcript from the gateway that served the task, signed with the validator's key
//! (headers and message as `polylink_gateway::transcripts` defines them), with a bounded body.

use crate::verify::TRANSCRIPT_BYTES_MAX;
use polylink_gateway::transcripts::{
    HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, now_ms, request_message,
};
use polylink_types::{SecretKey, TaskId};
use std::time::Duration;

/// What one fetch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A 200 answer's body (at most one byte past the limit: the check refuses it).
    Body(Vec<u8>),
    /// A refusal: status and body text.
    Refused(u16, String),
    /// No answer.
    Unreachable(String),
}

/// One signed `GET {base}/polylink/v1/transcripts/{task}`.
pub async fn fetch(
    http: &reqwest::Client,
    base: &str,
    chain_id: &str,
    key: &SecretKey,
    task: &TaskId,
) -> Fetched {
    let timestamp_ms = now_ms();
    let signature = key.sign(&request_message(chain_id, task, timestamp_ms));
    let url = format!("{}/polylink/v1/transcripts/{task}", base.trim_end_matches('/'));
    let sent = http
        .get(&url)
        .header(HEADER_KEY, key.public_key().to_string())
        .header(HEADER_TIMESTAMP, timestamp_ms.to_string())
        .header(HEADER_SIGNATURE, signature.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await;
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
