//! Prometheus metrics: pre-registered per-deployment handles, one recorder
//! per router (two routers in one process never mix their counts).
//!
//! Names follow LiteLLM's Prometheus integration where it has one, so its
//! dashboards keep working; `lb_*` names are ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lb_core::{Deployment, DeploymentId, ErrorClass, Usage};
use lb_health::{Availability, CooldownReason};
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Every error class, in a fixed order (index = label slot).
const CLASSES: [ErrorClass; 9] = [
    ErrorClass::RateLimited,
    ErrorClass::Timeout,
    ErrorClass::ContextWindowExceeded,
    ErrorClass::ContentPolicy,
    ErrorClass::Auth,
    ErrorClass::BadRequest,
    ErrorClass::NotFound,
    ErrorClass::ServerError,
    ErrorClass::Connection,
];

/// Cooldown reasons as label values, in a fixed order.
const REASONS: [&str; 8] = [
    "rate_limited",
    "auth",
    "not_found",
    "failure_rate",
    "allowed_fails_exceeded",
    "trial_failed",
    "health_check",
    "peer",
];

/// Latency buckets, in seconds (1 ms to 2 min).
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub(crate) fn class_label(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::RateLimited => "RateLimitError",
        ErrorClass::Timeout => "Timeout",
        ErrorClass::ContextWindowExceeded => "ContextWindowExceededError",
        ErrorClass::ContentPolicy => "ContentPolicyViolationError",
        ErrorClass::Auth => "AuthenticationError",
        ErrorClass::BadRequest => "BadRequestError",
        ErrorClass::NotFound => "NotFoundError",
        ErrorClass::ServerError => "InternalServerError",
        ErrorClass::Connection => "APIConnectionError",
    }
}

fn class_slot(c: ErrorClass) -> usize {
    CLASSES.iter().position(|&x| x == c).unwrap_or(0)
}

fn reason_slot(r: &CooldownReason) -> usize {
    match r {
        CooldownReason::RateLimited => 0,
        CooldownReason::Auth => 1,
        CooldownReason::NotFound => 2,
        CooldownReason::FailureRate { .. } => 3,
        CooldownReason::AllowedFailsExceeded { .. } => 4,
        CooldownReason::TrialFailed => 5,
        CooldownReason::HealthCheck(_) => 6,
        CooldownReason::Peer(_) => 7,
    }
}

/// A Prometheus counter with a local copy the snapshot API reads.
pub(crate) struct Count {
    /// `None` when metrics are off: then nothing is counted at all.
    prom: Option<Counter>,
    local: AtomicU64,
}

impl Count {
    fn new(prom: Option<Counter>) -> Self {
        Self {
            prom,
            local: AtomicU64::new(0),
        }
    }

    /// Adds `v`.
    pub(crate) fn increment(&self, v: u64) {
        if let Some(p) = &self.prom {
            p.increment(v);
            self.local.fetch_add(v, Ordering::Relaxed);
        }
    }

    fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

/// One deployment's handles.
pub(crate) struct DeploymentMetrics {
    requests: Count,
    successes: Count,
    failures: Vec<Count>,
    cooldowns: Vec<Count>,
    state: Gauge,
    in_flight: Gauge,
    api_latency: Histogram,
    ttft: Histogram,
    input_tokens: Count,
    output_tokens: Count,
    spend: Count,
}

/// One model group's handles.
pub(crate) struct GroupMetrics {
    total_latency: Histogram,
    overhead: Histogram,
    ok: Count,
    failed: Count,
    retries: Count,
    fallback_ok: Count,
    fallback_failed: Count,
}

/// How often recorded histogram samples are folded into their buckets
/// between scrapes (the Prometheus exporter's own upkeep period).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every `every`, until
/// the last owner of `handle` is gone: without it, samples pile up in memory
/// until a scrape, without bound when nothing scrapes. A task on the current
/// tokio runtime (returned), or a thread of its own outside one.
fn spawn_upkeep(
    handle: &Arc<PrometheusHandle>,
    every: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let weak = Arc::downgrade(handle);
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        return Some(rt.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(h) => h.run_upkeep(),
                    None => return,
                }
            }
        }));
    }
    let spawned = std::thread::Builder::new()
        .name("lb-metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(h) => h.run_upkeep(),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread for the metrics upkeep: histogram samples are folded only when /metrics is scraped");
    }
    None
}

