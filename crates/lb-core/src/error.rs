//! The one classification of upstream failures that every policy reads.

use std::fmt;
use std::time::Duration;

/// What kind of failure an upstream call ended in.
///
/// Classified once, at the provider edge. Retry, cooldown and fallback
/// decisions `match` on it exhaustively, so a new variant forces every policy
/// to decide what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 429: the upstream is rate limiting; may carry a retry-after.
    RateLimited,
    /// No answer in time (client-side timeout or upstream 408/504-style).
    Timeout,
    /// The prompt does not fit the model's context window.
    ContextWindowExceeded,
    /// The upstream refused the content (content filter, safety system).
    ContentPolicy,
    /// 401, 402, 403: credentials or permissions are wrong.
    Auth,
    /// 400, 413, 422 and other client errors: the request itself is wrong.
    BadRequest,
    /// 404: the model or deployment does not exist upstream.
    NotFound,
    /// 5xx: the upstream failed.
    ServerError,
    /// The connection failed (refused, reset, DNS) or the reply was unreadable.
    Connection,
}

impl ErrorClass {
    /// The OpenAI error `type` string for this class.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limit_error",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ContextWindowExceeded => "invalid_request_error",
            ErrorClass::ContentPolicy => "invalid_request_error",
            ErrorClass::Auth => "authentication_error",
            ErrorClass::BadRequest => "invalid_request_error",
            ErrorClass::NotFound => "not_found_error",
            ErrorClass::ServerError => "api_error",
            ErrorClass::Connection => "api_connection_error",
        }
    }

    /// The HTTP status a client sees when the upstream gave none.
    pub fn default_status(self) -> u16 {
        match self {
            ErrorClass::RateLimited => 429,
            ErrorClass::Timeout => 408,
            ErrorClass::ContextWindowExceeded => 400,
            ErrorClass::ContentPolicy => 400,
            ErrorClass::Auth => 401,
            ErrorClass::BadRequest => 400,
            ErrorClass::NotFound => 404,
            ErrorClass::ServerError => 500,
            ErrorClass::Connection => 502,
        }
    }

    /// A short lowercase name, for logs and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate limited",
            ErrorClass::Timeout => "timeout",
            ErrorClass::ContextWindowExceeded => "context window exceeded",
            ErrorClass::ContentPolicy => "content policy violation",
            ErrorClass::Auth => "authentication error",
            ErrorClass::BadRequest => "bad request",
            ErrorClass::NotFound => "not found",
            ErrorClass::ServerError => "server error",
            ErrorClass::Connection => "connection error",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest upstream message kept in an error, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// A failed upstream call, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{class}{}: {message}", status.map(|s| format!(" (status {s})")).unwrap_or_default())]
pub struct UpstreamError {
    /// What kind of failure this is.
    pub class: ErrorClass,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The upstream's message, truncated to [`MAX_MESSAGE_LEN`].
    pub message: String,
    /// How long the upstream asked us to wait (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<Duration>,
    /// The upstream's error `code`, when it gave one.
    pub code: Option<String>,
    /// The upstream's error `param`, when it gave one.
    pub param: Option<String>,
}

impl UpstreamError {
    /// A new error of `class` with `message` (truncated) and no status.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            status: None,
            message: truncate(message.into()),
            retry_after: None,
            code: None,
            param: None,
        }
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the retry-after hint.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Sets the error code.
    pub fn with_code(mut self, code: Option<String>) -> Self {
        self.code = code;
        self
    }

    /// The status a client should see: the upstream's, else the class default.
    pub fn client_status(&self) -> u16 {
        self.status.unwrap_or(self.class.default_status())
    }
}

/// Cuts `s` to at most [`MAX_MESSAGE_LEN`] bytes on a character boundary.
pub fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_LEN {
        let cut = prefix_within(&s, MAX_MESSAGE_LEN).len();
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The longest start of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn prefix_within(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_class_status_and_message() {
        let e = UpstreamError::new(ErrorClass::RateLimited, "slow down").with_status(429);
        assert_eq!(e.to_string(), "rate limited (status 429): slow down");
        let e = UpstreamError::new(ErrorClass::Connection, "refused");
        assert_eq!(e.to_string(), "connection error: refused");
        assert_eq!(e.client_status(), 502);
    }

    #[test]
    fn a_prefix_ends_on_a_character_boundary() {
        assert_eq!(prefix_within("gpt-4o", 256), "gpt-4o");
        assert_eq!(prefix_within(&"m".repeat(1000), 256).len(), 256);
        let wide = "é".repeat(200);
        assert_eq!(prefix_within(&wide, 256).len(), 256);
        assert_eq!(prefix_within(&format!("x{wide}"), 256).len(), 255);
        assert_eq!(prefix_within("é", 1), "");
    }

    #[test]
    fn long_messages_are_truncated_on_char_boundary() {
        let e = UpstreamError::new(ErrorClass::ServerError, "é".repeat(2000));
        assert!(e.message.len() <= MAX_MESSAGE_LEN + 3);
        assert!(e.message.ends_with("..."));
    }
}
