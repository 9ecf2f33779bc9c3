//! The chain's worker registry (`GET /workers`) read as typed records: the peers a starting worker
//! measures, and the devices and links the planner plans over; and its gateway registry
//! (`GET /gateways`): the heads a worker serves.
//!
//! [`plan_inputs`] is pure: chain JSON and the model's profile in, planner devices and links out.
//! A device is a worker serving any layers of the model; the plan says which layers each should
//! load (the planner assumes a device can run any contiguous range).

use crate::NodeError;
use crate::peers::{Peer, PeerReport, ProbeConfig, measure_all};
use commonware_cryptography::{Signer, ed25519};
use commonware_runtime::{Clock, Network, Supervisor};
use polylink_chain::rpc::{Client, WorkerEntry};
use polylink_pipeline::plan::{DeviceProfile, LinkProfile, ModelProfile};
use polylink_pipeline::server::KeySet;
use polylink_pipeline::transport;
use polylink_types::{ModelId, PublicKey};
use rand_core::CryptoRng;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Every registered worker, from the chain node at `client`.
pub async fn fetch(client: &Client) -> Result<Vec<WorkerEntry>, NodeError> {
    client.workers().await.map_err(|e| NodeError::Chain(format!("workers: {e}")))
}

/// The pipeline keys of the registered gateways with at least the gateway minimum bonded: the
/// heads a worker on this chain serves.
pub async fn gateway_keys(client: &Client) -> Result<HashSet<ed25519::PublicKey>, NodeError> {
    let chain = |what: &str, e: polylink_chain::Error| NodeError::Chain(format!("{what}: {e}"));
    let min = client.params().await.map_err(|e| chain("params", e))?.params.gateway_stake_min;
    let gateways = client.gateways().await.map_err(|e| chain("gateways", e))?;
    Ok(gateways
        .iter()
        .filter(|g| g.stake.bonded >= min)
        .filter_map(|g| transport::peer_from_bytes(&g.account.0).ok())
        .collect())
}

/// Keeps `set` equal to [`gateway_keys`], read again every `every` (a failed read keeps the last
/// set), until the context stops: a gateway that registers is served within `every`, one that
/// unbonds under the minimum is dropped as fast.
pub async fn follow_gateways(context: impl Clock, client: Client, set: KeySet, every: Duration) {
    loop {
        match gateway_keys(&client).await {
            Ok(keys) => set.replace(keys),
            Err(e) => tracing::warn!("reading the registered gateways: {e}"),
        }
        context.sleep(every).await;
    }
}

/// The layer ranges of `model` that the active workers (at least `stake_min` bonded) serve.
pub fn served_ranges(
    workers: &[WorkerEntry],
    model: ModelId,
    stake_min: u128,
) -> Vec<std::ops::Range<usize>> {
    workers
        .iter()
        .filter(|w| w.stake.bonded >= stake_min)
        .filter_map(|w| w.range_of(model))
        .map(|r| r.layer_start as usize..r.layer_end as usize)
        .collect()
}

/// The layers a joining device serves of a model of `n_layers`, given what `fits` its memory and
/// the ranges the network's workers serve: the whole model when it fits; else a range that a
/// gateway can chain into a pipeline (gateways chain ranges that meet end to start). It starts at
/// layer 0 or where a served range ends, at the start served by the fewest workers; it ends, as
/// far as memory allows, at the model's end or where a served range starts (it links), else as
/// far as memory allows (a later device can go on from there). `None`: not one layer fits.
pub fn choose_layers(
    n_layers: usize,
    fits: impl Fn(&std::ops::Range<usize>) -> bool,
    served: &[std::ops::Range<usize>],
) -> Option<std::ops::Range<usize>> {
    use std::collections::BTreeSet;
    if fits(&(0..n_layers)) {
        return Some(0..n_layers);
    }
    let starts: BTreeSet<usize> =
        std::iter::once(0).chain(served.iter().map(|r| r.end)).filter(|s| *s < n_layers).collect();
    let ends: BTreeSet<usize> =
        std::iter::once(n_layers).chain(served.iter().map(|r| r.start)).filter(|e| *e > 0).collect();
    let coverage = |layer: usize| served.iter().filter(|r| r.contains(&layer)).count();
    starts
        .iter()
        .filter_map(|&start| {
            let reach = (start + 1..=n_layers).take_while(|end| fits(&(start..*end))).last()?;
            let end = ends.range(start + 1..=reach).next_back().copied().unwrap_or(reach);
            let links = ends.contains(&end);
            // Fewest workers at its start, then one that links, then the most layers, then the
            // earliest.
            Some(((coverage(start), !links, std::cmp::Reverse(end - start), start), start..end))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, range)| range)
}

