//! `migrate leaks`: the requests the monolith served that belong to a route
//! by the monolith's own reading of the path (`[routes.NAME.monolith_paths]`),
//! from the ALB's access logs. A leak is such a request that either
//! - (a) the route's patterns do not match: a pattern miss (ALB patterns are
//!   case-sensitive; the forum's router is not), whatever the route's state;
//! - (b) arrived while the route was at 100% (since the rule's last change,
//!   per its tags) although the patterns match: a rule that won over the
//!   route's, named by the log's `matched_rule_priority`.
//!
//! A request the patterns do not match is a pattern miss whichever rule of
//! the monolith (or the listener's default action) served it; "rule lost" is
//! only for requests the patterns match.
//!
//! "No leaks" needs evidence ([`no_evidence`], the one wording of it for
//! `leaks`, `plan` and `retire`): at least one of the route's requests in
//! the window, from the load balancer's own logs (others' are skipped by
//! `access_logs`), and no more than [`MAX_UNREADABLE_SHARE`] of the lines
//! unreadable.
//!
//! The analysis ([`Analysis`]) is pure; [`leaks`] reads the listing and the
//! logs and prints. `plan` and `retire` use [`find`].

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use alb::access_log::{self, Record};
use alb::{Glob, Syntax};
use serde::Serialize;

use crate::access_logs::{self, Source};
use crate::cli::LeaksArgs;
use crate::context::Ctx;
use crate::error::{EXIT_LEAKS, EXIT_NOT_RUN, EXIT_OK, usage};
use crate::journal::{LAST_CHANGE_TAG, LastChange};
use crate::settings::MonolithPaths;
use crate::state::{RouteState, RouteView, target_group_name};

/// `matched_rule_priority` of a request that the listener's default action
/// served (AWS's access-log field list: 0 for the default rule).
const DEFAULT_ACTION_PRIORITY: &str = "0";

/// AWS's quota of condition values per rule.
const MAX_VALUES: usize = alb::MAX_CONDITION_VALUES;

/// The largest share of unreadable lines (not access-log entries) under
/// which "no leaks" stands: above it, the leaks could be in the lines that
/// were not read, and the report is no evidence (exit 5).
pub const MAX_UNREADABLE_SHARE: f64 = 0.01;

/// Why a spelling leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeakKind {
    /// The route's patterns do not match the spelling.
    PatternMiss,
    /// The patterns match, but another rule won while the route was at 100%.
    RuleLost,
}

/// The leaks of one path spelling.
#[derive(Debug, Clone, Serialize)]
pub struct Leak {
    pub path: String,
    pub kind: LeakKind,
    pub count: u64,
    /// The requests' methods with their counts (a rule's other conditions,
    /// `http-request-method` among them, may be what missed them).
    pub methods: BTreeMap<String, u64>,
    /// This spelling's share of the route's requests in the logs.
    pub share: f64,
    pub first_seen: String,
    pub last_seen: String,
    pub example_client: String,
    /// The pattern to add (a pattern miss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The priority of the rule that won (a rule that lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winning_rule_priority: Option<String>,
    /// What to change, in words.
    pub fix: String,
}

/// A spelling that would be a leak but that the monolith answered 404: its
/// code for the route did not serve it (a 404 is what the monolith answers
/// without that code too), so deleting the code changes no answer's status.
/// Never a leak, never counted in the route's requests.
#[derive(Debug, Clone, Serialize)]
pub struct Answered404 {
    pub path: String,
    pub count: u64,
}

/// The report of `migrate leaks`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No leak, judged on at least one of the route's requests.
    pub ok: bool,
    pub route: String,
    pub sources: Vec<String>,
    pub files: usize,
    pub lines: usize,
    pub unreadable_lines: usize,
    /// The load balancer whose logs were read (`app/NAME/ID`, from the listener's ARN).
    pub load_balancer: Option<String>,
    /// Files and lines of other load balancers, skipped (not counted anywhere else).
    pub other_load_balancer_files: usize,
    pub other_load_balancer_lines: usize,
    pub other_load_balancers: Vec<String>,
    /// The window's start (`--since`), RFC 3339; `None`: every entry counts.
    pub window_start: Option<String>,
    /// Entries before the window's start (not counted).
    pub outside_window: u64,
    /// Requests of the route (by the monolith's reading), wherever they went.
    pub route_requests: u64,
    /// The route's requests that the service's target group served.
    pub service_requests: u64,
    pub leaked_requests: u64,
    pub leaks: Vec<Leak>,
    /// Spellings that would be leaks but that the monolith answered 404
    /// ([`Answered404`]), most requests first.
    pub answered_404: Vec<Answered404>,
    /// The `aws elbv2 modify-rule` commands that apply the pattern fixes, as
    /// they run: the route's rule, then the monolith's rule when its path
    /// patterns miss an added pattern (a parked rule must match nothing the
    /// monolith's rule misses, or `status` reports a LEAK and `shift` refuses).
    pub fix_commands: Vec<String>,
    /// The patterns the commands leave out, each with its spelling and why
    /// (AWS's quotas of 5 condition values and 5 wildcards per rule).
    pub fix_left_out: Vec<String>,
    pub monolith_paths: MonolithPaths,
    /// Why the report proves nothing ([`no_evidence`]): then it is never
    /// "no leaks" (`ok` false, exit 5).
    pub no_evidence: Option<String>,
}

/// What the analysis needs of the route.
pub struct RouteFacts {
    pub patterns: Vec<String>,
    pub monolith_target_group: String,
    pub service_target_group: String,
    pub reading: MonolithPaths,
    /// Since when (Unix µs) the route has been at 100%; `None` when it is not.
    pub at_full_since: Option<i64>,
    /// Only requests at or after this time (Unix µs) count.
    pub window_start: Option<i64>,
    pub rule_priority: Option<u32>,
    /// The route's rule and its conditions now (for the fix commands).
    pub rule_arn: Option<String>,
    pub rule_conditions: alb::Conditions,
    /// The monolith's rule and its conditions now.
    pub monolith_rule_arn: String,
    pub monolith_conditions: alb::Conditions,
    /// The rules ficus does not manage that forward to the route's service
    /// (`status`'s `also:` lines), by priority: a spelling one matches is
    /// fixed there, and one has room for what the route's rule cannot take.
    pub other_rules: Vec<OtherRule>,
}

/// A rule that ficus does not manage and that forwards to the route's
/// service ([`crate::state::Listing::also_forwarding`]).
#[derive(Debug, Clone)]
pub struct OtherRule {
    pub arn: String,
    pub priority: u32,
    pub conditions: alb::Conditions,
}

impl OtherRule {
    /// Whether its path patterns match `path` (a rule without any matches
    /// no path of ours: it is not a second rule for spellings).
    fn matches(&self, path: &str) -> bool {
        self.conditions
            .paths
            .iter()
            .any(|pattern| Glob::new(pattern, Syntax::CaseSensitive).matches(path))
    }

    fn name(&self) -> String {
        format!("rule {} at priority {}", self.arn, self.priority)
    }
}

struct Spelling {
    kind: LeakKind,
    count: u64,
    methods: BTreeMap<String, u64>,
    first: i64,
    last: i64,
    client: String,
    winner: String,
}

