//! A one-node dev chain inside the calling process, for tests and local tools: a genesis goes in,
//! the RPC address comes out.

use crate::Error;
use crate::ledger::{from_config, genesis_value};
use crate::network::{NetworkSpec, configs};
use polylink_ledger::Genesis;
use std::path::Path;

/// Most transactions the dev node's mempool holds.
const MEMPOOL_CAPACITY: usize = 1_000;

/// Starts a one-validator chain of `genesis` on its own thread, keeping its data under `dir` and
/// proposing empty blocks at most every `block_interval_ms`; returns its RPC address
/// (`http://127.0.0.1:PORT`), which answers once the node is up.
pub fn spawn_dev(genesis: &Genesis, dir: &Path, block_interval_ms: u64) -> Result<String, Error> {
    let io = |source| Error::Io { path: dir.to_path_buf(), source };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(io)
    };
    let spec = NetworkSpec {
        chain_id: genesis.chain_id.clone(),
        validators: 1,
        p2p_base_port: free_port()?,
        rpc_base_port: free_port()?,
        block_interval_ms,
        mempool_capacity: MEMPOOL_CAPACITY,
        genesis: genesis_value(genesis)?,
    };
    let mut config =
        configs(&spec, rand::rng())?.pop().ok_or_else(|| Error::Keys("no config for the dev node".into()))?;
    config.data_dir = dir.to_path_buf();
    let ledger = from_config(&config)?;
    std::thread::Builder::new()
        .name("dev-chain".into())
        .spawn(move || {
            if let Err(e) = crate::node::run(config, ledger, |_| {}) {
                tracing::error!(error = %e, "dev chain stopped");
            }
        })
        .map_err(io)?;
    Ok(format!("http://127.0.0.1:{}", spec.rpc_base_port))
}
