//! The request path: routing, fault decision, and the OpenAI-shaped answers.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use tokio::sync::watch;

use crate::behavior::{Behavior, Fault, RetryAfter};
use crate::parse::{ChatRequest, EmbeddingRequest};
use crate::server::{BehaviorState, InFlight, RecordedRequest, Shared};
use crate::text::{canonical_word, splitmix64, unit_f64};

/// Largest request body read (bigger bodies get a 400).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest embedding vector served.
const MAX_DIMS: usize = 65_536;

static FAULT_OK: Fault = Fault::Ok;

/// Which endpoint a path names.
enum Route<'a> {
    Chat { azure: Option<&'a str> },
    Embeddings { azure: Option<&'a str> },
    Models,
    Other,
}

fn classify(path: &str) -> Route<'_> {
    match path {
        "/v1/chat/completions" | "/chat/completions" | "/openai/v1/chat/completions" => {
            return Route::Chat { azure: None };
        }
        "/v1/embeddings" | "/embeddings" | "/openai/v1/embeddings" => {
            return Route::Embeddings { azure: None };
        }
        "/v1/models" | "/models" => return Route::Models,
        _ => {}
    }
    let azure = path
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(name, _)| !name.is_empty());
    match azure {
        Some((name, "chat/completions")) => Route::Chat { azure: Some(name) },
        Some((name, "embeddings")) => Route::Embeddings { azure: Some(name) },
        _ => Route::Other,
    }
}

/// Whether an unknown path still counts as a request to the API.
fn under_api(path: &str) -> bool {
    let under = |p: &str| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/v1") || under("/openai")
}

/// The single handler of every port.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if let Some(cmd) = path.strip_prefix("/__mock/") {
        return crate::control::handle(&shared, &parts.method, cmd, body).await;
    }
    let route = classify(path);
    if matches!(route, Route::Other) && !under_api(path) {
        return not_found(&parts);
    }
    let at = shared.recording.load(Relaxed).then(Instant::now);
    let counters = &shared.counters;
    counters.requests.fetch_add(1, Relaxed);
    match route {
        Route::Chat { .. } => counters.chat.fetch_add(1, Relaxed),
        Route::Embeddings { .. } => counters.embeddings.fetch_add(1, Relaxed),
        _ => 0,
    };
    let guard = InFlight::enter(shared);
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("lb-mock could not read the request body: {e}"),
                "invalid_request_error",
                None,
            );
        }
    };
    if let Some(at) = at {
        guard.shared().record(recorded(&parts, &bytes, at));
    }
    let post = parts.method == Method::POST;
    match route {
        Route::Chat { azure } if post => chat(guard, &bytes, azure).await,
        Route::Embeddings { azure } if post => embeddings(guard, &bytes, azure).await,
        Route::Models if parts.method == Method::GET => {
            guard.shared().counters.successes.fetch_add(1, Relaxed);
            models()
        }
        Route::Chat { .. } | Route::Embeddings { .. } => method_not_allowed("POST"),
        Route::Models => method_not_allowed("GET"),
        Route::Other => not_found(&parts),
    }
}

fn recorded(parts: &Parts, bytes: &Bytes, at: Instant) -> RecordedRequest {
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_owned(), v)
        })
        .collect();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
        })
    };
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: path.to_owned(),
        headers,
        body,
        at,
    }
}

/// How a successful stream departs from the normal one.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StreamFault {
    None,
    /// Abort after this many content chunks ([`Fault::CutStreamAfter`]).
    Cut(u32),
    /// Send nothing for `stall` after `after` content chunks ([`Fault::StallAfter`]).
    Stall {
        after: u32,
        stall: Duration,
    },
    /// An invalid-JSON event after this many content chunks ([`Fault::MalformedEventAt`]).
    Malformed(u32),
    /// No `[DONE]` ([`Fault::OmitDone`]).
    OmitDone,
}

/// What to do with a chat/embedding request.
enum Outcome {
    /// Succeed after `delay`; streams depart from the normal one as `stream` says.
    Success {
        delay: Duration,
        stream: StreamFault,
        filtered: bool,
    },
    /// Fail after `delay` with this fault (`Status`, `ContextWindow`,
    /// `ContentPolicy` or `Hang`).
    Fail { delay: Duration },
}