/// The workers serving `model` other than `me`, with the endpoints they registered.
pub fn peers(workers: &[WorkerEntry], model: ModelId, me: &PublicKey) -> Vec<Peer> {
    workers
        .iter()
        .filter(|w| &w.account != me && w.range_of(model).is_some())
        .filter_map(|w| match w.worker.endpoint.as_str().parse::<SocketAddr>() {
            Ok(endpoint) => Some(Peer { account: w.account, endpoint }),
            Err(e) => {
                tracing::warn!(account = %w.account, endpoint = %w.worker.endpoint, "skipped a peer: {e}");
                None
            }
        })
        .collect()
}

/// Measures the link to every other registered worker of `model` (see [`crate::peers`]); a peer
/// that does not answer is reported with its reason, so only reading the registry can fail.
pub async fn measure_peers<E>(
    context: E,
    key: &ed25519::PrivateKey,
    client: &Client,
    model: ModelId,
    config: &ProbeConfig,
) -> Result<Vec<PeerReport>, NodeError>
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let me = PublicKey(transport::peer_bytes(&key.public_key()));
    let peers = peers(&fetch(client).await?, model, &me);
    Ok(measure_all(context, key, &peers, config).await)
}

/// The planner's view of the workers serving one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDevices {
    /// One device per worker serving the model, named by its account.
    pub devices: Vec<DeviceProfile>,
    /// A link each way between every two devices that both report a bandwidth.
    pub links: Vec<LinkProfile>,
    /// Each device's registered endpoint, aligned with `devices`.
    pub endpoints: Vec<String>,
}

/// Per-token time of the final norm and LM head, and the corrected per-layer time, from the
/// layer time a worker measured over `layers` layers.
///
/// Decoding one token reads every weight once, so time goes with weight bytes: the head costs
/// `ratio = head_bytes / mean layer bytes` layers. A worker whose range ends at the model's last
/// layer measured the head too and spread it over its layers (`measured = t (1 + ratio / layers)`),
/// so its per-layer time is taken back out of that; the embedding lookup reads one row and is free.
fn head_and_layer_time_us(measured_us: u64, layers: u64, is_last: bool, model: &ModelProfile) -> (u64, u64) {
    let layer_bytes: u64 = model.layer_bytes.iter().sum();
    let mean_layer_bytes = (layer_bytes / (model.layer_bytes.len() as u64).max(1)).max(1);
    let ratio = model.head_bytes as f64 / mean_layer_bytes as f64;
    let layer_us = if is_last {
        measured_us as f64 * layers as f64 / (layers as f64 + ratio)
    } else {
        measured_us as f64
    };
    let layer_us = (layer_us.round() as u64).max(1);
    ((layer_us as f64 * ratio).ceil() as u64, layer_us)
}

