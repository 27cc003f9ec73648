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
    #[error("{}", upstream_message(group, attempts))]
    Upstream {
        /// The model group routed.
        group: Arc<str>,
        /// Each attempt, in order (never empty).
        attempts: Vec<AttemptFailure>,
    },
}

fn upstream_message(group: &str, attempts: &[AttemptFailure]) -> String {
    let Some(first) = attempts.first() else {
        return format!("no deployment of model group {group} could be tried");
    };
    let tried: Vec<String> = attempts
        .iter()
        .map(|a| format!("{}: {}", a.deployment, a.error))
        .collect();
    format!(
        "{} (model group {group}; {} attempt{}: {})",
        first.error.message,
        attempts.len(),
        if attempts.len() == 1 { "" } else { "s" },
        tried.join("; ")
    )
}

impl RouterError {
    /// The upstream error that decides the client's status, if any.
    pub fn primary(&self) -> Option<&UpstreamError> {
        match self {
            RouterError::Upstream { attempts, .. } => attempts.first().map(|a| &a.error),
            RouterError::UnknownModel { .. } | RouterError::InvalidRequest { .. } => None,
        }
    }

    /// The HTTP status a client should see.
    pub fn status(&self) -> u16 {
        match self {
            RouterError::UnknownModel { .. } | RouterError::InvalidRequest { .. } => 400,
            RouterError::Upstream { .. } => {
                self.primary().map_or(500, UpstreamError::client_status)
            }
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
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            RouterError::UnknownModel { .. } => Some("model_not_found"),
            RouterError::InvalidRequest { .. } => None,
            RouterError::Upstream { .. } => self.primary().and_then(|e| e.code.as_deref()),
        }
    }

    /// The OpenAI error `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            RouterError::UnknownModel { .. } => Some("model"),
            RouterError::InvalidRequest { param, .. } => param.as_deref(),
            RouterError::Upstream { .. } => self.primary().and_then(|e| e.param.as_deref()),
        }
    }

    /// How long the client should wait before retrying, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.primary().and_then(|e| e.retry_after)
    }
}
