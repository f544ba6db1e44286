//! A shift's plan, kept in tags on the route's rule so that any machine can
//! show, continue or undo it: the step list (percentages and holds), the
//! step reached, since when, who started it, the interval, and the bake.
//! Pure: parsing, validating and rendering the tags, and what comes next.
//!
//! ELBv2 allows 50 tags per resource, keys up to 128 and values up to 256
//! characters of letters, digits, white space and `_ . : / = + - @`; the
//! plan takes at most [`PLAN_KEYS`]`.len()` of them and writes only that set.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::cli::Step;
use crate::journal::{rfc3339, tag_safe};

/// The step list: `10 hold 50 100`.
pub const PLAN_TAG: &str = "ficus:plan";
/// The index (from 0) of the last item of the step list reached.
pub const AT_TAG: &str = "ficus:plan:at";
/// When that item was reached (RFC 3339).
pub const SINCE_TAG: &str = "ficus:plan:since";
/// Who started the plan.
pub const BY_TAG: &str = "ficus:plan:by";
/// The time between steps, e.g. `30s`.
pub const INTERVAL_TAG: &str = "ficus:plan:interval";
/// How long the gates keep watching after 100%, e.g. `30m`.
pub const BAKE_TAG: &str = "ficus:plan:bake";
/// When the bake ends (RFC 3339), once 100% is reached.
pub const BAKE_UNTIL_TAG: &str = "ficus:plan:bake-until";

/// Every key the plan writes; a rollback removes them all.
pub const PLAN_KEYS: [&str; 7] = [
    PLAN_TAG,
    AT_TAG,
    SINCE_TAG,
    BY_TAG,
    INTERVAL_TAG,
    BAKE_TAG,
    BAKE_UNTIL_TAG,
];

/// ELBv2's limit on a tag value.
const TAG_VALUE_MAX: usize = 256;

/// A plan as read from, or written to, the route's rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The last item reached; `None` before the first step.
    pub at: Option<usize>,
    pub since: OffsetDateTime,
    pub by: String,
    pub interval: Duration,
    pub bake: Option<Duration>,
    pub bake_until: Option<OffsetDateTime>,
}

/// Where a plan stands, for `status` and `watch`.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Stopped at a hold until `migrate promote`.
    Holding {
        percent: u8,
        since: OffsetDateTime,
        next: Option<u8>,
    },
    /// Between steps: a `migrate` is moving it, or was killed meanwhile.
    Moving {
        percent: Option<u8>,
        since: OffsetDateTime,
        next: Option<u8>,
    },
    /// At 100%, the gates watching until `until`.
    Baking { until: OffsetDateTime },
}

/// A plan in `status --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    /// `holding`, `moving` or `baking`.
    pub phase: &'static str,
    /// The step list, as `--steps` takes it.
    pub steps: String,
    /// The percentage reached, the next one.
    pub percent: Option<u8>,
    pub next: Option<u8>,
    /// When the current step or hold began.
    pub since: String,
    /// When the bake ends.
    pub bake_until: Option<String>,
    pub by: String,
    pub interval: String,
    pub summary: String,
}

/// Checks a step list: percentages from 1 to 100, increasing, ending at
/// 100; a hold only after a percentage and before the next one.
pub fn check_steps(steps: &[Step]) -> Result<(), String> {
    let percents: Vec<u8> = percents(steps);
    if percents.is_empty() {
        return Err("empty; give percentages like 10,50,100 (with `hold` where to stop)".into());
    }
    if percents.iter().any(|p| *p == 0 || *p > 100) {
        return Err("each step is a percentage from 1 to 100".into());
    }
    if percents.windows(2).any(|w| w[0] >= w[1]) {
        return Err("steps must increase, e.g. 10,50,100".into());
    }
    if steps.last() != Some(&Step::Percent(100)) {
        return Err("the last step must be 100".into());
    }
    if steps.first() == Some(&Step::Hold) {
        return Err("a hold follows a percentage, e.g. 10,hold,50,100".into());
    }
    if steps.windows(2).any(|w| w == [Step::Hold, Step::Hold]) {
        return Err("two holds in a row; one is enough".into());
    }
    Ok(())
}

/// The percentages of a step list, in order.
pub fn percents(steps: &[Step]) -> Vec<u8> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Percent(p) => Some(*p),
            Step::Hold => None,
        })
        .collect()
}

