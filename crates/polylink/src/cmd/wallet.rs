//! `polylink wallet new|show|balance|transfer|allow`, and the signing/sending helper the stake
//! and registration commands share.
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use polylink_chain::rpc::{Client, Signer, TxOutcome, TxReceipt};
use polylink_types::{Allow, Amount, ApiKey, PublicKey, SecretKey, Transfer, TxKind};
use serde::{Deserialize, Serialize};
use std::{path::PathBuf, time::Duration};

/// Where the wallet key lives and which node to talk to.
#[derive(Args, Clone, Debug)]
pub struct WalletOpts {
    /// Wallet file (a JSON file holding the secret key seed).
    #[arg(long, env = "POLYLINK_WALLET", default_value = "polylink-wallet.json", global = true)]
    pub wallet: PathBuf,
    /// The node's RPC address.
    #[arg(long, env = "POLYLINK_RPC", default_value = "http://127.0.0.1:8645", global = true)]
    pub rpc: String,
    /// Return after submitting instead of waiting for the transaction to be finalized.
    #[arg(long, global = true)]
    pub no_wait: bool,
}

#[derive(Serialize, Deserialize)]
struct WalletFile {
    secret_seed: String,
    public_key: String,
}

impl WalletOpts {
    /// Loads the wallet's secret key.
    pub fn key(&self) -> anyhow::Result<SecretKey> {
        let text = std::fs::read_to_string(&self.wallet).with_context(|| {
            format!("reading wallet {} (create one with `polylink wallet new`)", self.wallet.display())
        })?;
        let file: WalletFile = serde_json::from_str(&text).context("parsing wallet file")?;
        let seed: [u8; 32] = hex::decode(file.secret_seed.trim())
            .context("wallet seed is not hex")?
            .try_into()
            .map_err(|_| anyhow::anyhow!("wallet seed must be 32 bytes"))?;
        Ok(SecretKey::from_seed(seed))
    }

    /// A client of the configured node.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.rpc)?)
    }
}

/// Wallet subcommands.
#[derive(Subcommand, Debug)]
pub enum WalletCmd {
    /// Create a wallet file with a fresh key (or import a 32-byte hex seed).
    New {
        /// Import this secret seed (hex) instead of generating one, e.g. a dev account's.
        #[arg(long)]
        secret: Option<String>,
        /// Overwrite an existing wallet file.
        #[arg(long)]
        force: bool,
    },
    /// Print the wallet's public key (its account address).
    Show,
    /// Print an account's balance, nonce and stake (the wallet's by default).
    Balance {
        /// Account to show instead of the wallet's.
        #[arg(long)]
        account: Option<PublicKey>,
    },
    /// Send tokens.
    Transfer {
        /// Receiver's public key (hex).
        #[arg(long)]
        to: PublicKey,
        /// Base units to send.
        #[arg(long)]
        amount: Amount,
    },
    /// Let a gateway open tasks paid from this wallet's balance, up to a limit, and print the API
    /// key to call it with (the key spends only this allowance; the wallet key stays here).
    /// Running it again replaces the allowance and makes a new key; `--limit 0` revokes it.
    Allow {
        /// The gateway's account (its public key; `GET /gateways` on a node lists them).
        #[arg(long)]
        gateway: PublicKey,
        /// Most base units the gateway may hold in escrow or have charged, from now on.
        #[arg(long)]
        limit: Amount,
    },
}

impl WalletCmd {
    /// Runs the subcommand.
    pub fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        match self {
            Self::New { secret, force } => {
                if opts.wallet.exists() && !force {
                    bail!("{} exists; pass --force to overwrite", opts.wallet.display());
                }
                let seed: [u8; 32] = match secret {
                    Some(hex_seed) => hex::decode(hex_seed.trim())
                        .context("secret is not hex")?
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("secret must be 32 bytes"))?,
                    None => rand::random(),
                };
                let key = SecretKey::from_seed(seed);
                let file =
                    WalletFile { secret_seed: hex::encode(seed), public_key: key.public_key().to_string() };
                if let Some(dir) = opts.wallet.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&opts.wallet, serde_json::to_string_pretty(&file)?)
                    .with_context(|| format!("writing {}", opts.wallet.display()))?;
                println!("{}", key.public_key());
                Ok(())
            }
            Self::Show => {
                println!("{}", opts.key()?.public_key());
                Ok(())
            }
            Self::Balance { account } => {
                let account = match account {
                    Some(account) => account,
                    None => opts.key()?.public_key(),
                };
                let answer = block_on(async { Ok(opts.client()?.account(&account).await?) })?;
                println!("{}", serde_json::to_string_pretty(&answer)?);
                Ok(())
            }
            Self::Transfer { to, amount } => send(opts, TxKind::Transfer(Transfer { to, amount })),
            Self::Allow { gateway, limit } => {
                let key = ApiKey::new(opts.key()?.public_key(), rand::random());
                send(opts, TxKind::Allow(Allow { gateway, limit, key_hash: key.hash() }))?;
                if limit > 0 {
                    eprintln!("call the gateway with `Authorization: Bearer <api_key>`; keep the key secret");
                    println!(
                        "{}",
                        serde_json::json!({ "api_key": key.to_string(), "gateway": gateway, "limit": limit.to_string() })
                    );
                }
                Ok(())
            }
        }
    }
}

/// Runs `future` on a small runtime (the CLI is otherwise synchronous).
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

/// Signs `kind` with the wallet's key and next nonce, submits it and (unless `--no-wait`) waits
/// for the finalized block that includes it, printing its events.
pub fn send(opts: &WalletOpts, kind: TxKind) -> anyhow::Result<()> {
    let key = opts.key()?;
    block_on(async {
        let signer = Signer::connect(opts.client()?, key).await?;
        if opts.no_wait {
            println!("submitted {}", signer.send(kind).await?);
            return Ok(());
        }
        let included = signer.send_and_wait(kind, Duration::from_secs(60)).await?;
        println!("submitted {}", included.tx_id);
        let receipt =
            TxReceipt { tx_id: included.tx_id, outcome: TxOutcome::Applied { events: included.events } };
        println!("finalized at height {}: {}", included.height, serde_json::to_string(&receipt)?);
        Ok(())
    })
}
