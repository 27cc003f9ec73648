//! A fake OpenAI-compatible upstream on loopback, with scripted faults.
//!
//! One [`MockServer`] binds several ports on `127.0.0.1`; each port is its
//! own [`MockDeployment`] with its own [`Behavior`] (latency, jitter,
//! failure rate, answer length, ...), its own script of [`Fault`]s for the
//! next requests, and its own counters. Tests drive it in-process through
//! this API; the `lb-mock` binary serves it to other processes, controlled
//! over HTTP under `/__mock/`.
//!
//! It is built to never be the bottleneck of a gateway benchmark: counters
//! are atomics, the behaviour is read lock-free (`arc-swap`), the script
//! mutex is only touched when an atomic length says the script is
//! non-empty, request bodies are parsed without copying, and the random
//! draws are a hash of (seed, arrival position) instead of a shared RNG.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use lb_mock::{Behavior, Fault, MockServer, RetryAfter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let server = MockServer::start(2).await?;
//!     let d = server.deployment(0);
//!     d.set_behavior(Behavior { completion_tokens: 3, ..Behavior::default() });
//!     d.fail_next(1, Fault::rate_limited(Some(RetryAfter::Seconds(1))));
//!
//!     let client = reqwest::Client::new();
//!     let url = format!("{}/chat/completions", d.base_url());
//!     let body = serde_json::json!({
//!         "model": "gpt-4o-mini",
//!         "messages": [{"role": "user", "content": "say something"}]
//!     });
//!     let first = client.post(&url).json(&body).send().await?;
//!     assert_eq!(first.status(), 429);
//!     assert_eq!(first.headers()["retry-after"], "1");
//!
//!     let second: serde_json::Value = client.post(&url).json(&body).send().await?.json().await?;
//!     assert_eq!(second["choices"][0]["message"]["content"], "alpha bravo charlie");
//!     assert_eq!(second["usage"]["prompt_tokens"], 2 + 3);
//!     assert_eq!((d.requests(), d.faults(), d.successes()), (2, 1, 1));
//!     assert_eq!(server.deployment(1).requests(), 0);
//!
//!     server.shutdown().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! # HTTP surface (per port)
//!
//! - `POST /v1/chat/completions`, `/chat/completions`,
//!   `/openai/deployments/{name}/chat/completions` (Azure; any query such as
//!   `api-version` is accepted and recorded) — chat, streamed when
//!   `"stream": true`;
//! - `POST /v1/embeddings`, `/embeddings`, `/openai/deployments/{name}/embeddings`;
//! - `GET /v1/models` — one model, `"mock"`;
//! - anything else under `/v1` or `/openai` — 404 (counted); other paths —
//!   404 (not counted); invalid JSON — 400; all errors are OpenAI-shaped
//!   `{"error":{"message","type","param","code"}}`;
//! - control plane (not counted): `GET /__mock/stats`, `POST /__mock/reset`,
//!   `POST /__mock/fail_next` (`{"n":3,"status":503,"retry_after_secs":2}`,
//!   also `retry_after_ms`, `message`, and `kind`: `status` | `hang` |
//!   `context_window` | `content_policy` | `slow_first_token` (`delay_ms`) |
//!   `cut_stream_after` (`chunks`) | `ok`), `POST /__mock/clear_script`,
//!   `GET`/`POST /__mock/behavior` (`latency_ms`, `jitter_ms`,
//!   `failure_rate`, `failure_status`, `completion_tokens`,
//!   `token_interval_ms`, `model`, `embedding_dims`, `seed`).
//!
//! # Outcome of a request
//!
//! For chat and embedding requests (after the body parsed): the front of
//! the script if it is non-empty, else a [`Behavior::failure_rate`] draw
//! (serving [`Behavior::failure`]), else success. Successes and error
//! faults wait [`Behavior::latency`] plus a draw in `0..jitter` before the
//! response headers; [`Fault::SlowFirstToken`] replaces the latency.
//!
//! # The canonical answer
//!
//! An answer of `C` tokens ([`Behavior::completion_tokens`], default 16) is
//! the first `C` words of the cycling NATO alphabet [`WORDS`]
//! (`"alpha bravo charlie ..."`, after `"zulu"` comes `"alpha"` again)
//! joined by single spaces — see [`canonical_text`]. In a stream, token `i`
//! is one chunk whose `delta.content` is the word followed by a space,
//! except the last token; the chunks concatenate to the same text. When
//! the request's `max_tokens` or `max_completion_tokens` (the smaller if
//! both) is below `C`, only that many tokens are generated and
//! `finish_reason` is `"length"` instead of `"stop"`.
//!
//! A stream is: a role chunk (`delta: {"role":"assistant","content":""}`),
//! one chunk per token (spaced by [`Behavior::token_interval`]), a chunk
//! with an empty delta and the `finish_reason`, a `"choices":[]` chunk with
//! `usage` if `stream_options.include_usage` is true (every other chunk
//! then carries `"usage":null`), and `data: [DONE]`.
//!
//! # The prompt-token estimate
//!
//! `usage.prompt_tokens` of a chat request is deterministic: the sum over
//! `messages` of the number of whitespace-separated words in the message's
//! text content plus 3 per message. `content` may be a string, an array of
//! parts (only `{"type":"text","text":...}` parts count), or null/absent
//! (0 words). See [`estimate_prompt_tokens`]. For embeddings,
//! `prompt_tokens` is the total number of whitespace-separated words over
//! the inputs (a token-array input counts its tokens). Embedding vectors
//! are unit vectors derived from a hash of each input, so equal inputs get
//! equal vectors.
//!
//! # Counters
//!
//! [`MockDeployment::requests`] counts on arrival; [`successes`] counts 2xx
//! answers and [`faults`] injected faults (including hangs and cut
//! streams) when they are answered; [`in_flight`] is a gauge.
//!
//! [`successes`]: MockDeployment::successes
//! [`faults`]: MockDeployment::faults
//! [`in_flight`]: MockDeployment::in_flight

// The mock stands for a real upstream and uses real (wall-clock and monotonic) time.
#![allow(clippy::disallowed_methods)]

mod behavior;
mod control;
mod handler;
mod parse;
mod server;
mod text;

pub use behavior::{Behavior, Fault, RetryAfter};
pub use server::{MockDeployment, MockServer, RecordedRequest, Stats};
pub use text::{WORDS, canonical_text, canonical_word, estimate_prompt_tokens};
