//! Blocks and the per-block context the chain node hands the ledger.

use crate::{Error, Hash32, SignedTx};
use bytes::BufMut;
use commonware_codec::{
    Buf, Copying, Decode, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write,
};
use serde::{Deserialize, Serialize};

/// Default most transactions in one block.
pub const BLOCK_TXS_MAX: usize = 4096;

/// What the ledger needs from consensus to apply a block.
///
/// `seed` must be the threshold-BLS seed of an already-certified round *before* the one that
/// fixed this block's content (the node uses the seed of the round that certified the parent),
/// so a task's committee, drawn from the seed of the block after its result, was unknown when the
/// result was included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockContext {
    /// Height of the block being applied (genesis state is height 0; the first block is 1).
    pub height: u64,
    /// Unbiasable randomness for committee election (sha256 of the seed signature).
    pub seed: Hash32,
    /// The block's timestamp, milliseconds since the Unix epoch: never below its parent's, and
    /// never far ahead of the validators' clocks (consensus checks both).
    pub time_ms: u64,
}

/// Decoding limits for a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most transactions accepted.
    pub txs_max: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        Self { txs_max: BLOCK_TXS_MAX }
    }
}

/// An ordered batch of transactions at a height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Height (first block is 1).
    pub height: u64,
    /// Digest of the parent block ([`Hash32::ZERO`] for the first).
    pub parent: Hash32,
    /// The transactions, applied in order.
    pub txs: Vec<SignedTx>,
}

impl Block {
    /// sha256 of the canonical encoding.
    pub fn digest(&self) -> Hash32 {
        Hash32::digest(&[&self.encode()])
    }

    /// Decodes canonical bytes under `limits`; rejects trailing bytes.
    pub fn from_bytes(bytes: &[u8], limits: &BlockLimits) -> Result<Self, Error> {
        Ok(Self::decode_cfg(Copying(bytes), limits)?)
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.height.write(buf);
        self.parent.write(buf);
        self.txs.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.height.encode_size() + self.parent.encode_size() + self.txs.encode_size()
    }
}

impl Read for Block {
    type Cfg = BlockLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &BlockLimits) -> Result<Self, CodecError> {
        Ok(Self {
            height: u64::read(buf)?,
            parent: Hash32::read(buf)?,
            txs: Vec::<SignedTx>::read_cfg(buf, &(RangeCfg::new(0..=limits.txs_max), ()))?,
        })
    }
}
