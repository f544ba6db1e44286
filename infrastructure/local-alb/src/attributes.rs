//! Load balancer and target group attributes by key, as the ELBv2 API names
//! them: the one place that knows each key's range and default (AWS's, from
//! the `LoadBalancerAttribute` and `TargetGroupAttribute` reference), shared by
//! the control API (`Modify*Attributes`, `Describe*Attributes`) and the stack
//! file (`attributes = { "key" = "value" }`).
//!
//! Pure: no I/O. The typed values live in `model`; the keys that are stored
//! and returned but change nothing locally are listed in [`LB_PASSIVE`] and
//! [`TG_PASSIVE`].

use std::time::Duration;

use crate::model::{
    DesyncMitigationMode, LoadBalancerAttributes, LoadBalancingAlgorithm, TargetGroupAttributes,
    XffHeaderProcessingMode,
};

/// What the attributes left at `None` stand for: the process-wide defaults
/// (`--client-idle-timeout`, `--deregistration-delay` and their `LOCAL_ALB_*`
/// variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDefaults {
    pub idle_timeout: Duration,
    pub deregistration_delay: Duration,
}

/// Most attributes one `Modify*Attributes` call may carry (AWS's limit).
pub const MAX_ATTRIBUTES_PER_CALL: usize = 20;

/// Why a key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeError {
    /// AWS answers `ValidationError`.
    UnknownKey { key: String, of: &'static str },
    /// AWS answers `InvalidConfigurationRequest`.
    InvalidValue { key: String, message: String },
}

impl AttributeError {
    pub fn message(&self) -> String {
        match self {
            AttributeError::UnknownKey { key, of } => {
                format!("{of} attribute key '{key}' is not recognized")
            }
            AttributeError::InvalidValue { key, message } => format!("{key}: {message}"),
        }
    }

    fn invalid(key: &str, message: impl Into<String>) -> AttributeError {
        AttributeError::InvalidValue {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// How a passive key's value is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Text,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A whole number in this range, or also `off`.
    Number(u32, u32, bool),
    /// Only this value (AWS: "can't be changed").
    Fixed(&'static str),
}

/// Load balancer keys stored and returned, with AWS's defaults, that change
/// nothing locally.
const LB_PASSIVE: &[(&str, &str, Kind)] = &[
    (
        "load_balancing.cross_zone.enabled",
        "true",
        Kind::Fixed("true"),
    ),
    ("zonal_shift.config.enabled", "false", Kind::Bool),
    ("connection_logs.s3.enabled", "false", Kind::Bool),
    ("connection_logs.s3.bucket", "", Kind::Text),
    ("connection_logs.s3.prefix", "", Kind::Text),
    ("health_check_logs.s3.enabled", "false", Kind::Bool),
    ("health_check_logs.s3.bucket", "", Kind::Text),
    ("health_check_logs.s3.prefix", "", Kind::Text),
    (
        "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
        "false",
        Kind::Bool,
    ),
    ("routing.http.xff_client_port.enabled", "false", Kind::Bool),
    ("waf.fail_open.enabled", "false", Kind::Bool),
];

/// Target group keys (for an ALB's instance or ip target group) stored and
/// returned, with AWS's defaults, that change nothing locally.
const TG_PASSIVE: &[(&str, &str, Kind)] = &[
    ("stickiness.app_cookie.cookie_name", "", Kind::Text),
    (
        "stickiness.app_cookie.duration_seconds",
        "86400",
        Kind::Number(1, 604_800, false),
    ),
    (
        "load_balancing.algorithm.anomaly_mitigation",
        "off",
        Kind::Choice(&["on", "off"]),
    ),
    (
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Kind::Choice(&["true", "false", "use_load_balancer_configuration"]),
    ),
    (
        "target_group_health.dns_failover.minimum_healthy_targets.count",
        "1",
        Kind::Number(1, 1000, true),
    ),
    (
        "target_group_health.dns_failover.minimum_healthy_targets.percentage",
        "off",
        Kind::Number(1, 100, true),
    ),
    (
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
        "1",
        Kind::Number(1, 1000, false),
    ),
    (
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
        "off",
        Kind::Number(1, 100, true),
    ),
];

fn boolean(key: &str, value: &str) -> Result<bool, AttributeError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(AttributeError::invalid(
            key,
            format!("'{value}' is not valid: use true or false"),
        )),
    }
}

fn number(key: &str, value: &str, low: u32, high: u32) -> Result<u32, AttributeError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| {
            AttributeError::invalid(
                key,
                format!("'{value}' is not valid: use a whole number from {low} to {high}"),
            )
        })
}

fn choice<'c>(key: &str, value: &str, choices: &[&'c str]) -> Result<&'c str, AttributeError> {
    choices
        .iter()
        .find(|c| **c == value)
        .copied()
        .ok_or_else(|| {
            AttributeError::invalid(
                key,
                format!("'{value}' is not valid: use one of {}", choices.join(", ")),
            )
        })
}

