//! The `threads` server: which routes it serves. The runtime is `forum`'s.

#![forbid(unsafe_code)]

/// The routes this binary serves.
pub const SERVICE: forum::Service = forum::THREADS;
