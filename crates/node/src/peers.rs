//! Measuring the links to other workers over the same authenticated, encrypted pipeline link a
//! head dials ([`polylink_pipeline::transport::dial`]): round-trip time from small echoes,
//! bandwidth from large ones. A worker runs this against the peers the chain lists before it
//! registers, so its on-chain profile carries its real latency and bandwidth.

use crate::NodeError;
use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519;
use commonware_runtime::{Clock, Network, Supervisor};
use polylink_pipeline::transport;
use polylink_pipeline::wire::{Request, Response, WireLimits};
pub use polylink_protocol::{LinkMeasure, LinkSummary, PeerReport};
use rand_core::CryptoRng;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// How a peer is measured, and how much of it the measurement may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Small echoes whose median round trip is the RTT.
    pub pings: usize,
    /// Bytes of one small echo.
    pub ping_bytes: usize,
    /// Large echoes that measure bandwidth.
    pub bulk_echoes: usize,
    /// Bytes of one large echo.
    pub bulk_bytes: usize,
    /// Most time one peer may take, handshake included.
    pub timeout: Duration,
    /// Most peers measured.
    pub peers_max: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            pings: 8,
            ping_bytes: 64,
            bulk_echoes: 3,
            bulk_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
            peers_max: 8,
        }
    }
}

/// One peer to measure: its on-chain key and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The worker's on-chain account (its ed25519 key).
    pub account: polylink_types::PublicKey,
    /// Its pipeline endpoint.
    pub endpoint: SocketAddr,
}

fn probe_error(peer: &Peer, reason: impl std::fmt::Display) -> NodeError {
    NodeError::Probe { peer: format!("{} at {}", peer.account, peer.endpoint), reason: reason.to_string() }
}

fn elapsed_us(context: &impl Clock, start: SystemTime) -> u64 {
    context.current().duration_since(start).map_or(0, |d| d.as_micros() as u64)
}

/// The upper median of `values` (which must not be empty).
fn median(mut values: Vec<u64>) -> u64 {
    assert!(!values.is_empty(), "the median of nothing");
    values.sort_unstable();
    values[values.len() / 2]
}

/// Dials `peer` as `key` and measures the link; fails when the peer does not answer, fails the
/// handshake (it is not the key the chain lists) or echoes something else.
pub async fn measure<E>(
    context: E,
    key: ed25519::PrivateKey,
    peer: &Peer,
    config: &ProbeConfig,
) -> Result<LinkMeasure, NodeError>
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let peer_key = ed25519::PublicKey::decode(peer.account.0.to_vec())
        .map_err(|e| probe_error(peer, format!("key: {e}")))?;
    let limits = WireLimits::default();
    if config.bulk_bytes.max(config.ping_bytes) > limits.echo_bytes_max() {
        return Err(probe_error(
            peer,
            format!("echoes above {} bytes do not fit a frame", limits.echo_bytes_max()),
        ));
    }
    let mut link = transport::dial(context.child("dial"), key, peer.endpoint, peer_key, limits).await?;
    let mut echo = async |payload: Vec<u8>| -> Result<u64, NodeError> {
        let start = context.current();
        let request = Request::Echo { payload };
        let answer = link.call(&request).await?;
        let took = elapsed_us(&context, start);
        match (answer, request) {
            (Response::Echo(back), Request::Echo { payload }) if back == payload => Ok(took),
            (Response::Error { message, .. }, _) => {
                Err(probe_error(peer, format!("refused the echo: {message}")))
            }
            _ => Err(probe_error(peer, "answered the echo with something else")),
        }
    };
    let mut rtts = Vec::with_capacity(config.pings.max(1));
    for i in 0..config.pings.max(1) {
        rtts.push(echo(vec![i as u8; config.ping_bytes]).await?);
    }
    let mut bulk_us = 0u64;
    for i in 0..config.bulk_echoes.max(1) {
        let payload = (0..config.bulk_bytes).map(|j| (i + j) as u8).collect();
        bulk_us += echo(payload).await?;
    }
    let bulk_bits = 2 * 8 * config.bulk_bytes as u64 * config.bulk_echoes.max(1) as u64;
    let rtt_us = median(rtts);
    Ok(LinkMeasure {
        rtt_us,
        latency_us: (rtt_us / 2).max(1),
        // bits per microsecond is Mbit/s; times 1000 gives kbit/s.
        bandwidth_kbps: bulk_bits.saturating_mul(1000) / bulk_us.max(1),
    })
}

