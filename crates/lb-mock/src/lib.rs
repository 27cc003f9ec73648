//! A fake OpenAI-compatible upstream on loopback, with scripted faults.
//!
//! One [`MockServer`] binds several ports on `127.0.0.1`; each port is its
//! own [`MockDeployment`] with its own [`Behavior`] (latency, jitter,
//! failure rate, answer length, ...), its own script of [`Fault`]s for the
//! next requests, and its own counters. Tests drive it in-process through
//! this API; the `lb-mock` binary serves it to other processes, controlled
//! over HTTP under `/__mock/`.
//!
//! [`OtlpCollector`] is the matching fake OpenTelemetry collector: it takes
//! OTLP/HTTP trace exports (protobuf or JSON) on a loopback port and keeps
//! the decoded spans for assertions, or only counts them for benchmarks.
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
//!   `cut_stream_after` (`chunks`) | `stall_after` (`chunks`, `delay_ms`) |
//!   `malformed_event_at` (`chunks`) | `omit_done` | `content_filtered` |
//!   `ok`), `POST /__mock/clear_script`,
//!   `GET`/`POST /__mock/behavior` (`latency_ms`, `jitter_ms`,
//!   `failure_rate`, `failure_status`, `completion_tokens`,
//!   `token_interval_ms`, `model`, `embedding_dims`, `seed`,
//!   `reject_prefill`).
//!
//! # Outcome of a request
//!
//! For chat and embedding requests (after the body parsed): the front of
//! the script if it is non-empty, else a [`Behavior::failure_rate`] draw
//! (serving [`Behavior::failure`]), else success. Successes and error
//! faults wait [`Behavior::latency`] plus a draw in `0..jitter` before the
//! response headers; [`Fault::SlowFirstToken`] replaces the latency.
//!
//! Before that, a chat request with an assistant prefill (see below) on a
//! deployment with [`Behavior::reject_prefill`] gets, after `latency`, a
//! 400 `{"error":{"message":"This model does not support assistant message
//! prefill","type":"invalid_request_error","param":null,
//! "code":"prefill_not_supported"}}`, counted as a fault; it consumes
//! neither a scripted fault nor a draw.
//!
//! # Stream faults
//!
//! These are successes for non-stream requests; for streams:
//!
//! - [`Fault::CutStreamAfter`]`(n)`: the role chunk and `n` content chunks,
//!   then the connection is aborted (a fault);
//! - [`Fault::StallAfter`]` { tokens, stall }`: the role chunk and `tokens`
//!   content chunks, then nothing for `stall` (the connection stays open),
//!   then the rest of the stream as usual. A slow success: counted in
//!   `successes` when `[DONE]` is produced (neither a success nor a fault
//!   if the client gives up during the stall, or on shutdown, which ends
//!   the stall and aborts the stream);
//! - [`Fault::MalformedEventAt`]`(n)`: an extra event `data: {"id": broken`
//!   (not valid JSON) right after content chunk `n` (1-based), then the
//!   rest of the stream as usual, `[DONE]` included (a success);
//! - [`Fault::OmitDone`]: the whole stream (finish chunk, usage chunk if
//!   asked) but no `data: [DONE]`; the body just ends (a success).
//!
//! The chunk counts of these faults count the content chunks of the answer
//! actually sent, so with a prefill they count continuation chunks.
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
//! # Assistant prefill (continuation)
//!
//! A chat request whose **last** message has role `"assistant"` is an
//! assistant prefill (whatever its other fields: Mistral/DeepSeek's
//! `"prefix": true` on the message and vLLM's top-level
//! `"continue_final_message": true` are accepted and change nothing). Its
//! prefill text is the message's `content`: a string, or the text parts
//! concatenated in order without separator (`""` when null or absent).
//! [`MockDeployment::prefill_requests`] counts these requests.
//!
//! Let `P` be the prefill text and `T` = `P` with trailing whitespace
//! trimmed. If `T` is exactly [`canonical_text`]`(k)` for some `k` in
//! `0..=C` (a prefix of the answer ending after a whole word — `T` empty
//! gives `k = 0`), the answer is the *continuation*: tokens `k..C` only,
//! with `finish_reason` `"stop"` and `usage.completion_tokens = C - k`
//! (`max_tokens` limits these new tokens; `prompt_tokens` is estimated as
//! usual, the prefill message included). Otherwise the answer is the full
//! canonical text as usual.
//!
//! The spacing rule: the continuation is the canonical text of tokens
//! `k..C` (words joined by single spaces, no trailing space), **preceded
//! by one space when `k > 0` and `P` has no trailing whitespace**. So for
//! `P` = `canonical_text(k)` or `canonical_text(k) + " "` with `0 < k < C`
//! (or `P` empty), `P + continuation == canonical_text(C)` exactly; with
//! other trailing whitespace (`"\n"`, two spaces) the continuation has no
//! leading space either. In a stream, the continuation's chunks are the
//! canonical chunks of tokens `k..C` (word + space, except the last), the
//! first one starting with the separating space when there is one: with
//! `C = 5`, `"alpha bravo "` is continued by `"charlie "`, `"delta "`,
//! `"echo"`, and `"alpha bravo"` by `" charlie "`, `"delta "`, `"echo"`; a
//! non-stream answer's `content` is their concatenation. A prefill of all
//! `C` tokens gets an empty answer (0 completion tokens).
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
//! answers and [`faults`] injected faults (including hangs, cut streams
//! and refused prefills) when they are answered (a stalled stream is
//! counted as a success when it completes); [`in_flight`] is a gauge;
//! [`prefill_requests`](MockDeployment::prefill_requests) counts chat
//! requests with an assistant prefill.
//!
//! [`successes`]: MockDeployment::successes
//! [`faults`]: MockDeployment::faults
//! [`in_flight`]: MockDeployment::in_flight

// The mock stands for a real upstream and uses real (wall-clock and monotonic) time.
#![allow(clippy::disallowed_methods)]

mod behavior;
mod control;
mod handler;
mod otlp;
mod parse;
mod server;
mod text;

pub use behavior::{Behavior, Fault, RetryAfter};
pub use otlp::{CollectedSpan, OtlpCollector};
pub use server::{MockDeployment, MockServer, RecordedRequest, Stats};
pub use text::{WORDS, canonical_text, canonical_word, estimate_prompt_tokens};
