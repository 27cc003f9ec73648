//! The router and its one call loop.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lb_core::{
    ChatCompletionRequest, ChatCompletionResponse, ChunkStream, Deployment, DeploymentId,
    EmbeddingRequest, EmbeddingResponse, SharedClock, UpstreamError,
};
use lb_health::{DeploymentStats, FailureAction, InFlight, StatsSnapshot, after_failure};
use lb_providers::Provider;
use lb_strategies::{CallContext, Candidate, Strategy};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;

use crate::config::{AliasTarget, RouterSettings};
use crate::error::{AttemptFailure, RouterError};

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
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// Retries allowed for this call.
    pub max_retries: u32,
    /// Time from the call's start to the answer (stream: to the first chunk).
    pub latency: Duration,
}

impl ResponseMeta {
    /// Retries made (attempts after the first).
    pub fn retries(&self) -> u32 {
        self.attempts.saturating_sub(1)
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

pub(crate) struct Entry {
    pub(crate) deployment: Arc<Deployment>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) stats: Arc<DeploymentStats>,
}

pub(crate) struct Inner {
    pub(crate) entries: Vec<Entry>,
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
#[derive(Debug, Default)]
struct CallOptions {
    num_retries: Option<u32>,
    timeout: Option<Duration>,
    stream_timeout: Option<Duration>,
}

fn bad_param(param: &str, what: &str, got: &Value) -> RouterError {
    RouterError::InvalidRequest {
        message: format!("{param}: expected {what}, got {got}"),
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
                    opts.num_retries = Some(n);
                }
                "timeout" | "request_timeout" | "stream_timeout" => {
                    let secs = v
                        .as_f64()
                        .filter(|s| *s > 0.0 && s.is_finite() && *s < 1e10)
                        .ok_or_else(|| bad_param(key, "a positive number of seconds", &v))?;
                    let d = Duration::from_secs_f64(secs);
                    if *key == "stream_timeout" {
                        opts.stream_timeout = Some(d);
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

enum Target {
    Group(Arc<str>),
    Deployment(usize),
}

enum Op<'a> {
    Chat(&'a ChatCompletionRequest),
    Stream(&'a ChatCompletionRequest),
    Embed(&'a EmbeddingRequest),
}

enum Output {
    Chat(ChatCompletionResponse),
    Stream(ChunkStream),
    Embed(EmbeddingResponse),
}

impl Router {
    /// A chat completion, routed. A `stream: true` in the request is ignored
    /// (use [`Router::completion_stream`]).
    pub async fn completion(
        &self,
        mut req: ChatCompletionRequest,
    ) -> Result<Routed<ChatCompletionResponse>, RouterError> {
        let opts = CallOptions::take(&mut req.extra)?;
        if req.stream == Some(true) {
            req.stream = None;
            req.stream_options = None;
        }
        let target = self.resolve(&req.model)?;
        let (out, meta, _guard) = self.call(target, &opts, Op::Chat(&req)).await?;
        match out {
            Output::Chat(response) => Ok(Routed { response, meta }),
            Output::Stream(_) | Output::Embed(_) => Err(internal_mismatch()),
        }
    }

    /// A streamed chat completion, routed. Attempts fail over to the next
    /// deployment until one delivers its first chunk; after that, an error
    /// ends the stream with an `Err` item.
    pub async fn completion_stream(
        &self,
        mut req: ChatCompletionRequest,
    ) -> Result<RoutedStream, RouterError> {
        let opts = CallOptions::take(&mut req.extra)?;
        req.stream = Some(true);
        let target = self.resolve(&req.model)?;
        let (out, meta, guard) = self.call(target, &opts, Op::Stream(&req)).await?;
        let Output::Stream(stream) = out else {
            return Err(internal_mismatch());
        };
        let stats = self.stats_of(&meta.deployment_id);
        let deployment = meta.deployment_id.clone();
        // The guard lives as long as the stream: in-flight counts cover the whole answer.
        let stream = stream.map(move |item| {
            let _held = &guard;
            if let (Err(e), Some(stats)) = (&item, &stats) {
                stats.record_failure();
                tracing::warn!(deployment = %deployment, error = %e, "stream failed after its first chunk");
            }
            item
        });
        Ok(RoutedStream {
            stream: Box::pin(stream),
            meta,
        })
    }

    /// An embeddings call, routed.
    pub async fn embedding(
        &self,
        mut req: EmbeddingRequest,
    ) -> Result<Routed<EmbeddingResponse>, RouterError> {
        let opts = CallOptions::take(&mut req.extra)?;
        let target = self.resolve(&req.model)?;
        let (out, meta, _guard) = self.call(target, &opts, Op::Embed(&req)).await?;
        match out {
            Output::Embed(response) => Ok(Routed { response, meta }),
            Output::Chat(_) | Output::Stream(_) => Err(internal_mismatch()),
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

    /// Config keys read but not implemented or not known (reported once at build).
    pub fn config_warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// The routing strategy's name.
    pub fn strategy_name(&self) -> &'static str {
        self.inner.strategy.name()
    }

    fn stats_of(&self, id: &DeploymentId) -> Option<Arc<DeploymentStats>> {
        self.inner
            .by_id
            .get(id)
            .map(|&i| Arc::clone(&self.inner.entries[i].stats))
    }

    fn resolve(&self, model: &str) -> Result<Target, RouterError> {
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
            model: model.to_owned(),
            known: self.model_names(),
        })
    }

    fn rng(&self) -> SmallRng {
        let n = self.inner.calls.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(splitmix(self.inner.seed ^ splitmix(n)))
    }

    /// The one call loop: rank candidates, try them in order, record outcomes.
    async fn call(
        &self,
        target: Target,
        opts: &CallOptions,
        op: Op<'_>,
    ) -> Result<(Output, ResponseMeta, InFlight), RouterError> {
        let inner = &*self.inner;
        let (group, order): (Arc<str>, Vec<usize>) = match target {
            Target::Deployment(i) => (
                Arc::clone(&inner.entries[i].deployment.model_group),
                vec![i],
            ),
            Target::Group(name) => {
                let members = inner
                    .groups
                    .get(&name)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let candidates: Vec<Candidate<'_>> = members
                    .iter()
                    .map(|&i| Candidate {
                        in_flight: inner.entries[i].stats.in_flight(),
                        ..Candidate::new(&inner.entries[i].deployment)
                    })
                    .collect();
                let call = CallContext {
                    estimated_tokens: match op {
                        Op::Chat(req) | Op::Stream(req) => lb_budget::estimate_call_tokens(req),
                        Op::Embed(req) => lb_budget::estimate_embedding_tokens(req),
                    },
                    stream: matches!(op, Op::Stream(_)),
                };
                let mut ranked = Vec::with_capacity(candidates.len());
                let mut rng = self.rng();
                inner
                    .strategy
                    .rank(&call, &candidates, &mut rng, &mut ranked);
                // A custom strategy is trusted with nothing: out-of-range and
                // repeated indices are dropped, so every deployment is tried
                // at most once; candidates it left out are not tried.
                let mut taken = vec![false; members.len()];
                let mut order: Vec<usize> = Vec::with_capacity(members.len());
                for k in ranked.iter().copied() {
                    if let (Some(t), Some(&m)) = (taken.get_mut(k), members.get(k)) {
                        if !*t {
                            *t = true;
                            order.push(m);
                        }
                    }
                }
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let ids: Vec<&str> = members
                        .iter()
                        .map(|&i| inner.entries[i].deployment.id.as_str())
                        .collect();
                    let ranked_ids: Vec<&str> = order
                        .iter()
                        .map(|&i| inner.entries[i].deployment.id.as_str())
                        .collect();
                    tracing::debug!(
                        group = %name,
                        strategy = inner.strategy.name(),
                        candidates = ?ids,
                        ranking = ?ranked_ids,
                        "routing decision"
                    );
                }
                (name, order)
            }
        };
        let stream = matches!(op, Op::Stream(_));
        let mut max_retries = opts.num_retries.unwrap_or(inner.settings.num_retries);
        let mut attempts: Vec<AttemptFailure> = Vec::new();
        let start = inner.clock.now();
        for &idx in &order {
            let entry = &inner.entries[idx];
            let d = &entry.deployment;
            let timeout = if stream {
                opts.stream_timeout
                    .or(d.stream_timeout)
                    .or(inner.settings.stream_timeout)
                    .or(opts.timeout)
                    .or(d.timeout)
                    .unwrap_or(inner.settings.timeout)
            } else {
                opts.timeout.or(d.timeout).unwrap_or(inner.settings.timeout)
            };
            let guard = entry.stats.start();
            let attempt_start = inner.clock.now();
            let result: Result<Output, UpstreamError> = match op {
                Op::Chat(req) => entry.provider.chat(req, timeout).await.map(Output::Chat),
                Op::Stream(req) => entry
                    .provider
                    .chat_stream(req, timeout)
                    .await
                    .map(Output::Stream),
                Op::Embed(req) => entry
                    .provider
                    .embedding(req, timeout)
                    .await
                    .map(Output::Embed),
            };
            let now = inner.clock.now();
            match result {
                Ok(out) => {
                    entry
                        .stats
                        .record_success(now.saturating_duration_since(attempt_start));
                    let meta = ResponseMeta {
                        deployment_id: d.id.clone(),
                        api_base: entry.provider.api_base().to_owned(),
                        model_group: Arc::clone(&group),
                        provider: Arc::clone(&d.provider),
                        attempts: u32::try_from(attempts.len() + 1).unwrap_or(u32::MAX),
                        max_retries,
                        latency: now.saturating_duration_since(start),
                    };
                    return Ok((out, meta, guard));
                }
                Err(error) => {
                    drop(guard);
                    entry.stats.record_failure();
                    tracing::debug!(
                        group = %group,
                        deployment = %d.id,
                        attempt = attempts.len() + 1,
                        error = %error,
                        "attempt failed"
                    );
                    if let Some(n) = d.num_retries.filter(|_| opts.num_retries.is_none()) {
                        max_retries = n;
                    }
                    let action = after_failure(error.class);
                    attempts.push(AttemptFailure {
                        deployment: d.id.clone(),
                        error,
                    });
                    let retries_used = u32::try_from(attempts.len() - 1).unwrap_or(u32::MAX);
                    match action {
                        FailureAction::GiveUp => break,
                        FailureAction::TryAnotherDeployment if retries_used >= max_retries => break,
                        FailureAction::TryAnotherDeployment => continue,
                    }
                }
            }
        }
        Err(RouterError::Upstream { group, attempts })
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
