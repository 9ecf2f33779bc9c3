//! Held-out quality of the cross-encoder head: generates (or reuses from a cache file) the
//! training set, computes the head's features and prints the AUC of a cross-validation split by
//! prompt, each feature left out in turn, and (with `V1=1`) the previous pooled-vector layout.
//! `cargo run --release -p polylink-tiqe --example head_cv -- <prompts> <answers-cache.json>`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use polylink_infer::{cosine, mean_rows};
use polylink_models::{MINILM_L6_V2, SMOLLM2_135M, gguf_path, path};
use polylink_tiqe::lab::{self, Kind, Sample, Sources, SplitMix, TRAIN_KINDS, TrainConfig};
use polylink_tiqe::{CrossEncoder, FEATURE_NAMES, Files, MiniLmFiles, open_registered, to_score};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prompts = lab::read_prompts(&PathBuf::from(&args[1])).unwrap();
    let cache = PathBuf::from(&args[2]);
    let files = Files {
        registered: gguf_path(SMOLLM2_135M).unwrap(),
        minilm: MiniLmFiles {
            weights: path(MINILM_L6_V2, "model.safetensors").unwrap(),
            vocab: path(MINILM_L6_V2, "vocab.txt").unwrap(),
        },
    };
    let (model, sha) = open_registered(&files, 1).unwrap();
    let t0 = std::time::Instant::now();
    let honest =
        lab::answers_cached(&model, sha, &prompts, 128, &cache, &mut |n| eprintln!("generated {n}")).unwrap();
    eprintln!("answers ready in {:.1} s", t0.elapsed().as_secs_f64());
    let src =
        Sources { prompts: &prompts, honest: &honest, subs: &[], tok: &model.tokenizer, max_tokens: 128 };
    let mut rng = SplitMix::new(7);
    let mut samples = Vec::new();
    let mut groups = Vec::new();
    for i in 0..prompts.len() {
        for s in lab::samples_for(i, &src, &TRAIN_KINDS, &mut rng) {
            samples.push(s);
            groups.push(i);
        }
    }
    let cross = CrossEncoder::open(&files.minilm, None, 1).unwrap();
    let y: Vec<bool> = samples.iter().map(|s| s.kind == Kind::Honest).collect();
    let t0 = std::time::Instant::now();
    let v2: Vec<Vec<f32>> = samples.iter().map(|s| cross.task_features(&s.task).unwrap()).collect();
    eprintln!("v2 features: {} samples in {:.1} s", v2.len(), t0.elapsed().as_secs_f64());
    report("v2 scalars", &v2, &y, &groups, &samples);
    // Ablation: each v2 feature left out in turn.
    for (j, name) in FEATURE_NAMES.iter().enumerate() {
        let x: Vec<Vec<f32>> = v2
            .iter()
            .map(|r| r.iter().enumerate().filter(|(i, _)| *i != j).map(|(_, v)| *v).collect())
            .collect();
        report(&format!("v2 without {name}"), &x, &y, &groups, &samples);
    }
    if std::env::var_os("V1").is_some() {
        let v1: Vec<Vec<f32>> =
            samples.iter().map(|s| v1_features(&cross, &s.task.prompt, &s.task.output)).collect();
        report("v1 pooled (previous head's layout)", &v1, &y, &groups, &samples);
    }
}

fn report(label: &str, x: &[Vec<f32>], y: &[bool], groups: &[usize], samples: &[Sample]) {
    let p = lab::cross_validate(x, y, groups, 5, TrainConfig::default()).unwrap();
    let score = |i: usize| to_score(p[i]);
    let h: Vec<u16> = (0..x.len()).filter(|&i| y[i]).map(score).collect();
    let mut line = String::new();
    for k in TRAIN_KINDS.iter().skip(1) {
        let a: Vec<u16> = (0..x.len()).filter(|&i| samples[i].kind == *k).map(score).collect();
        line += &format!(" {}={:.4}", k.name(), lab::auc(&h, &a));
    }
    let a: Vec<u16> = (0..x.len()).filter(|&i| !y[i]).map(score).collect();
    println!("{label:<45} width {:>3}: held-out AUC all={:.4}{line}", x[0].len(), lab::auc(&h, &a));
}

/// The previous head's layout (`minilm-joint-v1`), rebuilt here to compare: the product of the two
/// segments' normalized means, the mean of all rows, and four scalars.
fn v1_features(cross: &CrossEncoder, prompt: &str, output: &str) -> Vec<f32> {
    let bert = cross.bert();
    let d = bert.dim();
    let enc = cross.wordpiece().encode_pair(prompt, output, 256);
    let h = bert.forward(&enc).unwrap();
    let split = enc.type_ids.iter().position(|&t| t == 1).unwrap_or(enc.ids.len());
    let a = mean_rows(&h, d, 1..split.saturating_sub(1).max(1));
    let b = mean_rows(&h, d, split..enc.ids.len().saturating_sub(1).max(split));
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let (na, nb) = (norm(&a), norm(&b));
    let bi = cosine(&cross.embed(prompt).unwrap(), &cross.embed(output).unwrap());
    let out_tokens = enc.ids.len() - split;
    let ends = output.trim_end().ends_with(['.', '!', '?', ':', ')', '"', '`', '*']);
    let mut f: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x / na * y / nb).collect();
    f.extend(mean_rows(&h, d, 0..enc.ids.len()));
    f.extend([bi, cosine(&a, &b), (out_tokens as f32 + 1.0).ln(), f32::from(u8::from(ends))]);
    f
}
