//! `polylink wallet new|show|balance|transfer|allow|withdraw|ask`, and the signing/sending helper
//! the stake and registration commands share.
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use polylink_chain::rpc::{Client, Signer, TxOutcome, TxReceipt};
use polylink_protocol::{GatewayInfo, INFO_PATH};
use polylink_types::{
    Allow, Amount, ApiKey, Hash32, PublicKey, SecretKey, Transfer, TxKind, VOUCHER_HEADER, Voucher,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// Lock a deposit for one gateway, which it opens this wallet's tasks from, and print the API
    /// key to call it with (the key spends only this deposit; the wallet key stays here). With
    /// `--signed-only` no key is made: the deposit pays only for requests this wallet signs
    /// (`polylink wallet ask`). Running it again sets the deposit anew (and makes a new key): a
    /// raise is locked at once, a cut is released two minutes later by `polylink wallet withdraw`;
    /// `--limit 0` empties it.
    Allow {
        /// The gateway's account (its public key; `GET /gateways` on a node lists them).
        #[arg(long)]
        gateway: PublicKey,
        /// Base units the deposit holds from now on (escrow of open tasks and what they are charged
        /// come out of it; their unused escrow comes back).
        #[arg(long)]
        limit: Amount,
        /// No API key: the deposit pays only for requests this wallet signs.
        #[arg(long)]
        signed_only: bool,
    },
    /// Release what deposits cut more than two minutes ago hold beyond their new level (and
    /// matured unbonded stake) to the balance.
    Withdraw,
    /// Ask a gateway, paying from this wallet's deposit there with a request this wallet signs
    /// (no API key): prints the answer, then the task and its charge.
    Ask {
        /// The gateway (`http://host:port`).
        #[arg(long)]
        gateway_url: String,
        /// The model, as the gateway names it [default: the first it serves].
        #[arg(long)]
        model: Option<String>,
        /// Most tokens of the answer.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// Sampling temperature (0: greedy).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Most base units the request may take from the deposit, escrow and fee [default: its
        /// largest escrow at twice the current price, plus the fee].
        #[arg(long)]
        max_spend: Option<Amount>,
        /// Print the answer as it is generated.
        #[arg(long)]
        stream: bool,
        /// The question.
        prompt: String,
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
                polylink_chain::secret_file::write_private(
                    &opts.wallet,
                    serde_json::to_string_pretty(&file)?.as_bytes(),
                )
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
            Self::Allow { gateway, limit, signed_only: true } => {
                send(opts, TxKind::Allow(Allow { gateway, limit, key_hash: Hash32::ZERO }))?;
                eprintln!("the deposit pays only for requests this wallet signs: `polylink wallet ask`");
                Ok(())
            }
            Self::Allow { gateway, limit, signed_only: false } => {
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
            Self::Withdraw => send(opts, TxKind::Withdraw),
            Self::Ask { gateway_url, model, max_tokens, temperature, max_spend, stream, prompt } => {
                let ask = Ask { gateway_url, model, max_tokens, temperature, max_spend, stream, prompt };
                block_on(ask.run(opts))
            }
        }
    }
}

/// How long a signed request's voucher lives, ms (the chain refuses it after).
const VOUCHER_TTL_MS: u64 = 120_000;

/// `polylink wallet ask`'s arguments.
struct Ask {
    gateway_url: String,
    model: Option<String>,
    max_tokens: u32,
    temperature: f32,
    max_spend: Option<Amount>,
    stream: bool,
    prompt: String,
}

