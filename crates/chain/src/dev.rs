//! A one-node dev chain inside the calling process, for tests and local tools: a genesis goes in,
//! the RPC address comes out.

use crate::Error;
use crate::ledger::{genesis_value, ledger_from_config};
use crate::network::{NetworkSpec, configs};
use polylink_ledger::Genesis;
use std::path::Path;
use std::sync::mpsc;

/// Most transactions the dev node's mempool holds.
const MEMPOOL_CAPACITY: usize = 1_000;

/// Starts a one-validator chain of `genesis` on its own thread, keeping its data under `dir` and
/// proposing empty blocks at most every `block_interval_ms`; returns its RPC address
/// (`http://127.0.0.1:PORT`) once the node serves it, or the reason it could not start.
///
/// Both sockets are bound to port 0 by the node itself, so no port is ever picked, released and
/// bound again (another process could take it in between): the RPC address is the one the node
/// reports, and a lone validator dials no peer, so its p2p port need not be known to anyone.
pub fn spawn_dev(genesis: &Genesis, dir: &Path, block_interval_ms: u64) -> Result<String, Error> {
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    let spec = NetworkSpec {
        chain_id: genesis.chain_id.clone(),
        validators: 1,
        p2p_base_port: 0,
        rpc_base_port: 0,
        block_interval_ms,
        mempool_capacity: MEMPOOL_CAPACITY,
        genesis: genesis_value(genesis)?,
    };
    let mut config =
        configs(&spec, rand::rng())?.pop().ok_or_else(|| Error::Keys("no config for the dev node".into()))?;
    config.data_dir = dir.to_path_buf();
    let ledger = ledger_from_config(&config)?;
    let (ready, started) = mpsc::channel::<Result<std::net::SocketAddr, Error>>();
    let failed = ready.clone();
    std::thread::Builder::new()
        .name("dev-chain".into())
        .spawn(move || {
            let result = crate::node::run_node(config, ledger, move |rpc| {
                let _ = ready.send(Ok(rpc));
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "dev chain stopped");
                // Only read while the caller still waits for the start.
                let _ = failed.send(Err(e));
            }
        })
        .map_err(io)?;
    match started.recv() {
        Ok(Ok(rpc)) => Ok(format!("http://{rpc}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Rpc("the dev chain's thread ended before its RPC was up".into())),
    }
}
