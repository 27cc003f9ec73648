//! HTTP clients for LLM upstreams.
//!
//! One [`Provider`] trait, implemented by [`OpenAiCompatible`] for OpenAI,
//! Azure OpenAI and every OpenAI-compatible API (vLLM, Ollama, Groq,
//! Together, Mistral, DeepSeek, OpenRouter, ...), chosen by the
//! `provider/model` prefix as LiteLLM does ([`resolve_model`]).
//! Upstream failures are classified once, here, by the pure function
//! [`classify_error`]; every router policy reads the resulting
//! [`lb_core::ErrorClass`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), lb_core::UpstreamError> {
//! use std::time::Duration;
//! use lb_core::{ChatCompletionRequest, ChatMessage, Deployment, Secret};
//! use lb_providers::{HttpClient, OpenAiCompatible, Provider};
//!
//! let deployment = Deployment::new("d1", "gpt-4o", "openai", "gpt-4o")
//!     .with_api_key(Secret::new("sk-..."));
//! let provider = OpenAiCompatible::new(&HttpClient::new(), &deployment)
//!     .expect("known provider");
//! let req = ChatCompletionRequest::new("gpt-4o", vec![ChatMessage::user("hi")]);
//! let resp = provider.chat(&req, Duration::from_secs(30)).await?;
//! println!("{}", resp.choices[0].message.text());
//! # Ok(()) }
//! ```
//!
//! Why only this crate knows wire formats: the router, strategies and health
//! policies stay the same whichever upstream answers, and a new provider is
//! one new [`Provider`] implementation.

#![forbid(unsafe_code)]

mod classify;
mod error;
mod openai;
mod registry;
mod sse;

pub use classify::{MAX_RETRY_AFTER, classify_error, parse_retry_after};
pub use error::ProviderConfigError;
pub use openai::{DEFAULT_MAX_RESPONSE_BYTES, HttpClient, OpenAiCompatible, read_up_to};
pub use registry::{ProviderSpec, ResolvedModel, known_providers, resolve_model};

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lb_core::{
    ChatCompletionRequest, ChatCompletionResponse, ChunkStream, EmbeddingRequest,
    EmbeddingResponse, UpstreamError,
};

/// One upstream deployment's API client.
///
/// Implementations send the request as given (plus the deployment's model
/// name and default parameters) and classify every failure.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// A chat completion; `timeout` bounds the whole call.
    async fn chat(
        &self,
        req: &ChatCompletionRequest,
        timeout: Duration,
    ) -> Result<ChatCompletionResponse, UpstreamError>;

    /// A streamed chat completion; `timeout` bounds the wait for the first
    /// chunk, `idle` every gap between chunks after it.
    async fn chat_stream(
        &self,
        req: &ChatCompletionRequest,
        timeout: Duration,
        idle: Duration,
    ) -> Result<ChunkStream, UpstreamError>;

    /// An embeddings call; `timeout` bounds the whole call.
    async fn embedding(
        &self,
        req: &EmbeddingRequest,
        timeout: Duration,
    ) -> Result<EmbeddingResponse, UpstreamError>;

    /// The base URL calls go to, without query string (for response metadata).
    fn api_base(&self) -> &str;

    /// Whether this deployment continues an answer from an assistant
    /// prefill (the text delivered so far as the last message).
    fn supports_prefill(&self) -> bool {
        false
    }

    /// Shapes a continuation request (its last message is the assistant text
    /// delivered so far) in the form this provider accepts.
    fn prepare_continuation(&self, _req: &mut ChatCompletionRequest) {}

    /// Stream events of invalid JSON dropped so far.
    fn malformed_events(&self) -> u64 {
        0
    }
}