/// Turns the chain's registered workers into the planner's devices and links for `model`.
///
/// Memory is the registered `memory_mib`; the per-layer time is the one measured on the worker's
/// widest range of the model, and the head's time is estimated from it by weight bytes (see
/// [`head_and_layer_time_us`]). A link between two workers has the mean of their one-way latencies
/// and the smaller of their bandwidths; a worker that reports no bandwidth gets no links.
pub fn plan_inputs(
    workers: &[WorkerEntry],
    model: ModelId,
    profile: &ModelProfile,
) -> Result<ChainDevices, NodeError> {
    let n_layers = profile.layer_bytes.len() as u32;
    let mut devices = Vec::new();
    let mut measured = Vec::new();
    let mut endpoints = Vec::new();
    for w in workers {
        let Some(range) = w.range_of(model) else { continue };
        let layers = u64::from(range.layer_end.saturating_sub(range.layer_start)).max(1);
        let (head_time_us, layer_time_us) = head_and_layer_time_us(
            u64::from(range.layer_time_us),
            layers,
            range.layer_end == n_layers,
            profile,
        );
        devices.push(DeviceProfile {
            id: w.account.to_string(),
            memory_bytes: w.worker.profile.memory_mib.saturating_mul(1 << 20),
            layer_time_us,
            head_time_us,
        });
        measured.push(w.worker.profile);
        endpoints.push(w.worker.endpoint.to_string());
    }
    if devices.is_empty() {
        return Err(NodeError::Registry(format!("no registered worker serves model {model}")));
    }
    let mut links = Vec::new();
    for (a, from) in measured.iter().zip(&devices) {
        for (b, to) in measured.iter().zip(&devices) {
            let bandwidth_kbps = a.bandwidth_kbps.min(b.bandwidth_kbps);
            if from.id == to.id || bandwidth_kbps == 0 {
                continue;
            }
            links.push(LinkProfile {
                from: from.id.clone(),
                to: to.id.clone(),
                latency_us: a.latency_us.midpoint(b.latency_us),
                bandwidth_bytes_per_s: bandwidth_kbps.saturating_mul(1000) / 8,
            });
        }
    }
    Ok(ChainDevices { devices, links, endpoints })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_joining_device_takes_the_whole_model_or_the_range_that_completes_a_pipeline() {
        let n = 30;
        // Up to 12 layers fit; the whole model fits a large device.
        let small = |r: &std::ops::Range<usize>| r.len() <= 12;
        assert_eq!(choose_layers(n, |_| true, &[0..15, 15..30]), Some(0..30));
        assert_eq!(choose_layers(n, small, &[]), Some(0..12), "nothing served: from layer 0");
        assert_eq!(
            choose_layers(n, small, std::slice::from_ref(&(0..12))),
            Some(12..24),
            "goes on from the first stage"
        );
        assert_eq!(choose_layers(n, small, &[0..12, 12..24]), Some(24..30), "completes the pipeline");
        // 0..12 and 20..30 served: 12..20 links the two (the gap), though 12 layers would fit.
        assert_eq!(choose_layers(n, small, &[0..12, 20..30]), Some(12..20));
        // Everything served once: a second copy of the least-served start, as far as it links.
        assert_eq!(choose_layers(n, small, &[0..12, 12..24, 24..30, 0..12]), Some(12..24));
        assert_eq!(choose_layers(n, |_| false, &[]), None);
    }

    /// The typed entries of a `GET /workers` answer written as JSON.
    fn parse(answer: &Value) -> Result<Vec<WorkerEntry>, serde_json::Error> {
        serde_json::from_value(answer.clone())
    }

    fn model() -> ModelProfile {
        ModelProfile {
            layer_bytes: vec![1_000; 4],
            embed_bytes: 2_000,
            head_bytes: 2_000,
            head_shares_embedding: true,
            kv_bytes_per_token_layer: 64,
            hidden_bytes_per_token: 16,
        }
    }

    fn worker(key: u8, served: Value, latency_us: u64, bandwidth_kbps: u64, endpoint: &str) -> Value {
        json!({
            "account": hex_key(key),
            "worker": {
                "profile": { "memory_mib": 2, "bandwidth_kbps": bandwidth_kbps, "latency_us": latency_us },
                "served": served,
                "endpoint": endpoint,
                "registered_height": 3,
            }
        })
    }

    fn hex_key(key: u8) -> String {
        format!("{key:02x}").repeat(32)
    }

    fn range(model: u64, start: u32, end: u32, layer_time_us: u32) -> Value {
        json!({ "model": model, "layer_start": start, "layer_end": end, "layer_time_us": layer_time_us })
    }

    #[test]
    fn devices_and_links_come_from_the_registered_profiles() {
        let workers = json!([
            worker(1, json!([range(1, 0, 2, 100)]), 300, 80_000, "127.0.0.1:7001"),
            worker(2, json!([range(1, 0, 4, 120), range(2, 0, 1, 5)]), 100, 40_000, "127.0.0.1:7002"),
            worker(3, json!([range(2, 0, 4, 50)]), 10, 10, "127.0.0.1:7003"),
        ]);
        let got = plan_inputs(&parse(&workers).unwrap(), 1, &model()).unwrap();
        assert_eq!(got.endpoints, ["127.0.0.1:7001", "127.0.0.1:7002"], "worker 3 serves another model");
        let (a, b) = (&got.devices[0], &got.devices[1]);
        assert_eq!((a.id.as_str(), a.memory_bytes), (hex_key(1).as_str(), 2 << 20));
        // Worker 1 runs layers 0..2: its time is per layer as measured; the head weighs 2 layers.
        assert_eq!((a.layer_time_us, a.head_time_us), (100, 200));
        // Worker 2 measured 0..4 with the head: 120 = t (1 + 2/4), so t = 80 and the head 160.
        assert_eq!((b.layer_time_us, b.head_time_us), (80, 160));
        let link = |from: &DeviceProfile, to: &DeviceProfile| {
            got.links.iter().find(|l| l.from == from.id && l.to == to.id).cloned().unwrap()
        };
        for l in [link(a, b), link(b, a)] {
            assert_eq!((l.latency_us, l.bandwidth_bytes_per_s), (200, 40_000 * 1000 / 8));
        }
        assert_eq!(got.links.len(), 2);
    }

    #[test]
    fn a_worker_without_bandwidth_gets_no_links_and_bad_answers_are_refused() {
        let workers = json!([
            worker(1, json!([range(1, 0, 4, 100)]), 0, 0, "127.0.0.1:7001"),
            worker(2, json!([range(1, 0, 4, 100)]), 0, 1_000, "127.0.0.1:7002"),
        ]);
        let entries = parse(&workers).unwrap();
        let got = plan_inputs(&entries, 1, &model()).unwrap();
        assert_eq!(got.devices.len(), 2);
        assert!(got.links.is_empty());
        assert!(
            matches!(plan_inputs(&entries, 9, &model()), Err(NodeError::Registry(m)) if m.contains("model 9"))
        );
        assert!(parse(&json!({"workers": 1})).is_err());
        let bad_key = json!([{ "account": "zz", "worker": workers[0]["worker"].clone() }]);
        assert!(parse(&bad_key).is_err());
    }

    #[test]
    fn peers_are_the_other_workers_of_the_model_with_a_usable_endpoint() {
        let workers = parse(&json!([
            worker(1, json!([range(1, 0, 4, 100)]), 0, 0, "127.0.0.1:7001"),
            worker(2, json!([range(1, 0, 2, 100)]), 0, 0, "127.0.0.1:7002"),
            worker(3, json!([range(2, 0, 4, 100)]), 0, 0, "127.0.0.1:7003"),
            worker(4, json!([range(1, 0, 4, 100)]), 0, 0, "nowhere"),
        ]))
        .unwrap();
        let me: PublicKey = hex_key(1).parse().unwrap();
        let peers = peers(&workers, 1, &me);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].account.to_string(), hex_key(2));
        assert_eq!(peers[0].endpoint, "127.0.0.1:7002".parse::<SocketAddr>().unwrap());
    }
}
