//! Degraded answers a cheating worker might return, made from honest ones: truncated, garbage
//! tokens, shuffled words, another prompt's answer. Substituted models live in `dataset`.

use polylink_infer::Tokenizer;
use serde::{Deserialize, Serialize};

use super::rng::SplitMix;

/// What produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The registered model, greedy, untouched.
    Honest,
    /// The honest answer to a different prompt.
    Mismatched,
    /// The honest answer cut short, claimed complete.
    Truncated,
    /// Random tokens.
    Garbage,
    /// The honest answer's words in random order.
    Shuffled,
    /// Gemma-3-270M served in place of the registered model.
    SubstituteGemma,
    /// The registered model with layers skipped.
    DroppedLayers,
}

impl Kind {
    /// Every attack kind (all but honest).
    pub const ATTACKS: [Kind; 6] = [
        Kind::Mismatched,
        Kind::Truncated,
        Kind::Garbage,
        Kind::Shuffled,
        Kind::SubstituteGemma,
        Kind::DroppedLayers,
    ];

    /// Snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Honest => "honest",
            Kind::Mismatched => "mismatched",
            Kind::Truncated => "truncated",
            Kind::Garbage => "garbage",
            Kind::Shuffled => "shuffled",
            Kind::SubstituteGemma => "substitute_gemma",
            Kind::DroppedLayers => "dropped_layers",
        }
    }
}

/// `text` cut at 30–70% of its length, at a word boundary; `None` when too short to cut.
pub fn truncate(text: &str, rng: &mut SplitMix) -> Option<String> {
    let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    if words.len() < 6 {
        return None;
    }
    let keep = words.len() * 3 / 10 + rng.below(words.len() * 4 / 10 + 1);
    Some(words[..keep.max(2)].concat().trim_end().to_string())
}

/// `n` random non-control tokens of `tok`'s vocabulary, decoded.
pub fn garbage(tok: &Tokenizer, n: usize, rng: &mut SplitMix) -> String {
    let vocab = tok.vocab_size();
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n.max(1) {
        let id = rng.below(vocab) as u32;
        if !tok.is_control(id) && !tok.is_eog(id) {
            ids.push(id);
        }
    }
    tok.decode(&ids)
}

/// The words of `text` in a random order.
pub fn shuffle_words(text: &str, rng: &mut SplitMix) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    rng.shuffle(&mut words);
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degradations_change_the_text_deterministically() {
        let t = "one two three four five six seven eight nine ten eleven twelve.";
        let cut = truncate(t, &mut SplitMix::new(1)).unwrap_or_default();
        assert!(t.starts_with(&cut) && cut.len() < t.len() && !cut.is_empty());
        assert_eq!(truncate("too short", &mut SplitMix::new(1)), None);
        let a = shuffle_words(t, &mut SplitMix::new(7));
        assert_eq!(a, shuffle_words(t, &mut SplitMix::new(7)));
        assert_ne!(a, t);
    }
}
