//! `polylink bench-pipeline`: a 2-stage pipeline against one device, on this machine.
//!
//! Each emulated device is a `polylink stage` process pinned to its own core (`taskset`) with one
//! compute thread, so two devices never share a core; links are loopback, or with `--link` also
//! network namespaces joined by veth pairs with e.g. `tc netem` delay and rate limits. Both sides
//! run the same stage engine (which batches concurrent decode steps), so ratios compare like with
//! like. It measures the per-token latency of one session (the pipeline's overhead over one
//! device), the aggregate tokens/s of several concurrent sessions (where a pipeline earns its
//! keep: both devices work at once on different sessions), the time to first token of many
//! concurrent streams, and the time to recover when a stage process is killed.

use anyhow::{Context, bail};
use clap::Args;
use commonware_runtime::{Clock, Network, Runner, Supervisor};
use futures::future::join_all;
use polylink_node::launch::{StageLaunch, StageProcess};
use polylink_node::netem::EmulatedLan;
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::transport::key_from_seed;
use polylink_pipeline::wire::SampleSpec;
use rand_core::CryptoRng;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Concurrent streams (distinct prompts) for the time-to-first-token figure.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Tokens each of those streams generates.
    #[arg(long, default_value_t = 16)]
    stream_tokens: usize,
    /// First layer of the second stage (default: the planner's throughput split from this
    /// machine's measured layer and LM-head times).
    #[arg(long)]
    split: Option<usize>,
    /// Also measure over emulated links: each device in its own network namespace behind a veth
    /// pair with this qdisc on both ends, e.g. "netem delay 5ms rate 100mbit".
    #[arg(long)]
    link: Option<String>,
    /// Runs per figure; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// What one deployment (one device or the pipeline) measured.
struct Figures {
    ms_per_token: f64,
    tokens_per_s: f64,
    /// Aggregate tokens/s with half as many sessions.
    half_tokens_per_s: f64,
    ttft_ms: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nearest-rank percentile.
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Stream `s`'s prompt: 32 token ids, different for every stream.
fn prompt(s: usize) -> Vec<u32> {
    (0..32u32).map(|i| 100 + i * 7 + s as u32 * 31).collect()
}

impl BenchPipelineCmd {
    pub fn run(self) -> anyhow::Result<()> {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            bail!("the pipeline benchmark pins two devices to two cores; this machine has one");
        }
        let exe = std::env::current_exe()?;
        let gguf = polylink_infer::Gguf::open(&self.model)?;
        let hparams = polylink_infer::HParams::from_gguf(&gguf)?;
        let n_layers = hparams.n_layers;
        let split = match self.split {
            Some(split) if split == 0 || split >= n_layers => bail!("--split must be in 1..{n_layers}"),
            Some(split) => split,
            None => match polylink_node::split::local_stages(&self.model, 2, 1)?.ranges.as_slice() {
                [first, _] => first.end,
                _ => {
                    bail!("the planner would not split this model in two (its LM head outweighs the layers)")
                }
            },
        };
        println!(
            "model {} ({n_layers} layers, stages 0..{split} and {split}..{n_layers}), {} tokens per session, 1 thread per device",
            self.model.display(),
            self.tokens
        );
        let single = self.launch(&exe, 1, None, 0, None).context("starting the single device")?;
        let first = self.launch(&exe, 2, Some(0..split), 0, None).context("starting stage 1")?;
        let second = self.launch(&exe, 3, Some(split..n_layers), 1, None).context("starting stage 2")?;
        let deployments = vec![vec![single.spec.clone()], vec![first.spec.clone(), second.spec.clone()]];
        let this = &self;
        let figures = commonware_runtime::tokio::Runner::default().start(|context| async move {
            let mut out = Vec::new();
            for stages in deployments {
                let head = head(context.child("head"), stages)?;
                out.push(this.measure(&head).await?);
            }
            Ok::<_, anyhow::Error>(out)
        })?;
        drop((single, first, second));
        self.report(&figures[0], &figures[1]);
        self.failover(&exe, split, n_layers)?;
        if let Some(qdisc) = &self.link {
            self.over_links(&exe, split, n_layers, qdisc)?;
        }
        Ok(())
    }

