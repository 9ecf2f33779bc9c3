//! Finality latency of a transfer on loopback: time from `POST /tx` to the server-sent event of
//! the finalized block that executed it, with 1 and with 4 validators (each its own runtime and
//! TCP p2p, in one process). Run: `cargo bench -p polylink-chain --bench finality`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use polylink_chain::{
    ledger::{from_config, genesis_value},
    network::{NetworkSpec, configs},
    node,
    rpc::client::Client,
};
use polylink_ledger::{Genesis, dev_key};
use polylink_types::{SecretKey, Transfer, TxKind, UnsignedTx};
use rand::{SeedableRng, rngs::StdRng};
use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

const SAMPLES: usize = 30;

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
            let ledger = from_config(&config).unwrap();
            node::run(config, ledger, move |addr| tx.send(format!("http://{addr}")).unwrap()).unwrap();
        });
    }
    (0..validators).map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap()).collect()
}

async fn measure(url: &str, chain_id: &str) -> Vec<Duration> {
    let client = Client::new(url).unwrap();
    client.wait_for_height(2, Duration::from_secs(60)).await.unwrap();
    let key = dev_key(0);
    let mut latencies = Vec::new();
    for nonce in 0..SAMPLES as u64 {
        let tx = UnsignedTx {
            signer: key.public_key(),
            nonce,
            kind: TxKind::Transfer(Transfer { to: SecretKey::from_label("bench").public_key(), amount: 1 }),
        }
        .sign(&key, chain_id);
        let id = tx.id().to_string();
        let mut events = client.events().await.unwrap();
        let start = Instant::now();
        client.submit(&tx).await.unwrap();
        while let Some(block) = events.next().await {
            let ids = block["tx_ids"].as_array().cloned().unwrap_or_default();
            if ids.iter().any(|v| v.as_str() == Some(id.as_str())) {
                latencies.push(start.elapsed());
                break;
            }
        }
    }
    latencies.sort();
    latencies
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (validators, port) in [(1usize, 41_000u16), (4, 42_000)] {
        let urls = start_network(validators, port, &dir.path().join(format!("n{validators}")));
        let latencies = rt.block_on(measure(&urls[0], &format!("polylink-bench-{validators}")));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "finality latency, {validators} validator(s), {SAMPLES} transfers: median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
            ms(latencies[SAMPLES / 2]),
            ms(latencies[SAMPLES * 9 / 10]),
            ms(latencies[0]),
            ms(latencies[SAMPLES - 1]),
        );
    }
    // The node threads never return; the process exit stops them.
    std::process::exit(0);
}
