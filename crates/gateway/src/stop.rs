//! Stop sequences over a stream of text deltas: text is released as soon as it can no longer
//! become the start of a stop sequence, and generation ends at the first stop sequence (which is
//! not part of the answer).

/// What one delta released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Released {
    /// Text safe to send now.
    pub text: String,
    /// A stop sequence was found: send `text`, then finish with `"stop"`.
    pub stopped: bool,
}

/// Filters deltas against the request's stop sequences.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    /// A filter for `stops` (empty: everything passes at once).
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self { stops, held: String::new() }
    }

    /// Adds a delta; returns what can be released.
    pub(crate) fn push(&mut self, delta: &str) -> Released {
        self.held.push_str(delta);
        if let Some(cut) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let mut text = std::mem::take(&mut self.held);
            text.truncate(cut);
            return Released { text, stopped: true };
        }
        let keep = self.partial_tail();
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Released { text, stopped: false }
    }

    /// What is still held back when generation ends without a stop sequence.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Bytes at the end of the held text that are a proper prefix of some stop sequence.
    fn partial_tail(&self) -> usize {
        let text = &self.held;
        self.stops
            .iter()
            .filter_map(|s| {
                (1..s.len()).rev().find(|&l| {
                    l <= text.len()
                        && s.is_char_boundary(l)
                        && text.is_char_boundary(text.len() - l)
                        && text.ends_with(&s[..l])
                })
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequence_split_across_deltas_is_cut_and_held_text_released() {
        let mut f = StopFilter::new(vec!["\n\nUser:".into()]);
        assert_eq!(f.push("Hello"), Released { text: "Hello".into(), stopped: false });
        assert_eq!(f.push(" world\n"), Released { text: " world".into(), stopped: false });
        assert_eq!(f.push("\nUs"), Released { text: String::new(), stopped: false });
        assert_eq!(f.push("er: hi"), Released { text: String::new(), stopped: true });

        let mut g = StopFilter::new(vec!["END".into()]);
        assert_eq!(g.push("the EN").text, "the ");
        assert!(g.push("D").stopped);

        let mut h = StopFilter::new(vec!["xyz".into()]);
        assert_eq!(h.push("abc x").text, "abc ");
        assert_eq!(h.finish(), "x");
    }
}
