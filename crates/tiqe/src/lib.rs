//! `polylink-tiqe`: trustless inference quality evaluation. A validator elected for a task scores
//! the worker's (prompt, output) pair with a cascade of pluggable evaluators, cheapest first.
//!
//! Key types:
//! - [`Submission`] → [`Submission::check`] → [`Task`]: the raw delivery is refused (score 0) when
//!   it is oversized, not UTF-8 or differs from the hash on chain; only then do models run.
//! - [`Evaluator`]: `evaluate(&Task) -> Verdict { score 0..=1000, uncertain, evidence }`.
//!   - [`ModelConsistency`]: teacher-forced re-scoring under the registered model (arg-max
//!     agreement, top-k membership, log-likelihood, end of answer).
//!   - [`CrossEncoder`]: our own MiniLM-L6 forward ([`bert`]) over the joint pair, reduced to the
//!     scalar [`features`] a small logistic head maps to P(good); the head is trained by [`train`]
//!     on data the project generates ([`dataset`], batched greedy decoding).
//!   - [`Judge`]: an LLM reads a fenced, sanitized transcript and answers one digit; the score is
//!     the expectation over the digit tokens' probabilities.
//! - [`Cascade`]: runs the cheap stages on every task, combines them, and calls the judge only in
//!   the uncertain band (or on a seeded calibration sample), with thresholds in [`CascadeConfig`].
//!
//! The model passes reuse the fixed prefix every task shares (chat template, judge instructions)
//! through [`prefix::PrefixCache`], and compute logits only for the rows they read.
//!
//! Data flow: submission → checks → consistency + cross-encoder → (judge) → integer score.

pub mod attack;
pub mod bert;
pub mod cascade;
pub mod consistency;
pub mod cross;
pub mod dataset;
pub mod error;
pub mod features;
pub mod judge;
pub mod metrics;
pub mod prefix;
pub mod suite;
pub mod task;
pub mod train;
pub mod util;

pub use cascade::{Cascade, CascadeConfig};
pub use consistency::{ConsistencyConfig, ModelConsistency};
pub use cross::{CrossEncoder, Head};
pub use error::{Result, TiqeError};
pub use judge::Judge;
pub use task::{Evaluator, Finish, Generation, Limits, Rejection, SCORE_MAX, Submission, Task, Verdict};