/// The router's metrics.
pub(crate) struct RouterMetrics {
    enabled: bool,
    recorder: PrometheusRecorder,
    /// Shared with the upkeep, which ends when this is dropped.
    handle: Arc<PrometheusHandle>,
    pub(crate) deployments: Vec<DeploymentMetrics>,
    pub(crate) groups: std::collections::HashMap<Arc<str>, GroupMetrics>,
    /// Limit-store (Redis) errors at admission.
    pub(crate) store_errors: Count,
    /// Calls let through because the limit store failed (`redis_fail_mode: open`).
    pub(crate) fail_open: Count,
    /// Streams continued by another deployment after a break.
    pub(crate) continued: Count,
    /// Stream breaks that could not be continued.
    pub(crate) not_continued: Count,
}

/// `base` plus one label.
fn with(base: &[Label], key: &'static str, value: &'static str) -> Vec<Label> {
    let mut labels = base.to_vec();
    labels.push(Label::new(key, value));
    labels
}

fn meta() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl RouterMetrics {
    /// Registers every handle for `deployments` and `groups`.
    pub(crate) fn new<'a>(
        enabled: bool,
        deployments: impl Iterator<Item = (&'a Deployment, &'a str)>,
        groups: impl Iterator<Item = Arc<str>>,
    ) -> Self {
        let builder = PrometheusBuilder::new();
        // The bucket list is non-empty, so this cannot fail.
        let builder = match builder.set_buckets(&BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = Arc::new(recorder.handle());
        if enabled {
            spawn_upkeep(&handle, UPKEEP_EVERY);
        }
        let m = meta();
        // Disabled: every handle is a no-op and nothing is rendered.
        let counter = |name: &'static str, labels: Vec<Label>| {
            Count::new(
                enabled.then(|| recorder.register_counter(&Key::from_parts(name, labels), &m)),
            )
        };
        let gauge = |name: &'static str, labels: Vec<Label>| {
            if enabled {
                recorder.register_gauge(&Key::from_parts(name, labels), &m)
            } else {
                Gauge::noop()
            }
        };
        let hist = |name: &'static str, labels: Vec<Label>| {
            if enabled {
                recorder.register_histogram(&Key::from_parts(name, labels), &m)
            } else {
                Histogram::noop()
            }
        };
        let deployments = deployments
            .map(|(d, api_base)| {
                let base = Self::deployment_labels(d, api_base);
                DeploymentMetrics {
                    requests: counter("litellm_deployment_total_requests_total", base.clone()),
                    successes: counter("litellm_deployment_success_responses_total", base.clone()),
                    failures: CLASSES
                        .iter()
                        .map(|&c| {
                            counter(
                                "litellm_deployment_failure_responses_total",
                                with(&base, "exception_class", class_label(c)),
                            )
                        })
                        .collect(),
                    cooldowns: REASONS
                        .iter()
                        .map(|&r| {
                            counter(
                                "litellm_deployment_cooled_down_total",
                                with(&base, "reason", r),
                            )
                        })
                        .collect(),
                    state: gauge("litellm_deployment_state", base.clone()),
                    in_flight: gauge("lb_deployment_in_flight_requests", base.clone()),
                    api_latency: hist("litellm_llm_api_latency_metric", base.clone()),
                    ttft: hist("litellm_llm_api_time_to_first_token_metric", base.clone()),
                    input_tokens: counter("litellm_input_tokens_metric_total", base.clone()),
                    output_tokens: counter("litellm_output_tokens_metric_total", base.clone()),
                    spend: counter("lb_spend_microdollars_total", base.clone()),
                }
            })
            .collect();
        let groups = groups
            .map(|g| {
                let l = vec![Label::new("requested_model", g.to_string())];
                let gm = GroupMetrics {
                    total_latency: hist("litellm_request_total_latency_metric", l.clone()),
                    overhead: hist("litellm_overhead_latency_metric", l.clone()),
                    ok: counter("lb_requests_total", with(&l, "outcome", "success")),
                    failed: counter("lb_requests_total", with(&l, "outcome", "failure")),
                    retries: counter("lb_retries_total", l.clone()),
                    fallback_ok: counter(
                        "litellm_deployment_successful_fallbacks_total",
                        l.clone(),
                    ),
                    fallback_failed: counter("litellm_deployment_failed_fallbacks_total", l),
                };
                (g, gm)
            })
            .collect();

        Self {
            enabled,
            store_errors: counter("lb_limit_store_errors_total", Vec::new()),
            fail_open: counter("lb_limit_store_fail_open_total", Vec::new()),
            continued: counter(
                "lb_stream_continuations_total",
                with(&[], "outcome", "success"),
            ),
            not_continued: counter(
                "lb_stream_continuations_total",
                with(&[], "outcome", "failure"),
            ),
            recorder,
            handle,
            deployments,
            groups,
        }
    }

    /// An attempt on deployment `i` ended.
    pub(crate) fn attempt(&self, i: usize, result: Result<Duration, ErrorClass>, stream: bool) {
        let Some(d) = self.deployments.get(i) else {
            return;
        };
        d.requests.increment(1);
        match result {
            Ok(elapsed) if stream => {
                d.successes.increment(1);
                d.ttft.record(elapsed.as_secs_f64());
            }
            Ok(elapsed) => {
                d.successes.increment(1);
                d.api_latency.record(elapsed.as_secs_f64());
            }
            Err(c) => d.failures[class_slot(c)].increment(1),
        }
    }

    /// Deployment `i` entered a cooldown for `reason`.
    pub(crate) fn cooled_down(&self, i: usize, reason: &CooldownReason) {
        if let Some(d) = self.deployments.get(i) {
            d.cooldowns[reason_slot(reason)].increment(1);
        }
    }

    /// Tokens and cost of a settled call on deployment `i`.
    pub(crate) fn usage(&self, i: usize, usage: &Usage, cost: Option<f64>) {
        if let Some(d) = self.deployments.get(i) {
            d.input_tokens.increment(usage.prompt_tokens);
            d.output_tokens.increment(usage.completion_tokens);
            if let Some(c) = cost.filter(|c| c.is_finite() && *c > 0.0) {
                d.spend.increment((c * 1e6).round() as u64);
            }
        }
    }

    /// A client request on `group` ended.
    pub(crate) fn request(
        &self,
        group: &str,
        ok: bool,
        fell_back: bool,
        retries: u64,
        total: Duration,
        upstream: Duration,
    ) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        g.retries.increment(retries);
        if ok {
            g.ok.increment(1);
            g.total_latency.record(total.as_secs_f64());
            g.overhead
                .record(total.saturating_sub(upstream).as_secs_f64());
        } else {
            g.failed.increment(1);
        }
        match (fell_back, ok) {
            (true, true) => g.fallback_ok.increment(1),
            (true, false) => g.fallback_failed.increment(1),
            (false, _) => {}
        }
    }

    /// Whether anything is counted (`enable_metrics`).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sets a gauge known only at scrape time (registered then, off the hot path).
    pub(crate) fn set_gauge(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &meta())
            .set(value);
    }

    /// The labels every series of deployment `d` carries.
    pub(crate) fn deployment_labels(d: &Deployment, api_base: &str) -> Vec<Label> {
        vec![
            Label::new("requested_model", d.model_group.to_string()),
            Label::new("litellm_model_name", d.model.clone()),
            Label::new("model_id", d.id.to_string()),
            Label::new("api_base", api_base.to_owned()),
            Label::new("api_provider", d.provider.to_string()),
        ]
    }

    /// Sets the scrape-time gauges and renders the exposition text.
    pub(crate) fn render(&self, live: impl Iterator<Item = (usize, Availability, u64)>) -> String {
        for (i, availability, in_flight) in live {
            if let Some(d) = self.deployments.get(i) {
                d.state.set(match availability {
                    Availability::Available => 0.0,
                    Availability::Trial => 1.0,
                    Availability::CoolingDown { .. } => 2.0,
                });
                d.in_flight.set(in_flight as f64);
            }
        }
        self.handle.render()
    }
}

