//! `polylink bench`: prompt (prefill) and decode speed and peak memory of the inference engine
//! on a GGUF, optionally against llama.cpp on the same file, prompt and thread count, measured
//! in the same run (the llama.cpp side is the benchmark-only `tools/llama-ref` harness).
//! `polylink bench tiqe` measures the TIQE cascade instead (see `cmd::tiqe`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use polylink_infer::{LogitsMode, Model, ShardInput, sample::argmax};

/// A ~1,200-character paragraph (about 240 tokens): the benchmark prompt.
const PROMPT: &str = "The history of long-distance communication is a story of trading speed against reliability. \
Early optical telegraphs relayed coded positions of wooden arms from hilltop to hilltop, and a message could cross \
a country in an hour when the weather was clear, yet fog or darkness stopped the whole line. The electrical telegraph \
removed the dependence on sight, but it introduced new problems: long submarine cables distorted pulses so badly that \
operators had to slow down to a few words per minute, until engineers understood the physics of signal dispersion and \
designed better cables and receivers. Telephone networks later carried voices instead of codes, and they grew into \
vast hierarchies of exchanges that routed calls through switches, first operated by hand and then by relays and \
electronics. Packet switching changed the picture again by cutting every message into small independent pieces that \
travel separately and are reassembled at the destination, which let networks survive the loss of individual links. \
Today, devices at the edge of the network, such as phones, laptops and small servers, hold a surprising share of the \
world's computing power, and researchers are asking whether those scattered machines could cooperate to run large \
models that once needed a data centre. Explain the main trade-offs in a few sentences.";

/// Measure prompt and decode speed (and compare with llama.cpp), or the TIQE cascade.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchCmd {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// The GGUF model file.
    #[arg(long, required = true)]
    model: Option<PathBuf>,
    /// Prompt text file [default: a built-in ~240-token paragraph].
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Threads, for both engines.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Decode steps after the prompt.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Runs per engine; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also run llama.cpp (tools/llama-ref, built on first use) and print the ratios.
    #[arg(long)]
    vs_llama_cpp: bool,
    /// The llama.cpp harness's source directory [default: tools/llama-ref in the working
    /// directory or one above it].
    #[arg(long, env = "POLYLINK_LLAMA_REF")]
    llama_ref: Option<PathBuf>,
}

/// Benchmarks other than the engine's speed.
#[derive(Subcommand)]
enum BenchWhat {
    /// TIQE on honest and degraded answers: AUC, catch rate at 1% false positives per attack,
    /// judge-call rate, latency per evaluation by stage.
    Tiqe(super::tiqe::BenchArgs),
    /// Honest traffic through a whole local network (`polylink up`) with the `openai` client:
    /// every task settles, no honest party loses stake, every charge is exact.
    Traffic(super::traffic::TrafficArgs),
    /// A whole local network under steady traffic for a long time, with a worker killed and a
    /// validator and the chain node restarted in turn: every task settles, no honest party is
    /// slashed, the supply is conserved; latency and memory reported per round.
    Soak(super::soak::SoakArgs),
}

