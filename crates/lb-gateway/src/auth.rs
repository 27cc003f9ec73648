//! Master-key authentication.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::handlers::error_response;

/// The key a client presented: `Authorization: Bearer <key>`, else `api-key`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return Some(
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim(),
        );
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Refuses requests without the master key (when one is configured), with a
/// constant-time comparison.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.master_key else {
        return next.run(req).await;
    };
    let ok = presented(req.headers())
        .is_some_and(|key| bool::from(key.as_bytes().ct_eq(expected.expose().as_bytes())));
    if ok {
        next.run(req).await
    } else {
        let message = if presented(req.headers()).is_some() {
            "invalid API key"
        } else {
            "missing API key: send it as 'Authorization: Bearer <key>'"
        };
        error_response(
            401,
            message,
            "authentication_error",
            None,
            Some("invalid_api_key"),
            None,
        )
    }
}
