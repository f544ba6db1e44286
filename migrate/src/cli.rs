//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Move URL paths from the monolith to their services behind an ALB, one route at a time, with a way back.";

const LONG_ABOUT: &str = "\
Move URL paths from the monolith to their services behind an ALB, one route at a time, with a way back.

The model: the monolith's rule (e.g. `/api*` at priority 99, tagged ficus:role=monolith)
never moves. Each route (users, threads, posts) has its own rule, tagged ficus:route=NAME.
A route is ON THE MONOLITH while its rule sits behind the monolith's rule (a higher
number), ON THE SERVICE when in front of it, and SHIFTING N% when in front with a weighted
forward (service N, monolith 100-N). Every move is one SetRulePriorities call into a free
slot. The ALB is the source of truth; the local journal only records what happened.

Settings come from migrate.toml (cwd or --config), then MIGRATE__* environment variables
(e.g. MIGRATE__ROUTES__USERS__SERVICE_URL), then flags. AWS credentials, region and endpoint
come from the standard chain (AWS_* variables, --profile, --region, --endpoint-url).";

const AFTER_HELP: &str = "\
Examples:
  migrate init                                   create the routes' rules, parked behind the monolith
  migrate status                                 where every route stands
  migrate plan users                             the API calls `shift users` would make
  migrate shift users --steps 10,50,100 --interval 30s
  migrate shift users --steps 10,50,100 --sticky 10m   each client stays on one side for 10m
  migrate shift users --to 10                    10%, then hold
  migrate promote users                          continue a held plan, from any machine
  migrate watch users                            live: weights, health, gates, next step
  migrate abort users --reason \"errors\"         back to the monolith, plan ended
  migrate rollback users                         back to the monolith, from any state
  migrate rollback --all
  migrate preview users                          X-Ficus-Preview: users reaches the service
  migrate verify users --through-lb              compare through the LB, header vs none
  migrate history users
  migrate notify test                            a test event to every [[notify]] sink

Exit codes: 0 done, 1 error, 2 usage or config, 3 gate failed and rolled back, 4 lock held
(or taken away mid-shift), 130 stopped by Ctrl-C; verify: 1 an answer differed, 5 the check
could not run (see `migrate verify --help`).

