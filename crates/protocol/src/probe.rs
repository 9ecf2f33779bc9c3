//! The reachability probe a registered gateway answers (`POST /polylink/probe`): a device about
//! to join asks whether its advertised endpoint answers from the network, not just from itself
//! (a loopback or NAT-ed address answers its own dial and no one else's). The gateway dials it
//! with an authenticated echo, one probe at a time.
use polylink_types::PublicKey;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The probe's path on a gateway.
pub const PROBE_PATH: &str = "/polylink/probe";

/// What to dial: the worker's account (its link key) at its advertised endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// The account the endpoint must authenticate as.
    pub account: PublicKey,
    /// The advertised endpoint.
    pub endpoint: SocketAddr,
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
