//! A rule's conditions, and the two questions `migrate` asks of two rules:
//! does one match every request the other matches ([`Conditions::gaps_covering`]),
//! and can both match the same request ([`Conditions::overlaps`])?
//!
//! ALB semantics: the conditions of a rule are ANDed, the values of one
//! condition ORed. A rule has at most one `path-pattern`, `host-header`,
//! `http-request-method` and `source-ip` condition, and any number of
//! `http-header` and `query-string` conditions. Paths and methods compare
//! case-sensitively; hosts, header values and query keys and values do not.
//! A request carries one path, host, method and source address, but may carry
//! a header or query parameter several times, so header and query conditions
//! never make two rules disjoint.

use serde::Serialize;

use crate::cidr::Cidr;
use crate::glob::{Pattern, Syntax, is_covered, overlaps};

/// An `http-header` condition: the header (name compared case-insensitively)
/// has a value matching one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderCondition {
    pub name: String,
    pub values: Vec<String>,
}

/// One key/value pair of a `query-string` condition (no key: any key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryPair {
    pub key: Option<String>,
    pub value: String,
}

/// A rule's conditions; an empty list means the rule has no such condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Conditions {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderCondition>,
    /// Each inner list is one `query-string` condition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<Vec<QueryPair>>,
}

/// A condition of the covering rule that the covered rule does not imply:
/// requests exist that the covered rule matches and the covering one doesn't.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The covering rule's condition, as AWS names it (`host-header`, ...).
    pub field: &'static str,
    /// The condition, for people: `host-header api.shop.example`.
    pub condition: String,
    /// What of the covered rule escapes it.
    pub escapes: String,
    /// Whether copying the condition into the covered rule closes the gap
    /// (false when the covered rule already has a different condition of a
    /// kind a rule may hold only once, and for paths).
    pub copyable: bool,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.condition, self.escapes)
    }
}

impl Conditions {
    /// Path patterns only.
    pub fn paths(paths: impl IntoIterator<Item = String>) -> Conditions {
        Conditions {
            paths: paths.into_iter().collect(),
            ..Conditions::default()
        }
    }

    /// The same conditions in a canonical order (values and conditions
    /// sorted), for comparing what was written with what is read back.
    pub fn normalized(&self) -> Conditions {
        let mut c = self.clone();
        for values in [
            &mut c.paths,
            &mut c.hosts,
            &mut c.methods,
            &mut c.source_ips,
        ] {
            values.sort();
        }
        for header in &mut c.headers {
            header.name.make_ascii_lowercase();
            header.values.sort();
        }
        c.headers
            .sort_by(|a, b| (&a.name, &a.values).cmp(&(&b.name, &b.values)));
        for query in &mut c.queries {
            query.sort_by(|a, b| (&a.key, &a.value).cmp(&(&b.key, &b.value)));
        }
        c.queries.sort_by_key(|q| format!("{q:?}"));
        c
    }

