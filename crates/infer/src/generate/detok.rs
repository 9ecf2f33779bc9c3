//! Streaming detokenizer: turns token pieces into text without ever emitting a broken UTF-8
//! sequence (a character split across tokens waits for its remaining bytes).

/// Accumulates token bytes and releases complete characters.
#[derive(Debug, Default)]
pub(crate) struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// An empty decoder.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a token's bytes; returns the text that is now complete (maybe empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix is valid UTF-8 by construction.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Flushes what is left at the end of generation (an unfinished character becomes U+FFFD).
    pub(crate) fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_split_across_tokens_is_held_back() {
        let mut d = StreamDecoder::new();
        let e = "😀".as_bytes();
        assert_eq!(d.push(b"hi "), "hi ");
        assert_eq!(d.push(&e[..1]), "");
        assert_eq!(d.push(&e[1..3]), "");
        assert_eq!(d.push(&e[3..]), "😀");
        assert_eq!(d.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(d.push(&e[..2]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }
}
