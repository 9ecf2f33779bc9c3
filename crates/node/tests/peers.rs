#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Measuring a peer over the real pipeline link: a SmolLM2 stage server on 127.0.0.1 answers the
//! echoes; a wrong key, a closed port and a peer that never answers are reported, not fatal.

use commonware_cryptography::Signer;
use commonware_runtime::{Listener, Network, Runner, Spawner, Supervisor, tokio};
use polylink_infer::{Gguf, Pool, Shard};
use polylink_node::peers::{self, Peer, ProbeConfig};
use polylink_pipeline::engine::{EngineHandle, EngineLimits};
use polylink_pipeline::server::{Admission, serve};
use polylink_pipeline::transport::{key_from_seed, peer_bytes};
use polylink_pipeline::wire::WireLimits;
use polylink_types::PublicKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn account(seed: u8) -> PublicKey {
    PublicKey(peer_bytes(&key_from_seed(&[seed; 32]).unwrap().public_key()))
}

#[test]
fn a_stage_server_is_measured_and_bad_peers_are_skipped_within_the_timeout() {
    let path = polylink_models::gguf_path(polylink_models::SMOLLM2_135M).unwrap();
    let gguf = Gguf::open(&path).unwrap();
    let shard = Arc::new(Shard::load(&gguf, 0..1, Arc::new(Pool::new(1))).unwrap());
    tokio::Runner::default().start(|context| async move {
        let engine = EngineHandle::start(context.child("engine"), shard, EngineLimits::default(), None);
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = context.bind(local).await.unwrap();
        let served = listener.local_addr().unwrap();
        context.child("stage").spawn(move |context| {
            serve(
                context,
                key_from_seed(&[1; 32]).unwrap(),
                listener,
                engine,
                WireLimits::default(),
                Admission::Anyone,
            )
        });
        // Accepts connections and never answers: a peer that hangs in the handshake.
        let mut silent = context.bind(local).await.unwrap();
        let hanging = silent.local_addr().unwrap();
        context.child("silent").spawn(move |_| async move {
            let mut held = Vec::new();
            while let Ok(conn) = silent.accept().await {
                held.push(conn);
            }
        });
        let closed = {
            let l = std::net::TcpListener::bind(local).unwrap();
            l.local_addr().unwrap()
        };

        let me = key_from_seed(&[9; 32]).unwrap();
        let config = ProbeConfig { timeout: Duration::from_secs(2), ..ProbeConfig::default() };
        let good = Peer { account: account(1), endpoint: served };
        let measured = peers::measure(context.child("probe"), me.clone(), &good, &config).await.unwrap();
        assert!(measured.rtt_us > 0 && measured.bandwidth_kbps > 0, "{measured:?}");
        assert_eq!(measured.latency_us, (measured.rtt_us / 2).max(1));

        let list = [
            Peer { account: account(2), endpoint: served }, // not the key that listens there
            Peer { account: account(1), endpoint: closed },
            Peer { account: account(1), endpoint: hanging },
            good.clone(),
        ];
        let started = Instant::now();
        let reports = peers::measure_all(context.child("all"), &me, &list, &config).await;
        assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
        assert_eq!(reports.len(), 4);
        for bad in &reports[..3] {
            assert!(bad.measure.is_none() && bad.error.is_some(), "{bad:?}");
        }
        assert!(reports[2].error.as_deref().unwrap().contains("no answer within"), "{:?}", reports[2]);
        assert!(reports[3].measure.is_some(), "{:?}", reports[3]);
        let summary = peers::summarize(&reports).unwrap();
        assert_eq!(summary.latency_us, reports[3].measure.unwrap().latency_us);

        let few = ProbeConfig { peers_max: 1, ..config };
        assert_eq!(peers::measure_all(context.child("few"), &me, &list, &few).await.len(), 1);
    });
}