/// Counters of one deployment since the router was built.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentCounters {
    /// Its id.
    pub id: DeploymentId,
    /// Its model group.
    pub model_group: Arc<str>,
    /// Attempts sent to it.
    pub requests: u64,
    /// Attempts that answered.
    pub successes: u64,
    /// Failed attempts, by class (classes that never failed are left out).
    pub failures: Vec<(ErrorClass, u64)>,
    /// Cooldowns it entered.
    pub cooldowns: u64,
    /// Prompt tokens of settled calls.
    pub input_tokens: u64,
    /// Completion tokens of settled calls.
    pub output_tokens: u64,
    /// Cost of settled calls, USD.
    pub spend_usd: f64,
}

/// Counters of one model group (as requested by clients) since the router was built.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupCounters {
    /// The model group.
    pub model_group: Arc<str>,
    /// Requests answered.
    pub successes: u64,
    /// Requests that failed (including refusals by the router's own limits).
    pub failures: u64,
    /// Attempts after each request's first.
    pub retries: u64,
    /// Requests that went to a fallback group and then succeeded.
    pub fallbacks_succeeded: u64,
    /// Requests that went to a fallback group and still failed.
    pub fallbacks_failed: u64,
}

/// The counters behind `GET /metrics`, for embedders (all zero when
/// `enable_metrics` is off).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Per deployment, in config order.
    pub deployments: Vec<DeploymentCounters>,
    /// Per model group, in config order.
    pub groups: Vec<GroupCounters>,
    /// Limit-store (Redis) errors at admission.
    pub limit_store_errors: u64,
    /// Calls let through because the limit store failed.
    pub limit_store_fail_open: u64,
    /// Streams continued by another deployment after a break.
    pub stream_continuations: u64,
    /// Stream breaks that could not be continued.
    pub stream_continuations_failed: u64,
}

