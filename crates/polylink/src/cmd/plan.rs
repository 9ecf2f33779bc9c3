//! `polylink plan`: the partition planner on a model file and either a devices file or the
//! workers a chain node has registered for the model.

use super::wallet::block_on;
use anyhow::Context;
use clap::Args;
use polylink_chain::rpc::Client;
use polylink_node::registry;
use polylink_pipeline::plan::{DeviceProfile, LinkProfile, Objective, PlanRequest, plan};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PlanCmd {
    /// The model's GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// TOML file with `[[devices]]` (id, memory_bytes, layer_time_us, head_time_us) and either
    /// `[[links]]` (from, to, latency_us, bandwidth_bytes_per_s) or one `[mesh]` for every pair.
    #[arg(long, required_unless_present = "chain", conflicts_with = "chain")]
    devices: Option<PathBuf>,
    /// RPC url of a chain node: plan over the workers registered for `--model-id` instead.
    #[arg(long, requires = "model_id")]
    chain: Option<String>,
    /// The model's on-chain id (with `--chain`).
    #[arg(long, requires = "chain")]
    model_id: Option<u64>,
    /// What to optimize.
    #[arg(long, value_enum, default_value = "latency")]
    objective: ObjectiveArg,
    /// Context length every stage must hold KV cache for.
    #[arg(long, default_value_t = 2048)]
    context: u64,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ObjectiveArg {
    Latency,
    Throughput,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    devices: Vec<DeviceProfile>,
    #[serde(default)]
    links: Vec<LinkProfile>,
    mesh: Option<Mesh>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mesh {
    latency_us: u64,
    bandwidth_bytes_per_s: u64,
}

impl PlanCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let gguf = polylink_infer::Gguf::open(&self.model)
            .with_context(|| format!("reading model {}", self.model.display()))?;
        let model = polylink_pipeline::profile::model_profile(&gguf)?;
        let (devices, links, endpoints) = match (&self.chain, self.model_id, &self.devices) {
            (Some(url), Some(id), _) => {
                let workers = block_on(async { Ok(Client::new(url)?.workers().await?) })
                    .with_context(|| format!("reading the workers registered at {url}"))?;
                let found = registry::plan_inputs(&workers, id, &model)?;
                let endpoints = found.devices.iter().map(|d| d.id.clone()).zip(found.endpoints).collect();
                (found.devices, found.links, endpoints)
            }
            (_, _, Some(path)) => {
                let (devices, links) = devices_file(path)?;
                (devices, links, HashMap::new())
            }
            _ => anyhow::bail!("give --devices, or --chain with --model-id"),
        };
        let objective = match self.objective {
            ObjectiveArg::Latency => Objective::Latency,
            ObjectiveArg::Throughput => Objective::Throughput,
        };
        let request = PlanRequest { model, devices, links, context_tokens: self.context, objective };
        let plan = plan(&request)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
            return Ok(());
        }
        for (k, stage) in plan.stages.iter().enumerate() {
            println!(
                "stage {k}: {:<16} layers {:>3}..{:<3} {:>8.1} MB  {:>7} us/token",
                stage.device,
                stage.layers.start,
                stage.layers.end,
                stage.memory_bytes as f64 / 1e6,
                stage.compute_us
            );
            if let Some(endpoint) = endpoints.get(&stage.device) {
                println!("         listens on {endpoint}");
            }
        }
        println!("predicted per-token latency: {} us", plan.token_latency_us);
        println!("predicted pipelined bottleneck: {} us/token", plan.bottleneck_us);
        match plan.best_single_latency_us {
            Some(us) => println!("best single device: {us} us/token"),
            None => println!("best single device: none can hold the model"),
        }
        Ok(())
    }
}

/// Devices and links from a TOML devices file; a `[mesh]` fills every pair the file leaves out.
fn devices_file(path: &Path) -> anyhow::Result<(Vec<DeviceProfile>, Vec<LinkProfile>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading devices file {}", path.display()))?;
    let file: DevicesFile =
        toml::from_str(&text).with_context(|| format!("parsing devices file {}", path.display()))?;
    let mut links = file.links;
    if let Some(mesh) = file.mesh {
        for a in &file.devices {
            for b in &file.devices {
                if a.id != b.id && !links.iter().any(|l| l.from == a.id && l.to == b.id) {
                    links.push(LinkProfile {
                        from: a.id.clone(),
                        to: b.id.clone(),
                        latency_us: mesh.latency_us,
                        bandwidth_bytes_per_s: mesh.bandwidth_bytes_per_s,
                    });
                }
            }
        }
    }
    Ok((file.devices, links))
}