/// The leak analysis over a stream of entries (pure).
pub struct Analysis {
    facts: RouteFacts,
    exact: Vec<Glob>,
    read: Vec<Glob>,
    route_requests: u64,
    service_requests: u64,
    outside_window: u64,
    spellings: BTreeMap<String, Spelling>,
    answered_404: BTreeMap<String, u64>,
}

impl Analysis {
    pub fn new(facts: RouteFacts) -> Analysis {
        let exact = facts
            .patterns
            .iter()
            .map(|pattern| Glob::new(pattern, Syntax::CaseSensitive))
            .collect();
        let read = facts
            .patterns
            .iter()
            .map(|pattern| Glob::new(&canonical(pattern, &facts.reading), Syntax::CaseSensitive))
            .collect();
        Analysis {
            facts,
            exact,
            read,
            route_requests: 0,
            service_requests: 0,
            outside_window: 0,
            spellings: BTreeMap::new(),
            answered_404: BTreeMap::new(),
        }
    }

    /// Counts one entry.
    pub fn add(&mut self, record: &Record) {
        let Some(path) = record.path() else { return };
        let time = record.time_micros().unwrap_or(0);
        if self.facts.window_start.is_some_and(|start| time < start) {
            self.outside_window += 1;
            return;
        }
        let canonical_path = canonical(&path, &self.facts.reading);
        if !self.read.iter().any(|glob| glob.matches(&canonical_path)) {
            return;
        }
        let served_by = |group: &str| {
            record.target_group_arn().is_some_and(|arn| {
                arn == group || target_group_name(arn) == target_group_name(group)
            })
        };
        if !served_by(&self.facts.monolith_target_group) {
            self.route_requests += 1;
            if served_by(&self.facts.service_target_group) {
                self.service_requests += 1;
            }
            return;
        }
        let Some(kind) = self.leak_kind(record, &path, time) else {
            self.route_requests += 1;
            return;
        };
        if answered_status(record) == "404" {
            *self.answered_404.entry(path).or_default() += 1;
            return;
        }
        self.route_requests += 1;
        let spelling = self.spellings.entry(path).or_insert_with(|| Spelling {
            kind,
            count: 0,
            methods: BTreeMap::new(),
            first: time,
            last: time,
            client: record.client().to_owned(),
            winner: record.get("matched_rule_priority").to_owned(),
        });
        spelling.count += 1;
        let method = record.request().map_or("-", |(method, _, _)| method);
        *spelling.methods.entry(method.to_owned()).or_default() += 1;
        spelling.first = spelling.first.min(time);
        spelling.last = spelling.last.max(time);
    }

    /// Why a request of the route that the monolith served at `time` is a
    /// leak, or `None` when it is not one.
    fn leak_kind(&self, record: &Record, path: &str, time: i64) -> Option<LeakKind> {
        let matched = self.exact.iter().any(|glob| glob.matches(path));
        // Priority 0 is the listener's default action: no rule matched, so
        // the rule's patterns as they were then missed it (fixed since).
        let default_action = record.get("matched_rule_priority") == DEFAULT_ACTION_PRIORITY;
        if !matched || default_action {
            Some(LeakKind::PatternMiss)
        } else if self.facts.at_full_since.is_some_and(|since| time >= since) {
            Some(LeakKind::RuleLost)
        } else {
            None
        }
    }

    /// The spellings that would be leaks but that the monolith answered
    /// 404, most requests first.
    pub fn answered_404(&self) -> Vec<Answered404> {
        let mut answered: Vec<Answered404> = self
            .answered_404
            .iter()
            .map(|(path, count)| Answered404 {
                path: path.clone(),
                count: *count,
            })
            .collect();
        answered.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        answered
    }

    /// The leaks, most frequent first, each with its fix.
    pub fn leaks(&self) -> Vec<Leak> {
        let mut leaks: Vec<Leak> = self
            .spellings
            .iter()
            .map(|(path, spelling)| {
                let (pattern, winner) = match spelling.kind {
                    LeakKind::PatternMiss
                        if self.matches_now(path) || self.other_matching(path).is_some() =>
                    {
                        (None, None)
                    }
                    LeakKind::PatternMiss => (self.suggest(path).ok(), None),
                    LeakKind::RuleLost => (None, Some(spelling.winner.clone())),
                };
                Leak {
                    path: path.clone(),
                    kind: spelling.kind,
                    count: spelling.count,
                    methods: spelling.methods.clone(),
                    share: spelling.count as f64 / self.route_requests.max(1) as f64,
                    first_seen: access_log::format_time(spelling.first),
                    last_seen: access_log::format_time(spelling.last),
                    example_client: spelling.client.clone(),
                    pattern,
                    winning_rule_priority: winner,
                    fix: String::new(),
                }
            })
            .collect();
        // The most frequent spellings get AWS's few condition values first.
        leaks.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        let fitting = self.fitting(&leaks);
        for leak in &mut leaks {
            leak.fix = self.fix_text(leak, &fitting);
        }
        leaks
    }

    /// Whether the route's patterns, as they are now, match `path` (a
    /// pattern miss of the patterns as they were, fixed since).
    fn matches_now(&self, path: &str) -> bool {
        self.exact.iter().any(|glob| glob.matches(path))
    }

    /// The rule, not managed by ficus, forwarding to the service, whose
    /// path patterns now match `path`, if one does.
    fn other_matching(&self, path: &str) -> Option<&OtherRule> {
        self.facts
            .other_rules
            .iter()
            .find(|rule| rule.matches(path))
    }

    /// What to change for one leak, in words.
    fn fix_text(&self, leak: &Leak, fitting: &Fitting) -> String {
        if leak.kind == LeakKind::PatternMiss
            && !self.matches_now(&leak.path)
            && let Some(other) = self.other_matching(&leak.path)
        {
            return format!(
                "now matched by {} ({}), which forwards to the service and is not managed by ficus: nothing to fix there; these requests came before it: judge the rules as they are with --since shorter than the time since it matches",
                other.name(),
                other.conditions.describe()
            );
        }
        match leak.kind {
            LeakKind::PatternMiss if self.matches_now(&leak.path) => "the rule's patterns as they were missed it (the listener's default action served it); they match it now: judge the rule as it is with --since shorter than the time since the fix".to_owned(),
            LeakKind::PatternMiss => match self.suggest(&leak.path) {
                Err(why) => format!(
                    "no path pattern can match it: {why}. Have its clients use the route's spelling, or have the monolith redirect it there; until then `retire` needs --accept-leaks"
                ),
                Ok(pattern) => fitting.fix_for(&leak.path, &pattern),
            },
            LeakKind::RuleLost => {
                let ours = self.facts.rule_priority;
                let winner = leak.winning_rule_priority.as_deref().unwrap_or("-");
                match (winner.parse::<u32>().ok(), ours) {
                    (Some(winner), Some(ours)) if winner > ours => format!(
                        "the route's rule (priority {ours}) is in front of the rule at priority {winner} that served it, and its path patterns match it: its other conditions ({}) missed the request ({}), or the route was not at 100% when it arrived; compare them with the request",
                        self.facts.rule_conditions.describe(),
                        methods_text(&leak.methods)
                    ),
                    _ => format!(
                        "the rule at priority {winner} won over the route's rule (priority {}) while the route was at 100%: move the route's rule in front of it, or narrow that rule",
                        ours.map_or("-".to_owned(), |priority| priority.to_string())
                    ),
                }
            }
        }
    }

