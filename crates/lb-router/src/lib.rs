//! The LLM deployment router: the facade most users depend on.
//!
//! A [`Router`] spreads calls over *deployments* (the same model behind
//! several providers, regions or keys), grouped by model name. It reads
//! LiteLLM's proxy config ([`Router::from_yaml`], [`Router::from_path`]) or
//! is built in Rust ([`Router::builder`]), and serves
//! [`Router::completion`], [`Router::completion_stream`] and
//! [`Router::embedding`]. Every response says which deployment answered
//! ([`ResponseMeta`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lb_router::{ChatCompletionRequest, ChatMessage, Router};
//!
//! let router = Router::from_yaml(r#"
//! model_list:
//!   - model_name: gpt-4o
//!     litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
//!   - model_name: gpt-4o
//!     litellm_params: {model: azure/gpt-4o, api_base: "https://eu.example.com", api_key: os.environ/AZURE_KEY}
//! "#)?;
//! let req = ChatCompletionRequest::new("gpt-4o", vec![ChatMessage::user("hello")]);
//! let routed = router.completion(req).await?;
//! println!("{} answered: {}", routed.meta.deployment_id, routed.response.choices[0].message.text());
//! # Ok(()) }
//! ```
//!
//! The call loop is one function for every API surface (chat, stream,
//! embeddings) and for library and gateway alike: resolve the group, rank
//! its deployments with the strategy, try them in order, record each
//! outcome. Policies (what a failure means) come from `lb-health`, ranking
//! from `lb-strategies`, wire formats from `lb-providers`.

#![forbid(unsafe_code)]

mod builder;
mod call;
pub mod config;
mod error;
mod health;
mod limits;
mod metrics;
mod otlp;
mod router;
mod stream;
mod telemetry;

pub use builder::RouterBuilder;
pub use config::{AliasTarget, GeneralSettings, RedisSettings, RouterConfig, RouterSettings};
pub use error::{AttemptFailure, ConfigError, RouterError};
pub use health::DeploymentHealth;
pub use metrics::{DeploymentCounters, GroupCounters, MetricsSnapshot};
pub use router::{ResponseMeta, Routed, RoutedStream, Router};
pub use stream::CONTINUATION_FIELD;
pub use telemetry::{
    DEFAULT_OTLP_TRACES_ENDPOINT, DEFAULT_SERVICE_NAME, OtlpProtocol, TracingSettings,
};

pub use lb_core::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, Clock,
    Deployment, DeploymentId, EmbeddingRequest, EmbeddingResponse, ErrorClass, ManualClock, Secret,
    SharedClock, SystemClock, UpstreamError, Usage, prefix_within,
};
pub use lb_providers::{HttpClient, Provider};
pub use lb_strategies::{CallContext, Candidate, Strategy};

/// The README's examples compile.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
