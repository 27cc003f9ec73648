//! The router and its one call loop.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lb_core::{
    ChatCompletionRequest, ChatCompletionResponse, ChunkStream, Deployment, DeploymentId,
    EmbeddingRequest, EmbeddingResponse, SharedClock, UpstreamError,
};
use lb_health::{DeploymentStats, FailureContext, HealthTracker, RetryBudget, StatsSnapshot};
use lb_providers::Provider;
use lb_strategies::Strategy;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;

use crate::config::{AliasTarget, RouterSettings};
use crate::error::RouterError;
use crate::telemetry;
use lb_budget::RateLimitStatus;
use opentelemetry::trace::FutureExt as _;

/// What happened to a call that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    /// The deployment that answered.
    pub deployment_id: DeploymentId,
    /// Its base URL, without query string.
    pub api_base: String,
    /// The model group routed (after alias resolution).
    pub model_group: Arc<str>,
    /// The deployment's provider.
    pub provider: Arc<str>,
    /// Attempts made in all groups, the successful one included.
    pub attempts: u32,
    /// Retries made in the group that answered (attempts there after the first).
    pub retries: u32,
    /// Retries allowed in the group that answered.
    pub max_retries: u32,
    /// Fallback groups tried before the answer (0: the requested group answered).
    pub fallbacks: u32,
    /// Time from the call's start to the answer (stream: to the first chunk).
    pub latency: Duration,
    /// Time spent waiting on upstreams, every attempt included (streams: to
    /// the first chunk); the rest of `latency` is the router's own.
    pub upstream_latency: Duration,
    /// The call's cost in USD, when the price and usage are known (streams:
    /// in the final usage chunk instead).
    pub cost: Option<f64>,
    /// The group's rate limits after this call (`x-ratelimit-*`), when it has any.
    pub rate_limits: Option<RateLimitStatus>,
    /// The OpenTelemetry trace id of the call (32 hex digits), when traces are on.
    pub trace_id: Option<String>,
    /// Position of the deployment in the router.
    pub(crate) index: usize,
}

impl ResponseMeta {
    /// Retries made in the group that answered.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// A response with what happened to its call.
#[derive(Debug, Clone)]
pub struct Routed<T> {
    /// The upstream's response, untouched.
    pub response: T,
    /// Routing metadata.
    pub meta: ResponseMeta,
}

/// A streamed response with what happened to its call.
pub struct RoutedStream {
    /// The chunks, passed through one by one; an `Err` item ends the stream.
    pub stream: ChunkStream,
    /// Routing metadata (known once the first chunk arrived).
    pub meta: ResponseMeta,
}

impl fmt::Debug for RoutedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedStream")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// The other instances' load on one deployment (see [`lb_core::LoadExchange`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RemoteLoad {
    pub(crate) in_flight: u64,
    pub(crate) latency: Option<f64>,
    pub(crate) ttft: Option<f64>,
    pub(crate) peak_ewma: Option<f64>,
}

pub(crate) struct Entry {
    pub(crate) deployment: Arc<Deployment>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) stats: Arc<DeploymentStats>,
    pub(crate) latency: std::sync::Mutex<LatencyStats>,
}

/// Which candidate stats the strategy reads (the router gathers only those).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrategyNeeds {
    pub(crate) in_flight: bool,
    pub(crate) latency: bool,
    pub(crate) cost: bool,
    pub(crate) usage: bool,
}

impl StrategyNeeds {
    /// What a built-in strategy reads; a custom one gets everything.
    pub(crate) fn of(kind: Option<lb_strategies::StrategyKind>) -> Self {
        use lb_strategies::StrategyKind as K;
        let (in_flight, latency, cost, usage) = match kind {
            Some(K::SimpleShuffle) => (false, false, false, false),
            Some(K::LeastBusy) => (true, false, false, false),
            Some(K::LatencyBased) => (false, true, false, false),
            Some(K::LatencyP2C) => (true, true, false, false),
            Some(K::CostBased) => (false, false, true, false),
            Some(K::UsageBased) => (false, false, false, true),
            None => (true, true, true, true),
        };
        Self {
            in_flight,
            latency,
            cost,
            usage,
        }
    }
}