fn check_passive(key: &str, value: &str, kind: Kind) -> Result<(), AttributeError> {
    match kind {
        Kind::Bool => boolean(key, value).map(drop),
        Kind::Text => Ok(()),
        Kind::Choice(choices) => choice(key, value, choices).map(drop),
        Kind::Number(_, _, true) if value == "off" => Ok(()),
        Kind::Number(low, high, _) => number(key, value, low, high).map(drop),
        Kind::Fixed(only) if value == only => Ok(()),
        Kind::Fixed(only) => Err(AttributeError::invalid(
            key,
            format!(
                "'{value}' is not valid: it is always {only} for an Application Load Balancer and can't be changed"
            ),
        )),
    }
}

/// Seconds as the API writes them: whole, or with a fraction when a
/// process default was given one (`--deregistration-delay 0.5`).
fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        format!("{}", duration.as_secs_f64())
    }
}

fn passive_entries(
    table: &[(&'static str, &'static str, Kind)],
    other: &std::collections::BTreeMap<String, String>,
) -> Vec<(&'static str, String)> {
    table
        .iter()
        .map(|(key, default, _)| {
            let value = other.get(*key).map_or(*default, String::as_str);
            (*key, value.to_owned())
        })
        .collect()
}

fn set_passive(
    table: &[(&'static str, &'static str, Kind)],
    other: &mut std::collections::BTreeMap<String, String>,
    key: &str,
    value: &str,
    of: &'static str,
) -> Result<(), AttributeError> {
    let Some((_, _, kind)) = table.iter().find(|(k, _, _)| *k == key) else {
        return Err(AttributeError::UnknownKey {
            key: key.to_owned(),
            of,
        });
    };
    check_passive(key, value, *kind)?;
    other.insert(key.to_owned(), value.to_owned());
    Ok(())
}

