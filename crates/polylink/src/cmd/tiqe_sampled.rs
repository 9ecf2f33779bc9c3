//! The sampled half of `polylink bench tiqe`: seeded answers at each temperature, honest and
//! from cheats that know the seed, generated once and cached, then checked by the consistency
//! stage's verifiable-sampling test. Prints the honest false-positive rate with its 95% upper
//! bound and each cheat's catch rate.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use polylink_infer::Model;
use polylink_tiqe::lab::{self, Source};
use polylink_tiqe::{ConsistencyConfig, ModelConsistency};

/// What the sampled benchmark runs on.
pub struct SampledSpec<'a> {
    /// The registered model and its artifact hash.
    pub model: &'a Arc<Model>,
    /// Its hash.
    pub sha256: [u8; 32],
    /// Its GGUF.
    pub registered: &'a Path,
    /// The substitute model's GGUF.
    pub substitute: &'a Path,
    /// Layers the dropped-layers cheat skips.
    pub dropped: std::ops::Range<usize>,
    /// The prompts, cycled.
    pub prompts: &'a [String],
    /// Honest answers per temperature.
    pub per_temperature: usize,
    /// Each cheat's answers per temperature (the first of the honest tasks).
    pub cheats_per_temperature: usize,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Seed of the tasks' seeds.
    pub seed: u64,
    /// Directory of the cached answers.
    pub cache: &'a Path,
    /// Worker threads.
    pub threads: usize,
    /// Only these sources (all when empty).
    pub sources: &'a [String],
}

/// Runs the sampled benchmark and prints its table.
pub fn run(s: &SampledSpec<'_>) -> anyhow::Result<()> {
    std::fs::create_dir_all(s.cache)?;
    let key = hex::encode(s.sha256);
    let consistency = ModelConsistency::new(s.model.clone(), s.sha256, ConsistencyConfig::default());
    let tok = &s.model.tokenizer;
    let mut scores = Vec::new();
    let chosen =
        Source::ALL.into_iter().filter(|x| s.sources.is_empty() || s.sources.iter().any(|n| n == x.name()));
    for source in chosen {
        let n = if source == Source::Honest { s.per_temperature } else { s.cheats_per_temperature };
        let tasks = lab::seeded_tasks(s.prompts, n, s.seed);
        let path = s.cache.join(format!("{}.json", source.name()));
        let t0 = Instant::now();
        let mut progress = |done: usize| tracing::info!("{}: {done}/{} answers", source.name(), tasks.len());
        let answers = match source {
            Source::Honest => lab::seeded_answers(
                &s.model.shard,
                s.model,
                &tasks,
                s.max_tokens,
                &key,
                &path,
                &mut progress,
            )?,
            Source::Substitute => {
                let other = Model::open(s.substitute, None, s.threads)?;
                let key = format!("{}:{}", key, s.substitute.display());
                lab::seeded_answers(&other.shard, &other, &tasks, s.max_tokens, &key, &path, &mut progress)?
            }
            Source::DroppedLayers | Source::Requantized => {
                let shard = lab::cheat_shard(s.registered, source, s.dropped.clone(), s.threads)?;
                let key = format!("{key}:{:?}", s.dropped);
                lab::seeded_answers(&shard, s.model, &tasks, s.max_tokens, &key, &path, &mut progress)?
            }
        };
        let gen_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let retokenize = source == Source::Substitute;
        for (t, a) in tasks.iter().zip(&answers) {
            let task = lab::seeded_task(t, a, tok, retokenize, s.max_tokens);
            scores.push(lab::score_seeded(&consistency, source, &task)?);
        }
        let tokens: usize = answers.iter().map(|a| a.ids.len()).sum();
        println!(
            "{}: {} answers, {:.1} tokens on average; generated or loaded in {gen_s:.0} s ({:.2} s per \
             answer), checked in {:.0} s ({:.1} ms per answer)",
            source.name(),
            answers.len(),
            tokens as f64 / answers.len().max(1) as f64,
            gen_s / answers.len().max(1) as f64,
            t1.elapsed().as_secs_f64(),
            t1.elapsed().as_secs_f64() * 1e3 / answers.len().max(1) as f64
        );
    }
    let table = lab::seeded_table(&scores);
    let cell = |source: Source, t: f32| table.get(&(source, format!("{t:.1}"))).copied();
    println!(
        "seeded consistency (fails below {}): honest false positives and cheats caught, answers up to {} \
         tokens, {} honest and {} of each cheat per temperature",
        lab::PASS_SCORE,
        s.max_tokens,
        s.per_temperature,
        s.cheats_per_temperature
    );
    println!(
        "| {:>3} | {:>8} | {:>9} | {:>9} | {:>16} | {:>15} | {:>14} | {:>12} |",
        "T",
        "honest n",
        "false pos",
        "95% upper",
        "max honest margin",
        "substitute caught",
        "dropped caught",
        "requant caught"
    );
    println!(
        "|{:-<5}|{:->10}|{:->11}|{:->11}|{:->18}|{:->17}|{:->16}|{:->14}|",
        "", "", "", "", "", "", "", ""
    );
    for t in lab::TEMPERATURES {
        let caught = |source: Source| {
            cell(source, t).map_or_else(|| "-".into(), |c| format!("{:.1}% of {}", c.rate * 100.0, c.n))
        };
        // A run of the cheats alone (`--sampled-sources`) leaves the honest columns empty.
        let h = cell(Source::Honest, t);
        let honest = |f: &dyn Fn(&lab::Cell) -> String| h.as_ref().map_or_else(|| "-".into(), f);
        println!(
            "| {t:>3.1} | {:>8} | {:>9} | {:>9} | {:>16} | {:>15} | {:>14} | {:>12} |",
            honest(&|h| h.n.to_string()),
            honest(&|h| h.failed.to_string()),
            honest(&|h| format!("{:.2}%", h.upper_95 * 100.0)),
            honest(&|h| format!("{:.4}", h.passed_margin_max)),
            caught(Source::Substitute),
            caught(Source::DroppedLayers),
            caught(Source::Requantized)
        );
    }
    let honest: Vec<&lab::SeededScore> = scores.iter().filter(|x| x.source == Source::Honest).collect();
    let failed = honest.iter().filter(|x| x.score < lab::PASS_SCORE).count();
    println!(
        "honest, all temperatures: {failed} of {} failed, 95% upper bound {:.3}%",
        honest.len(),
        lab::binomial_upper(failed, honest.len(), 0.95) * 100.0
    );
    let dump = s.cache.join("scores.json");
    std::fs::write(&dump, serde_json::to_vec(&scores)?)?;
    println!("every score: {}", dump.display());
    let rows: Vec<_> = table.iter().map(|((s, t), c)| (s.name(), t, c)).collect();
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