    /// The route's rule's conditions as the fixes start from (its paths
    /// are the route's patterns when the rule has none yet).
    fn route_conditions(&self) -> alb::Conditions {
        let mut conditions = self.facts.rule_conditions.clone();
        if conditions.paths.is_empty() {
            conditions.paths = self.facts.patterns.clone();
        }
        conditions
    }

    /// The patterns of `leaks` fitted to AWS's quotas, most requests first:
    /// each goes to the route's rule (and to the monolith's rule when its
    /// path patterns miss it) while both stay within 5 condition values and
    /// 5 wildcards; the rest are left out, each with why.
    fn fitting(&self, leaks: &[Leak]) -> Fitting {
        let mut fitting = Fitting {
            route: self.route_conditions(),
            monolith: self.facts.monolith_conditions.clone(),
            monolith_added: Vec::new(),
            added: Vec::new(),
            left_out: Vec::new(),
            others: self
                .facts
                .other_rules
                .iter()
                .map(|rule| OtherFit {
                    rule: rule.clone(),
                    added: Vec::new(),
                })
                .collect(),
        };
        for leak in leaks {
            let Some(pattern) = &leak.pattern else {
                continue;
            };
            if fitting.covering(&leak.path).is_some()
                || fitting.left_out.iter().any(|(_, left, _)| left == pattern)
            {
                continue;
            }
            let mut route = fitting.route.clone();
            route.paths.push(pattern.clone());
            let monolith_too = self.monolith_misses(pattern);
            let mut monolith = fitting.monolith.clone();
            if monolith_too {
                monolith.paths.push(pattern.clone());
            }
            let monolith_problem = monolith_too
                .then(|| quota_problem("the monolith's rule", &monolith))
                .flatten();
            let route_problem = quota_problem("the route's rule", &route);
            // The route's rule is full: a rule that already forwards to the
            // service with room takes the pattern.
            if let (Some(full), None) = (&route_problem, &monolith_problem)
                && let Some(other) = fitting.others.iter_mut().find(|other| {
                    let mut conditions = other.rule.conditions.clone();
                    conditions.paths.push(pattern.clone());
                    quota_problem("", &conditions).is_none()
                })
            {
                other.rule.conditions.paths.push(pattern.clone());
                other.added.push((pattern.clone(), full.clone()));
                fitting.monolith = monolith;
                if monolith_too {
                    fitting.monolith_added.push(pattern.clone());
                }
                continue;
            }
            match route_problem.or(monolith_problem) {
                None => {
                    fitting.route = route;
                    fitting.monolith = monolith;
                    fitting.added.push(pattern.clone());
                    if monolith_too {
                        fitting.monolith_added.push(pattern.clone());
                    }
                }
                Some(why) => fitting
                    .left_out
                    .push((leak.path.clone(), pattern.clone(), why)),
            }
        }
        fitting
    }

    /// Whether the monolith's rule's path patterns miss requests that
    /// `pattern` matches.
    fn monolith_misses(&self, pattern: &str) -> bool {
        let monolith = &self.facts.monolith_conditions;
        let alone = alb::Conditions {
            paths: vec![pattern.to_owned()],
            ..monolith.clone()
        };
        !monolith.paths.is_empty()
            && monolith
                .gaps_covering(&alone)
                .iter()
                .any(|gap| gap.field == "path-pattern")
    }

    /// The commands that apply the pattern fixes of `leaks` that fit AWS's
    /// quotas: the route's rule with the patterns added and, when the
    /// monolith's rule has path patterns that miss one, the monolith's rule
    /// with it too, so that the route's rule, parked behind it after a
    /// rollback, still takes nothing the monolith's rule does not. The
    /// patterns left out are in [`Analysis::left_out`].
    pub fn fix_commands(&self, leaks: &[Leak]) -> Vec<String> {
        let fitting = self.fitting(leaks);
        let Some(rule_arn) = &self.facts.rule_arn else {
            return Vec::new();
        };
        let mut commands = Vec::new();
        if !fitting.added.is_empty() {
            commands.push(modify_rule_command(rule_arn, &fitting.route));
        }
        for other in fitting
            .others
            .iter()
            .filter(|other| !other.added.is_empty())
        {
            commands.push(modify_rule_command(&other.rule.arn, &other.rule.conditions));
        }
        if !fitting.monolith_added.is_empty() {
            commands.push(modify_rule_command(
                &self.facts.monolith_rule_arn,
                &fitting.monolith,
            ));
        }
        commands
    }

    /// The patterns of `leaks` that the fix commands leave out, each as
    /// `"PATTERN" (for SPELLING): why`.
    pub fn left_out(&self, leaks: &[Leak]) -> Vec<String> {
        self.fitting(leaks)
            .left_out
            .iter()
            .map(|(path, pattern, why)| format!("{pattern:?} (for {path}): {why}"))
            .collect()
    }

    pub fn route_requests(&self) -> u64 {
        self.route_requests
    }

    pub fn service_requests(&self) -> u64 {
        self.service_requests
    }

    pub fn outside_window(&self) -> u64 {
        self.outside_window
    }

    /// The pattern to add for a spelling the patterns miss, or why AWS
    /// would refuse any ([`alb::path_pattern_problem`]).
    fn suggest(&self, path: &str) -> Result<String, String> {
        let pattern = self.pattern_for(path);
        match alb::path_pattern_problem(&pattern) {
            None => Ok(pattern),
            Some(problem) => Err(format!(
                "AWS refuses {pattern:?} ({problem}: a path pattern holds only letters, digits and {}, at most {} characters)",
                alb::PATH_PATTERN_SPECIALS,
                alb::MAX_PATH_PATTERN_LENGTH
            )),
        }
    }

    /// The pattern that makes the ALB match `path` as the route's pattern
    /// does, keeping its wildcards: the pattern's literal start spelled as
    /// the path spells it (`/api/users*` for `/API/USERS/1` gives
    /// `/API/USERS*`, for `/api//users/1` with repeated slashes read as one
    /// `/api//users*`), each percent escape as `???` (AWS refuses `%` in a
    /// pattern; `?` is any one character); the path itself (escaped the
    /// same way) when no such pattern matches it.
    fn pattern_for(&self, path: &str) -> String {
        let canonical_path = canonical(path, &self.facts.reading);
        // A prefix is compared without dropping its trailing slash.
        let prefix_reading = MonolithPaths {
            trailing_slash: false,
            ..self.facts.reading
        };
        for (pattern, glob) in self.facts.patterns.iter().zip(&self.read) {
            if !glob.matches(&canonical_path) {
                continue;
            }
            let literal = pattern.find(['*', '?']).unwrap_or(pattern.len());
            let (head, rest) = pattern.split_at(literal);
            let wanted = canonical(head, &prefix_reading);
            // A spelled prefix is at most three characters per character
            // of the pattern's (percent escapes), plus repeated slashes.
            let longest = 3 * head.len() + 16;
            let spelled = path
                .char_indices()
                .map(|(index, _)| index)
                .chain([path.len()])
                .take_while(|end| *end <= longest)
                .find(|end| canonical(&path[..*end], &prefix_reading) == wanted);
            if let Some(end) = spelled {
                let candidate = format!("{}{rest}", wildcard_escapes(&path[..end]));
                if Glob::new(&candidate, Syntax::CaseSensitive).matches(path) {
                    return candidate;
                }
            }
        }
        wildcard_escapes(path)
    }
}