/// Latency samples of one deployment, for the latency strategies.
#[derive(Debug)]
pub(crate) struct LatencyStats {
    /// Seconds per output token of completions (seconds per call for embeddings).
    pub(crate) completion: lb_health::LatencyWindow,
    /// Seconds to the first chunk of streams.
    pub(crate) ttft: lb_health::LatencyWindow,
    /// Peak-EWMA of response times, seconds.
    pub(crate) ewma: lb_health::PeakEwma,
}

impl LatencyStats {
    pub(crate) fn new(max_size: std::num::NonZeroUsize, ttl: Duration) -> Self {
        Self {
            completion: lb_health::LatencyWindow::new(max_size, ttl),
            ttft: lb_health::LatencyWindow::new(max_size, ttl),
            ewma: lb_health::PeakEwma::default(),
        }
    }
}

pub(crate) struct Inner {
    /// Prometheus handles (per router).
    pub(crate) metrics: crate::metrics::RouterMetrics,
    /// OpenTelemetry tracer and exporter, when traces are on.
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
    /// Cooldowns shared with other instances (Redis), when configured.
    pub(crate) bus: Option<Arc<dyn lb_core::CooldownBus>>,
    /// Strategy statistics shared with other instances (Redis), when the
    /// strategy reads any and `redis_stats_interval` is not 0.
    pub(crate) load: Option<(Arc<dyn lb_core::LoadExchange>, Duration)>,
    /// The other instances' loads, by deployment index (from `load`).
    pub(crate) remote: arc_swap::ArcSwap<Vec<RemoteLoad>>,
    pub(crate) strategy_needs: StrategyNeeds,
    /// Per group: its deployments' shuffle weights, summed once.
    pub(crate) group_weights: HashMap<Arc<str>, Arc<lb_strategies::WeightIndex>>,
    pub(crate) health: Arc<HealthTracker>,
    pub(crate) retry_budget: RetryBudget,
    pub(crate) limits: crate::limits::Limits,
    pub(crate) entries: Vec<Entry>,
    /// Some deployment can continue a broken stream's text (a prefill).
    pub(crate) any_prefill: bool,
    pub(crate) groups: HashMap<Arc<str>, Vec<usize>>,
    pub(crate) group_order: Vec<Arc<str>>,
    pub(crate) by_id: HashMap<DeploymentId, usize>,
    pub(crate) aliases: HashMap<String, AliasTarget>,
    pub(crate) strategy: Box<dyn Strategy>,
    pub(crate) settings: RouterSettings,
    pub(crate) clock: SharedClock,
    pub(crate) seed: u64,
    pub(crate) calls: AtomicU64,
    pub(crate) warnings: Vec<String>,
    /// Closes when the router is dropped: background tasks that wait on
    /// something else (the cooldown subscription) also wait on this.
    pub(crate) alive: tokio::sync::watch::Sender<()>,
}

/// The LLM deployment router: resolves a model group, ranks its deployments
/// with the routing strategy, calls them in order until one answers, and
/// says which did.
///
/// Cheap to clone; clones share all state.
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("deployments", &self.inner.entries.len())
            .field("groups", &self.inner.group_order)
            .field("strategy", &self.inner.strategy.name())
            .finish_non_exhaustive()
    }
}

/// Request fields that steer the router and are never sent upstream.
const ROUTER_ONLY_KEYS: &[&str] = &[
    "num_retries",
    "timeout",
    "stream_timeout",
    "request_timeout",
    "metadata",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "disable_fallbacks",
    "max_fallbacks",
    "tags",
    "cooldown_time",
    "mock_testing_fallbacks",
    "mock_testing_context_fallbacks",
    "mock_testing_content_policy_fallbacks",
    "mock_testing_rate_limit_error",
    "caching",
    "litellm_trace_id",
    "priority",
    "stream_idle_timeout",
];

