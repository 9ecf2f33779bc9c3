//! Unicode classes the pre-tokenizers need (`\p{L}`, `\p{N}`, `\s`), taken from regex-syntax's
//! tables once and searched by binary search.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// Character classes of one code point, as llama.cpp's pre-tokenizers see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Flags {
    /// `\p{L}`.
    pub letter: bool,
    /// `\p{N}`.
    pub number: bool,
    /// `\s` (White_Space).
    pub space: bool,
    /// Whether the code point exists at all (out-of-range positions have no flags).
    pub defined: bool,
}

struct Tables {
    letter: Vec<(char, char)>,
    number: Vec<(char, char)>,
    space: Vec<(char, char)>,
}

fn class_ranges(pattern: &str) -> Vec<(char, char)> {
    let hir = regex_syntax::Parser::new().parse(pattern);
    match hir.as_ref().map(|h| h.kind()) {
        Ok(HirKind::Class(Class::Unicode(c))) => c.ranges().iter().map(|r| (r.start(), r.end())).collect(),
        _ => Vec::new(),
    }
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Tables {
        letter: class_ranges(r"\p{L}"),
        number: class_ranges(r"\p{N}"),
        space: class_ranges(r"\s"),
    })
}

fn in_ranges(r: &[(char, char)], c: char) -> bool {
    r.binary_search_by(|&(lo, hi)| {
        if hi < c {
            std::cmp::Ordering::Less
        } else if lo > c {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    })
    .is_ok()
}

/// The classes of `c`.
pub(super) fn flags(c: char) -> Flags {
    let t = tables();
    if c.is_ascii() {
        return Flags {
            letter: c.is_ascii_alphabetic(),
            number: c.is_ascii_digit(),
            space: matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'),
            defined: true,
        };
    }
    Flags {
        letter: in_ranges(&t.letter, c),
        number: in_ranges(&t.number, c),
        space: in_ranges(&t.space, c),
        defined: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_accents_digits_and_spaces() {
        assert!(flags('é').letter && flags('Ж').letter && flags('中').letter);
        assert!(flags('٣').number && flags('²').number && !flags('²').letter);
        assert!(flags('\u{3000}').space && flags('\u{a0}').space);
        let emoji = flags('😀');
        assert!(!emoji.letter && !emoji.number && !emoji.space);
    }
}
