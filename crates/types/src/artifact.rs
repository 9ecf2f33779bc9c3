//! Who a model artifact names as its developer, provable on chain from its hash alone.
//!
//! A developer who wants the royalty of a model appends [`developer_trailer`] (a tag and its
//! public key) to the artifact before publishing it, so the artifact's sha256 covers the key.
//! An [`ArtifactClaim`] proves that an artifact hash ends with such a trailer without the whole
//! file: the SHA-256 chaining state after a 64-byte-aligned prefix, the prefix length, and the
//! tail. The chain finishes the hash from there; making another tail (naming another key) finish
//! to the same hash would be a preimage of SHA-256's compression function. A squatter who
//! registers someone else's public artifact can therefore name no key but the one inside it.

use crate::{BoundedVec, Hash32, PublicKey, codec_fields};
use serde::{Deserialize, Serialize};

/// What precedes the developer's key at the end of a claimable artifact.
pub(crate) const DEVELOPER_TRAILER_TAG: &[u8] = b"polylink-developer-v1";
/// Bytes of the trailer: the tag, then the 32-byte key.
pub const DEVELOPER_TRAILER_LEN: usize = DEVELOPER_TRAILER_TAG.len() + 32;
/// Longest tail a claim carries: the rest of the last 64-byte block, then the trailer.
pub const CLAIM_TAIL_MAX: usize = 63 + DEVELOPER_TRAILER_LEN;

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// `bytes` (a multiple of 64 long) as SHA-256 blocks.
fn whole_blocks(bytes: &[u8]) -> Vec<[u8; 64]> {
    bytes.chunks_exact(64).map(|b| b.try_into().unwrap_or([0u8; 64])).collect()
}

/// The bytes a developer appends to an artifact to name `developer` as its royalty receiver.
pub fn developer_trailer(developer: &PublicKey) -> Vec<u8> {
    [DEVELOPER_TRAILER_TAG, &developer.0].concat()
}

/// A proof that an artifact ends with a developer trailer (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactClaim {
    /// SHA-256 state (eight big-endian words) after `prefix_len` bytes of the artifact.
    pub prefix_state: Hash32,
    /// Bytes hashed into `prefix_state`; a multiple of 64.
    pub prefix_len: u64,
    /// The artifact's remaining bytes, ending with the developer trailer.
    pub tail: BoundedVec<u8, CLAIM_TAIL_MAX>,
}
codec_fields!(ArtifactClaim { prefix_state, prefix_len, tail });

impl ArtifactClaim {
    /// The claim for a whole artifact, if it ends with a developer trailer.
    pub fn from_artifact(bytes: &[u8]) -> Option<ArtifactClaim> {
        let body_len = bytes.len().checked_sub(DEVELOPER_TRAILER_LEN)?;
        let prefix_len = body_len - body_len % 64;
        let mut state = SHA256_IV;
        sha2_block::block_api::compress256(&mut state, &whole_blocks(&bytes[..prefix_len]));
        let mut prefix_state = [0u8; 32];
        for (out, word) in prefix_state.chunks_exact_mut(4).zip(state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        let claim = ArtifactClaim {
            prefix_state: Hash32(prefix_state),
            prefix_len: prefix_len as u64,
            tail: BoundedVec::new(bytes[prefix_len..].to_vec()).ok()?,
        };
        claim.developer().map(|_| claim)
    }

    /// The key the tail's trailer names, if the tail ends with one.
    fn developer(&self) -> Option<PublicKey> {
        let tail = self.tail.as_slice();
        let trailer = tail.get(tail.len().checked_sub(DEVELOPER_TRAILER_LEN)?..)?;
        let (tag, key) = trailer.split_at(DEVELOPER_TRAILER_TAG.len());
        (tag == DEVELOPER_TRAILER_TAG).then(|| PublicKey(key.try_into().unwrap_or([0u8; 32])))
    }

    /// The sha256 of the artifact this claim describes (`None` for a malformed claim).
    fn artifact_hash(&self) -> Option<Hash32> {
        if !self.prefix_len.is_multiple_of(64) {
            return None;
        }
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(self.prefix_state.0.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().ok()?);
        }
        let total_bits = self.prefix_len.checked_add(self.tail.len() as u64)?.checked_mul(8)?;
        let mut padded = self.tail.as_slice().to_vec();
        padded.push(0x80);
        while padded.len() % 64 != 56 {
            padded.push(0);
        }
        padded.extend_from_slice(&total_bits.to_be_bytes());
        sha2_block::block_api::compress256(&mut state, &whole_blocks(&padded));
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        Some(Hash32(out))
    }

    /// The developer an artifact with sha256 `artifact_hash` names, if this claim proves one.
    pub fn developer_of(&self, artifact_hash: &Hash32) -> Option<PublicKey> {
        (self.artifact_hash()? == *artifact_hash).then(|| self.developer()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(len: usize, developer: &PublicKey) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        bytes.extend(developer_trailer(developer));
        bytes
    }

    #[test]
    fn a_claim_proves_the_named_key_and_nothing_else() {
        let dev = PublicKey([7; 32]);
        let squatter = PublicKey([9; 32]);
        for len in [0, 1, 10, 63, 64, 65, 127, 1000, 4096] {
            let bytes = artifact(len, &dev);
            let hash = Hash32::digest(&[&bytes]);
            let claim = ArtifactClaim::from_artifact(&bytes).expect("trailer present");
            assert_eq!(claim.developer_of(&hash), Some(dev), "len {len}");
            // Swapping the key in the tail breaks the hash.
            let mut forged = claim.clone();
            let mut tail = forged.tail.as_slice().to_vec();
            let n = tail.len();
            tail[n - 32..].copy_from_slice(&squatter.0);
            forged.tail = BoundedVec::new(tail).expect("same length");
            assert_eq!(forged.developer_of(&hash), None, "len {len}");
            // The same claim says nothing about another artifact.
            assert_eq!(claim.developer_of(&Hash32::digest(&[b"other"])), None);
        }
        // An artifact without a trailer has no claim.
        assert!(ArtifactClaim::from_artifact(b"a public model without a trailer, long enough").is_none());
    }
}
