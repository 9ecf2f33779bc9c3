//! The mempool on disk: every transaction the RPC admits is appended to a log, so a node that
//! stops (a crash, a kill, a restart) admits again, when it starts, what it had taken and not yet
//! executed. A gateway that opened a task just before its node died does not lose it (its id is
//! the transaction's, and the workers' receipts already name it).
//!
//! Entries are `[length: u32 LE][signed transaction]`. The log is appended without a sync: a
//! killed process loses nothing the kernel has, a power cut may lose the last writes (the
//! senders retry what they did not see executed). It is rewritten with just the pending
//! transactions every few seconds; a torn last entry is ignored when read.

use polylink_types::{SignedTx, TX_BYTES_MAX};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The log of admitted transactions.
pub struct PendingLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Something was appended since the last rewrite.
    dirty: AtomicBool,
}

impl PendingLog {
    /// Opens (or creates) the log at `path`; returns it with the transactions it holds, oldest
    /// first (an entry that does not decode ends the reading: a torn write at a crash).
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<SignedTx>)> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let txs = decode(&bytes);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let log =
            Self { path: path.to_path_buf(), file: Mutex::new(Some(file)), dirty: AtomicBool::new(false) };
        Ok((log, txs))
    }

    /// Appends `tx` (an admitted transaction).
    pub fn append(&self, tx: &SignedTx) {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(file) = guard.as_mut() else { return };
        if let Err(e) = file.write_all(&entry(tx)) {
            tracing::warn!(path = %self.path.display(), "appending to the mempool log: {e}");
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Replaces the log with `pending` (the mempool now) if anything was appended since the last
    /// time: written beside it, synced and renamed over it, so a crash leaves one or the other.
    /// What is appended meanwhile waits for the lock and goes into the new log.
    pub fn rewrite(&self, pending: impl FnOnce() -> Vec<SignedTx>) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let mut out = File::create(&tmp)?;
        for tx in pending() {
            out.write_all(&entry(&tx))?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *guard = Some(OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }
}

fn entry(tx: &SignedTx) -> Vec<u8> {
    let bytes = tx.to_bytes();
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// The whole entries of `bytes`, up to the first that is torn or does not decode.
fn decode(mut bytes: &[u8]) -> Vec<SignedTx> {
    let mut txs = Vec::new();
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        if len > TX_BYTES_MAX || rest.len() < len {
            break;
        }
        let Ok(tx) = SignedTx::from_bytes(&rest[..len]) else { break };
        txs.push(tx);
        bytes = &rest[len..];
    }
    txs
}

#[cfg(test)]
mod tests {
    use super::*;
    use polylink_types::{SecretKey, Transfer, TxKind, UnsignedTx};

    fn tx(nonce: u64) -> SignedTx {
        let key = SecretKey::from_label("alice");
        let to = SecretKey::from_label("bob").public_key();
        UnsignedTx { signer: key.public_key(), nonce, kind: TxKind::Transfer(Transfer { to, amount: 1 }) }
            .sign(&key, "test")
    }

    #[test]
    fn appended_entries_come_back_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mempool.log");
        let (log, found) = PendingLog::open(&path).unwrap();
        assert!(found.is_empty());
        log.append(&tx(0));
        log.append(&tx(1));
        drop(log);
        // A write cut short by a crash.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&entry(&tx(2))[..10]).unwrap();
        let (log, found) = PendingLog::open(&path).unwrap();
        assert_eq!(found, vec![tx(0), tx(1)]);
        // Rewritten with what is still pending; appends go on after it.
        log.append(&tx(3));
        log.rewrite(|| vec![tx(1)]).unwrap();
        log.append(&tx(4));
        let (_, found) = PendingLog::open(&path).unwrap();
        assert_eq!(found, vec![tx(1), tx(4)]);
    }
}
