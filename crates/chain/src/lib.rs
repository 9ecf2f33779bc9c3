//! PolyLink chain node: Commonware Simplex BFT (threshold-BLS VRF scheme) with marshal, driving
//! the PolyLink ledger, plus a mempool, persistence and an HTTP RPC.
//!
//! Data flow: a transaction arrives at the RPC ([`Submitter`]), is checked against the latest
//! executed state and pooled ([`Mempool`]) and gossiped to the other validators. The leader's
//! [`App`] builds a paced [`Block`] from the pool, carrying the certified seed of its parent's
//! round (verified by every validator against the group key). Simplex orders blocks; marshal
//! delivers finalized blocks in height order to the [`executor`], which applies them to the
//! [`Machine`] with that seed, persists the snapshot, then acknowledges the block, and publishes it
//! to the RPC's event stream. The [`engine`] wires it all, generic over runtime and network.
//! Tasks the ledger prunes from its state go to the node's own [`archive`], from which the RPC
//! still answers them.
//!
//! Seed choice: block `h` is executed with `sha256(seed(round of h's parent))`. That seed is a
//! unique threshold signature fixed before `h` was proposed, so the proposer of `h` cannot choose
//! it (though it knows it when picking transactions; the ledger draws a task's committee from the
//! seed of the block *after* its result, which the result's proposer could not know).

pub mod app;
pub mod archive;
pub mod block;
pub mod config;
pub mod dev;
pub mod engine;
mod error;
pub mod executor;
pub mod ledger;
pub mod machine;
pub mod mempool;
pub mod network;
pub mod node;
pub mod rpc;
pub mod seeds;
pub mod submit;

pub use app::App;
pub use block::Block;
pub use error::Error;
pub use executor::Shared;
pub use machine::Machine;
pub use mempool::Mempool;
pub use submit::Submitter;

use commonware_consensus::simplex::scheme::bls12381_threshold::vrf;
use commonware_cryptography::bls12381::primitives::variant::{MinSig, Variant};

/// Validator identity on the p2p network and in the committee.
pub type PublicKey = commonware_cryptography::ed25519::PublicKey;
/// Block digest.
pub type Digest = commonware_cryptography::sha256::Digest;
/// The committee's signing scheme: threshold BLS (MinSig) with a per-round seed.
pub type Scheme = vrf::Scheme<PublicKey, MinSig>;
/// The simplex context a block is proposed in.
pub type Context = commonware_consensus::simplex::types::Context<Digest, PublicKey>;
/// A round's seed: a threshold signature over the round.
pub type SeedSignature = <MinSig as Variant>::Signature;