Durations (--interval, --since, --bake, migrate.toml's ...): a bare number is seconds
(--since 30 is 30s); otherwise a number with a unit: ms, s, m, h, d, w, combined as in 1h30m.
local-alb reads its durations the same way.

--output json: stdout carries exactly one JSON document, whatever happens: the command's
result, or on failure {\"ok\": false, \"exit_code\": N, \"error\": \"...\", ...} with what was done
so far (for shift and rollback: route, from, to, steps, routing_changes). Messages stay on
stderr, as with text output (progress, waits, the AWS API line). A closed stdout
(`migrate status | head -3`) is not an error: the command finishes its work quietly and
exits with its own code.";

#[derive(Debug, Parser)]
#[command(name = "migrate", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// The settings file (default: ./migrate.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The AWS profile (as the AWS CLI takes it).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// The AWS region.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// The ELBv2 endpoint, e.g. the local ALB's control listener http://127.0.0.1:9100.
    #[arg(long, global = true, value_name = "URL", value_parser = parse_endpoint_url)]
    pub endpoint_url: Option<String>,
    /// Print each ELBv2 call and its duration, and a summary, on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Output format of results on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::output::Output;

// Parsed once per process: the size of the largest arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the missing route rules, parked behind the monolith's rule.
    #[command(long_about = "\
Create the missing route rules from migrate.toml, parked behind the monolith's rule
(traffic unchanged) with a plain forward to the service and the tags ficus:route=NAME
and ficus:parked-priority=N (where a rollback parks it again).

Parked means parked only if the monolith's rule matches every request the route's rule
does. init compares their conditions (path, host, header, method, query, source address):
a condition of the monolith's rule that the route's rule lacks is copied into it (within
AWS's quotas of 5 condition values and 5 wildcards per rule); a gap that copying can't
close (a path outside the monolith's patterns, a host of the route's own outside the
monolith's hosts) is refused, naming the condition. A parked rule that exists and leaks
is narrowed the same way. Each route's `priority` must be free and in front of the
monolith's rule, or nothing is created.

A listener whose monolith is only the default action has no rule to tag:
--create-monolith-rule creates one (path /*, forward to the default action's target
group, tag ficus:role=monolith) behind every other rule, so every request goes where it
went. Running it again changes nothing. Rules that exist but differ from the file (paths,
hosts or target group) are reported as drift, never overwritten.

Examples:
  migrate init
  migrate init --dry-run                         the calls, without making them
  migrate init --create-monolith-rule --monolith-priority 1000")]
    Init(InitArgs),
    /// Show every route: state, priorities, weights, target health, last change, drift.
    #[command(long_about = "\
Show, per route: its path patterns, its state (on the monolith, shifting N%, on the
service, inconsistent, missing), the priorities of its rule and of the monolith's rule,
the forward weights, the health of the service's targets, the last change (who, when,
what, from the rule's tag) and drift from migrate.toml. Read-only.

`tasks:` (and `monolith tasks:`): on AWS, the ECS service's running, desired and
pending tasks and its Application Auto Scaling limits, found from the target group's
tag ficus:ecs-service=service/<cluster>/<service>; elsewhere (the local stack), the
target group's registered and healthy targets, with the reason there is no more.

`retired:` (a route `migrate retire` finished): since when, what the service alone
serves, and the spellings the monolith still gets (those its reading of paths takes and
the patterns miss). `also:` a rule that ficus does not manage but that forwards to the
route's service (a rollback leaves it; the line gives the command that deletes it).

Example: migrate status --output json")]
    Status(StatusArgs),
    /// Print the exact API calls a shift or rollback would make; changes nothing.
    #[command(long_about = "\
Print, in order, the ELBv2 calls that a shift (default: the route's configured steps;
--to N: one step to N%) or a rollback (--to 0) would make from the current state, with
the gates checked before each step. Changes nothing.

With --from-alb-log, it also counts from the access logs the route's requests that the
patterns miss and the monolith served (as `migrate leaks` does): what a shift would leave
behind.

Exit codes: 0 planned, 1 error, 2 usage, 4 the access logs of --from-alb-log could not be
read (as in `migrate leaks` and `verify`).

--steps and --sticky preview a shift with those options (as `shift` takes them; a
`hold` in the steps is where the shift would stop until `migrate promote`).

Examples:
  migrate plan users --to 10
  migrate plan users --steps 10,50,100 --sticky 1h
  migrate plan users --from-alb-log s3://my-alb-logs/prod")]
    Plan(PlanArgs),
    /// Move a route to its service, directly or in steps, behind gates; a plan may hold.
    #[command(long_about = "\
Move a route to its service. The steps are --steps, else the route's `steps` in
migrate.toml (default [100]: straight to 100%, one SetRulePriorities call); with
--steps 10,50,100 --interval 30s gradually. A step list may hold: --steps 5,hold,25,50,hold,100
moves to 5%, stops there (exit 0) until `migrate promote` continues to 25% and 50%, and so on.
--to 10 moves to 10% and holds (then the route's steps above 10%); --to below the current
share steps the route back down behind the same gates (a partial rollback).

The plan (steps, the step reached, a hold and since when, the bake deadline, who started it)
is kept in tags on the route's rule (ficus:plan*), not in this process: `migrate status`
shows it from any machine, `migrate promote` continues it and `migrate abort` undoes it
from any machine, also after this process was killed.

Before each step: the service's target
group has a healthy target and no unhealthy ones (targets `draining` or `initial`, as
during an ECS deploy, get no traffic and are tolerated while one target is healthy), and
the parity sample passes. After each
write the rule must show what was written: in the write's answer, else read back until it
does. During each interval the
route is probed through lb_url (over the error budget, the step fails) and the service's
target health is read every health_poll (default 1s; a target that turns unhealthy
fails the step). The metric gates read the load balancer's CloudWatch metrics of the
clients' own traffic every [metrics] period (default 60s; 1s on the local ALB): the
service's 5XX ratio and p99 against the monolith's, the load balancer's own 5XX, and at
least min_requests requests (default 50) to the service; a step goes on only after they
pass, waits up to max_wait (default 5m) past the interval while there is too little data,
and never passes on no data (docs/gates.md). --bake 30m keeps those gates watching for 30
minutes after 100%.

No step is done before every load balancer node routes by it: an accepted change reaches
the nodes within propagation_max (migrate.toml, default 10s; AWS publishes no figure).
Each interval starts propagation_max after its step's write (the wait is said on stderr;
probes run during it), so a step takes propagation_max plus --interval, and the metric
gates judge only traffic from after it. After the last step (also at a hold, and for
`promote`), migrate waits out propagation_max before it reports the route where it is and
exits 0 (`every_node_by` in --output json). Any failed gate
rolls the route back, is journaled (also when nothing had moved yet), and exits 3. Once
anything was written, any other error (an API call that still fails after the SDK's
retries) rolls back too and exits 1; if that rollback fails, the error names the route's
last known state and the command that finishes it. Before every write the shift confirms
it still holds the lock; if a colleague took it (`rollback --force-unlock`), it stops
without writing and exits 4. Ctrl-C during an interval stops the shift where it is,
releases the lock, prints the commands that continue or undo it, and exits 130.
Continues a shift stopped midway.

Custom gates of the route ([[routes.NAME.gates]]: a webhook, 2xx passes, or a command,
exit 0 passes) run before the first write (before-shift), before every step after the
built-in gates (step) and before the step to 100% (before-full); one that fails rolls
back and exits 3 like a built-in gate, unless dry_run = true (its verdict is then only
shown and journaled). after-rollback hooks run after any rollback. Events go to the
[[notify]] sinks (see `migrate notify --help`, docs/operations.md).

Progress (stderr) numbers each step against the whole plan, holds included: `--steps
10,hold,100` says step 1/2 and stops holding at 10%; `migrate promote users` goes on with
step 2/2. The outcome (--output json) has route, from, to (the state the route was left
in), steps (each with percent, step, of and its gates' evidence) and routing_changes: the
writes, made and read back, that changed where requests go (a rule's priority or
conditions, or the action of a rule in front of the monolith's; the action of a parked
rule moves no traffic and is not counted, nor is a call that failed). -v says it
too: \"N ELBv2 calls (N changed routing)\".

Examples:
  migrate shift users                            the route's steps (default [100])
  migrate shift users --steps 10,50,100 --interval 30s
  migrate shift users --to 10                    10%, then hold until `migrate promote users`
  migrate shift users --steps 5,hold,25,50,hold,100 --bake 30m
  migrate shift users --to 5                     from 25%: back down to 5%, behind the gates")]
    Shift(ShiftArgs),
    /// Continue a route's plan to its next hold (or to the end), behind the gates.
    #[command(long_about = "\
Continue the plan kept on the route's rule (see `migrate shift --help`): from a hold, or
where a killed `migrate` left it, to the next hold or to 100% (then its bake, if any),
with the same gates, interval and lock as `shift`. Works from any machine. During a
bake, promote ends the bake after one more judgement of the gates. A route with no plan
has nothing to promote (exit 2).

Example: migrate promote users")]
    Promote(PromoteArgs),
    /// Return a route to the monolith, end its plan, and record why.
    #[command(long_about = "\
Roll the route back to the monolith from any state, as `migrate rollback` does, remove
its plan tags and record the reason in the journal and the rule's last-change tag. Works
from any machine, with the lock rules of every write (exit 4 while another operator
holds the lock). A retired route has no plan: refused (exit 2), `migrate rollback ROUTE
--yes` returns it. Rules ficus does not manage that forward to the service are warned
about, as by rollback.

Example: migrate abort users --reason \"p99 latency up on the dashboard\"")]
    Abort(AbortArgs),
    /// Return a route (or all) to the monolith, from any state.
    #[command(long_about = "\
Return a route to the monolith from any state (mid-shift, after a crash, after a manual
edit): first one SetRulePriorities call moves its rule behind the monolith's rule, then
ModifyRule restores its plain forward. A route already on the monolith is left alone
(exit 0). A retired route (`migrate retire`) needs --yes. Rules that ficus does not manage
but that forward to the route's service (a second rule for spellings over AWS's quota,
shown by `status` on an `also:` line) stay: a WARNING on stderr names each, with the
`aws elbv2 delete-rule` that removes it (`also_forwarding` in --output json).

Examples: migrate rollback users; migrate rollback --all; migrate rollback users --yes")]
    Rollback(RollbackArgs),
    /// Add (or with --off remove) a rule sending a route's requests with a header to its service.
    #[command(long_about = "\
Add a preview rule: the route's paths (with the monolith rule's other conditions, as
init copies them) and an http-header condition (default `X-Ficus-Preview: ROUTE`), in
front of the monolith's rule at the lowest free priority that is no route's `priority`,
forwarding to the service, tagged ficus:preview=ROUTE. Testers and CI then reach the
service through the real load balancer (`curl -H 'X-Ficus-Preview: users' ...`, or
`migrate verify users --through-lb`) while every client still gets the monolith.
--off deletes it, leaving no trace. It is never mistaken for the route's rule: status
shows it on its own line, shift passes it, and rollback leaves it (and says so).

Examples:
  migrate preview users
  migrate preview users --header 'X-Canary: qa'
  migrate verify users --through-lb
  migrate preview users --off")]
    Preview(PreviewArgs),
    /// Watch routes live while their plans run: weights, health, gates, time to the next step.
    #[command(long_about = "\
A live view of one route (or every route) while a plan runs on it, from any machine:
the forward weights, the service's target health, the plan's phase (moving, holding,
baking) with the time to the next step or to the end of the bake, and the latest gate
values this machine's journal holds. Refreshes every --every (default 2s) until no
watched route has a plan left, or Ctrl-C (exit 0). On a terminal the view is redrawn in
place; otherwise (a CI log, a pipe) each refresh prints one plain line per route; with
--output json, one JSON array per refresh, one per line. A closed stdout (`| head`) ends
the watch.

While a route holds or bakes, watch judges its health gate at every refresh (a target
group with no healthy target, or an unhealthy target unless the route's allow_unhealthy):
when it fails, watch takes the lock, rolls the route back, removes its plan and exits 3.
--no-judge only shows. Keep a watch running for a hold or a bake that lasts (a CI job, a
scheduled task: docs/long-migrations.md).

Examples:
  migrate watch users
  migrate watch --every 10s > watch.log")]
    Watch(WatchArgs),
    /// Show the journal of changes (this machine's), optionally of one route.
    History(HistoryArgs),
    /// Compare the monolith's and the service's responses for a route.
    Verify(VerifyArgs),
    /// Notification sinks ([[notify]] in migrate.toml): `migrate notify test`.
    #[command(long_about = "\
Notifications go to the [[notify]] sinks of migrate.toml: webhooks (the event as JSON, or
Slack's {\"text\": ...} with format = \"slack\", signed with X-Ficus-Signature when
secret_env is set) and SNS topics. Events: shift.started, step.applied, gate.passed,
gate.failed, rollback.started, rollback.finished, lock.forced, drift.found (by status),
shift.held, shift.promoted, shift.aborted; schema ficus.event/v1 (docs/operations.md).
Each sink gets the events from its min_severity up (info, warning, critical; default info).
Delivery never blocks or fails a command: a failed delivery is printed, journaled and
counted by `migrate status`.

Example:
  migrate notify test        a notify.test event to every sink, whatever its min_severity;
                             one line per sink; exit 0 when all delivered, 1 when one failed")]
    Notify(NotifyArgs),
    /// Run the whole migration on this machine: local ALB, monolith, services, live traffic.
    #[command(long_about = "\
Start the local ALB (from the repo's stack file) in front of the monolith and the three
services on free ports, send steady client traffic through it (every answer compared with
the monolith's), and walk through init, status, verify --all, a gradual shift users, shift
threads, shift posts, rollback posts and status, showing live where each route's requests
go. Ends with a summary; exit 0 only if no request failed and no response differed.
Needs no migrate.toml: it writes its own for the stack. Stops everything it started.

Example: migrate demo --report demo.html")]
    Demo(DemoArgs),
    /// List the route's requests that the monolith served though they are the route's.
    #[command(long_about = "\
Read the ALB's access logs and list the requests that the monolith served although they
belong to the route by the monolith's own reading of the path ([routes.NAME.monolith_paths]
in migrate.toml: case_insensitive and trailing_slash on, repeated_slashes and
percent_decoding off by default, as the forum's router reads paths). A leak is such a
request that the rule's patterns miss (ALB path patterns are case-sensitive), or one that
arrived while the route was at 100% and another rule won. Leaks are grouped by spelling with
their count, share of the route's requests, the methods seen (GET, or DELETE ×1, POST ×2),
first and last time, a client, and the fix: the pattern to add (only characters AWS
accepts, a percent escape as ???; within AWS's 5 condition values and 5 wildcards per rule,
the rest listed as left out) or the rule that wins. A rule ficus does not manage that
forwards to the route's service (status's also: line) counts: a spelling it matches is
named as matched there, and it takes patterns the route's rule has no room for.

A request the monolith answered 404 (target_status_code, else elb_status_code) is not a
leak: the monolith's code for the route did not serve it, and a 404 is what the monolith
answers without that code too, so deleting the code changes no answer's status. Such
spellings (a scanner's /aPI/usersx) are listed apart (\"answered 404 by the monolith, not
leaks\"; answered_404 in JSON) and count nowhere else: not in the leaks, the exit code,
retire's refusal or the route's requests.

Logs: files (plain or .gz), directories (walked as AWS lays logs out), s3://BUCKET/PREFIX
(through the same AWS settings and endpoint as every other call).

Only the logs of the listener's load balancer count: a file named for another load
balancer, or a line whose `elb` field names another, is skipped and counted. A prefix is a
folder: s3://my-alb-logs/prod reads prod/..., never prod-staging/....

Exit codes: 0 no leaks (judged on at least one of the route's requests, with at most 1% of
the lines unreadable), 1 leaks found, 2 usage (--since 0 too), 4 the logs could not be read
(no log file of the load balancer under a source, no access-log entry of it in the files,
a .gz that is not gzip), 5 no evidence (no request of the route in the window: widen
--since or wait for traffic; or more than 1% of the lines not access-log entries). Leaks
found win over no evidence: exit 1, and the no-evidence sentence is printed below them.

Examples:
  migrate leaks users --from-alb-log s3://my-alb-logs/prod --since 7d
  migrate leaks users --from-alb-log ./AWSLogs --output json")]
    Leaks(LeaksArgs),
    /// The last step: the service alone serves the route, checked against the access logs.
    #[command(long_about = "\
Retire a route: it must be at 100% on its service (past its bake, where one is set) and
the access logs must show no leak over the window (--from-alb-log, --since; see
`migrate leaks`). It needs evidence: at least one request of the route in the window
that its service's target group served, and at most 1% of the lines unreadable, else it
refuses (exit 1). Leaks make it refuse,
listing them (exit 1); --accept-leaks --reason
overrides, and the journal records who and why. Below 100% it says how to get there
(`migrate promote ROUTE` when a shift holds it). Then the rule forwards to the service
alone, is tagged ficus:retired, and the change is journaled.

What it proves: no request of the route in the window reached the monolith. What it
cannot: the spellings nobody sent. When the monolith reads paths more loosely than the
ALB's case-sensitive patterns (`monolith_paths`, e.g. case-insensitive), it says which
spellings still reach the monolith (e.g. /Api/Users) and that its code for these paths can
go only with a 308 redirect to the spelling the patterns match (or a 404) left in its
place. `status` and `plan` say the same. A route already retired: said (since when, by
whom), nothing written, exit 0. `rollback ROUTE` of a retired route is refused without
--yes (exit 2), and `rollback --all` skips it.

Exit codes: 0 retired (or already retired), 1 refused (leaks, no request of the route on
its service in the window, or not at 100%), 2 usage, 4 lock held or logs unreadable (as
for `migrate leaks`). With --output json a refusal is one document with ok: false,
exit_code, error and route (for leaks also retired: false and the leak report).

Examples:
  migrate retire users --from-alb-log s3://my-alb-logs/prod --since 14d
  migrate retire users --from-alb-log ./logs --accept-leaks --reason \"bot traffic, ticket OPS-12\"")]
    Retire(RetireArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RetireArgs {
    /// The route, as named in migrate.toml (e.g. users).
    pub route: String,
    /// Access logs: a file (plain or gzip), a directory, or s3://BUCKET/PREFIX; repeatable.
    #[arg(long = "from-alb-log", value_name = "FILE|DIR|S3-URL", num_args = 1.., required = true)]
    pub from_alb_log: Vec<String>,
    /// Only requests of the last DURATION (e.g. 14d; not 0). Default: every request in the logs.
    #[arg(long, value_parser = parse_window, value_name = "DURATION", allow_hyphen_values = true)]
    pub since: Option<Duration>,
    /// Retire although the logs show leaks (needs --reason).
    #[arg(long, requires = "reason")]
    pub accept_leaks: bool,
    /// Why the leaks are accepted; journaled with who accepted them. Only
    /// with --accept-leaks; not blank.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LeaksArgs {
    /// The route, as named in migrate.toml (e.g. users).
    pub route: String,
    /// Access logs: a file (plain or gzip), a directory, or s3://BUCKET/PREFIX; repeatable.
    #[arg(long = "from-alb-log", value_name = "FILE|DIR|S3-URL", num_args = 1.., required = true)]
    pub from_alb_log: Vec<String>,
    /// Only requests of the last DURATION (e.g. 24h, 7d; not 0). Default: every request in the logs.
    #[arg(long, value_parser = parse_window, value_name = "DURATION", allow_hyphen_values = true)]
    pub since: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// When no rule is tagged ficus:role=monolith and the listener's default action
    /// forwards to the monolith: create a catch-all rule for it first.
    #[arg(long)]
    pub create_monolith_rule: bool,
    /// The created monolith rule's priority; it must be behind every other rule
    /// (default: the next multiple of 1000 above the highest rule, at least 1000).
    #[arg(long, value_name = "PRIORITY", requires = "create_monolith_rule",
          value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub monolith_priority: Option<u32>,
    /// Print the calls init would make, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Lock options shared by the commands that write.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// How long to wait for another operator's lock before exiting 4. The wait
    /// is said on stderr (who holds it, since when) and its length is
    /// `lock_waited_ms` in --output json.
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub wait: Duration,
    /// Remove another operator's lock first (when that operator is gone).
    #[arg(long)]
    pub force_unlock: bool,
    /// How long after taking the lock its tags are read again, before the first
    /// write: AWS documents no read-after-write consistency for tags, so a
    /// contender that was not visible yet is seen then (and we stop, exit 4).
    /// The gates before the first write run during it; `-v` says how long was
    /// left to wait.
    #[arg(long, value_parser = parse_duration, default_value = "500ms", value_name = "DURATION")]
    pub lock_settle: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this route.
    pub route: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The route to plan, as named in migrate.toml (e.g. users).
    pub route: String,
    /// The target percentage on the service: 0 plans a rollback.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PERCENT")]
    pub to: Option<u8>,
    /// Preview these steps instead of the route's `steps`, as `shift --steps`
    /// takes them: percentages, increasing, ending at 100, with `hold` where
    /// the shift would stop (e.g. 10,50,100).
    #[arg(long, value_delimiter = ',', value_name = "STEPS", value_parser = parse_step,
          conflicts_with = "to")]
    pub steps: Option<Vec<Step>>,
    /// Preview the weighted steps with this stickiness, as `shift --sticky`
    /// (e.g. 1h; 1s to 7d). Default: the route's `sticky`, else none.
    #[arg(long, value_parser = parse_sticky, value_name = "DURATION")]
    pub sticky: Option<Duration>,
    /// Also count, from these access logs (file, directory or s3://BUCKET/PREFIX),
    /// the route's requests the patterns would leave on the monolith (`migrate leaks`).
    #[arg(long = "from-alb-log", value_name = "FILE|DIR|S3-URL", num_args = 1..)]
    pub from_alb_log: Vec<String>,
    /// With --from-alb-log: only requests of the last DURATION (e.g. 7d), as
    /// `migrate leaks --since`. Default: every request in the logs.
    #[arg(long, value_parser = parse_window, value_name = "DURATION", allow_hyphen_values = true, requires = "from_alb_log")]
    pub since: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct ShiftArgs {
    /// The route to shift, as named in migrate.toml (e.g. users).
    pub route: String,
    /// Percentages, increasing, ending at 100, with `hold` where the shift stops
    /// until `migrate promote` (default: the route's `steps`, which default to [100]).
    #[arg(long, value_delimiter = ',', value_name = "STEPS", value_parser = parse_step,
          conflicts_with = "to")]
    pub steps: Option<Vec<Step>>,
    /// Move to this percentage and hold there (`migrate promote` continues with
    /// the route's steps above it); below the current share, step back down.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub to: Option<u8>,
    /// After 100%, keep the gates watching this long (e.g. 30m); a failed gate
    /// then rolls back (exit 3). Default: no bake.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub bake: Option<Duration>,
    /// Time between steps, probing the route (default: the route's `interval`);
    /// it starts once the step reached every node (`propagation_max` after its write).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Option<Duration>,
    /// Proceed while some of the service's targets are unhealthy (one healthy is still required).
    #[arg(long)]
    pub allow_unhealthy: bool,
    /// Skip the parity gate (`migrate verify` sample) before each step.
    #[arg(long)]
    pub skip_parity: bool,
    /// Keep each client on the side it was sent to for this long during the
    /// weighted steps (group-level stickiness, AWSALBTG cookie), e.g. 10m;
    /// 1s to 7d. Default: the route's `sticky`, else none. A rollback drops
    /// it: sticky clients go back to the monolith at their next request.
    #[arg(long, value_parser = parse_sticky, value_name = "DURATION")]
    pub sticky: Option<Duration>,
    /// Move the route's rule in front even though it would shadow other rules
    /// between its priority and the monolith's (they are named without this flag).
    #[arg(long)]
    pub allow_shadow: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// One item of a shift's step list: a percentage, or a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Percent(u8),
    /// Stop here until `migrate promote`.
    Hold,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Percent(percent) => write!(f, "{percent}"),
            Step::Hold => f.write_str("hold"),
        }
    }
}

/// `10` or `hold`.
pub fn parse_step(text: &str) -> Result<Step, String> {
    if text.trim().eq_ignore_ascii_case("hold") {
        return Ok(Step::Hold);
    }
    parse_percent(text)
        .map(Step::Percent)
        .map_err(|_| format!("`{text}` is neither a percentage from 1 to 100 nor `hold`"))
}

/// A percentage from 1 to 100.
fn parse_percent(text: &str) -> Result<u8, String> {
    match text.trim().parse::<u32>() {
        Ok(percent) if (1..=100).contains(&percent) => Ok(percent as u8),
        _ => Err(format!(
            "`{text}` is not a percentage from 1 to 100 (to go back to the monolith: `migrate abort` or `migrate rollback`)"
        )),
    }
}

/// The default header of a preview rule: `X-Ficus-Preview: <route>`.
pub const PREVIEW_HEADER: &str = "X-Ficus-Preview";

/// Arguments of `migrate preview`.
#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// The route to preview.
    pub route: String,
    /// Remove the route's preview rule.
    #[arg(long)]
    pub off: bool,
    /// The header that selects the preview, as `NAME: VALUE`
    /// (default: `X-Ficus-Preview: ROUTE`).
    #[arg(long, value_name = "NAME: VALUE", value_parser = parse_header, conflicts_with = "off")]
    pub header: Option<(String, String)>,
    /// The preview rule's priority, in front of the monolith's rule (default:
    /// the lowest free one that is no route's `priority`).
    #[arg(long, value_name = "PRIORITY", conflicts_with = "off",
          value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub priority: Option<u32>,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// `NAME: VALUE` (or `NAME=VALUE`) of an HTTP header.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .or_else(|| text.split_once('='))
        .ok_or_else(|| format!("`{text}` is not a header like `X-Ficus-Preview: users`"))?;
    let (name, value) = (name.trim(), value.trim());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) || value.is_empty() || value.len() > 128 {
        return Err(format!(
            "`{text}` is not a header like `X-Ficus-Preview: users` (a token name, a value of 1 to 128 characters)"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Arguments of `migrate watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Only this route (default: every route).
    pub route: Option<String>,
    /// Time between refreshes.
    #[arg(long, value_parser = parse_duration, default_value = "2s", value_name = "DURATION")]
    pub every: Duration,
    /// Only show: do not judge the health gate of holding or baking routes.
    #[arg(long)]
    pub no_judge: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Arguments of `migrate promote`.
#[derive(Debug, Clone, Args)]
pub struct PromoteArgs {
    /// The route whose plan continues.
    pub route: String,
    /// Proceed while some of the service's targets are unhealthy (one healthy is still required).
    #[arg(long)]
    pub allow_unhealthy: bool,
    /// Skip the parity gate (`migrate verify` sample) before each step.
    #[arg(long)]
    pub skip_parity: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Arguments of `migrate abort`.
#[derive(Debug, Clone, Args)]
pub struct AbortArgs {
    /// The route to return to the monolith.
    pub route: String,
    /// Why, for the journal and the rule's last-change tag.
    #[arg(long, default_value = "no reason given")]
    pub reason: String,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["route", "all"])))]
pub struct RollbackArgs {
    /// The route to roll back (or pass --all for every route).
    #[arg(conflicts_with = "all")]
    pub route: Option<String>,
    /// Roll back every route; retired routes are skipped with a line saying
    /// so, unless --yes.
    #[arg(long)]
    pub all: bool,
    /// Roll back a retired route too (`migrate retire`): the monolith may no
    /// longer serve its paths. Without it a retired route is refused (exit 2).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub action: NotifyAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum NotifyAction {
    /// Send a test event to every sink and report each result (exit 1 if one failed).
    Test,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only this route.
    pub route: Option<String>,
}

/// `--endpoint-url` is checked here, so a bad one is blamed on the flag (not
/// on `aws.endpoint_url` in migrate.toml, which it overrides).
fn parse_endpoint_url(text: &str) -> Result<String, String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not an http:// or https:// URL, e.g. http://127.0.0.1:9100"
        ))
    }
}

/// A stickiness duration: whole seconds from 1s to 7d.
fn parse_sticky(text: &str) -> Result<Duration, String> {
    crate::settings::check_sticky(parse_duration(text)?)
}

/// Every duration flag: `alb::duration`'s rule, as local-alb reads them.
fn parse_duration(text: &str) -> Result<Duration, String> {
    alb::duration::parse(text)
}

/// `--since`: the last DURATION of the access logs; zero is refused, as a
/// window with nothing in it.
/// A negative one (`-5m`) is refused with the fix; clap lets it through
/// (`allow_hyphen_values`) so that this message, not clap's "-- -5" tip, is
/// what the operator reads.
fn parse_window(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "`{text}` is negative: --since takes a positive duration such as 24h (the last 24 hours of the logs)"
        ));
    }
    let window = parse_duration(text)?;
    if window.is_zero() {
        return Err(format!(
            "`{text}` is an empty window: give the last DURATION to judge, e.g. 7d, or leave --since out to judge every request in the logs"
        ));
    }
    Ok(window)
}

/// Arguments of `migrate verify`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("routes").required(true).args(["route", "all"])))]
#[command(after_help = VERIFY_EXIT_CODES)]
pub struct VerifyArgs {
    /// The route to verify (see `migrate status` for the known routes).
    pub route: Option<String>,
    /// Verify every route.
    #[arg(long)]
    pub all: bool,
    /// The baseline's base URL (default: `[monolith] base_url`).
    #[arg(long, value_name = "URL")]
    pub baseline: Option<String>,
    /// Where the second, noise-cancelling baseline request goes (default: the baseline).
    #[arg(long = "baseline-2", value_name = "URL")]
    pub baseline_2: Option<String>,
    /// The candidate's base URL: `URL` for every route, or `ROUTE=URL` for one
    /// (repeatable; default: the route's `service_url`).
    #[arg(long, value_name = "[ROUTE=]URL")]
    pub candidate: Vec<String>,
    /// Replay a corpus file (one `METHOD /path` per line) instead of the
    /// route's configured requests; only paths matching the route's patterns.
    #[arg(long, value_name = "FILE")]
    pub corpus: Vec<PathBuf>,
    /// Replay ALB access logs instead of the route's configured requests; only
    /// paths matching the route's patterns, and only the load balancer's of
    /// `[listener]` (others' files and lines are skipped, and counted). Files
    /// (plain or gzip), directories in AWS's layout, or S3, e.g.
    /// `--from-alb-log s3://my-alb-logs/prod` (the folder prod/).
    #[arg(long = "from-alb-log", value_name = "FILE|DIR|s3://BUCKET/PREFIX", num_args = 1..)]
    pub from_alb_log: Vec<String>,
    /// Replay methods other than GET and HEAD from ALB logs too.
    #[arg(long)]
    pub allow_unsafe: bool,
    /// Requests compared at once (each sends three HTTP requests).
    #[arg(long, default_value_t = parity::DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,
    /// Timeout of each HTTP request, e.g. `10s` or `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also write the reports as JSON to FILE (`-`: stdout, the text report
    /// then goes to stderr; `--output json` does the same).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write JUnit XML to FILE (one test case per endpoint template; `-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Record the baseline's answers to FILE instead of comparing: each request
    /// of the route(s) twice, to the baseline only (no candidate needed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recorded", "candidate", "json", "junit", "summary"])]
    pub record: Option<PathBuf>,
    /// Compare the candidate against the answers recorded in FILE (by
    /// `--record`) instead of a live baseline, which is not contacted.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["baseline", "baseline_2"])]
    pub recorded: Option<PathBuf>,
    /// Compare through the load balancer (`lb_url`): each request without the
    /// preview header (today's routing) is the baseline, the same with it (the
    /// service, through `migrate preview`'s rule) the candidate.
    #[arg(long, conflicts_with_all = ["baseline", "baseline_2", "candidate", "record", "recorded"])]
    pub through_lb: bool,
    /// The preview header for --through-lb, as `NAME: VALUE` (default:
    /// `X-Ficus-Preview: ROUTE`).
    #[arg(long, value_name = "NAME: VALUE", value_parser = parse_header, requires = "through_lb")]
    pub preview_header: Option<(String, String)>,
    /// Append a GitHub-flavoured Markdown summary to FILE (a table per route,
    /// the first differences; under 512 KiB), e.g. `--summary "$GITHUB_STEP_SUMMARY"`.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}

/// How `migrate verify` ends (documented in `--help` and docs/parity.md):
/// 0 every request matched, 1 an answer differed, 2 usage or configuration
/// error, 5 the check could not run (requests got no answer, nothing differed).
const VERIFY_EXIT_CODES: &str = "Exit codes: 0 every request matched; 1 the candidate answered differently \
(a difference was found); 2 usage or configuration error (nothing was sent); 4 the access \
logs of --from-alb-log could not be read (as in `migrate leaks` and `plan`: no log file of the \
load balancer under a source, only other load balancers' lines, no line an access-log entry, a \
file that cannot be read or decompressed); 5 the check could not run: requests got no answer \
from a side (unreachable, timeouts) and nothing differed, or the logs of --from-alb-log hold no \
request for the routes' paths (no route had requests to verify: nothing was judged, as `migrate \
leaks` without evidence). With --output json a failure prints {\"ok\": false, \"passed\": false, \
\"exit_code\", \"error\", \"route\"}.";

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(concurrency) if (1..=10_000).contains(&concurrency) => Ok(concurrency),
        _ => Err(format!(
            "`{text}` is not a number of requests from 1 to 10000"
        )),
    }
}

/// Arguments of `migrate demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The steps of the gradual `shift users`, in percent.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,50,100",
        value_name = "PERCENTS"
    )]
    pub steps: Vec<u8>,
    /// Time between the steps of `shift users` (the route is probed meanwhile).
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Pause after each walkthrough step, so that each state shows in the traffic.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub pause: Duration,
    /// Client requests per second through the load balancer, in total.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// Also write a self-contained HTML page with a chart of each route's
    /// traffic share over time, a marker per step, and the summary.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Leave the stack up afterwards, print how to drive it by hand, and stop
    /// it on Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Where the monolith, users, threads, posts and local-alb binaries are
    /// (default: beside this migrate).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}