    /// One line for people: `path-pattern /api* AND host-header api.example`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let list = |values: &[String]| values.join(",");
        if !self.paths.is_empty() {
            parts.push(format!("path-pattern {}", list(&self.paths)));
        }
        if !self.hosts.is_empty() {
            parts.push(format!("host-header {}", list(&self.hosts)));
        }
        if !self.methods.is_empty() {
            parts.push(format!("http-request-method {}", list(&self.methods)));
        }
        if !self.source_ips.is_empty() {
            parts.push(format!("source-ip {}", list(&self.source_ips)));
        }
        for header in &self.headers {
            parts.push(describe_header(header));
        }
        for query in &self.queries {
            parts.push(describe_query(query));
        }
        if parts.is_empty() {
            "no conditions".to_owned()
        } else {
            parts.join(" AND ")
        }
    }

    /// The number of condition values, all conditions together (AWS's quota
    /// is [`crate::MAX_CONDITION_VALUES`]).
    pub fn value_count(&self) -> usize {
        self.paths.len()
            + self.hosts.len()
            + self.methods.len()
            + self.source_ips.len()
            + self.headers.iter().map(|h| h.values.len()).sum::<usize>()
            + self.queries.iter().map(Vec::len).sum::<usize>()
    }

    /// The number of `*` and `?` wildcards (AWS's quota is [`crate::MAX_WILDCARDS`]).
    pub fn wildcard_count(&self) -> usize {
        let count = |values: &[String], syntax| -> usize {
            values
                .iter()
                .map(|v| Pattern::new(v, syntax).wildcards())
                .sum()
        };
        count(&self.paths, Syntax::CaseSensitive)
            + count(&self.hosts, Syntax::CaseInsensitive)
            + self
                .headers
                .iter()
                .map(|h| count(&h.values, Syntax::CaseInsensitive))
                .sum::<usize>()
            + self
                .queries
                .iter()
                .flatten()
                .map(|pair| {
                    pair.key.iter().chain([&pair.value]).fold(0, |n, text| {
                        n + Pattern::new(text, Syntax::CaseInsensitiveEscaped).wildcards()
                    })
                })
                .sum::<usize>()
    }

    /// The conditions of `self` that `inner` does not imply. Empty: every
    /// request that `inner` matches, `self` matches too.
    pub fn gaps_covering(&self, inner: &Conditions) -> Vec<Gap> {
        let mut gaps = Vec::new();
        if !self.paths.is_empty() {
            let escapes = globs_escaping(&inner.paths, &self.paths, Syntax::CaseSensitive);
            if let Some(escapes) = escapes {
                gaps.push(Gap {
                    field: "path-pattern",
                    condition: format!("path-pattern {}", self.paths.join(",")),
                    escapes: format!("paths {escapes} are outside it"),
                    copyable: false,
                });
            }
        }
        if !self.hosts.is_empty()
            && let Some(escapes) =
                globs_escaping(&inner.hosts, &self.hosts, Syntax::CaseInsensitive)
        {
            gaps.push(Gap {
                field: "host-header",
                condition: format!("host-header {}", self.hosts.join(",")),
                escapes: format!("hosts {escapes} are outside it"),
                copyable: inner.hosts.is_empty(),
            });
        }
        if !self.methods.is_empty() {
            let outside: Vec<&String> = inner
                .methods
                .iter()
                .filter(|m| !self.methods.contains(m))
                .collect();
            if inner.methods.is_empty() || !outside.is_empty() {
                gaps.push(Gap {
                    field: "http-request-method",
                    condition: format!("http-request-method {}", self.methods.join(",")),
                    escapes: if inner.methods.is_empty() {
                        "other methods are outside it".to_owned()
                    } else {
                        format!("methods {outside:?} are outside it")
                    },
                    copyable: inner.methods.is_empty(),
                });
            }
        }
        if !self.source_ips.is_empty() {
            let outer: Vec<Option<Cidr>> = self
                .source_ips
                .iter()
                .map(|c| Cidr::parse(c).ok())
                .collect();
            let outside: Vec<&String> = inner
                .source_ips
                .iter()
                .filter(|c| match Cidr::parse(c) {
                    Ok(block) => !outer.iter().flatten().any(|o| o.contains(&block)),
                    Err(_) => true,
                })
                .collect();
            if inner.source_ips.is_empty() || !outside.is_empty() {
                gaps.push(Gap {
                    field: "source-ip",
                    condition: format!("source-ip {}", self.source_ips.join(",")),
                    escapes: if inner.source_ips.is_empty() {
                        "other source addresses are outside it".to_owned()
                    } else {
                        format!("source addresses {outside:?} are outside it")
                    },
                    copyable: inner.source_ips.is_empty(),
                });
            }
        }
        for header in &self.headers {
            let implied = inner.headers.iter().any(|own| {
                own.name.eq_ignore_ascii_case(&header.name)
                    && globs_escaping(&own.values, &header.values, Syntax::CaseInsensitive)
                        .is_none()
            });
            if !implied {
                gaps.push(Gap {
                    field: "http-header",
                    condition: describe_header(header),
                    escapes: format!("requests without such a {} header", header.name),
                    copyable: true,
                });
            }
        }
        for query in &self.queries {
            let implied = inner.queries.iter().any(|own| {
                own.iter()
                    .all(|pair| query.iter().any(|q| implies(pair, q)))
            });
            if !implied {
                gaps.push(Gap {
                    field: "query-string",
                    condition: describe_query(query),
                    escapes: "requests without such a query parameter".to_owned(),
                    copyable: true,
                });
            }
        }
        gaps
    }

    /// `self` narrowed so that `outer` covers it: each of `outer`'s conditions
    /// that `self` does not imply is copied in. Refused, naming the condition,
    /// when a gap can't be closed by copying or the result would break AWS's
    /// quotas. Narrowing never widens: the result matches a subset of what
    /// `self` matches.
    pub fn narrowed_into(&self, outer: &Conditions) -> Result<Conditions, String> {
        let gaps = outer.gaps_covering(self);
        if let Some(gap) = gaps.iter().find(|g| !g.copyable) {
            return Err(format!(
                "the condition {} of the rule in front does not cover it: {}",
                gap.condition, gap.escapes
            ));
        }
        let mut narrowed = self.clone();
        for gap in &gaps {
            match gap.field {
                "host-header" => narrowed.hosts = outer.hosts.clone(),
                "http-request-method" => narrowed.methods = outer.methods.clone(),
                "source-ip" => narrowed.source_ips = outer.source_ips.clone(),
                _ => {}
            }
        }
        for header in &outer.headers {
            let gap = gaps
                .iter()
                .any(|g| g.field == "http-header" && g.condition == describe_header(header));
            if gap {
                narrowed.headers.push(header.clone());
            }
        }
        for query in &outer.queries {
            let gap = gaps
                .iter()
                .any(|g| g.field == "query-string" && g.condition == describe_query(query));
            if gap {
                narrowed.queries.push(query.clone());
            }
        }
        if narrowed.value_count() > crate::MAX_CONDITION_VALUES {
            return Err(format!(
                "with the conditions of the rule in front copied in ({}), the rule would have {} condition values; AWS allows {}",
                narrowed.describe(),
                narrowed.value_count(),
                crate::MAX_CONDITION_VALUES
            ));
        }
        if narrowed.wildcard_count() > crate::MAX_WILDCARDS {
            return Err(format!(
                "with the conditions of the rule in front copied in ({}), the rule would have {} wildcards; AWS allows {}",
                narrowed.describe(),
                narrowed.wildcard_count(),
                crate::MAX_WILDCARDS
            ));
        }
        Ok(narrowed)
    }

    /// Whether some request can match both rules.
    pub fn overlaps(&self, other: &Conditions) -> bool {
        let globs = |a: &[String], b: &[String], syntax| {
            a.is_empty()
                || b.is_empty()
                || a.iter().any(|x| {
                    let x = Pattern::new(x, syntax);
                    b.iter().any(|y| overlaps(&x, &Pattern::new(y, syntax)))
                })
        };
        let methods = self.methods.is_empty()
            || other.methods.is_empty()
            || self.methods.iter().any(|m| other.methods.contains(m));
        let sources = self.source_ips.is_empty()
            || other.source_ips.is_empty()
            || self.source_ips.iter().any(|a| {
                other
                    .source_ips
                    .iter()
                    .any(|b| match (Cidr::parse(a), Cidr::parse(b)) {
                        (Ok(a), Ok(b)) => a.overlaps(&b),
                        _ => true,
                    })
            });
        globs(&self.paths, &other.paths, Syntax::CaseSensitive)
            && globs(&self.hosts, &other.hosts, Syntax::CaseInsensitive)
            && methods
            && sources
    }
}

