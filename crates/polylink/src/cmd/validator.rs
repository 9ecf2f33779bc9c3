//! `polylink validator register` (the wallet's account) and `polylink validator run` (the TIQE
//! validator role: scores the tasks it is elected to, commits and reveals).
use super::register;
use super::wallet::WalletOpts;
use anyhow::Context;
use clap::{Args, Subcommand};
use polylink_types::{Amount, SecretKey};
use polylink_validator::{Config, ScorerConfig};
use std::path::PathBuf;

/// Validator subcommands.
#[derive(Subcommand, Debug)]
pub enum ValidatorCmd {
    /// Register the wallet account as a score validator (needs the minimum stake bonded).
    Register,
    /// Run the validator role: register and bond if needed, then score every task it is elected to.
    Run(RunArgs),
}

/// `polylink validator run` flags.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The chain node's RPC address.
    #[arg(long)]
    chain: String,
    /// The validator's encrypted key file (created with a fresh account if missing; the
    /// passphrase comes from POLYLINK_PASSPHRASE or is asked for). It then waits for the funds
    /// its stake needs (a dev chain's faucet, else it says how much to send).
    #[arg(long, conflicts_with = "key_seed")]
    key_file: Option<PathBuf>,
    /// Instead of a key file: the validator's secret key seed (32 bytes, hex), for a network one
    /// party runs whole (`polylink up` passes it to its own validators).
    #[arg(
        long,
        env = "POLYLINK_VALIDATOR_KEY_SEED",
        hide_env_values = true,
        required_unless_present = "key_file"
    )]
    key_seed: Option<String>,
    /// Directory for pending commitments (so a restart can still reveal).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Stake to bond (default: the chain's validator minimum).
    #[arg(long)]
    stake: Option<Amount>,
    /// Threads of the evaluators' model forwards.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Cross-encoder head (default: the head built into the binary).
    #[arg(long)]
    head: Option<PathBuf>,
    /// A GGUF this validator can judge beyond the catalogue's models (repeatable): it serves the
    /// registered model whose artifact hash is the file's sha256.
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Tests only: commit this score for every task instead of evaluating.
    #[arg(long, hide = true)]
    score_override: Option<u16>,
}

impl ValidatorCmd {
    /// Runs the subcommand.
    pub fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        match self {
            Self::Register => register::ValidatorCmd::Register.run(opts),
            Self::Run(args) => args.run(),
        }
    }
}

impl RunArgs {
    fn run(self) -> anyhow::Result<()> {
        let (key, from_file) = match (&self.key_file, &self.key_seed) {
            (Some(path), _) => {
                (super::keyfile::open_or_create(path, &super::keyfile::passphrase()?)?.0, true)
            }
            (None, Some(text)) => {
                let seed: [u8; 32] = hex::decode(text.trim())
                    .context("--key-seed is not hex")?
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("--key-seed must be 32 bytes"))?;
                (SecretKey::from_seed(seed), false)
            }
            (None, None) => anyhow::bail!("give --key-file (or --key-seed)"),
        };
        let seed = key.seed();
        let scorer = ScorerConfig {
            threads: self.threads.max(1),
            head: self.head,
            seed: u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
            models: self.models,
        };
        let config = Config {
            chain_url: self.chain,
            key: key.clone(),
            data_dir: self.data_dir,
            stake: self.stake,
            scorer,
            score_override: self.score_override,
        };
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(async {
            let stop = super::stop_signal()?;
            if from_file {
                // A key of its own: funds for the stake come from a faucet or its owner.
                let client = polylink_chain::rpc::Client::new(&config.chain_url)?;
                let params = client.params().await?.params;
                // What `register` bonds by default: twice the minimum.
                let stake = config.stake.unwrap_or(params.validator_stake_min.saturating_mul(2));
                super::join::await_funds(&client, &key.public_key(), stake + params.tx_fee * 10).await?;
            }
            let running = polylink_validator::start(config).await?;
            println!("{}", running.ready.to_line());
            stop.await;
            tracing::info!("stopping");
            running.stop().await;
            Ok(())
        })
    }
}
