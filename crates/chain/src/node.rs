//! A production node: the tokio runtime with storage in the data dir, authenticated p2p over TCP
//! (static committee addresses), the engine, and the HTTP RPC.
use crate::{
    Error, PublicKey,
    config::{NodeConfig, namespace},
    engine::{self, Channels, EngineConfig, channel},
    machine::Queryable,
    pending_log::PendingLog,
    rpc::server::{self, RpcState},
};
use commonware_codec::Encode;
use commonware_cryptography::{ChaCha20Poly1305, Signer, ed25519::PrivateKey};
use commonware_p2p::{Address, AddressableManager, authenticated::lookup};
use commonware_runtime::{Quota, Runner, Supervisor as _, tokio as cw_tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tracing::{error, info, warn};

/// Largest p2p message, bytes (a full block of maximum-size transactions fits).
const P2P_MESSAGE_BYTES_MAX: u32 = 4 * 1024 * 1024;
const _: () = assert!(
    crate::block::BLOCK_TXS_LIMIT * polylink_types::TX_BYTES_MAX + 64 * 1024
        <= P2P_MESSAGE_BYTES_MAX as usize
);
/// One-way message delay the consensus timeouts allow for: generous for loopback and LAN
/// testnets on busy machines (leader timeout = block interval + 1 s).
const LINK_DELAY_MS: u64 = 250;

/// The p2p handshake of a validator: authenticated by its identity, then encrypted.
pub(crate) fn handshake(key: &PrivateKey) -> Cups<Sake<PrivateKey>, ChaCha20Poly1305> {
    Cups::new(
        Sake {
            signer: key.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    )
}

/// Runs a node until its engine stops; `on_rpc` is called with the RPC's bound address.
pub fn run_node<M: Queryable>(
    config: NodeConfig,
    genesis: M,
    on_rpc: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), Error> {
    let keys = config.keys()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| Error::Io { path: config.data_dir.clone(), source })?;
    let runtime = cw_tokio::Config::new()
        .with_storage_directory(config.data_dir.join("store"))
        .with_worker_threads(2)
        .with_catch_panics(false);
    cw_tokio::Runner::new(runtime).start(|context| async move {
        let me = keys.private_key.public_key();
        let ns = namespace(&config.chain_id);
        let p2p = lookup::Config::local(
            handshake(&keys.private_key),
            &ns,
            config.listen,
            NZUsize!(keys.participants.len().max(1)),
            P2P_MESSAGE_BYTES_MAX,
            NZUsize!(4096),
        );
        let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p);
        let quota = Quota::per_second(NZU32!(10_000));
        let mut register = |ch| network.register(ch, quota);
        let channels = Channels {
            votes: register(channel::VOTES),
            certificates: register(channel::CERTIFICATES),
            resolver: register(channel::RESOLVER),
            blocks: register(channel::BLOCKS),
            backfill: register(channel::BACKFILL),
            mempool: register(channel::MEMPOOL),
        };
        let peers: Vec<(PublicKey, Address)> = keys
            .participants
            .iter()
            .filter_map(|key| {
                let hex_key = hex::encode(key.encode());
                config
                    .validators
                    .iter()
                    .find(|v| v.public_key == hex_key)
                    .map(|v| (key.clone(), Address::from(v.address)))
            })
            .collect();
        let peers = Map::try_from(peers).map_err(|_| Error::Keys("duplicate validator".into()))?;
        let _ = oracle.track(0, peers);
        let network_handle = network.start();

        let started = engine::start(
            context.child("engine"),
            EngineConfig {
                blocker: oracle.clone(),
                provider: oracle,
                me: me.clone(),
                genesis_leader: keys.participants.iter().next().cloned().unwrap_or(me.clone()),
                scheme: keys.scheme,
                verifier: keys.verifier,
                chain_id: config.chain_id.clone(),
                partition_prefix: "polylink".into(),
                block_interval_ms: config.block_interval_ms,
                mempool_capacity: config.mempool_capacity,
                timing: engine::Timing::new(config.block_interval_ms, LINK_DELAY_MS),
                genesis,
            },
            channels,
        )
        .await?;

        let listener = tokio::net::TcpListener::bind(config.rpc)
            .await
            .map_err(|source| Error::Io { path: config.rpc.to_string().into(), source })?;
        let rpc_addr = listener
            .local_addr()
            .map_err(|source| Error::Io { path: config.rpc.to_string().into(), source })?;
        // What the node had admitted and not executed when it stopped is admitted again (what a
        // block executed meanwhile is refused, as any stale transaction).
        let log_path = config.data_dir.join("mempool.log");
        let (log, kept) =
            PendingLog::open(&log_path).map_err(|source| Error::Io { path: log_path.clone(), source })?;
        let log = Arc::new(log);
        let submitter = started.submitter.with_log(log.clone());
        let found = kept.len();
        let readmitted = kept.into_iter().filter(|tx| submitter.submit(tx.clone()).is_ok()).count();
        if found > 0 {
            info!(found, readmitted, "mempool log read");
        }
        let pending = submitter.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                if let Err(e) = log.rewrite(|| pending.pending_all()) {
                    warn!(path = %log_path.display(), "rewriting the mempool log: {e}");
                }
            }
        });
        let router = server::router(RpcState {
            submitter,
            shared: started.shared,
            marshal: started.marshal,
            chain_id: config.chain_id.clone(),
            validators: keys.participants.len(),
            faucet: faucet(&config)?,
            subscribers: Arc::new(tokio::sync::Semaphore::new(server::EVENT_SUBSCRIBERS_MAX)),
        });
        tokio::spawn(async move {
            if let Err(e) = server::serve(listener, router).await {
                error!(error = %e, "rpc server stopped");
            }
        });
        info!(%me, rpc = %rpc_addr, p2p = %config.listen, chain_id = %config.chain_id, "node started");
        on_rpc(rpc_addr);
        let mut handles = started.handles;
        handles.push(network_handle);
        let _ = futures::future::select_all(handles).await;
        error!("a node component stopped; shutting down");
        Ok(())
    })
}

/// The faucet `config` asks for, if any.
fn faucet(config: &NodeConfig) -> Result<Option<server::Faucet>, Error> {
    let Some(f) = &config.faucet else { return Ok(None) };
    let seed: [u8; 32] = hex::decode(f.secret_seed.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Keys("faucet secret_seed must be 64 hex characters".into()))?;
    Ok(Some(server::Faucet {
        key: polylink_types::SecretKey::from_seed(seed),
        amount: polylink_types::Amount::from(f.amount),
        given: std::sync::Mutex::new(std::collections::HashSet::new()),
    }))
}
