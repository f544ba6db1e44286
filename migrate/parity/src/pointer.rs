//! JSON Pointers (RFC 6901) and the pointer patterns of `ignore` and `unordered`.

use std::fmt;

/// Renders reference tokens as a JSON Pointer: `""` for the root, otherwise
/// `/` before each token with `~` written `~0` and `/` written `~1`.
pub fn render(tokens: &[String]) -> String {
    let mut pointer = String::new();
    for token in tokens {
        pointer.push('/');
        for character in token.chars() {
            match character {
                '~' => pointer.push_str("~0"),
                '/' => pointer.push_str("~1"),
                other => pointer.push(other),
            }
        }
    }
    pointer
}

/// Splits a JSON Pointer into its unescaped reference tokens.
pub fn parse(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "JSON Pointer {pointer:?} must be empty (the whole body) or start with '/', like \"/0/name\""
        ));
    };
    rest.split('/').map(unescape_token).collect()
}

fn unescape_token(token: &str) -> Result<String, String> {
    let mut unescaped = String::with_capacity(token.len());
    let mut characters = token.chars();
    while let Some(character) = characters.next() {
        if character != '~' {
            unescaped.push(character);
            continue;
        }
        match characters.next() {
            Some('0') => unescaped.push('~'),
            Some('1') => unescaped.push('/'),
            _ => {
                return Err(format!(
                    "JSON Pointer token {token:?} has a '~' that is not followed by 0 or 1; write '~' as \"~0\" and '/' as \"~1\""
                ));
            }
        }
    }
    Ok(unescaped)
}

/// Whether the pointer `prefix` is `pointer` itself or one of its ancestors.
pub fn covers(prefix: &[String], pointer: &[String]) -> bool {
    prefix.len() <= pointer.len() && prefix.iter().zip(pointer).all(|(a, b)| a == b)
}

/// A JSON Pointer in which the token `*` stands for any one array index (or
/// object key). A pattern matches the pointers it names and everything below them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerPattern {
    text: String,
    tokens: Vec<String>,
}

impl PointerPattern {
    /// Parses a pattern such as `/items/*/updatedAt`.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            text: text.to_owned(),
            tokens: parse(text)?,
        })
    }

    /// Whether this pattern names `tokens` or one of its ancestors.
    pub fn covers(&self, tokens: &[String]) -> bool {
        self.tokens.len() <= tokens.len()
            && self
                .tokens
                .iter()
                .zip(tokens)
                .all(|(pattern, token)| pattern == "*" || pattern == token)
    }

    /// Whether this pattern names exactly `tokens` (not a descendant).
    pub fn names(&self, tokens: &[String]) -> bool {
        self.tokens.len() == tokens.len() && self.covers(tokens)
    }

    /// The pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PointerPattern {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(if self.text.is_empty() {
            "\"\" (the whole body)"
        } else {
            &self.text
        })
    }
}
