//! The journal: one JSON line per change, appended to a local file, and the
//! last change summarized in the rule's `ficus:last-change` tag so `status`
//! shows it from any machine. The tag reads `<when> <who> <what>`: ELBv2 tag
//! values allow only letters, digits, spaces and `_ . : / = + - @` (no `|`).

use std::io::{BufRead, Write as _};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The rule tag holding the last change.
pub const LAST_CHANGE_TAG: &str = "ficus:last-change";
/// ELBv2 tag values are at most 256 characters.
const TAG_VALUE_MAX: usize = 256;

/// One change of one route.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// This entry's id, which notifications name (`journal_id`). Entries
    /// written before ids existed have none (empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// RFC 3339 UTC.
    pub when: String,
    /// The AWS caller ARN, or `$USER@hostname`.
    pub who: String,
    /// `init`, `shift`, `rollback`.
    pub command: String,
    pub route: String,
    /// What happened, e.g. `shift to 50 percent`.
    pub what: String,
    pub before: Snapshot,
    pub after: Snapshot,
    /// The ELBv2 writes made, as described by `migrate plan`.
    pub writes: Vec<String>,
    /// Gate evidence: health, parity, probes, or why a gate failed.
    pub evidence: serde_json::Value,
}

/// A rule's routing-relevant state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub priority: Option<u32>,
    /// `forward users` or `forward users=10 monolith=90`.
    pub action: String,
    pub state: String,
}

impl Entry {
    /// The `ficus:last-change` tag value: `<when> <who> <what>`, at most 256
    /// characters of the allowed set.
    pub fn tag_value(&self) -> String {
        let who: String = tag_safe(&self.who)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let value = format!("{} {who} {}", tag_safe(&self.when), tag_safe(&self.what));
        value.chars().take(TAG_VALUE_MAX).collect()
    }
}

/// Replaces what ELBv2 tag values reject with `-`.
pub fn tag_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else if c == ';' || c == ',' {
                // Clause separators read best as a colon: `gate failed: rolled back`.
                ':'
            } else {
                '-'
            }
        })
        .collect()
}

/// The last change as shown by `status`, parsed from the tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastChange {
    pub who: String,
    pub when: String,
    pub what: String,
}

impl LastChange {
    pub fn parse(value: &str) -> LastChange {
        let mut parts = value.splitn(3, ' ');
        let when = parts.next().unwrap_or_default().to_owned();
        let who = parts.next().unwrap_or_default().to_owned();
        let what = parts.next().unwrap_or_default().to_owned();
        LastChange { who, when, what }
    }
}

/// A new entry id: 16 hex digits, random.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Appends one entry.
pub fn append(path: &Path, entry: &Entry) -> anyhow::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the journal's directory {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the journal {}", path.display()))?;
    let mut line = serde_json::to_string(entry)?;
    line.push('\n');
    file.write_all(line.as_bytes())
        .with_context(|| format!("appending to the journal {}", path.display()))
}

/// Every entry, oldest first, optionally of one route. A missing file is empty.
pub fn read(path: &Path, route: Option<&str>) -> anyhow::Result<Vec<Entry>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("opening the journal {}", path.display()));
        }
    };
    let mut entries = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading the journal {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a journal entry", path.display(), index + 1))?;
        if route.is_none_or(|r| r == entry.route) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Now, as journal entries and tags write it.
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// A time to the second, as journal entries, tags and `status` write it.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// The journal's view of a route's rule. A retired route (at 100% with its
/// rule tagged `ficus:retired`) is `retired`, as `migrate retire` journals it.
pub fn snapshot(view: &crate::state::RouteView) -> Snapshot {
    let rule = view.rule();
    let state = view.state();
    let retired = view.retired_since().is_some()
        && matches!(state, crate::state::RouteState::OnService { .. });
    Snapshot {
        priority: rule.and_then(|r| r.priority),
        action: rule.map_or_else(|| "none".to_owned(), |r| r.action.describe()),
        state: if retired {
            RETIRED_STATE.to_owned()
        } else {
            state.explain()
        },
    }
}

/// A retired route's state in journal snapshots.
pub const RETIRED_STATE: &str = "retired";

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(route: &str, who: &str) -> Entry {
        let snapshot = Snapshot {
            priority: Some(100),
            action: "forward users".into(),
            state: "on-monolith".into(),
        };
        Entry {
            id: new_id(),
            when: "2026-11-26T04:00:00Z".into(),
            who: who.into(),
            command: "shift".into(),
            route: route.into(),
            what: "shift to 100 percent (10|50)".into(),
            before: snapshot.clone(),
            after: snapshot,
            writes: vec![],
            evidence: serde_json::json!({}),
        }
    }

    #[test]
    fn entries_round_trip_and_filter_by_route() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.jsonl");
        append(&path, &entry("users", "ann")).unwrap();
        append(&path, &entry("posts", "bob")).unwrap();
        assert_eq!(read(&path, None).unwrap().len(), 2);
        let users = read(&path, Some("users")).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].who, "ann");
        assert!(read(&dir.path().join("absent"), None).unwrap().is_empty());
    }

    #[test]
    fn entries_written_before_ids_existed_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut old = serde_json::to_value(entry("users", "ann")).unwrap();
        old.as_object_mut().unwrap().remove("id");
        std::fs::write(&path, format!("{old}\n")).unwrap();
        append(&path, &entry("users", "bob")).unwrap();
        let entries = read(&path, None).unwrap();
        assert_eq!(entries[0].id, "");
        assert_eq!(entries[1].id.len(), 16);
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .contains("\"id\"")
        );
    }

    #[test]
    fn the_tag_value_fits_and_parses_back() {
        let long = entry("users", &"x".repeat(400));
        assert_eq!(long.tag_value().chars().count(), 256);
        let short = entry("users", "arn:aws:sts::1:assumed-role/ops/ann");
        let parsed = LastChange::parse(&short.tag_value());
        assert_eq!(parsed.who, "arn:aws:sts::1:assumed-role/ops/ann");
        assert_eq!(parsed.what, "shift to 100 percent -10-50-");
        assert_eq!(parsed.when, "2026-11-26T04:00:00Z");
    }
}
