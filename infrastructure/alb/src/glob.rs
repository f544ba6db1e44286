//! ALB glob patterns as languages.
//!
//! `*` matches any run of characters (including `/` and the empty run), `?`
//! exactly one. Path patterns are case-sensitive; host, header and query
//! patterns are not, and query patterns escape `*` and `?` with a backslash.
//!
//! Besides matching a text, two questions are answered exactly, by walking the
//! patterns as automata over the characters they name (plus one class for
//! every other character):
//! - [`is_covered`]: is every text that one pattern matches matched by at
//!   least one of several others?
//! - [`overlaps`]: is there a text that two patterns both match?
//!
//! Matching a text is the job of [`Glob`], the compiled form of a
//! [`Pattern`] that the local ALB evaluates per request.

use std::collections::{BTreeSet, HashSet, VecDeque};

mod compiled;

pub use compiled::{Glob, QuickReject};

/// How a pattern is written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Case-sensitive, no escapes (path patterns).
    CaseSensitive,
    /// Case-insensitive, no escapes (hosts, header values).
    CaseInsensitive,
    /// Case-insensitive; `\*` and `\?` are literal (query-string keys and values).
    CaseInsensitiveEscaped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Token {
    Byte(u8),
    One,
    Star,
}

/// A parsed pattern. Case-insensitive patterns hold their bytes lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
    case_insensitive: bool,
}

impl Pattern {
    pub fn new(text: &str, syntax: Syntax) -> Pattern {
        let case_insensitive = syntax != Syntax::CaseSensitive;
        let fold = |b: u8| {
            if case_insensitive {
                b.to_ascii_lowercase()
            } else {
                b
            }
        };
        let mut tokens = Vec::with_capacity(text.len());
        let mut bytes = text.bytes();
        while let Some(b) = bytes.next() {
            let token = match b {
                b'*' => Token::Star,
                b'?' => Token::One,
                b'\\' if syntax == Syntax::CaseInsensitiveEscaped => {
                    Token::Byte(fold(bytes.next().unwrap_or(b'\\')))
                }
                other => Token::Byte(fold(other)),
            };
            // `**` is the same language as `*`.
            if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                tokens.push(token);
            }
        }
        Pattern {
            tokens,
            case_insensitive,
        }
    }

    /// The number of `*` and `?` wildcards (AWS's per-rule quota counts them).
    pub fn wildcards(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| matches!(t, Token::Star | Token::One))
            .count()
    }

    /// Whether the pattern matches `text`. Compiles a [`Glob`] each call;
    /// compile once where the same pattern meets many texts.
    pub fn matches(&self, text: &str) -> bool {
        Glob::from(self).matches(text)
    }
}

/// One consuming move from `state` on a character of class `class` (`None`:
/// a character that no pattern in play names).
fn step(tokens: &[Token], state: usize, class: Option<u8>) -> Option<usize> {
    match tokens.get(state)? {
        Token::Byte(b) if Some(*b) == class => Some(state + 1),
        Token::Byte(_) => None,
        Token::One => Some(state + 1),
        Token::Star => Some(state),
    }
}

/// The character classes that tell the patterns apart: each byte some
/// pattern names, and `None` for all the others.
fn classes<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Vec<Option<u8>> {
    let mut bytes = BTreeSet::new();
    for pattern in patterns {
        for token in &pattern.tokens {
            if let Token::Byte(b) = token {
                bytes.insert(*b);
            }
        }
    }
    let mut classes: Vec<Option<u8>> = bytes.into_iter().map(Some).collect();
    classes.push(None);
    classes
}

/// Whether every text that `pattern` matches is matched by one of `covers`.
/// Patterns of different case sensitivity are compared as written.
pub fn is_covered(pattern: &Pattern, covers: &[Pattern]) -> bool {
    let classes = classes(std::iter::once(pattern).chain(covers));
    // The covering side as one set of (pattern, position) states.
    type Cover = BTreeSet<(usize, usize)>;
    let close_cover = |set: &mut Cover| {
        let mut pending: Vec<(usize, usize)> = set.iter().copied().collect();
        while let Some((k, j)) = pending.pop() {
            if covers[k].tokens.get(j) == Some(&Token::Star) && set.insert((k, j + 1)) {
                pending.push((k, j + 1));
            }
        }
    };
    let step_cover = |set: &Cover, class: Option<u8>| {
        let mut next: Cover = set
            .iter()
            .filter_map(|&(k, j)| step(&covers[k].tokens, j, class).map(|to| (k, to)))
            .collect();
        close_cover(&mut next);
        next
    };
    let mut start: Cover = (0..covers.len()).map(|k| (k, 0)).collect();
    close_cover(&mut start);
    let mut seen: HashSet<(usize, Cover)> = HashSet::new();
    let mut queue = VecDeque::from([(0usize, start)]);
    while let Some((i, cover)) = queue.pop_front() {
        if !seen.insert((i, cover.clone())) {
            continue;
        }
        let tokens = &pattern.tokens;
        if i == tokens.len() && !cover.iter().any(|&(k, j)| j == covers[k].tokens.len()) {
            // A text that `pattern` matches and no cover does.
            return false;
        }
        match tokens.get(i) {
            None => {}
            Some(Token::Byte(b)) => queue.push_back((i + 1, step_cover(&cover, Some(*b)))),
            Some(Token::One) => {
                for &class in &classes {
                    queue.push_back((i + 1, step_cover(&cover, class)));
                }
            }
            Some(Token::Star) => {
                queue.push_back((i + 1, cover.clone()));
                for &class in &classes {
                    queue.push_back((i, step_cover(&cover, class)));
                }
            }
        }
    }
    true
}

