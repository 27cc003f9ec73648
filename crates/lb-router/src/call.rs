//! The one call loop: groups, retries, backoff, fallbacks.
//!
//! A call tries its model group; a group tries its healthy deployments in the
//! strategy's order (a retry goes to the next one at once), and when none is
//! left it may retry the last one after a backoff that honours Retry-After.
//! When the group gives up, its fallbacks are tried depth-first (each with
//! its own retries, no group twice, at most `max_fallbacks`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_core::{ErrorClass, UpstreamError};
use lb_health::{Availability, FailureAction, InFlight, Trial, after_failure};
use lb_strategies::{CallContext, Candidate};
use rand::Rng;

use opentelemetry::KeyValue;
use opentelemetry::trace::FutureExt as _;

use crate::error::{AttemptFailure, RouterError};
use crate::limits::{Admit, Held};
use crate::metrics::class_label;
use crate::router::{CallOptions, Op, Output, ResponseMeta, Router, Target};
use crate::telemetry;

/// What a successful call holds until its response (or stream) ends.
pub(crate) struct Hold {
    /// The deployment's in-flight count.
    pub(crate) guard: InFlight,
    /// The attempt's admission, for a stream to settle when it ends.
    pub(crate) held: Option<Held>,
    /// A stream's attempt span, ended when the stream ends.
    pub(crate) span: Option<opentelemetry::Context>,
}

/// This instance's claim on a half-open deployment's one shared trial call;
/// released when dropped (and the other instances told when it `passed`).
struct SharedTrial {
    bus: Arc<dyn lb_core::CooldownBus>,
    deployment: lb_core::DeploymentId,
    passed: bool,
}

impl Drop for SharedTrial {
    fn drop(&mut self) {
        self.bus.trial_over(self.deployment.as_str(), self.passed);
    }
}

/// A group's successful attempt.
struct GroupSuccess {
    out: Output,
    index: usize,
    guard: InFlight,
    span: Option<opentelemetry::Context>,
    retries: u32,
    max_retries: u32,
    /// The attempt's admission, for a stream to settle when it ends.
    held: Option<Held>,
    cost: Option<f64>,
}

/// Why a group gave up.
struct GroupFailure {
    /// The class of the error that ended the group, if any attempt was made.
    class: Option<ErrorClass>,
    /// Every deployment of the group was cooling down or over a limit; the
    /// soonest has room again then.
    all_cooling_until: Option<Instant>,
    /// The limits and budgets that kept deployments out.
    limits: Vec<String>,
}

/// Why the group loop stopped retrying, for the debug log.
#[derive(Debug, Clone, Copy)]
enum Stop {
    RequestFault,
    RetriesExhausted,
    BudgetSpent,
    RetryAfterTooLong,
    NoCandidateLeft,
}

/// This instance's figure and the other instances' mean, weighted equally;
/// either alone when the other is unknown.
fn blend(mine: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (mine, theirs) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    }
}

/// A continuation request in the form `provider` accepts; other requests as they are.
fn continuation_form<'r>(
    provider: &dyn lb_providers::Provider,
    req: &'r lb_core::ChatCompletionRequest,
    opts: &CallOptions,
) -> std::borrow::Cow<'r, lb_core::ChatCompletionRequest> {
    if opts.require_prefill {
        let mut r = req.clone();
        provider.prepare_continuation(&mut r);
        std::borrow::Cow::Owned(r)
    } else {
        std::borrow::Cow::Borrowed(req)
    }
}

impl Router {
    /// Records a successful attempt's latency for the latency strategies:
    /// seconds per output token for completions, time to first chunk for
    /// streams, seconds per call for embeddings.
    fn record_latency(&self, i: usize, op: Op<'_>, out: &Output, elapsed: Duration) {
        let inner = &*self.inner;
        if !inner.strategy_needs.latency {
            return;
        }
        let now = inner.clock.now();
        let secs = elapsed.as_secs_f64();
        let mut l = match inner.entries[i].latency.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match (op, out) {
            (Op::Stream(_), _) => l.ttft.record(secs, now),
            (_, Output::Chat(resp)) => {
                let tokens = resp.usage.as_ref().map_or(0, |u| u.completion_tokens);
                l.completion.record(
                    if tokens > 0 {
                        secs / tokens as f64
                    } else {
                        secs
                    },
                    now,
                );
            }
            _ => l.completion.record(secs, now),
        }
        l.ewma.record(secs, now);
    }

    /// Tokens and requests each deployment used this minute (for usage-based routing).
    async fn minute_usage(&self, usable: &[usize]) -> Vec<(u64, u64)> {
        let inner = &*self.inner;
        let l = &inner.limits;
        let mut counters = Vec::with_capacity(usable.len() * 2);
        for &i in usable {
            counters.push((l.keys[i].tpm.clone(), lb_core::Window::MINUTE));
            counters.push((l.keys[i].rpm.clone(), lb_core::Window::MINUTE));
        }
        match l.store.get_many(&counters, inner.clock.wall()).await {
            Ok(v) => v
                .chunks(2)
                .map(|c| (c[0], c.get(1).copied().unwrap_or(0)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e.message, "reading usage for routing failed; ranking without it");
                Vec::new()
            }
        }
    }