impl RouterMetrics {
    /// The counters now; `deployments` and `groups` give ids in order.
    pub(crate) fn snapshot<'a>(
        &self,
        deployments: impl Iterator<Item = &'a Deployment>,
        groups: &[Arc<str>],
    ) -> MetricsSnapshot {
        let deployments = deployments
            .zip(&self.deployments)
            .map(|(d, m)| DeploymentCounters {
                id: d.id.clone(),
                model_group: Arc::clone(&d.model_group),
                requests: m.requests.get(),
                successes: m.successes.get(),
                failures: CLASSES
                    .iter()
                    .zip(&m.failures)
                    .map(|(&c, n)| (c, n.get()))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                cooldowns: m.cooldowns.iter().map(Count::get).sum(),
                input_tokens: m.input_tokens.get(),
                output_tokens: m.output_tokens.get(),
                spend_usd: m.spend.get() as f64 / 1e6,
            })
            .collect();
        let groups = groups
            .iter()
            .filter_map(|g| {
                let m = self.groups.get(g)?;
                Some(GroupCounters {
                    model_group: Arc::clone(g),
                    successes: m.ok.get(),
                    failures: m.failed.get(),
                    retries: m.retries.get(),
                    fallbacks_succeeded: m.fallback_ok.get(),
                    fallbacks_failed: m.fallback_failed.get(),
                })
            })
            .collect();
        MetricsSnapshot {
            deployments,
            groups,
            limit_store_errors: self.store_errors.get(),
            limit_store_fail_open: self.fail_open.get(),
            stream_continuations: self.continued.get(),
            stream_continuations_failed: self.not_continued.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn upkeep_folds_samples_between_scrapes_and_ends_with_the_router() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .unwrap_or_else(|e| panic!("{e}"))
            .build_recorder();
        let handle = Arc::new(recorder.handle());
        let task = spawn_upkeep(&handle, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("a task on the runtime"));
        let h = recorder.register_histogram(&Key::from_name("lb_test_seconds"), &meta());
        for v in [0.01, 0.2, 3.0] {
            h.record(v);
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        h.record(0.02);
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Folded samples are rendered as if they had been drained at the scrape.
        let text = handle.render();
        assert!(text.contains("lb_test_seconds_count 4"), "{text}");
        assert!(text.contains("lb_test_seconds_sum 3.23"), "{text}");
        assert!(!task.is_finished());
        drop(handle);
        tokio::time::sleep(Duration::from_secs(6)).await;
        tokio::task::yield_now().await;
        assert!(
            task.is_finished(),
            "the upkeep ends once the router is gone"
        );
    }
}
