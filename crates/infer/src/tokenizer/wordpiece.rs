//! BERT's uncased WordPiece tokenizer from `vocab.txt`: clean, lowercase and strip common
//! accents, split on whitespace and punctuation (CJK characters alone), then greedy
//! longest-match-first sub-words with the `##` continuation prefix.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{InferError, Result};

/// Longest word tokenized; longer words become `[UNK]` (as BERT does).
const WORD_CHARS_MAX: usize = 100;
/// Largest vocabulary accepted.
const VOCAB_MAX: usize = 1 << 20;

/// An encoded sentence (pair), ready for the encoder ([`crate::Bert::forward`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BertInput {
    /// Token ids, `[CLS] a [SEP] b [SEP]`.
    pub ids: Vec<u32>,
    /// 0 for the first segment (with `[CLS]` and its `[SEP]`), 1 for the second.
    pub type_ids: Vec<u32>,
}

/// The WordPiece vocabulary and special ids.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    continuation: Vec<bool>,
    unk: u32,
    cls: u32,
    sep: u32,
}

impl WordPiece {
    /// Reads `vocab.txt` (one token per line, id = line number).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| InferError::Io { path: path.to_path_buf(), source })?;
        let vocab: HashMap<String, u32> =
            text.lines().take(VOCAB_MAX).zip(0u32..).map(|(t, i)| (t.to_string(), i)).collect();
        let get = |t: &str| {
            vocab.get(t).copied().ok_or_else(|| InferError::BadFile {
                path: path.to_path_buf(),
                reason: format!("no {t} token"),
            })
        };
        let mut continuation = vec![false; vocab.len()];
        for (t, &id) in &vocab {
            if let Some(c) = continuation.get_mut(id as usize) {
                *c = t.starts_with("##");
            }
        }
        Ok(Self { unk: get("[UNK]")?, cls: get("[CLS]")?, sep: get("[SEP]")?, vocab, continuation })
    }

    /// How many of `ids` are `[UNK]` and how many continue a word (`##` pieces).
    pub fn unk_and_continuations(&self, ids: &[u32]) -> (usize, usize) {
        let unk = ids.iter().filter(|&&i| i == self.unk).count();
        let cont =
            ids.iter().filter(|&&i| self.continuation.get(i as usize).copied().unwrap_or(false)).count();
        (unk, cont)
    }

    /// Sub-word ids of `text` (no special tokens).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for word in split_words(&normalize(text)) {
            self.word_pieces(&word, &mut out);
        }
        out
    }

    /// `[CLS] a [SEP] b [SEP]`, the longer side trimmed first until it fits `len_max` tokens.
    pub fn encode_pair(&self, a: &str, b: &str, len_max: usize) -> BertInput {
        let (mut a, mut b) = (self.tokenize(a), self.tokenize(b));
        while a.len() + b.len() + 3 > len_max && !(a.is_empty() && b.is_empty()) {
            if a.len() > b.len() {
                a.pop()
            } else {
                b.pop()
            };
        }
        let mut ids = vec![self.cls];
        ids.extend_from_slice(&a);
        ids.push(self.sep);
        let first = ids.len();
        ids.extend_from_slice(&b);
        ids.push(self.sep);
        let type_ids = (0..ids.len()).map(|i| u32::from(i >= first)).collect();
        BertInput { ids, type_ids }
    }

    /// `[CLS] a [SEP]`, trimmed to `len_max` tokens.
    pub fn encode_single(&self, a: &str, len_max: usize) -> BertInput {
        let mut t = self.tokenize(a);
        t.truncate(len_max.saturating_sub(2));
        let mut ids = vec![self.cls];
        ids.extend_from_slice(&t);
        ids.push(self.sep);
        BertInput { type_ids: vec![0; ids.len()], ids }
    }

    fn word_pieces(&self, word: &str, out: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > WORD_CHARS_MAX {
            out.push(self.unk);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while end > start {
                let mut s: String = chars[start..end].iter().collect();
                if start > 0 {
                    s.insert_str(0, "##");
                }
                if let Some(&id) = self.vocab.get(&s) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => pieces.push(id),
                None => {
                    out.push(self.unk);
                    return;
                }
            }
            start = end;
        }
        out.extend(pieces);
    }
}

/// BERT's text cleaning and uncased normalization.
fn normalize(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            s.push(' ');
        } else if is_cjk(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            for l in c.to_lowercase() {
                s.push(strip_accent(l));
            }
        }
    }
    s
}

/// Splits on whitespace and makes every punctuation character its own word.
fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        let mut cur = String::new();
        for c in chunk.chars() {
            if is_punct(c) {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
    }
    out
}

fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0xA1..=0xBF | 0x2010..=0x205E | 0x3000..=0x303F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// The base letter of common accented Latin letters (NFD then dropping marks, for Latin-1/-A).
fn strip_accent(c: char) -> char {
    const FROM: &str = "àáâãäåçèéêëìíîïñòóôõöùúûüýÿāăąćčďēėęěğīįńňōőřśşšťūůűųźżž";
    const TO: &str = "aaaaaaceeeeiiiinooooouuuuyyaaaccdeeeegiinnoorssstuuuuzzz";
    FROM.chars().position(|f| f == c).and_then(|i| TO.chars().nth(i)).unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_splits_like_bert() {
        assert_eq!(
            split_words(&normalize("Héllo,\tWORLD!! 東京")),
            ["hello", ",", "world", "!", "!", "東", "京"]
        );
        assert_eq!(normalize("a\u{0}b\u{7}c"), "abc");
    }
}
