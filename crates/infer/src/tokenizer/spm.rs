//! SentencePiece-BPE as llama.cpp runs it: characters merged pairwise by the score of the merged
//! token (highest first), and characters left outside the vocabulary fall back to byte tokens.

use std::collections::{BinaryHeap, HashMap};

/// The vocabulary view the SentencePiece merge needs.
pub(super) struct SpmVocab<'a> {
    /// Token text → id.
    pub ids: &'a HashMap<Vec<u8>, u32>,
    /// Scores by id.
    pub scores: &'a [f32],
    /// Byte value → `<0xXX>` token id.
    pub byte_ids: &'a [Option<u32>; 256],
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    // Highest score first; on ties the leftmost pair.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}

/// Tokenizes already-escaped text (spaces as `▁`) and appends ids to `out`.
pub(super) fn encode(v: &SpmVocab<'_>, text: &[u8], out: &mut Vec<u32>) {
    // Symbols are UTF-8 characters: (start, len), linked by prev/next.
    let mut sym: Vec<(usize, usize)> = Vec::new();
    let mut offs = 0;
    while offs < text.len() {
        let len = utf8_len(text[offs]).min(text.len() - offs);
        sym.push((offs, len));
        offs += len;
    }
    let n = sym.len();
    let mut prev: Vec<isize> = (0..n as isize).map(|i| i - 1).collect();
    let mut next: Vec<isize> = (1..=n as isize).collect();
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, sym: &[(usize, usize)], l: usize, r: usize| {
        let bytes = &text[sym[l].0..sym[r].0 + sym[r].1];
        if let Some(&id) = v.ids.get(bytes) {
            heap.push(Bigram {
                score: v.scores.get(id as usize).copied().unwrap_or(0.0),
                left: l,
                right: r,
                len: bytes.len(),
            });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &sym, i - 1, i);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left, b.right);
        if sym[l].1 == 0 || sym[r].1 == 0 || sym[l].1 + sym[r].1 != b.len {
            continue;
        }
        sym[l].1 += sym[r].1;
        sym[r].1 = 0;
        next[l] = next[r];
        if (next[r] as usize) < n {
            prev[next[r] as usize] = l as isize;
        }
        if prev[l] >= 0 {
            try_add(&mut heap, &sym, prev[l] as usize, l);
        }
        if (next[l] as usize) < n {
            try_add(&mut heap, &sym, l, next[l] as usize);
        }
    }
    let mut i = 0isize;
    while (i as usize) < n {
        let (s, len) = sym[i as usize];
        // Every merge produced a vocabulary token, so a final symbol is either a token or a
        // single character that falls back to byte tokens.
        let bytes = &text[s..s + len];
        match v.ids.get(bytes) {
            Some(&id) => out.push(id),
            None => out.extend(bytes.iter().filter_map(|&b| v.byte_ids[b as usize])),
        }
        i = next[i as usize];
    }
}

/// Length of the UTF-8 sequence a lead byte starts (1 for stray continuation bytes).
pub(super) fn utf8_len(b: u8) -> usize {
    match b >> 4 {
        0xf => 4,
        0xe => 3,
        0xc | 0xd => 2,
        _ => 1,
    }
}