/// The inner patterns that the outer ones do not cover, listed; `None` when
/// covered. An empty inner list (no condition) matches everything.
fn globs_escaping(inner: &[String], outer: &[String], syntax: Syntax) -> Option<String> {
    let outer: Vec<Pattern> = outer.iter().map(|o| Pattern::new(o, syntax)).collect();
    if inner.is_empty() {
        let everything = Pattern::new("*", syntax);
        return (!is_covered(&everything, &outer)).then(|| "other than these".to_owned());
    }
    let escaping: Vec<&String> = inner
        .iter()
        .filter(|p| !is_covered(&Pattern::new(p, syntax), &outer))
        .collect();
    (!escaping.is_empty()).then(|| format!("{escaping:?}"))
}

/// Whether a request matching `inner` always matches `outer`.
fn implies(inner: &QueryPair, outer: &QueryPair) -> bool {
    let glob = |text: &str| Pattern::new(text, Syntax::CaseInsensitiveEscaped);
    let key = match (&inner.key, &outer.key) {
        (_, None) => true,
        (Some(own), Some(theirs)) => is_covered(&glob(own), &[glob(theirs)]),
        (None, Some(_)) => false,
    };
    key && is_covered(&glob(&inner.value), &[glob(&outer.value)])
}

fn describe_header(header: &HeaderCondition) -> String {
    format!("http-header {}: {}", header.name, header.values.join(","))
}

