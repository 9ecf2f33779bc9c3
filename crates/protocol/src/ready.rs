//! Ready lines: the one JSON line a worker, validator or gateway process prints on stdout once it serves,
//! read back by whoever started it (`polylink up`, the launch helpers, tests). Each is declared
//! once here and both sides go through [`WorkerReady::to_line`] / [`WorkerReady::from_line`] (and
//! the validator's twins), so no field is ever read by name.

use polylink_types::{Amount, ModelId, PublicKey};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::ops::Range;

/// What a worker announces once it listens (and, with a chain, has registered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReady {
    /// The key its pipeline link authenticates with (ed25519, the same bytes as `account`).
    pub key: PublicKey,
    /// Its on-chain account.
    pub account: PublicKey,
    /// Where it listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The layers it serves.
    pub layers: Range<usize>,
    /// Its measured time per layer, microseconds.
    pub layer_time_us: u64,
    /// Its measured memory for those layers, bytes.
    pub memory_bytes: u64,
    /// The model it registered for on chain (`None` without a chain).
    pub model: Option<ModelId>,
    /// The endpoint it registered (where heads dial it).
    pub endpoint: SocketAddr,
    /// The link figures it registered (`None` without a chain).
    pub link: Option<LinkSummary>,
    /// The peers it measured before registering.
    pub peers: Vec<PeerReport>,
}

/// What a score validator announces once it follows the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorReady {
    /// The validator's account.
    pub key: PublicKey,
    /// Registered on chain.
    pub registered: bool,
    /// Bonded stake.
    #[serde(with = "polylink_types::amount_serde")]
    pub bonded: Amount,
    /// The chain id.
    pub chain_id: String,
    /// Pending commitments found in its data directory and resumed.
    pub resumed: usize,
}

/// What `polylink serve` announces once its gateway listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayReady {
    /// Where the OpenAI-compatible API listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The model name clients ask for.
    pub model: String,
    /// With a chain: the worker account that computes the answers (signs their receipts).
    pub worker: Option<PublicKey>,
    /// With a chain: the registered gateway account that opens tasks and reports results.
    #[serde(default)]
    pub gateway: Option<PublicKey>,
    /// With a chain: the on-chain model its tasks are opened for.
    pub chain_model: Option<ModelId>,
}

/// What one peer's link measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMeasure {
    /// Median round trip of a small echo, microseconds.
    pub rtt_us: u64,
    /// Half the round trip (at least 1, since 0 means "not measured" on chain), microseconds.
    pub latency_us: u64,
    /// Bytes sent and received by the large echoes over their total time, kbit/s.
    pub bandwidth_kbps: u64,
}

/// A peer and what measuring it gave: figures, or why it could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's account.
    pub account: PublicKey,
    /// Where it was dialed.
    pub endpoint: SocketAddr,
    /// The figures, when it answered.
    #[serde(flatten)]
    pub measure: Option<LinkMeasure>,
    /// Why it was skipped, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The link figures a worker registers: medians over its measured peers, or its own fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSummary {
    /// One-way latency, microseconds (0: not measured).
    pub latency_us: u64,
    /// Bandwidth, kbit/s.
    pub bandwidth_kbps: u64,
}

macro_rules! json_line {
    ($name:ident) => {
        impl $name {
            /// The line to print (one JSON object, no newline).
            pub fn to_line(&self) -> String {
                // A struct of plain fields always serializes.
                serde_json::to_string(self).unwrap_or_default()
            }

            /// Reads a line printed by [`Self::to_line`]; `None` for any other line.
            pub fn from_line(line: &str) -> Option<Self> {
                serde_json::from_str(line.trim()).ok()
            }
        }
    };
}

json_line!(WorkerReady);
json_line!(ValidatorReady);
json_line!(GatewayReady);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey([byte; 32])
    }

    #[test]
    fn a_worker_line_reads_back_as_written() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let measured = PeerReport {
            account: key(3),
            endpoint: addr,
            measure: Some(LinkMeasure { rtt_us: 40, latency_us: 20, bandwidth_kbps: 9 }),
            error: None,
        };
        let failed = PeerReport { account: key(4), endpoint: addr, measure: None, error: Some("no".into()) };
        let ready = WorkerReady {
            key: key(1),
            account: key(1),
            addr,
            layers: 3..7,
            layer_time_us: 120,
            memory_bytes: 1 << 20,
            model: Some(2),
            endpoint: addr,
            link: Some(LinkSummary { latency_us: 20, bandwidth_kbps: 9 }),
            peers: vec![measured, failed],
        };
        let line = ready.to_line();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(WorkerReady::from_line(&line), Some(ready));
        assert_eq!(WorkerReady::from_line("loading the model"), None);
    }

    #[test]
    fn a_validator_line_reads_back_as_written_and_is_not_a_worker_line() {
        let ready = ValidatorReady {
            key: key(9),
            registered: true,
            bonded: 5_000,
            chain_id: "dev".into(),
            resumed: 1,
        };
        let line = ready.to_line();
        assert!(line.contains("\"bonded\":\"5000\""), "{line}");
        assert_eq!(ValidatorReady::from_line(&line), Some(ready));
        assert_eq!(WorkerReady::from_line(&line), None);
    }
}