/// Script front, then the `failure_rate` draw, then success.
fn decide<'b>(shared: &Shared, b: &'b Behavior) -> (Cow<'b, Fault>, Outcome) {
    let scripted = shared.next_scripted();
    let (u, jitter) = shared.draw(b);
    let fault = match scripted {
        Some(f) => Cow::Owned(f),
        None if u < b.failure_rate => Cow::Borrowed(&b.failure),
        None => Cow::Borrowed(&FAULT_OK),
    };
    let delay = b.latency.saturating_add(jitter);
    let success = |stream| Outcome::Success {
        delay,
        stream,
        filtered: false,
    };
    let outcome = match &*fault {
        Fault::Ok => success(StreamFault::None),
        Fault::ContentFiltered => Outcome::Success {
            delay,
            stream: StreamFault::None,
            filtered: true,
        },
        Fault::SlowFirstToken(d) => Outcome::Success {
            delay: d.saturating_add(jitter),
            stream: StreamFault::None,
            filtered: false,
        },
        Fault::CutStreamAfter(n) => success(StreamFault::Cut(*n)),
        Fault::StallAfter { tokens, stall } => success(StreamFault::Stall {
            after: *tokens,
            stall: *stall,
        }),
        Fault::MalformedEventAt(n) => success(StreamFault::Malformed(*n)),
        Fault::OmitDone => success(StreamFault::OmitDone),
        Fault::Status { .. } | Fault::ContextWindow | Fault::ContentPolicy | Fault::Hang => {
            Outcome::Fail { delay }
        }
    };
    (fault, outcome)
}

/// Resolves when the deployment shuts down (or every handle is gone).
async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await.map(|_| ());
}

/// Sleeps `d` unless the deployment shuts down first; `false` on shutdown.
async fn pause(shutdown: &watch::Receiver<bool>, d: Duration) -> bool {
    if d.is_zero() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = shutdown_signal(shutdown.clone()) => false,
    }
}

/// Serves an injected fault (after its delay) and counts it.
async fn fail(shared: &Shared, fault: &Fault, delay: Duration, azure: bool) -> Response {
    if let Fault::Hang = fault {
        shared.counters.faults.fetch_add(1, Relaxed);
        shutdown_signal(shared.shutdown.clone()).await;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "lb-mock is shutting down",
            "server_error",
            None,
        );
    }
    pause(&shared.shutdown, delay).await;
    shared.counters.faults.fetch_add(1, Relaxed);
    fault_response(fault, azure)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn invalid_json(e: &serde_json::Error) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        &format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.) \
             lb-mock: {e}"
        ),
        "invalid_request_error",
        None,
    )
}

// ---------------------------------------------------------------- chat

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: ChatId,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

struct ChatId(u64);

impl Serialize for ChatId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("chatcmpl-mock-{}", self.0))
    }
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// The 400 of [`Behavior::reject_prefill`].
const PREFILL_NOT_SUPPORTED: &str = "This model does not support assistant message prefill";

