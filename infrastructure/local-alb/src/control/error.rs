//! Errors of the ELBv2 Query API, as AWS names them.

use http::StatusCode;

/// An error answered as an AWS `<ErrorResponse>` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The AWS error code, for example `PriorityInUse`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn sender(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// `Sender` when the caller is at fault (4xx), `Receiver` otherwise.
    pub fn fault_type(&self) -> &'static str {
        if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::sender("ValidationError", message)
    }

    /// A required parameter is absent (the message names it the way AWS does).
    pub fn missing(parameter: &str) -> ApiError {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{parameter}' failed to satisfy constraint: Member must not be null"
        ))
    }

    pub fn invalid_action(action: &str) -> ApiError {
        ApiError::sender(
            "InvalidAction",
            format!("Could not find operation {action} for version 2015-12-01"),
        )
    }

    pub fn priority_in_use(priority: u32) -> ApiError {
        ApiError::sender(
            "PriorityInUse",
            format!("Priority '{priority}' is currently in use"),
        )
    }

    pub fn rule_not_found(arn: &str) -> ApiError {
        ApiError::sender(
            "RuleNotFound",
            format!("One or more rules not found: '{arn}'"),
        )
    }

    pub fn listener_not_found(arn: &str) -> ApiError {
        ApiError::sender(
            "ListenerNotFound",
            format!("One or more listeners not found: '{arn}'"),
        )
    }

    pub fn target_group_not_found(what: &str) -> ApiError {
        ApiError::sender(
            "TargetGroupNotFound",
            format!("One or more target groups not found: '{what}'"),
        )
    }

    pub fn load_balancer_not_found(what: &str) -> ApiError {
        ApiError::sender(
            "LoadBalancerNotFound",
            format!("One or more load balancers not found: '{what}'"),
        )
    }

    /// A value AWS refuses as a configuration (an attribute out of range).
    pub fn invalid_configuration(message: impl Into<String>) -> ApiError {
        ApiError::sender("InvalidConfigurationRequest", message)
    }

    /// An attribute key or value refused: an unknown key is AWS's
    /// `ValidationError`, a bad value its `InvalidConfigurationRequest`.
    pub fn attribute(error: &crate::attributes::AttributeError) -> ApiError {
        match error {
            crate::attributes::AttributeError::UnknownKey { .. } => {
                ApiError::validation(error.message())
            }
            crate::attributes::AttributeError::InvalidValue { .. } => {
                ApiError::invalid_configuration(error.message())
            }
        }
    }

    pub fn operation_not_permitted(message: impl Into<String>) -> ApiError {
        ApiError::sender("OperationNotPermitted", message)
    }

    pub fn too_many_rules(limit: usize) -> ApiError {
        ApiError::sender(
            "TooManyRules",
            format!(
                "The load balancer already has the maximum of {limit} rules (not counting default rules)"
            ),
        )
    }

    pub fn too_many_target_groups(limit: usize) -> ApiError {
        ApiError::sender(
            "TooManyTargetGroups",
            format!("A forward action can reference at most {limit} target groups"),
        )
    }

    pub fn duplicate_tag_keys(key: &str) -> ApiError {
        ApiError::sender("DuplicateTagKeys", format!("Tag key '{key}' is duplicated"))
    }

    pub fn too_many_tags(arn: &str, limit: usize) -> ApiError {
        ApiError::sender(
            "TooManyTags",
            format!("Resource '{arn}' would have more than {limit} tags"),
        )
    }

    /// The change was valid but could not be persisted; nothing changed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalFailure",
            message: message.into(),
        }
    }

    /// AWS's answer to a request over the rate (Query API: HTTP 400
    /// `Throttling`, "Rate exceeded"); SDKs retry it with backoff.
    pub fn throttling() -> ApiError {
        ApiError::sender("Throttling", "Rate exceeded")
    }

    /// A transient server error as AWS answers them: 500 `InternalFailure`
    /// or 503 `ServiceUnavailable` (injected by `--transient-errors`).
    pub fn transient(status: u16) -> ApiError {
        if status == 503 {
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ServiceUnavailable",
                message: "The request has failed due to a temporary failure of the server."
                    .to_owned(),
            }
        } else {
            ApiError::internal(
                "The request processing has failed because of an unknown error, exception or failure.",
            )
        }
    }

    /// An authentication failure (HTTP 403).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
