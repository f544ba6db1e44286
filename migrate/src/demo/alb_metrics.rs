//! Where the load balancer sent requests, from the local ALB's `/metrics`:
//! `ficus_alb_requests_total{target_group,rule,code_class}` counters.
//!
//! A route's requests reach its service's target group only through the
//! route's own rule; they reach the monolith's target group through that rule
//! (a weighted forward) or, while the rule is parked behind the monolith's
//! rule, through the monolith's rule. So between two scrapes, a route's
//! service share is `service / (service + monolith via the rules that also fed
//! the service)`, and 0 when its service got nothing.

use std::collections::BTreeMap;

use alb::metrics;

/// Request counters by (target group, rule priority label).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub requests: BTreeMap<(String, String), u64>,
    /// Responses the load balancer generated itself (502, 503, 504).
    pub elb_errors: u64,
    /// The same, by `code reason`, e.g. `502 target_connection_error`.
    pub elb_errors_by_reason: BTreeMap<String, u64>,
    /// Routing tables compiled so far: it grows with each change of the rules.
    pub generation: u64,
}

impl Counters {
    /// Parses the `/metrics` text with [`alb::metrics`]; other series are
    /// ignored.
    pub fn parse(text: &str) -> Counters {
        let samples = metrics::parse(text);
        let elb_errors_by_reason = metrics::elb_errors_by_reason(&samples);
        Counters {
            requests: metrics::requests_by_target_group_and_rule(&samples),
            elb_errors: elb_errors_by_reason.values().sum(),
            elb_errors_by_reason,
            generation: metrics::single(&samples, metrics::RULE_TABLE_GENERATION).unwrap_or(0),
        }
    }

    /// What happened since `earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let requests = self
            .requests
            .iter()
            .map(|(key, count)| {
                let before = earlier.requests.get(key).copied().unwrap_or(0);
                (key.clone(), count.saturating_sub(before))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        Counters {
            requests,
            elb_errors: self.elb_errors.saturating_sub(earlier.elb_errors),
            elb_errors_by_reason: self
                .elb_errors_by_reason
                .iter()
                .map(|(reason, count)| {
                    let before = earlier
                        .elb_errors_by_reason
                        .get(reason)
                        .copied()
                        .unwrap_or(0);
                    (reason.clone(), count.saturating_sub(before))
                })
                .filter(|(_, count)| *count > 0)
                .collect(),
            generation: self.generation.saturating_sub(earlier.generation),
        }
    }

    /// Requests sent to a target group, by any rule.
    pub fn to_group(&self, group: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|(_, count)| count)
            .sum()
    }

    /// Of the requests matched by the route's rule (see the module's doc): how
    /// many went to its service and how many to the monolith.
    pub fn route_split(&self, service_group: &str, monolith_group: &str) -> (u64, u64) {
        let service = self.to_group(service_group);
        let monolith = self
            .requests
            .iter()
            .filter(|((g, _), count)| g == service_group && **count > 0)
            .map(|((_, rule), _)| {
                self.requests
                    .get(&(monolith_group.to_owned(), rule.clone()))
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        (service, monolith)
    }

    /// The share of the route's requests its service answered, from 0 to 1.
    pub fn service_share(&self, service_group: &str, monolith_group: &str) -> f64 {
        match self.route_split(service_group, monolith_group) {
            (0, _) => 0.0,
            (service, monolith) => service as f64 / (service + monolith) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local ALB's real rendering (its unit test pins it).
    const SCRAPE: &str = alb::metrics::EXAMPLE_SCRAPE;

    #[test]
    fn parses_request_counters_by_group_and_rule_summing_status_classes() {
        let counters = Counters::parse(SCRAPE);
        assert_eq!(
            counters.requests[&("monolith".to_owned(), "99".to_owned())],
            800
        );
        assert_eq!(counters.to_group("monolith"), 895);
        assert_eq!(counters.elb_errors, 2);
        assert_eq!(counters.generation, 7);
        assert_eq!(
            counters.elb_errors_by_reason,
            BTreeMap::from([
                ("460 client_closed".to_owned(), 0),
                ("502 target_connection_error".to_owned(), 0),
                ("502 target_connection_failed".to_owned(), 2),
                ("503 no_listener".to_owned(), 0),
                ("503 no_registered_targets".to_owned(), 0),
                ("504 target_timeout".to_owned(), 0),
            ])
        );
    }

    #[test]
    fn a_route_share_counts_the_monolith_only_through_the_route_rule() {
        let counters = Counters::parse(SCRAPE);
        assert_eq!(counters.route_split("users", "monolith"), (10, 90));
        assert!((counters.service_share("users", "monolith") - 0.1).abs() < 1e-9);
        assert!((counters.service_share("threads", "monolith") - 1.0).abs() < 1e-9);
        assert_eq!(counters.service_share("posts", "monolith"), 0.0);
    }

    #[test]
    fn deltas_since_an_earlier_scrape() {
        let earlier = Counters::parse(SCRAPE);
        let later = Counters::parse(
            &SCRAPE
                .replace("} 10\n", "} 30\n")
                .replace("} 90\n", "} 110\n"),
        );
        let delta = later.since(&earlier);
        assert_eq!(delta.route_split("users", "monolith"), (20, 20));
        assert_eq!(delta.to_group("threads"), 0);
    }
}
