//! Server-sent events from an upstream, turned into typed chunks.

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt, stream};
use lb_core::{ChatCompletionChunk, ErrorClass, UpstreamError};
use serde_json::Value;

use crate::openai::Redactor;

/// Turns an upstream `text/event-stream` body into chunks.
///
/// Ends cleanly at `data: [DONE]`, or at end of body after a chunk carried a
/// `finish_reason`. A body that ends (or breaks) before either yields a final
/// connection error, so a truncated answer never looks complete. An event of
/// invalid JSON is dropped and logged; an in-band `{"error": ...}` event ends
/// the stream with that error.
pub(crate) fn chunks(
    resp: reqwest::Response,
    redactor: Redactor,
) -> impl Stream<Item = Result<ChatCompletionChunk, UpstreamError>> + Send {
    struct State<S> {
        events: S,
        finished: bool,
        saw_finish_reason: bool,
        redactor: Redactor,
    }
    let state = State {
        events: Box::pin(resp.bytes_stream().eventsource()),
        finished: false,
        saw_finish_reason: false,
        redactor,
    };
    stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            match st.events.next().await {
                None => {
                    st.finished = true;
                    if st.saw_finish_reason {
                        return None;
                    }
                    let err = UpstreamError::new(
                        ErrorClass::Connection,
                        "upstream stream ended before the answer was complete",
                    );
                    return Some((Err(err), st));
                }
                Some(Err(e)) => {
                    st.finished = true;
                    let err = UpstreamError::new(
                        ErrorClass::Connection,
                        st.redactor.redact(format!("upstream stream broke: {e}")),
                    );
                    return Some((Err(err), st));
                }
                Some(Ok(event)) => {
                    let data = event.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    if data == "[DONE]" {
                        return None;
                    }
                    match serde_json::from_str::<Value>(data) {
                        Ok(Value::Object(map)) if map.contains_key("error") => {
                            st.finished = true;
                            return Some((Err(in_band_error(&map["error"], &st.redactor)), st));
                        }
                        Ok(value) => match serde_json::from_value::<ChatCompletionChunk>(value) {
                            Ok(chunk) => {
                                if chunk.finish_reason().is_some() {
                                    st.saw_finish_reason = true;
                                }
                                return Some((Ok(chunk), st));
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "dropped a stream event that is not a chat completion chunk");
                            }
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "dropped a malformed stream event");
                        }
                    }
                }
            }
        }
    })
}

fn in_band_error(err: &Value, redactor: &Redactor) -> UpstreamError {
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| err.to_string(), str::to_owned);
    let code = err.get("code").and_then(|c| match c {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let kind = err.get("type").and_then(Value::as_str).unwrap_or_default();
    let class = match (kind, code.as_deref()) {
        (_, Some("rate_limit_exceeded")) | ("rate_limit_error", _) => ErrorClass::RateLimited,
        (_, Some("context_length_exceeded")) => ErrorClass::ContextWindowExceeded,
        (_, Some("content_filter" | "content_policy_violation")) => ErrorClass::ContentPolicy,
        _ => ErrorClass::ServerError,
    };
    UpstreamError::new(class, redactor.redact(message)).with_code(code)
}
