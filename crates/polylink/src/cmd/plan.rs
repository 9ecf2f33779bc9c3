//! `polylink plan`: the partition planner on a model file and a devices file.

use anyhow::Context;
use clap::Args;
use polylink_pipeline::plan::{DeviceProfile, LinkProfile, Objective, PlanRequest, plan};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlanCmd {
    /// The model's GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// TOML file with `[[devices]]` (id, memory_bytes, layer_time_us, head_time_us) and either
    /// `[[links]]` (from, to, latency_us, bandwidth_bytes_per_s) or one `[mesh]` for every pair.
    #[arg(long)]
    devices: PathBuf,
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
        let text = std::fs::read_to_string(&self.devices)
            .with_context(|| format!("reading devices file {}", self.devices.display()))?;
        let file: DevicesFile = toml::from_str(&text)
            .with_context(|| format!("parsing devices file {}", self.devices.display()))?;
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
        let objective = match self.objective {
            ObjectiveArg::Latency => Objective::Latency,
            ObjectiveArg::Throughput => Objective::Throughput,
        };
        let request =
            PlanRequest { model, devices: file.devices, links, context_tokens: self.context, objective };
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