/// Per-call overrides read from the request body.
#[derive(Debug, Default, Clone)]
pub(crate) struct CallOptions {
    /// The request's tags (`metadata.tags` or `tags`), for tag routing.
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) num_retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) stream_timeout: Option<Duration>,
    /// The request's own `fallbacks` (replacing the configured ones).
    pub(crate) fallbacks: Option<Vec<String>>,
    pub(crate) disable_fallbacks: bool,
    pub(crate) stream_idle_timeout: Option<Duration>,
    /// Deployments this call must not use (a continuation avoids the one that broke).
    pub(crate) exclude: Vec<usize>,
    /// Only deployments that continue from an assistant prefill.
    pub(crate) require_prefill: bool,
    /// This call continues a broken stream (it is not a new client call).
    pub(crate) continuation: bool,
    /// The client request's span, when traces are exported.
    pub(crate) trace: Option<opentelemetry::Context>,
}

/// The most retries a request may ask for with `num_retries`.
pub const MAX_REQUEST_NUM_RETRIES: u32 = 10;

/// The most model names a request's own `fallbacks` may list (more is a
/// 400: each name costs a lookup, and a bad one a warning in the log).
pub const MAX_REQUEST_FALLBACKS: usize = 32;

/// The most tags a request may carry (`tags` or `metadata.tags`; more is a
/// 400: each is matched against every deployment's tags per attempt).
pub const MAX_REQUEST_TAGS: usize = 64;

/// A 400 for a list of more than `max` entries.
fn at_most(key: &str, max: usize, what: &str, items: &[Value]) -> Result<(), RouterError> {
    if items.len() <= max {
        return Ok(());
    }
    Err(RouterError::InvalidRequest {
        message: format!("{key}: at most {max} {what}, got {}", items.len()),
        param: Some(key.to_owned()),
    })
}

fn tag_list(key: &str, v: &Value) -> Result<Vec<String>, RouterError> {
    if let Some(items) = v.as_array() {
        at_most(key, MAX_REQUEST_TAGS, "tags", items)?;
    }
    v.as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| bad_param(key, "a list of strings", v))
}

fn string_list(key: &str, v: &Value) -> Result<Vec<String>, RouterError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad_param(key, "a list of model names", v))?;
    at_most(key, MAX_REQUEST_FALLBACKS, "model names", items)?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            // LiteLLM also accepts {"model": "..."} entries.
            Value::Object(o) => o
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad_param(key, "entries with a \"model\"", item)),
            other => Err(bad_param(key, "a list of model names", other)),
        })
        .collect()
}

/// A client-given name as the router echoes it in errors and logs: at most
/// 256 bytes, control characters (a newline forging a log line) escaped.
pub(crate) fn shown_name(name: &str) -> String {
    let cut = lb_core::prefix_within(name, 256);
    let mut out = String::with_capacity(cut.len() + 3);
    for c in cut.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if cut.len() < name.len() {
        out.push_str("...");
    }
    out
}

fn bad_param(param: &str, what: &str, got: &Value) -> RouterError {
    // The value is echoed cut (a client's 10 MB string is not sent back).
    let got = got.to_string();
    let shown = lb_core::prefix_within(&got, 100);
    let more = if shown.len() < got.len() { "..." } else { "" };
    RouterError::InvalidRequest {
        message: format!("{param}: expected {what}, got {shown}{more}"),
        param: Some(param.to_owned()),
    }
}