/// The pattern fixes fitted to AWS's quotas ([`Analysis::fitting`]).
struct Fitting {
    /// The route's rule's conditions with the patterns that fit.
    route: alb::Conditions,
    /// The monolith's rule's conditions with the patterns it must take too.
    monolith: alb::Conditions,
    monolith_added: Vec<String>,
    added: Vec<String>,
    /// (spelling, pattern, why) of the patterns that do not fit.
    left_out: Vec<(String, String, String)>,
    /// The rules not managed by ficus that forward to the service, with
    /// the patterns they take that the route's rule has no room for.
    others: Vec<OtherFit>,
}

/// A rule not managed by ficus, with the patterns the fix adds to it.
struct OtherFit {
    rule: OtherRule,
    /// (pattern, why the route's rule could not take it).
    added: Vec<(String, String)>,
}

impl Fitting {
    /// The added pattern that matches `path`, if one does.
    fn covering(&self, path: &str) -> Option<&String> {
        self.added
            .iter()
            .chain(
                self.others
                    .iter()
                    .flat_map(|other| other.added.iter().map(|(pattern, _)| pattern)),
            )
            .find(|added| Glob::new(added, Syntax::CaseSensitive).matches(path))
    }

    /// The fix, in words, for the spelling `path` whose pattern is `pattern`.
    fn fix_for(&self, path: &str, pattern: &str) -> String {
        let wildcards = if path.contains('%') && pattern.contains("???") {
            " (each percent escape is written ???: AWS refuses '%' in a pattern, and a ? matches any one character, so the rule also takes other spellings of that shape)"
        } else {
            ""
        };
        if let Some((_, _, why)) = self.left_out.iter().find(|(_, left, _)| left == pattern) {
            return format!(
                "the pattern {pattern:?} is left out of the commands: {why}; add a second rule with it, forwarding to the service, in front of the monolith's rule (and the pattern to `paths` in migrate.toml){wildcards}"
            );
        }
        let monolith_too = if self.monolith_added.iter().any(|added| added == pattern) {
            "; add it to the monolith's rule too, whose path patterns miss it: else the route's rule, parked behind it after a rollback, takes requests the monolith's rule does not (a LEAK that stops `shift`)"
        } else {
            ""
        };
        for other in &self.others {
            if let Some((_, full)) = other.added.iter().find(|(added, _)| added == pattern) {
                return format!(
                    "{full}: add the path pattern {pattern:?} to {}, which already forwards to the service and has room (it then has {} of AWS's {MAX_VALUES} condition values){monolith_too}{wildcards}",
                    other.rule.name(),
                    other.rule.conditions.value_count()
                );
            }
        }
        match self.covering(path) {
            Some(added) if added != pattern => {
                format!("the pattern {added:?}, added for another spelling, matches it too")
            }
            _ => {
                format!(
                    "add the path pattern {pattern:?} to the route's rule and to `paths` in migrate.toml (the rule then has {} of AWS's {MAX_VALUES} condition values){monolith_too}{wildcards}",
                    self.route.value_count()
                )
            }
        }
    }
}

