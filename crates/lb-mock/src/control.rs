//! The HTTP control plane under `/__mock/` (not counted as requests).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::behavior::{Behavior, Fault, RetryAfter};
use crate::handler::{error, json, to_json};
use crate::server::Shared;

/// Body of `POST /__mock/fail_next`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    #[serde(default = "one")]
    n: usize,
    /// `status` (default), `hang`, `context_window`, `content_policy`,
    /// `slow_first_token`, `cut_stream_after`, `stall_after`,
    /// `malformed_event_at`, `omit_done`, `content_filtered` or `ok`.
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    retry_after_secs: Option<u64>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    message: Option<String>,
    /// For `slow_first_token` and `stall_after` (default 1000).
    #[serde(default)]
    delay_ms: Option<u64>,
    /// For `cut_stream_after`, `stall_after` and `malformed_event_at` (default 1).
    #[serde(default)]
    chunks: Option<u32>,
}

fn one() -> usize {
    1
}

impl FailNext {
    fn fault(&self) -> Result<Fault, String> {
        Ok(match self.kind.as_deref().unwrap_or("status") {
            "status" => Fault::Status {
                status: self.status.unwrap_or(500),
                retry_after: match (self.retry_after_secs, self.retry_after_ms) {
                    (_, Some(ms)) => Some(RetryAfter::Millis(ms)),
                    (Some(s), None) => Some(RetryAfter::Seconds(s)),
                    (None, None) => None,
                },
                message: self.message.clone(),
            },
            "hang" => Fault::Hang,
            "context_window" => Fault::ContextWindow,
            "content_policy" => Fault::ContentPolicy,
            "slow_first_token" => {
                Fault::SlowFirstToken(Duration::from_millis(self.delay_ms.unwrap_or(1000)))
            }
            "cut_stream_after" => Fault::CutStreamAfter(self.chunks.unwrap_or(1)),
            "stall_after" => Fault::StallAfter {
                tokens: self.chunks.unwrap_or(1),
                stall: Duration::from_millis(self.delay_ms.unwrap_or(1000)),
            },
            "malformed_event_at" => Fault::MalformedEventAt(self.chunks.unwrap_or(1)),
            "omit_done" => Fault::OmitDone,
            "ok" => Fault::Ok,
            "content_filtered" => Fault::ContentFiltered,
            other => return Err(format!("unknown fault kind {other:?}")),
        })
    }
}

/// Body of `POST /__mock/behavior` (every field optional) and the answer
/// of `GET /__mock/behavior`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct BehaviorDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_rate: Option<f64>,
    /// Status of the drawn failure (a [`Fault::Status`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    embedding_dims: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reject_prefill: Option<bool>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl BehaviorDto {
    fn from_behavior(b: &Behavior) -> BehaviorDto {
        BehaviorDto {
            latency_ms: Some(millis(b.latency)),
            jitter_ms: Some(millis(b.jitter)),
            failure_rate: Some(b.failure_rate),
            failure_status: match b.failure {
                Fault::Status { status, .. } => Some(status),
                _ => None,
            },
            completion_tokens: Some(b.completion_tokens),
            token_interval_ms: Some(millis(b.token_interval)),
            model: b.model.clone(),
            embedding_dims: Some(b.embedding_dims),
            seed: Some(b.seed),
            reject_prefill: Some(b.reject_prefill),
        }
    }

    fn apply(self, b: &mut Behavior) {
        if let Some(v) = self.latency_ms {
            b.latency = Duration::from_millis(v);
        }
        if let Some(v) = self.jitter_ms {
            b.jitter = Duration::from_millis(v);
        }
        if let Some(v) = self.failure_rate {
            b.failure_rate = v;
        }
        if let Some(v) = self.failure_status {
            b.failure = Fault::status(v);
        }
        if let Some(v) = self.completion_tokens {
            b.completion_tokens = v;
        }
        if let Some(v) = self.token_interval_ms {
            b.token_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.model {
            b.model = Some(v).filter(|m| !m.is_empty());
        }
        if let Some(v) = self.embedding_dims {
            b.embedding_dims = v;
        }
        if let Some(v) = self.seed {
            b.seed = v;
        }
        if let Some(v) = self.reject_prefill {
            b.reject_prefill = v;
        }
    }
}

fn ok() -> Response {
    json(StatusCode::OK, br#"{"ok":true}"#.to_vec())
}

fn bad_request(msg: &str) -> Response {
    error(StatusCode::BAD_REQUEST, msg, "invalid_request_error", None)
}

/// Parses an optional JSON body (empty = default).
fn parse_body<T: for<'de> Deserialize<'de> + Default>(bytes: &[u8]) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("invalid control body: {e}"))
}

impl Default for FailNext {
    fn default() -> Self {
        FailNext {
            n: 1,
            kind: None,
            status: None,
            retry_after_secs: None,
            retry_after_ms: None,
            message: None,
            delay_ms: None,
            chunks: None,
        }
    }
}

/// Serves `/__mock/<cmd>`:
/// - `GET stats` → the [`Stats`](crate::Stats) as JSON;
/// - `POST reset` → zero the counters, clear the script and the record;
/// - `POST fail_next` `{"n":3,"status":503,"retry_after_secs":2}` → queue faults;
/// - `POST clear_script`;
/// - `GET behavior` / `POST behavior` `{"latency_ms":50,...}` → read / patch the behaviour.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    method: &Method,
    cmd: &str,
    body: Body,
) -> Response {
    let bytes = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return bad_request(&format!("could not read the body: {e}")),
    };
    let get = method == Method::GET;
    let post = method == Method::POST || method == Method::PUT;
    match cmd {
        "stats" if get => json(StatusCode::OK, to_json(&shared.stats())),
        "reset" if post => {
            shared.clear_all();
            ok()
        }
        "fail_next" if post => {
            let req: FailNext = match parse_body(&bytes) {
                Ok(r) => r,
                Err(e) => return bad_request(&e),
            };
            match req.fault() {
                Ok(f) => {
                    shared.push_faults(std::iter::repeat_n(f, req.n));
                    ok()
                }
                Err(e) => bad_request(&e),
            }
        }
        "clear_script" if post => {
            shared.clear_script();
            ok()
        }
        "behavior" if get => {
            let b = shared.state.load();
            json(
                StatusCode::OK,
                to_json(&BehaviorDto::from_behavior(&b.behavior)),
            )
        }
        "behavior" if post => {
            let patch: BehaviorDto = match parse_body(&bytes) {
                Ok(p) => p,
                Err(e) => return bad_request(&e),
            };
            let mut b = shared.state.load().behavior.clone();
            patch.apply(&mut b);
            shared.set_behavior(b);
            json(
                StatusCode::OK,
                to_json(&BehaviorDto::from_behavior(&shared.state.load().behavior)),
            )
        }
        "stats" | "reset" | "fail_next" | "clear_script" | "behavior" => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
            "invalid_request_error",
            None,
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("unknown control endpoint /__mock/{cmd}"),
            "invalid_request_error",
            None,
        ),
    }
}