impl CallOptions {
    /// Takes the router-only keys out of `extra`.
    fn take(extra: &mut serde_json::Map<String, Value>) -> Result<Self, RouterError> {
        let mut opts = CallOptions::default();
        if !ROUTER_ONLY_KEYS.iter().any(|k| extra.contains_key(*k)) {
            return Ok(opts);
        }
        for key in ROUTER_ONLY_KEYS {
            let Some(v) = extra.remove(*key) else {
                continue;
            };
            match *key {
                "num_retries" => {
                    let n = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad_param(key, "a non-negative integer", &v))?;
                    // A client cannot ask for unbounded retries.
                    opts.num_retries = Some(n.min(MAX_REQUEST_NUM_RETRIES));
                }
                "fallbacks" => opts.fallbacks = Some(string_list(key, &v)?),
                "tags" => opts.tags = Some(tag_list(key, &v)?),
                "metadata" => {
                    if let Some(tags) = v.get("tags") {
                        if opts.tags.is_none() {
                            opts.tags = Some(tag_list("metadata.tags", tags)?);
                        }
                    }
                }
                "disable_fallbacks" => {
                    opts.disable_fallbacks = v
                        .as_bool()
                        .ok_or_else(|| bad_param(key, "true or false", &v))?;
                }
                "timeout" | "request_timeout" | "stream_timeout" | "stream_idle_timeout" => {
                    let secs = v
                        .as_f64()
                        .filter(|s| *s > 0.0 && s.is_finite() && *s < 1e10)
                        .ok_or_else(|| bad_param(key, "a positive number of seconds", &v))?;
                    let d = Duration::from_secs_f64(secs);
                    if *key == "stream_timeout" {
                        opts.stream_timeout = Some(d);
                    } else if *key == "stream_idle_timeout" {
                        opts.stream_idle_timeout = Some(d);
                    } else if opts.timeout.is_none() || *key == "timeout" {
                        opts.timeout = Some(d);
                    }
                }
                _ => {}
            }
        }
        Ok(opts)
    }
}

pub(crate) enum Target {
    Group(Arc<str>),
    Deployment(usize),
}

#[derive(Clone, Copy)]
pub(crate) enum Op<'a> {
    Chat(&'a ChatCompletionRequest),
    Stream(&'a ChatCompletionRequest),
    Embed(&'a EmbeddingRequest),
}

pub(crate) enum Output {
    Chat(ChatCompletionResponse),
    Stream(ChunkStream),
    Embed(EmbeddingResponse),
}

/// Runs a call whose trace was sampled out inside `cx`: nothing is
/// recorded, but its `traceparent` (flagged unsampled) still travels
/// upstream, and the answer names the trace.
async fn in_unsampled_trace<R: HasMeta>(
    cx: &opentelemetry::Context,
    call: impl Future<Output = Result<R, RouterError>>,
) -> Result<R, RouterError> {
    let mut result = call.with_context(cx.clone()).await;
    if let Ok(r) = &mut result {
        r.meta_mut().trace_id = Some(telemetry::trace_id(cx));
    }
    result
}

/// A routed answer's metadata.
trait HasMeta {
    fn meta_mut(&mut self) -> &mut ResponseMeta;
}

impl<T> HasMeta for Routed<T> {
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }
}

impl HasMeta for RoutedStream {
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }
}

