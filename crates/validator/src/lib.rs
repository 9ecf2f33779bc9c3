//! `polylink-validator`: the TIQE validator role. A validator bonds stake, registers, follows the
//! chain's finalized blocks, and for every task whose committee it is drawn into it scores the
//! worker's answer and takes part in the commit-reveal vote that settles the task.
//!
//! Key types:
//! - [`Config`] → [`start`] → [`Running`] (with its [`polylink_protocol::ValidatorReady`] announcement).
//!
//! Inside (private; the face is the list above and [`ScorerConfig`]):
//! - `schedule::Seat`: a committee seat and its windows; `schedule::seats` reads them from a
//!   block, `Seat::phase` says what may be sent at a height (the pure core).
//! - `verify::check`: a transcript against the chain (prompt ids hash, output hash, token
//!   counts) and the workers' receipts (digests of the ids fed and drawn) → score it, or abstain
//!   (the gateway's word against the workers' signatures is no evidence about them).
//! - `scorer::Scorer`: the TIQE cascade over the registered model (found by its artifact hash)
//!   on its own thread.
//! - `journal::Journal`: salts and scores on disk before the commit is sent.
//!
//! Data flow per seat: `committee_elected` event → signed transcript fetch from the gateway
//! (retried until a quarter of the commit window is left; withheld → abstain) → checks → cascade score
//! → salt persisted → `CommitScore` → (reveal window) `RevealScore`, resent until the chain has it.
#![warn(missing_docs, unreachable_pub)]

mod chain;
mod error;
mod fetch;
mod journal;
mod node;
mod schedule;
mod scorer;
mod verify;

pub use error::{Result, ValidatorError};
pub use node::{Config, Running, start};
pub use scorer::ScorerConfig;
