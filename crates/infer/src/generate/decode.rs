//! The decode rule every generation follows, one sampled token at a time: an end-of-generation
//! token ends it, control tokens add no text, a character split across tokens waits for its
//! remaining bytes, and the last allowed token flushes what is held back. [`crate::generate`],
//! the local backend and the pipeline backend all decode through [`Decoding`], whatever runs
//! the forwards.

use super::Finish;
use super::detok::StreamDecoder;
use crate::tokenizer::Tokenizer;

/// One generation's decoding state.
#[derive(Debug)]
pub struct Decoding {
    decoder: StreamDecoder,
    generated: usize,
    max_tokens: usize,
    ignore_eos: bool,
}

/// What one token did: the text it completed (maybe empty) and, when the generation ends with it,
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Text now complete (with the held-back tail when the generation ends).
    pub text: String,
    /// `Eos` for an end-of-generation token (not counted), `Length` for the last allowed token.
    pub finish: Option<Finish>,
}

impl Decoding {
    /// A generation of at most `max_tokens` tokens (end-of-generation tokens excluded);
    /// `ignore_eos` decodes past them (benchmarks).
    pub fn new(max_tokens: usize, ignore_eos: bool) -> Self {
        Self { decoder: StreamDecoder::new(), generated: 0, max_tokens, ignore_eos }
    }

    /// Takes the next sampled token.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Decoded {
        if tokenizer.is_eog(id) && !self.ignore_eos {
            return Decoded { text: self.decoder.finish(), finish: Some(Finish::Eos) };
        }
        self.generated += 1;
        let mut text =
            if tokenizer.is_control(id) { String::new() } else { self.decoder.push(tokenizer.piece(id)) };
        if self.generated < self.max_tokens {
            return Decoded { text, finish: None };
        }
        text.push_str(&self.decoder.finish());
        Decoded { text, finish: Some(Finish::Length) }
    }
}
