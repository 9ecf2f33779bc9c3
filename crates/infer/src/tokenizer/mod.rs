//! Tokenizers built from a GGUF's own metadata: byte-level BPE (`gpt2`) and SentencePiece-BPE
//! (`llama`), with llama.cpp's special-token partitioning, so ids equal llama.cpp's; and BERT's
//! uncased [`WordPiece`] from a `vocab.txt`, for the encoder.

mod bpe;
mod spm;
mod unicode;
mod wordpiece;

use std::borrow::Cow;
use std::collections::HashMap;

pub use bpe::PreTokenizer;
pub use wordpiece::{BertInput, WordPiece};

use crate::error::{InferError, Result};
use crate::gguf::{Gguf, MetaExt, Value};

/// Token type numbers of `tokenizer.ggml.token_type`.
const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_BYTE: i64 = 6;

/// Whether tokens of this type are special: matched by their text, never built from pieces.
fn special_type(ty: i64) -> bool {
    matches!(ty, TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN)
}

/// Which algorithm the vocabulary uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerModel {
    /// Byte-level BPE with merges and a pre-tokenizer.
    Bpe(PreTokenizer),
    /// SentencePiece BPE from scores.
    Spm,
}

/// A tokenizer from GGUF metadata.
#[derive(Debug)]
pub struct Tokenizer {
    model: TokenizerModel,
    texts: Vec<String>,
    types: Vec<i64>,
    scores: Vec<f32>,
    ids: HashMap<Vec<u8>, u32>,
    ranks: HashMap<String, u32>,
    special: Vec<u32>,
    byte_ids: [Option<u32>; 256],
    pieces: Vec<Vec<u8>>,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_space_prefix: bool,
    chat_template: Option<String>,
}

fn strings(arr: &[Value], key: &str) -> Result<Vec<String>> {
    arr.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| InferError::Tokenizer(format!("{key} holds a non-string")))
        })
        .collect()
}

