//! `polylink chain dev|testnet-init|keygen|genesis|dkg|run|status|params`: set up and run chain
//! nodes, and inspect them.
use super::wallet::block_on;
use anyhow::{Context, bail};
use clap::Subcommand;
use polylink_chain::{
    FaucetConfig, Identity, NetworkFile, NetworkSpec, NodeConfig, ValidatorEntry, configs, genesis_value,
    ledger_from_config, rpc::Client, testnet_init,
};
use polylink_ledger::{DEV_BALANCE, Genesis, GenesisAccount};
use std::{net::SocketAddr, path::PathBuf};

/// Chain subcommands.
#[derive(Subcommand, Debug)]
pub enum ChainCmd {
    /// Run a one-validator dev chain with funded dev accounts (state kept in --data-dir).
    Dev {
        /// Where keys, config and chain data live; reused on restart.
        #[arg(long, default_value = ".polylink/dev")]
        data_dir: PathBuf,
        /// RPC listen address.
        #[arg(long, default_value = "127.0.0.1:8645")]
        rpc: SocketAddr,
        /// p2p listen address.
        #[arg(long, default_value = "127.0.0.1:3000")]
        p2p: SocketAddr,
        /// Empty blocks at most this often (a block with transactions is proposed at once).
        #[arg(long, default_value_t = 300)]
        block_interval_ms: u64,
        /// Number of funded dev accounts (first start only).
        #[arg(long, default_value_t = 4)]
        accounts: u32,
        /// Blocks a committee has to commit its scores (first start only; default: Params).
        #[arg(long)]
        commit_window_blocks: Option<u64>,
        /// Blocks a committee has to reveal its scores (first start only; default: Params).
        #[arg(long)]
        reveal_window_blocks: Option<u64>,
        /// Base units the faucet (`POST /faucet`) sends each account that asks, once (0: none).
        #[arg(long, default_value_t = 1_000_000)]
        faucet_amount: u64,
    },
    /// Write configs for N validators on 127.0.0.1 (DIR/nodeK/config.toml).
    TestnetInit {
        /// Committee size (tolerates f = (N-1)/3 faulty validators).
        #[arg(long)]
        validators: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Network id (also the consensus namespace; use a new one per network).
        #[arg(long)]
        chain_id: Option<String>,
        /// p2p port of validator 0 (validator k uses base + k).
        #[arg(long, default_value_t = 3000)]
        p2p_base_port: u16,
        /// RPC port of validator 0 (validator k uses base + k).
        #[arg(long, default_value_t = 8645)]
        rpc_base_port: u16,
        /// Empty-block pacing.
        #[arg(long, default_value_t = 300)]
        block_interval_ms: u64,
        /// Number of funded dev accounts in the genesis.
        #[arg(long, default_value_t = 4)]
        accounts: u32,
    },
    /// Make this validator's identity on its own machine (or show the one in --key), for a
    /// network across machines; prints its public key for the network file.
    Keygen {
        /// The identity file (created, readable by its owner only, if missing).
        #[arg(long, default_value = "validator.key")]
        key: PathBuf,
    },
    /// Write a network file: the committee (public keys and p2p addresses from each validator's
    /// `chain keygen`) and the genesis with real accounts. It holds no secret; hand it to every
    /// validator for `chain dkg`.
    Genesis {
        /// Network id (also the consensus namespace; use a new one per network).
        #[arg(long)]
        chain_id: String,
        /// A validator, `PUBLIC_KEY@IP:PORT` (its p2p address; repeat for each).
        #[arg(long = "validator", required = true)]
        validators: Vec<String>,
        /// A funded account, `PUBLIC_KEY=AMOUNT` in base units (repeat for each).
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// Empty blocks at most this often.
        #[arg(long, default_value_t = 300)]
        block_interval_ms: u64,
        /// Where to write it.
        #[arg(long, default_value = "network.toml")]
        out: PathBuf,
    },
    /// Take part in the network's distributed key generation with the other validators (all
    /// must run it, in any order, within --timeout-s), then write this validator's node config.
    Dkg {
        /// This validator's identity file (`chain keygen`).
        #[arg(long, default_value = "validator.key")]
        key: PathBuf,
        /// The network file (`chain genesis`).
        #[arg(long, default_value = "network.toml")]
        network: PathBuf,
        /// p2p listen address (default: the address the network file lists for this validator).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// RPC listen address of the node.
        #[arg(long, default_value = "127.0.0.1:8645")]
        rpc: SocketAddr,
        /// Where the node keeps its data.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Longest wait for the other validators, seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// The node config to write (run it with `polylink chain run --config`).
        #[arg(long, default_value = "config.toml")]
        out: PathBuf,
        /// Which attempt this is: all validators give the same number; raise it together to rerun
        /// a ceremony that failed, so none of its messages mix into the new one.
        #[arg(long, default_value_t = 0)]
        attempt: u64,
    },
    /// Run one node from its config file.
    Run {
        /// Path to the node's config.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a node's height, state root and mempool size.
    Status {
        /// The node's RPC address.
        #[arg(long, env = "POLYLINK_RPC", default_value = "http://127.0.0.1:8645")]
        rpc: String,
    },
    /// Show the chain's parameters and totals.
    Params {
        /// The node's RPC address.
        #[arg(long, env = "POLYLINK_RPC", default_value = "http://127.0.0.1:8645")]
        rpc: String,
    },
}

fn print_dev_accounts(chain_id: &str, accounts: u32) {
    let (_, keys) = Genesis::dev(chain_id, accounts);
    println!(
        "Funded dev accounts ({DEV_BALANCE} base units each; import with `polylink wallet new --secret <seed>`):"
    );
    for (i, key) in keys.iter().enumerate() {
        println!("  [{i}] account {}  seed {}", key.public_key(), hex::encode(key.seed()));
    }
}

fn spec(
    chain_id: &str,
    validators: usize,
    accounts: u32,
    ports: (u16, u16),
    block_interval_ms: u64,
    windows: (Option<u64>, Option<u64>),
) -> anyhow::Result<NetworkSpec> {
    let (mut genesis, _) = Genesis::dev(chain_id, accounts);
    if let Some(blocks) = windows.0 {
        genesis.params.commit_window_blocks = blocks;
    }
    if let Some(blocks) = windows.1 {
        genesis.params.reveal_window_blocks = blocks;
    }
    // Longer windows make a task live longer: unbonding must still outlast it.
    let p = &mut genesis.params;
    p.unbonding_period_blocks = p.unbonding_period_blocks.max(p.task_lifetime_blocks() + 1);
    Ok(NetworkSpec {
        chain_id: chain_id.to_string(),
        validators,
        p2p_base_port: ports.0,
        rpc_base_port: ports.1,
        block_interval_ms,
        mempool_capacity: 10_000,
        genesis: genesis_value(&genesis)?,
    })
}

/// A dev chain's faucet account: a public label, like the dev accounts'.
fn faucet_key() -> polylink_types::SecretKey {
    polylink_types::SecretKey::from_label("polylink-dev-faucet")
}

/// `PUBLIC_KEY@IP:PORT`.
fn parse_validator(text: &str) -> anyhow::Result<ValidatorEntry> {
    let (key, address) =
        text.split_once('@').with_context(|| format!("--validator {text:?}: expected PUBLIC_KEY@IP:PORT"))?;
    let address: SocketAddr =
        address.parse().with_context(|| format!("--validator {text:?}: bad address"))?;
    if address.ip().is_unspecified() || address.port() == 0 {
        bail!("--validator {text:?}: the address must be one the other validators can dial");
    }
    let bytes = hex::decode(key).with_context(|| format!("--validator {text:?}: the key is not hex"))?;
    if bytes.len() != 32 {
        bail!("--validator {text:?}: an ed25519 public key is 32 bytes");
    }
    Ok(ValidatorEntry { public_key: key.to_lowercase(), address })
}

/// `PUBLIC_KEY=AMOUNT`.
fn parse_account(text: &str) -> anyhow::Result<GenesisAccount> {
    let (key, amount) =
        text.split_once('=').with_context(|| format!("--account {text:?}: expected PUBLIC_KEY=AMOUNT"))?;
    Ok(GenesisAccount {
        account: key.parse().map_err(|e| anyhow::anyhow!("--account {text:?}: {e}"))?,
        balance: amount.parse().with_context(|| format!("--account {text:?}: bad amount"))?,
    })
}

fn run_node(config: NodeConfig) -> anyhow::Result<()> {
    let ledger = ledger_from_config(&config)?;
    polylink_chain::run_node(config, ledger, |rpc| println!("rpc listening on http://{rpc}"))?;
    Ok(())
}

impl ChainCmd {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Dev {
                data_dir,
                rpc,
                p2p,
                block_interval_ms,
                accounts,
                commit_window_blocks,
                reveal_window_blocks,
                faucet_amount,
            } => {
                let path = data_dir.join("config.toml");
                let mut config = if path.exists() {
                    NodeConfig::load(&path)?
                } else {
                    std::fs::create_dir_all(&data_dir)
                        .with_context(|| format!("creating {}", data_dir.display()))?;
                    let mut spec = spec(
                        "polylink-dev",
                        1,
                        accounts,
                        (p2p.port(), rpc.port()),
                        block_interval_ms,
                        (commit_window_blocks, reveal_window_blocks),
                    )?;
                    // The faucet's own funded account, beside the dev accounts.
                    let mut genesis: Genesis = spec.genesis.clone().try_into().context("genesis")?;
                    genesis
                        .accounts
                        .push(GenesisAccount { account: faucet_key().public_key(), balance: DEV_BALANCE });
                    spec.genesis = genesis_value(&genesis)?;
                    let mut config =
                        configs(&spec, rand::rng())?.pop().context("dealer produced no config")?;
                    config.data_dir = PathBuf::from("data");
                    config.save(&path)?;
                    NodeConfig::load(&path)?
                };
                config.rpc = rpc;
                config.listen = p2p;
                if let Some(me) = config.validators.first_mut() {
                    me.address = p2p;
                }
                config.block_interval_ms = block_interval_ms;
                let genesis: Genesis = config.genesis.clone().try_into().context("genesis in config")?;
                let faucet = faucet_key();
                let funded = genesis.accounts.iter().any(|a| a.account == faucet.public_key());
                let dev_accounts =
                    genesis.accounts.iter().filter(|a| a.account != faucet.public_key()).count();
                print_dev_accounts(&config.chain_id, u32::try_from(dev_accounts).unwrap_or(0));
                if funded && faucet_amount > 0 {
                    println!(
                        "Faucet: POST /faucet {{\"account\": \"<hex>\"}} sends {faucet_amount} base units, once per account"
                    );
                    config.faucet =
                        Some(FaucetConfig { secret_seed: hex::encode(faucet.seed()), amount: faucet_amount });
                }
                run_node(config)
            }
            Self::TestnetInit {
                validators,
                out,
                chain_id,
                p2p_base_port,
                rpc_base_port,
                block_interval_ms,
                accounts,
            } => {
                if validators == 0 {
                    bail!("--validators must be at least 1");
                }
                let chain_id =
                    chain_id.unwrap_or_else(|| format!("polylink-testnet-{:08x}", rand::random::<u32>()));
                let spec = spec(
                    &chain_id,
                    validators,
                    accounts,
                    (p2p_base_port, rpc_base_port),
                    block_interval_ms,
                    (None, None),
                )?;
                for path in testnet_init(&spec, &out, rand::rng())? {
                    println!("{}", path.display());
                }
                print_dev_accounts(&chain_id, accounts);
                Ok(())
            }
            Self::Keygen { key } => {
                let (identity, created) = Identity::load_or_create(&key)?;
                let line = serde_json::json!({
                    "event": if created { "created" } else { "loaded" },
                    "key_file": key,
                    "public_key": identity.public_key_hex(),
                });
                println!("{line}");
                Ok(())
            }
            Self::Genesis { chain_id, validators, accounts, block_interval_ms, out } => {
                let validators =
                    validators.iter().map(|v| parse_validator(v)).collect::<anyhow::Result<Vec<_>>>()?;
                let accounts =
                    accounts.iter().map(|a| parse_account(a)).collect::<anyhow::Result<Vec<_>>>()?;
                let genesis = Genesis { chain_id: chain_id.clone(), params: Default::default(), accounts };
                // Build it once, so a bad genesis is refused here rather than by every node.
                genesis.build().map_err(|e| anyhow::anyhow!("genesis refused: {e}"))?;
                let file = NetworkFile {
                    chain_id,
                    block_interval_ms,
                    mempool_capacity: 10_000,
                    validators,
                    genesis: genesis_value(&genesis)?,
                };
                file.save(&out)?;
                println!("{}", serde_json::json!({"event": "written", "network_file": out}));
                Ok(())
            }
            Self::Dkg { key, network, listen, rpc, data_dir, timeout_s, out, attempt } => {
                let (identity, _) = Identity::load_or_create(&key)?;
                let file = NetworkFile::load(&network)?;
                let me = identity.public_key_hex();
                let entry = file.validator(&me).with_context(|| {
                    format!(
                        "this validator ({me}) is not in {}; add it with `chain genesis`",
                        network.display()
                    )
                })?;
                let listen = listen.unwrap_or(entry.address);
                let dealt = polylink_chain::dkg::run(polylink_chain::dkg::Ceremony {
                    chain_id: file.chain_id.clone(),
                    validators: file.validators.clone(),
                    me: identity.private_key.clone(),
                    listen,
                    timeout: std::time::Duration::from_secs(timeout_s),
                    storage: data_dir.join("dkg"),
                    attempt,
                })?;
                let config = file.node_config(&identity, &dealt, listen, rpc, data_dir);
                config.keys().context("the ceremony's share does not fit the committee")?;
                config.save(&out)?;
                let line = serde_json::json!({
                    "event": "dealt",
                    "config": out,
                    "public_key": me,
                    "output": dealt.output_digest,
                });
                println!("{line}");
                Ok(())
            }
            Self::Run { config } => run_node(NodeConfig::load(&config)?),
            Self::Status { rpc } => {
                let status = block_on(async { Ok(Client::new(&rpc)?.status().await?) })?;
                println!("{}", serde_json::to_string_pretty(&status)?);
                Ok(())
            }
            Self::Params { rpc } => {
                let params = block_on(async { Ok(Client::new(&rpc)?.params().await?) })?;
                println!("{}", serde_json::to_string_pretty(&params)?);
                Ok(())
            }
        }
    }
}
