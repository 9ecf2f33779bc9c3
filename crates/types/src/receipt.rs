//! Work receipts: a worker's own signed statement of what it computed for a task.
//!
//! A stage signs one when the pipeline head closes its session: the task, the layers it ran and
//! the rows (positions) it computed. The head puts the receipts in its result, and the ledger pays,
//! strikes or slashes only workers whose receipt it carries, so nobody answers for a task it did not
//! sign for. The signature needs no chain id: the task id is the id of a SubmitTask, whose
//! signature binds its chain already.
//!
//! A receipt also commits to the tokens themselves, so the gateway's transcript can be held to
//! what the workers really computed: the first stage signs the digest of the token ids it was fed
//! (the prompt, then each drawn token fed back), the last stage the digest of the sampling it was
//! asked for and the tokens it drew. A validator scores a transcript only when it agrees with
//! those digests; one that does not is the gateway's word against the workers', and no worker
//! answers for it.

use crate::codec_fields;
use crate::{Hash32, PublicKey, SecretKey, Signature, TaskId};
use commonware_codec::Encode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most receipts one result carries (every stage of a pipeline, plus stand-ins that took over).
pub const RECEIPTS_MAX: usize = 12;
/// Domain separator for receipt signatures.
const RECEIPT_SIGNING_DOMAIN: &[u8] = b"polylink-receipt-v1";

/// What a worker computed for a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkReceipt {
    /// The task.
    pub task: TaskId,
    /// The worker that computed (and signs).
    pub worker: PublicKey,
    /// First layer it ran.
    pub layer_start: u32,
    /// One past the last layer it ran.
    pub layer_end: u32,
    /// Positions it computed through those layers (prompt and fed-back tokens, a replay onto it
    /// included).
    pub rows: u32,
    /// A first stage's [`TokenDigest::fed`] of the token ids it computed (zero for other stages).
    pub fed: Hash32,
    /// A last stage's [`TokenDigest::drawn`] of the tokens it sampled (zero when it drew none).
    pub drawn: Hash32,
}
codec_fields!(WorkReceipt { task, worker, layer_start, layer_end, rows, fed, drawn });

impl WorkReceipt {
    /// The exact bytes signed: a domain tag, then the canonical receipt.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut msg = RECEIPT_SIGNING_DOMAIN.to_vec();
        msg.extend_from_slice(&self.encode());
        msg
    }

    /// Signs with `key` (whose public key should be `self.worker`).
    pub fn sign(self, key: &SecretKey) -> SignedReceipt {
        let signature = key.sign(&self.signing_message());
        SignedReceipt { receipt: self, signature }
    }

    /// Layers run.
    pub fn layers(&self) -> u32 {
        self.layer_end.saturating_sub(self.layer_start)
    }
}

/// A receipt with its worker's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// What the worker states.
    pub receipt: WorkReceipt,
    /// ed25519 signature by `receipt.worker` over `receipt.signing_message()`.
    pub signature: Signature,
}
codec_fields!(SignedReceipt { receipt, signature });

impl SignedReceipt {
    /// Whether the signature is the receipt's worker's, by strict ed25519 rules.
    pub fn verify(&self) -> bool {
        self.receipt.worker.verify(&self.receipt.signing_message(), &self.signature)
    }

    /// sha256 of the canonical encoding (names a receipt in logs and errors).
    pub fn digest(&self) -> Hash32 {
        Hash32::digest(&[&self.encode()])
    }
}

/// A running sha256 over token ids (u32 little-endian) in the order a stage met them, after a
/// domain tag (and, for drawn tokens, the sampling asked for). Zero until the first id: a stage
/// that was fed or drew nothing commits to nothing.
#[derive(Clone, Debug)]
pub struct TokenDigest {
    hasher: Sha256,
    any: bool,
}

impl TokenDigest {
    /// The digest of the ids a first stage is fed: the prompt, then every drawn token fed back.
    pub fn fed() -> Self {
        Self::tagged(b"polylink-fed-v1", &[])
    }

    /// The digest of the tokens a last stage draws with this sampling (top_k 0 for all).
    pub fn drawn(temperature: f32, top_k: u32, top_p: f32, seed: u64) -> Self {
        let mut spec = Vec::with_capacity(20);
        spec.extend_from_slice(&temperature.to_bits().to_le_bytes());
        spec.extend_from_slice(&top_k.to_le_bytes());
        spec.extend_from_slice(&top_p.to_bits().to_le_bytes());
        spec.extend_from_slice(&seed.to_le_bytes());
        Self::tagged(b"polylink-drawn-v1", &spec)
    }

