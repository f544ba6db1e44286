//! The compiled form of a [`Pattern`], for matching many texts fast.
//!
//! Matching is by segments between stars (anchored first and last segments,
//! leftmost search for the middle ones), so no pattern backtracks
//! exponentially. Case-sensitive patterns with a star also carry a
//! [`QuickReject`], a word-sized test that turns most texts away before any
//! segment is compared.

use super::{Pattern, Syntax, Token};

/// One compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// Literal segments split at `*`. A pattern without `*` has one segment.
    segments: Vec<Segment>,
    case_insensitive: bool,
    /// A word-sized test that rejects most texts before the segments are
    /// compared (case-sensitive patterns with a star).
    quick: Option<QuickReject>,
}

/// Up to 8 bytes the text must start with and up to 8 it must end with,
/// compared as masked little-endian words (`?` positions masked out), and
/// its least length. A listener with a hundred rules evaluates this about
/// twice per rule for each request, so it is kept branch-light.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuickReject {
    min_len: usize,
    head: u64,
    head_mask: u64,
    tail: u64,
    tail_mask: u64,
}

impl QuickReject {
    /// A test that rejects every text (a placeholder in fixed-size arrays).
    pub const REJECT_ALL: QuickReject = QuickReject {
        min_len: usize::MAX,
        head: 0,
        head_mask: 0,
        tail: 0,
        tail_mask: 0,
    };

    /// For a pattern of one segment, `first` and `last` are the same.
    fn new(first: &Segment, last: &Segment, single: bool) -> QuickReject {
        let word = |segment: &Segment, from_end: bool| {
            let take = segment.len().min(8);
            let start = if from_end { segment.len() - take } else { 0 };
            let (mut value, mut mask) = ([0u8; 8], [0u8; 8]);
            // Right-aligned for the tail, so it lines up with the text's end.
            let offset = if from_end { 8 - take } else { 0 };
            for index in 0..take {
                let position = start + index;
                let wildcard = segment.any.get(position).copied().unwrap_or(false);
                if !wildcard {
                    value[offset + index] = segment.bytes[position];
                    mask[offset + index] = 0xff;
                }
            }
            (u64::from_le_bytes(value), u64::from_le_bytes(mask))
        };
        let (head, head_mask) = word(first, false);
        let (tail, tail_mask) = word(last, true);
        QuickReject {
            min_len: if single {
                first.len()
            } else {
                first.len() + last.len()
            },
            head,
            head_mask,
            tail,
            tail_mask,
        }
    }

    /// False when the pattern cannot match `text`; true when it may.
    #[inline]
    pub fn may_match(&self, text: &[u8]) -> bool {
        if text.len() < self.min_len {
            return false;
        }
        let (mut head, mut tail) = ([0u8; 8], [0u8; 8]);
        let take = text.len().min(8);
        head[..take].copy_from_slice(&text[..take]);
        tail[8 - take..].copy_from_slice(&text[text.len() - take..]);
        u64::from_le_bytes(head) & self.head_mask == self.head
            && u64::from_le_bytes(tail) & self.tail_mask == self.tail
    }
}

/// A run of a pattern between stars: bytes to compare, with `?` positions
/// (any byte) marked. Most segments have no `?` and compare as one slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Segment {
    /// The bytes (lowercased when case-insensitive); `?` positions hold 0.
    bytes: Vec<u8>,
    /// `any[i]` is true where the pattern has `?`; empty when it has none.
    any: Vec<bool>,
}