    fn report(&self, single: &Figures, pipe: &Figures) {
        let (streams, sessions) = (self.streams, self.sessions);
        println!(
            "{:<18} {:>13} {:>20} {:>26}",
            "",
            "ms/token (1)",
            format!("tok/s ({sessions} sessions)"),
            format!("TTFT p50/p99 ms ({streams} streams)")
        );
        for (label, f) in [("one device", single), ("2-stage pipeline", pipe)] {
            let ttft = format!("{:.0} / {:.0}", percentile(&f.ttft_ms, 50.0), percentile(&f.ttft_ms, 99.0));
            println!("{label:<18} {:>13.2} {:>20.1} {ttft:>26}", f.ms_per_token, f.tokens_per_s);
        }
        println!(
            "pipeline per-token overhead: {:+.1}% (target at most +10%)",
            (pipe.ms_per_token / single.ms_per_token - 1.0) * 100.0
        );
        println!(
            "pipeline aggregate throughput: {:.2}x one device (target at least 1.6x)",
            pipe.tokens_per_s / single.tokens_per_s
        );
        // Each stage can batch only the half of the sessions the other stage is not working on,
        // so against a device that batches all of them the pipeline's ceiling is
        // T(all) / T(half) per step = 2 x tok/s(half) / tok/s(all) of the one device.
        println!(
            "  ceiling against this batching device: {:.2}x (one device: {:.1} tok/s with {} sessions, {:.1} with {}); reached {:.0}% of it",
            2.0 * single.half_tokens_per_s / single.tokens_per_s,
            single.half_tokens_per_s,
            sessions / 2,
            single.tokens_per_s,
            sessions,
            100.0 * pipe.tokens_per_s / (2.0 * single.half_tokens_per_s)
        );
        println!(
            "pipeline time to first token: p50 {:.2}x, p99 {:.2}x one device's (below 1 is faster)",
            percentile(&pipe.ttft_ms, 50.0) / percentile(&single.ttft_ms, 50.0),
            percentile(&pipe.ttft_ms, 99.0) / percentile(&single.ttft_ms, 99.0)
        );
    }

    /// Per-token latency of one session, aggregate tokens/s of concurrent sessions, and the
    /// times to first token of concurrent streams, each over `runs` runs.
    async fn measure<E>(&self, head: &PipelineHead<E>) -> anyhow::Result<Figures>
    where
        E: Supervisor + Clock + Network + CryptoRng,
    {
        let (tokens, sessions) = (self.tokens.max(2), self.sessions.max(2));
        let (mut latency, mut aggregate, mut half, mut ttft_ms) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let concurrent = async |n: usize| -> anyhow::Result<f64> {
            let start = Instant::now();
            let prompts: Vec<Vec<u32>> = (0..n).map(prompt).collect();
            for result in join_all(prompts.iter().map(|p| session(head, p, tokens))).await {
                result?;
            }
            Ok((n * tokens) as f64 / start.elapsed().as_secs_f64())
        };
        for _ in 0..self.runs.max(1) {
            let (_, decode_s) = session(head, &prompt(0), tokens).await?;
            latency.push(decode_s * 1e3 / (tokens - 1) as f64);
            aggregate.push(concurrent(sessions).await?);
            half.push(concurrent(sessions / 2).await?);
            let start = Instant::now();
            let streams =
                (0..self.streams.max(1)).map(|s| stream(head, prompt(s), self.stream_tokens, start));
            for result in join_all(streams).await {
                ttft_ms.push(result? * 1e3);
            }
        }
        Ok(Figures {
            ms_per_token: median(latency),
            tokens_per_s: median(aggregate),
            half_tokens_per_s: median(half),
            ttft_ms,
        })
    }

    /// One emulated device: a stage process with one thread, pinned to `core`, optionally in a
    /// network namespace listening on that namespace's address.
    fn launch(
        &self,
        exe: &Path,
        seed: u8,
        layers: Option<Range<usize>>,
        core: usize,
        host: Option<(&str, IpAddr)>,
    ) -> anyhow::Result<StageProcess> {
        let launch = StageLaunch {
            exe,
            model: &self.model,
            layers,
            seed: [seed; 32],
            threads: 1,
            core: Some(core),
            netns: host.map(|(netns, _)| netns),
            listen: host.map(|(_, ip)| SocketAddr::new(ip, 0)),
        };
        StageProcess::start(&launch).map_err(anyhow::Error::msg)
    }

