//! Finality latency of a transfer on loopback: time from `POST /tx` to the server-sent event of
//! the finalized block that executed it, with 1 and with 4 validators (each its own runtime and
//! TCP p2p, in one process). Run: `cargo bench -p polylink-chain --bench finality`
//! (`POLYLINK_FINALITY_SAMPLES` sets the number of transfers per network, default 100).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use polylink_chain::{NetworkSpec, configs, genesis_value, ledger_from_config, rpc::Client, run_node};
use polylink_ledger::{Genesis, dev_key};
use polylink_types::{SecretKey, Transfer, TxKind, UnsignedTx};
use rand::{SeedableRng, rngs::StdRng};
use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

const SAMPLES_DEFAULT: usize = 100;

fn samples() -> usize {
    std::env::var("POLYLINK_FINALITY_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SAMPLES_DEFAULT)
        .max(2)
}

fn start_network(validators: usize, base_port: u16, data: &std::path::Path) -> Vec<String> {
    let chain_id = format!("polylink-bench-{validators}");
    let (genesis, _) = Genesis::dev(&chain_id, 2);
    let spec = NetworkSpec {
        chain_id,
        validators,
        p2p_base_port: base_port,
        rpc_base_port: base_port + 100,
        block_interval_ms: 300,
        mempool_capacity: 10_000,
        genesis: genesis_value(&genesis).unwrap(),
    };
    let (tx, rx) = mpsc::channel();
    for (k, mut config) in configs(&spec, StdRng::seed_from_u64(1)).unwrap().into_iter().enumerate() {
        config.data_dir = data.join(format!("node{k}"));
        let tx = tx.clone();
        std::thread::spawn(move || {
            let ledger = ledger_from_config(&config).unwrap();
            run_node(config, ledger, move |addr| tx.send(format!("http://{addr}")).unwrap()).unwrap();
        });
    }
    (0..validators).map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap()).collect()
}

async fn measure(url: &str, chain_id: &str, samples: usize) -> Vec<Duration> {
    let client = Client::new(url).unwrap();
    client.wait_for_height(2, Duration::from_secs(60)).await.unwrap();
    let key = dev_key(0);
    let mut latencies = Vec::new();
    for nonce in 0..samples as u64 {
        let tx = UnsignedTx {
            signer: key.public_key(),
            nonce,
            kind: TxKind::Transfer(Transfer { to: SecretKey::from_label("bench").public_key(), amount: 1 }),
        }
        .sign(&key, chain_id);
        let id = tx.id();
        let mut events = client.events().await.unwrap();
        let start = Instant::now();
        client.submit(&tx).await.unwrap();
        while let Some(block) = events.next().await {
            if block.tx_ids.contains(&id) {
                latencies.push(start.elapsed());
                break;
            }
        }
    }
    latencies.sort();
    latencies
}

/// The value below which `q` of the sorted `latencies` lie (nearest rank).
fn percentile(latencies: &[Duration], q: f64) -> Duration {
    let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let samples = samples();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut medians = Vec::new();
    for (validators, port) in [(1usize, 41_000u16), (4, 42_000)] {
        let urls = start_network(validators, port, &dir.path().join(format!("n{validators}")));
        let latencies = rt.block_on(measure(&urls[0], &format!("polylink-bench-{validators}"), samples));
        let p50 = percentile(&latencies, 0.5);
        println!(
            "finality latency, {validators} validator(s), {samples} transfers (block interval 300 ms): \
             p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
            ms(p50),
            ms(percentile(&latencies, 0.9)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies[0]),
            ms(latencies[latencies.len() - 1]),
        );
        medians.push(p50);
    }
    println!("p50 ratio, 4 validators / 1 validator: {:.2}x", ms(medians[1]) / ms(medians[0]));
    // The node threads never return; the process exit stops them.
    std::process::exit(0);
}
