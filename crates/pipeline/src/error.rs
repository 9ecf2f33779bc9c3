/// Everything that can go wrong in a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("link error: {0}")]
    Link(String),
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("no answer within {ms} ms")]
    Timeout { ms: u64 },
    #[error("stage {stage} refused the request (code {code}): {message}")]
    Refused { stage: usize, code: u8, message: String },
    #[error("stage {stage} (layers {layers:?}) failed and no replacement is available: {cause}")]
    NoReplacement { stage: usize, layers: std::ops::Range<usize>, cause: String },
    #[error("bad pipeline: {0}")]
    Plan(String),
    /// Loading a model or starting a backend failed.
    #[error("{0}")]
    Setup(String),
}
