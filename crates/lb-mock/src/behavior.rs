//! What a deployment does with a request: its default [`Behavior`] and the
//! explicit [`Fault`]s that can be scripted or drawn.

use std::time::{Duration, SystemTime};

/// The default behaviour of one mock deployment.
///
/// Read lock-free on every request; change it with
/// [`MockDeployment::set_behavior`](crate::MockDeployment::set_behavior).
#[derive(Clone, Debug)]
pub struct Behavior {
    /// Added before the response headers (every response, including the
    /// headers of a stream, so also before the first chunk). Default 0.
    pub latency: Duration,
    /// A uniform extra delay in `0..jitter` on top of `latency`. Default 0.
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a request (with an empty script) gets
    /// [`failure`](Self::failure) instead of a success. Default 0.
    pub failure_rate: f64,
    /// The fault served when the `failure_rate` draw fails. Default
    /// `Fault::status(500)`.
    pub failure: Fault,
    /// Tokens in the canonical answer. Default 16.
    pub completion_tokens: u32,
    /// Delay before each token chunk of a stream. Default 0.
    pub token_interval: Duration,
    /// The `model` reported in responses; `None` (the default) echoes the
    /// request's `model` (or the Azure deployment name, or `"mock"`).
    pub model: Option<String>,
    /// Dimensions of the embedding vectors (unless the request asks for
    /// `dimensions`). Default 8.
    pub embedding_dims: usize,
    /// Seed of the draws for `jitter` and `failure_rate`; the draws are a
    /// pure function of the seed and the request's position in the order
    /// of arrival (counted from the last `set_behavior`/`reset_counts`).
    /// Default 0.
    pub seed: u64,
    /// When true, a chat request whose last message has role `"assistant"`
    /// (an assistant prefill, see the crate docs) gets a 400 with code
    /// `"prefill_not_supported"`, counted as a fault, as from a model that
    /// cannot continue a partial answer. The rejection comes after
    /// [`latency`](Self::latency) (no jitter) and before the script: it
    /// consumes neither a scripted fault nor a draw. Default false.
    pub reject_prefill: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            failure_rate: 0.0,
            failure: Fault::status(500),
            completion_tokens: 16,
            token_interval: Duration::ZERO,
            model: None,
            embedding_dims: 8,
            seed: 0,
            reject_prefill: false,
        }
    }
}

/// One explicit outcome for a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// An HTTP error with an OpenAI-shaped JSON body
    /// `{"error":{"message","type","param":null,"code"}}`.
    Status {
        /// The HTTP status code.
        status: u16,
        /// An optional `retry-after` / `retry-after-ms` header.
        retry_after: Option<RetryAfter>,
        /// The error message; `None` uses an OpenAI-like default for the status.
        message: Option<String>,
    },
    /// 400 with code `"context_length_exceeded"` and OpenAI's message
    /// ("This model's maximum context length is 8192 tokens. However, your
    /// messages resulted in 9000 tokens. ...").
    ContextWindow,
    /// 400 with type `"invalid_request_error"` and a content-filter message;
    /// the code is `"content_policy_violation"`, or Azure's `"content_filter"`
    /// (with an `innererror`) on `/openai/...` paths.
    ContentPolicy,
    /// Never answer: hold the connection open until the client gives up or
    /// the server shuts down (then a 503 is sent).
    Hang,
    /// Success, but wait this long (instead of `latency`; `jitter` still
    /// applies) before the response headers.
    SlowFirstToken(Duration),
    /// Streams only: send the role chunk and this many content chunks, then
    /// abort the connection (no `finish_reason`, no `[DONE]`). Non-stream
    /// requests get a normal success.
    CutStreamAfter(u32),
    /// A plain success (useful inside scripts).
    Ok,
    /// A 200 whose answer was filtered: `finish_reason: "content_filter"`
    /// (as Azure reports a completion its content filter stopped).
    ContentFiltered,
    /// Streams only: send the role chunk and `tokens` content chunks, then
    /// send nothing for `stall` while holding the connection open, then
    /// finish the answer normally (the remaining content chunks, the
    /// `finish_reason` chunk, the usage chunk if asked, `[DONE]`). If
    /// `tokens` is at least the number of content chunks, the stall comes
    /// after the last one, before the `finish_reason` chunk. The stall ends
    /// early (and the stream is aborted) if the server shuts down.
    ///
    /// A slow success, not a fault: it is counted in
    /// [`successes`](crate::MockDeployment::successes) when the stream
    /// completes (when `[DONE]` is produced), not when the headers are
    /// sent; a stream the client abandons during the stall (or cut by a
    /// shutdown) is counted in neither `successes` nor `faults`.
    /// Non-stream requests get a normal success.
    StallAfter {
        /// Content chunks sent before the stall.
        tokens: u32,
        /// How long nothing is sent.
        stall: Duration,
    },
    /// Streams only: one extra SSE event whose data is not valid JSON
    /// (`data: {"id": broken` followed by a blank line) right after content
    /// chunk number N (1-based; 0 = right after the role chunk; N above the
    /// number of content chunks = after the last one). Every content chunk
    /// is still sent and the stream ends normally with `[DONE]`. Counted
    /// as a success. Non-stream requests get a normal success.
    MalformedEventAt(u32),
    /// Streams only: a complete stream (every content chunk, the
    /// `finish_reason` chunk, the usage chunk if asked) without the final
    /// `data: [DONE]`: the body just ends. Counted as a success.
    /// Non-stream requests get a normal success.
    OmitDone,
}

impl Fault {
    /// An HTTP error with this status, no `retry-after` and the default message.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            status: code,
            retry_after: None,
            message: None,
        }
    }

    /// A 429 "rate limit reached" error, optionally with a retry hint.
    pub fn rate_limited(retry_after: Option<RetryAfter>) -> Fault {
        Fault::Status {
            status: 429,
            retry_after,
            message: None,
        }
    }

    /// This fault with a `retry-after` hint (only meaningful for
    /// [`Fault::Status`]; other variants are returned unchanged).
    pub fn with_retry_after(self, ra: RetryAfter) -> Fault {
        match self {
            Fault::Status {
                status, message, ..
            } => Fault::Status {
                status,
                retry_after: Some(ra),
                message,
            },
            other => other,
        }
    }

    /// This fault with an explicit error message (only meaningful for
    /// [`Fault::Status`]; other variants are returned unchanged).
    pub fn with_message(self, msg: impl Into<String>) -> Fault {
        match self {
            Fault::Status {
                status,
                retry_after,
                ..
            } => Fault::Status {
                status,
                retry_after,
                message: Some(msg.into()),
            },
            other => other,
        }
    }
}

/// A retry hint sent with a [`Fault::Status`].
#[derive(Clone, Debug, PartialEq)]
pub enum RetryAfter {
    /// `retry-after: N` (delay in seconds).
    Seconds(u64),
    /// `retry-after: <IMF-fixdate>` (an HTTP date, formatted with
    /// `httpdate::fmt_http_date`).
    HttpDate(SystemTime),
    /// `retry-after-ms: N` (Azure/OpenAI's millisecond variant).
    Millis(u64),
}
