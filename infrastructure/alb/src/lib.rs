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
