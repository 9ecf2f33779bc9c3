//! The reachability probe a registered gateway answers (`POST /polylink/probe`): a device about
//! to join asks whether its advertised endpoint answers from the network, not just from itself
//! (a loopback or NAT-ed address answers its own dial and no one else's). The gateway dials it
//! with an authenticated echo, one probe at a time, only for a request the account signed (shortly
//! before), and says only whether that account answered: a gateway is no port scanner for hire.
//! Also the gateway's info route (`GET /polylink/info`), which tells a client what to sign a
//! request for.
use polylink_types::{PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Domain separator for probe request signatures.
const PROBE_SIGNING_DOMAIN: &[u8] = b"polylink-probe-v1";
/// Longest a signed probe request lives, ms.
pub const PROBE_TTL_MAX_MS: u64 = 60_000;
/// The one answer a probe that failed gets, whatever failed (refused, timed out, another key).
pub const PROBE_UNREACHABLE: &str = "no PolyLink worker of that account answered at that endpoint";

/// The probe's path on a gateway.
pub const PROBE_PATH: &str = "/polylink/probe";

/// What to dial: the worker's account (its link key) at its advertised endpoint, signed by that
/// account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// The account the endpoint must authenticate as.
    pub account: PublicKey,
    /// The advertised endpoint.
    pub endpoint: SocketAddr,
    /// Wall-clock ms after which the request is refused.
    pub expires_ms: u64,
    /// The account's signature over [`ProbeRequest::signing_message`].
    pub signature: Signature,
}

impl ProbeRequest {
    /// `key`'s request to dial it at `endpoint`, good until `expires_ms`.
    pub fn signed(key: &SecretKey, endpoint: SocketAddr, expires_ms: u64) -> Self {
        let account = key.public_key();
        let signature = key.sign(&Self::message(&account, endpoint, expires_ms));
        Self { account, endpoint, expires_ms, signature }
    }

    fn message(account: &PublicKey, endpoint: SocketAddr, expires_ms: u64) -> Vec<u8> {
        let mut msg = PROBE_SIGNING_DOMAIN.to_vec();
        msg.extend_from_slice(&account.0);
        msg.extend_from_slice(&expires_ms.to_be_bytes());
        msg.extend_from_slice(endpoint.to_string().as_bytes());
        msg
    }

    /// The exact bytes signed: a domain tag, the account, the expiry, the endpoint as text.
    pub fn signing_message(&self) -> Vec<u8> {
        Self::message(&self.account, self.endpoint, self.expires_ms)
    }

    /// Why the request must not be served at wall-clock `now_ms`, if it must not.
    pub fn refusal(&self, now_ms: u64) -> Option<String> {
        if self.expires_ms <= now_ms {
            return Some(format!("the request expired at {} ms (now {now_ms} ms)", self.expires_ms));
        }
        if self.expires_ms > now_ms.saturating_add(PROBE_TTL_MAX_MS) {
            return Some(format!("the request may live at most {PROBE_TTL_MAX_MS} ms"));
        }
        if !self.account.verify(&self.signing_message(), &self.signature) {
            return Some(format!("the request is not signed by {}", self.account));
        }
        None
    }
}

/// What the gateway saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAnswer {
    /// Whether the echo came back from that account.
    pub reachable: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The gateway's route that says what a signed request needs: `GET` answers [`GatewayInfo`].
pub const INFO_PATH: &str = "/polylink/info";

/// What a client signs a request for (`polylink_types::Voucher`): the chain, the gateway's
/// account and each served model's on-chain id. The chain checks all of it again, so a gateway
/// that lies here only gets its own requests refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// The chain the gateway bills (`None`: it bills none and takes no signed requests).
    pub chain_id: Option<String>,
    /// The gateway's registered account, which vouchers name.
    pub account: Option<PublicKey>,
    /// On-chain model id of each model name it serves.
    pub models: std::collections::BTreeMap<String, u64>,
}
