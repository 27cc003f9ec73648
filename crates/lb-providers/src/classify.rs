//! The one place an upstream failure is classified.

use std::time::{Duration, SystemTime};

use lb_core::{ErrorClass, UpstreamError};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Classifies an upstream error reply.
///
/// A pure function of the status, headers and body (and `now`, for
/// `Retry-After` given as an HTTP date). Reads OpenAI's, Azure's and
/// Anthropic's error shapes, plain `{"message"}`/`{"detail"}` bodies and
/// plain text.
pub fn classify_error(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> UpstreamError {
    let parsed = parse_body(body);
    let class = class_of(status, &parsed);
    let mut message = if parsed.message.is_empty() {
        format!("upstream returned status {status}")
    } else {
        parsed.message
    };
    // Only 4xx and 5xx are errors a client may see as they are; anything else
    // (a redirect, a 1xx) is a broken upstream: a bad gateway.
    let status = if (400..600).contains(&status) {
        status
    } else {
        message = format!("upstream answered with unexpected status {status}: {message}");
        502
    };
    let mut err = UpstreamError::new(class, message)
        .with_status(status)
        .with_retry_after(parse_retry_after(headers, now))
        .with_code(parsed.code);
    err.param = parsed.param;
    err
}

/// Longest retry-after honoured; longer hints are capped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

fn capped_secs(value: f64) -> Option<Duration> {
    if value.is_nan() || value < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(value).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)))
}

