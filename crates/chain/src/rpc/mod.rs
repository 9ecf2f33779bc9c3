//! The HTTP JSON RPC: wire types (`api`, declared once) shared by the node's server and the typed
//! [`Client`], and the [`Signer`] every role uses to send its transactions.
//!
//! Endpoints: `POST /tx` (hex canonical `SignedTx`), `GET /status`, `GET /account/{pk}`,
//! `GET /models`, `GET /model/{id}`, `GET /workers`, `GET /validators`, `GET /task/{id}`,
//! `GET /params`, `GET /block/{height}`, `GET /events` (server-sent events, one `block` event per
//! executed finalized block with its receipts and ledger events), and on a dev chain
//! `POST /faucet` (funds for an account, once). Every error answer is a
//! [`Refusal`]: a machine-readable [`ErrorCode`] and a message.
mod api;
mod client;
pub(crate) mod server;
mod signer;

pub use api::{
    AccountView, BODY_BYTES_MAX, BlockView, ErrorCode, Executed, FaucetRequest, FinalizedBlock, GatewayEntry,
    ModelEntry, ParamsView, Refusal, Status, SubmitRequest, SubmitResponse, TxOutcome, TxReceipt,
    ValidatorEntry, WorkerEntry,
};
pub use client::{Client, RESTART_PATIENCE};
pub use signer::{Included, Signer};