    /// Tag routing (`enable_tag_filtering`): a tagged request keeps the
    /// deployments that carry one of its tags, or `default`; an untagged one
    /// keeps the `default`-tagged ones when there are any.
    fn filter_tags(
        &self,
        group: &str,
        members: Vec<usize>,
        opts: &CallOptions,
    ) -> Result<Vec<usize>, (usize, String)> {
        let inner = &*self.inner;
        if !inner.settings.enable_tag_filtering {
            return Ok(members);
        }
        let tags_of = |i: usize| &inner.entries[i].deployment.tags;
        let is_default = |i: usize| tags_of(i).iter().any(|t| t == "default");
        let kept: Vec<usize> = match &opts.tags {
            Some(tags) if !tags.is_empty() => members
                .iter()
                .copied()
                .filter(|&i| is_default(i) || tags_of(i).iter().any(|t| tags.contains(t)))
                .collect(),
            _ if members.iter().any(|&i| is_default(i)) => {
                members.iter().copied().filter(|&i| is_default(i)).collect()
            }
            _ => members.clone(),
        };
        if kept.is_empty() && !members.is_empty() {
            tracing::debug!(group, tags = ?opts.tags, "no deployment carries the request's tags");
            return Err((
                members[0],
                format!(
                    "Not allowed to access model due to tags configuration: no deployment of model group {group} carries the request's tags {:?}",
                    opts.tags.as_deref().unwrap_or_default()
                ),
            ));
        }
        Ok(kept)
    }

    /// Routes one call: the group and its fallbacks.
    pub(crate) async fn call(
        &self,
        target: Target,
        opts: &CallOptions,
        op: Op<'_>,
    ) -> Result<(Output, ResponseMeta, Hold), RouterError> {
        let inner = &*self.inner;
        let start = inner.clock.now();
        if !opts.continuation {
            inner.retry_budget.deposit(start);
        }
        let mut attempts: Vec<AttemptFailure> = Vec::new();
        let (primary, direct) = match target {
            Target::Group(g) => (g, None),
            Target::Deployment(i) => (
                Arc::clone(&inner.entries[i].deployment.model_group),
                Some(i),
            ),
        };
        // Depth-first over fallbacks: the next group to try is on top.
        let mut stack: Vec<(Arc<str>, Option<usize>)> = vec![(Arc::clone(&primary), direct)];
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut all_cooling_until: Option<Instant> = None;
        let mut every_group_cooling = true;
        let mut limits: Vec<String> = Vec::new();
        // Time spent waiting on upstreams (every attempt), for the overhead figure.
        let mut upstream = Duration::ZERO;
        while let Some((group, direct)) = stack.pop() {
            if tried.contains(&group) {
                continue;
            }
            if tried.len() > inner.settings.max_fallbacks as usize {
                break;
            }
            tried.push(Arc::clone(&group));
            match self
                .call_group(&group, direct, opts, op, &mut attempts, &mut upstream)
                .await
            {
                Ok(s) => {
                    let now = inner.clock.now();
                    let entry = &inner.entries[s.index];
                    let meta = ResponseMeta {
                        deployment_id: entry.deployment.id.clone(),
                        api_base: entry.provider.api_base().to_owned(),
                        model_group: group,
                        provider: Arc::clone(&entry.deployment.provider),
                        attempts: u32::try_from(attempts.len() + 1).unwrap_or(u32::MAX),
                        retries: s.retries,
                        max_retries: s.max_retries,
                        fallbacks: u32::try_from(tried.len() - 1).unwrap_or(u32::MAX),
                        latency: now.saturating_duration_since(start),
                        cost: s.cost,
                        upstream_latency: upstream,
                        rate_limits: None,
                        trace_id: None,
                        index: s.index,
                    };
                    inner.metrics.request(
                        &primary,
                        true,
                        meta.fallbacks > 0,
                        u64::from(meta.attempts.saturating_sub(1)),
                        meta.latency,
                        upstream,
                    );
                    return Ok((
                        s.out,
                        meta,
                        Hold {
                            guard: s.guard,
                            held: s.held,
                            span: s.span,
                        },
                    ));
                }
                Err(f) => {
                    limits.extend(f.limits);
                    match f.all_cooling_until {
                        Some(until) => {
                            all_cooling_until =
                                Some(all_cooling_until.map_or(until, |u| u.min(until)));
                        }
                        None => every_group_cooling = false,
                    }
                    let next = self.fallbacks_for(&group, f.class, opts);
                    if !next.is_empty() {
                        tracing::debug!(group = %group, fallbacks = ?next, "falling back");
                        if let Some(cx) = &opts.trace {
                            telemetry::event(
                                cx,
                                "lb.fallback",
                                vec![
                                    KeyValue::new("lb.fallback.from", group.to_string()),
                                    KeyValue::new("lb.fallback.to", next.join(",")),
                                    KeyValue::new(
                                        "error.type",
                                        f.class.map_or("no_capacity", class_label),
                                    ),
                                ],
                            );
                        }
                    }
                    for name in next.iter().rev() {
                        match self.resolve(name) {
                            Ok(Target::Group(g)) => stack.push((g, None)),
                            Ok(Target::Deployment(i)) => {
                                stack.push((
                                    Arc::clone(&inner.entries[i].deployment.model_group),
                                    Some(i),
                                ));
                            }
                            Err(_) => {
                                tracing::warn!(group = %group, fallback = %crate::router::shown_name(name), "fallback names no model group; skipped")
                            }
                        }
                    }
                }
            }
        }
        let fallbacks: Vec<Arc<str>> = tried.iter().skip(1).cloned().collect();
        let now = inner.clock.now();
        inner.metrics.request(
            &primary,
            false,
            !fallbacks.is_empty(),
            attempts.len().saturating_sub(1) as u64,
            now.saturating_duration_since(start),
            upstream,
        );
        // "No capacity" only when every group was cooling down and every
        // attempt (if any) was rate limited; any other failure is reported as
        // what it was (a 401 must not read as a 429).
        let only_rate_limits = attempts
            .iter()
            .all(|a| a.error.class == ErrorClass::RateLimited);
        if let (true, Some(until)) = (every_group_cooling && only_rate_limits, all_cooling_until) {
            return Err(RouterError::NoCapacity {
                group: primary,
                limits,
                retry_after: until.saturating_duration_since(now),
                attempts,
                fallbacks,
            });
        }
        Err(RouterError::Upstream {
            group: primary,
            attempts,
            fallbacks,
        })
    }

