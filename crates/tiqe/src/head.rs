//! The cross-encoder's logistic head: per-feature standardization, weights and bias, checked
//! against the sha256 recorded for it. The head trained for this release is built into the
//! binary ([`Head::shipped`]); another can be loaded from a file ([`Head::load`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, TiqeError, io_err};
use crate::features::{LAYOUT, NAMES};

/// File name of the shipped head (and its line in `SHA256SUMS`).
pub const SHIPPED_HEAD: &str = "head-minilm.json";
/// The shipped head's bytes (`data/tiqe/head-minilm.json`, built in at compile time).
const SHIPPED_BYTES: &[u8] = include_bytes!("../../../data/tiqe/head-minilm.json");
/// The checksums recorded beside it.
const SHIPPED_SUMS: &str = include_str!("../../../data/tiqe/SHA256SUMS");

/// A logistic head over standardized features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Feature layout name ([`crate::FEATURES`]).
    pub features: String,
    /// Per-feature mean used to standardize.
    pub mean: Vec<f32>,
    /// Per-feature scale used to standardize.
    pub scale: Vec<f32>,
    /// Weights.
    pub w: Vec<f32>,
    /// Bias.
    pub b: f32,
    /// How it was trained (seed, sample counts, training accuracy), for the record.
    pub trained: serde_json::Value,
}

impl Head {
    /// P(good) for a raw feature vector.
    pub fn prob(&self, x: &[f32]) -> f64 {
        let z: f64 = x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.w)
            .map(|(((v, m), s), w)| f64::from((v - m) / s * w))
            .sum::<f64>()
            + f64::from(self.b);
        1.0 / (1.0 + (-z).exp())
    }

    /// Loads a head and checks its sha256 against the `SHA256SUMS` file beside it.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let sums_path = path.with_file_name("SHA256SUMS");
        let sums = std::fs::read_to_string(&sums_path).map_err(io_err(&sums_path))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::checked(&bytes, &sums, &name, &path.display().to_string())
    }

    /// The head built into this binary, checked against the checksums built in beside it.
    pub fn shipped() -> Result<Self> {
        Self::checked(SHIPPED_BYTES, SHIPPED_SUMS, SHIPPED_HEAD, &format!("built-in {SHIPPED_HEAD}"))
    }

    /// Parses `bytes` once their sha256 matches the line for `name` in `sums`.
    fn checked(bytes: &[u8], sums: &str, name: &str, origin: &str) -> Result<Self> {
        let found = hex::encode(Sha256::digest(bytes));
        let expected = sums
            .lines()
            .filter_map(|l| l.split_once("  "))
            .find(|(_, f)| *f == name)
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        if expected != found {
            return Err(TiqeError::Checksum { path: origin.to_string(), expected, found });
        }
        let head: Self = serde_json::from_slice(bytes)
            .map_err(|e| TiqeError::BadFile { path: origin.to_string(), why: e.to_string() })?;
        let n = head.w.len();
        if head.features != LAYOUT || head.mean.len() != n || head.scale.len() != n || n != NAMES.len() {
            return Err(TiqeError::BadFile {
                path: origin.to_string(),
                why: format!("head for layout {} with {n} weights", head.features),
            });
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_head_is_the_committed_file_and_a_changed_byte_is_refused() {
        let head = Head::shipped().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(head.w.len(), NAMES.len());
        let mut bytes = SHIPPED_BYTES.to_vec();
        let at = bytes.iter().position(|b| b.is_ascii_digit()).unwrap_or(0);
        bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
        assert!(matches!(
            Head::checked(&bytes, SHIPPED_SUMS, SHIPPED_HEAD, "test"),
            Err(TiqeError::Checksum { .. })
        ));
    }
}
