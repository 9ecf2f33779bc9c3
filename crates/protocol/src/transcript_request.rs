//! The signed request a validator sends to fetch a task's transcript: `GET
//! {TRANSCRIPTS_PATH}/{task}` with three headers carrying its key, the time and an ed25519
//! signature over [`request_message`] (chain id, task id, timestamp). The gateway answers only a
//! fresh, unreplayed request signed by a member of the task's committee.

use crate::error::{ProtocolError, Result};
use polylink_types::{PublicKey, SecretKey, Signature, TaskId};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Path prefix of the transcript route; the task id follows.
pub const TRANSCRIPTS_PATH: &str = "/polylink/v1/transcripts";
/// Header carrying the validator's public key (hex).
pub const HEADER_KEY: &str = "x-polylink-validator";
/// Header carrying the request time, ms since the Unix epoch.
pub const HEADER_TIMESTAMP: &str = "x-polylink-timestamp";
/// Header carrying the ed25519 signature (hex) over [`request_message`].
pub const HEADER_SIGNATURE: &str = "x-polylink-signature";
/// Largest clock difference accepted between validator and gateway, ms.
pub const SKEW_MS_MAX: u64 = 60_000;
const DOMAIN: &[u8] = b"polylink-transcript-v1";

/// The exact bytes a validator signs to fetch `task`'s transcript at `timestamp_ms`.
pub fn request_message(chain_id: &str, task: &TaskId, timestamp_ms: u64) -> Vec<u8> {
    let id = chain_id.as_bytes();
    let mut msg = Vec::with_capacity(DOMAIN.len() + 1 + id.len() + 32 + 8);
    msg.extend_from_slice(DOMAIN);
    msg.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    msg.extend_from_slice(id);
    msg.extend_from_slice(&task.0);
    msg.extend_from_slice(&timestamp_ms.to_be_bytes());
    msg
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// The authentication of one transcript fetch, as its three headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptRequest {
    /// Who asks (it must sit on the task's committee).
    pub key: PublicKey,
    /// When, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Signature by `key` over [`request_message`].
    pub signature: Signature,
}

impl TranscriptRequest {
    /// `key`'s request for `task`'s transcript on chain `chain_id` at `timestamp_ms`.
    pub fn sign(key: &SecretKey, chain_id: &str, task: &TaskId, timestamp_ms: u64) -> Self {
        let signature = key.sign(&request_message(chain_id, task, timestamp_ms));
        Self { key: key.public_key(), timestamp_ms, signature }
    }

    /// The headers that carry it, as (name, value).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_KEY, self.key.to_string()),
            (HEADER_TIMESTAMP, self.timestamp_ms.to_string()),
            (HEADER_SIGNATURE, self.signature.to_string()),
        ]
    }

    /// Reads it back from request headers (`header` looks one up by name).
    pub fn from_headers<'a>(header: impl Fn(&'static str) -> Option<&'a str>) -> Result<Self> {
        fn read<'a, T: FromStr<Err: std::fmt::Display>>(
            header: &impl Fn(&'static str) -> Option<&'a str>,
            name: &'static str,
        ) -> Result<T> {
            let text = header(name).ok_or(ProtocolError::MissingHeader(name))?;
            text.parse().map_err(|e: T::Err| ProtocolError::BadHeader { name, reason: e.to_string() })
        }
        Ok(Self {
            key: read(&header, HEADER_KEY)?,
            timestamp_ms: read(&header, HEADER_TIMESTAMP)?,
            signature: read(&header, HEADER_SIGNATURE)?,
        })
    }

    /// Whether the signature covers `task` on chain `chain_id` at the stated time.
    pub fn verifies(&self, chain_id: &str, task: &TaskId) -> bool {
        self.key.verify(&request_message(chain_id, task, self.timestamp_ms), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_binds_chain_task_and_time() {
        let task = TaskId::digest(&[b"t"]);
        let a = request_message("c", &task, 1);
        assert_ne!(a, request_message("d", &task, 1));
        assert_ne!(a, request_message("c", &TaskId::digest(&[b"u"]), 1));
        assert_ne!(a, request_message("c", &task, 2));
    }

    #[test]
    fn a_request_survives_its_headers_and_verifies_only_for_its_task() {
        let key = SecretKey::from_label("validator");
        let task = TaskId::digest(&[b"t"]);
        let request = TranscriptRequest::sign(&key, "chain", &task, 7);
        let headers = request.headers();
        let lookup = |name: &'static str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let back = TranscriptRequest::from_headers(lookup);
        assert_eq!(back.as_ref(), Ok(&request));
        assert!(request.verifies("chain", &task));
        assert!(!request.verifies("other", &task));
        assert!(!request.verifies("chain", &TaskId::digest(&[b"u"])));
        let missing = TranscriptRequest::from_headers(|name| lookup(name).filter(|_| name != HEADER_KEY));
        assert_eq!(missing, Err(ProtocolError::MissingHeader(HEADER_KEY)));
        let bad =
            TranscriptRequest::from_headers(
                |name| if name == HEADER_TIMESTAMP { Some("x") } else { lookup(name) },
            );
        assert!(matches!(bad, Err(ProtocolError::BadHeader { name: HEADER_TIMESTAMP, .. })));
    }
}
