//! What a failure means for the call that saw it.

use lb_core::ErrorClass;

/// What the router does after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Another deployment may succeed: try the next candidate.
    TryAnotherDeployment,
    /// The request itself is at fault: no other deployment of the group will
    /// do better; answer the client now.
    GiveUp,
}

/// Decides what a failure of `class` means for the call.
///
/// Rate limits, timeouts, server and connection errors are the deployment's
/// fault; auth errors are the deployment's credentials, which another
/// deployment may not share. Bad requests, missing models, context-window and
/// content-policy errors are the request's: retrying them elsewhere in the
/// group only repeats the answer (their typed fallbacks are a router matter).
pub fn after_failure(class: ErrorClass) -> FailureAction {
    match class {
        ErrorClass::RateLimited
        | ErrorClass::Timeout
        | ErrorClass::ServerError
        | ErrorClass::Connection
        | ErrorClass::Auth => FailureAction::TryAnotherDeployment,
        ErrorClass::BadRequest
        | ErrorClass::NotFound
        | ErrorClass::ContextWindowExceeded
        | ErrorClass::ContentPolicy => FailureAction::GiveUp,
    }
}

/// LiteLLM's `retry_policy`: retries per error class, overriding `num_retries`.
///
/// Only classes that are retried at all can be set: bad requests, missing
/// models, context-window and content-policy errors are never retried, as
/// [`after_failure`] decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `RateLimitErrorRetries` (429).
    pub rate_limit: Option<u32>,
    /// `TimeoutErrorRetries` (408, client timeouts).
    pub timeout: Option<u32>,
    /// `AuthenticationErrorRetries` (401, 402, 403).
    pub authentication: Option<u32>,
    /// `InternalServerErrorRetries` (5xx and connection failures).
    pub internal_server: Option<u32>,
    /// `ServiceUnavailableErrorRetries` (503 only; else `internal_server`).
    pub service_unavailable: Option<u32>,
    /// `DefaultRetries`: any retried class the fields above leave unset.
    pub default: Option<u32>,
}

impl RetryPolicy {
    /// Retries the policy allows after a failure of `class` (with HTTP
    /// `status`), if it says anything.
    pub fn retries_for(&self, class: ErrorClass, status: Option<u16>) -> Option<u32> {
        let specific = match class {
            ErrorClass::RateLimited => self.rate_limit,
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Auth => self.authentication,
            ErrorClass::ServerError if status == Some(503) => {
                self.service_unavailable.or(self.internal_server)
            }
            ErrorClass::ServerError | ErrorClass::Connection => self.internal_server,
            ErrorClass::BadRequest
            | ErrorClass::NotFound
            | ErrorClass::ContextWindowExceeded
            | ErrorClass::ContentPolicy => None,
        };
        specific.or(self.default)
    }

    /// Whether any field is set.
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_per_class_with_default() {
        let p = RetryPolicy {
            rate_limit: Some(5),
            internal_server: Some(1),
            service_unavailable: Some(3),
            default: Some(2),
            ..RetryPolicy::default()
        };
        assert_eq!(p.retries_for(ErrorClass::RateLimited, Some(429)), Some(5));
        assert_eq!(p.retries_for(ErrorClass::ServerError, Some(503)), Some(3));
        assert_eq!(p.retries_for(ErrorClass::ServerError, Some(500)), Some(1));
        assert_eq!(p.retries_for(ErrorClass::Timeout, None), Some(2));
        assert_eq!(
            RetryPolicy::default().retries_for(ErrorClass::Timeout, None),
            None
        );
    }

    #[test]
    fn request_faults_are_not_retried() {
        for c in [
            ErrorClass::BadRequest,
            ErrorClass::NotFound,
            ErrorClass::ContextWindowExceeded,
            ErrorClass::ContentPolicy,
        ] {
            assert_eq!(after_failure(c), FailureAction::GiveUp, "{c}");
        }
        for c in [
            ErrorClass::RateLimited,
            ErrorClass::Timeout,
            ErrorClass::ServerError,
            ErrorClass::Connection,
            ErrorClass::Auth,
        ] {
            assert_eq!(after_failure(c), FailureAction::TryAnotherDeployment, "{c}");
        }
    }
}
