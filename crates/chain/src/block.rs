//! The consensus block: the simplex context it was proposed in, its parent link, a timestamp, the
//! certified seed of the parent's round and the signed transactions.
use crate::{Context, Digest, PublicKey, SeedSignature};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write, varint::UInt};
use commonware_consensus::{Heightable, simplex::types::Context as SimplexContext, types::Height};
use commonware_cryptography::{Digestible, Hasher, Sha256};
use polylink_types::{BLOCK_TXS_MAX, Hash32, SignedTx};

/// Most transactions a block may carry (a consensus rule: decoding rejects more).
pub(crate) const BLOCK_TXS_LIMIT: usize = 1024;
const _: () = assert!(BLOCK_TXS_LIMIT <= BLOCK_TXS_MAX);

/// A block as consensus orders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The round, leader and parent (view, digest) this block was proposed for.
    pub context: Context,
    /// Digest of the parent block.
    pub parent: Digest,
    /// Height (genesis is 0).
    pub height: Height,
    /// Proposer's wall clock, milliseconds since the Unix epoch; never below the parent's.
    pub timestamp_ms: u64,
    /// Threshold-BLS seed of the parent's round (`None` only when the parent is genesis).
    pub parent_seed: Option<SeedSignature>,
    /// Transactions, applied in order.
    pub txs: Vec<SignedTx>,
}

impl Block {
    /// The genesis block of a chain: height 0, its parent digest binds the chain id so two
    /// networks never share a genesis.
    pub fn genesis(chain_id: &str, leader: PublicKey) -> Self {
        let parent = Sha256::hash(&[chain_id.as_bytes()]);
        Self {
            context: SimplexContext {
                round: commonware_consensus::types::Round::zero(),
                leader,
                parent: (commonware_consensus::types::View::zero(), parent),
            },
            parent,
            height: Height::zero(),
            timestamp_ms: 0,
            parent_seed: None,
            txs: Vec::new(),
        }
    }

    /// The 32-byte randomness the ledger receives for this block: sha256 of the parent round's
    /// seed signature, or of the parent digest for the first block (its parent is genesis).
    pub fn ledger_seed(&self) -> Hash32 {
        match &self.parent_seed {
            Some(signature) => Hash32::digest(&[&commonware_codec::Encode::encode(signature)]),
            None => Hash32::digest(&[self.parent.as_ref()]),
        }
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.context.write(buf);
        self.parent.write(buf);
        self.height.write(buf);
        UInt(self.timestamp_ms).write(buf);
        self.parent_seed.write(buf);
        self.txs.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.context.encode_size()
            + self.parent.encode_size()
            + self.height.encode_size()
            + UInt(self.timestamp_ms).encode_size()
            + self.parent_seed.encode_size()
            + self.txs.encode_size()
    }
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            context: SimplexContext::read(buf)?,
            parent: Digest::read(buf)?,
            height: Height::read(buf)?,
            timestamp_ms: UInt::<u64>::read(buf)?.into(),
            parent_seed: Option::<SeedSignature>::read(buf)?,
            txs: Vec::<SignedTx>::read_cfg(buf, &(RangeCfg::new(0..=BLOCK_TXS_LIMIT), ()))?,
        })
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        Sha256::hash(&[&commonware_codec::Encode::encode(self)])
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        self.height
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl commonware_consensus::CertifiableBlock for Block {
    type Context = Context;

    fn context(&self) -> Context {
        self.context.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};
    use commonware_cryptography::{Signer, ed25519};

    #[test]
    fn genesis_differs_per_chain_and_round_trips() {
        let leader = ed25519::PrivateKey::from_seed(0).public_key();
        let a = Block::genesis("polylink-a", leader.clone());
        let b = Block::genesis("polylink-b", leader);
        assert_ne!(a.digest(), b.digest());
        let decoded = Block::decode(a.encode()).unwrap_or_else(|e| panic!("decode: {e}"));
        assert_eq!(decoded, a);
        let mut trailing = a.encode().to_vec();
        trailing.push(0);
        assert!(Block::decode(commonware_codec::Copying(trailing.as_slice())).is_err());
    }
}
