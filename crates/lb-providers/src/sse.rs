//! Server-sent events from an upstream, turned into typed chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt, stream};
use lb_core::{ChatCompletionChunk, ErrorClass, UpstreamError};
use serde_json::Value;

use crate::openai::Redactor;

/// Which choices a stream has opened and finished.
#[derive(Debug, Default)]
struct Completion {
    seen: Vec<(u32, bool)>,
}

/// Most distinct choices a stream may open (OpenAI's largest `n`): what an
/// upstream sends beyond is refused, not tracked without end.
const MAX_CHOICES: usize = 128;

impl Completion {
    /// Notes the chunk's choices; false when it opens more than
    /// [`MAX_CHOICES`] in all.
    fn record(&mut self, chunk: &ChatCompletionChunk) -> bool {
        for c in &chunk.choices {
            let finished = c.finish_reason.is_some();
            if let Some(entry) = self.seen.iter_mut().find(|(i, _)| *i == c.index) {
                entry.1 |= finished;
            } else if self.seen.len() < MAX_CHOICES {
                self.seen.push((c.index, finished));
            } else {
                return false;
            }
        }
        true
    }

    /// Every choice that appeared reached a `finish_reason` (and at least one did).
    fn complete(&self) -> bool {
        !self.seen.is_empty() && self.seen.iter().all(|(_, finished)| *finished)
    }
}

fn truncated() -> UpstreamError {
    UpstreamError::new(
        ErrorClass::Connection,
        "upstream stream ended before the answer was complete",
    )
}

/// Longest event accepted from an upstream, in bytes: a body that never
/// ends its event must not fill the router's memory.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Why an upstream's event stream could not be read.
#[derive(Debug)]
enum BodyError {
    Transport(reqwest::Error),
    EventTooLarge,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => e.fmt(f),
            Self::EventTooLarge => write!(f, "an event was longer than {MAX_EVENT_BYTES} bytes"),
        }
    }
}

impl From<reqwest::Error> for BodyError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(e)
    }
}

/// `body` with an error once an event (the bytes since the last blank
/// line) grows past `max` bytes.
fn capped<S, E>(body: S, max: usize) -> impl Stream<Item = Result<bytes::Bytes, BodyError>>
where
    S: Stream<Item = Result<bytes::Bytes, E>>,
    E: Into<BodyError>,
{
    let term = |c: u8| c == b'\n' || c == b'\r';
    // Two line ends in a row (a `\r\n` pair is one) end an event.
    let blank = move |a: u8, b: u8| term(a) && term(b) && !(a == b'\r' && b == b'\n');
    let (mut event, mut last, mut over) = (0_usize, 0_u8, false);
    body.map(move |r| {
        let b = r.map_err(Into::into)?;
        if over {
            return Err(BodyError::EventTooLarge);
        }
        // The last blank line in the chunk, searched from its end (where
        // a well-formed stream has one).
        let cut = (1..b.len())
            .rev()
            .find(|&i| blank(b[i - 1], b[i]))
            .or_else(|| b.first().filter(|&&c| blank(last, c)).map(|_| 0));
        event = match cut {
            Some(i) => b.len() - i - 1,
            None => event.saturating_add(b.len()),
        };
        last = b.last().copied().unwrap_or(last);
        if event > max {
            over = true;
            return Err(BodyError::EventTooLarge);
        }
        Ok(b)
    })
}

