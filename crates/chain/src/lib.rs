//! PolyLink chain node: Commonware Simplex BFT (threshold-BLS VRF scheme) with marshal, driving
//! the PolyLink ledger, plus a mempool, persistence and an HTTP RPC.
//!
//! Data flow: a transaction arrives at the RPC ([`Submitter`]), is checked against the latest
//! executed state and pooled ([`Mempool`]) and gossiped to the other validators. The leader's
//! [`App`] builds a paced [`Block`] from the pool, carrying the certified seed of its parent's
//! round (verified by every validator against the group key). Simplex orders blocks; marshal
//! delivers finalized blocks in height order to the executor, which applies them to the
//! [`Machine`] with that seed, persists the snapshot, then acknowledges the block, and publishes it
//! to the RPC's event stream ([`Shared`]). The [`engine`] wires it all, generic over runtime and
//! network; [`run_node`] starts one node on tokio with TCP p2p and the [`rpc`] server. Tasks the
//! ledger prunes from its state go to the node's own archive ([`TaskIndex`]), from which the RPC
//! still answers them.
//!
//! Seed choice: block `h` is executed with `sha256(seed(round of h's parent))`. That seed is a
//! unique threshold signature fixed before `h` was proposed, so the proposer of `h` cannot choose
//! it (though it knows it when picking transactions; the ledger draws a task's committee from the
//! seed of the block *after* its result, which the result's proposer could not know).
#![warn(missing_docs, unreachable_pub)]

mod app;
mod archive;
mod block;
mod config;
mod dev;
pub mod dkg;
// A namespace of its own: the engine's wiring (`start`, its config, p2p channels, timing) is the
// sub-API that embeds a validator in any runtime and network, as the simulation tests do.
pub mod engine;
mod error;
mod executor;
pub mod http;
mod ledger;
mod machine;
mod mempool;
mod network;
mod node;
pub mod pending_log;
// A namespace of its own: the RPC's wire types, client and signer are how every other role talks
// to the chain.
pub mod rpc;
pub mod secret_file;
mod seeds;
mod submit;

pub use app::App;
pub use archive::TaskIndex;
pub use block::Block;
pub use config::{FaucetConfig, Identity, Keys, NodeConfig, ValidatorEntry};
pub use dev::spawn_dev;
pub use error::Error;
pub use executor::{ChainState, RECENT_BLOCKS, Shared};
pub use ledger::{genesis_value, ledger_from_config};
pub use machine::{Checked, Machine, Queryable};
pub use mempool::{Mempool, Refusal};
pub use network::{NetworkFile, NetworkSpec, configs, testnet_init};
pub use node::run_node;
pub use seeds::SeedBook;
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
