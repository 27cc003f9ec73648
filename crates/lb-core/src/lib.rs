//! Core types of the LLM deployment router.
//!
//! Every other `lb-*` crate speaks these types: the OpenAI-compatible wire
//! types ([`ChatCompletionRequest`], [`ChatCompletionResponse`],
//! [`ChatCompletionChunk`], [`EmbeddingRequest`], [`EmbeddingResponse`]), the
//! [`Deployment`] a call is routed to, the one error classification
//! ([`ErrorClass`]) that every policy reads, the [`Secret`] wrapper for API
//! keys, and the injectable [`Clock`].
//!
//! ```
//! use lb_core::{ChatCompletionRequest, ChatMessage, Secret};
//!
//! let req: ChatCompletionRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#,
//! ).unwrap();
//! assert_eq!(req.messages[0].role, "user");
//! // Fields this crate does not model are kept and forwarded untouched.
//! assert_eq!(req.extra["temperature"], 0.2);
//!
//! let key = Secret::new("sk-live-123");
//! assert_eq!(format!("{key:?}"), "Secret(***)");
//! # let _ = ChatMessage::user("hello");
//! ```
//!
//! Why one crate of plain types: users who build a custom router from single
//! crates (their own strategy, provider or state store) share these types and
//! nothing else, and `lb-core` depends on no other `lb-*` crate.

#![forbid(unsafe_code)]

pub mod clock;
pub mod deployment;
pub mod error;
pub mod secret;
pub mod state;
pub mod types;

pub use clock::{Clock, ManualClock, SharedClock, Sleep, SystemClock};
pub use deployment::{Deployment, DeploymentId, ModelGroup};
pub use error::{ErrorClass, UpstreamError, prefix_within};
pub use secret::{Secret, url_without_credentials};
pub use state::{
    ConcurrencyPermit, ConcurrencyStore, CooldownBus, CounterKey, CounterStore, Denied,
    DeploymentLoad, LoadExchange, ParseWindowError, Reservation, Reserve, ReserveError, Reserved,
    SharedCooldown, StoreError, Window,
};
pub use types::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, Choice,
    ChunkChoice, ChunkStream, EmbeddingRequest, EmbeddingResponse, StreamOptions, Usage,
};
