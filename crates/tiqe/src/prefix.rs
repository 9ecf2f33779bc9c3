//! Teacher-forced passes that skip work every task repeats: a fixed token prefix (the chat
//! template's system turn, the judge's instructions) is run once and its keys and values kept,
//! and logits are computed only for the rows the caller reads (not for the prompt's own rows).
//!
//! Positions before the prefix's end depend only on the prefix's tokens, so reusing them changes
//! nothing but the cost. Concurrent callers never wait: one that finds the cache busy runs on a
//! fresh session.

use std::sync::Mutex;

use polylink_infer::{KvCache, LogitsMode, Shard, ShardInput};

use crate::error::{Result, TiqeError};

/// A shard's session whose first `prefix.len()` positions hold `prefix`, reused across calls.
pub struct PrefixCache {
    prefix: Vec<u32>,
    kv: Mutex<Option<KvCache>>,
}

impl PrefixCache {
    /// A cache for `prefix` (filled on first use); an empty prefix caches nothing.
    pub fn new(prefix: Vec<u32>) -> Self {
        Self { prefix, kv: Mutex::new(None) }
    }

    /// Tokens of the cached prefix.
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }

    /// Runs `seq` through `shard` and writes the logits of rows `first_row..seq.len()` to `out`
    /// (`(seq.len() - first_row) × vocab`). Returns how many leading tokens came from the cache.
    pub fn logits(&self, shard: &Shard, seq: &[u32], first_row: usize, out: &mut Vec<f32>) -> Result<usize> {
        if first_row >= seq.len() {
            return Err(TiqeError::Refused(format!("no rows to score from {first_row} of {}", seq.len())));
        }
        let ctx = shard.hparams().context_len;
        if seq.len() > ctx {
            return Err(TiqeError::Refused(format!("{} tokens exceed the model context {ctx}", seq.len())));
        }
        // The prefix must end before the first scored row: that row's logits come from its pass.
        let usable =
            !self.prefix.is_empty() && seq.starts_with(&self.prefix) && self.prefix.len() <= first_row;
        let mut guard = if usable { self.kv.try_lock().ok() } else { None };
        let Some(slot) = guard.as_deref_mut() else {
            let mut kv = shard.new_session(seq.len());
            run(shard, &mut kv, seq, 0, first_row, out)?;
            return Ok(0);
        };
        let p = self.prefix.len();
        let kv = match slot {
            Some(kv) if kv.len() >= p => {
                kv.truncate(p);
                kv
            }
            _ => {
                let mut kv = shard.new_session(ctx);
                let mut scratch = Vec::new();
                // Fill the cache; on failure leave it empty so a later call starts over.
                for chunk in self.prefix.chunks(CHUNK_ROWS) {
                    shard.forward(&mut kv, ShardInput::Tokens(chunk), LogitsMode::Last, &mut scratch)?;
                }
                slot.insert(kv)
            }
        };
        let r = run(shard, kv, seq, p, first_row, out);
        if r.is_err() {
            *slot = None;
        }
        r.map(|()| p)
    }
}

/// Rows per forward pass. A row's logits do not depend on the chunking (the engine's numerics
/// rule), so this only bounds the activations one pass holds; the logits equal the worker's
/// one-row decoding steps bit for bit at any chunk size.
pub const CHUNK_ROWS: usize = 48;

/// Feeds `seq[from..]` into `kv` (which holds `seq[..from]`): rows before `first_row` without
/// logits, the rest with every row's logits, in chunks of [`CHUNK_ROWS`].
fn run(
    shard: &Shard,
    kv: &mut KvCache,
    seq: &[u32],
    from: usize,
    first_row: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let mut part = Vec::new();
    for chunk in seq[from..first_row.max(from)].chunks(CHUNK_ROWS) {
        shard.forward(kv, ShardInput::Tokens(chunk), LogitsMode::Last, &mut part)?;
    }
    out.clear();
    for chunk in seq[first_row.max(from)..].chunks(CHUNK_ROWS) {
        shard.forward(kv, ShardInput::Tokens(chunk), LogitsMode::All, &mut part)?;
        out.extend_from_slice(&part);
    }
    Ok(())
}

/// Longest common token prefix of two prompts rendered from different user messages: the part of
/// a template that every task shares.
pub fn shared_prefix(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter().zip(b).take_while(|(x, y)| x == y).map(|(x, _)| *x).collect()
}
