//! `polylink tiqe`: score one answer with the TIQE cascade, train the cross-encoder head, and
//! benchmark the cascade on honest and degraded answers generated with the project's models.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use polylink_models::{GEMMA3_270M, MINILM_L6_V2, SMOLLM2_135M};
use polylink_tiqe::lab::{self, Kind, SetSpec, Substitutes};
use polylink_tiqe::{
    CascadeConfig, CrossEncoder, Files, Finish, Generation, Head, MiniLmFiles, SHIPPED_HEAD, Submission,
    open_cascade, open_registered,
};

/// TIQE evaluators: score, train, bench.
#[derive(Subcommand)]
pub enum TiqeCmd {
    /// Score one (prompt, output) pair; prints each stage and the final score as JSON.
    Score(ScoreArgs),
    /// Generate training data with SmolLM2 and fit the cross-encoder head (seeded).
    Train(TrainArgs),
    /// Same as `polylink bench tiqe`.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum FinishArg {
    Eos,
    Length,
}

/// Options shared by every subcommand.
#[derive(Args)]
pub struct Common {
    /// Cross-encoder head (its sha256 must be in SHA256SUMS beside it) [default: the head built
    /// into this binary; `train` writes head-minilm.json in the data directory].
    #[arg(long)]
    head: Option<PathBuf>,
    /// TIQE data directory (prompts, heads) [default: data/tiqe beside the binary
    /// (../share/polylink/data/tiqe or data/tiqe) or in the working directory or one above it].
    #[arg(long, env = "POLYLINK_TIQE_DATA")]
    data: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

impl Common {
    /// The head to score with: `--head`, else the built-in one.
    fn head(&self) -> anyhow::Result<Head> {
        Ok(match &self.head {
            Some(path) => Head::load(path)?,
            None => Head::shipped()?,
        })
    }

    /// `name` in the data directory, or `given` when the flag was passed.
    fn data_file(&self, given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
        if let Some(path) = given {
            return Ok(path);
        }
        let dir = match &self.data {
            Some(dir) => dir.clone(),
            None => polylink_models::find_installed("data/tiqe", |d| d.join("SHA256SUMS").is_file())
                .context("no data/tiqe beside the binary or above the working directory: pass --data")?,
        };
        Ok(dir.join(name))
    }
}

/// `polylink tiqe score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// The registered model's GGUF [default: SmolLM2-135M-Instruct].
    #[arg(long)]
    model: Option<PathBuf>,
    /// The user's message.
    #[arg(long)]
    prompt: String,
    /// The worker's answer.
    #[arg(long)]
    output: String,
    /// Sampling temperature the task asked for (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k the task sampled with (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// The task's max_tokens.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// How the worker says the answer ended.
    #[arg(long, value_enum, default_value = "eos")]
    finish: FinishArg,
    /// sha256 of the output recorded on chain (hex); checked before scoring.
    #[arg(long)]
    output_sha256: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// `polylink tiqe train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Prompts, one per line [default: prompts-train.txt in the data directory].
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Most tokens per generated answer.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Seed of the degradations.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Keep the generated answers in this file and reuse them on the next run (same model and
    /// max_tokens); without it every run decodes them again.
    #[arg(long)]
    answers_cache: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `polylink bench tiqe` (also `polylink tiqe bench`).
#[derive(Args)]
pub struct BenchArgs {
    /// Prompts, one per line, none of them used in training [default: prompts-bench.txt in the
    /// data directory].
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Use only the first N prompts.
    #[arg(long)]
    limit: Option<usize>,
    /// Most tokens per generated answer.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Layers the dropped-layers worker skips (start..end).
    #[arg(long, default_value = "14..16")]
    drop_layers: String,
    /// Seed of the degradations and the calibration draw.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Also write every scored sample as JSON here.
    #[arg(long)]
    samples_json: Option<PathBuf>,
    /// Seeded sampled answers per temperature (0.7, 1.0, 1.3) for the verifiable-sampling table
    /// (0 skips it).
    #[arg(long, default_value_t = 500)]
    sampled: usize,
    /// Each cheat's seeded answers per temperature [default: as many as `--sampled`].
    #[arg(long)]
    sampled_cheats: Option<usize>,
    /// Where the seeded answers are cached between runs.
    #[arg(long, default_value = "tiqe-sampled-cache")]
    sampled_cache: PathBuf,
    /// Only the verifiable-sampling table, not the cascade's.
    #[arg(long)]
    sampled_only: bool,
    /// Answer sources of the sampled table (honest, substitute, dropped_layers, requantized;
    /// all when not given). With POLYLINK_PORTABLE_KERNELS=1 and `honest`, the cached answers
    /// are checked on the scalar kernels: the false-positive rate between SIMD paths.
    #[arg(long, value_delimiter = ',')]
    sampled_sources: Vec<String>,
    #[command(flatten)]
    common: Common,
}

/// The 1-minute load average (other work on the machine slows every figure).
fn load_average() -> String {
    polylink_node::platform::load_average().map_or_else(|| "?".into(), |l| l.to_string())
}

fn files(model: Option<PathBuf>) -> anyhow::Result<Files> {
    Ok(Files {
        registered: match model {
            Some(m) => m,
            None => polylink_models::gguf_path(SMOLLM2_135M)?,
        },
        minilm: MiniLmFiles {
            weights: polylink_models::path(MINILM_L6_V2, "model.safetensors")?,
            vocab: polylink_models::path(MINILM_L6_V2, "vocab.txt")?,
        },
    })
}

fn progress(msg: &str) {
    tracing::info!("{msg}");
}

impl TiqeCmd {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Score(a) => a.run(),
            Self::Train(a) => a.run(),
            Self::Bench(a) => a.run(),
        }
    }
}

