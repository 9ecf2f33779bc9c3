//! The local backend: a whole GGUF model on this machine, run by a dedicated engine thread.

mod engine;

use crate::PipelineError;
use polylink_infer::Model;
use polylink_protocol::{
    GenerationParams, InferenceBackend, ModelCard, Prompt, ProtocolError, Result, TokenStream,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// How the local engine runs.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Kernel threads.
    pub threads: usize,
    /// Sessions decoded together; more wait their turn.
    pub sessions_max: usize,
    /// Prompt tokens per prefill step (bounds how long other sessions wait).
    pub prefill_chunk_tokens: usize,
    /// Model id clients use (default: the file name without `.gguf`).
    pub model_id: Option<String>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self { threads: 2, sessions_max: 8, prefill_chunk_tokens: 64, model_id: None }
    }
}

/// A loaded model served from an engine thread.
#[derive(Debug)]
pub struct LocalBackend {
    card: ModelCard,
    model: Arc<Model>,
    jobs: Mutex<Sender<engine::Job>>,
    sampled: Arc<AtomicU64>,
}

impl LocalBackend {
    /// Loads the GGUF at `path` whole and starts its engine thread.
    pub fn load(path: &Path, options: &LocalOptions) -> Result<Self, PipelineError> {
        let model = Model::open(path, None, options.threads.max(1))
            .map_err(|e| PipelineError::Setup(format!("cannot load {}: {e}", path.display())))?;
        let id = match &options.model_id {
            Some(id) => id.clone(),
            None => {
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
            }
        };
        let card =
            ModelCard { id, owned_by: "polylink".into(), context_tokens: model.info.hparams.context_len };
        let model = Arc::new(model);
        let (tx, rx) = std::sync::mpsc::channel();
        let sampled = Arc::new(AtomicU64::new(0));
        let config = engine::EngineConfig {
            sessions_max: options.sessions_max,
            prefill_chunk: options.prefill_chunk_tokens,
            sampled: sampled.clone(),
        };
        let engine_model = model.clone();
        std::thread::Builder::new()
            .name("polylink-engine".into())
            .spawn(move || engine::run(engine_model, rx, config))
            .map_err(|e| PipelineError::Setup(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { card, model, jobs: Mutex::new(tx), sampled })
    }

    /// Tokens the engine has sampled since it started (shows when generation really stops).
    pub fn tokens_sampled(&self) -> u64 {
        self.sampled.load(Relaxed)
    }

    fn check_model(&self, model: &str) -> Result<()> {
        if model == self.card.id { Ok(()) } else { Err(ProtocolError::UnknownModel(model.to_string())) }
    }
}

impl InferenceBackend for LocalBackend {
    fn models(&self) -> Vec<ModelCard> {
        vec![self.card.clone()]
    }

    fn tokenize(&self, model: &str, prompt: &Prompt) -> Result<Vec<u32>> {
        self.check_model(model)?;
        Ok(self.model.template.encode(&self.model.tokenizer, prompt))
    }

    fn generate(&self, model: &str, prompt_ids: Vec<u32>, params: GenerationParams) -> Result<TokenStream> {
        self.check_model(model)?;
        let (tx, stream) = TokenStream::channel();
        let job = engine::Job { prompt: prompt_ids, params, events: tx };
        let jobs = self.jobs.lock().map_err(|_| ProtocolError::Backend("engine queue poisoned".into()))?;
        jobs.send(job).map_err(|_| ProtocolError::Backend("the engine thread has stopped".into()))?;
        Ok(stream)
    }
}
