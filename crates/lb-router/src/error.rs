//! Errors of building a router and of routing a call.

use std::sync::Arc;
use std::time::Duration;

use lb_core::{DeploymentId, UpstreamError};

/// Why a config or builder was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {file}: {message}")]
    Io {
        /// The path given.
        file: String,
        /// The operating system's reason.
        message: String,
    },
    /// The text is not YAML.
    #[error("config is not valid YAML: {0}")]
    Syntax(String),
    /// A value is wrong; `path` names it exactly (`model_list[2].litellm_params.rpm`).
    #[error("{path}: {message}")]
    Invalid {
        /// Where the bad value is.
        path: String,
        /// What is wrong with it, quoting the value.
        message: String,
    },
}

/// One failed attempt of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptFailure {
    /// The deployment tried.
    pub deployment: DeploymentId,
    /// How it failed.
    pub error: UpstreamError,
}

/// Why a call could not be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouterError {
    /// The requested model is no group, alias or deployment id.
    #[error("invalid model name passed in model={model}; available model groups: {}", known.join(", "))]
    UnknownModel {
        /// What the client asked for.
        model: String,
        /// The groups (and visible aliases) that exist.
        known: Vec<String>,
    },
    /// The request is malformed (a router parameter has a bad value).
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// The offending parameter.
        param: Option<String>,
    },
    /// Every attempt failed; the first attempt's error is the primary one.
    #[error("{}", upstream_message(group, attempts, fallbacks))]
    Upstream {
        /// The model group requested.
        group: Arc<str>,
        /// Each attempt, in order, in every group tried.
        attempts: Vec<AttemptFailure>,
        /// The fallback groups tried, in order.
        fallbacks: Vec<Arc<str>>,
    },
    /// Every deployment that could serve the call is cooling down.
    #[error("{}", no_capacity_message(group, *retry_after, limits, attempts, fallbacks))]
    NoCapacity {
        /// The model group requested.
        group: Arc<str>,
        /// The limits and budgets that were reached (empty: only cooldowns).
        limits: Vec<String>,
        /// When the first deployment comes back.
        retry_after: Duration,
        /// Attempts made before everything cooled down.
        attempts: Vec<AttemptFailure>,
        /// The fallback groups tried.
        fallbacks: Vec<Arc<str>>,
    },
}

fn join(groups: &[Arc<str>]) -> String {
    groups
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn attempt_list(attempts: &[AttemptFailure]) -> String {
    let tried: Vec<String> = attempts
        .iter()
        .map(|a| format!("{}: {}", a.deployment, a.error))
        .collect();
    format!(
        "{} attempt{}: {}",
        attempts.len(),
        if attempts.len() == 1 { "" } else { "s" },
        tried.join("; ")
    )
}

/// Whole seconds, rounded up.
fn secs_up(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn upstream_message(group: &str, attempts: &[AttemptFailure], fallbacks: &[Arc<str>]) -> String {
    let Some(first) = attempts.first() else {
        return format!("no deployment of model group {group} could be tried");
    };
    let fallbacks = if fallbacks.is_empty() {
        String::new()
    } else {
        format!("; fallbacks tried: {}", join(fallbacks))
    };
    format!(
        "{} (model group {group}; {}{fallbacks})",
        first.error.message,
        attempt_list(attempts)
    )
}

fn no_capacity_message(
    group: &str,
    retry_after: Duration,
    limits: &[String],
    attempts: &[AttemptFailure],
    fallbacks: &[Arc<str>],
) -> String {
    let mut m = format!(
        "No deployments available for selected model: every deployment of model group {group}"
    );
    if !fallbacks.is_empty() {
        m.push_str(&format!(" and of its fallbacks {}", join(fallbacks)));
    }
    if limits.is_empty() {
        m.push_str(" is cooling down");
    } else {
        m.push_str(&format!(
            " is cooling down or over a limit ({})",
            limits.join("; ")
        ));
    }
    m.push_str(&format!("; try again in {}s", secs_up(retry_after)));
    if !attempts.is_empty() {
        m.push_str(&format!(" ({})", attempt_list(attempts)));
    }
    m
}

impl RouterError {
    /// The upstream error that decides the client's status, if any.
    pub fn primary(&self) -> Option<&UpstreamError> {
        match self {
            RouterError::Upstream { attempts, .. } => attempts.first().map(|a| &a.error),
            RouterError::UnknownModel { .. }
            | RouterError::InvalidRequest { .. }
            | RouterError::NoCapacity { .. } => None,
        }
    }

    /// The HTTP status a client should see.
    pub fn status(&self) -> u16 {
        match self {
            RouterError::UnknownModel { .. } | RouterError::InvalidRequest { .. } => 400,
            RouterError::Upstream { .. } => {
                self.primary().map_or(500, UpstreamError::client_status)
            }
            RouterError::NoCapacity { .. } => 429,
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            RouterError::UnknownModel { .. } | RouterError::InvalidRequest { .. } => {
                "invalid_request_error"
            }
            RouterError::Upstream { .. } => self
                .primary()
                .map_or("api_error", |e| e.class.openai_type()),
            RouterError::NoCapacity { .. } => "rate_limit_error",
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            RouterError::UnknownModel { .. } => Some("model_not_found"),
            RouterError::InvalidRequest { .. } => None,
            RouterError::Upstream { .. } => self.primary().and_then(|e| e.code.as_deref()),
            RouterError::NoCapacity { limits, .. } if limits.is_empty() => {
                Some("all_deployments_in_cooldown")
            }
            RouterError::NoCapacity { .. } => Some("rate_limit_exceeded"),
        }
    }

    /// The OpenAI error `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            RouterError::UnknownModel { .. } => Some("model"),
            RouterError::InvalidRequest { param, .. } => param.as_deref(),
            RouterError::Upstream { .. } => self.primary().and_then(|e| e.param.as_deref()),
            RouterError::NoCapacity { .. } => None,
        }
    }

    /// Attempts made, in every group tried.
    pub fn attempts(&self) -> &[AttemptFailure] {
        match self {
            RouterError::Upstream { attempts, .. } | RouterError::NoCapacity { attempts, .. } => {
                attempts
            }
            RouterError::UnknownModel { .. } | RouterError::InvalidRequest { .. } => &[],
        }
    }

    /// The fallback groups tried.
    pub fn fallbacks(&self) -> &[Arc<str>] {
        match self {
            RouterError::Upstream { fallbacks, .. } | RouterError::NoCapacity { fallbacks, .. } => {
                fallbacks
            }
            RouterError::UnknownModel { .. } | RouterError::InvalidRequest { .. } => &[],
        }
    }

    /// How long the client should wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RouterError::NoCapacity { retry_after, .. } => Some(*retry_after),
            RouterError::Upstream { .. }
            | RouterError::UnknownModel { .. }
            | RouterError::InvalidRequest { .. } => self.primary().and_then(|e| e.retry_after),
        }
    }
}
