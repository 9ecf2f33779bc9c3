//! `polylink bench-pipeline`: a 2-stage pipeline against one device, on this machine.
//!
//! Each emulated device is a `polylink stage` process pinned to its own core (`taskset`) with one
//! compute thread, so two devices never share a core; links are loopback. It measures the
//! per-token latency of one session (the pipeline's overhead over one device), the aggregate
//! tokens/s of several concurrent sessions (where a pipeline earns its keep: both devices work
//! at once on different sessions), and the time to recover when a stage process is killed.

use anyhow::{Context, bail};
use clap::Args;
use commonware_runtime::{Runner, Supervisor};
use futures::future::join_all;
use polylink_node::launch::{StageLaunch, StageProcess};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::SampleSpec;
use std::path::PathBuf;
use std::time::Instant;

const GREEDY: SampleSpec = SampleSpec { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 };

#[derive(Args)]
pub struct BenchPipelineCmd {
    /// The model's GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Tokens generated per session.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Concurrent sessions for the throughput figure.
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// Runs per figure; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl BenchPipelineCmd {
    pub fn run(self) -> anyhow::Result<()> {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            bail!("the pipeline benchmark pins two devices to two cores; this machine has one");
        }
        let exe = std::env::current_exe()?;
        let gguf = polylink_infer::Gguf::open(&self.model)?;
        let n_layers = polylink_infer::HParams::from_gguf(&gguf)?.n_layers;
        let half = n_layers / 2;
        let launch = |seed: u8, layers: Option<std::ops::Range<usize>>, core: usize| {
            self.launch(&exe, seed, layers, core)
        };
        let prompt: Vec<u32> = (0..32).map(|i| 100 + i * 7).collect();

        println!(
            "model {} ({n_layers} layers), {} tokens per session, 1 thread per device",
            self.model.display(),
            self.tokens
        );
        let single = launch(1, None, 0).context("starting the single device")?;
        let first = launch(2, Some(0..half), 0).context("starting stage 1")?;
        let second = launch(3, Some(half..n_layers), 1).context("starting stage 2")?;
        let single_spec = vec![single.spec.clone()];
        let pipe_spec = vec![first.spec.clone(), second.spec.clone()];
        let (tokens, sessions, runs) = (self.tokens, self.sessions, self.runs.max(1));
        let prompt_ref = &prompt;

        let figures = commonware_runtime::tokio::Runner::default().start(|context| async move {
            let head = |stages: Vec<StageSpec>, name: &'static str| {
                PipelineHead::new(
                    context.child(name),
                    key_from_seed(&[9; 32])?,
                    stages,
                    Box::new(StandbyList::default()),
                    HeadConfig::default(),
                )
            };
            let single = head(single_spec, "single")?;
            let pipe = head(pipe_spec, "pipeline")?;
            let mut out = Vec::new();
            for (label, head) in [("one device", &single), ("2-stage pipeline", &pipe)] {
                let mut latency = Vec::new();
                let mut aggregate = Vec::new();
                for _ in 0..runs {
                    let (_, decode_s) = session(head, prompt_ref, tokens).await?;
                    latency.push(decode_s * 1e3 / (tokens - 1) as f64);
                    let start = Instant::now();
                    let all = join_all((0..sessions).map(|_| session(head, prompt_ref, tokens))).await;
                    for result in all {
                        result?;
                    }
                    aggregate.push((sessions * tokens) as f64 / start.elapsed().as_secs_f64());
                }
                out.push((label, median(latency), median(aggregate)));
            }
            Ok::<_, anyhow::Error>(out)
        })?;
        let (single_ms, single_tps) = (figures[0].1, figures[0].2);
        println!("{:<18} {:>14} {:>22}", "", "ms/token (1)", format!("tok/s ({sessions} sessions)"));
        for (label, ms, tps) in &figures {
            println!("{label:<18} {ms:>14.2} {tps:>22.1}");
        }
        let (pipe_ms, pipe_tps) = (figures[1].1, figures[1].2);
        println!(
            "pipeline per-token overhead: {:+.1}% (target at most +10%)",
            (pipe_ms / single_ms - 1.0) * 100.0
        );
        println!(
            "pipeline aggregate throughput: {:.2}x one device (target at least 1.6x)",
            pipe_tps / single_tps
        );
        drop((single, first, second));
        self.failover(&exe, half, n_layers, &prompt)
    }

    /// One emulated device: a stage process with one thread, pinned to `core`.
    fn launch(
        &self,
        exe: &std::path::Path,
        seed: u8,
        layers: Option<std::ops::Range<usize>>,
        core: usize,
    ) -> anyhow::Result<StageProcess> {
        let launch =
            StageLaunch { exe, model: &self.model, layers, seed: [seed; 32], threads: 1, core: Some(core) };
        StageProcess::start(&launch).map_err(anyhow::Error::msg)
    }

    /// Kills the second stage in the middle of a session and times the step that recovers.
    fn failover(
        &self,
        exe: &std::path::Path,
        half: usize,
        n_layers: usize,
        prompt: &[u32],
    ) -> anyhow::Result<()> {
        let start = |seed: u8, layers: std::ops::Range<usize>, core: usize| {
            self.launch(exe, seed, Some(layers), core)
        };
        let first = start(4, 0..half, 0)?;
        let second = start(5, half..n_layers, 1)?;
        let spare = start(6, half..n_layers, 1)?;
        let stages = vec![first.spec.clone(), second.spec.clone()];
        let standby = StandbyList(vec![spare.spec.clone()]);
        let tokens = self.tokens.max(16);
        let (normal_ms, recovery_ms) =
            commonware_runtime::tokio::Runner::default().start(|context| async move {
                let head = PipelineHead::new(
                    context.child("head"),
                    key_from_seed(&[9; 32])?,
                    stages,
                    Box::new(standby),
                    HeadConfig::default(),
                )?;
                let mut s = head.open();
                let mut last = head.step(&mut s, prompt, GREEDY).await?;
                let mut steps = Vec::new();
                let mut second = Some(second);
                let mut recovery = 0.0;
                for i in 1..tokens {
                    let kill = i == tokens / 2;
                    if kill && let Some(p) = second.take() {
                        p.kill();
                    }
                    let t = Instant::now();
                    last = head.step(&mut s, &[last], GREEDY).await?;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    if kill {
                        recovery = ms;
                    } else {
                        steps.push(ms);
                    }
                }
                head.close(s).await;
                Ok::<_, anyhow::Error>((median(steps), recovery))
            })?;
        println!(
            "fail-over: the step after killing stage 2 took {recovery_ms:.0} ms (a normal step {normal_ms:.1} ms; target at most 2000 ms), replaying {} positions",
            prompt.len() + tokens / 2
        );
        drop((first, spare));
        Ok(())
    }
}

/// One greedy session of `tokens` tokens; returns (prefill seconds, decode seconds).
async fn session<E>(head: &PipelineHead<E>, prompt: &[u32], tokens: usize) -> anyhow::Result<(f64, f64)>
where
    E: commonware_runtime::Supervisor
        + commonware_runtime::Clock
        + commonware_runtime::Network
        + rand_core::CryptoRng,
{
    let mut s = head.open();
    let t = Instant::now();
    let mut last = head.step(&mut s, prompt, GREEDY).await?;
    let prefill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 1..tokens {
        last = head.step(&mut s, &[last], GREEDY).await?;
    }
    let decode = t.elapsed().as_secs_f64();
    head.close(s).await;
    Ok((prefill, decode))
}