impl Tokenizer {
    /// Builds the tokenizer the GGUF describes; `vocab_rows` is the embedding's row count.
    pub fn from_gguf(g: &Gguf, vocab_rows: usize) -> Result<Self> {
        let bad = |m: String| InferError::Tokenizer(m);
        let model_name =
            g.opt_str("tokenizer.ggml.model")?.ok_or_else(|| bad("tokenizer.ggml.model missing".into()))?;
        let texts =
            strings(g.opt_array("tokenizer.ggml.tokens")?.ok_or_else(|| bad("no tokens".into()))?, "tokens")?;
        let n = texts.len();
        if n == 0 || n > vocab_rows || n > u32::MAX as usize {
            return Err(bad(format!("{n} tokens do not fit an embedding of {vocab_rows} rows")));
        }
        let types: Vec<i64> = match g.opt_array("tokenizer.ggml.token_type")? {
            Some(a) if a.len() == n => a.iter().map(|v| v.as_i64().unwrap_or(TYPE_NORMAL)).collect(),
            Some(a) => return Err(bad(format!("{} token types for {n} tokens", a.len()))),
            None => vec![TYPE_NORMAL; n],
        };
        let scores: Vec<f32> = match g.opt_array("tokenizer.ggml.scores")? {
            Some(a) if a.len() == n => a.iter().map(|v| v.as_f32().unwrap_or(0.0)).collect(),
            Some(a) => return Err(bad(format!("{} scores for {n} tokens", a.len()))),
            None => vec![0.0; n],
        };
        let model = match model_name {
            "gpt2" => TokenizerModel::Bpe(match g.opt_str("tokenizer.ggml.pre")?.unwrap_or("default") {
                "smollm" | "codeshell" | "exaone" | "minerva" => PreTokenizer::DigitsThenGpt2,
                "default" | "gpt2" | "gpt-2" => PreTokenizer::Gpt2,
                "llama3" | "llama-v3" | "llama-bpe" => PreTokenizer::Llama3,
                "qwen2" | "deepseek-r1-qwen" => PreTokenizer::Qwen2,
                other => return Err(bad(format!("unsupported pre-tokenizer {other:?}"))),
            }),
            "llama" => TokenizerModel::Spm,
            other => return Err(bad(format!("unsupported tokenizer model {other:?}"))),
        };
        let ids: HashMap<Vec<u8>, u32> =
            texts.iter().enumerate().map(|(i, t)| (t.as_bytes().to_vec(), i as u32)).collect();
        let mut ranks = HashMap::new();
        if matches!(model, TokenizerModel::Bpe(_)) {
            let merges = g
                .opt_array("tokenizer.ggml.merges")?
                .ok_or_else(|| bad("bpe vocabulary without merges".into()))?;
            for (rank, m) in strings(merges, "merges")?.into_iter().enumerate() {
                if !m.as_bytes().iter().skip(1).any(|&b| b == b' ') {
                    return Err(bad(format!("merge {rank} {m:?} has no separator")));
                }
                ranks.insert(m, rank as u32);
            }
        }
        let id_key = |k: &str| -> Result<Option<u32>> {
            match g.opt_usize(k)? {
                Some(id) if id < n => Ok(Some(id as u32)),
                Some(id) => Err(bad(format!("{k} = {id} outside {n} tokens"))),
                None => Ok(None),
            }
        };
        let (bos, eos, eot) = (
            id_key("tokenizer.ggml.bos_token_id")?,
            id_key("tokenizer.ggml.eos_token_id")?,
            id_key("tokenizer.ggml.eot_token_id")?,
        );
        let is_spm = model == TokenizerModel::Spm;
        let add_bos = g.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(is_spm);
        let add_space_prefix = g.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(is_spm);
        let mut special: Vec<u32> = (0..n as u32).filter(|&i| special_type(types[i as usize])).collect();
        special.sort_by_key(|&i| std::cmp::Reverse(texts[i as usize].len()));
        let mut byte_ids = [None; 256];
        if is_spm {
            for (b, slot) in byte_ids.iter_mut().enumerate() {
                *slot = ids.get(format!("<0x{b:02X}>").as_bytes()).copied();
            }
        }
        let eog_names = ["<|im_end|>", "<end_of_turn>", "<|endoftext|>", "<|eot_id|>", "<|end|>"];
        let mut eog: Vec<u32> = [eos, eot].into_iter().flatten().collect();
        eog.extend(eog_names.iter().filter_map(|t| ids.get(t.as_bytes()).copied()));
        eog.sort_unstable();
        eog.dedup();
        let mut t = Self {
            model,
            texts,
            types,
            scores,
            ids,
            ranks,
            special,
            byte_ids,
            pieces: Vec::new(),
            bos,
            eos,
            eog,
            add_bos,
            add_space_prefix,
            chat_template: g.opt_str("tokenizer.chat_template")?.map(str::to_string),
        };
        t.pieces = (0..n as u32).map(|i| t.piece_uncached(i)).collect();
        Ok(t)
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// The algorithm in use.
    pub fn model(&self) -> &TokenizerModel {
        &self.model
    }

    /// Whether `id` ends generation (EOS, EOT and their kin).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The GGUF's chat template source, if it ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The id of a token with exactly this text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text.as_bytes()).copied()
    }