/// The step list of `shift --to N`: N, a hold, then the route's steps above N.
pub fn steps_to(to: u8, route_steps: &[u8]) -> Vec<Step> {
    let mut steps = vec![Step::Percent(to)];
    if to < 100 {
        steps.push(Step::Hold);
        steps.extend(
            route_steps
                .iter()
                .filter(|p| **p > to)
                .map(|p| Step::Percent(*p)),
        );
        if steps.last() != Some(&Step::Percent(100)) {
            steps.push(Step::Percent(100));
        }
    }
    steps
}

/// How a segment of the plan ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// At the hold with this index.
    Hold(usize),
    /// At the end of the step list (100%).
    End,
}

impl Plan {
    /// A new plan, not started.
    pub fn new(steps: Vec<Step>, by: &str, interval: Duration, bake: Option<Duration>) -> Plan {
        Plan {
            steps,
            at: None,
            since: OffsetDateTime::now_utc(),
            by: by.to_owned(),
            interval,
            bake,
            bake_until: None,
        }
    }

    /// The plan on a rule, `Ok(None)` when it carries none, `Err` (naming the
    /// tag, its value and the fix) when a plan tag is malformed.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Result<Option<Plan>, String> {
        if !PLAN_KEYS.iter().any(|k| tags.contains_key(*k)) {
            return Ok(None);
        }
        let bad = |key: &str, why: &str| {
            format!(
                "the plan tag {key}={:?} on the route's rule {why}; fix the tag, or remove the plan with `migrate abort` (which also rolls the route back)",
                tags.get(key).map(String::as_str).unwrap_or_default()
            )
        };
        let steps_text = tags
            .get(PLAN_TAG)
            .ok_or_else(|| bad(PLAN_TAG, "is missing while other ficus:plan tags exist"))?;
        let steps: Vec<Step> = steps_text
            .split_whitespace()
            .map(crate::cli::parse_step)
            .collect::<Result<_, _>>()
            .map_err(|why| {
                bad(
                    PLAN_TAG,
                    &format!("is not a step list like `10 hold 50 100`: {why}"),
                )
            })?;
        check_steps(&steps)
            .map_err(|why| bad(PLAN_TAG, &format!("is not a valid step list: {why}")))?;
        let at = match tags.get(AT_TAG) {
            None => None,
            Some(text) => {
                let at: usize = text
                    .parse()
                    .map_err(|_| bad(AT_TAG, "is not a step number"))?;
                if at >= steps.len() {
                    return Err(bad(
                        AT_TAG,
                        &format!("is past the step list's {} steps", steps.len()),
                    ));
                }
                Some(at)
            }
        };
        let time = |key: &str| -> Result<Option<OffsetDateTime>, String> {
            tags.get(key)
                .map(|text| {
                    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| bad(key, "is not an RFC 3339 time like 2026-12-03T09:00:00Z"))
                })
                .transpose()
        };
        let duration = |key: &str| -> Result<Option<Duration>, String> {
            tags.get(key)
                .map(|text| {
                    humantime::parse_duration(text)
                        .map_err(|_| bad(key, "is not a duration like 30s or 30m"))
                })
                .transpose()
        };
        Ok(Some(Plan {
            steps,
            at,
            since: time(SINCE_TAG)?.ok_or_else(|| bad(SINCE_TAG, "is missing"))?,
            by: tags.get(BY_TAG).cloned().unwrap_or_default(),
            interval: duration(INTERVAL_TAG)?.unwrap_or(Duration::from_secs(30)),
            bake: duration(BAKE_TAG)?,
            bake_until: time(BAKE_UNTIL_TAG)?,
        }))
    }

    /// The tags that hold this plan (every value fits ELBv2's rules), and the
    /// plan keys that must be removed because this plan has no value for them.
    pub fn tags(&self) -> (Vec<(&'static str, String)>, Vec<String>) {
        let fit =
            |text: String| -> String { tag_safe(&text).chars().take(TAG_VALUE_MAX).collect() };
        let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
        let mut tags = vec![
            (PLAN_TAG, steps.join(" ")),
            (SINCE_TAG, rfc3339(self.since)),
            (BY_TAG, fit(self.by.clone())),
            (
                INTERVAL_TAG,
                humantime::format_duration(self.interval).to_string(),
            ),
        ];
        let mut absent = Vec::new();
        match self.at {
            Some(at) => tags.push((AT_TAG, at.to_string())),
            None => absent.push(AT_TAG.to_owned()),
        }
        match self.bake {
            Some(bake) => tags.push((BAKE_TAG, humantime::format_duration(bake).to_string())),
            None => absent.push(BAKE_TAG.to_owned()),
        }
        match self.bake_until {
            Some(until) => tags.push((BAKE_UNTIL_TAG, rfc3339(until))),
            None => absent.push(BAKE_UNTIL_TAG.to_owned()),
        }
        (tags, absent)
    }

    /// The next items to run, as (index, percent), up to the next hold or
    /// the end, and how that segment ends.
    pub fn segment(&self) -> (Vec<(usize, u8)>, SegmentEnd) {
        let start = self.at.map_or(0, |at| at + 1);
        let mut items = Vec::new();
        for (index, step) in self.steps.iter().enumerate().skip(start) {
            match step {
                Step::Percent(p) => items.push((index, *p)),
                // A hold before any percentage is the one being left
                // (promote continues past it).
                Step::Hold if items.is_empty() => {}
                Step::Hold => return (items, SegmentEnd::Hold(index)),
            }
        }
        (items, SegmentEnd::End)
    }

    /// Whether the position is a hold.
    pub fn holding(&self) -> bool {
        self.at
            .is_some_and(|at| self.steps.get(at) == Some(&Step::Hold))
    }

    /// The percentage reached at the position (the one before a hold).
    pub fn reached(&self) -> Option<u8> {
        let at = self.at?;
        self.steps[..=at].iter().rev().find_map(|s| match s {
            Step::Percent(p) => Some(*p),
            Step::Hold => None,
        })
    }

    /// The next percentage after the position.
    pub fn next(&self) -> Option<u8> {
        let start = self.at.map_or(0, |at| at + 1);
        self.steps.iter().skip(start).find_map(|s| match s {
            Step::Percent(p) => Some(*p),
            Step::Hold => None,
        })
    }

    /// The index of a percentage in the step list.
    pub fn index_of(&self, percent: u8) -> Option<usize> {
        self.steps.iter().position(|s| *s == Step::Percent(percent))
    }

    pub fn phase(&self) -> Phase {
        if let Some(until) = self.bake_until {
            return Phase::Baking { until };
        }
        if self.holding() {
            return Phase::Holding {
                percent: self.reached().unwrap_or(0),
                since: self.since,
                next: self.next(),
            };
        }
        Phase::Moving {
            percent: self.reached(),
            since: self.since,
            next: self.next(),
        }
    }

    /// One line for people, e.g. `holding at 10% since 2026-12-03T09:00:00Z, next 25%`.
    pub fn describe(&self, route: &str, now: OffsetDateTime) -> String {
        self.describe_under_lock(route, now, None)
    }

    /// [`Plan::describe`], knowing who holds the lock (`lock_holder`): while
    /// a command holds it (a shift running the plan, a rollback undoing it),
    /// a moving plan is that command's, not one for `promote` to continue.
    pub fn describe_under_lock(
        &self,
        route: &str,
        now: OffsetDateTime,
        lock_holder: Option<&str>,
    ) -> String {
        let next = |next: Option<u8>| {
            next.map_or_else(
                || "then done".to_owned(),
                |p| format!("next {p}% (`migrate promote {route}`)"),
            )
        };
        match self.phase() {
            Phase::Holding {
                percent,
                since,
                next: n,
            } => format!(
                "holding at {percent}% since {}, {}",
                rfc3339(since),
                next(n)
            ),
            Phase::Moving {
                percent,
                since,
                next: n,
            } => format!(
                "moving: at {} since {}, {} ({})",
                percent.map_or("the start".to_owned(), |p| format!("{p}%")),
                rfc3339(since),
                n.map_or("then done".to_owned(), |p| format!("next {p}%")),
                match lock_holder {
                    Some(holder) => format!(
                        "{holder} holds the lock: its command, running now, moves the route (a shift runs the plan, a rollback ends it); `migrate status` again shows where it got"
                    ),
                    None => format!(
                        "if no `migrate` runs the plan, `migrate promote {route}` continues it"
                    ),
                }
            ),
            Phase::Baking { until } if until > now => format!(
                "baking until {} (the gates are judged while a `migrate` runs for the route: the shift, `migrate watch {route}` or `promote`; `migrate promote {route}` ends the bake early)",
                rfc3339(until)
            ),
            Phase::Baking { until } => format!(
                "baked until {}, but no `migrate` finished the bake: `migrate promote {route}` judges the gates and ends it",
                rfc3339(until)
            ),
        }
    }

    /// The plan for `status --output json`, knowing who holds the lock
    /// ([`Plan::describe_under_lock`]).
    pub fn status(
        &self,
        route: &str,
        now: OffsetDateTime,
        lock_holder: Option<&str>,
    ) -> PlanStatus {
        PlanStatus {
            phase: match self.phase() {
                Phase::Holding { .. } => "holding",
                Phase::Moving { .. } => "moving",
                Phase::Baking { .. } => "baking",
            },
            steps: self.steps_text(),
            percent: self.reached(),
            next: self.next(),
            since: rfc3339(self.since),
            bake_until: self.bake_until.map(rfc3339),
            by: self.by.clone(),
            interval: humantime::format_duration(self.interval).to_string(),
            summary: self.describe_under_lock(route, now, lock_holder),
        }
    }

    /// The step list as `10,hold,50,100` (as `--steps` takes it).
    pub fn steps_text(&self) -> String {
        let steps: Vec<String> = self.steps.iter().map(ToString::to_string).collect();
        steps.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        text.split(',')
            .map(|s| crate::cli::parse_step(s).unwrap())
            .collect()
    }

    #[test]
    fn step_lists_are_checked() {
        assert!(check_steps(&steps("5,hold,25,50,hold,100")).is_ok());
        assert!(check_steps(&steps("100")).is_ok());
        assert!(check_steps(&steps("hold,10,100")).is_err());
        assert!(check_steps(&steps("10,hold,hold,100")).is_err());
        assert!(check_steps(&steps("10,hold")).is_err());
        assert!(
            check_steps(&steps("50,10,100"))
                .unwrap_err()
                .contains("steps must increase")
        );
    }

    #[test]
    fn to_holds_then_continues_with_the_route_steps_above() {
        assert_eq!(steps_to(10, &[10, 50, 100]), steps("10,hold,50,100"));
        assert_eq!(steps_to(10, &[100]), steps("10,hold,100"));
        assert_eq!(steps_to(100, &[10, 50, 100]), steps("100"));
    }

    #[test]
    fn segments_run_from_hold_to_hold() {
        let mut plan = Plan::new(
            steps("5,hold,25,50,hold,100"),
            "ann@vm",
            Duration::from_secs(1),
            None,
        );
        assert_eq!(plan.segment(), (vec![(0, 5)], SegmentEnd::Hold(1)));
        plan.at = Some(1);
        assert!(plan.holding());
        assert_eq!(plan.reached(), Some(5));
        assert_eq!(plan.next(), Some(25));
        assert_eq!(
            plan.segment(),
            (vec![(2, 25), (3, 50)], SegmentEnd::Hold(4))
        );
        plan.at = Some(2);
        assert_eq!(plan.segment(), (vec![(3, 50)], SegmentEnd::Hold(4)));
        plan.at = Some(4);
        assert_eq!(plan.segment(), (vec![(5, 100)], SegmentEnd::End));
    }

    #[test]
    fn tags_round_trip_and_fit_elbv2() {
        let mut plan = Plan::new(
            steps("10,hold,100"),
            &format!("arn:aws:sts::1:assumed-role/ops/{}", "x".repeat(300)),
            Duration::from_secs(30),
            Some(Duration::from_secs(1800)),
        );
        plan.at = Some(1);
        plan.since = plan.since.replace_nanosecond(0).unwrap();
        let (tags, absent) = plan.tags();
        assert_eq!(absent, vec![BAKE_UNTIL_TAG.to_owned()]);
        let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        for (key, value) in &tags {
            assert!(key.len() <= 128 && value.chars().count() <= 256, "{key}");
            assert!(value.chars().all(allowed), "{key}={value}");
        }
        let map: BTreeMap<String, String> =
            tags.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let back = Plan::from_tags(&map).unwrap().unwrap();
        assert_eq!(back.steps, plan.steps);
        assert_eq!(back.at, Some(1));
        assert_eq!(back.since, plan.since);
        assert_eq!(back.bake, plan.bake);
        assert_eq!(back.by.chars().count(), 256);
    }

    #[test]
    fn malformed_tags_are_named() {
        let mut tags = BTreeMap::from([
            (PLAN_TAG.to_owned(), "10 hold 100".to_owned()),
            (SINCE_TAG.to_owned(), "2026-12-03T09:00:00Z".to_owned()),
            (AT_TAG.to_owned(), "1".to_owned()),
        ]);
        assert!(Plan::from_tags(&tags).unwrap().is_some());
        tags.insert(PLAN_TAG.into(), "10 wait 100".into());
        let err = Plan::from_tags(&tags).unwrap_err();
        assert!(err.contains("ficus:plan=\"10 wait 100\""), "{err}");
        tags.insert(PLAN_TAG.into(), "10 hold 100".into());
        tags.insert(AT_TAG.into(), "7".into());
        assert!(Plan::from_tags(&tags).unwrap_err().contains(AT_TAG));
        assert_eq!(Plan::from_tags(&BTreeMap::new()), Ok(None));
    }
}