fn describe_query(query: &[QueryPair]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|p| match &p.key {
            Some(key) => format!("{key}={}", p.value),
            None => p.value.clone(),
        })
        .collect();
    format!("query-string {}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(paths: &[&str], hosts: &[&str]) -> Conditions {
        Conditions {
            paths: paths.iter().map(|s| s.to_string()).collect(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..Conditions::default()
        }
    }

    #[test]
    fn a_host_on_the_monolith_rule_is_a_gap_until_copied() {
        let monolith = rule(&["/api*"], &["api.shop.example"]);
        let route = rule(&["/api/orders*"], &[]);
        let gaps = monolith.gaps_covering(&route);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].field, "host-header");
        assert!(gaps[0].copyable);
        let narrowed = route.narrowed_into(&monolith).unwrap();
        assert_eq!(narrowed.hosts, vec!["api.shop.example"]);
        assert!(monolith.gaps_covering(&narrowed).is_empty());
        // A route with a host of its own inside the monolith's hosts is covered.
        let wild = rule(&["/api*"], &["*.shop.example"]);
        assert!(
            wild.gaps_covering(&rule(&["/api/x*"], &["EU.shop.example"]))
                .is_empty()
        );
        // One outside them can't be fixed by copying: a rule has one host condition.
        let other = rule(&["/api/x*"], &["admin.other.example"]);
        let gaps = wild.gaps_covering(&other);
        assert!(!gaps[0].copyable);
        assert!(
            other
                .narrowed_into(&wild)
                .unwrap_err()
                .contains("host-header")
        );
    }

    #[test]
    fn paths_outside_the_monolith_rule_are_refused() {
        let monolith = rule(&["/api*"], &[]);
        let err = rule(&["/v2/orders*"], &[])
            .narrowed_into(&monolith)
            .unwrap_err();
        assert!(err.contains("/v2/orders*"), "{err}");
        assert!(monolith.gaps_covering(&rule(&[], &[])).len() == 1);
    }

    #[test]
    fn every_condition_kind_is_compared() {
        let monolith = Conditions {
            paths: vec!["/api*".into()],
            methods: vec!["GET".into()],
            source_ips: vec!["10.0.0.0/8".into()],
            headers: vec![HeaderCondition {
                name: "X-Tenant".into(),
                values: vec!["shop-*".into()],
            }],
            queries: vec![vec![QueryPair {
                key: Some("v".into()),
                value: "2".into(),
            }]],
            ..Conditions::default()
        };
        let route = rule(&["/api/users*"], &[]);
        let fields: Vec<&str> = monolith
            .gaps_covering(&route)
            .iter()
            .map(|g| g.field)
            .collect();
        assert_eq!(
            fields,
            [
                "http-request-method",
                "source-ip",
                "http-header",
                "query-string"
            ]
        );
        let narrowed = route.narrowed_into(&monolith).unwrap();
        assert!(monolith.gaps_covering(&narrowed).is_empty());
        assert_eq!(narrowed.value_count(), 5);
        // Implied by narrower conditions of the route's own.
        let own = Conditions {
            paths: vec!["/api/users*".into()],
            methods: vec!["GET".into()],
            source_ips: vec!["10.1.0.0/16".into()],
            headers: vec![HeaderCondition {
                name: "x-tenant".into(),
                values: vec!["SHOP-eu".into()],
            }],
            queries: vec![vec![QueryPair {
                key: Some("V".into()),
                value: "2".into(),
            }]],
            ..Conditions::default()
        };
        assert!(monolith.gaps_covering(&own).is_empty());
    }

    #[test]
    fn quotas_refuse_a_narrowing_that_aws_would_refuse() {
        let monolith = rule(&["/api*"], &["a.example", "b.example", "c.example"]);
        let route = rule(&["/api/users*", "/api/people*", "/api/staff*"], &[]);
        let err = route.narrowed_into(&monolith).unwrap_err();
        assert!(err.contains("5"), "{err}");
    }

    #[test]
    fn overlap_needs_every_single_valued_field_to_meet() {
        let orders = rule(&["/api/orders*"], &[]);
        let export = rule(&["/api/orders/export*"], &[]);
        assert!(orders.overlaps(&export));
        assert!(!orders.overlaps(&rule(&["/api/users*"], &[])));
        let hosted = rule(&["/api/orders/export*"], &["admin.example"]);
        assert!(orders.overlaps(&hosted));
        assert!(!rule(&["/api*"], &["api.example"]).overlaps(&hosted));
        let get = Conditions {
            methods: vec!["GET".into()],
            ..orders.clone()
        };
        let post = Conditions {
            methods: vec!["POST".into()],
            ..export.clone()
        };
        assert!(!get.overlaps(&post));
    }
}