async fn chat(guard: InFlight, bytes: &[u8], azure: Option<&str>) -> Response {
    let req: ChatRequest<'_> = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => return invalid_json(&e),
    };
    let shared = guard.shared();
    let st = shared.state.load_full();
    let b = &st.behavior;
    let prefill = req.messages.prefill.as_deref();
    if prefill.is_some() {
        shared.counters.prefill.fetch_add(1, Relaxed);
        if b.reject_prefill {
            pause(&shared.shutdown, b.latency).await;
            shared.counters.faults.fetch_add(1, Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                PREFILL_NOT_SUPPORTED,
                "invalid_request_error",
                Some("prefill_not_supported"),
            );
        }
    }
    let (fault, outcome) = decide(shared, b);
    let (delay, stream_fault, filtered) = match outcome {
        Outcome::Fail { delay } => return fail(shared, &fault, delay, azure.is_some()).await,
        Outcome::Success {
            delay,
            stream,
            filtered,
        } => (delay, stream, filtered),
    };
    pause(&shared.shutdown, delay).await;

    // A prefill at a token boundary is continued: the answer starts after
    // its `first` tokens (with the separating space if it had none).
    let (first, lead_space) = prefill
        .and_then(|p| st.text.match_prefill(p))
        .unwrap_or((0, false));
    let remaining = st.text.len().saturating_sub(first);
    let limit = match (req.max_tokens, req.max_completion_tokens) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (n, finish) = match limit {
        _ if filtered => (remaining, "content_filter"),
        Some(m) if m < u64::from(remaining) => (m as u32, "length"),
        _ => (remaining, "stop"),
    };
    let lead_space = lead_space && n > 0;
    let model = b
        .model
        .as_deref()
        .or(req.model.as_ref().map(|m| &*m.0))
        .or(azure)
        .unwrap_or("mock");
    let id = shared.next_id.fetch_add(1, Relaxed);
    let created = unix_secs();
    let prompt = req.messages.tokens;

    if req.stream == Some(true) {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        match stream_fault {
            StreamFault::Cut(_) => shared.counters.faults.fetch_add(1, Relaxed),
            // Counted when the stream completes.
            StreamFault::Stall { .. } => 0,
            _ => shared.counters.successes.fetch_add(1, Relaxed),
        };
        let needs_shutdown =
            !b.token_interval.is_zero() || matches!(stream_fault, StreamFault::Stall { .. });
        let shutdown = needs_shutdown.then(|| shared.shutdown.clone());
        let ctx = StreamCtx {
            prefix: chunk_prefix(id, created, model),
            suffix: if include_usage {
                ",\"usage\":null}\n\n"
            } else {
                "}\n\n"
            },
            first,
            lead_space,
            n,
            finish,
            include_usage,
            prompt,
            interval: b.token_interval,
            fault: stream_fault,
            count_on_done: matches!(stream_fault, StreamFault::Stall { .. }),
            step: Step::Role,
            guard: Some(guard),
            shutdown,
        };
        return stream_response(ctx);
    }

    let body = to_json(&ChatCompletion {
        id: ChatId(id),
        object: "chat.completion",
        created,
        model,
        system_fingerprint: "fp_mock",
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: st.text.slice(first, n, lead_space),
            },
            logprobs: None,
            finish_reason: finish,
        }],
        usage: Usage {
            prompt_tokens: prompt,
            completion_tokens: u64::from(n),
            total_tokens: prompt + u64::from(n),
        },
    });
    shared.counters.successes.fetch_add(1, Relaxed);
    json(StatusCode::OK, body)
}

// -------------------------------------------------------------- stream

/// `data: {"id":...,"choices":[` — the part every chunk of a stream shares.
fn chunk_prefix(id: u64, created: u64, model: &str) -> String {
    let mut p = String::with_capacity(128 + model.len());
    let _ = write!(
        p,
        "data: {{\"id\":\"chatcmpl-mock-{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":"
    );
    push_json_str(&mut p, model);
    p.push_str(",\"system_fingerprint\":\"fp_mock\",\"choices\":[");
    p
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Role,
    /// The `j`-th content chunk of this answer.
    Token(u32),
    /// The stall of [`StreamFault::Stall`], after this many content chunks.
    Stall(u32),
    /// The bad event of [`StreamFault::Malformed`], after this many content chunks.
    Malformed(u32),
    Finish,
    Usage,
    Done,
    Abort,
    End,
}

/// The invalid-JSON event of [`Fault::MalformedEventAt`].
const MALFORMED_EVENT: &[u8] = b"data: {\"id\": broken\n\n";

struct StreamCtx {
    prefix: String,
    suffix: &'static str,
    /// Canonical index of the first token (tokens continued after a prefill).
    first: u32,
    /// Whether the first content chunk starts with the separating space.
    lead_space: bool,
    /// Content chunks in this answer.
    n: u32,
    finish: &'static str,
    include_usage: bool,
    prompt: u64,
    interval: Duration,
    /// The departure from a normal stream; `Stall`/`Malformed` become
    /// `None` once served.
    fault: StreamFault,
    /// Count the success when `[DONE]` is produced (stalled streams).
    count_on_done: bool,
    step: Step,
    /// Keeps the request in flight until the last chunk is produced.
    guard: Option<InFlight>,
    /// Present when chunks are spaced or stalled, to cut the waits on shutdown.
    shutdown: Option<watch::Receiver<bool>>,
}

