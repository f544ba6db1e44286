//! ALB listener-rule semantics that more than one part of ficus needs, as
//! pure code (no I/O): glob patterns as languages (does one pattern cover
//! another? can two match the same text?), CIDR blocks, and rule conditions
//! (does one rule match every request another matches? can two rules match
//! the same request?), the canonical client address, and which header fields
//! are hop-by-hop; the names and parser of the local ALB's `/metrics`
//! text; the ALB access log format ([`access_log`]); and the one parser of
//! durations that `migrate` and `local-alb` read ([`duration`]).
//!
//! `migrate` uses it to prove that a parked route's rule can take no traffic
//! and to name the rules a move would shadow; the semantics are the ones the
//! local ALB's matcher applies per request (`infrastructure/local-alb`), which
//! matches with [`glob::Glob`], the compiled form of a [`Pattern`].
#![forbid(unsafe_code)]

pub mod access_log;
pub mod cidr;
pub mod conditions;
pub mod duration;
pub mod glob;
pub mod headers;
pub mod metrics;

pub use conditions::{Conditions, Gap, HeaderCondition, QueryPair};
pub use glob::{Glob, Pattern, Syntax};

/// AWS's quota of condition values per rule (all conditions together).
pub const MAX_CONDITION_VALUES: usize = 5;
/// AWS's quota of wildcards (`*`, `?`) per rule (all conditions together).
pub const MAX_WILDCARDS: usize = 5;
/// Longest path-pattern value AWS accepts.
pub const MAX_PATH_PATTERN_LENGTH: usize = 128;

/// The characters AWS accepts in a path-pattern value besides ASCII letters
/// and digits (ELBv2's "Path conditions": `_-.$/~"'@:+&;` and the wildcards
/// `*` and `?`). Anything else, `%` included, is refused with a
/// ValidationError, so a percent-encoded spelling can't be written as it is.
pub const PATH_PATTERN_SPECIALS: &str = "_-.$/~\"'@:+&;*?";

/// Why AWS refuses `value` as a path-pattern value, in AWS's words
/// (`Condition value '...' contains a character that is not valid`), or
/// `None` when it accepts it: 1 to 128 characters from ASCII letters,
/// digits and [`PATH_PATTERN_SPECIALS`].
pub fn path_pattern_problem(value: &str) -> Option<String> {
    if value.is_empty() || value.chars().count() > MAX_PATH_PATTERN_LENGTH {
        return Some(format!(
            "The 'path-pattern' value '{value}' must be 1 to {MAX_PATH_PATTERN_LENGTH} characters long"
        ));
    }
    value
        .chars()
        .any(|c| !c.is_ascii_alphanumeric() && !PATH_PATTERN_SPECIALS.contains(c))
        .then(|| format!("Condition value '{value}' contains a character that is not valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_take_only_awss_characters() {
        for good in ["/api/users*", "/a-b_c.d$e/~\"'@:+&;?*", "/API/???sers*"] {
            assert_eq!(path_pattern_problem(good), None, "{good}");
        }
        assert_eq!(
            path_pattern_problem("/api/%75sers*").as_deref(),
            Some("Condition value '/api/%75sers*' contains a character that is not valid")
        );
        for bad in ["/a b", "/a#b", "/ä", "/a=b", "/a(b)", "/a,b", "/a!b"] {
            assert!(path_pattern_problem(bad).is_some(), "{bad}");
        }
        assert!(path_pattern_problem("").is_some());
        assert!(path_pattern_problem(&format!("/{}", "a".repeat(128))).is_some());
        assert_eq!(path_pattern_problem(&format!("/{}", "a".repeat(127))), None);
    }
}
