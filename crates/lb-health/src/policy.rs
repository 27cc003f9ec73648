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

#[cfg(test)]
mod tests {
    use super::*;

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
