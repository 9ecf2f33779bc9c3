//! `polylink-infer`: PolyLink's inference engine. It turns tokens into tokens, or hidden states
//! into hidden states for a layer range, and knows nothing of chains or networks.
//!
//! Key types:
//! - [`Gguf`]: a checked reader of GGUF files (metadata, tensor directory, tensors read by name
//!   and offset); truncated or hostile files give typed errors with bounded memory.
//! - [`Shard`]: layers `a..b` of a model (llama, qwen2, gemma3); the whole model is
//!   `0..n_layers`. The first shard embeds tokens, the last applies the final norm and LM head,
//!   middle shards map f32 hidden states `[n_tokens, dim]` to hidden states. Chains of shards give
//!   bit-identical logits to the whole model.
//! - [`KvCache`]: one session's cache for one shard, owned by the caller; one shard serves many
//!   sessions, one at a time ([`Shard::forward`]) or batched ([`Shard::forward_batch`]).
//!   [`LogitsMode::All`] returns every position's logits (teacher-forced re-scoring).
//! - [`Tokenizer`]: byte-level BPE (gpt2, smollm, llama3, qwen2 pre-tokenizers) and
//!   SentencePiece-BPE from GGUF metadata, ids equal to llama.cpp's; [`ChatTemplate`] (ChatML,
//!   Gemma turns, raw) chosen from the metadata, the one renderer of a conversation
//!   ([`polylink_protocol::Prompt`]) into prompt text, for serving and scoring alike.
//! - [`generate()`] with [`GenerateParams`]/[`Sampler`] (greedy, temperature, top-k, top-p, seed,
//!   stop sequences, max tokens) and a streaming detokenizer that never splits a character. The
//!   sampler follows a verifiable rule (each draw a pure function of seed, step and row;
//!   [`sample::margin`] checks one token), and a row's logits never depend on how many
//!   rows are processed together, so a validator's teacher-forced pass sees the worker's logits.
//! - [`Bert`]: a BERT-class encoder (MiniLM) in f32 from a safetensors checkpoint, fed by the
//!   [`WordPiece`] tokenizer; last-layer hidden states for sentence scoring ([`mean_rows`],
//!   [`cosine`]). It shares the worker [`Pool`] and the model ops with the decoders.
//! - [`Model`] opens a file in one call; [`ModelInfo`] gives shape and bytes per layer for
//!   planners; [`hidden_to_bytes`]/[`hidden_from_bytes`] put hidden states on the wire.
//!
//! Data flow: text → [`Tokenizer::encode`] → ids → [`Shard::forward`] (→ hidden states → next
//! shard …) → logits → sampler → ids → streaming detokenizer → text.
//!
//! The kernels are our own: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K and f16/f32 weights, activations
//! quantized to Q8 blocks as ggml does, AVX2 versions (one row, four activation rows for prompts,
//! four weight rows for decoding) picked at run time with portable scalar fallbacks that compute
//! the same bits (one canonical arithmetic, `quant::scalar`), and a persistent worker pool.
#![warn(missing_docs, unreachable_pub)]

mod error;
mod generate;
// A namespace of its own: the file format's pieces (`gguf::Value`, `gguf::TensorInfo`) read
// best qualified; the reader itself is also [`Gguf`] at the root.
pub mod gguf;
mod hidden;
mod kv;
mod loaded;
mod model;
mod pool;
// A namespace of its own: the quantized formats, kernels and their canonical arithmetic
// (`quant::scalar`) are a large sub-API that tests and benchmarks drive directly.
pub mod quant;
mod safetensors;
mod tokenizer;

pub use error::{InferError, Result};
pub use generate::chat::ChatTemplate;
pub use generate::decode::{Decoded, Decoding};
pub use generate::sample::{Sampler, SamplingParams};
pub use generate::{Finish, GenerateParams, Generation, generate};
pub use gguf::Gguf;
pub use hidden::{hidden_from_bytes, hidden_to_bytes};
pub use kv::KvCache;
pub use loaded::Model;
pub use model::bert::{Bert, cosine, mean_rows};
pub use model::config::{Activation, Arch, HParams};
pub use model::info::ModelInfo;
pub use model::shard::{LogitsMode, OutputKind, Shard, ShardInput};
pub use pool::Pool;
pub use tokenizer::{BertInput, PreTokenizer, Segment, Tokenizer, TokenizerModel, WordPiece};

// The verifiable sampling rule is a protocol rule, so it keeps a namespace of its own.
pub use generate::sample;