    /// Kills the second stage in the middle of a session and times the step that recovers.
    fn failover(&self, exe: &Path, split: usize, n_layers: usize) -> anyhow::Result<()> {
        let first = self.launch(exe, 4, Some(0..split), 0, None)?;
        let second = self.launch(exe, 5, Some(split..n_layers), 1, None)?;
        let spare = self.launch(exe, 6, Some(split..n_layers), 1, None)?;
        let stages = vec![first.spec.clone(), second.spec.clone()];
        let standby = StandbyList(vec![spare.spec.clone()]);
        let tokens = self.tokens.max(16);
        let prompt = prompt(0);
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
                let mut last = head.step(&mut s, &prompt, GREEDY).await?;
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
            32 + tokens / 2
        );
        drop((first, spare));
        Ok(())
    }

    /// Per-token latency with every device in its own network namespace behind emulated links.
    fn over_links(&self, exe: &Path, split: usize, n_layers: usize, qdisc: &str) -> anyhow::Result<()> {
        let lan = EmulatedLan::create(3, qdisc).context("building the emulated LAN")?;
        let host = |i: usize| Some((lan.hosts[i].netns.as_str(), lan.hosts[i].addr));
        let single = self.launch(exe, 7, None, 0, host(0))?;
        let first = self.launch(exe, 8, Some(0..split), 0, host(1))?;
        let second = self.launch(exe, 9, Some(split..n_layers), 1, host(2))?;
        let deployments = vec![vec![single.spec.clone()], vec![first.spec.clone(), second.spec.clone()]];
        let tokens = self.tokens.max(2);
        let runs = self.runs.max(1);
        let ms = commonware_runtime::tokio::Runner::default().start(|context| async move {
            let mut out = Vec::new();
            for stages in deployments {
                let head = head(context.child("head"), stages)?;
                let mut latency = Vec::new();
                for _ in 0..runs {
                    let (_, decode_s) = session(&head, &prompt(0), tokens).await?;
                    latency.push(decode_s * 1e3 / (tokens - 1) as f64);
                }
                out.push(median(latency));
            }
            Ok::<_, anyhow::Error>(out)
        })?;
        println!(
            "over emulated links ({qdisc} on each end of each link): one device {:.2} ms/token, 2-stage pipeline {:.2} ms/token ({:+.1}%; the head relays, so a pipeline token crosses 2 links there and back)",
            ms[0],
            ms[1],
            (ms[1] / ms[0] - 1.0) * 100.0
        );
        drop((single, first, second));
        drop(lan);
        Ok(())
    }
}

/// A head for measuring: no standby, and stall timeouts far above what a busy machine needs, so
/// a slow moment never turns into an error (the fail-over figure uses the default timeouts).
fn head<E>(context: E, stages: Vec<StageSpec>) -> anyhow::Result<PipelineHead<E>>
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let config = HeadConfig { call_timeout: Duration::from_secs(60), ..HeadConfig::default() };
    Ok(PipelineHead::new(
        context,
        key_from_seed(&[9; 32])?,
        stages,
        Box::new(StandbyList::default()),
        config,
    )?)
}

/// One greedy session of `tokens` tokens; returns (prefill seconds, decode seconds).
async fn session<E>(head: &PipelineHead<E>, prompt: &[u32], tokens: usize) -> anyhow::Result<(f64, f64)>
where
    E: Supervisor + Clock + Network + CryptoRng,
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

/// One stream of a burst that began at `start`: returns its time to first token in seconds,
/// then generates the rest of its tokens (so later streams' prefills share the stages with
/// earlier streams' decoding, as they would in service).
async fn stream<E>(
    head: &PipelineHead<E>,
    prompt: Vec<u32>,
    tokens: usize,
    start: Instant,
) -> anyhow::Result<f64>
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let mut s = head.open();
    let mut last = head.step(&mut s, &prompt, GREEDY).await?;
    let ttft = start.elapsed().as_secs_f64();
    for _ in 1..tokens {
        last = head.step(&mut s, &[last], GREEDY).await?;
    }
    head.close(s).await;
    Ok(ttft)
}
