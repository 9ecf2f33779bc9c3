//! Shared setup of the TIQE integration tests: the real models and the committed head.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use polylink_infer::Model;
use polylink_models::{MINILM_L6_V2, SMOLLM2_135M, gguf_path, path};
use polylink_tiqe::{Cascade, CascadeConfig, Files, Head, MiniLmFiles, lab, open_cascade, open_registered};

/// Model files from the models directory.
pub fn files() -> Files {
    Files {
        registered: gguf_path(SMOLLM2_135M).unwrap(),
        minilm: MiniLmFiles {
            weights: path(MINILM_L6_V2, "model.safetensors").unwrap(),
            vocab: path(MINILM_L6_V2, "vocab.txt").unwrap(),
        },
    }
}

/// The registered model alone (one thread).
pub fn model() -> Arc<Model> {
    open_registered(&files(), 1).unwrap().0
}

/// The registered model and a cascade over it (default thresholds, the built-in head).
pub fn cascade() -> (Arc<Model>, Cascade) {
    let f = files();
    let (model, sha) = open_registered(&f, 1).unwrap();
    let c =
        open_cascade(&f, model.clone(), sha, Head::shipped().unwrap(), CascadeConfig::default(), 1).unwrap();
    (model, c)
}

/// Bench prompts (never used in training).
pub fn bench_prompts(n: usize) -> Vec<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/tiqe/prompts-bench.txt");
    let mut v = lab::read_prompts(&p).unwrap();
    v.truncate(n);
    v
}