impl Router {
    /// A chat completion, routed. A `stream: true` in the request is ignored
    /// (use [`Router::completion_stream`]).
    pub async fn completion(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<Routed<ChatCompletionResponse>, RouterError> {
        let Some(t) = &self.inner.telemetry else {
            return self.completion_traced(req, None).await;
        };
        let cx = t.request_span("chat", &req.model, false, Some(&req.messages));
        if !telemetry::recording(&cx) {
            return in_unsampled_trace(&cx, self.completion_traced(req, None)).await;
        }
        let mut result = self.completion_traced(req, Some(cx.clone())).await;
        if let Ok(r) = &mut result {
            r.meta.trace_id = Some(telemetry::trace_id(&cx));
        }
        match &result {
            Ok(r) => {
                let mut attrs = Vec::with_capacity(16);
                t.chat_response(&mut attrs, &r.response);
                telemetry::served(&mut attrs, &r.meta);
                telemetry::set(&cx, attrs);
            }
            Err(e) => telemetry::router_failed(&cx, e, t.capture()),
        }
        telemetry::end(&cx);
        result
    }

    async fn completion_traced(
        &self,
        mut req: ChatCompletionRequest,
        trace: Option<opentelemetry::Context>,
    ) -> Result<Routed<ChatCompletionResponse>, RouterError> {
        let mut opts = CallOptions::take(&mut req.extra)?;
        opts.trace = trace;
        if req.stream == Some(true) {
            req.stream = None;
            req.stream_options = None;
        }
        let target = self.resolve(&req.model)?;
        let (out, mut meta, _hold) = self.call(target, &opts, Op::Chat(&req)).await?;
        meta.rate_limits = self.group_rate_limits(&meta.model_group).await;
        match out {
            Output::Chat(response) => Ok(Routed { response, meta }),
            Output::Stream(_) | Output::Embed(_) => Err(internal_mismatch()),
        }
    }

    /// A streamed chat completion, routed. Attempts fail over to the next
    /// deployment until one delivers its first chunk. After that, a failure
    /// is continued by another deployment from the text delivered so far
    /// (up to `max_stream_continuations`), or ends the stream with an `Err`
    /// item describing the original failure.
    pub async fn completion_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<RoutedStream, RouterError> {
        let Some(t) = &self.inner.telemetry else {
            return self.completion_stream_traced(req, None).await;
        };
        let cx = t.request_span("chat", &req.model, true, Some(&req.messages));
        if !telemetry::recording(&cx) {
            let mut result =
                in_unsampled_trace(&cx, self.completion_stream_traced(req, None)).await;
            // A continuation's request carries the context too.
            if let Ok(r) = &mut result {
                let stream =
                    std::mem::replace(&mut r.stream, Box::pin(futures_util::stream::empty()));
                r.stream = Box::pin(stream.with_context(cx));
            }
            return result;
        }
        let mut result = self.completion_stream_traced(req, Some(cx.clone())).await;
        if let Ok(r) = &mut result {
            r.meta.trace_id = Some(telemetry::trace_id(&cx));
        }
        match &result {
            // The stream ends the span when it ends.
            Ok(s) => {
                let mut attrs = Vec::with_capacity(8);
                telemetry::served(&mut attrs, &s.meta);
                telemetry::set(&cx, attrs);
            }
            Err(e) => {
                telemetry::router_failed(&cx, e, t.capture());
                telemetry::end(&cx);
            }
        }
        result
    }

    async fn completion_stream_traced(
        &self,
        mut req: ChatCompletionRequest,
        trace: Option<opentelemetry::Context>,
    ) -> Result<RoutedStream, RouterError> {
        let mut opts = CallOptions::take(&mut req.extra)?;
        opts.trace = trace;
        req.stream = Some(true);
        let inner = &*self.inner;
        let start = inner.clock.now();
        // Limits and budgets settle with the real usage: ask the upstream for
        // it, and hide it from a client that did not ask.
        let client_wants_usage =
            req.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true);
        let inject = !client_wants_usage && inner.limits.needs_usage;
        if inject {
            let mut options = req.stream_options.take().unwrap_or(lb_core::StreamOptions {
                include_usage: None,
                extra: serde_json::Map::new(),
            });
            options.include_usage = Some(true);
            req.stream_options = Some(options);
        }
        let target = self.resolve(&req.model)?;
        let (out, mut meta, hold) = self.call(target, &opts, Op::Stream(&req)).await?;
        meta.rate_limits = self.group_rate_limits(&meta.model_group).await;
        let Output::Stream(stream) = out else {
            return Err(internal_mismatch());
        };
        let continuations = inner.settings.max_stream_continuations;
        let deadline = start + opts.timeout.unwrap_or(inner.settings.timeout);
        let state = crate::stream::StreamState {
            router: self.clone(),
            inner: stream,
            _guard: hold.guard,
            held: hold.held,
            attempt_span: hold.span,
            finish_reason: None,
            index: meta.index,
            inject,
            usage: None,
            done: false,
            original: (continuations > 0).then(|| req.clone()),
            opts,
            group: Arc::clone(&meta.model_group),
            deadline,
            continuations_left: continuations,
            delivered: String::new(),
            text_lost: false,
            continuable: true,
            finished: false,
            first_id: None,
            skip_role: false,
            original_error: None,
            continued: Vec::new(),
            prefill_tokens: 0,
            delivered_chunks: 0,
        };
        let stream = futures_util::stream::unfold(state, crate::stream::StreamState::next);
        Ok(RoutedStream {
            stream: Box::pin(stream),
            meta,
        })
    }