impl LoadBalancerAttributes {
    /// Sets one attribute by its API key. Call [`Self::check`] once all of a
    /// call's keys are set.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), AttributeError> {
        match key {
            "deletion_protection.enabled" => self.deletion_protection = boolean(key, value)?,
            "access_logs.s3.enabled" => self.access_logs_enabled = boolean(key, value)?,
            "access_logs.s3.bucket" => self.access_logs_bucket = value.to_owned(),
            "access_logs.s3.prefix" => self.access_logs_prefix = value.to_owned(),
            "idle_timeout.timeout_seconds" => {
                self.idle_timeout_seconds = Some(number(key, value, 1, 4000)?);
            }
            "client_keep_alive.seconds" => {
                self.client_keep_alive_seconds = Some(number(key, value, 60, 604_800)?);
            }
            "routing.http.desync_mitigation_mode" => {
                self.desync_mitigation_mode = Some(
                    match choice(key, value, &["monitor", "defensive", "strictest"])? {
                        "monitor" => DesyncMitigationMode::Monitor,
                        "strictest" => DesyncMitigationMode::Strictest,
                        _ => DesyncMitigationMode::Defensive,
                    },
                );
            }
            "routing.http.drop_invalid_header_fields.enabled" => {
                self.drop_invalid_header_fields = Some(boolean(key, value)?);
            }
            "routing.http.xff_header_processing.mode" => {
                self.xff_header_processing_mode = Some(
                    match choice(key, value, &["append", "preserve", "remove"])? {
                        "preserve" => XffHeaderProcessingMode::Preserve,
                        "remove" => XffHeaderProcessingMode::Remove,
                        _ => XffHeaderProcessingMode::Append,
                    },
                );
            }
            "routing.http.preserve_host_header.enabled" => {
                self.preserve_host_header = Some(boolean(key, value)?);
            }
            "routing.http2.enabled" => self.http2_enabled = boolean(key, value)?,
            _ => set_passive(LB_PASSIVE, &mut self.other, key, value, "Load balancer")?,
        }
        Ok(())
    }

    /// The rules between keys: access logs need a bucket.
    pub fn check(&self) -> Result<(), AttributeError> {
        if self.access_logs_enabled && self.access_logs_bucket.is_empty() {
            return Err(AttributeError::invalid(
                "access_logs.s3.bucket",
                "a bucket is required when access_logs.s3.enabled is true",
            ));
        }
        if let Some(problem) = (!self.access_logs_bucket.is_empty())
            .then(|| alb::access_log::bucket_name_problem(&self.access_logs_bucket))
            .flatten()
        {
            return Err(AttributeError::invalid("access_logs.s3.bucket", problem));
        }
        if let Some(problem) = alb::access_log::prefix_problem(&self.access_logs_prefix) {
            return Err(AttributeError::invalid("access_logs.s3.prefix", problem));
        }
        if self.access_logs_prefix.starts_with('/')
            || self.access_logs_prefix.ends_with('/')
            || self.access_logs_prefix.contains("AWSLogs")
        {
            return Err(AttributeError::invalid(
                "access_logs.s3.prefix",
                format!(
                    "'{}' is not valid: a prefix can't start or end with '/' or contain 'AWSLogs'",
                    self.access_logs_prefix
                ),
            ));
        }
        Ok(())
    }

    /// Every key AWS returns for an Application Load Balancer, with its value.
    pub fn entries(&self, defaults: &AttributeDefaults) -> Vec<(&'static str, String)> {
        let idle = self
            .idle_timeout_seconds
            .map_or_else(|| seconds(defaults.idle_timeout), |s| s.to_string());
        let mut entries = vec![
            (
                "access_logs.s3.enabled",
                self.access_logs_enabled.to_string(),
            ),
            ("access_logs.s3.bucket", self.access_logs_bucket.clone()),
            ("access_logs.s3.prefix", self.access_logs_prefix.clone()),
            ("idle_timeout.timeout_seconds", idle),
            (
                "client_keep_alive.seconds",
                self.client_keep_alive_seconds
                    .unwrap_or(Self::AWS_CLIENT_KEEP_ALIVE_SECONDS)
                    .to_string(),
            ),
            (
                "deletion_protection.enabled",
                self.deletion_protection.to_string(),
            ),
            ("routing.http2.enabled", self.http2_enabled.to_string()),
            (
                "routing.http.drop_invalid_header_fields.enabled",
                self.drop_invalid_header_fields
                    .unwrap_or_default()
                    .to_string(),
            ),
            (
                "routing.http.preserve_host_header.enabled",
                self.preserve_host_header.unwrap_or_default().to_string(),
            ),
            (
                "routing.http.xff_header_processing.mode",
                match self
                    .xff_header_processing_mode
                    .unwrap_or(Self::AWS_XFF_HEADER_PROCESSING_MODE)
                {
                    XffHeaderProcessingMode::Append => "append",
                    XffHeaderProcessingMode::Preserve => "preserve",
                    XffHeaderProcessingMode::Remove => "remove",
                }
                .to_owned(),
            ),
            (
                "routing.http.desync_mitigation_mode",
                match self
                    .desync_mitigation_mode
                    .unwrap_or(Self::AWS_DESYNC_MITIGATION_MODE)
                {
                    DesyncMitigationMode::Monitor => "monitor",
                    DesyncMitigationMode::Defensive => "defensive",
                    DesyncMitigationMode::Strictest => "strictest",
                }
                .to_owned(),
            ),
        ];
        entries.extend(passive_entries(LB_PASSIVE, &self.other));
        entries
    }

    /// The idle timeout in force.
    pub fn idle_timeout(&self, defaults: &AttributeDefaults) -> Duration {
        self.idle_timeout_seconds
            .map_or(defaults.idle_timeout, |s| Duration::from_secs(u64::from(s)))
    }
}

