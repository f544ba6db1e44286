//! What every command starts from: settings, the ELBv2 client, the listener's
//! rules and tags, and the route views built from them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::Context as _;
use aws_config::SdkConfig;
use time::OffsetDateTime;

use crate::elb::{Elb, caller_identity};
use crate::error::usage;
use crate::journal::LastChange;
use crate::lock::{self, Lock, LockOptions};
use crate::output::Output;
use crate::settings::{MONOLITH_TAG, Settings};
pub use crate::state::Listing;
use crate::state::{Forward, RouteView, RuleInfo, target_group_name};

pub use crate::state::ROUTE_TAG;

/// How far apart two machines' clocks may be when deciding whether rules read
/// before the lock was confirmed may have changed meanwhile.
const CLOCK_SKEW: time::Duration = time::Duration::seconds(2);

pub struct Ctx {
    pub settings: Settings,
    pub sdk: SdkConfig,
    pub elb: Elb,
    pub output: Output,
    pub verbose: bool,
    pub started: Instant,
    /// Where events go (`[[notify]]`); finished by `lib::run`.
    pub notifier: crate::notify::Notifier,
    who: Option<tokio::task::JoinHandle<String>>,
    who_known: Option<String>,
}

impl Ctx {
    pub async fn new(settings: Settings, output: Output, verbose: bool) -> Ctx {
        let sdk = crate::elb::sdk_config(&settings.aws).await;
        let elb = Elb::new(&sdk, verbose);
        let notifier = crate::notify::Notifier::new(&settings, &sdk);
        Ctx {
            notifier,
            settings,
            sdk,
            elb,
            output,
            verbose,
            started: Instant::now(),
            who: None,
            who_known: None,
        }
    }

    /// Starts asking STS who we are, in the background (for the journal).
    /// The lock's options: the settings' TTL and the command's flags.
    pub fn lock_options(&self, args: &crate::cli::LockArgs) -> crate::lock::LockOptions {
        crate::lock::LockOptions {
            ttl: self.settings.lock_ttl,
            wait: args.wait,
            force_unlock: args.force_unlock,
            settle: args.lock_settle,
        }
    }

    pub fn start_who(&mut self) {
        let sdk = self.sdk.clone();
        let verbose = self.verbose;
        self.who = Some(tokio::spawn(
            async move { caller_identity(&sdk, verbose).await },
        ));
    }

    /// The journal's "who": the STS caller ARN or `$USER@hostname`.
    pub async fn who(&mut self) -> String {
        if let Some(known) = &self.who_known {
            return known.clone();
        }
        let who = match self.who.take() {
            Some(task) => task.await.unwrap_or_else(|_| crate::elb::local_user()),
            None => caller_identity(&self.sdk, self.verbose).await,
        };
        self.who_known = Some(who.clone());
        self.notifier.set_who(&who);
        who
    }

    /// Whether progress goes to stderr: with every `--output`. Stdout
    /// carries only the result (under `--output json`, its one document),
    /// so messages on stderr never mix with it; a script reading the JSON
    /// still sees on stderr what a shift is waiting for.
    pub fn chatty(&self) -> bool {
        matches!(self.output, Output::Text | Output::Json)
    }

    /// Reads the listener without locking it.
    pub async fn list(&self) -> anyhow::Result<Listing> {
        let listener_arn = self.elb.listener_arn(&self.settings.listener).await?;
        let rules = self.elb.rules(&listener_arn).await?;
        let mut arns = vec![listener_arn.clone()];
        arns.extend(rules.iter().map(|r| r.arn.clone()));
        let tags = self.elb.tags(&arns).await?;
        self.assemble(listener_arn, rules, tags).await
    }

