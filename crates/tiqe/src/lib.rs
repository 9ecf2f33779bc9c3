//! `polylink-tiqe`: trustless inference quality evaluation. A validator elected for a task scores
//! the worker's (prompt, output) pair with a cascade of pluggable evaluators, cheapest first.
//!
//! Key types:
//! - [`Submission`] → [`Submission::check`] → [`Task`]: the raw delivery is refused (score 0) when
//!   it is oversized, not UTF-8 or differs from the hash on chain; only then do models run.
//! - [`Evaluator`]: `evaluate(&Task) -> Verdict { score 0..=1000, uncertain, evidence }`.
//!   - [`ModelConsistency`]: teacher-forced re-scoring under the registered model: with the
//!     task's seed, every token against the verifiable-sampling rule's draw; without, arg-max
//!     agreement, top-k membership, log-likelihood; and the end of the answer.
//!   - [`CrossEncoder`]: the engine's MiniLM-L6 ([`polylink_infer::Bert`]) over the joint pair,
//!     reduced to the scalar features ([`FEATURE_NAMES`]) a small logistic [`Head`] maps to
//!     P(good); the head trained for this release is built in ([`Head::shipped`]).
//!   - [`Judge`]: an LLM reads a fenced, sanitized transcript and answers one digit; the score is
//!     the expectation over the digit tokens' probabilities.
//! - [`Cascade`]: runs the cheap stages on every task, combines them, and calls the judge only in
//!   the uncertain band (or on a seeded calibration sample), with thresholds in [`CascadeConfig`].
//!   [`open_registered`] and [`open_cascade`] wire it from model [`Files`].
//!
//! The model passes reuse the fixed prefix every task shares (chat template, judge instructions)
//! through [`PrefixCache`], and compute logits only for the rows they read.
//!
//! Data flow: submission → checks → consistency + cross-encoder → (judge) → integer score.
//!
//! The data sets, the head's training and the benchmark live in `lab`, behind the cargo feature
//! of that name, so a validator carries none of it.
#![warn(missing_docs, unreachable_pub)]

mod cascade;
mod consistency;
mod cross;
mod error;
mod features;
mod head;
mod judge;
// A namespace of its own: the lab is a large sub-API (data sets, training, benchmark) behind a feature.
#[cfg(feature = "lab")]
pub mod lab;
mod open;
mod prefix;
mod task;
mod util;

pub use cascade::{Cascade, CascadeConfig, Report};
pub use consistency::{ConsistencyConfig, ModelConsistency};
pub use cross::{CrossEncoder, FEATURES, MINILM_HEADS, MiniLmFiles, PAIR_TOKENS_MAX, SIDE_TOKENS_MAX};
pub use error::{Result, TiqeError};
pub use features::{Encoded, NAMES as FEATURE_NAMES};
pub use head::{Head, SHIPPED_HEAD};
pub use judge::{Judge, QUOTED_BYTES_MAX, injection_attempt};
pub use open::{Files, open_cascade, open_registered};
pub use prefix::{CHUNK_ROWS, PrefixCache, shared_prefix};
pub use task::{
    Evaluator, Finish, Generation, Limits, Rejection, SCORE_MAX, Submission, Task, Verdict, to_score,
};
pub use util::file_sha256;