impl ScoreArgs {
    fn run(self) -> anyhow::Result<()> {
        let files = files(self.model)?;
        let head = self.common.head()?;
        let (model, sha) = open_registered(&files, self.common.threads)?;
        let cascade = open_cascade(&files, model, sha, head, CascadeConfig::default(), self.common.threads)?;
        let output_sha256 = match self.output_sha256 {
            Some(h) => Some(
                <[u8; 32]>::try_from(hex::decode(&h)?.as_slice())
                    .context("--output-sha256 needs 32 bytes")?,
            ),
            None => None,
        };
        let finish = match self.finish {
            FinishArg::Eos => Finish::Eos,
            FinishArg::Length => Finish::Length,
        };
        let sub = Submission {
            prompt: self.prompt,
            prompt_ids: None,
            output: self.output.into_bytes(),
            output_ids: None,
            output_sha256,
            model_sha256: Some(sha),
            generation: Generation {
                temperature: self.temperature,
                top_k: self.top_k,
                max_tokens: self.max_tokens,
                finish,
                ..Generation::default()
            },
        };
        let r = cascade.score_submission(sub)?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        Ok(())
    }
}

impl TrainArgs {
    fn run(self) -> anyhow::Result<()> {
        let files = files(None)?;
        let prompts = lab::read_prompts(&self.common.data_file(self.prompts.clone(), "prompts-train.txt")?)?;
        let out = self.common.data_file(self.common.head.clone(), SHIPPED_HEAD)?;
        let (model, _) = open_registered(&files, self.common.threads)?;
        let spec = SetSpec {
            kinds: lab::TRAIN_KINDS.to_vec(),
            subs: Substitutes { registered: files.registered.clone(), gemma: None, dropped: 1..2 },
            threads: self.common.threads,
            max_tokens: self.max_tokens,
            seed: self.seed,
            answers_cache: self.answers_cache,
        };
        let t0 = std::time::Instant::now();
        let samples = lab::generate_set(&model, &prompts, &spec, &mut |m| progress(m))?;
        let cross = CrossEncoder::open(&files.minilm, None, self.common.threads)?;
        let head = lab::train_head(&cross, &samples, self.seed, &mut |m| progress(m))?;
        lab::save_head(&head, &out)?;
        println!(
            "wrote {} ({} weights; rebuild to ship it) from {} samples in {:.0} s; {}",
            out.display(),
            head.w.len(),
            samples.len(),
            t0.elapsed().as_secs_f64(),
            head.trained
        );
        Ok(())
    }
}

