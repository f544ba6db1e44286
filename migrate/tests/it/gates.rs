//! Metric gates (issue 15): bad settings exit 2 naming the key; on the local
//! stack, with client traffic through the load balancer, a faulty or slow
//! service fails its gate and is rolled back (exit 3), a route without
//! traffic is inconclusive and never passes, a healthy one passes.

use crate::support::*;

const BASE: &str = r#"
[aws]
endpoint_url = "http://127.0.0.1:1"
region = "us-east-1"
[listener]
load_balancer = "ficus-local"
port = 80
[routes.users]
paths = ["/api/users*"]
target_group = "users"
"#;

/// `history` loads and validates the settings and calls no AWS API.
fn history_with(extra: &str) -> Run {
    let op = Operator::new(&format!("{BASE}{extra}"), vec![]);
    op.run(&["history"])
}

#[test]
fn bad_metric_settings_exit_2_naming_the_key() {
    let ok = history_with("[metrics]\nperiod = \"1s\"\n[routes.users.metrics]\nmin_requests = 5\n");
    assert_eq!(ok.code, 0, "{ok}");
    for (extra, named) in [
        (
            "[routes.users.metrics]\nerror_budgt = 0.02\n",
            "error_budgt",
        ),
        ("[metrics]\nthreshold = 1\n", "threshold"),
        (
            "[metrics]\nperiod = \"7s\"\n",
            "`metrics.period`: 7s is not a CloudWatch period",
        ),
        (
            "[routes.users.metrics]\nperiod = \"90s\"\n",
            "`routes.users.metrics.period`",
        ),
        (
            "[metrics]\nmin_requests = 0\n",
            "`metrics.min_requests`: 0 would let a step pass on no data",
        ),
        (
            "[routes.users.metrics]\nerror_budget = 5\n",
            "`routes.users.metrics.error_budget`: 5 is not a ratio",
        ),
        (
            "[metrics]\nlatency_ratio = 0.5\n",
            "`metrics.latency_ratio`",
        ),
        (
            "[metrics]\non_inconclusive = \"pass\"\n",
            "`pass` is not supported; use \"fail\"",
        ),
        (
            "[metrics]\nmax_wait = \"soon\"\n",
            "`soon` is not a duration",
        ),
    ] {
        let run = history_with(extra);
        assert_eq!(run.code, 2, "{extra}: {run}");
        assert!(run.stderr.contains(named), "{extra}: {run}");
        assert!(run.stderr.contains("migrate.toml"), "{extra}: {run}");
    }
}