    /// Locks the listener and reads it (rules first, then the lock check and
    /// the rules' tags in one DescribeTags call).
    pub async fn lock_and_list(&self, options: &LockOptions) -> anyhow::Result<(Lock, Listing)> {
        let listener_arn = self.elb.listener_arn(&self.settings.listener).await?;
        let read_at = OffsetDateTime::now_utc();
        let mut rules = self.elb.rules(&listener_arn).await?;
        let rule_arns: Vec<String> = rules.iter().map(|r| r.arn.clone()).collect();
        let (lock, tags) = lock::acquire(&self.elb, &listener_arn, &rule_arns, options).await?;
        if !lock.forced_holders().is_empty() {
            self.notifier.emit(
                crate::notify::Event::new(crate::notify::Kind::LockForced, None).reason(format!(
                    "--force-unlock removed the lock of {}",
                    lock.forced_holders().join(", ")
                )),
            );
        }
        // Another operator may have changed the rules between our DescribeRules
        // and taking the lock: its last-change tag would be that recent.
        let recent = tags
            .values()
            .filter_map(|t| t.get(crate::journal::LAST_CHANGE_TAG))
            .any(|value| {
                let when = LastChange::parse(value).when;
                OffsetDateTime::parse(&when, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|when| when >= read_at - CLOCK_SKEW)
            });
        let seen_others = lock::lock_tags(tags.get(&listener_arn).unwrap_or(&BTreeMap::new()))
            .iter()
            .any(|l| l.key != lock.tag.key);
        let listing = async {
            if recent || seen_others {
                rules = self.elb.rules(&listener_arn).await?;
                let missing: Vec<String> = rules
                    .iter()
                    .filter(|r| !tags.contains_key(&r.arn))
                    .map(|r| r.arn.clone())
                    .collect();
                let mut tags = tags.clone();
                if !missing.is_empty() {
                    tags.extend(self.elb.tags(&missing).await?);
                }
                return self.assemble(listener_arn.clone(), rules, tags).await;
            }
            self.assemble(listener_arn.clone(), rules, tags).await
        }
        .await;
        match listing {
            Ok(listing) => Ok((lock, listing)),
            Err(err) => {
                let _ = lock.release(&self.elb).await;
                Err(err)
            }
        }
    }

    async fn assemble(
        &self,
        listener_arn: String,
        mut rules: Vec<RuleInfo>,
        mut tags: BTreeMap<String, BTreeMap<String, String>>,
    ) -> anyhow::Result<Listing> {
        for rule in &mut rules {
            rule.tags = tags.remove(&rule.arn).unwrap_or_default();
        }
        let listener_tags = tags.remove(&listener_arn).unwrap_or_default();
        let monolith = find_monolith(&self.settings, &rules, &listener_arn)?;
        let monolith_priority = monolith.priority.context(
            "the monolith's rule is the listener's default rule; give it a numbered rule",
        )?;
        // Target groups named in the settings, resolved from the rules' own
        // forwards when possible (no call), else with one DescribeTargetGroups.
        let known: BTreeSet<&str> = rules.iter().flat_map(|r| forwarded(&r.action)).collect();
        let resolve = |wanted: &str| -> Option<String> {
            if wanted.starts_with("arn:") {
                return Some(wanted.to_owned());
            }
            known
                .iter()
                .find(|arn| target_group_name(arn) == wanted)
                .map(|arn| (*arn).to_owned())
        };
        let mut unresolved: Vec<String> = Vec::new();
        let monolith_wanted = self.settings.monolith.target_group.clone();
        let mut monolith_tg = match &monolith_wanted {
            Some(wanted) => resolve(wanted),
            None => match &monolith.action {
                Forward::Plain { target_group } => Some(target_group.clone()),
                other => anyhow::bail!(
                    "the monolith's rule does not forward to one target group ({}); set monolith.target_group in migrate.toml",
                    other.describe()
                ),
            },
        };
        if monolith_tg.is_none()
            && let Some(wanted) = &monolith_wanted
        {
            unresolved.push(wanted.clone());
        }
        let mut service_tgs = BTreeMap::new();
        for (name, route) in &self.settings.routes {
            match resolve(&route.target_group) {
                Some(arn) => {
                    service_tgs.insert(name.clone(), arn);
                }
                None => unresolved.push(route.target_group.clone()),
            }
        }
        if !unresolved.is_empty() {
            unresolved.sort();
            unresolved.dedup();
            let found = self.elb.target_group_arns(&unresolved).await?;
            if let (None, Some(wanted)) = (&monolith_tg, &monolith_wanted) {
                monolith_tg = Some(found.get(wanted).cloned().ok_or_else(|| {
                    usage(format!("target group `{wanted}` (monolith.target_group) does not exist; create it or fix the name"))
                })?);
            }
            for (name, route) in &self.settings.routes {
                if !service_tgs.contains_key(name) {
                    let arn = found.get(&route.target_group).ok_or_else(|| {
                        usage(format!(
                            "target group `{}` (routes.{name}.target_group) does not exist; create it or fix the name",
                            route.target_group
                        ))
                    })?;
                    service_tgs.insert(name.clone(), arn.clone());
                }
            }
        }
        Ok(Listing {
            listener_arn,
            listener_tags,
            monolith_priority,
            monolith_tg: monolith_tg.context("the monolith's target group is unknown")?,
            monolith,
            rules,
            service_tgs,
        })
    }
}