    /// The fallback groups for `group` after it failed with `class`.
    fn fallbacks_for(
        &self,
        group: &str,
        class: Option<ErrorClass>,
        opts: &CallOptions,
    ) -> Vec<String> {
        let s = &self.inner.settings;
        if opts.disable_fallbacks {
            return Vec::new();
        }
        let generic = || -> Vec<String> {
            if let Some(list) = &opts.fallbacks {
                return list.clone();
            }
            s.fallbacks
                .get(group)
                .or_else(|| s.fallbacks.get("*"))
                .cloned()
                .unwrap_or_else(|| s.default_fallbacks.clone())
        };
        match class {
            // A rejected prompt goes only where the operator said it may.
            Some(ErrorClass::ContentPolicy) => s
                .content_policy_fallbacks
                .get(group)
                .cloned()
                .unwrap_or_default(),
            Some(ErrorClass::ContextWindowExceeded) => s
                .context_window_fallbacks
                .get(group)
                .cloned()
                .unwrap_or_else(generic),
            Some(
                ErrorClass::RateLimited
                | ErrorClass::Timeout
                | ErrorClass::Auth
                | ErrorClass::BadRequest
                | ErrorClass::NotFound
                | ErrorClass::ServerError
                | ErrorClass::Connection,
            )
            | None => generic(),
        }
    }

