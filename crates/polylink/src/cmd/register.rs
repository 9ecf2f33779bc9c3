//! `polylink model register`, `polylink worker register`, `polylink validator register`:
//! registration transactions signed by the wallet.
use super::wallet::{WalletOpts, send};
use anyhow::Context;
use clap::Subcommand;
use polylink_types::{
    Amount, ArtifactClaim, BoundedString, BoundedVec, ClaimModel, DeviceProfile, Hash32, RegisterModel,
    RegisterWorker, ServedRange, TxKind,
};
use std::path::{Path, PathBuf};

/// Model subcommands.
#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Register a model (once per artifact). Its royalty goes to the developer the artifact
    /// names in its trailer (proved with `--artifact`), else to the treasury.
    Register {
        /// sha256 of the GGUF file (hex).
        #[arg(long)]
        artifact_hash: Hash32,
        /// The artifact file, to prove the developer its trailer names.
        #[arg(long)]
        artifact: Option<PathBuf>,
        /// Architecture name as in the GGUF metadata (llama, gemma3, qwen2, ...).
        #[arg(long)]
        architecture: String,
        /// Number of transformer layers.
        #[arg(long)]
        layer_count: u32,
        /// Developer royalty, basis points of each fee.
        #[arg(long)]
        royalty_bps: u16,
        /// Lowest price per token in base units (also the starting price).
        #[arg(long)]
        price_floor: Amount,
    },
    /// Show that a registered model's artifact names its developer (who earns the royalty from
    /// then on).
    Claim {
        /// The model id.
        #[arg(long)]
        model: u64,
        /// The artifact file, whose trailer names the developer.
        #[arg(long)]
        artifact: PathBuf,
    },
}

/// The proof that the artifact at `path` names its developer.
fn claim_of(path: &Path) -> anyhow::Result<ArtifactClaim> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ArtifactClaim::from_artifact(&bytes)
        .with_context(|| format!("{} does not end with a developer trailer", path.display()))
}

/// Worker subcommands.
#[derive(Subcommand, Debug)]
pub enum WorkerCmd {
    /// Register (or update) the wallet account as a worker serving one model or layer range.
    Register {
        /// Memory available for weights and caches, MiB.
        #[arg(long)]
        memory_mib: u64,
        /// Link bandwidth, kbit/s.
        #[arg(long)]
        bandwidth_kbps: u64,
        /// One-way latency to its peers, microseconds (0: not measured).
        #[arg(long, default_value_t = 0)]
        latency_us: u64,
        /// Where its pipeline server listens, `ip:port`.
        #[arg(long)]
        endpoint: String,
        /// Model served.
        #[arg(long)]
        model: u64,
        /// First layer served.
        #[arg(long, default_value_t = 0)]
        layer_start: u32,
        /// One past the last layer served.
        #[arg(long)]
        layer_end: u32,
        /// Measured time per layer per token, microseconds.
        #[arg(long)]
        layer_time_us: u32,
    },
}

/// Validator subcommands.
#[derive(Subcommand, Debug)]
pub enum ValidatorCmd {
    /// Register the wallet account as a score validator (needs the minimum stake bonded).
    Register,
}

impl ModelCmd {
    /// Runs the subcommand.
    pub fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        let (artifact_hash, artifact, architecture, layer_count, royalty_bps, price_floor) = match self {
            Self::Register {
                artifact_hash,
                artifact,
                architecture,
                layer_count,
                royalty_bps,
                price_floor,
            } => (artifact_hash, artifact, architecture, layer_count, royalty_bps, price_floor),
            Self::Claim { model, artifact } => {
                return send(opts, TxKind::ClaimModel(ClaimModel { model, claim: claim_of(&artifact)? }));
            }
        };
        let architecture = BoundedString::try_from(architecture).context("architecture name")?;
        let claim = artifact.as_deref().map(claim_of).transpose()?;
        send(
            opts,
            TxKind::RegisterModel(RegisterModel {
                artifact_hash,
                claim,
                architecture,
                layer_count,
                royalty_bps,
                price_floor,
            }),
        )
    }
}

impl WorkerCmd {
    /// Runs the subcommand.
    pub fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        let Self::Register {
            memory_mib,
            bandwidth_kbps,
            latency_us,
            endpoint,
            model,
            layer_start,
            layer_end,
            layer_time_us,
        } = self;
        let served = BoundedVec::try_from(vec![ServedRange { model, layer_start, layer_end, layer_time_us }])
            .context("served ranges")?;
        let endpoint = BoundedString::try_from(endpoint).context("endpoint")?;
        send(
            opts,
            TxKind::RegisterWorker(RegisterWorker {
                profile: DeviceProfile { memory_mib, bandwidth_kbps, latency_us },
                served,
                endpoint,
            }),
        )
    }
}

impl ValidatorCmd {
    /// Runs the subcommand.
    pub fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        match self {
            Self::Register => send(opts, TxKind::RegisterValidator),
        }
    }
}