/// One engine's figures.
struct Row {
    prompt_tokens: usize,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    peak_rss_bytes: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl BenchCmd {
    pub fn run(self) -> anyhow::Result<()> {
        match self.what {
            Some(BenchWhat::Tiqe(args)) => return args.run(),
            Some(BenchWhat::Traffic(args)) => return args.run(),
            Some(BenchWhat::Soak(args)) => return args.run(),
            None => {}
        }
        let runs = self.runs.max(1);
        let prompt = match &self.prompt_file {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            None => PROMPT.to_string(),
        };
        let ours = self.bench_ours(&prompt, runs)?;
        println!(
            "model {}  threads {}  prompt {} tokens  decode {} tokens  runs {runs} (medians)",
            self.model().display(),
            self.threads,
            ours.prompt_tokens,
            self.decode_tokens
        );
        println!("{:<12} {:>14} {:>14} {:>14}", "engine", "prompt tok/s", "decode tok/s", "peak RSS MB");
        print_row("polylink", &ours);
        if self.vs_llama_cpp {
            let theirs = self.bench_llama(&prompt, runs)?;
            print_row("llama.cpp", &theirs);
            if theirs.prompt_tokens != ours.prompt_tokens {
                println!(
                    "warning: prompt token counts differ ({} vs {})",
                    ours.prompt_tokens, theirs.prompt_tokens
                );
            }
            println!(
                "{:<12} {:>13.2}x {:>13.2}x {:>13.2}x",
                "ratio",
                ours.prefill_tok_s / theirs.prefill_tok_s,
                ours.decode_tok_s / theirs.decode_tok_s,
                ours.peak_rss_bytes as f64 / theirs.peak_rss_bytes.max(1) as f64
            );
        }
        Ok(())
    }

    /// `--model` (clap requires it unless a subcommand is given).
    fn model(&self) -> &Path {
        self.model.as_deref().unwrap_or(Path::new(""))
    }

    fn bench_ours(&self, prompt: &str, runs: usize) -> anyhow::Result<Row> {
        let model = Model::open(self.model(), None, self.threads)
            .with_context(|| format!("loading {}", self.model().display()))?;
        let ids = model.tokenizer.encode(prompt);
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        let mut logits = Vec::new();
        for _ in 0..runs {
            let mut kv = model.shard.new_session(ids.len() + self.decode_tokens + 1);
            let t0 = std::time::Instant::now();
            model.shard.forward(&mut kv, ShardInput::Tokens(&ids), LogitsMode::Last, &mut logits)?;
            let mut next = argmax(&logits);
            prefill.push(ids.len() as f64 / t0.elapsed().as_secs_f64());
            let t1 = std::time::Instant::now();
            for _ in 0..self.decode_tokens {
                model.shard.forward(&mut kv, ShardInput::Tokens(&[next]), LogitsMode::Last, &mut logits)?;
                next = argmax(&logits);
            }
            decode.push(self.decode_tokens as f64 / t1.elapsed().as_secs_f64());
        }
        Ok(Row {
            prompt_tokens: ids.len(),
            prefill_tok_s: median(prefill),
            decode_tok_s: median(decode),
            peak_rss_bytes: polylink_node::platform::peak_rss_bytes(),
        })
    }

    fn bench_llama(&self, prompt: &str, runs: usize) -> anyhow::Result<Row> {
        let exe = llama_ref(self.llama_ref.clone())?;
        let prompt_file =
            std::env::temp_dir().join(format!("polylink-bench-prompt-{}.txt", std::process::id()));
        std::fs::write(&prompt_file, prompt)?;
        let mut rows = Vec::new();
        for _ in 0..runs {
            let out = Command::new(&exe)
                .arg("bench")
                .arg(self.model())
                .arg(&prompt_file)
                .arg(self.threads.to_string())
                .arg(self.decode_tokens.to_string())
                .output()
                .with_context(|| format!("running {}", exe.display()))?;
            if !out.status.success() {
                bail!("llama-ref failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let line = String::from_utf8_lossy(&out.stdout);
            rows.push((
                field(&line, "prompt_tokens")?,
                field(&line, "prefill_tok_s")?,
                field(&line, "decode_tok_s")?,
                field(&line, "peak_rss_bytes")?,
            ));
        }
        let _ = std::fs::remove_file(&prompt_file);
        Ok(Row {
            prompt_tokens: rows[0].0 as usize,
            prefill_tok_s: median(rows.iter().map(|r| r.1).collect()),
            decode_tok_s: median(rows.iter().map(|r| r.2).collect()),
            peak_rss_bytes: median(rows.iter().map(|r| r.3).collect()) as u64,
        })
    }
}

fn print_row(name: &str, r: &Row) {
    println!(
        "{name:<12} {:>14.1} {:>14.1} {:>14.1}",
        r.prefill_tok_s,
        r.decode_tok_s,
        r.peak_rss_bytes as f64 / 1e6
    );
}

/// A numeric field of the harness's one-line JSON output.
fn field(json: &str, key: &str) -> anyhow::Result<f64> {
    let pat = format!("\"{key}\":");
    let start = json.find(&pat).with_context(|| format!("llama-ref output lacks {key}: {json}"))? + pat.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().with_context(|| format!("llama-ref {key} is not a number"))
}

/// The llama.cpp harness binary in `dir` (or the checkout's), built (with the host's SIMD) on
/// first use.
fn llama_ref(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir,
        None => polylink_models::find_installed("tools/llama-ref", |d| d.join("Cargo.toml").is_file())
            .context("no tools/llama-ref in or above the working directory: pass --llama-ref")?,
    };
    let exe = dir.join("target/release/llama-ref");
    if exe.exists() {
        return Ok(exe);
    }
    eprintln!(
        "building the llama.cpp reference in {} (needs cmake and libclang; several minutes)",
        dir.display()
    );
    let status = Command::new("cargo")
        .args(["build", "--release"])
        .current_dir(&dir)
        .env("RUSTFLAGS", "-C target-cpu=native")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("running cargo for tools/llama-ref")?;
    if !status.success() || !exe.exists() {
        bail!("building tools/llama-ref failed (apt-get install -y cmake libclang-dev)");
    }
    Ok(exe)
}