    fn tagged(tag: &[u8], spec: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(tag);
        hasher.update(spec);
        Self { hasher, any: false }
    }

    /// Takes the next ids.
    pub fn push(&mut self, ids: &[u32]) {
        for id in ids {
            self.hasher.update(id.to_le_bytes());
        }
        self.any |= !ids.is_empty();
    }

    /// Takes `ids` and returns the digest (for a whole sequence at once).
    pub fn over(mut self, ids: &[u32]) -> Hash32 {
        self.push(ids);
        self.finish()
    }

    /// The digest so far: zero when no id was taken.
    pub fn finish(&self) -> Hash32 {
        if !self.any {
            return Hash32::ZERO;
        }
        Hash32(self.hasher.clone().finalize().into())
    }
}

/// The first layer of `0..layers` that no receipt's range covers, if any (ranges may overlap): a
/// result that bills tokens needs none left out.
pub fn uncovered_layer<'a>(receipts: impl IntoIterator<Item = &'a WorkReceipt>, layers: u32) -> Option<u32> {
    let mut spans: Vec<(u32, u32)> = receipts.into_iter().map(|r| (r.layer_start, r.layer_end)).collect();
    spans.sort_unstable();
    let mut next = 0u32;
    for (start, end) in spans {
        if start > next {
            return Some(next);
        }
        next = next.max(end);
    }
    (next < layers).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u32, end: u32) -> WorkReceipt {
        WorkReceipt {
            task: Hash32::ZERO,
            worker: PublicKey([0; 32]),
            layer_start: start,
            layer_end: end,
            rows: 1,
            fed: Hash32::ZERO,
            drawn: Hash32::ZERO,
        }
    }

    #[test]
    fn coverage_needs_every_layer_and_allows_overlap() {
        assert_eq!(uncovered_layer(&[span(0, 30)], 30), None);
        assert_eq!(uncovered_layer(&[span(15, 30), span(0, 15)], 30), None);
        assert_eq!(uncovered_layer(&[span(0, 20), span(10, 30)], 30), None);
        assert_eq!(uncovered_layer(&[span(0, 10), span(15, 30)], 30), Some(10));
        assert_eq!(uncovered_layer(&[span(0, 29)], 30), Some(29));
        assert_eq!(uncovered_layer(&[], 30), Some(0));
    }

    #[test]
    fn a_receipt_verifies_only_unchanged_and_under_its_workers_key() {
        let key = SecretKey::from_label("stage");
        let receipt = WorkReceipt {
            task: Hash32::digest(&[b"task"]),
            worker: key.public_key(),
            layer_start: 0,
            layer_end: 15,
            rows: 40,
            fed: TokenDigest::fed().over(&[1, 2, 3]),
            drawn: Hash32::ZERO,
        };
        let signed = receipt.sign(&key);
        assert!(signed.verify());
        let mut more = signed;
        more.receipt.rows = 41;
        assert!(!more.verify(), "a changed row count must not verify");
        let mut other = signed;
        other.receipt.worker = SecretKey::from_label("other").public_key();
        assert!(!other.verify(), "another worker's name must not verify");
        let forged = receipt.sign(&SecretKey::from_label("head"));
        assert!(!forged.verify(), "a receipt signed by someone else must not verify");
        let mut fed = signed;
        fed.receipt.fed = TokenDigest::fed().over(&[1, 2, 4]);
        assert!(!fed.verify(), "changed token digests must not verify");
    }

    #[test]
    fn token_digests_follow_the_ids_in_order_and_the_sampling() {
        let mut running = TokenDigest::fed();
        assert_eq!(running.finish(), Hash32::ZERO, "nothing fed commits to nothing");
        running.push(&[5, 6]);
        running.push(&[]);
        running.push(&[7]);
        assert_eq!(running.finish(), TokenDigest::fed().over(&[5, 6, 7]));
        assert_ne!(running.finish(), TokenDigest::fed().over(&[5, 7, 6]));
        assert_ne!(running.finish(), TokenDigest::fed().over(&[5, 6]));
        let drawn = |t: f32, seed: u64| TokenDigest::drawn(t, 0, 1.0, seed).over(&[5, 6, 7]);
        assert_ne!(drawn(0.7, 1), running.finish(), "fed and drawn digests are told apart");
        assert_ne!(drawn(0.7, 1), drawn(1.3, 1), "the temperature asked for is committed");
        assert_ne!(drawn(0.7, 1), drawn(0.7, 2), "so is the seed");
        assert_eq!(TokenDigest::drawn(0.7, 0, 1.0, 1).over(&[]), Hash32::ZERO);
    }
}