impl TargetGroupAttributes {
    /// Sets one attribute by its API key. Call [`Self::check`] once all of a
    /// call's keys are set.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), AttributeError> {
        match key {
            "deregistration_delay.timeout_seconds" => {
                self.deregistration_delay_seconds = Some(number(key, value, 0, 3600)?);
            }
            "slow_start.duration_seconds" => {
                self.slow_start_seconds = match value {
                    "0" => 0,
                    _ => number(key, value, 30, 900).map_err(|_| {
                        AttributeError::invalid(
                            key,
                            format!("'{value}' is not valid: use 0 (off) or 30 to 900 seconds"),
                        )
                    })?,
                };
            }
            "load_balancing.algorithm.type" => {
                self.algorithm = match choice(
                    key,
                    value,
                    &[
                        "round_robin",
                        "least_outstanding_requests",
                        "weighted_random",
                    ],
                )? {
                    "least_outstanding_requests" => {
                        LoadBalancingAlgorithm::LeastOutstandingRequests
                    }
                    "weighted_random" => LoadBalancingAlgorithm::WeightedRandom,
                    _ => LoadBalancingAlgorithm::RoundRobin,
                };
            }
            "stickiness.enabled" => self.stickiness_enabled = boolean(key, value)?,
            "stickiness.type" => {
                if value == "app_cookie" {
                    return Err(AttributeError::invalid(
                        key,
                        "'app_cookie' is not supported by the local ALB: use lb_cookie",
                    ));
                }
                choice(key, value, &["lb_cookie"])?;
            }
            "stickiness.lb_cookie.duration_seconds" => {
                self.stickiness_duration_seconds = number(key, value, 1, 604_800)?;
            }
            _ => set_passive(TG_PASSIVE, &mut self.other, key, value, "Target group")?,
        }
        Ok(())
    }

    /// The rules between keys: slow start works with round robin only.
    pub fn check(&self) -> Result<(), AttributeError> {
        if self.slow_start_seconds > 0 && self.algorithm != LoadBalancingAlgorithm::RoundRobin {
            return Err(AttributeError::invalid(
                "slow_start.duration_seconds",
                "slow start can't be combined with the least_outstanding_requests or weighted_random algorithm: set slow_start.duration_seconds to 0 or use round_robin",
            ));
        }
        Ok(())
    }

    /// Every key AWS returns for an ALB's instance or ip target group.
    pub fn entries(&self, defaults: &AttributeDefaults) -> Vec<(&'static str, String)> {
        let delay = self
            .deregistration_delay_seconds
            .map_or_else(|| seconds(defaults.deregistration_delay), |s| s.to_string());
        let mut entries = vec![
            ("stickiness.enabled", self.stickiness_enabled.to_string()),
            ("deregistration_delay.timeout_seconds", delay),
            ("stickiness.type", "lb_cookie".to_owned()),
            (
                "stickiness.lb_cookie.duration_seconds",
                self.stickiness_duration_seconds.to_string(),
            ),
            (
                "slow_start.duration_seconds",
                self.slow_start_seconds.to_string(),
            ),
            (
                "load_balancing.algorithm.type",
                match self.algorithm {
                    LoadBalancingAlgorithm::RoundRobin => "round_robin",
                    LoadBalancingAlgorithm::LeastOutstandingRequests => {
                        "least_outstanding_requests"
                    }
                    LoadBalancingAlgorithm::WeightedRandom => "weighted_random",
                }
                .to_owned(),
            ),
        ];
        entries.extend(passive_entries(TG_PASSIVE, &self.other));
        entries
    }

    /// The deregistration delay in force.
    pub fn deregistration_delay(&self, defaults: &AttributeDefaults) -> Duration {
        self.deregistration_delay_seconds
            .map_or(defaults.deregistration_delay, |s| {
                Duration::from_secs(u64::from(s))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: AttributeDefaults = AttributeDefaults {
        idle_timeout: Duration::from_secs(60),
        deregistration_delay: Duration::from_millis(500),
    };

    #[test]
    fn every_key_returned_can_be_set_to_the_value_returned() {
        let mut lb = LoadBalancerAttributes::default();
        for (key, value) in lb.clone().entries(&DEFAULTS) {
            lb.set(key, &value)
                .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        }
        let mut tg = TargetGroupAttributes {
            deregistration_delay_seconds: Some(300),
            ..Default::default()
        };
        for (key, value) in tg.clone().entries(&DEFAULTS) {
            tg.set(key, &value)
                .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        }
    }

    #[test]
    fn keys_values_and_combinations_are_checked_as_aws_does() {
        let mut lb = LoadBalancerAttributes::default();
        let cases: &[(&str, &str, bool)] = &[
            ("idle_timeout.timeout_seconds", "4000", true),
            ("idle_timeout.timeout_seconds", "4001", false),
            ("idle_timeout.timeout_seconds", "0", false),
            ("client_keep_alive.seconds", "59", false),
            ("routing.http.desync_mitigation_mode", "strictest", true),
            ("routing.http.desync_mitigation_mode", "loose", false),
            ("routing.http2.enabled", "TRUE", false),
            ("load_balancing.cross_zone.enabled", "false", false),
            ("waf.fail_open.enabled", "true", true),
        ];
        for (key, value, ok) in cases {
            assert_eq!(lb.set(key, value).is_ok(), *ok, "{key} = {value}");
        }
        assert!(matches!(
            lb.set("idle_timeout", "5"),
            Err(AttributeError::UnknownKey { .. })
        ));
        lb.set("access_logs.s3.enabled", "true").unwrap();
        assert!(lb.check().is_err(), "access logs without a bucket");

        let mut tg = TargetGroupAttributes::default();
        for (key, value, ok) in [
            ("deregistration_delay.timeout_seconds", "3600", true),
            ("deregistration_delay.timeout_seconds", "3601", false),
            ("slow_start.duration_seconds", "29", false),
            ("slow_start.duration_seconds", "0", true),
            ("stickiness.lb_cookie.duration_seconds", "604801", false),
            ("stickiness.type", "source_ip", false),
            ("load_balancing.algorithm.type", "weighted_random", true),
        ] {
            assert_eq!(tg.set(key, value).is_ok(), ok, "{key} = {value}");
        }
        tg.set("slow_start.duration_seconds", "30").unwrap();
        assert!(tg.check().is_err(), "slow start with weighted_random");
        assert_eq!(
            TargetGroupAttributes::default().entries(&DEFAULTS)[1],
            ("deregistration_delay.timeout_seconds", "0.5".to_owned())
        );
    }
}
