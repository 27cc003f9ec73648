//! Token estimates for admission.
//!
//! A call is admitted against TPM limits and budgets before its real usage is
//! known, so the router reserves an estimate: [`estimate_prompt_tokens`] from
//! the messages, plus the generation limit (or
//! [`DEFAULT_COMPLETION_ESTIMATE`]) from [`estimate_call_tokens`]. The
//! estimate is settled with the real usage after the call.
//!
//! Why an estimate of ~4 bytes a token rather than a tokenizer: it costs
//! nanoseconds, needs no model files, and its error is settled after the call.

use lb_core::ChatCompletionRequest;

/// Tokens assumed for the answer when a request sets no `max_tokens`.
pub const DEFAULT_COMPLETION_ESTIMATE: u64 = 256;

/// Tokens every message costs besides its text (role and separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;

/// Estimates the prompt's tokens: a quarter of the text bytes (rounded up)
/// plus [`TOKENS_PER_MESSAGE`] per message, plus 3 for the reply's priming.
pub fn estimate_prompt_tokens(req: &ChatCompletionRequest) -> u64 {
    let mut tokens = 3;
    for m in &req.messages {
        let bytes = match &m.content {
            Some(serde_json::Value::String(s)) => s.len(),
            Some(serde_json::Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(serde_json::Value::as_str))
                .map(str::len)
                .sum(),
            _ => 0,
        };
        tokens += TOKENS_PER_MESSAGE + (bytes as u64).div_ceil(4);
    }
    tokens
}

/// Estimates a whole call: prompt plus the generation limit, or
/// [`DEFAULT_COMPLETION_ESTIMATE`] when none is set.
pub fn estimate_call_tokens(req: &ChatCompletionRequest) -> u64 {
    estimate_prompt_tokens(req)
        + req
            .max_output_tokens()
            .map_or(DEFAULT_COMPLETION_ESTIMATE, u64::from)
}

/// Estimates an embeddings call: a quarter of the input text's bytes
/// (rounded up), at least one token per input item.
pub fn estimate_embedding_tokens(req: &lb_core::EmbeddingRequest) -> u64 {
    fn walk(v: &serde_json::Value) -> u64 {
        match v {
            serde_json::Value::String(s) => (s.len() as u64).div_ceil(4).max(1),
            serde_json::Value::Array(items) if items.iter().all(serde_json::Value::is_number) => {
                items.len() as u64
            }
            serde_json::Value::Array(items) => items.iter().map(walk).sum(),
            _ => 1,
        }
    }
    walk(&req.input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::ChatMessage;

    #[test]
    fn estimate_counts_text_and_messages() {
        let req = ChatCompletionRequest::new(
            "g",
            vec![ChatMessage::system("12345678"), ChatMessage::user("123")],
        );
        // 3 + (4 + 2) + (4 + 1)
        assert_eq!(estimate_prompt_tokens(&req), 14);
        assert_eq!(estimate_call_tokens(&req), 14 + DEFAULT_COMPLETION_ESTIMATE);
    }

    #[test]
    fn embedding_estimate_counts_strings_and_token_arrays() {
        let req =
            lb_core::EmbeddingRequest::new("e", serde_json::json!(["12345678", "1", [1, 2, 3]]));
        assert_eq!(estimate_embedding_tokens(&req), 2 + 1 + 3);
    }
}