impl BenchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let files = files(None)?;
        let mut prompts =
            lab::read_prompts(&self.common.data_file(self.prompts.clone(), "prompts-bench.txt")?)?;
        prompts.truncate(self.limit.unwrap_or(usize::MAX));
        let (a, b) = self.drop_layers.split_once("..").context("--drop-layers is start..end")?;
        let dropped = a.parse()?..b.parse()?;
        let head = self.common.head()?;
        let (model, sha) = open_registered(&files, self.common.threads)?;
        if self.sampled > 0 {
            super::tiqe_sampled::run(&super::tiqe_sampled::SampledSpec {
                model: &model,
                sha256: sha,
                registered: &files.registered,
                substitute: &polylink_models::gguf_path(GEMMA3_270M)?,
                dropped: dropped.clone(),
                prompts: &prompts,
                per_temperature: self.sampled,
                cheats_per_temperature: self.sampled_cheats.unwrap_or(self.sampled),
                max_tokens: self.max_tokens,
                seed: self.seed,
                cache: &self.sampled_cache,
                threads: self.common.threads,
                sources: &self.sampled_sources,
            })?;
        }
        if self.sampled_only {
            return Ok(());
        }
        let mut kinds = vec![Kind::Honest];
        kinds.extend(Kind::ATTACKS);
        let spec = SetSpec {
            kinds,
            subs: Substitutes {
                registered: files.registered.clone(),
                gemma: Some(polylink_models::gguf_path(GEMMA3_270M)?),
                dropped,
            },
            threads: self.common.threads,
            max_tokens: self.max_tokens,
            seed: self.seed,
            answers_cache: None,
        };
        let load_start = load_average();
        let t0 = std::time::Instant::now();
        let samples = lab::generate_set(&model, &prompts, &spec, &mut |m| progress(m))?;
        let gen_s = t0.elapsed().as_secs_f64();
        let cfg = CascadeConfig { seed: self.seed, ..CascadeConfig::default() };
        let cascade = open_cascade(&files, model.clone(), sha, head, cfg, self.common.threads)?;
        let scored = lab::score_all(&cascade, &model, &samples, &mut |m| progress(m))?;
        if let Some(p) = &self.samples_json {
            std::fs::write(p, serde_json::to_vec_pretty(&scored)?)?;
        }
        let s = lab::summarize(&scored);
        println!(
            "tiqe bench: {} held-out prompts, {} tasks, answers up to {} tokens, threads {}, \
             generation {gen_s:.0} s, load average {load_start} -> {}",
            prompts.len(),
            scored.len(),
            self.max_tokens,
            self.common.threads,
            load_average()
        );
        println!(
            "AUC honest vs all attacks: {:.4}; threshold at 1% false positives: score < {}",
            s.auc, s.threshold_at_1pct_fpr
        );
        println!(
            "| {:<16} | {:>4} | {:>6} | {:>12} | {:>15} | {:>17} |",
            "attack", "n", "AUC", "caught@1%FPR", "consistency AUC", "cross-encoder AUC"
        );
        println!("|{:-<18}|{:->6}|{:->8}|{:->14}|{:->17}|{:->19}|", "", "", "", "", "", "");
        for (name, (n, auc, caught)) in &s.per_attack {
            let stage = |st: &str| s.stage_auc.get(st).and_then(|m| m.get(name)).copied().unwrap_or(f64::NAN);
            println!(
                "| {name:<16} | {n:>4} | {auc:>6.4} | {:>11.1}% | {:>15.4} | {:>17.4} |",
                caught * 100.0,
                stage("consistency"),
                stage("cross_encoder")
            );
        }
        println!("judge called on {:.1}% of tasks", s.judge_rate * 100.0);
        println!("| {:<26} | {:>8} | {:>8} |", "latency per evaluation", "p50 ms", "p99 ms");
        println!("|{:-<28}|{:->10}|{:->10}|", "", "", "");
        for (label, key) in [
            ("model consistency", "consistency"),
            ("cross-encoder", "cross_encoder"),
            ("cheap stages together", "cheap"),
            ("judge (when called)", "judge"),
            ("whole evaluation", "total"),
        ] {
            if let Some((p50, p99)) = s.latency_ms.get(key) {
                println!("| {label:<26} | {p50:>8.1} | {p99:>8.1} |");
            }
        }
        println!("cheap stages scaled to a 128-token answer: p50 {:.1} ms", s.cheap_ms_per_128_tokens_median);
        println!("{}", serde_json::to_string(&s)?);
        Ok(())
    }
}