/// Whether some text is matched by both patterns.
pub fn overlaps(a: &Pattern, b: &Pattern) -> bool {
    let classes = classes([a, b]);
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut queue = VecDeque::from([(0usize, 0usize)]);
    while let Some((i, j)) = queue.pop_front() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == a.tokens.len() && j == b.tokens.len() {
            return true;
        }
        if a.tokens.get(i) == Some(&Token::Star) {
            queue.push_back((i + 1, j));
        }
        if b.tokens.get(j) == Some(&Token::Star) {
            queue.push_back((i, j + 1));
        }
        for &class in &classes {
            if let (Some(x), Some(y)) = (step(&a.tokens, i, class), step(&b.tokens, j, class)) {
                queue.push_back((x, y));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path(text: &str) -> Pattern {
        Pattern::new(text, Syntax::CaseSensitive)
    }

    #[test]
    fn matching_follows_the_alb_glob() {
        let cases = [
            ("/api*", "/api", true),
            ("/api*", "/api/users/1", true),
            ("/api*", "/API", false),
            ("/api/users/?", "/api/users/1", true),
            ("/api/users/?", "/api/users/12", false),
            ("*.example.com", "a.b.example.com", true),
            ("/a*b*c", "/axxbyyc", true),
            ("/a*b*c", "/axxcyyb", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(path(pattern).matches(text), expected, "{pattern} {text}");
        }
        let host = Pattern::new("API.shop.example", Syntax::CaseInsensitive);
        assert!(host.matches("api.SHOP.example"));
        let query = Pattern::new("a\\*", Syntax::CaseInsensitiveEscaped);
        assert!(query.matches("A*"));
        assert!(!query.matches("Ab"));
    }

    #[test]
    fn coverage_is_decided_exactly() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("/api/users*", &["/api*"], true),
            ("/api/users", &["/api*"], true),
            ("/api*", &["/api/users*"], false),
            ("/v2/orders*", &["/api*"], false),
            ("/api/users/?", &["/api/users/*"], true),
            ("/api/users/*", &["/api/users/?"], false),
            // A union covers what neither pattern covers alone.
            ("/a?", &["/ab", "/a?"], true),
            ("/a*", &["/a", "/a?*"], true),
            ("/a*", &["/a?*"], false),
            ("*", &["*"], true),
            ("/x*y", &["/x*"], true),
            ("/x*y", &["*y"], true),
            ("/x*y", &["/x?*"], true),
            ("/x*y", &["/x?y*"], false),
            ("/users*", &["/*"], true),
            ("/users*", &[], false),
        ];
        for (pattern, covers, expected) in cases {
            let covers: Vec<Pattern> = covers.iter().map(|c| path(c)).collect();
            assert_eq!(
                is_covered(&path(pattern), &covers),
                *expected,
                "{pattern} by {covers:?}"
            );
        }
    }

    #[test]
    fn overlap_is_decided_exactly() {
        let cases = [
            ("/api/orders*", "/api/orders/export*", true),
            ("/api/users*", "/api/threads*", false),
            ("/api/users*", "*/export", true),
            ("/a?c", "/ab*", true),
            ("/a?c", "/abcd", false),
            ("/a", "/a", true),
            ("/a", "/b", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(overlaps(&path(a), &path(b)), expected, "{a} {b}");
            assert_eq!(overlaps(&path(b), &path(a)), expected, "{b} {a}");
        }
    }

    #[test]
    fn wildcards_are_counted() {
        assert_eq!(path("/a*b?c*").wildcards(), 3);
        assert_eq!(
            Pattern::new("\\*x", Syntax::CaseInsensitiveEscaped).wildcards(),
            0
        );
    }

    fn small_pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof!["a", "b", "/", "\\*", "\\?"], 0..6)
            .prop_map(|parts| parts.concat())
    }

    fn small_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof!["a", "b", "/", "c"], 0..7)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        /// A claimed cover is never contradicted by a text, and a claimed
        /// overlap-free pair never matches the same text.
        #[test]
        fn decisions_agree_with_matching(p in small_pattern(), q in small_pattern(), text in small_text()) {
            let (p, q) = (path(&p), path(&q));
            if is_covered(&p, std::slice::from_ref(&q)) && p.matches(&text) {
                prop_assert!(q.matches(&text));
            }
            if p.matches(&text) && q.matches(&text) {
                prop_assert!(overlaps(&p, &q));
            }
        }
    }
}