impl StreamCtx {
    fn chunk(&self, middle: &[&str]) -> Bytes {
        let len =
            self.prefix.len() + middle.iter().map(|s| s.len()).sum::<usize>() + self.suffix.len();
        let mut s = String::with_capacity(len);
        s.push_str(&self.prefix);
        for m in middle {
            s.push_str(m);
        }
        s.push_str(self.suffix);
        Bytes::from(s)
    }

    /// The step after `sent` content chunks.
    fn after_tokens(&self, sent: u32) -> Step {
        match self.fault {
            StreamFault::Cut(c) if sent >= c || sent >= self.n => Step::Abort,
            StreamFault::Stall { after, .. } if sent == after.min(self.n) => Step::Stall(sent),
            StreamFault::Malformed(at) if sent == at.min(self.n) => Step::Malformed(sent),
            _ if sent < self.n => Step::Token(sent),
            _ => Step::Finish,
        }
    }

    /// The step after the `finish_reason` and usage chunks.
    fn after_usage(&self) -> Step {
        if self.fault == StreamFault::OmitDone {
            Step::End
        } else {
            Step::Done
        }
    }

    async fn next_item(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            return match self.step {
                Step::Role => {
                    self.step = self.after_tokens(0);
                    Some(Ok(self.chunk(&[
                        "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]",
                    ])))
                }
                Step::Token(j) => {
                    if let Some(rx) = &self.shutdown {
                        if !pause(rx, self.interval).await {
                            return self.abort("lb-mock is shutting down");
                        }
                    }
                    let lead = if j == 0 && self.lead_space { " " } else { "" };
                    let space = if j + 1 < self.n { " " } else { "" };
                    let chunk = self.chunk(&[
                        "{\"index\":0,\"delta\":{\"content\":\"",
                        lead,
                        canonical_word(self.first.saturating_add(j)),
                        space,
                        "\"},\"logprobs\":null,\"finish_reason\":null}]",
                    ]);
                    self.step = self.after_tokens(j + 1);
                    Some(Ok(chunk))
                }
                Step::Stall(sent) => {
                    if let (StreamFault::Stall { stall, .. }, Some(rx)) =
                        (self.fault, &self.shutdown)
                    {
                        if !pause(rx, stall).await {
                            return self.abort("lb-mock is shutting down");
                        }
                    }
                    self.fault = StreamFault::None;
                    self.step = self.after_tokens(sent);
                    continue;
                }
                Step::Malformed(sent) => {
                    self.fault = StreamFault::None;
                    self.step = self.after_tokens(sent);
                    Some(Ok(Bytes::from_static(MALFORMED_EVENT)))
                }
                Step::Finish => {
                    self.step = if self.include_usage {
                        Step::Usage
                    } else {
                        self.after_usage()
                    };
                    Some(Ok(self.chunk(&[
                        "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"",
                        self.finish,
                        "\"}]",
                    ])))
                }
                Step::Usage => {
                    self.step = self.after_usage();
                    let mut s = String::with_capacity(self.prefix.len() + 96);
                    s.push_str(&self.prefix);
                    let n = u64::from(self.n);
                    let _ = write!(
                        s,
                        "],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\n",
                        self.prompt,
                        n,
                        self.prompt + n
                    );
                    Some(Ok(Bytes::from(s)))
                }
                Step::Done => {
                    self.step = Step::End;
                    if let Some(g) = self.guard.take() {
                        if self.count_on_done {
                            g.shared().counters.successes.fetch_add(1, Relaxed);
                        }
                    }
                    Some(Ok(Bytes::from_static(b"data: [DONE]\n\n")))
                }
                Step::Abort => {
                    // Let hyper flush the chunks already produced before the abort.
                    tokio::task::yield_now().await;
                    self.abort("lb-mock cut the stream (Fault::CutStreamAfter)")
                }
                Step::End => {
                    self.guard = None;
                    None
                }
            };
        }
    }

    fn abort(&mut self, why: &'static str) -> Option<Result<Bytes, std::io::Error>> {
        self.step = Step::End;
        self.guard = None;
        Some(Err(std::io::Error::other(why)))
    }
}

