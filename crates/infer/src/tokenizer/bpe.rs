//! Byte-level BPE (GPT-2 style): pre-tokenizer splits, the bytes↔unicode mapping, and merging
//! by rank, following llama.cpp's session step for step so ids match.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::unicode::{Flags, flags};

/// Pre-tokenizer variants (by `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// The GPT-2 pattern alone.
    Gpt2,
    /// Every digit split off first, then the GPT-2 pattern (SmolLM).
    DigitsThenGpt2,
    /// The Llama 3 pattern: case-insensitive contractions, digits in runs of up to 3.
    Llama3,
    /// The Qwen2 pattern: the Llama 3 pattern with single digits.
    Qwen2,
}

/// GPT-2's byte → printable character map.
pub(super) fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    map
}

/// The byte a GPT-2 printable character stands for.
pub(super) fn char_to_byte(c: char) -> Option<u8> {
    let c = c as u32;
    let printable =
        |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    if c < 256 {
        return printable(c).then_some(c as u8);
    }
    // Non-printable bytes map, in order, to 256, 257, …
    (0..=255u32).filter(|&b| !printable(b)).nth((c - 256) as usize).map(|b| b as u8)
}

/// Splits `text` into words as the pre-tokenizer does.
pub(super) fn pre_tokenize(pre: PreTokenizer, text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    match pre {
        PreTokenizer::Gpt2 => gpt2_split(text, &mut out),
        PreTokenizer::Llama3 => llama3_split(text, 3, &mut out),
        PreTokenizer::Qwen2 => llama3_split(text, 1, &mut out),
        PreTokenizer::DigitsThenGpt2 => {
            let mut start = 0;
            for (i, c) in text.char_indices() {
                if flags(c).number {
                    if i > start {
                        gpt2_split(&text[start..i], &mut out);
                    }
                    out.push(&text[i..i + c.len_utf8()]);
                    start = i + c.len_utf8();
                }
            }
            if start < text.len() {
                gpt2_split(&text[start..], &mut out);
            }
        }
    }
    out
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn gpt2_split<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let fl = |i: usize| at(i).map_or(Flags::default(), flags);
    let byte = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut pos = 0;
    while pos < n {
        let start = pos;
        let c = chars[pos].1;
        let f = flags(c);
        if c == '\'' && pos + 1 < n {
            let c1 = chars[pos + 1].1;
            if matches!(c1, 's' | 't' | 'm' | 'd') {
                out.push(&text[byte(pos)..byte(pos + 2)]);
                pos += 2;
                continue;
            }
            if let Some(c2) = at(pos + 2)
                && matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l'))
            {
                out.push(&text[byte(pos)..byte(pos + 3)]);
                pos += 3;
                continue;
            }
        }
        let f2 = if c == ' ' { fl(pos + 1) } else { f };
        let lead = usize::from(c == ' ');
        if f2.letter || f2.number {
            let letter = f2.letter;
            pos += lead;
            while pos < n && if letter { fl(pos).letter } else { fl(pos).number } {
                pos += 1;
            }
        } else if !(f2.space || f2.letter || f2.number) && f2.defined {
            pos += lead;
            while pos < n {
                let g = fl(pos);
                if g.space || g.letter || g.number || !g.defined {
                    break;
                }
                pos += 1;
            }
        } else {
            let mut ws = 0;
            while fl(pos + ws).space {
                ws += 1;
            }
            if ws > 1 && pos + ws < n {
                pos += ws - 1;
            } else if ws > 0 {
                pos += ws;
            } else {
                pos += 1;
            }
        }
        out.push(&text[byte(start)..byte(pos)]);
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn llama3_split<'a>(text: &'a str, max_digits: usize, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let fl = |i: usize| at(i).map_or(Flags::default(), flags);
    let byte = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let mut pos = 0;
    while pos < n {
        let start = pos;
        let c = chars[pos].1;
        let f = flags(c);
        if c == '\'' && pos + 1 < n {
            let c1 = chars[pos + 1].1.to_ascii_lowercase();
            if matches!(c1, 's' | 't' | 'm' | 'd') {
                out.push(&text[byte(pos)..byte(pos + 2)]);
                pos += 2;
                continue;
            }
            if let Some(c2) = at(pos + 2).map(|c| c.to_ascii_lowercase())
                && matches!((c1, c2), ('r', 'e') | ('v', 'e') | ('l', 'l'))
            {
                out.push(&text[byte(pos)..byte(pos + 3)]);
                pos += 3;
                continue;
            }
        }
        if !(crlf(Some(c)) || f.number) && (f.letter || fl(pos + 1).letter) {
            pos += 1;
            while fl(pos).letter {
                pos += 1;
            }
            out.push(&text[byte(start)..byte(pos)]);
            continue;
        }
        if f.number {
            let mut ini = pos;
            while fl(pos).number {
                pos += 1;
                if pos - ini >= max_digits {
                    out.push(&text[byte(ini)..byte(pos)]);
                    ini = pos;
                }
            }
            if pos > ini {
                out.push(&text[byte(ini)..byte(pos)]);
            }
            continue;
        }
        let f2 = if c == ' ' { fl(pos + 1) } else { f };
        if !(f2.space || f2.letter || f2.number) && f.defined && f2.defined {
            pos += usize::from(c == ' ');
            loop {
                let g = fl(pos);
                if g.space || g.letter || g.number || !g.defined {
                    break;
                }
                pos += 1;
            }
            while crlf(at(pos)) {
                pos += 1;
            }
            out.push(&text[byte(start)..byte(pos)]);
            continue;
        }
        let (mut ws, mut last_crlf_end) = (0, 0);
        while fl(pos + ws).space {
            if crlf(at(pos + ws)) {
                last_crlf_end = pos + ws + 1;
            }
            ws += 1;
        }
        if last_crlf_end > 0 {
            pos = last_crlf_end;
        } else if ws > 1 && pos + ws < n {
            pos += ws - 1;
        } else if ws > 0 {
            pos += ws;
        } else {
            pos += 1;
        }
        out.push(&text[byte(start)..byte(pos)]);
    }
}

/// Merges the symbols of one byte-level-encoded word by rank; returns the final pieces.
pub(super) fn merge_word(word: &str, ranks: &HashMap<String, u32>) -> Vec<String> {
    let mut syms: Vec<String> = word.chars().map(String::from).collect();
    let mut prev: Vec<isize> = (0..syms.len() as isize).map(|i| i - 1).collect();
    let mut next: Vec<isize> = (1..=syms.len() as isize).collect();
    let last = syms.len() as isize;
    let mut heap = BinaryHeap::new();
    let mut key = String::new();
    let push = |heap: &mut BinaryHeap<_>, syms: &[String], l: usize, r: usize, key: &mut String| {
        key.clear();
        key.push_str(&syms[l]);
        key.push(' ');
        key.push_str(&syms[r]);
        if let Some(&rank) = ranks.get(key.as_str()) {
            heap.push(Reverse((rank, l, r, syms[l].len() + syms[r].len())));
        }
    };
    for i in 1..syms.len() {
        push(&mut heap, &syms, i - 1, i, &mut key);
    }
    while let Some(Reverse((_, l, r, len))) = heap.pop() {
        if syms[l].is_empty()
            || syms[r].is_empty()
            || syms[l].len() + syms[r].len() != len
            || next[l] != r as isize
        {
            continue;
        }
        let right = std::mem::take(&mut syms[r]);
        syms[l].push_str(&right);
        next[l] = next[r];
        if next[r] < last {
            prev[next[r] as usize] = l as isize;
        }
        if prev[l] >= 0 {
            push(&mut heap, &syms, prev[l] as usize, l, &mut key);
        }
        if next[l] < last {
            push(&mut heap, &syms, l, next[l] as usize, &mut key);
        }
    }
    syms.into_iter().filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_split_matches_the_regex_on_tricky_text() {
        let words = pre_tokenize(PreTokenizer::Gpt2, "Hello  world's 42!!  \n\nx");
        assert_eq!(words, ["Hello", " ", " world", "'s", " 42", "!!", "  \n", "\n", "x"]);
        let words = pre_tokenize(PreTokenizer::DigitsThenGpt2, "in 2024, ok");
        assert_eq!(words, ["in", " ", "2", "0", "2", "4", ",", " ok"]);
        let words = pre_tokenize(PreTokenizer::Llama3, "I'LL pay 12345!!\n\n  ok");
        assert_eq!(words, ["I", "'LL", " pay", " ", "123", "45", "!!\n\n", " ", " ok"]);
        let words = pre_tokenize(PreTokenizer::Qwen2, "x 42 \n\n");
        assert_eq!(words, ["x", " ", "4", "2", " \n\n"]);
    }

    #[test]
    fn byte_map_is_a_bijection() {
        let m = byte_to_char();
        let mut seen: Vec<char> = m.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(m[b' ' as usize], 'Ġ');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(m[b as usize]), Some(b));
        }
    }
}
