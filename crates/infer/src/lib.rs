//! `polylink-infer`: PolyLink's inference engine. It turns tokens into tokens, or hidden states
//! into hidden states for a layer range, and knows nothing of chains or networks.
//!
//! Key types:
//! - [`Gguf`]: a checked reader of GGUF files (metadata, tensor directory, tensors by name).
//! - [`Shard`]: layers `a..b` of a model loaded from its GGUF; the whole model is `0..n_layers`.
//!   The first shard embeds tokens, the last applies the final norm and LM head.
//! - [`KvCache`]: one session's cache for one shard, owned by the caller; a shard serves many.
//! - [`Tokenizer`]: byte-level BPE (gpt2) and SentencePiece-BPE (llama) from GGUF metadata, with
//!   token ids equal to llama.cpp's.
//!
//! Data flow: text → [`Tokenizer::encode`] → ids → [`Shard::forward`] (→ hidden states → next
//! shard …) → logits → sampler → ids → streaming detokenizer → text.
//!
//! The quantized kernels (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, f16, f32) are our own, with AVX2
//! versions picked at run time and portable scalar fallbacks.

pub mod error;
pub mod generate;
pub mod gguf;
pub mod hidden;
pub mod kv;
mod loaded;
pub mod model;
pub mod pool;
pub mod quant;
pub mod tokenizer;

pub use error::{InferError, Result};
pub use generate::chat::ChatTemplate;
pub use generate::sample::{Sampler, SamplingParams};
pub use generate::{Finish, GenerateParams, Generation, generate};
pub use gguf::Gguf;
pub use hidden::{hidden_from_bytes, hidden_to_bytes};
pub use kv::KvCache;
pub use loaded::Model;
pub use model::config::{Arch, HParams};
pub use model::info::ModelInfo;
pub use model::shard::{LogitsMode, OutputKind, Shard, ShardInput};
pub use pool::Pool;
pub use tokenizer::Tokenizer;