    /// Tries one group: its healthy deployments in ranked order, then
    /// same-deployment retries with backoff, within the retry allowance.
    async fn call_group(
        &self,
        group: &Arc<str>,
        direct: Option<usize>,
        opts: &CallOptions,
        op: Op<'_>,
        attempts: &mut Vec<AttemptFailure>,
        upstream: &mut Duration,
    ) -> Result<GroupSuccess, GroupFailure> {
        let inner = &*self.inner;
        let s = &inner.settings;
        let members: Vec<usize> = match direct {
            // A deployment addressed by id skips cooldowns, as in LiteLLM.
            Some(i) => vec![i],
            None => inner.groups.get(group).cloned().unwrap_or_default(),
        };
        let now = inner.clock.now();
        let members: Vec<usize> = members
            .into_iter()
            .filter(|i| !opts.exclude.contains(i))
            .filter(|&i| !opts.require_prefill || inner.entries[i].provider.supports_prefill())
            .collect();
        let members = match self.filter_tags(group, members, opts) {
            Ok(m) => m,
            Err((first, message)) => {
                // Not allowed to access the model with these tags, as LiteLLM says it.
                attempts.push(AttemptFailure {
                    deployment: inner.entries[first].deployment.id.clone(),
                    error: UpstreamError::new(ErrorClass::BadRequest, message).with_status(400),
                });
                return Err(GroupFailure {
                    class: Some(ErrorClass::BadRequest),
                    all_cooling_until: None,
                    limits: Vec::new(),
                });
            }
        };
        let mut usable = Vec::with_capacity(members.len());
        let mut soonest: Option<Instant> = None;
        for &i in &members {
            match inner.health.check(i, now) {
                Availability::Available | Availability::Trial => usable.push(i),
                Availability::CoolingDown { .. } if direct.is_some() => usable.push(i),
                Availability::CoolingDown { until, .. } => {
                    soonest = Some(soonest.map_or(until, |u| u.min(until)));
                    self.trace_skip(opts, i, "cooling_down");
                }
            }
        }
        if usable.is_empty() {
            tracing::debug!(group = %group, "every deployment is cooling down");
            return Err(GroupFailure {
                class: None,
                all_cooling_until: soonest.or(Some(now)),
                limits: Vec::new(),
            });
        }
        let estimated_tokens = match op {
            Op::Chat(req) | Op::Stream(req) => lb_budget::estimate_call_tokens(req),
            Op::Embed(req) => lb_budget::estimate_embedding_tokens(req),
        };
        if let (true, Op::Chat(req) | Op::Stream(req)) = (s.enable_pre_call_checks, op) {
            // Pre-call checks: leave out deployments whose context window is
            // smaller than the prompt; with none left, a context-window error.
            let prompt = lb_budget::estimate_prompt_tokens(req);
            let before = usable.len();
            usable.retain(|&i| self.fits_context(i, prompt));
            if usable.is_empty() && before > 0 {
                attempts.push(AttemptFailure {
                    deployment: inner.entries[members[0]].deployment.id.clone(),
                    error: UpstreamError::new(
                        ErrorClass::ContextWindowExceeded,
                        format!(
                            "pre-call check: the prompt (about {prompt} tokens) exceeds the context window of every deployment of model group {group}"
                        ),
                    )
                    .with_status(400)
                    .with_code(Some("context_length_exceeded".to_owned())),
                });
                return Err(GroupFailure {
                    class: Some(ErrorClass::ContextWindowExceeded),
                    all_cooling_until: None,
                    limits: Vec::new(),
                });
            }
        }
        let usage = if inner.strategy_needs.usage {
            self.minute_usage(&usable).await
        } else {
            Vec::new()
        };
        let order = self.rank(group, &usable, op, estimated_tokens, &usage);
        if order.is_empty() {
            // The strategy left every deployment out (usage-based: the call
            // would push each over its tpm or rpm).
            let reason = format!(
                "{}: every deployment of model group {group} would exceed its tpm or rpm this minute",
                inner.strategy.name()
            );
            let wall = inner.clock.wall();
            let until_minute = lb_core::Window::MINUTE.until_reset(wall);
            return Err(GroupFailure {
                class: None,
                all_cooling_until: Some(inner.clock.now() + until_minute),
                limits: vec![reason],
            });
        }
        let mut limits: Vec<String> = Vec::new();
        let mut limit_soonest: Option<Instant> = None;
        let mut over_limit: Vec<usize> = Vec::new();
        let policy = s
            .model_group_retry_policy
            .get(&**group)
            .unwrap_or(&s.retry_policy);
        let mut rng = self.rng();
        let mut next = 0usize;
        let mut group_attempts = 0u32;
        let mut max_retries = opts.num_retries.unwrap_or(s.num_retries);
        let mut last: Option<(usize, ErrorClass, Option<u16>, Option<Duration>)> = None;
        let mut same_retries: Vec<(usize, u32)> = Vec::new();
        let stop = loop {
            // Pick the deployment for this attempt and how long to wait first.
            let (i, wait) = if let Some(&i) = order.get(next) {
                next += 1;
                (i, None)
            } else if let Some((li, class, _, retry_after)) = last {
                if class == ErrorClass::Timeout {
                    // A silent upstream costs one timeout, not three.
                    break Stop::NoCandidateLeft;
                }
                let n = same_retries
                    .iter()
                    .find(|(d, _)| *d == li)
                    .map_or(0, |(_, n)| *n);
                let delay = s.backoff.delay(n, retry_after, rng.random::<f64>());
                if delay > s.max_retry_after_wait {
                    break Stop::RetryAfterTooLong;
                }
                match same_retries.iter_mut().find(|(d, _)| *d == li) {
                    Some((_, n)) => *n += 1,
                    None => same_retries.push((li, 1)),
                }
                (li, Some(delay))
            } else {
                break Stop::NoCandidateLeft;
            };
            if let Some((_, class, status, _)) = last {
                let allowed = policy.retries_for(class, status).unwrap_or(max_retries);
                if group_attempts > allowed {
                    break Stop::RetriesExhausted;
                }
            }
            if let Some(delay) = wait {
                tracing::debug!(group = %group, deployment = %inner.entries[i].deployment.id, delay_ms = delay.as_millis() as u64, "backing off before retrying the same deployment");
                inner.clock.sleep(delay).await;
            }
            // Health may have changed since ranking.
            let mut trial: Option<Trial> = None;
            if direct.is_none() {
                match inner.health.check(i, inner.clock.now()) {
                    Availability::Available => {}
                    Availability::Trial => match inner.health.try_trial(i, inner.clock.now()) {
                        Some(t) => trial = Some(t),
                        None if wait.is_some() => break Stop::NoCandidateLeft,
                        None => continue,
                    },
                    Availability::CoolingDown { until, .. } => {
                        soonest = Some(soonest.map_or(until, |u| u.min(until)));
                        self.trace_skip(opts, i, "cooling_down");
                        if wait.is_some() {
                            // It cooled down after its failure: no more same-deployment retries.
                            break Stop::NoCandidateLeft;
                        }
                        continue;
                    }
                }
            }
            // Limits, budgets and concurrency caps, reserved before the call.
            let held = match self.admit(i, op, estimated_tokens).await {
                Admit::Go(held) => held,
                Admit::Skip {
                    reason,
                    retry_after,
                } => {
                    tracing::debug!(group = %group, limit = %reason, "deployment skipped: over a limit");
                    self.trace_skip(opts, i, &reason);
                    let at = inner.clock.now() + retry_after.unwrap_or(Duration::from_secs(1));
                    limit_soonest = Some(limit_soonest.map_or(at, |u| u.min(at)));
                    limits.push(reason);
                    over_limit.push(i);
                    if wait.is_some() {
                        break Stop::NoCandidateLeft;
                    }
                    continue;
                }
            };
            // Every attempt after the call's first (fallbacks and
            // continuations included) is a retry, paid from the budget.
            if (!attempts.is_empty() || group_attempts > 0 || opts.continuation)
                && !inner.retry_budget.try_withdraw(inner.clock.now())
            {
                drop(held);
                break Stop::BudgetSpent;
            }
            // One trial among all instances sharing the state, claimed only
            // now that the call will be made; released however it ends.
            let mut shared_trial = None;
            if trial.is_some() {
                match self.claim_trial(i, op, opts).await {
                    Some(claim) => shared_trial = claim,
                    None => {
                        drop(held);
                        drop(trial.take());
                        if wait.is_some() {
                            break Stop::NoCandidateLeft;
                        }
                        continue;
                    }
                }
            }
            group_attempts += 1;
            let span = self.attempt_span(opts, op, i, attempts.len() + 1, trial.is_some());
            let attempt_started = inner.clock.now();
            let result = match &span {
                Some(cx) => self.attempt(i, opts, op).with_context(cx.clone()).await,
                None => self.attempt(i, opts, op).await,
            };
            *upstream += inner.clock.now().saturating_duration_since(attempt_started);
            match result {
                Ok((out, guard)) => {
                    inner.health.record_success(i, inner.clock.now());
                    if let Some(claim) = shared_trial.as_mut() {
                        claim.passed = true;
                    }
                    drop(shared_trial);
                    drop(trial);
                    // Settle what is known now; a stream settles when it ends.
                    let usage = match &out {
                        Output::Chat(resp) => Some(resp.usage.as_ref()),
                        Output::Embed(resp) => Some(resp.usage.as_ref()),
                        Output::Stream(_) => None,
                    };
                    let (cost, held) = match usage {
                        Some(usage) => {
                            let cost = usage.and_then(|u| self.cost_of(i, u));
                            if let Some(u) = usage {
                                inner.metrics.usage(i, u, cost);
                            }
                            held.settle_maybe_later(usage, cost, inner.limits.settle_in_background)
                                .await;
                            (cost, None)
                        }
                        None => (None, Some(held)),
                    };
                    // A chat or embeddings attempt ends here; a stream's when it ends.
                    let span = match (span, &out, &inner.telemetry) {
                        (Some(cx), Output::Chat(resp), Some(t)) => {
                            let mut attrs = Vec::with_capacity(8);
                            t.chat_response(&mut attrs, resp);
                            telemetry::cost(&mut attrs, cost);
                            telemetry::end_with(&cx, attrs);
                            None
                        }
                        (Some(cx), Output::Embed(resp), Some(_)) => {
                            let mut attrs = Vec::with_capacity(4);
                            telemetry::Telemetry::embedding_response(&mut attrs, resp);
                            telemetry::cost(&mut attrs, cost);
                            telemetry::end_with(&cx, attrs);
                            None
                        }
                        (span, _, _) => span,
                    };
                    if let (Output::Chat(resp), true) =
                        (&out, s.content_policy_fallbacks.contains_key(&**group))
                    {
                        if resp
                            .choices
                            .first()
                            .and_then(|c| c.finish_reason.as_deref())
                            == Some("content_filter")
                        {
                            // A filtered answer goes to the content-policy fallbacks.
                            attempts.push(AttemptFailure {
                                deployment: inner.entries[i].deployment.id.clone(),
                                error: UpstreamError::new(
                                    ErrorClass::ContentPolicy,
                                    "the response was filtered (finish_reason: content_filter)",
                                )
                                .with_status(400),
                            });
                            return Err(GroupFailure {
                                class: Some(ErrorClass::ContentPolicy),
                                all_cooling_until: None,
                                limits,
                            });
                        }
                    }
                    return Ok(GroupSuccess {
                        out,
                        index: i,
                        guard,
                        span,
                        retries: group_attempts - 1,
                        max_retries,
                        held,
                        cost,
                    });
                }
                Err(error) => {
                    held.settle_failed().await;
                    let shortened = self.request_shortened(i, opts, matches!(op, Op::Stream(_)));
                    let cooldown = self.record_failure(i, &error, trial.is_some(), shortened);
                    drop(shared_trial);
                    if let Some(cx) = &span {
                        self.trace_failure(cx, i, &error, cooldown.as_ref());
                    }
                    drop(trial);
                    let d = &inner.entries[i].deployment;
                    tracing::debug!(group = %group, deployment = %d.id, attempt = group_attempts, error = %error, "attempt failed");
                    if let Some(n) = d.num_retries.filter(|_| opts.num_retries.is_none()) {
                        max_retries = n;
                    }
                    let class = error.class;
                    last = Some((i, class, error.status, error.retry_after));
                    attempts.push(AttemptFailure {
                        deployment: d.id.clone(),
                        error,
                    });
                    match after_failure(class) {
                        FailureAction::GiveUp => break Stop::RequestFault,
                        FailureAction::TryAnotherDeployment => {}
                    }
                }
            }
        };
        tracing::debug!(group = %group, attempts = group_attempts, stop = ?stop, "group gave up");
        let all_cooling_until = match direct {
            // An addressed deployment over a limit: capacity returns then.
            Some(_) if group_attempts == 0 => limit_soonest,
            Some(_) => None,
            None => self.all_unavailable(&members, &over_limit, limit_soonest),
        };
        Err(GroupFailure {
            class: last.map(|(_, c, _, _)| c),
            all_cooling_until,
            limits,
        })
    }

