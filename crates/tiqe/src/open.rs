//! Wiring for a validator: open the three evaluators and the cascade from model files.

use std::path::PathBuf;
use std::sync::Arc;

use polylink_infer::Model;

use crate::cascade::{Cascade, CascadeConfig};
use crate::consistency::{ConsistencyConfig, ModelConsistency};
use crate::cross::{CrossEncoder, MiniLmFiles};
use crate::error::Result;
use crate::head::Head;
use crate::judge::Judge;
use crate::util::file_sha256;

/// Model files a validator needs.
#[derive(Debug, Clone)]
pub struct Files {
    /// GGUF of the registered model (also the judge and the honest worker).
    pub registered: PathBuf,
    /// MiniLM weights and vocabulary.
    pub minilm: MiniLmFiles,
}

/// Loads the registered model once (shared by consistency, judge and generation).
pub fn open_registered(files: &Files, threads: usize) -> Result<(Arc<Model>, [u8; 32])> {
    let sha = file_sha256(&files.registered)?;
    Ok((Arc::new(Model::open(&files.registered, None, threads)?), sha))
}

/// The full cascade: consistency (weight 2) and cross-encoder (weight 1) cheap, then the judge.
pub fn open_cascade(
    files: &Files,
    model: Arc<Model>,
    sha: [u8; 32],
    head: Head,
    cfg: CascadeConfig,
    threads: usize,
) -> Result<Cascade> {
    let consistency = ModelConsistency::new(model.clone(), sha, ConsistencyConfig::default());
    let cross = CrossEncoder::open(&files.minilm, Some(head), threads)?;
    let judge = Judge::new(model)?;
    Ok(Cascade::new(vec![(Box::new(consistency), 2.0), (Box::new(cross), 1.0)], Some(Box::new(judge)), cfg))
}
