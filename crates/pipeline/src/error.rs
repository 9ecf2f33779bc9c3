/// Everything that can go wrong in a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A link could not be made or broke.
    #[error("link error: {0}")]
    Link(String),
    /// A frame or key did not decode.
    #[error("undecodable frame: {0}")]
    Decode(String),
    /// A peer answered out of protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A call outlived its timeout.
    #[error("no answer within {ms} ms")]
    Timeout {
        /// The limit, milliseconds.
        ms: u64,
    },
    /// A stage (or the engine here) refused the request.
    #[error("stage {stage} refused the request (code {code}): {message}")]
    Refused {
        /// The stage's index.
        stage: usize,
        /// Its `wire::ErrorCode`.
        code: u8,
        /// Its message.
        message: String,
    },
    /// A stage failed and nothing can take its layers.
    #[error("stage {stage} (layers {layers:?}) failed and no replacement is available: {cause}")]
    NoReplacement {
        /// The stage's index.
        stage: usize,
        /// The layers it served.
        layers: std::ops::Range<usize>,
        /// Why it failed.
        cause: String,
    },
    /// The pipeline asked for is not one (no stage, gaps between stages, an empty step).
    #[error("bad pipeline: {0}")]
    Plan(String),
    /// Loading a model or starting a backend failed.
    #[error("{0}")]
    Setup(String),
}