    /// When every deployment in `members` is cooling down or over a limit
    /// now, the soonest moment one has room again.
    fn all_unavailable(
        &self,
        members: &[usize],
        over_limit: &[usize],
        limit_soonest: Option<Instant>,
    ) -> Option<Instant> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut soonest: Option<Instant> = limit_soonest;
        for &i in members {
            if over_limit.contains(&i) {
                continue;
            }
            match inner.health.check(i, now) {
                Availability::CoolingDown { until, .. } => {
                    soonest = Some(soonest.map_or(until, |u| u.min(until)))
                }
                Availability::Available | Availability::Trial => return None,
            }
        }
        soonest
    }

    /// Ranks `usable` deployments of `group`: by `order` level first (the
    /// lowest level first; deployments without an order last), and within
    /// each level by the strategy, so retries move to the next level only
    /// when a level is exhausted.
    fn rank(
        &self,
        group: &str,
        usable: &[usize],
        op: Op<'_>,
        estimated_tokens: u64,
        usage: &[(u64, u64)],
    ) -> Vec<usize> {
        let inner = &*self.inner;
        let mut call = CallContext {
            estimated_tokens,
            stream: matches!(op, Op::Stream(_)),
            weights: None,
        };
        let needs = inner.strategy_needs;
        let whole_group = inner.groups.get(group).map_or(0, Vec::len);
        let now = inner.clock.now();
        let mut levels: Vec<u32> = usable
            .iter()
            .map(|&i| inner.entries[i].deployment.order.unwrap_or(u32::MAX))
            .collect();
        levels.sort_unstable();
        levels.dedup();
        let mut order = Vec::with_capacity(usable.len());
        let mut rng = self.rng();
        // Other instances' loads (Redis), when shared: empty otherwise.
        let remote = inner.load.as_ref().map(|_| inner.remote.load());
        let remote_of = |i: usize| remote.as_ref().and_then(|r| r.get(i).copied());
        for level in levels {
            let members: Vec<(usize, usize)> = usable
                .iter()
                .enumerate()
                .filter(|(_, i)| inner.entries[**i].deployment.order.unwrap_or(u32::MAX) == level)
                .map(|(k, &i)| (k, i))
                .collect();
            let candidates: Vec<Candidate<'_>> = members
                .iter()
                .map(|&(k, i)| {
                    let e = &inner.entries[i];
                    let mut c = Candidate::new(&e.deployment);
                    let elsewhere = remote_of(i);
                    if needs.in_flight {
                        c.in_flight = e
                            .stats
                            .in_flight()
                            .saturating_add(elsewhere.map_or(0, |r| r.in_flight));
                    }
                    if needs.cost {
                        c.cost_per_token = self.cost_per_token(i);
                    }
                    if needs.latency {
                        let l = match e.latency.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        let (mine, theirs) = if call.stream {
                            (l.ttft.mean(now), elsewhere.and_then(|r| r.ttft))
                        } else {
                            (l.completion.mean(now), elsewhere.and_then(|r| r.latency))
                        };
                        c.latency = blend(mine, theirs);
                        c.peak_ewma = blend(l.ewma.get(now), elsewhere.and_then(|r| r.peak_ewma));
                    }
                    if let Some(&(tpm, rpm)) = usage.get(k) {
                        c.tpm_used = tpm;
                        c.rpm_used = rpm;
                    }
                    c
                })
                .collect();
            let mut ranked = Vec::with_capacity(candidates.len());
            if candidates.len() == 1 && !needs.usage {
                ranked.push(0);
            } else {
                // The whole group, in config order: its shuffle weights are summed already.
                call.weights = (members.len() == whole_group)
                    .then(|| inner.group_weights.get(group).cloned())
                    .flatten();
                inner
                    .strategy
                    .rank(&call, &candidates, &mut rng, &mut ranked);
            }
            // A custom strategy is trusted with nothing: out-of-range and
            // repeated indices are dropped; candidates it left out are not tried.
            let mut taken = vec![false; members.len()];
            for k in ranked {
                if let (Some(t), Some(&(_, m))) = (taken.get_mut(k), members.get(k)) {
                    if !*t {
                        *t = true;
                        order.push(m);
                    }
                }
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let ids = |v: &[usize]| -> Vec<String> {
                v.iter()
                    .map(|&i| inner.entries[i].deployment.id.to_string())
                    .collect()
            };
            tracing::debug!(
                group,
                strategy = inner.strategy.name(),
                candidates = ?ids(usable),
                ranking = ?ids(&order),
                "routing decision"
            );
        }
        order
    }

    /// Whether this instance may send deployment `i`'s trial call: always
    /// without shared state (`Some(None)`); with Redis, when it wins the
    /// claim (`Some(Some(claim))`, held for the attempt's timeout, at most a
    /// minute, in case it dies mid-call; released when the claim drops).
    /// Redis unreachable: yes (each instance then trials on its own).
    async fn claim_trial(
        &self,
        i: usize,
        op: Op<'_>,
        opts: &CallOptions,
    ) -> Option<Option<SharedTrial>> {
        let inner = &*self.inner;
        let Some(bus) = &inner.bus else {
            return Some(None);
        };
        let d = &inner.entries[i].deployment;
        let timeout = match op {
            Op::Stream(_) => opts.stream_timeout.or(d.stream_timeout),
            Op::Chat(_) | Op::Embed(_) => None,
        }
        .or(opts.timeout)
        .or(d.timeout)
        .unwrap_or(inner.settings.timeout);
        let lease = timeout.min(Duration::from_secs(60));
        match bus.claim_trial(d.id.as_str(), lease).await {
            Ok(true) => Some(Some(SharedTrial {
                bus: Arc::clone(bus),
                deployment: d.id.clone(),
                passed: false,
            })),
            Ok(false) => {
                tracing::debug!(deployment = %d.id, "another instance sends this deployment's trial call");
                self.trace_skip(opts, i, "trial_elsewhere");
                None
            }
            Err(e) => {
                tracing::warn!(deployment = %d.id, error = %e.message, "cannot claim the trial call through redis; trying locally");
                Some(None)
            }
        }
    }

    /// The span of attempt number `attempt` of the call, on deployment `i`,
    /// when the call is traced.
    fn attempt_span(
        &self,
        opts: &CallOptions,
        op: Op<'_>,
        i: usize,
        attempt: usize,
        trial: bool,
    ) -> Option<opentelemetry::Context> {
        let (t, parent) = (self.inner.telemetry.as_ref()?, opts.trace.as_ref()?);
        let (operation, stream, max_tokens, temperature) = match op {
            Op::Chat(r) => (
                "chat",
                false,
                r.max_tokens,
                r.extra
                    .get("temperature")
                    .and_then(serde_json::Value::as_f64),
            ),
            Op::Stream(r) => (
                "chat",
                true,
                r.max_tokens,
                r.extra
                    .get("temperature")
                    .and_then(serde_json::Value::as_f64),
            ),
            Op::Embed(_) => ("embeddings", false, None, None),
        };
        Some(t.attempt_span(
            parent,
            &telemetry::AttemptInfo {
                operation,
                index: i,
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                stream,
                trial,
                continuation: opts.continuation,
                max_tokens,
                temperature,
            },
        ))
    }

    /// Ends a failed attempt's span: the error, and the cooldown it caused.
    pub(crate) fn trace_failure(
        &self,
        cx: &opentelemetry::Context,
        i: usize,
        error: &UpstreamError,
        cooldown: Option<&lb_health::CooldownEvent>,
    ) {
        let capture = self
            .inner
            .telemetry
            .as_ref()
            .is_some_and(telemetry::Telemetry::capture);
        telemetry::failed(
            cx,
            class_label(error.class),
            error.status,
            &error.message,
            capture,
        );
        if let Some(ev) = cooldown {
            let secs = ev
                .until
                .saturating_duration_since(self.inner.clock.now())
                .as_secs_f64();
            telemetry::event(
                cx,
                "lb.cooldown",
                vec![
                    KeyValue::new(
                        "lb.deployment.id",
                        self.inner.entries[i].deployment.id.to_string(),
                    ),
                    KeyValue::new("lb.cooldown.reason", ev.reason.to_string()),
                    KeyValue::new("lb.cooldown.seconds", secs),
                ],
            );
        }
        telemetry::end(cx);
    }

    /// Notes on the request span that deployment `i` was passed over.
    fn trace_skip(&self, opts: &CallOptions, i: usize, reason: &str) {
        if let Some(cx) = &opts.trace {
            telemetry::event(
                cx,
                "lb.deployment_skipped",
                vec![
                    KeyValue::new(
                        "lb.deployment.id",
                        self.inner.entries[i].deployment.id.to_string(),
                    ),
                    KeyValue::new("lb.reason", reason.to_owned()),
                ],
            );
        }
    }

    /// The call timeout and stream idle timeout of an attempt on deployment
    /// `i`: the request's, else the deployment's, else the router's.
    pub(crate) fn timeouts(
        &self,
        i: usize,
        opts: &CallOptions,
        stream: bool,
    ) -> (Duration, Duration) {
        let d = &self.inner.entries[i].deployment;
        let s = &self.inner.settings;
        let timeout = if stream {
            opts.stream_timeout
                .or(d.stream_timeout)
                .or(s.stream_timeout)
                .or(opts.timeout)
                .or(d.timeout)
                .unwrap_or(s.timeout)
        } else {
            opts.timeout.or(d.timeout).unwrap_or(s.timeout)
        };
        let idle = opts
            .stream_idle_timeout
            .or(d.stream_idle_timeout)
            .unwrap_or(s.stream_idle_timeout);
        (timeout, idle)
    }

    /// Whether the request made an attempt on deployment `i` wait less than
    /// the deployment's own timeouts would: a timeout then is the request's
    /// doing, and does not count against the deployment (else one client's
    /// `timeout: 0.001` could cool a whole group down for everyone).
    pub(crate) fn request_shortened(&self, i: usize, opts: &CallOptions, stream: bool) -> bool {
        let given = self.timeouts(i, opts, stream);
        let own = self.timeouts(i, &CallOptions::default(), stream);
        given.0 < own.0 || (stream && given.1 < own.1)
    }

    /// One attempt on deployment `i`, with its timeout and in-flight guard.
    async fn attempt(
        &self,
        i: usize,
        opts: &CallOptions,
        op: Op<'_>,
    ) -> Result<(Output, InFlight), UpstreamError> {
        let inner = &*self.inner;
        let entry = &inner.entries[i];
        let stream = matches!(op, Op::Stream(_));
        let (timeout, idle) = self.timeouts(i, opts, stream);
        let guard = entry.stats.start();
        let started = inner.clock.now();
        let result = match op {
            Op::Chat(req) => entry.provider.chat(req, timeout).await.map(Output::Chat),
            Op::Stream(req) => entry
                .provider
                .chat_stream(
                    &continuation_form(&*entry.provider, req, opts),
                    timeout,
                    idle,
                )
                .await
                .map(Output::Stream),
            Op::Embed(req) => entry
                .provider
                .embedding(req, timeout)
                .await
                .map(Output::Embed),
        };
        let elapsed = inner.clock.now().saturating_duration_since(started);
        inner.metrics.attempt(
            i,
            result.as_ref().map(|_| elapsed).map_err(|e| e.class),
            matches!(op, Op::Stream(_)),
        );
        match &result {
            Ok(out) => {
                entry.stats.record_success(elapsed);
                self.record_latency(i, op, out, elapsed);
            }
            // A timeout the request set shorter than the deployment's own
            // says nothing of the deployment's speed.
            Err(e)
                if e.class == ErrorClass::Timeout && !self.request_shortened(i, opts, stream) =>
            {
                let now = inner.clock.now();
                let mut l = match entry.latency.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                match op {
                    Op::Stream(_) => l.ttft.record_timeout(now),
                    Op::Chat(_) | Op::Embed(_) => l.completion.record_timeout(now),
                }
                l.ewma.record(elapsed.as_secs_f64(), now);
            }
            Err(_) => {}
        }
        result.map(|out| (out, guard))
    }
}
