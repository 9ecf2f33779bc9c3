//! One call to open a GGUF and get a runnable shard with its tokenizer and description.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::generate::chat::ChatTemplate;
use crate::gguf::Gguf;
use crate::model::info::ModelInfo;
use crate::model::shard::Shard;
use crate::pool::Pool;
use crate::tokenizer::Tokenizer;

/// A model (or layer range) ready to run.
#[derive(Debug)]
pub struct Model {
    /// Shape and sizes.
    pub info: ModelInfo,
    /// The loaded layers.
    pub shard: Shard,
    /// Tokenizer from the file's metadata.
    pub tokenizer: Tokenizer,
    /// Chat template implied by the metadata.
    pub template: ChatTemplate,
}

impl Model {
    /// Loads `layers` (all when `None`) of the GGUF at `path`, running on `threads` threads.
    pub fn open(path: &Path, layers: Option<Range<usize>>, threads: usize) -> Result<Self> {
        let g = Gguf::open(path)?;
        let info = ModelInfo::from_gguf(&g)?;
        let range = layers.unwrap_or(0..info.hparams.n_layers);
        let shard = Shard::load(&g, range, Arc::new(Pool::new(threads)))?;
        let tokenizer = Tokenizer::from_gguf(&g, info.hparams.vocab)?;
        let template = ChatTemplate::detect(&tokenizer, info.arch);
        Ok(Self { info, shard, tokenizer, template })
    }
}
