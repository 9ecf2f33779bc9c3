//! `polylink stage`: serve a model, whole or as a layer range, as a pipeline stage.

use anyhow::Context;
use clap::Args;
use commonware_codec::Encode;
use commonware_runtime::Runner;
use polylink_node::worker::{self, WorkerConfig};
use polylink_pipeline::engine::EngineLimits;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct StageCmd {
    /// The model's GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Layers to serve, `a..b` (default: the whole model).
    #[arg(long)]
    layers: Option<String>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The worker's ed25519 seed, 64 hex characters (its on-chain key).
    #[arg(long, env = "POLYLINK_WORKER_SEED")]
    key_seed: String,
    /// Compute threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Most sessions held at once.
    #[arg(long, default_value_t = 64)]
    sessions_max: usize,
}

impl StageCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let seed: [u8; 32] = hex::decode(self.key_seed.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .context("--key-seed must be 64 hex characters (32 bytes)")?;
        let key = polylink_pipeline::transport::key_from_seed(&seed)?;
        let layers = self.layers.as_deref().map(worker::parse_layers).transpose()?;
        let config = WorkerConfig {
            model: self.model,
            layers,
            listen: self.listen,
            key,
            threads: self.threads,
            limits: EngineLimits { sessions_max: self.sessions_max, ..EngineLimits::default() },
        };
        commonware_runtime::tokio::Runner::default().start(|context| async move {
            worker::run(context, config, |ready| {
                // One JSON line on stdout: what `polylink up` and tests read to find the stage.
                let line = serde_json::json!({
                    "key": hex::encode(ready.key.encode()),
                    "addr": ready.addr.to_string(),
                    "layers": [ready.layers.start, ready.layers.end],
                    "layer_time_us": ready.measured.layer_time_us,
                    "memory_bytes": ready.measured.memory_bytes,
                });
                println!("{line}");
            })
            .await
        })?;
        Ok(())
    }
}
