//! The cross-encoder head's inputs (layout [`LAYOUT`]): a few scalars that mean the same thing
//! for any prompt, so a head fitted on some prompts carries over to others. Raw pooled vectors
//! (the first layout) let the head memorize its training prompts' topics instead.
//!
//! Relevance comes from MiniLM (the joint pass, and the prompt's own embedding against the output
//! part of the joint pass); fluency, word order and completeness from the output's text and word
//! pieces. A separate pass over the output (the bi-encoder cosine) was left out: it nearly doubled
//! the stage's cost for 0.003 of held-out AUC.

use crate::task::Finish;

/// Name of the layout; a head trained on another is refused.
pub(crate) const LAYOUT: &str = "minilm-scalars-v2";

/// Feature names, in order (also the evidence keys).
pub const NAMES: [&str; 12] = [
    "joint_cosine",
    "prompt_vs_joint_output_cosine",
    "adjacent_cosine",
    "ln_output_pieces",
    "ends_cleanly",
    "claims_end_but_cut",
    "unk_rate",
    "continuation_rate",
    "pieces_per_word",
    "lowercase_after_stop",
    "capitalized_mid_sentence",
    "prompt_words_echoed",
];

/// What MiniLM measured on the pair.
#[derive(Debug, Clone, Copy, Default)]
pub struct Encoded {
    /// Cosine of the two segments' mean states in the joint pass.
    pub joint_cosine: f32,
    /// Cosine of the prompt's own embedding and the output segment of the joint pass.
    pub prompt_vs_joint_output_cosine: f32,
    /// Mean cosine of neighbouring output tokens' states in the joint pass (local coherence).
    pub adjacent_cosine: f32,
    /// Word pieces of the output.
    pub pieces: usize,
    /// `[UNK]` and `##` pieces of the output.
    pub unk_and_continuations: (usize, usize),
}

/// The feature vector, in [`NAMES`] order.
pub(crate) fn vector(e: &Encoded, prompt: &str, output: &str, finish: Finish) -> Vec<f32> {
    let words: Vec<&str> = output.split_whitespace().collect();
    let ends = output.trim_end().ends_with(['.', '!', '?', ':', ')', '"', '`', '*', ']']);
    let pieces = e.pieces.max(1) as f32;
    let (lower_after_stop, caps_mid) = sentence_shape(&words);
    vec![
        e.joint_cosine,
        e.prompt_vs_joint_output_cosine,
        e.adjacent_cosine,
        (e.pieces as f32 + 1.0).ln(),
        f32::from(u8::from(ends)),
        f32::from(u8::from(finish == Finish::Eos && !ends)),
        e.unk_and_continuations.0 as f32 / pieces,
        e.unk_and_continuations.1 as f32 / pieces,
        pieces / words.len().max(1) as f32,
        lower_after_stop,
        caps_mid,
        echoed(prompt, output),
    ]
}

/// Of the words that follow a sentence end, the share starting in lowercase; of the words inside
/// sentences, the share capitalized. Words in shuffled order raise both.
fn sentence_shape(words: &[&str]) -> (f32, f32) {
    let (mut after_stop, mut lower_after, mut mid, mut caps_mid) = (0u32, 0u32, 0u32, 0u32);
    for pair in words.windows(2) {
        let stop = pair[0].ends_with(['.', '!', '?']);
        let first = pair[1].chars().next().unwrap_or(' ');
        if stop {
            after_stop += 1;
            lower_after += u32::from(first.is_lowercase());
        } else if first.is_alphabetic() && pair[1] != "I" && !pair[1].starts_with("I'") {
            mid += 1;
            caps_mid += u32::from(first.is_uppercase());
        }
    }
    let rate = |a: u32, b: u32| if b == 0 { 0.0 } else { a as f32 / b as f32 };
    (rate(lower_after, after_stop), rate(caps_mid, mid))
}

/// Share of the prompt's content words (four letters or more) that the output repeats.
fn echoed(prompt: &str, output: &str) -> f32 {
    let norm = |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    let out: std::collections::HashSet<String> = output.split_whitespace().map(norm).collect();
    let content: Vec<String> =
        prompt.split_whitespace().map(norm).filter(|w| w.chars().count() >= 4).collect();
    if content.is_empty() {
        return 0.0;
    }
    content.iter().filter(|w| out.contains(*w)).count() as f32 / content.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_words_change_the_sentence_shape() {
        let good: Vec<&str> = "The sun is hot. It warms the Earth and the sea.".split_whitespace().collect();
        let bad: Vec<&str> = "sea. hot. warms The the It is the sun Earth and".split_whitespace().collect();
        let (g, b) = (sentence_shape(&good), sentence_shape(&bad));
        assert!(b.0 > g.0 && b.1 > g.1, "{g:?} vs {b:?}");
    }

    #[test]
    fn echo_counts_content_words_only() {
        // "what", "capital", "france": the answer repeats two of the three.
        assert_eq!(echoed("What is the capital of France?", "Paris is the capital of France."), 2.0 / 3.0);
        assert_eq!(echoed("What is the capital of France?", "Bees make honey."), 0.0);
        assert_eq!(echoed("Hi?", "anything"), 0.0);
    }
}