/// Reads how long an upstream asked us to wait: `retry-after-ms`, else
/// `Retry-After` as seconds (integer or decimal) or as an HTTP date.
/// A date in the past means zero; unreadable values mean none; anything
/// beyond [`MAX_RETRY_AFTER`] is capped to it.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) =
        header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
    {
        if let Some(d) = capped_secs(ms / 1000.0) {
            return Some(d);
        }
    }
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return capped_secs(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Debug, Default)]
struct ParsedBody {
    message: String,
    code: Option<String>,
    kind: Option<String>,
    inner_code: Option<String>,
    param: Option<String>,
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_body(body: &[u8]) -> ParsedBody {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body).trim().to_owned();
        return ParsedBody {
            message: text,
            ..ParsedBody::default()
        };
    };
    // OpenAI / Azure / Anthropic: {"error": {...}}; some servers: {"error": "text"}.
    let obj = match json.get("error") {
        Some(Value::String(s)) => {
            return ParsedBody {
                message: s.clone(),
                ..ParsedBody::default()
            };
        }
        Some(e @ Value::Object(_)) => e,
        _ => &json,
    };
    let message = obj
        .get("message")
        .or_else(|| obj.get("detail"))
        .map(|m| match m {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    ParsedBody {
        message,
        code: obj.get("code").and_then(value_to_string),
        kind: obj.get("type").and_then(value_to_string),
        inner_code: obj
            .get("innererror")
            .and_then(|i| i.get("code"))
            .and_then(value_to_string),
        param: obj.get("param").and_then(value_to_string),
    }
}

fn is_context_window(p: &ParsedBody) -> bool {
    let code_hit = [p.code.as_deref(), p.kind.as_deref()]
        .into_iter()
        .flatten()
        .any(|c| c == "context_length_exceeded" || c == "string_above_max_length");
    let m = p.message.to_ascii_lowercase();
    code_hit
        || m.contains("maximum context length")
        || m.contains("context length exceeded")
        || m.contains("context_length_exceeded")
        || m.contains("context window")
        || m.contains("prompt is too long")
        || m.contains("too many tokens")
        || m.contains("input is too long")
}

fn is_content_policy(p: &ParsedBody) -> bool {
    let code_hit = [
        p.code.as_deref(),
        p.kind.as_deref(),
        p.inner_code.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|c| {
        c == "content_filter"
            || c == "content_policy_violation"
            || c == "ResponsibleAIPolicyViolation"
    });
    let m = p.message.to_ascii_lowercase();
    code_hit
        || m.contains("content management policy")
        || m.contains("content_policy_violation")
        || m.contains("safety system")
        || m.contains("content filter")
}

fn class_of(status: u16, p: &ParsedBody) -> ErrorClass {
    match status {
        429 => ErrorClass::RateLimited,
        401..=403 => ErrorClass::Auth,
        404 => ErrorClass::NotFound,
        408 => ErrorClass::Timeout,
        400..=499 if is_context_window(p) => ErrorClass::ContextWindowExceeded,
        400..=499 if is_content_policy(p) => ErrorClass::ContentPolicy,
        400..=499 => ErrorClass::BadRequest,
        _ => ErrorClass::ServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn now() -> SystemTime {
        // Sun, 06 Nov 1994 08:49:37 GMT
        SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    struct Case {
        name: &'static str,
        status: u16,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
        class: ErrorClass,
        retry_after: Option<Duration>,
        code: Option<&'static str>,
        message_has: &'static str,
    }

    #[test]
    fn table() {
        let cases = [
            Case {
                name: "openai 429 with retry-after seconds",
                status: 429,
                headers: &[("retry-after", "20")],
                body: r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                class: ErrorClass::RateLimited,
                retry_after: Some(Duration::from_secs(20)),
                code: Some("rate_limit_exceeded"),
                message_has: "Rate limit reached",
            },
            Case {
                name: "retry-after as http date",
                status: 429,
                headers: &[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")],
                body: "{}",
                class: ErrorClass::RateLimited,
                retry_after: Some(Duration::from_secs(10)),
                code: None,
                message_has: "status 429",
            },
            Case {
                name: "retry-after date in the past is zero",
                status: 503,
                headers: &[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")],
                body: "",
                class: ErrorClass::ServerError,
                retry_after: Some(Duration::ZERO),
                code: None,
                message_has: "status 503",
            },
            Case {
                name: "retry-after-ms wins over retry-after",
                status: 429,
                headers: &[("retry-after", "2"), ("retry-after-ms", "1500")],
                body: "",
                class: ErrorClass::RateLimited,
                retry_after: Some(Duration::from_millis(1500)),
                code: None,
                message_has: "",
            },
            Case {
                name: "decimal retry-after",
                status: 429,
                headers: &[("retry-after", "0.25")],
                body: "",
                class: ErrorClass::RateLimited,
                retry_after: Some(Duration::from_millis(250)),
                code: None,
                message_has: "",
            },
            Case {
                name: "garbage retry-after is ignored",
                status: 429,
                headers: &[("retry-after", "soon")],
                body: "",
                class: ErrorClass::RateLimited,
                retry_after: None,
                code: None,
                message_has: "",
            },
            Case {
                name: "azure 429 with numeric code",
                status: 429,
                headers: &[],
                body: r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded call rate limit. Please retry after 20 seconds."}}"#,
                class: ErrorClass::RateLimited,
                retry_after: None,
                code: Some("429"),
                message_has: "exceeded call rate limit",
            },
            Case {
                name: "openai context window",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                class: ErrorClass::ContextWindowExceeded,
                retry_after: None,
                code: Some("context_length_exceeded"),
                message_has: "maximum context length",
            },
            Case {
                name: "anthropic prompt too long",
                status: 400,
                headers: &[],
                body: r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
                class: ErrorClass::ContextWindowExceeded,
                retry_after: None,
                code: None,
                message_has: "prompt is too long",
            },
            Case {
                name: "azure content filter",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
                class: ErrorClass::ContentPolicy,
                retry_after: None,
                code: Some("content_filter"),
                message_has: "content management policy",
            },
            Case {
                name: "openai content policy code",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","code":"content_policy_violation"}}"#,
                class: ErrorClass::ContentPolicy,
                retry_after: None,
                code: Some("content_policy_violation"),
                message_has: "safety system",
            },
            Case {
                name: "plain bad request",
                status: 400,
                headers: &[],
                body: r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","param":"temperature","code":null}}"#,
                class: ErrorClass::BadRequest,
                retry_after: None,
                code: None,
                message_has: "temperature",
            },
            Case {
                name: "422 from fastapi servers",
                status: 422,
                headers: &[],
                body: r#"{"detail":[{"loc":["body","messages"],"msg":"field required"}]}"#,
                class: ErrorClass::BadRequest,
                retry_after: None,
                code: None,
                message_has: "field required",
            },
            Case {
                name: "413 too large",
                status: 413,
                headers: &[],
                body: "Request Entity Too Large",
                class: ErrorClass::BadRequest,
                retry_after: None,
                code: None,
                message_has: "Too Large",
            },
            Case {
                name: "401 auth",
                status: 401,
                headers: &[],
                body: r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                class: ErrorClass::Auth,
                retry_after: None,
                code: Some("invalid_api_key"),
                message_has: "Incorrect API key",
            },
            Case {
                name: "402 payment",
                status: 402,
                headers: &[],
                body: r#"{"error":"insufficient credits"}"#,
                class: ErrorClass::Auth,
                retry_after: None,
                code: None,
                message_has: "insufficient credits",
            },
            Case {
                name: "403 forbidden",
                status: 403,
                headers: &[],
                body: "",
                class: ErrorClass::Auth,
                retry_after: None,
                code: None,
                message_has: "status 403",
            },
            Case {
                name: "404 model",
                status: 404,
                headers: &[],
                body: r#"{"error":{"message":"The model `gpt-5x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                class: ErrorClass::NotFound,
                retry_after: None,
                code: Some("model_not_found"),
                message_has: "does not exist",
            },
            Case {
                name: "408 timeout",
                status: 408,
                headers: &[],
                body: "",
                class: ErrorClass::Timeout,
                retry_after: None,
                code: None,
                message_has: "",
            },
            Case {
                name: "500",
                status: 500,
                headers: &[],
                body: r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}"#,
                class: ErrorClass::ServerError,
                retry_after: None,
                code: None,
                message_has: "server had an error",
            },
            Case {
                name: "503 with retry-after",
                status: 503,
                headers: &[("retry-after", "7")],
                body: "Service Unavailable",
                class: ErrorClass::ServerError,
                retry_after: Some(Duration::from_secs(7)),
                code: None,
                message_has: "Service Unavailable",
            },
            Case {
                name: "anthropic overloaded 529",
                status: 529,
                headers: &[],
                body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                class: ErrorClass::ServerError,
                retry_after: None,
                code: None,
                message_has: "Overloaded",
            },
        ];
        for c in cases {
            let e = classify_error(c.status, &headers(c.headers), c.body.as_bytes(), now());
            assert_eq!(e.class, c.class, "{}", c.name);
            assert_eq!(e.status, Some(c.status), "{}", c.name);
            assert_eq!(e.retry_after, c.retry_after, "{}", c.name);
            assert_eq!(e.code.as_deref(), c.code, "{}", c.name);
            assert!(
                e.message.contains(c.message_has),
                "{}: {}",
                c.name,
                e.message
            );
        }
    }

    #[test]
    fn huge_or_negative_retry_after_never_panics() {
        for (name, value, expected) in [
            ("retry-after", "1e20", Some(MAX_RETRY_AFTER)),
            ("retry-after-ms", "1e30", Some(MAX_RETRY_AFTER)),
            ("retry-after", "inf", Some(MAX_RETRY_AFTER)),
            ("retry-after", "-3", None),
            ("retry-after", "NaN", None),
            (
                "retry-after",
                "Fri, 31 Dec 9999 23:59:59 GMT",
                Some(MAX_RETRY_AFTER),
            ),
        ] {
            assert_eq!(
                parse_retry_after(&headers(&[(name, value)]), now()),
                expected,
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn non_error_status_is_a_bad_gateway() {
        let e = classify_error(302, &HeaderMap::new(), b"", now());
        assert_eq!(e.status, Some(502));
        assert_eq!(e.class, ErrorClass::ServerError);
        assert!(e.message.contains("unexpected status 302"), "{}", e.message);
    }

    #[test]
    fn param_is_kept() {
        let e = classify_error(
            400,
            &HeaderMap::new(),
            br#"{"error":{"message":"bad","param":"temperature"}}"#,
            now(),
        );
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }
}