/// Whether `endpoint` answers one small authenticated echo as `account` within 5 s, dialed with
/// a throwaway key (what a joining device and a gateway's reachability probe both ask).
pub async fn reach<E>(
    context: E,
    account: polylink_types::PublicKey,
    endpoint: SocketAddr,
) -> Result<(), String>
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let probe = transport::key_from_seed(&rand::random()).map_err(|e| e.to_string())?;
    let config = ProbeConfig {
        pings: 1,
        ping_bytes: 16,
        bulk_echoes: 1,
        bulk_bytes: 64,
        timeout: Duration::from_secs(5),
        peers_max: 1,
    };
    let reports = measure_all(context, &probe, &[Peer { account, endpoint }], &config).await;
    match reports.first() {
        Some(report) => report.error.clone().map_or(Ok(()), Err),
        None => Err("not measured".into()),
    }
}

/// Measures each of the first `config.peers_max` peers in turn, each within `config.timeout`; a
/// peer that fails is reported with its reason (and logged), never an error for the caller.
pub async fn measure_all<E>(
    context: E,
    key: &ed25519::PrivateKey,
    peers: &[Peer],
    config: &ProbeConfig,
) -> Vec<PeerReport>
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let mut reports = Vec::new();
    for peer in peers.iter().take(config.peers_max) {
        let run = {
            let (context, key, peer, config) = (context.child("peer"), key.clone(), peer.clone(), *config);
            async move { measure(context, key, &peer, &config).await }
        };
        let result = match context.timeout(config.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(probe_error(peer, format!("no answer within {:?}", config.timeout))),
        };
        let (account, endpoint) = (peer.account, peer.endpoint);
        reports.push(match result {
            Ok(measure) => {
                tracing::info!(%account, %endpoint, ?measure, "measured a peer");
                PeerReport { account, endpoint, measure: Some(measure), error: None }
            }
            Err(e) => {
                tracing::warn!(%account, %endpoint, "skipped a peer: {e}");
                PeerReport { account, endpoint, measure: None, error: Some(e.to_string()) }
            }
        });
    }
    reports
}

/// The median latency and bandwidth over the peers that answered; `None` when none did.
pub fn summarize(reports: &[PeerReport]) -> Option<LinkSummary> {
    let measured: Vec<LinkMeasure> = reports.iter().filter_map(|r| r.measure).collect();
    if measured.is_empty() {
        return None;
    }
    Some(LinkSummary {
        latency_us: median(measured.iter().map(|m| m.latency_us).collect()),
        bandwidth_kbps: median(measured.iter().map(|m| m.bandwidth_kbps).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(latency_us: u64, bandwidth_kbps: u64) -> PeerReport {
        let measure = LinkMeasure { rtt_us: 2 * latency_us, latency_us, bandwidth_kbps };
        PeerReport {
            account: polylink_types::PublicKey([1; 32]),
            endpoint: SocketAddr::from(([127, 0, 0, 1], 1)),
            measure: Some(measure),
            error: None,
        }
    }

    #[test]
    fn summary_is_the_median_of_the_peers_that_answered() {
        let failed = PeerReport {
            account: polylink_types::PublicKey([2; 32]),
            endpoint: SocketAddr::from(([127, 0, 0, 1], 2)),
            measure: None,
            error: Some("x".into()),
        };
        assert_eq!(summarize(std::slice::from_ref(&failed)), None);
        assert_eq!(summarize(&[]), None);
        let reports = [report(300, 9_000), failed, report(100, 1_000), report(200, 5_000)];
        assert_eq!(summarize(&reports), Some(LinkSummary { latency_us: 200, bandwidth_kbps: 5_000 }));
    }
}
