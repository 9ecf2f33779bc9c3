//! The reachability probe a registered gateway answers (`POST /polylink/probe`): a device about
//! to join asks whether its advertised endpoint answers from the network, not just from itself
//! (a loopback or NAT-ed address answers its own dial and no one else's). The gateway dials it
//! with an authenticated echo, one probe at a time. Also the gateway's info route
//! (`GET /polylink/info`), which tells a client what to sign a request for.
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
