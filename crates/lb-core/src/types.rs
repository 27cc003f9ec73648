//! OpenAI-compatible wire types.
//!
//! Each type names the fields the router reads and keeps every other field in
//! an `extra` map, so tools, response_format, logprobs and whatever the next
//! API version adds pass through untouched.

use std::pin::Pin;

use futures_core::Stream;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::error::UpstreamError;

/// Fields a type does not model, in their original order.
pub type Extra = Map<String, Value>;

/// A stream of chat completion chunks from one upstream.
pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, UpstreamError>> + Send>>;

/// Keeps an explicit `null` as `Some(Value::Null)`, so it is sent on as given.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Reads `null` as the type's default (upstreams differ in what they leave null).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a count or timestamp leniently: integers, floats (truncated),
/// numeric strings and `null` (zero).
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_or(0, |f| f.max(0.0) as u64),
        _ => 0,
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    lenient_u64(d).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A chat completion request (`POST /v1/chat/completions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model group (or alias, or deployment id) the client asked for.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Whether the client wants a server-sent-event stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Upper bound of generated tokens (legacy name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Upper bound of generated tokens (current name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Every other field (temperature, tools, response_format, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatCompletionRequest {
    /// A request for `model` with `messages` and nothing else.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            stream: None,
            stream_options: None,
            max_tokens: None,
            max_completion_tokens: None,
            extra: Extra::new(),
        }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// The generation limit the client set, under either name.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `stream_options` of a chat completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a final chunk carrying usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One message of a conversation, in a request or a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// A string, an array of content parts, or `null`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Value>,
    /// Every other field (name, tool_calls, tool_call_id, refusal, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    /// A message with `role` and text `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Some(Value::String(content.into())),
            extra: Extra::new(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// The message's text: the string content, or the text parts joined.
    pub fn text(&self) -> String {
        match &self.content {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub total_tokens: u64,
    /// Details (cached tokens, reasoning tokens, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A chat completion response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    /// The upstream's response id.
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// `chat.completion`.
    #[serde(default = "chat_completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub created: u64,
    /// The model that answered, as its upstream reported it.
    #[serde(default, deserialize_with = "nullable")]
    pub model: String,
    /// The generated choices.
    #[serde(default, deserialize_with = "nullable")]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field (system_fingerprint, service_tier, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

fn chat_completion_object() -> String {
    "chat.completion".to_owned()
}

fn chat_completion_chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

/// One choice of a chat completion response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position of this choice.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub index: u32,
    /// The generated message.
    pub message: ChatMessage,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, `content_filter`).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Every other field (logprobs, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One chunk of a streamed chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// The upstream's response id.
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// `chat.completion.chunk`.
    #[serde(default = "chat_completion_chunk_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub created: u64,
    /// The model that answered, as its upstream reported it.
    #[serde(default, deserialize_with = "nullable")]
    pub model: String,
    /// The deltas of this chunk.
    #[serde(default, deserialize_with = "nullable")]
    pub choices: Vec<ChunkChoice>,
    /// Token counts (only on the final chunk, when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatCompletionChunk {
    /// The first `finish_reason` this chunk carries, if any.
    pub fn finish_reason(&self) -> Option<&str> {
        self.choices.iter().find_map(|c| c.finish_reason.as_deref())
    }
}

/// One choice's delta in a stream chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position of this choice.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub index: u32,
    /// The new content (role, content, tool_calls, ...), kept as sent.
    #[serde(default)]
    pub delta: Value,
    /// Why generation stopped, on the last content chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Every other field (logprobs, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChunkChoice {
    /// The text content of this delta, if any.
    pub fn content(&self) -> Option<&str> {
        self.delta.get("content").and_then(Value::as_str)
    }
}

/// An embeddings request (`POST /v1/embeddings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// The model group the client asked for.
    pub model: String,
    /// A string, an array of strings, or token arrays, kept as sent.
    pub input: Value,
    /// Every other field (dimensions, encoding_format, user, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl EmbeddingRequest {
    /// A request embedding `input` with `model`.
    pub fn new(model: impl Into<String>, input: impl Into<Value>) -> Self {
        Self {
            model: model.into(),
            input: input.into(),
            extra: Extra::new(),
        }
    }
}

/// An embeddings response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// `list`.
    #[serde(default = "list_object")]
    pub object: String,
    /// One entry per input, kept as sent (`embedding` may be floats or base64).
    #[serde(default, deserialize_with = "nullable")]
    pub data: Vec<Value>,
    /// The model that answered, as its upstream reported it.
    #[serde(default, deserialize_with = "nullable")]
    pub model: String,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
}

fn list_object() -> String {
    "list".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_request_fields_round_trip() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_object"},
            "logprobs": true,
            "top_logprobs": 2,
            "stream": true,
            "stream_options": {"include_usage": true, "future_flag": 1},
            "max_tokens": 7
        });
        let req: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert!(req.is_stream());
        assert_eq!(req.max_output_tokens(), Some(7));
        assert_eq!(req.messages[3].text(), "hi there");
        assert_eq!(req.messages[1].content, Some(Value::Null));
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn response_keeps_upstream_model_and_unknown_fields() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null},
                         "logprobs": {"content": []}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                      "prompt_tokens_details": {"cached_tokens": 0}},
            "system_fingerprint": "fp_1"
        });
        let resp: ChatCompletionResponse = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(resp.model, "gpt-4o-2024-08-06");
        assert_eq!(resp.usage.as_ref().unwrap().total_tokens, 4);
        assert_eq!(serde_json::to_value(&resp).unwrap(), body);
    }

    #[test]
    fn chunk_finish_reason_and_content() {
        let chunk: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]
        }))
        .unwrap();
        assert_eq!(chunk.finish_reason(), Some("stop"));
        assert_eq!(chunk.choices[0].content(), Some("x"));
    }

    #[test]
    fn nulls_and_odd_numbers_from_upstreams_are_tolerated() {
        let chunk: ChatCompletionChunk = serde_json::from_value(json!({
            "id": null, "created": 1.7e9, "model": null, "choices": null,
            "usage": {"prompt_tokens": null, "completion_tokens": "7", "total_tokens": 7.0}
        }))
        .unwrap();
        assert_eq!(chunk.created, 1_700_000_000);
        assert!(chunk.choices.is_empty());
        let usage = chunk.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (0, 7, 7)
        );
        let resp: ChatCompletionResponse = serde_json::from_value(json!({
            "id": "x", "created": null, "model": "m",
            "choices": [{"index": null, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]
        }))
        .unwrap();
        assert_eq!(resp.choices[0].index, 0);
    }

    #[test]
    fn embeddings_round_trip() {
        let body = json!({"model": "e", "input": ["a", "b"], "dimensions": 8});
        let req: EmbeddingRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }
}
