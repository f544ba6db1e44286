//! Response parity between a baseline (the monolith) and a candidate (a service).

use serde::Deserialize;

/// The `[routes.<name>.verify]` table of `migrate.toml`: how to build requests
/// for a route and which differences to ignore. Owned by this crate; `migrate`
/// embeds it in its route settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySpec {}