fn stream_response(ctx: StreamCtx) -> Response {
    let stream = futures_util::stream::unfold(ctx, |mut ctx| async move {
        let item = ctx.next_item().await?;
        Some((item, ctx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

// ---------------------------------------------------------- embeddings

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: EmbeddingData<'a>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

struct EmbeddingData<'a> {
    hashes: &'a [u64],
    dims: usize,
}

impl Serialize for EmbeddingData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item {
            object: &'static str,
            index: usize,
            embedding: Vector,
        }
        let mut seq = s.serialize_seq(Some(self.hashes.len()))?;
        for (index, &hash) in self.hashes.iter().enumerate() {
            seq.serialize_element(&Item {
                object: "embedding",
                index,
                embedding: Vector {
                    hash,
                    dims: self.dims,
                },
            })?;
        }
        seq.end()
    }
}

/// A deterministic unit vector derived from the input's hash.
struct Vector {
    hash: u64,
    dims: usize,
}

impl Vector {
    fn raw(&self, j: usize) -> f64 {
        unit_f64(splitmix64(self.hash ^ splitmix64(j as u64))) * 2.0 - 1.0
    }
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let norm = (0..self.dims)
            .map(|j| self.raw(j).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        let mut seq = s.serialize_seq(Some(self.dims))?;
        for j in 0..self.dims {
            seq.serialize_element(&((self.raw(j) / norm) as f32))?;
        }
        seq.end()
    }
}

async fn embeddings(guard: InFlight, bytes: &[u8], azure: Option<&str>) -> Response {
    let req: EmbeddingRequest<'_> = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => return invalid_json(&e),
    };
    let shared = guard.shared();
    let st: Arc<BehaviorState> = shared.state.load_full();
    let b = &st.behavior;
    let (fault, outcome) = decide(shared, b);
    match outcome {
        Outcome::Fail { delay } => return fail(shared, &fault, delay, azure.is_some()).await,
        Outcome::Success { delay, .. } => {
            pause(&shared.shutdown, delay).await;
        }
    }
    let dims = req
        .dimensions
        .filter(|d| *d > 0)
        .unwrap_or(b.embedding_dims)
        .min(MAX_DIMS);
    let model = b
        .model
        .as_deref()
        .or(req.model.as_ref().map(|m| &*m.0))
        .or(azure)
        .unwrap_or("mock");
    let body = to_json(&EmbeddingList {
        object: "list",
        data: EmbeddingData {
            hashes: &req.input.hashes,
            dims,
        },
        model,
        usage: EmbeddingUsage {
            prompt_tokens: req.input.tokens,
            total_tokens: req.input.tokens,
        },
    });
    shared.counters.successes.fetch_add(1, Relaxed);
    json(StatusCode::OK, body)
}

// -------------------------------------------------------------- others

fn models() -> Response {
    json(
        StatusCode::OK,
        br#"{"object":"list","data":[{"id":"mock","object":"model","created":1700000000,"owned_by":"lb-mock"}]}"#
            .to_vec(),
    )
}

fn not_found(parts: &Parts) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", parts.method, parts.uri.path()),
        "invalid_request_error",
        None,
    )
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method not allowed: use {allow}"),
        "invalid_request_error",
        None,
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

// -------------------------------------------------------------- errors

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An OpenAI-shaped error response.
pub(crate) fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    json(
        status,
        to_json(&ErrorEnvelope {
            error: ErrorBody {
                message,
                kind,
                param: None,
                code,
            },
        }),
    )
}

