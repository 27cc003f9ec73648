//! Chunks to server-sent events.

use axum::body::Bytes;
use futures_util::{Stream, StreamExt, stream};
use lb_router::ChatCompletionChunk;
use lb_router::ErrorClass;
use lb_router::UpstreamError;
use serde_json::json;

/// Encodes each chunk as `data: <json>\n\n` the moment it arrives, then
/// `data: [DONE]\n\n`. A failed stream ends with an OpenAI-style error event
/// and no `[DONE]`, so a truncated answer never looks complete.
pub(crate) fn encode<S>(
    chunks: S,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send
where
    S: Stream<Item = Result<ChatCompletionChunk, UpstreamError>> + Send + Unpin + 'static,
{
    stream::unfold(Some(chunks), |state| async move {
        let mut chunks = state?;
        match chunks.next().await {
            Some(Ok(chunk)) => {
                let mut buf = Vec::with_capacity(256);
                buf.extend_from_slice(b"data: ");
                if serde_json::to_writer(&mut buf, &chunk).is_err() {
                    return Some((
                        Ok(error_event(&UpstreamError::new(
                            ErrorClass::ServerError,
                            "chunk cannot be encoded",
                        ))),
                        None,
                    ));
                }
                buf.extend_from_slice(b"\n\n");
                Some((Ok(Bytes::from(buf)), Some(chunks)))
            }
            Some(Err(e)) => Some((Ok(error_event(&e)), None)),
            None => Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), None)),
        }
    })
}

fn error_event(e: &UpstreamError) -> Bytes {
    let body = json!({"error": {
        "message": e.message,
        "type": e.class.openai_type(),
        "param": e.param,
        "code": e.code.clone().unwrap_or_else(|| e.client_status().to_string()),
    }});
    Bytes::from(format!("data: {body}\n\n"))
}