impl Ask {
    /// Signs the request for the gateway the chain knows, sends it and prints the answer.
    async fn run(self, opts: &WalletOpts) -> anyhow::Result<()> {
        let key = opts.key()?;
        let base = self.gateway_url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        let info: GatewayInfo = http
            .get(format!("{base}{INFO_PATH}"))
            .send()
            .await
            .with_context(|| format!("asking {base} what it bills"))?
            .error_for_status()?
            .json()
            .await?;
        let (Some(gateway_chain), Some(gateway)) = (info.chain_id, info.account) else {
            bail!("{base} bills no chain, so it takes no signed requests");
        };
        let chain = opts.client()?;
        let status = chain.status().await?;
        if status.chain_id != gateway_chain {
            bail!(
                "{base} bills chain {gateway_chain}, the node at {} is chain {}",
                opts.rpc,
                status.chain_id
            );
        }
        if !chain.gateways().await?.iter().any(|g| g.account == gateway) {
            bail!("{base} says it is gateway {gateway}, which is not registered on chain {gateway_chain}");
        }
        let (name, model) = match &self.model {
            Some(name) => (
                name.clone(),
                *info.models.get(name).with_context(|| {
                    format!(
                        "{base} serves no model {name}; it serves {:?}",
                        info.models.keys().collect::<Vec<_>>()
                    )
                })?,
            ),
            None => info
                .models
                .iter()
                .next()
                .map(|(n, id)| (n.clone(), *id))
                .context("the gateway serves no model")?,
        };
        let mut request = serde_json::json!({
            "model": name,
            "messages": [{"role": "user", "content": self.prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": self.stream,
        });
        if self.stream {
            request["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        let body = serde_json::to_vec(&request)?;
        let max_spend = match self.max_spend {
            Some(cap) => cap,
            None => {
                // A prompt has at most one token per byte of the body, plus its chat template's.
                let price = chain.model(model).await?.price;
                let fee = chain.params().await?.params.tx_fee;
                let tokens = Amount::try_from(body.len())? + Amount::from(self.max_tokens) + 64;
                tokens.saturating_mul(price).saturating_mul(2).saturating_add(fee)
            }
        };
        let voucher = Voucher {
            payer: key.public_key(),
            gateway,
            model,
            request_hash: Hash32::digest(&[body.as_slice()]),
            max_spend,
            expires_ms: status.time_ms.max(now_ms()).saturating_add(VOUCHER_TTL_MS),
            nonce: rand::random(),
        }
        .sign(&key, &gateway_chain);
        let mut response = http
            .post(format!("{base}/v1/chat/completions"))
            .header(VOUCHER_HEADER, voucher.to_header())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("sending the request to {base}"))?;
        let status_code = response.status();
        let header = |r: &reqwest::Response, name: &str| {
            r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
        };
        let task = header(&response, "x-polylink-task-id");
        if !status_code.is_success() {
            bail!("{base} answered {status_code}: {}", response.text().await.unwrap_or_default());
        }
        let mut text = String::new();
        let (mut charge, mut tokens) = (header(&response, "x-polylink-charge"), Value::Null);
        if self.stream {
            let mut pending = String::new();
            while let Some(chunk) = response.chunk().await? {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        if data == "[DONE]" {
                            continue;
                        }
                        let value: Value = serde_json::from_str(data)?;
                        if let Some(error) = value.get("error") {
                            bail!("the stream failed: {error}");
                        }
                        if let Some(c) = value["polylink"]["charge"].as_str() {
                            charge = c.to_string();
                        }
                        if !value["usage"]["total_tokens"].is_null() {
                            tokens = value["usage"]["total_tokens"].clone();
                        }
                        let piece = value["choices"][0]["delta"]["content"].as_str().unwrap_or("");
                        print!("{piece}");
                        std::io::Write::flush(&mut std::io::stdout())?;
                        text.push_str(piece);
                    }
                }
            }
            println!();
        } else {
            let value: Value = response.json().await?;
            text = value["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string();
            tokens = value["usage"]["total_tokens"].clone();
            println!("{text}");
        }
        eprintln!(
            "{}",
            serde_json::json!({ "task": task, "payer": key.public_key(), "gateway": gateway, "model": model,
                "max_spend": max_spend.to_string(), "charge": charge, "tokens": tokens })
        );
        Ok(())
    }
}

/// Wall-clock ms since the Unix epoch (the chain's block times are on the same clock).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