    /// Token ids of `text`, special tokens recognised, BOS added when the model asks for it
    /// (as llama.cpp's `tokenize(text, add_special=true, parse_special=true)`). Only for text this
    /// program wrote: anything from a user goes through [`Tokenizer::encode_plain`] or
    /// [`Tokenizer::encode_segments`], so it can never produce a special token.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_with(text, true)
    }

    /// Token ids of `text`, special tokens recognised; `add_bos` adds BOS when the model asks for
    /// it.
    pub fn encode_with(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.encode_fragments(self.partition(text), add_bos)
    }

    /// Token ids of `text` as plain text, BOS added when the model asks for it: special-token
    /// strings inside it (`<|im_end|>`) become ordinary tokens (llama.cpp's
    /// `parse_special=false`).
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        self.encode_segments(&[Segment::Text(text)])
    }

    /// Token ids of a prompt laid out in segments, BOS added when the model asks for it: each
    /// [`Segment::Special`] is its special token, and the text between two of them is tokenized
    /// as one plain text. A special the vocabulary lacks is plain text too.
    pub fn encode_segments(&self, segments: &[Segment<'_>]) -> Vec<u32> {
        let mut frags: Vec<Fragment<'_>> = Vec::new();
        for segment in segments {
            let (text, special) = match *segment {
                Segment::Text(text) => (text, None),
                Segment::Special(text) => (text, self.token_id(text).filter(|&id| self.is_special(id))),
            };
            match (special, frags.last_mut()) {
                (Some(id), _) => frags.push(Fragment::Special(id)),
                (None, _) if text.is_empty() => {}
                (None, Some(Fragment::Text(last))) => last.to_mut().push_str(text),
                (None, _) => frags.push(Fragment::Text(Cow::Borrowed(text))),
            }
        }
        self.encode_fragments(frags, true)
    }

    fn encode_fragments(&self, frags: Vec<Fragment<'_>>, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_bos
            && self.add_bos
            && let Some(b) = self.bos
        {
            out.push(b);
        }
        let mut prev_special = true;
        for frag in frags {
            match frag {
                Fragment::Special(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(s) => {
                    self.encode_text(&s, prev_special, &mut out);
                    prev_special = false;
                }
            }
        }
        out
    }

    fn encode_text(&self, s: &str, prev_special: bool, out: &mut Vec<u32>) {
        match &self.model {
            TokenizerModel::Bpe(pre) => {
                let map = bpe::byte_to_char();
                for word in bpe::pre_tokenize(*pre, s) {
                    let encoded: String = word.bytes().map(|b| map[b as usize]).collect();
                    for piece in bpe::merge_word(&encoded, &self.ranks) {
                        match self.ids.get(piece.as_bytes()) {
                            Some(&id) => out.push(id),
                            None => out.extend(piece.bytes().filter_map(|b| self.ids.get(&[b][..]).copied())),
                        }
                    }
                }
            }
            TokenizerModel::Spm => {
                let mut text = String::with_capacity(s.len() + 3);
                if self.add_space_prefix && prev_special {
                    text.push(' ');
                }
                text.push_str(s);
                let escaped = text.replace(' ', "\u{2581}");
                let v = spm::SpmVocab { ids: &self.ids, scores: &self.scores, byte_ids: &self.byte_ids };
                spm::encode(&v, escaped.as_bytes(), out);
            }
        }
    }

    fn partition<'a>(&self, text: &'a str) -> Vec<Fragment<'a>> {
        let mut frags = vec![Fragment::Text(Cow::Borrowed(text))];
        for &id in &self.special {
            let tok = &self.texts[id as usize];
            if tok.is_empty() {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                let Fragment::Text(Cow::Borrowed(mut s)) = f else {
                    next.push(f);
                    continue;
                };
                while let Some(at) = s.find(tok.as_str()) {
                    if at > 0 {
                        next.push(Fragment::Text(Cow::Borrowed(&s[..at])));
                    }
                    next.push(Fragment::Special(id));
                    s = &s[at + tok.len()..];
                }
                if !s.is_empty() {
                    next.push(Fragment::Text(Cow::Borrowed(s)));
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes token `id` stands for (control tokens render as their text).
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Whether `id` is a special token: one that `encode` recognises by its text.
    fn is_special(&self, id: u32) -> bool {
        self.types.get(id as usize).is_some_and(|&ty| special_type(ty))
    }

    /// Whether `id` is a control token (rendered only on request).
    pub fn is_control(&self, id: u32) -> bool {
        self.types.get(id as usize) == Some(&TYPE_CONTROL)
    }

    fn piece_uncached(&self, id: u32) -> Vec<u8> {
        let text = &self.texts[id as usize];
        let ty = self.types[id as usize];
        match (&self.model, ty) {
            (_, TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN) => text.as_bytes().to_vec(),
            (TokenizerModel::Spm, TYPE_BYTE) => {
                let hex = text.strip_prefix("<0x").and_then(|t| t.strip_suffix('>'));
                hex.and_then(|h| u8::from_str_radix(h, 16).ok())
                    .map_or_else(|| text.as_bytes().to_vec(), |b| vec![b])
            }
            (TokenizerModel::Spm, _) => text.replace('\u{2581}', " ").into_bytes(),
            (TokenizerModel::Bpe(_), _) => {
                text.chars().map(|c| bpe::char_to_byte(c).unwrap_or(b'?')).collect()
            }
        }
    }

    /// Text of `ids`, control tokens left out, invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&i| !self.is_control(i))
            .flat_map(|&i| self.piece(i).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A part of a prompt as a chat template lays it out (see [`Tokenizer::encode_segments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// A special token the template itself places, by its text (`<|im_start|>`).
    Special(&'a str),
    /// Text, tokenized as plain text: special-token strings inside it stay ordinary text.
    Text(&'a str),
}

impl<'a> Segment<'a> {
    /// The text the segment stands for.
    pub fn text(&self) -> &'a str {
        match *self {
            Self::Special(text) | Self::Text(text) => text,
        }
    }
}

enum Fragment<'a> {
    Text(Cow<'a, str>),
    Special(u32),
}
