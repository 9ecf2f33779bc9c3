//! Stage 2, cross-encoder: MiniLM-L6 (the engine's [`Bert`]) over the joint pair
//! `[CLS] prompt [SEP] output [SEP]`, plus the prompt's own sentence embedding, turned into the
//! scalar features of [`features`] that a small logistic [`Head`] (trained by the lab, weights
//! checksummed in `data/tiqe/`) maps to P(good answer).

use std::path::PathBuf;
use std::sync::Arc;

use polylink_infer::{Bert, BertInput, InferError, Pool, WordPiece, cosine, mean_rows};
use serde_json::json;

use crate::error::{Result, TiqeError};
use crate::features::{self, Encoded, NAMES};
use crate::head::Head;
use crate::task::{Evaluator, Finish, Task, Verdict, to_score};

/// Token budget of the joint pair (a 128-token SmolLM answer is about 140 word pieces).
pub const PAIR_TOKENS_MAX: usize = 192;
/// Token budget of each side for the bi-encoder cosine.
pub const SIDE_TOKENS_MAX: usize = 128;
/// MiniLM-L6's attention heads.
pub const MINILM_HEADS: usize = 12;
/// Name of the feature layout the head was trained on; a head for another layout is refused.
pub const FEATURES: &str = features::LAYOUT;

/// The encoder, its tokenizer and (once trained) its head.
pub struct CrossEncoder {
    bert: Bert,
    wordpiece: WordPiece,
    head: Option<Head>,
}

/// Where the MiniLM files sit in a models directory entry.
#[derive(Debug, Clone)]
pub struct MiniLmFiles {
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `vocab.txt`.
    pub vocab: PathBuf,
}

impl CrossEncoder {
    /// Loads the encoder on `threads` threads; `head` may be `None` only to compute features for
    /// training.
    pub fn open(files: &MiniLmFiles, head: Option<Head>, threads: usize) -> Result<Self> {
        Ok(Self {
            bert: Bert::open(&files.weights, MINILM_HEADS, Arc::new(Pool::new(threads)))?,
            wordpiece: WordPiece::from_file(&files.vocab)?,
            head,
        })
    }

    /// The encoder (for sentence embeddings).
    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// The tokenizer.
    pub fn wordpiece(&self) -> &WordPiece {
        &self.wordpiece
    }

    /// Mean-pooled, L2-normalized sentence embedding (the bi-encoder's).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let enc = self.wordpiece.encode_single(text, SIDE_TOKENS_MAX);
        let h = self.forward(&enc)?;
        let mut m = mean_rows(&h, self.bert.dim(), 0..enc.ids.len());
        let norm = m.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        m.iter_mut().for_each(|v| *v /= norm);
        Ok(m)
    }

    /// Last-layer states; input the encoder cannot take refuses the task.
    fn forward(&self, enc: &BertInput) -> Result<Vec<f32>> {
        self.bert.forward(enc).map_err(|e| match e {
            InferError::BadInput(why) => TiqeError::Refused(why),
            e => TiqeError::Infer(e),
        })
    }

    /// The head's input for a task.
    pub fn task_features(&self, task: &Task) -> Result<Vec<f32>> {
        let e = self.encode(&task.prompt, &task.output)?;
        Ok(features::vector(&e, &task.prompt, &task.output, task.generation.finish))
    }

    /// The head's input for a (prompt, output) pair claimed complete.
    pub fn features(&self, prompt: &str, output: &str) -> Result<Vec<f32>> {
        let e = self.encode(prompt, output)?;
        Ok(features::vector(&e, prompt, output, Finish::Eos))
    }

    /// What MiniLM measures on the pair: one joint pass and the prompt's embedding.
    pub fn encode(&self, prompt: &str, output: &str) -> Result<Encoded> {
        let d = self.bert.dim();
        let enc = self.wordpiece.encode_pair(prompt, output, PAIR_TOKENS_MAX);
        let h = self.forward(&enc)?;
        let split = enc.type_ids.iter().position(|&t| t == 1).unwrap_or(enc.ids.len());
        let out_rows = split..enc.ids.len().saturating_sub(1).max(split);
        let a = mean_rows(&h, d, 1..split.saturating_sub(1).max(1));
        let b = mean_rows(&h, d, out_rows.clone());
        let rows: Vec<&[f32]> = h.chunks_exact(d).skip(out_rows.start).take(out_rows.len()).collect();
        let adjacent = rows.windows(2).map(|w| cosine(w[0], w[1])).sum::<f32>() / rows.len().max(2) as f32;
        let p_emb = self.embed(prompt)?;
        let out_ids = self.wordpiece.tokenize(output);
        Ok(Encoded {
            joint_cosine: cosine(&a, &b),
            prompt_vs_joint_output_cosine: cosine(&p_emb, &b),
            adjacent_cosine: adjacent,
            pieces: out_ids.len(),
            unk_and_continuations: self.wordpiece.unk_and_continuations(&out_ids),
        })
    }
}

impl Evaluator for CrossEncoder {
    fn name(&self) -> &'static str {
        "cross_encoder"
    }

    fn evaluate(&self, task: &Task) -> Result<Verdict> {
        let head = self
            .head
            .as_ref()
            .ok_or_else(|| TiqeError::Training("cross-encoder has no head loaded".into()))?;
        let f = self.task_features(task)?;
        let p = head.prob(&f);
        let named: serde_json::Map<String, serde_json::Value> =
            NAMES.iter().zip(&f).map(|(n, v)| ((*n).to_string(), json!((v * 1e4).round() / 1e4))).collect();
        Ok(Verdict {
            score: to_score(p),
            uncertain: p > 0.2 && p < 0.8,
            evidence: json!({ "p_good": p, "features": named }),
        })
    }
}