/// Target group ARNs a forward names.
fn forwarded(action: &Forward) -> Vec<&str> {
    match action {
        Forward::Plain { target_group } => vec![target_group.as_str()],
        Forward::Weighted { target_groups, .. } => {
            target_groups.iter().map(|(arn, _)| arn.as_str()).collect()
        }
        Forward::Other { .. } => vec![],
    }
}

/// The monolith's rule: by configured ARN, by configured priority, else by tag.
pub(crate) fn find_monolith(
    settings: &Settings,
    rules: &[RuleInfo],
    listener_arn: &str,
) -> anyhow::Result<RuleInfo> {
    let monolith = &settings.monolith;
    let found = if let Some(arn) = &monolith.rule_arn {
        rules.iter().find(|r| r.arn == *arn).with_context(|| {
            format!(
                "the monolith's rule {arn} (monolith.rule_arn) is not on listener {listener_arn}"
            )
        })?
    } else if let Some(priority) = monolith.rule_priority {
        rules.iter().find(|r| r.priority == Some(priority)).with_context(|| {
            format!("no rule at priority {priority} (monolith.rule_priority) on listener {listener_arn}")
        })?
    } else {
        let (key, value) = MONOLITH_TAG;
        let tagged: Vec<&RuleInfo> = rules
            .iter()
            .filter(|r| r.tags.get(key).map(String::as_str) == Some(value))
            .collect();
        match tagged.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {
                let default_forward = rules
                    .iter()
                    .find(|r| r.priority.is_none())
                    .map(|r| r.action.describe());
                let default_hint = match default_forward {
                    Some(action) if action.starts_with("forward") => format!(
                        " The listener's default action is `{action}`: if that is the monolith, `migrate init --create-monolith-rule` creates a catch-all rule for it, tagged, behind every other rule (traffic unchanged; `--dry-run` shows the call)."
                    ),
                    _ => String::new(),
                };
                let live: Vec<String> = rules
                    .iter()
                    .filter_map(|r| {
                        let route = r.tags.get(ROUTE_TAG)?;
                        Some(format!(
                            "{route} (priority {})",
                            r.priority.map_or("default".into(), |p| p.to_string())
                        ))
                    })
                    .collect();
                let danger = if live.is_empty() {
                    String::new()
                } else {
                    format!(
                        " WARNING: without the monolith's rule in front of them, the rules of {} take every request they match now; recreate the monolith's rule in front of them (or delete them) before anything else.",
                        live.join(", ")
                    )
                };
                anyhow::bail!(
                    "no rule on listener {listener_arn} is tagged {key}={value}.{danger} Tag the monolith's rule (aws elbv2 add-tags --resource-arns RULE_ARN --tags Key={key},Value={value}), or set monolith.rule_priority or monolith.rule_arn in migrate.toml.{default_hint}"
                )
            }
            many => anyhow::bail!(
                "{} rules on listener {listener_arn} are tagged {key}={value}; keep the tag on the monolith's rule only",
                many.len()
            ),
        }
    };
    Ok(found.clone())
}