/// The methods of a leak for a sentence: `GET` for one method, `DELETE ×1,
/// POST ×2` for several.
pub fn methods_text(methods: &BTreeMap<String, u64>) -> String {
    if methods.len() == 1 {
        return methods.keys().next().cloned().unwrap_or_default();
    }
    methods
        .iter()
        .map(|(method, count)| format!("{method} ×{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status the target answered (`target_status_code`), or the load
/// balancer's (`elb_status_code`) when the target's is not in the entry.
fn answered_status(record: &Record) -> &str {
    match record.get("target_status_code") {
        "-" => record.get("elb_status_code"),
        status => status,
    }
}

/// Why `conditions` break AWS's quotas of condition values and wildcards
/// per rule, naming `rule`; `None` within them.
fn quota_problem(rule: &str, conditions: &alb::Conditions) -> Option<String> {
    let (values, wildcards) = (conditions.value_count(), conditions.wildcard_count());
    if values > MAX_VALUES {
        Some(format!(
            "{rule} would have {values} condition values, over AWS's quota of {MAX_VALUES}"
        ))
    } else if wildcards > alb::MAX_WILDCARDS {
        Some(format!(
            "{rule} would have {wildcards} wildcards, over AWS's quota of {}",
            alb::MAX_WILDCARDS
        ))
    } else {
        None
    }
}

/// `path` with each percent escape (`%XX`) written `???`: AWS refuses `%`
/// in a path pattern, and each `?` matches one character of the escape.
fn wildcard_escapes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        if escape.len() >= 3 && escape.as_bytes()[1..3].iter().all(u8::is_ascii_hexdigit) {
            out.push_str("???");
            rest = &escape[3..];
        } else {
            out.push('%');
            rest = &escape[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `aws elbv2 modify-rule` setting `conditions` on `rule_arn`, as it runs
/// when pasted into a POSIX shell: the conditions in AWS's JSON shape
/// (several values go in each condition's `*Config.Values`).
pub fn modify_rule_command(rule_arn: &str, conditions: &alb::Conditions) -> String {
    let json = serde_json::to_string(&conditions_json(conditions)).unwrap_or_default();
    format!(
        "aws elbv2 modify-rule --rule-arn {rule_arn} --conditions '{}'",
        json.replace('\'', "'\\''")
    )
}

/// A rule's conditions as the ELBv2 API's `RuleCondition` list (JSON).
pub fn conditions_json(conditions: &alb::Conditions) -> serde_json::Value {
    use serde_json::json;
    let mut list = Vec::new();
    if !conditions.paths.is_empty() {
        list.push(
            json!({"Field": "path-pattern", "PathPatternConfig": {"Values": conditions.paths}}),
        );
    }
    if !conditions.hosts.is_empty() {
        list.push(
            json!({"Field": "host-header", "HostHeaderConfig": {"Values": conditions.hosts}}),
        );
    }
    if !conditions.methods.is_empty() {
        list.push(json!({"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": conditions.methods}}));
    }
    if !conditions.source_ips.is_empty() {
        list.push(
            json!({"Field": "source-ip", "SourceIpConfig": {"Values": conditions.source_ips}}),
        );
    }
    for header in &conditions.headers {
        list.push(json!({"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": header.name, "Values": header.values}}));
    }
    for pairs in &conditions.queries {
        let values: Vec<serde_json::Value> = pairs
            .iter()
            .map(|pair| match &pair.key {
                Some(key) => json!({"Key": key, "Value": pair.value}),
                None => json!({"Value": pair.value}),
            })
            .collect();
        list.push(json!({"Field": "query-string", "QueryStringConfig": {"Values": values}}));
    }
    serde_json::Value::Array(list)
}

/// A path as the monolith reads it, by the readings that are on.
pub fn canonical(path: &str, reading: &MonolithPaths) -> String {
    let mut text = if reading.percent_decoding {
        decode_unreserved(path)
    } else {
        path.to_owned()
    };
    if reading.repeated_slashes {
        let mut collapsed = String::with_capacity(text.len());
        for character in text.chars() {
            if !(character == '/' && collapsed.ends_with('/')) {
                collapsed.push(character);
            }
        }
        text = collapsed;
    }
    if reading.trailing_slash && text.len() > 1 && text.ends_with('/') {
        text.pop();
    }
    if reading.case_insensitive {
        text.make_ascii_lowercase();
    }
    text
}

/// Decodes `%XX` escapes of unreserved characters (RFC 3986 §2.3: letters,
/// digits, `-`, `.`, `_`, `~`); others stay encoded.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = path.get(index + 1..index + 3)
            && let Ok(value) = u8::from_str_radix(hex, 16)
            && (value.is_ascii_alphanumeric() || b"-._~".contains(&value))
        {
            out.push(value as char);
            index += 3;
            continue;
        }
        let character = path[index..].chars().next().unwrap_or('\u{fffd}');
        out.push(character);
        index += character.len_utf8().max(1);
    }
    out
}

/// The facts of a route from the listing and settings.
pub fn route_facts(
    ctx: &Ctx,
    route: &str,
    (view, monolith_rule_arn): (&RouteView, &str),
    since: Option<Duration>,
) -> anyhow::Result<RouteFacts> {
    let settings = ctx
        .settings
        .routes
        .get(route)
        .ok_or_else(|| usage(format!("no route {route:?} in migrate.toml")))?;
    let rule = view.rule();
    let patterns = rule
        .map(|rule| rule.conditions.paths.clone())
        .filter(|paths| !paths.is_empty())
        .unwrap_or_else(|| settings.paths.clone());
    let at_full_since = match view.state() {
        RouteState::OnService { .. } => rule
            .and_then(|rule| rule.tags.get(LAST_CHANGE_TAG))
            .map(|tag| LastChange::parse(tag).when)
            .and_then(|when| {
                time::OffsetDateTime::parse(&when, &time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .map(|at| (at.unix_timestamp_nanos() / 1000) as i64)
            .or(Some(0)),
        _ => None,
    };
    let window_start = since.map(|since| {
        let now = time::OffsetDateTime::now_utc();
        ((now.unix_timestamp_nanos() - since.as_nanos() as i128) / 1000) as i64
    });
    Ok(RouteFacts {
        patterns,
        monolith_target_group: view.monolith_tg.clone(),
        service_target_group: view.service_tg.clone(),
        reading: settings.monolith_paths,
        at_full_since,
        window_start,
        rule_priority: rule.and_then(|rule| rule.priority),
        rule_arn: rule.map(|rule| rule.arn.clone()),
        rule_conditions: rule.map(|rule| rule.conditions.clone()).unwrap_or_default(),
        monolith_rule_arn: monolith_rule_arn.to_owned(),
        monolith_conditions: view.monolith_conditions.clone(),
        other_rules: Vec::new(),
    })
}

/// Reads the logs and analyses them for `route`: only the entries of the
/// listener's load balancer count (`access_logs::LoadBalancer`).
pub async fn find(
    ctx: &Ctx,
    route: &str,
    sources: &[String],
    since: Option<Duration>,
) -> anyhow::Result<Report> {
    let sources: Vec<Source> = sources
        .iter()
        .map(|text| Source::parse(text).map_err(usage))
        .collect::<anyhow::Result<_>>()?;
    if sources.is_empty() {
        return Err(usage(
            "name the access logs with --from-alb-log (a file, a directory, or s3://BUCKET/PREFIX)",
        ));
    }
    let listing = ctx.list().await?;
    let view = listing.view(&ctx.settings, route)?;
    let mut facts = route_facts(ctx, route, (&view, &listing.monolith.arn), since)?;
    facts.other_rules = listing
        .also_forwarding_rules(&view.service_tg)
        .into_iter()
        .filter_map(|rule| {
            Some(OtherRule {
                arn: rule.arn.clone(),
                priority: rule.priority?,
                conditions: rule.conditions.clone(),
            })
        })
        .collect();
    facts.other_rules.sort_by_key(|rule| rule.priority);
    let reading = facts.reading;
    let window_start = facts.window_start.map(access_log::format_time);
    let own = access_logs::LoadBalancer::from_arn(&listing.listener_arn);
    let mut analysis = Analysis::new(facts);
    let summary = access_logs::read(&sources, &ctx.sdk, own.as_ref(), |record| {
        analysis.add(&record)
    })
    .await?;
    let leaks = analysis.leaks();
    let fix_commands = analysis.fix_commands(&leaks);
    let fix_left_out = analysis.left_out(&leaks);
    let mut report = Report {
        ok: false,
        route: route.to_owned(),
        sources: sources.iter().map(ToString::to_string).collect(),
        files: summary.files,
        lines: summary.lines,
        unreadable_lines: summary.unreadable_lines,
        load_balancer: own.map(|own| own.to_string()),
        other_load_balancer_files: summary.other_files,
        other_load_balancer_lines: summary.other_lines,
        other_load_balancers: summary.others.iter().cloned().collect(),
        window_start,
        outside_window: analysis.outside_window(),
        route_requests: analysis.route_requests(),
        service_requests: analysis.service_requests(),
        leaked_requests: leaks.iter().map(|leak| leak.count).sum(),
        leaks,
        answered_404: analysis.answered_404(),
        fix_commands,
        fix_left_out,
        monolith_paths: reading,
        no_evidence: None,
    };
    report.no_evidence = no_evidence(&report, Evidence::RouteRequest);
    report.ok = report.leaks.is_empty() && report.no_evidence.is_none();
    Ok(report)
}

/// The evidence a verdict needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// `leaks`, `plan`: one of the route's requests in the window.
    RouteRequest,
    /// `retire`: one of the route's requests in the window that its
    /// service's target group served (the logs cover the route since it moved).
    ServiceRequest,
}

/// Why `report` proves nothing about leaks, or `None` when it is evidence:
/// no request of the route in the window (or none its service served, for
/// `retire`), or more than [`MAX_UNREADABLE_SHARE`] of the lines unreadable.
/// The one wording of "no evidence" (`leaks` exit 5, `retire` refuses).
pub fn no_evidence(report: &Report, needed: Evidence) -> Option<String> {
    let requests = match needed {
        Evidence::RouteRequest => report.route_requests,
        Evidence::ServiceRequest => report.service_requests,
    };
    if requests == 0 {
        let served = match needed {
            Evidence::RouteRequest => "",
            Evidence::ServiceRequest => " reached its service",
        };
        return Some(format!(
            "no evidence: no request of {} {}{served} ({} of the route's requests in {}, {} outside the window): nothing proves the monolith is unused; widen --since or wait for traffic",
            report.route,
            window_text(report),
            report.route_requests,
            crate::output::count(report.lines, "line", "lines"),
            report.outside_window,
        ));
    }
    if unreadable_share(report) > MAX_UNREADABLE_SHARE {
        return Some(format!(
            "no evidence: {} of {} ({:.1}%) are not access-log entries, over the {}% a verdict allows: the route's requests among them are unknown; name the ALB's own log files (the .log.gz files under AWSLogs/), unchanged",
            report.unreadable_lines,
            crate::output::count(report.lines, "line", "lines"),
            100.0 * unreadable_share(report),
            100.0 * MAX_UNREADABLE_SHARE,
        ));
    }
    None
}

/// The share of the lines read that are not access-log entries.
fn unreadable_share(report: &Report) -> f64 {
    report.unreadable_lines as f64 / report.lines.max(1) as f64
}

/// `migrate leaks ROUTE --from-alb-log ...`.
pub async fn leaks(ctx: &mut Ctx, args: &LeaksArgs) -> anyhow::Result<ExitCode> {
    // An error's JSON document (`output::print_failure`) names the route too.
    crate::output::record_outcome(&serde_json::json!({ "route": args.route }));
    let report = find(ctx, &args.route, &args.from_alb_log, args.since).await?;
    if ctx.output == crate::output::Output::Json {
        crate::output::print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::from(if !report.leaks.is_empty() {
        EXIT_LEAKS
    } else if report.no_evidence.is_some() {
        EXIT_NOT_RUN
    } else {
        EXIT_OK
    }))
}

/// Which entries the report counts, for a sentence: "in the logs since
/// START", or "in the logs" (every entry).
pub fn window_text(report: &Report) -> String {
    match &report.window_start {
        Some(start) => format!("in the logs since {start}"),
        None => "in the logs".to_owned(),
    }
}

/// The report's first line: what was read, what was skipped, the window,
/// the route's share.
pub fn header(report: &Report) -> String {
    let unreadable = if report.unreadable_lines == 0 {
        String::new()
    } else {
        format!(
            "; {} ({:.1}%)",
            crate::output::count(
                report.unreadable_lines,
                "line not an access-log entry",
                "lines not access-log entries"
            ),
            100.0 * unreadable_share(report)
        )
    };
    let skipped = access_logs::Summary {
        other_files: report.other_load_balancer_files,
        other_lines: report.other_load_balancer_lines,
        others: report.other_load_balancers.iter().cloned().collect(),
        ..access_logs::Summary::default()
    }
    .skipped_text()
    .map(|text| format!("; {text}"))
    .unwrap_or_default();
    let window = match &report.window_start {
        Some(start) => format!(
            "; since {start}: {} before it",
            crate::output::count(report.outside_window as usize, "entry", "entries")
        ),
        None => String::new(),
    };
    let balancer = report
        .load_balancer
        .as_ref()
        .map(|own| format!(" of {own}"))
        .unwrap_or_default();
    format!(
        "{}: {} of {}{balancer} read ({}){unreadable}{skipped}{window}; {} of the route's requests",
        report.route,
        crate::output::count(report.lines, "line", "lines"),
        crate::output::count(report.files, "file", "files"),
        report.sources.join(", "),
        report.route_requests
    )
}

/// The most spellings answered 404 that the text lists (JSON has them all).
const ANSWERED_404_LISTED: usize = 10;

/// The report as text.
pub fn print_report(report: &Report) {
    println!("{}", header(report));
    if report.leaks.is_empty() {
        match &report.no_evidence {
            Some(why) => println!("{why}"),
            None => println!(
                "no leaks: the monolith served none of the route's requests that the rule should have taken"
            ),
        }
    } else {
        print_leaks(report);
        // Leaks found win over no evidence (exit 1): they are real whatever
        // the unreadable lines hold.
        if let Some(why) = &report.no_evidence {
            println!("{why}; the leaks above stand (exit 1), and more may be among those lines");
        }
    }
    if let Some(text) = answered_404_text(report) {
        println!("{text}");
    }
}

/// The spellings answered 404 by the monolith, for a line of text: `None`
/// when there are none.
pub fn answered_404_text(report: &Report) -> Option<String> {
    if report.answered_404.is_empty() {
        return None;
    }
    let mut listed: Vec<String> = report
        .answered_404
        .iter()
        .take(ANSWERED_404_LISTED)
        .map(|answered| format!("{} ×{}", answered.path, answered.count))
        .collect();
    let more = report
        .answered_404
        .len()
        .saturating_sub(ANSWERED_404_LISTED);
    if more > 0 {
        listed.push(format!("and {more} more (answered_404 in --output json)"));
    }
    Some(format!(
        "answered 404 by the monolith, not leaks (its code for the route did not serve them, so deleting it changes no answer): {}",
        listed.join(", ")
    ))
}

/// The leaks, their fixes and the fix commands, as text.
fn print_leaks(report: &Report) {
    println!(
        "{} leaked to the monolith ({:.1}% of the route's requests):",
        crate::output::count(report.leaked_requests as usize, "request", "requests"),
        100.0 * report.leaked_requests as f64 / report.route_requests.max(1) as f64
    );
    for leak in &report.leaks {
        let kind = match leak.kind {
            LeakKind::PatternMiss => "pattern miss",
            LeakKind::RuleLost => "rule lost",
        };
        println!(
            "  {}  ×{}  {:.1}%  {kind}  {}  first {}  last {}  e.g. client {}",
            leak.path,
            leak.count,
            100.0 * leak.share,
            methods_text(&leak.methods),
            leak.first_seen,
            leak.last_seen,
            leak.example_client
        );
        println!("    fix: {}", leak.fix);
    }
    if !report.fix_commands.is_empty() {
        println!(
            "the pattern fixes, as commands (then add the patterns to `paths` in migrate.toml):"
        );
        for command in &report.fix_commands {
            println!("  {command}");
        }
    }
    if !report.fix_left_out.is_empty() {
        println!(
            "left out of the commands (AWS allows {MAX_VALUES} condition values and {} wildcards per rule; a second rule forwarding to the service, in front of the monolith's rule, can take them):",
            alb::MAX_WILDCARDS
        );
        for left in &report.fix_left_out {
            println!("  {left}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONOLITH: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/monolith/0123456789abcdef";
    const USERS: &str =
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/users/0123456789abcdef";

    fn record(path: &str, group: &str, at: i64, priority: &str) -> Record {
        let mut record = Record::new();
        record
            .set("time", access_log::format_time(at))
            .set("client:port", "10.0.0.7:4242")
            .set("request", format!("GET http://alb:80{path} HTTP/1.1"))
            .set("target_group_arn", group)
            .set("matched_rule_priority", priority);
        record
    }

    fn facts(at_full_since: Option<i64>) -> RouteFacts {
        RouteFacts {
            patterns: vec!["/api/users".into(), "/api/users/*".into()],
            monolith_target_group: MONOLITH.into(),
            service_target_group: USERS.into(),
            reading: MonolithPaths::default(),
            at_full_since,
            window_start: None,
            rule_priority: Some(10),
            rule_arn: Some("arn:rule/users".into()),
            rule_conditions: alb::Conditions::paths(["/api/users".into(), "/api/users/*".into()]),
            monolith_rule_arn: "arn:rule/monolith".into(),
            monolith_conditions: alb::Conditions::paths(["/api*".into()]),
            other_rules: Vec::new(),
        }
    }

    #[test]
    fn the_forums_reading_folds_case_and_one_trailing_slash() {
        let forum = MonolithPaths::default();
        assert_eq!(canonical("/API/Users/1/", &forum), "/api/users/1");
        assert_eq!(canonical("/api//users", &forum), "/api//users");
        assert_eq!(canonical("/api/%75sers", &forum), "/api/%75sers");
        let all = MonolithPaths {
            repeated_slashes: true,
            percent_decoding: true,
            ..forum
        };
        assert_eq!(canonical("/api//%75sers//", &all), "/api/users");
        assert_eq!(canonical("/a%2Fb", &all), "/a%2fb");
    }

    #[test]
    fn case_variants_on_the_monolith_are_pattern_misses_with_the_pattern_to_add() {
        let mut analysis = Analysis::new(facts(None));
        for at in 0..5 {
            analysis.add(&record("/API/USERS/1", MONOLITH, at, "99"));
            analysis.add(&record("/api/users/1", USERS, at, "10"));
        }
        // Not the route's by any reading, and served by the monolith: no leak.
        analysis.add(&record("/api/threads", MONOLITH, 9, "99"));
        // Matched by the patterns, and the route is not at 100%: no leak.
        analysis.add(&record("/api/users/2", MONOLITH, 9, "99"));
        let leaks = analysis.leaks();
        assert_eq!(analysis.route_requests(), 11);
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        assert_eq!(leaks[0].path, "/API/USERS/1");
        assert_eq!(leaks[0].count, 5);
        assert_eq!(leaks[0].kind, LeakKind::PatternMiss);
        assert_eq!(leaks[0].pattern.as_deref(), Some("/API/USERS/*"));
        assert_eq!(leaks[0].example_client, "10.0.0.7");
        assert!((leaks[0].share - 5.0 / 11.0).abs() < 1e-9);
        assert!(leaks[0].fix.contains("3 of AWS's 5"), "{}", leaks[0].fix);
    }

    #[test]
    fn a_spelling_the_monolith_answered_404_is_listed_apart_and_never_counted() {
        let mut analysis = Analysis::new(RouteFacts {
            patterns: vec!["/api/users*".into()],
            rule_conditions: alb::Conditions::paths(["/api/users*".into()]),
            ..facts(Some(100))
        });
        let mut scanner = record("/aPI/usersx", MONOLITH, 150, "99");
        scanner
            .set("elb_status_code", "404")
            .set("target_status_code", "404");
        analysis.add(&scanner);
        analysis.add(&scanner);
        // The target's status is not in the entry: the load balancer's counts.
        let mut bare = record("/API/USERSX", MONOLITH, 150, "99");
        bare.set("elb_status_code", "404");
        analysis.add(&bare);
        // Answered 200 by the monolith: a leak, whatever else was answered.
        let mut served = record("/API/USERS/1", MONOLITH, 150, "99");
        served
            .set("elb_status_code", "200")
            .set("target_status_code", "200");
        for _ in 0..5 {
            analysis.add(&served);
        }
        analysis.add(&record("/api/users/1", USERS, 150, "10"));
        // A 404 of the route's own code before the route was at 100% (no
        // such user) is no leak candidate: one of the route's requests.
        let mut missing = record("/api/users/999", MONOLITH, 50, "99");
        missing.set("target_status_code", "404");
        analysis.add(&missing);
        let leaks = analysis.leaks();
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        assert_eq!(leaks[0].path, "/API/USERS/1");
        assert_eq!(analysis.route_requests(), 7);
        assert!((leaks[0].share - 5.0 / 7.0).abs() < 1e-9);
        let answered: Vec<(String, u64)> = analysis
            .answered_404()
            .into_iter()
            .map(|answered| (answered.path, answered.count))
            .collect();
        assert_eq!(
            answered,
            [("/aPI/usersx".to_owned(), 2), ("/API/USERSX".to_owned(), 1)]
        );
    }

    #[test]
    fn a_rule_lost_names_the_requests_methods_beside_the_rules_conditions() {
        let mut conditions = facts(None).rule_conditions;
        conditions.methods = vec!["GET".into()];
        let mut analysis = Analysis::new(RouteFacts {
            rule_conditions: conditions,
            ..facts(Some(100))
        });
        for method in ["POST", "DELETE", "POST"] {
            let mut request = record("/api/users", MONOLITH, 150, "99");
            request.set(
                "request",
                format!("{method} http://alb:80/api/users HTTP/1.1"),
            );
            analysis.add(&request);
        }
        let leaks = analysis.leaks();
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        assert_eq!(leaks[0].kind, LeakKind::RuleLost);
        assert_eq!(
            leaks[0].methods,
            BTreeMap::from([("DELETE".to_owned(), 1), ("POST".to_owned(), 2)])
        );
        assert!(
            leaks[0].fix.contains(
                "its other conditions (path-pattern /api/users,/api/users/* AND http-request-method GET) missed the request (DELETE ×1, POST ×2)"
            ),
            "{}",
            leaks[0].fix
        );
        assert_eq!(
            methods_text(&BTreeMap::from([("GET".to_owned(), 5)])),
            "GET"
        );
    }

    #[test]
    fn at_100_percent_a_matching_request_on_the_monolith_names_the_winning_rule() {
        let mut analysis = Analysis::new(facts(Some(100)));
        analysis.add(&record("/api/users/2", MONOLITH, 50, "5"));
        analysis.add(&record("/api/users/2", MONOLITH, 150, "5"));
        let leaks = analysis.leaks();
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].kind, LeakKind::RuleLost);
        assert_eq!(leaks[0].count, 1);
        assert_eq!(leaks[0].winning_rule_priority.as_deref(), Some("5"));
    }

    #[test]
    fn the_fix_commands_widen_the_monolith_rule_too_and_speak_awss_json() {
        let mut analysis = Analysis::new(facts(None));
        analysis.add(&record("/API/USERS/1", MONOLITH, 1, "0"));
        let commands = analysis.fix_commands(&analysis.leaks());
        assert_eq!(commands.len(), 2, "{commands:?}");
        let conditions = |command: &str| -> serde_json::Value {
            let json = command.split_once("--conditions '").unwrap().1;
            serde_json::from_str(json.strip_suffix('\'').unwrap()).unwrap()
        };
        assert!(commands[0].starts_with("aws elbv2 modify-rule --rule-arn arn:rule/users "));
        assert_eq!(
            conditions(&commands[0]),
            serde_json::json!([{"Field": "path-pattern", "PathPatternConfig":
                {"Values": ["/api/users", "/api/users/*", "/API/USERS/*"]}}])
        );
        assert!(commands[1].contains("--rule-arn arn:rule/monolith "));
        assert_eq!(
            conditions(&commands[1])[0]["PathPatternConfig"]["Values"],
            serde_json::json!(["/api*", "/API/USERS/*"])
        );
        // A monolith rule with no path condition covers every pattern.
        let mut analysis = Analysis::new(RouteFacts {
            monolith_conditions: alb::Conditions::default(),
            ..facts(None)
        });
        analysis.add(&record("/API/USERS/1", MONOLITH, 1, "0"));
        assert_eq!(analysis.fix_commands(&analysis.leaks()).len(), 1);
    }

    #[test]
    fn the_default_action_is_a_pattern_miss_of_the_patterns_as_they_were_never_a_rule() {
        let mut analysis = Analysis::new(facts(Some(100)));
        analysis.add(&record("/api/users/2", MONOLITH, 150, "0"));
        let leaks = analysis.leaks();
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].kind, LeakKind::PatternMiss);
        assert_eq!(leaks[0].pattern, None);
        assert!(
            leaks[0].fix.contains("listener's default action"),
            "{}",
            leaks[0].fix
        );
        assert!(!leaks[0].fix.contains("priority 0"), "{}", leaks[0].fix);
        assert!(analysis.fix_commands(&leaks).is_empty());
    }

    #[test]
    fn patterns_beyond_the_quota_keep_the_commands_for_what_fits_and_name_the_rest() {
        // The route's rule has 4 of AWS's 5 condition values: one pattern fits.
        let four = ["/api/users", "/api/users/*", "/api/me", "/api/me/*"].map(String::from);
        let mut analysis = Analysis::new(RouteFacts {
            rule_conditions: alb::Conditions::paths(four.clone()),
            ..facts(None)
        });
        for _ in 0..3 {
            analysis.add(&record("/API/users/1", MONOLITH, 1, "99"));
        }
        analysis.add(&record("/Api/Users", MONOLITH, 1, "99"));
        let leaks = analysis.leaks();
        assert_eq!(leaks.len(), 2);
        assert_eq!(leaks[0].path, "/API/users/1", "most requests first");
        assert!(leaks[0].fix.contains("5 of AWS's 5"), "{}", leaks[0].fix);
        assert!(
            leaks[1].fix.contains("left out of the commands")
                && leaks[1]
                    .fix
                    .contains("6 condition values, over AWS's quota of 5")
                && leaks[1].fix.contains("second rule"),
            "{}",
            leaks[1].fix
        );
        let commands = analysis.fix_commands(&leaks);
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(
            commands[0].contains(r#""/api/me/*","/API/users/*"]"#),
            "{commands:?}"
        );
        assert!(!commands[0].contains("/Api/Users"), "{commands:?}");
        assert_eq!(
            analysis.left_out(&leaks),
            [
                r#""/Api/Users" (for /Api/Users): the route's rule would have 6 condition values, over AWS's quota of 5"#
            ]
        );
    }

    #[test]
    fn a_second_rule_forwarding_to_the_service_is_named_and_takes_what_the_route_has_no_room_for() {
        // The route's rule has 4 of AWS's 5 values; a second rule at
        // priority 5, not managed by ficus, has 2.
        let four = ["/api/users", "/api/users/*", "/api/me", "/api/me/*"].map(String::from);
        let mut analysis = Analysis::new(RouteFacts {
            rule_conditions: alb::Conditions::paths(four),
            other_rules: vec![OtherRule {
                arn: "arn:rule/second".into(),
                priority: 5,
                conditions: alb::Conditions::paths(["/api/USERS*".into(), "/ApI/UsErS*".into()]),
            }],
            ..facts(None)
        });
        for _ in 0..3 {
            analysis.add(&record("/API/users/1", MONOLITH, 1, "99"));
        }
        analysis.add(&record("/Api/Users", MONOLITH, 1, "99"));
        analysis.add(&record("/ApI/UsErS/6", MONOLITH, 1, "99"));
        let leaks = analysis.leaks();
        let fix = |path: &str| {
            leaks
                .iter()
                .find(|leak| leak.path == path)
                .map(|leak| leak.fix.clone())
                .unwrap()
        };
        assert!(
            fix("/ApI/UsErS/6").starts_with(
                "now matched by rule arn:rule/second at priority 5 (path-pattern /api/USERS*,/ApI/UsErS*), which forwards to the service"
            ),
            "{leaks:?}"
        );
        assert!(fix("/API/users/1").contains("5 of AWS's 5"), "{leaks:?}");
        assert!(
            fix("/Api/Users").starts_with(
                "the route's rule would have 6 condition values, over AWS's quota of 5: add the path pattern \"/Api/Users\" to rule arn:rule/second at priority 5, which already forwards to the service and has room (it then has 3 of AWS's 5"
            ),
            "{leaks:?}"
        );
        assert!(analysis.left_out(&leaks).is_empty());
        let commands = analysis.fix_commands(&leaks);
        assert_eq!(commands.len(), 3, "{commands:?}");
        assert!(
            commands[1].starts_with("aws elbv2 modify-rule --rule-arn arn:rule/second ")
                && commands[1].contains(r#"["/api/USERS*","/ApI/UsErS*","/Api/Users"]"#),
            "{commands:?}"
        );
        assert!(
            commands[2].contains("arn:rule/monolith") && commands[2].contains("/Api/Users"),
            "{commands:?}"
        );
    }

    #[test]
    fn a_miss_that_the_monoliths_catch_all_rule_served_at_100_percent_is_a_pattern_miss() {
        let mut analysis = Analysis::new(facts(Some(100)));
        analysis.add(&record("/API/USERS/1", MONOLITH, 150, "99"));
        let leaks = analysis.leaks();
        assert_eq!(leaks.len(), 1);
        assert_eq!(leaks[0].kind, LeakKind::PatternMiss);
        assert_eq!(leaks[0].pattern.as_deref(), Some("/API/USERS/*"));
        assert!(
            leaks[0].fix.starts_with("add the path pattern"),
            "{}",
            leaks[0].fix
        );
        // The patterns match, the route's rule (10) is in front of the rule
        // that served it (99): no "move it in front", its other conditions missed.
        let mut analysis = Analysis::new(facts(Some(100)));
        analysis.add(&record("/api/users/2", MONOLITH, 150, "99"));
        let leaks = analysis.leaks();
        assert_eq!(leaks[0].kind, LeakKind::RuleLost);
        assert!(
            leaks[0]
                .fix
                .contains("is in front of the rule at priority 99")
                && !leaks[0].fix.contains("move the route's rule in front"),
            "{}",
            leaks[0].fix
        );
    }

    #[test]
    fn percent_encoded_and_double_slash_spellings_get_patterns_aws_accepts_of_the_same_shape() {
        let reading = MonolithPaths {
            repeated_slashes: true,
            percent_decoding: true,
            ..MonolithPaths::default()
        };
        let mut analysis = Analysis::new(RouteFacts {
            reading,
            patterns: vec!["/api/users*".into()],
            rule_conditions: alb::Conditions::paths(["/api/users*".into()]),
            ..facts(None)
        });
        analysis.add(&record("/api//users/1", MONOLITH, 1, "99"));
        analysis.add(&record("/api/%75sers/1", MONOLITH, 1, "99"));
        analysis.add(&record("/api/%75sers/1", MONOLITH, 2, "99"));
        let leaks = analysis.leaks();
        let pattern = |path: &str| {
            leaks
                .iter()
                .find(|leak| leak.path == path)
                .and_then(|leak| leak.pattern.clone())
        };
        assert_eq!(pattern("/api//users/1").as_deref(), Some("/api//users*"));
        assert_eq!(pattern("/api/%75sers/1").as_deref(), Some("/api/???sers*"));
        for leak in &leaks {
            let pattern = leak.pattern.as_deref().unwrap();
            assert_eq!(alb::path_pattern_problem(pattern), None, "{pattern}");
            assert!(Glob::new(pattern, Syntax::CaseSensitive).matches(&leak.path));
        }
        assert!(leaks[0].fix.contains("written ???"), "{}", leaks[0].fix);
        let commands = analysis.fix_commands(&leaks);
        assert!(
            !commands.iter().any(|command| command.contains('%')),
            "{commands:?}"
        );
        // A spelling no pattern AWS accepts can match says so, and what to do.
        let mut analysis = Analysis::new(RouteFacts {
            reading,
            ..facts(None)
        });
        let long = format!("/API{}users/1", "/".repeat(130));
        analysis.add(&record(&long, MONOLITH, 1, "99"));
        let leaks = analysis.leaks();
        assert_eq!(leaks[0].pattern, None, "{leaks:?}");
        assert!(
            leaks[0].fix.starts_with("no path pattern can match it")
                && leaks[0].fix.contains("1 to 128 characters"),
            "{leaks:?}"
        );
        assert!(analysis.fix_commands(&leaks).is_empty());
    }
}