/// Default (message, type, code) of an injected error status.
fn status_defaults(status: u16) -> (&'static str, &'static str, Option<&'static str>) {
    match status {
        400 => (
            "Invalid request (injected by lb-mock).",
            "invalid_request_error",
            None,
        ),
        401 => (
            "Incorrect API key provided (injected by lb-mock).",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => (
            "You are not allowed to perform this request (injected by lb-mock).",
            "permission_error",
            Some("permission_denied"),
        ),
        404 => (
            "The model does not exist or you do not have access to it (injected by lb-mock).",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        408 => (
            "Request timed out (injected by lb-mock).",
            "timeout_error",
            Some("timeout"),
        ),
        429 => (
            "Rate limit reached for requests (injected by lb-mock). Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that! \
             (injected by lb-mock)",
            "server_error",
            None,
        ),
        502 => (
            "Bad gateway (injected by lb-mock).",
            "server_error",
            Some("bad_gateway"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later (injected by lb-mock).",
            "server_error",
            Some("service_unavailable"),
        ),
        504 => (
            "Gateway timeout (injected by lb-mock).",
            "server_error",
            Some("gateway_timeout"),
        ),
        s if s >= 500 => ("Server error (injected by lb-mock).", "server_error", None),
        _ => (
            "Request failed (injected by lb-mock).",
            "invalid_request_error",
            None,
        ),
    }
}

const CONTEXT_WINDOW_MESSAGE: &str = "This model's maximum context length is 8192 tokens. \
     However, your messages resulted in 9000 tokens. Please reduce the length of the messages.";

const CONTENT_POLICY_MESSAGE: &str = "The response was filtered due to the prompt triggering \
     the content management policy (content_filter). Please modify your prompt and retry.";

const AZURE_CONTENT_POLICY_MESSAGE: &str = "The response was filtered due to the prompt \
     triggering Azure OpenAI's content management policy. Please modify your prompt and retry. \
     To learn more about our content filtering policies please read our documentation: \
     https://go.microsoft.com/fwlink/?linkid=2198766";

/// The response of an error fault (`Status`, `ContextWindow`, `ContentPolicy`).
fn fault_response(fault: &Fault, azure: bool) -> Response {
    match fault {
        Fault::Status {
            status,
            retry_after,
            message,
        } => {
            let (default_msg, kind, code) = status_defaults(*status);
            let code_status =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = error(
                code_status,
                message.as_deref().unwrap_or(default_msg),
                kind,
                code,
            );
            if let Some(ra) = retry_after {
                let (name, value) = match ra {
                    RetryAfter::Seconds(s) => (
                        HeaderName::from_static("retry-after"),
                        HeaderValue::from(*s),
                    ),
                    RetryAfter::Millis(ms) => (
                        HeaderName::from_static("retry-after-ms"),
                        HeaderValue::from(*ms),
                    ),
                    RetryAfter::HttpDate(t) => {
                        match HeaderValue::try_from(httpdate::fmt_http_date(*t)) {
                            Ok(v) => (HeaderName::from_static("retry-after"), v),
                            Err(_) => return r,
                        }
                    }
                };
                r.headers_mut().insert(name, value);
            }
            r
        }
        Fault::ContextWindow => error(
            StatusCode::BAD_REQUEST,
            CONTEXT_WINDOW_MESSAGE,
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
        Fault::ContentPolicy if azure => {
            let body = serde_json::json!({
                "error": {
                    "message": AZURE_CONTENT_POLICY_MESSAGE,
                    "type": "invalid_request_error",
                    "param": "prompt",
                    "code": "content_filter",
                    "status": 400,
                    "innererror": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_result": {
                            "hate": {"filtered": true, "severity": "high"},
                            "self_harm": {"filtered": false, "severity": "safe"},
                            "sexual": {"filtered": false, "severity": "safe"},
                            "violence": {"filtered": false, "severity": "safe"}
                        }
                    }
                }
            });
            json(StatusCode::BAD_REQUEST, to_json(&body))
        }
        Fault::ContentPolicy => error(
            StatusCode::BAD_REQUEST,
            CONTENT_POLICY_MESSAGE,
            "invalid_request_error",
            Some("content_policy_violation"),
        ),
        // Successes and hangs never get here.
        Fault::Hang
        | Fault::SlowFirstToken(_)
        | Fault::CutStreamAfter(_)
        | Fault::StallAfter { .. }
        | Fault::MalformedEventAt(_)
        | Fault::OmitDone
        | Fault::Ok
        | Fault::ContentFiltered => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "lb-mock: not an error fault",
            "server_error",
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            classify("/v1/chat/completions"),
            Route::Chat { azure: None }
        ));
        assert!(matches!(
            classify("/openai/deployments/gpt-4o/chat/completions"),
            Route::Chat {
                azure: Some("gpt-4o")
            }
        ));
        assert!(matches!(
            classify("/openai/deployments/e/embeddings"),
            Route::Embeddings { azure: Some("e") }
        ));
        assert!(matches!(
            classify("/openai/deployments//embeddings"),
            Route::Other
        ));
        assert!(matches!(classify("/v1/models"), Route::Models));
        assert!(under_api("/v1/foo") && under_api("/openai") && !under_api("/v1x"));
        assert!(!under_api("/health"));
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }
}