    /// An embeddings call, routed.
    pub async fn embedding(
        &self,
        req: EmbeddingRequest,
    ) -> Result<Routed<EmbeddingResponse>, RouterError> {
        let Some(t) = &self.inner.telemetry else {
            return self.embedding_traced(req, None).await;
        };
        let cx = t.request_span("embeddings", &req.model, false, None);
        if !telemetry::recording(&cx) {
            return in_unsampled_trace(&cx, self.embedding_traced(req, None)).await;
        }
        let mut result = self.embedding_traced(req, Some(cx.clone())).await;
        if let Ok(r) = &mut result {
            r.meta.trace_id = Some(telemetry::trace_id(&cx));
        }
        match &result {
            Ok(r) => {
                let mut attrs = Vec::with_capacity(12);
                telemetry::Telemetry::embedding_response(&mut attrs, &r.response);
                telemetry::served(&mut attrs, &r.meta);
                telemetry::set(&cx, attrs);
            }
            Err(e) => telemetry::router_failed(&cx, e, t.capture()),
        }
        telemetry::end(&cx);
        result
    }

    async fn embedding_traced(
        &self,
        mut req: EmbeddingRequest,
        trace: Option<opentelemetry::Context>,
    ) -> Result<Routed<EmbeddingResponse>, RouterError> {
        let mut opts = CallOptions::take(&mut req.extra)?;
        opts.trace = trace;
        let target = self.resolve(&req.model)?;
        let (out, mut meta, _hold) = self.call(target, &opts, Op::Embed(&req)).await?;
        meta.rate_limits = self.group_rate_limits(&meta.model_group).await;
        match out {
            Output::Embed(response) => Ok(Routed { response, meta }),
            Output::Chat(_) | Output::Stream(_) => Err(internal_mismatch()),
        }
    }