/// Turns an upstream `text/event-stream` body into chunks.
///
/// The stream is complete when every choice that appeared reached a
/// `finish_reason`; it then ends cleanly at `data: [DONE]` or at the end of
/// the body. A stream that ends (with or without `[DONE]`) or breaks before
/// that yields a final connection error, so a truncated answer never looks
/// complete. An event of invalid JSON is dropped and logged; valid JSON that
/// is not a chunk, or an in-band `{"error": {...}}`, ends the stream with an
/// error.
pub(crate) fn chunks(
    resp: reqwest::Response,
    redactor: Redactor,
    malformed: Arc<AtomicU64>,
) -> impl Stream<Item = Result<ChatCompletionChunk, UpstreamError>> + Send {
    struct State<S> {
        events: S,
        finished: bool,
        completion: Completion,
        redactor: Redactor,
        malformed: Arc<AtomicU64>,
    }
    let state = State {
        events: Box::pin(capped(resp.bytes_stream(), MAX_EVENT_BYTES).eventsource()),
        finished: false,
        completion: Completion::default(),
        redactor,
        malformed,
    };
    stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        loop {
            let end = |mut st: State<_>, err: UpstreamError| {
                st.finished = true;
                Some((Err(err), st))
            };
            match st.events.next().await {
                None => {
                    if st.completion.complete() {
                        return None;
                    }
                    return end(st, truncated());
                }
                Some(Err(e)) => {
                    let err = UpstreamError::new(
                        ErrorClass::Connection,
                        st.redactor.redact(format!("upstream stream broke: {e}")),
                    );
                    return end(st, err);
                }
                Some(Ok(event)) => {
                    let data = event.data.trim();
                    if data.is_empty() {
                        continue;
                    }
                    if data == "[DONE]" {
                        if st.completion.complete() {
                            return None;
                        }
                        return end(st, truncated());
                    }
                    // One pass for the common case: a chunk (every field
                    // has a default, so an `{"error": ...}` event parses too
                    // and is told apart by its field).
                    if let Ok(chunk) = serde_json::from_str::<ChatCompletionChunk>(data) {
                        if let Some(e) = chunk.extra.get("error").filter(|e| !e.is_null()) {
                            let err = in_band_error(e, &st.redactor);
                            return end(st, err);
                        }
                        if !st.completion.record(&chunk) {
                            // The request's own doing (an `n` over 128), not
                            // the deployment's: it must not cool it down.
                            let err = UpstreamError::new(
                                ErrorClass::BadRequest,
                                format!("upstream stream opened more than {MAX_CHOICES} choices"),
                            );
                            return end(st, err);
                        }
                        return Some((Ok(chunk), st));
                    }
                    // Not a chunk: an error event, valid JSON of another
                    // shape, or not JSON at all.
                    match serde_json::from_str::<Value>(data) {
                        Ok(Value::Object(map))
                            if map.get("error").is_some_and(|e| !e.is_null()) =>
                        {
                            let err = in_band_error(&map["error"], &st.redactor);
                            return end(st, err);
                        }
                        Ok(value) => {
                            let e = serde_json::from_value::<ChatCompletionChunk>(value)
                                .err()
                                .map_or_else(|| "unexpected shape".to_owned(), |e| e.to_string());
                            let err = UpstreamError::new(
                                ErrorClass::ServerError,
                                format!(
                                    "upstream sent a stream event that is not a chat completion chunk: {e}"
                                ),
                            );
                            return end(st, err);
                        }
                        Err(e) => {
                            st.malformed.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` in pieces of `size` bytes, through [`capped`]: how many pieces
    /// passed before an error, and whether there was one.
    async fn through_cap(text: &[u8], size: usize, max: usize) -> (usize, bool) {
        let pieces: Vec<Result<bytes::Bytes, BodyError>> = text
            .chunks(size)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let out: Vec<_> = capped(stream::iter(pieces), max).collect().await;
        let ok = out.iter().take_while(|r| r.is_ok()).count();
        (ok, ok < out.len())
    }

    #[tokio::test]
    async fn events_are_capped_but_a_long_stream_of_small_ones_is_not() {
        for end in ["\n\n", "\r\n\r\n", "\r\r"] {
            let event = format!("data: {}{end}", "x".repeat(90));
            let stream = event.repeat(1000);
            for size in [1, 7, 64, 4096, stream.len()] {
                let (_, failed) = through_cap(stream.as_bytes(), size, 200).await;
                assert!(!failed, "{end:?} in pieces of {size}");
            }
        }
        // One event of many short lines, never ended.
        let lines = "data: x\n".repeat(100);
        let (ok, failed) = through_cap(lines.as_bytes(), 10, 200).await;
        assert!(failed);
        assert!(ok * 10 <= 210, "{ok}");
        // One long line.
        let (_, failed) = through_cap("data: ".repeat(100).as_bytes(), 4096, 200).await;
        assert!(failed);
    }

    fn chunk(choices: &[(u32, Option<&str>)]) -> ChatCompletionChunk {
        let choices: Vec<Value> = choices
            .iter()
            .map(|(i, f)| serde_json::json!({"index": i, "delta": {"content": "x"}, "finish_reason": f}))
            .collect();
        serde_json::from_value(serde_json::json!({"choices": choices})).unwrap()
    }

    #[test]
    fn complete_only_when_every_choice_finished() {
        let mut c = Completion::default();
        assert!(!c.complete());
        c.record(&chunk(&[(0, None), (1, None)]));
        c.record(&chunk(&[(0, Some("stop"))]));
        assert!(!c.complete(), "choice 1 is still open");
        c.record(&chunk(&[(1, Some("length"))]));
        assert!(c.complete());
        c.record(&chunk(&[]));
        assert!(c.complete(), "a usage-only chunk changes nothing");
    }

    #[tokio::test]
    async fn a_stream_may_open_at_most_128_choices() {
        let events: Vec<String> = (0..=128u32)
            .map(|i| {
                serde_json::json!({"id": "c", "choices": [{"index": i, "delta": {"content": "x"},
                    "finish_reason": "stop"}]})
                .to_string()
            })
            .collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (all, _) = parse(&refs[..128]).await;
        assert_eq!(all.len(), 128);
        assert!(all.iter().all(Result::is_ok), "128 choices are served");
        let (over, _) = parse(&refs).await;
        assert_eq!(over.len(), 129);
        let last = over.last().and_then(|r| r.as_ref().err());
        assert!(
            last.is_some_and(|e| e.class == ErrorClass::BadRequest
                && e.message.contains("more than 128 choices")),
            "{last:?}"
        );
    }

    /// What `chunks` yields for an upstream body of SSE `events`.
    async fn parse(events: &[&str]) -> (Vec<Result<ChatCompletionChunk, UpstreamError>>, u64) {
        let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        let resp = reqwest::Response::from(http::Response::new(body));
        let malformed = Arc::new(AtomicU64::new(0));
        let out = chunks(resp, Redactor::default(), Arc::clone(&malformed))
            .collect::<Vec<_>>()
            .await;
        (out, malformed.load(Ordering::Relaxed))
    }

    const DONE: &str =
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#;

    #[tokio::test]
    async fn chunks_errors_and_malformed_events_are_told_apart() {
        // A good answer with a malformed event and a null `error` field.
        let (out, malformed) = parse(&[
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"}}],"error":null}"#,
            "{not json",
            DONE,
            "[DONE]",
        ])
        .await;
        assert_eq!(malformed, 1);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        assert_eq!(
            out[1].as_ref().ok().and_then(|c| c.finish_reason()),
            Some("stop")
        );

        // An in-band error, alone or beside chunk fields, ends the stream.
        for event in [
            r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
            r#"{"id":"c","choices":[],"error":{"message":"boom","code":"context_length_exceeded"}}"#,
            r#"{"choices":"not a list","error":{"message":"boom"}}"#,
        ] {
            let (out, _) = parse(&[event, DONE]).await;
            assert_eq!(out.len(), 1, "{event}: {out:?}");
            let e = out[0]
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{event}: {out:?}"));
            assert!(e.message == "slow down" || e.message == "boom", "{e:?}");
        }
        let (out, _) =
            parse(&[r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#]).await;
        assert_eq!(
            out[0].as_ref().err().map(|e| e.class),
            Some(ErrorClass::RateLimited)
        );

        // Valid JSON that is not a chunk ends the stream with a server error.
        for event in ["[1,2]", "42", r#"{"choices":"not a list"}"#] {
            let (out, malformed) = parse(&[event, DONE]).await;
            assert_eq!(malformed, 0);
            assert_eq!(out.len(), 1, "{event}: {out:?}");
            let e = out[0]
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{event}: {out:?}"));
            assert_eq!(e.class, ErrorClass::ServerError);
            assert!(e.message.contains("not a chat completion chunk"), "{e:?}");
        }
    }
}
