//! PolyLink's on-chain rules as a pure, deterministic state machine: no I/O, no clock, no
//! floats, no async. Inputs are blocks of signed transactions plus a `BlockContext`
//! (height and an unbiasable seed; see [`polylink_types::BlockContext`]); outputs are receipts, events and a state root.
//!
//! Key types: [`Ledger`] (the API the chain node calls), [`Genesis`] and [`Params`] (every
//! parameter of ARCHITECTURE §5), [`State`] and its records ([`Account`], [`Stake`], [`Model`],
//! [`Worker`], [`Validator`], [`Task`]), [`BlockOutcome`]/[`Receipt`], and [`LedgerError`].
//!
//! Data flow of [`Ledger::apply_block`] at height `h` with seed `s`:
//! 1. begin: every task whose result was included at a height `< h` gets its committee, drawn
//!    by stake without replacement from `H(s || task id || i)`, excluding the task's workers and
//!    the model's developer; commits are accepted at `h+1 ..= h+commit_window`, reveals in the
//!    following `reveal_window` blocks.
//! 2. transactions in order, each on a staged view: signature (chain id bound), nonce, then the
//!    kind's rules; a refused one changes nothing (not even the nonce) and gets its error in the
//!    receipt.
//! 3. end: tasks whose reveal window closes at `h` settle (median, slashing, fee split or
//!    refund); at epoch boundaries every model's price moves toward the target utilization
//!    (paid demand from others over the staked workers' capacity); tasks final for
//!    `task_retention_blocks` leave the state ([`BlockOutcome::pruned`], for nodes' indexes).
//!
//! Money: [`Amount`](polylink_types::Amount) `u128`, checked arithmetic, ratios in bps/ppm.
//! Invariant: `supply == Σ balances + Σ bonded + Σ unbonding + Σ task escrow + treasury`, and
//! `supply` only falls by slashing and transaction fees (both burned). Every transaction but a
//! duty (a result, a score commit or reveal) costs its sender `tx_fee`, charged after its rules. [`Ledger::check_tx`] runs the same
//! rules on `&self` for mempool admission. [`Ledger::snapshot`] gives deterministic bytes.
//!
//! Rules worth knowing: one model per artifact hash, its royalty to the developer the artifact
//! names ([`polylink_types::ArtifactClaim`]), else to the treasury; one stake backs all roles of an account; a role whose stake drops under
//! its minimum is inactive (that is how a role is left). Only the gateway a task names may submit
//! its result. Withdraw releases matured unbonding stake; slashing takes bonded stake first,
//! then the newest unbonding entries. Treasury payments name [`TREASURY`] as the account.
#![warn(missing_docs, unreachable_pub)]

mod committee;
mod error;
mod exec;
mod genesis;
mod ledger;
mod params;
mod pricing;
mod receipts;
mod records;
mod registry;
mod scoring;
mod settle;
mod staking;
mod state;
mod tasks;
mod view;

pub use committee::elect;
pub use error::{LedgerError, Result};
pub use genesis::{DEV_BALANCE, Genesis, GenesisAccount, dev_key};
pub use ledger::{BlockOutcome, Ledger, Receipt, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, TxCheck};
pub use params::{
    BPS_ONE, COMMITTEE_MAX, DEADLINE_SPEED_MARGIN, PPM_ONE, Params, SCORE_MAX, UNBONDING_ENTRIES_MAX,
};
pub use pricing::{next_price, utilization_ppm};
pub use records::{
    ALLOWANCES_MAX, Account, Allowance, Gateway, Member, Model, SettleKey, Stake, Task, TaskResult,
    TaskStatus, Totals, Unbonding, VOUCHERS_LIVE_MAX, Validator, VoucherUse, Worker,
};
pub use registry::LAYERS_MAX;
pub use settle::{ABSTAIN, BUSY, median};
pub use state::State;
pub use tasks::{DEPOSIT_NOTICE_MS, deadline_after_ms};

use polylink_types::PublicKey;

/// The account named in treasury payment events (the treasury itself is [`Totals::treasury`]).
pub const TREASURY: PublicKey = PublicKey([0u8; 32]);