    /// Whether traces are exported (`router_settings.otel`, an `otel`
    /// callback, or `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn tracing_enabled(&self) -> bool {
        self.inner.telemetry.is_some()
    }

    /// Exports what is queued and stops exporting traces: call it when
    /// done serving (the gateway does, after its graceful shutdown).
    pub async fn shutdown_traces(&self) {
        if let Some(t) = &self.inner.telemetry {
            t.shutdown().await;
        }
    }

    /// Exports every finished span now (the batch exporter otherwise sends
    /// them every few seconds); returns at once when traces are off.
    pub async fn flush_traces(&self) {
        if let Some(t) = &self.inner.telemetry {
            t.flush().await;
        }
    }

    /// The model names clients may list: every group and every visible alias, sorted.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .group_order
            .iter()
            .map(|g| g.to_string())
            .collect();
        names.extend(
            self.inner
                .aliases
                .iter()
                .filter(|(_, t)| !t.hidden)
                .map(|(a, _)| a.clone()),
        );
        names.sort();
        names.dedup();
        names
    }

    /// The deployments, in config order.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.inner.entries.iter().map(|e| &*e.deployment)
    }

    /// Live counters of every deployment, in config order.
    pub fn deployment_stats(&self) -> Vec<(DeploymentId, StatsSnapshot)> {
        self.inner
            .entries
            .iter()
            .map(|e| (e.deployment.id.clone(), e.stats.snapshot()))
            .collect()
    }

    /// The counters behind `GET /metrics` (the same numbers), for embedders
    /// who serve or ship them their own way.
    pub fn metrics_snapshot(&self) -> crate::MetricsSnapshot {
        let inner = &*self.inner;
        inner
            .metrics
            .snapshot(self.deployments(), &inner.group_order)
    }

    /// The router's metrics in the Prometheus text exposition format
    /// (what the gateway serves at `GET /metrics`).
    pub async fn metrics_text(&self) -> String {
        let inner = &*self.inner;
        if !inner.metrics.enabled() {
            return String::new();
        }
        let wall = inner.clock.wall();
        for e in &inner.entries {
            let d = &*e.deployment;
            if d.rpm.is_none() && d.tpm.is_none() {
                continue;
            }
            let Ok(status) = lb_budget::rate_limit_status(&*inner.limits.store, &[d], wall).await
            else {
                continue;
            };
            let labels = crate::metrics::RouterMetrics::deployment_labels(d, e.provider.api_base());
            if let Some(r) = status.remaining_requests {
                inner.metrics.set_gauge(
                    "litellm_remaining_requests_metric",
                    labels.clone(),
                    r as f64,
                );
            }
            if let Some(t) = status.remaining_tokens {
                inner
                    .metrics
                    .set_gauge("litellm_remaining_tokens_metric", labels, t as f64);
            }
        }
        for b in self.provider_budgets().await {
            let labels = vec![metrics::Label::new("api_provider", b.name.clone())];
            inner.metrics.set_gauge(
                "litellm_provider_remaining_budget_metric",
                labels.clone(),
                (b.budget_limit - b.spend).max(0.0),
            );
            inner
                .metrics
                .set_gauge("lb_provider_spend_usd", labels, b.spend);
        }
        let now = inner.clock.now();
        inner
            .metrics
            .render(inner.entries.iter().enumerate().map(|(i, e)| {
                (
                    i,
                    inner.health.snapshot(i, now).availability,
                    e.stats.snapshot().in_flight,
                )
            }))
    }

    /// Config keys read but not implemented or not known (reported once at build).
    pub fn config_warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// The routing strategy's name.
    pub fn strategy_name(&self) -> &'static str {
        self.inner.strategy.name()
    }

    /// Records a failed call of deployment `index` in its stats and health.
    pub(crate) fn record_failure(
        &self,
        index: usize,
        error: &UpstreamError,
        trial: bool,
        request_shortened: bool,
    ) -> Option<lb_health::CooldownEvent> {
        let inner = &*self.inner;
        let entry = &inner.entries[index];
        if request_shortened && error.class == lb_core::ErrorClass::Timeout {
            tracing::debug!(deployment = %entry.deployment.id, "timeout set shorter by the request: not counted against the deployment");
            return None;
        }
        entry.stats.record_failure();
        let group_size = inner
            .groups
            .get(&entry.deployment.model_group)
            .map_or(1, Vec::len);
        let event = inner.health.record_failure(
            index,
            error.class,
            FailureContext {
                group_size,
                cooldown_time: entry.deployment.cooldown_time,
                retry_after: error.retry_after,
                trial,
            },
            inner.clock.now(),
        );
        if let (Some(ev), Some(bus)) = (&event, &inner.bus) {
            bus.publish(lb_core::SharedCooldown {
                deployment: entry.deployment.id.to_string(),
                remaining: ev.until.saturating_duration_since(inner.clock.now()),
                reason: ev.reason.to_string(),
            });
        }
        if let Some(ev) = &event {
            inner.metrics.cooled_down(index, &ev.reason);
            tracing::info!(
                deployment = %entry.deployment.id,
                reason = %ev.reason,
                cooldown_s = ev.until.saturating_duration_since(inner.clock.now()).as_secs_f64(),
                "deployment cooling down"
            );
        }
        event
    }

    pub(crate) fn resolve(&self, model: &str) -> Result<Target, RouterError> {
        let inner = &*self.inner;
        if let Some((name, _)) = inner.groups.get_key_value(model) {
            return Ok(Target::Group(Arc::clone(name)));
        }
        if let Some(alias) = inner.aliases.get(model) {
            if let Some((name, _)) = inner.groups.get_key_value(alias.group.as_str()) {
                return Ok(Target::Group(Arc::clone(name)));
            }
        }
        if let Some(&i) = inner.by_id.get(model) {
            return Ok(Target::Deployment(i));
        }
        Err(RouterError::UnknownModel {
            model: shown_name(model),
            known: self.model_names(),
        })
    }

    pub(crate) fn rng(&self) -> SmallRng {
        let n = self.inner.calls.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(splitmix(self.inner.seed ^ splitmix(n)))
    }
}

fn internal_mismatch() -> RouterError {
    RouterError::InvalidRequest {
        message: "internal error: the provider answered a different kind of call".to_owned(),
        param: None,
    }
}

/// SplitMix64 finaliser: spreads a counter into an RNG seed.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