impl Segment {
    fn push(&mut self, byte: Option<u8>) {
        match byte {
            Some(byte) => {
                self.bytes.push(byte);
                if !self.any.is_empty() {
                    self.any.push(false);
                }
            }
            None => {
                if self.any.is_empty() {
                    self.any = vec![false; self.bytes.len()];
                }
                self.bytes.push(0);
                self.any.push(true);
            }
        }
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl From<&Pattern> for Glob {
    fn from(pattern: &Pattern) -> Glob {
        let mut segments = vec![Segment::default()];
        for token in &pattern.tokens {
            let current = segments.last_mut().expect("segments is never empty");
            match token {
                Token::Star => segments.push(Segment::default()),
                Token::One => current.push(None),
                Token::Byte(b) => current.push(Some(*b)),
            }
        }
        let case_insensitive = pattern.case_insensitive;
        let quick = (!case_insensitive).then(|| {
            QuickReject::new(
                &segments[0],
                &segments[segments.len() - 1],
                segments.len() == 1,
            )
        });
        Glob {
            segments,
            case_insensitive,
            quick,
        }
    }
}

impl Glob {
    pub fn new(pattern: &str, syntax: Syntax) -> Glob {
        Glob::from(&Pattern::new(pattern, syntax))
    }

    /// The word-sized prefilter (case-sensitive patterns only).
    pub fn quick_reject(&self) -> Option<QuickReject> {
        self.quick
    }

    pub fn matches(&self, text: &str) -> bool {
        self.matches_bytes(text.as_bytes())
    }

    pub fn matches_bytes(&self, text: &[u8]) -> bool {
        let first = &self.segments[0];
        if self.segments.len() == 1 {
            return text.len() == first.len() && self.segment_at(first, text, 0);
        }
        if let Some(quick) = &self.quick
            && !quick.may_match(text)
        {
            return false;
        }
        let last = &self.segments[self.segments.len() - 1];
        if text.len() < first.len() + last.len()
            || !self.segment_at(first, text, 0)
            || !self.segment_at(last, text, text.len() - last.len())
        {
            return false;
        }
        let mut position = first.len();
        let end = text.len() - last.len();
        for segment in &self.segments[1..self.segments.len() - 1] {
            match self.find(segment, &text[..end], position) {
                Some(found) => position = found + segment.len(),
                None => return false,
            }
        }
        true
    }

    /// Whether `segment` matches `text` at byte offset `at`.
    fn segment_at(&self, segment: &Segment, text: &[u8], at: usize) -> bool {
        let Some(window) = text.get(at..at + segment.len()) else {
            return false;
        };
        match (segment.any.is_empty(), self.case_insensitive) {
            (true, false) => window == segment.bytes.as_slice(),
            (true, true) => window.eq_ignore_ascii_case(&segment.bytes),
            (false, _) => segment
                .bytes
                .iter()
                .zip(&segment.any)
                .zip(window)
                .all(|((want, any), &got)| *any || *want == fold(got, self.case_insensitive)),
        }
    }

    /// The leftmost offset at or after `from` where `segment` matches.
    fn find(&self, segment: &Segment, text: &[u8], from: usize) -> Option<usize> {
        if segment.len() == 0 {
            return Some(from);
        }
        let last_start = text.len().checked_sub(segment.len())?;
        (from..=last_start).find(|&at| self.segment_at(segment, text, at))
    }
}

fn fold(b: u8, case_insensitive: bool) -> u8 {
    if case_insensitive {
        b.to_ascii_lowercase()
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn globs_match_like_alb_patterns() {
        use Syntax::*;
        let cases: &[(&str, Syntax, &str, bool)] = &[
            ("/api*", CaseSensitive, "/api", true),
            ("/api*", CaseSensitive, "/api/users/1", true),
            ("/api*", CaseSensitive, "/API/users", false),
            ("/api*", CaseSensitive, "/ap", false),
            ("/api/users*", CaseSensitive, "/api/usersx", true),
            ("/api/users*", CaseSensitive, "/api/user", false),
            ("/api/?", CaseSensitive, "/api/1", true),
            ("/api/?", CaseSensitive, "/api/12", false),
            ("/api/?", CaseSensitive, "/api/", false),
            ("*", CaseSensitive, "", true),
            ("*", CaseSensitive, "/anything/at/all", true),
            ("", CaseSensitive, "", true),
            ("", CaseSensitive, "/", false),
            ("/exact", CaseSensitive, "/exact", true),
            ("/exact", CaseSensitive, "/exact/", false),
            ("*/posts/*", CaseSensitive, "/api/posts/in-thread/1", true),
            ("*/posts/*", CaseSensitive, "/api/threads/1", false),
            ("a*a", CaseSensitive, "a", false),
            ("a*a", CaseSensitive, "aa", true),
            ("a*b*c", CaseSensitive, "abc", true),
            ("a*b*c", CaseSensitive, "acb", false),
            ("a*b*c", CaseSensitive, "axxbyybzzc", true),
            ("*.example.com", CaseInsensitive, "API.Example.COM", true),
            ("*.example.com", CaseInsensitive, "example.com", false),
            ("api.example.???", CaseInsensitive, "api.example.com", true),
            ("Mobile*", CaseInsensitive, "mobile safari", true),
            ("a\\*b", CaseInsensitiveEscaped, "A*B", true),
            ("a\\*b", CaseInsensitiveEscaped, "axxb", false),
            ("a\\?b", CaseInsensitiveEscaped, "a?b", true),
            ("a\\?b", CaseInsensitiveEscaped, "axb", false),
            ("a\\*b", CaseInsensitive, "a\\xxb", true),
        ];
        for (pattern, syntax, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern, *syntax).matches(text),
                *expected,
                "pattern {pattern:?} ({syntax:?}) against {text:?}"
            );
        }
    }

    /// A backtracking matcher tries every way to place eight `a`s before
    /// giving up on the `c`; the segment search gives up after one scan. The
    /// text ends with the pattern's last segment, so the prefilter lets it
    /// through and the segments are compared.
    #[test]
    fn glob_matching_does_not_backtrack_exponentially() {
        let pattern = Glob::new("*a*a*a*a*a*a*a*a*c*b", Syntax::CaseSensitive);
        let text = format!("{}b", "a".repeat(20_000));
        let quick = pattern
            .quick_reject()
            .expect("a case-sensitive star pattern");
        assert!(
            quick.may_match(text.as_bytes()),
            "the prefilter must not decide this case"
        );
        let started = Instant::now();
        assert!(!pattern.matches(&text));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }

    /// The obvious recursive glob matcher (exponential, fine for short inputs).
    fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| reference_glob(rest, &text[skip..])),
            Some((b'?', rest)) => !text.is_empty() && reference_glob(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference_glob(rest, &text[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_the_reference_matcher(
            // Long enough for segments past the 8-byte quick test.
            pattern in "[ab*?/]{0,16}",
            text in "[ab/]{0,20}",
        ) {
            let glob = Glob::new(&pattern, Syntax::CaseSensitive);
            proptest::prop_assert_eq!(
                glob.matches(&text),
                reference_glob(pattern.as_bytes(), text.as_bytes()),
                "pattern {:?} text {:?}", pattern, text
            );
        }
    }
}
