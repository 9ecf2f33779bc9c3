//! Commitments the validator must still reveal, kept on disk before the commit is submitted, so
//! a validator restarted between its commit and its reveal still opens its commitment (and is not
//! slashed for hiding it). One file per seat: `<dir>/commits/<task>.json`, written atomically.

use crate::error::{Result, ValidatorError};
use crate::schedule::Seat;
use polylink_types::{Hash32, PublicKey, TaskId, score_commitment};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A committed score waiting for its reveal window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The seat.
    pub seat: Seat,
    /// The score committed to.
    pub score: u16,
    /// The digest of the evaluation committed to.
    pub work: Hash32,
    /// The secret salt.
    pub salt: Hash32,
}

impl Pending {
    /// A fresh random salt for `score` and evaluation digest `work` on `seat`.
    pub(crate) fn new(seat: Seat, score: u16, work: Hash32) -> Self {
        Self { seat, score, work, salt: Hash32(rand::random()) }
    }

    /// The commitment `who` publishes.
    pub(crate) fn commitment(&self, who: &PublicKey) -> Hash32 {
        score_commitment(self.score, &self.work, &self.salt, who)
    }
}

/// The pending commitments on disk (or nowhere, without a data directory).
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: Option<PathBuf>,
}

fn disk(path: &Path, e: impl std::fmt::Display) -> ValidatorError {
    ValidatorError::Disk { path: path.display().to_string(), reason: e.to_string() }
}

impl Journal {
    /// The journal under `data_dir/commits` (created), or an in-memory-only one.
    pub(crate) fn open(data_dir: Option<&Path>) -> Result<Self> {
        let dir = data_dir.map(|d| d.join("commits"));
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| disk(dir, e))?;
        }
        Ok(Self { dir })
    }

    fn file(&self, task: &TaskId) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{task}.json")))
    }

    /// Writes `p` durably and privately (its salt is secret until revealed): file synced with
    /// mode 0600, then renamed into place, then the directory synced.
    pub(crate) fn save(&self, p: &Pending) -> Result<()> {
        let Some(path) = self.file(&p.seat.task) else { return Ok(()) };
        let bytes = serde_json::to_vec(p).map_err(|e| disk(&path, e))?;
        polylink_chain::secret_file::write_private(&path, &bytes).map_err(|e| disk(&path, e))
    }

    /// Forgets a seat once revealed or over.
    pub(crate) fn remove(&self, task: &TaskId) {
        if let Some(path) = self.file(task) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Every pending commitment found on disk (unreadable files are skipped and named in the log).
    pub(crate) fn load(&self) -> Vec<Pending> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let named = path.file_stem().and_then(|s| s.to_str()).and_then(|s| TaskId::from_str(s).ok());
            if path.extension().and_then(|e| e.to_str()) != Some("json") || named.is_none() {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Pending>(&b).map_err(|e| e.to_string()))
            {
                Ok(p) if Some(p.seat.task) == named => out.push(p),
                Ok(_) => {
                    tracing::warn!(file = %path.display(), "pending commitment names another task; skipped")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable pending commitment; skipped")
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_commitment_survives_a_reopen_and_opens_its_commitment() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let seat = Seat {
            task: TaskId::digest(&[b"t"]),
            elected_height: 1,
            elected_ms: 10,
            commit_end_height: 5,
            commit_end_ms: 50,
            reveal_end_height: 9,
            reveal_end_ms: 90,
        };
        let work = Hash32::digest(&[b"evaluation"]);
        let p = Pending::new(seat, 812, work);
        let journal = Journal::open(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        journal.save(&p).unwrap_or_else(|e| panic!("{e}"));
        let again = Journal::open(Some(dir.path())).unwrap_or_else(|e| panic!("{e}")).load();
        assert_eq!(again, vec![p.clone()]);
        let me = polylink_types::SecretKey::from_label("v").public_key();
        assert_eq!(again[0].commitment(&me), score_commitment(812, &work, &p.salt, &me));
        assert_ne!(Pending::new(seat, 812, work).salt, p.salt, "salts are random");
        journal.remove(&seat.task);
        assert!(journal.load().is_empty());
    }
}