impl Listing {
    /// The view of one route.
    pub fn view(&self, settings: &Settings, route: &str) -> anyhow::Result<RouteView> {
        let route_settings = settings.route(route)?;
        let rules: Vec<RuleInfo> = self
            .rules
            .iter()
            .filter(|r| r.tags.get(ROUTE_TAG).map(String::as_str) == Some(route))
            .cloned()
            .collect();
        let sticky_seconds = route_settings
            .sticky_seconds()
            .or_else(|| match rules.as_slice() {
                [rule] => rule.action.sticky_seconds(),
                _ => None,
            });
        Ok(RouteView {
            sticky_seconds,
            rules,
            monolith_priority: self.monolith_priority,
            service_tg: self
                .service_tgs
                .get(route)
                .cloned()
                .context("the service's target group is unknown")?,
            monolith_tg: self.monolith_tg.clone(),
            monolith_conditions: self.monolith.conditions.clone(),
            taken: self.rules.iter().filter_map(|r| r.priority).collect(),
            preferred: route_settings.priority,
        })
    }

    /// Differences between the route's rule and migrate.toml.
    pub fn drift(&self, settings: &Settings, route: &str, view: &RouteView) -> Vec<String> {
        let Some(rule) = view.rule() else {
            return Vec::new();
        };
        let Ok(route_settings) = settings.route(route) else {
            return Vec::new();
        };
        let mut drift = Vec::new();
        let on_alb: BTreeSet<&String> = rule.conditions.paths.iter().collect();
        let in_file: BTreeSet<&String> = route_settings.paths.iter().collect();
        if on_alb != in_file {
            drift.push(format!(
                "paths on the ALB {:?} differ from routes.{route}.paths {:?}",
                rule.conditions.paths, route_settings.paths
            ));
        }
        if !route_settings.hosts.is_empty() && rule.conditions.hosts != route_settings.hosts {
            drift.push(format!(
                "hosts on the ALB {:?} differ from routes.{route}.hosts {:?}",
                rule.conditions.hosts, route_settings.hosts
            ));
        }
        if route_settings.hosts.is_empty()
            && !rule.conditions.hosts.is_empty()
            && rule.conditions.normalized().hosts != self.monolith.conditions.normalized().hosts
        {
            drift.push(format!(
                "the rule matches only the hosts {:?} (copied from the monolith's rule when it was created), but the monolith's rule now has {:?} and routes.{route}.hosts is unset: shifted, the route would leave the other hosts on the monolith; while parked, delete the rule and run `migrate init`, or set routes.{route}.hosts",
                rule.conditions.hosts, self.monolith.conditions.hosts
            ));
        }
        let leaks = view.leaks();
        if !leaks.is_empty() {
            drift.push(crate::coverage::leak_line(self, view, &leaks));
        }
        if let Some(problem) = crate::coverage::priority_problem(self, view, route) {
            drift.push(problem);
        }
        let targets = forwarded(&rule.action);
        if !targets.is_empty() && !targets.contains(&view.service_tg.as_str()) {
            drift.push(format!(
                "the rule forwards to {} but routes.{route}.target_group is {}",
                targets
                    .iter()
                    .map(|t| target_group_name(t))
                    .collect::<Vec<_>>()
                    .join(", "),
                route_settings.target_group
            ));
        }
        drift
    }

    /// Route names tagged on this listener but absent from migrate.toml.
    pub fn unknown_routes(&self, settings: &Settings) -> Vec<String> {
        let mut names: Vec<String> = self
            .rules
            .iter()
            .filter_map(|r| r.tags.get(ROUTE_TAG))
            .filter(|name| !settings.routes.contains_key(*name))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
