//! `polylink up`: a whole local network (chain, workers, pipeline, gateway, validators) in one
//! command; Ctrl-C stops it.

use clap::Args;
use commonware_runtime::Runner;
use polylink_node::up::{self, UpConfig};
use polylink_node::worker::parse_layers;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Args)]
pub struct UpCmd {
    /// Where the chain, keys, transcripts and logs live (a second `up` resumes them).
    #[arg(long, default_value = ".polylink/up")]
    data_dir: PathBuf,
    /// The address every endpoint of the network listens on: chain RPC and p2p, gateway, workers.
    /// Give this machine's address on your network so others can join from their machines.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Gateway address (default: port 8080 on the --bind address).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Chain RPC port on the --bind address (0 picks a free one).
    #[arg(long, default_value_t = 8645)]
    rpc_port: u16,
    /// Stages of the pipeline deployment (0: none).
    #[arg(long, default_value_t = 2)]
    stages: usize,
    /// Do not start the worker that serves the model whole.
    #[arg(long)]
    no_whole: bool,
    /// Standby workers per pipeline stage, for fail-over.
    #[arg(long, default_value_t = 0)]
    standby: usize,
    /// Score validators.
    #[arg(long, default_value_t = 3)]
    validators: usize,
    /// Compute threads per worker.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Chain block interval, milliseconds.
    #[arg(long, default_value_t = 500)]
    block_interval_ms: u64,
    /// ATTACK DEMO ONLY: the whole-model worker skips these layers while claiming the model.
    #[arg(long, hide = true)]
    cheat_drop_layers: Option<String>,
}

impl UpCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let config = UpConfig {
            data_dir: self.data_dir,
            bind: self.bind,
            listen: self.listen.unwrap_or(SocketAddr::new(self.bind, 8080)),
            rpc_port: self.rpc_port,
            whole: !self.no_whole,
            stages: self.stages,
            standby: self.standby,
            validators: self.validators,
            threads: self.threads,
            block_interval_ms: self.block_interval_ms,
            cheat_drop_layers: self.cheat_drop_layers.as_deref().map(parse_layers).transpose()?,
        };
        commonware_runtime::tokio::Runner::default().start(|context| async move {
            let mut network = up::start(context, config).await?;
            let stop = super::stop_signal()?;
            tokio::pin!(stop);
            let s = &network.summary;
            println!("{}", serde_json::to_string(s)?);
            eprintln!();
            eprintln!("PolyLink is up.");
            eprintln!("  OpenAI base URL  {}", s.base_url);
            eprintln!("  API key          {}", s.api_key);
            eprintln!("                   (account {} allows the gateway to spend from it;", s.account);
            eprintln!("                    the gateway holds no key of yours)");
            eprintln!("  model            {}  (on-chain id {})", up::MODEL_ID, s.model);
            eprintln!("  chain RPC        {}", s.rpc_url);
            eprintln!("  try:");
            eprintln!(
                "    curl -s {}/chat/completions -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\",
                s.base_url, s.api_key
            );
            eprintln!(
                "      -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"What is the capital of France?\"}}],\"max_tokens\":48}}'",
                up::MODEL_ID
            );
            eprintln!("  Ctrl-C stops everything.");
            // A child that exits (a crash, a kill) is started again with the same key, data and
            // addresses; the rest of the network finds it where it was.
            let mut watch = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = watch.tick() => {
                        for line in network.revive() {
                            tracing::warn!("{line}");
                        }
                    }
                }
            }
            eprintln!("stopping…");
            network.stop();
            anyhow::Ok(())
        })
    }
}
