//! Admission (rate limits, concurrency caps, budgets), pre-call checks and
//! cost, wired into the call loop.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lb_budget::{
    Actual, Admission, AdmissionPlan, BudgetStatus, Budgets, CostCalculator, DeploymentKeys,
    RateLimitStatus,
};
use lb_core::{ConcurrencyPermit, ConcurrencyStore, CounterStore, ReserveError, Usage};

use crate::router::{Op, Router};

/// How often a remote store's rate-limit status is read for the headers.
const RATE_REFRESH: Duration = Duration::from_millis(250);

/// A group's rate-limit status last read, and when it was last asked for.
pub(crate) type CachedRateLimits = (Option<RateLimitStatus>, Option<std::time::Instant>);

/// What admission needs, built once per router.
pub(crate) struct Limits {
    pub(crate) store: Arc<dyn CounterStore>,
    pub(crate) concurrency: Arc<dyn ConcurrencyStore>,
    pub(crate) costs: CostCalculator,
    pub(crate) budgets: Budgets,
    /// Per deployment: its counter keys.
    pub(crate) keys: Vec<DeploymentKeys>,
    /// Per deployment: its concurrency cap.
    pub(crate) caps: Vec<Option<u32>>,
    /// Per deployment: its cap is derived (rpm, tpm, default), not explicit.
    pub(crate) derived_cap: Vec<bool>,
    /// Where derived caps are counted: this process.
    pub(crate) local_concurrency: Arc<dyn ConcurrencyStore>,
    /// Per deployment: its context window, when known.
    pub(crate) context_windows: Vec<Option<u64>>,
    /// Some deployment has a tpm limit or a budget: streams ask for usage.
    pub(crate) needs_usage: bool,
    /// `redis_fail_mode: closed`: a store that cannot answer refuses the call.
    pub(crate) fail_closed: bool,
    /// The store is remote (Redis): settlements and rate-limit headers stay
    /// off the request path (at most one round trip per call: the reservation).
    pub(crate) remote: bool,
    /// Settlements go to a spawned task (a custom store of unknown speed);
    /// Redis's are queued at once, so they are settled inline.
    pub(crate) settle_in_background: bool,
    /// Per group: the rate-limit status last read and when it was asked for (remote store only).
    pub(crate) rate_cache: std::sync::Mutex<std::collections::HashMap<String, CachedRateLimits>>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("caps", &self.caps)
            .field("budgets", &self.budgets)
            .finish_non_exhaustive()
    }
}

/// What an admitted attempt holds until it ends.
///
/// Dropped unsettled (the client went away mid-call, or mid-stream), it
/// settles the estimate rather than releasing it: the upstream may have
/// been reached, and a limit must not be bypassed by disconnecting.
#[derive(Debug, Default)]
pub(crate) struct Held {
    admission: Option<Admission>,
    _permit: Option<ConcurrencyPermit>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(a) = self.admission.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let _ = a.settle(Actual::default()).await;
                    });
                }
                // No runtime (shutting down): the reservation is released.
                Err(_) => drop(a),
            }
        }
    }
}

impl Held {
    /// Settles like [`Held::settle`], off the request path when `background`.
    pub(crate) async fn settle_maybe_later(
        self,
        usage: Option<&Usage>,
        cost: Option<f64>,
        background: bool,
    ) {
        if background {
            let usage = usage.cloned();
            tokio::spawn(async move { self.settle(usage.as_ref(), cost).await });
        } else {
            self.settle(usage, cost).await;
        }
    }

    /// Settles the admission with the attempt's usage and cost (keeps the
    /// estimate where they are unknown).
    pub(crate) async fn settle(mut self, usage: Option<&Usage>, cost: Option<f64>) {
        if let Some(a) = self.admission.take() {
            if let Err(e) = a.settle(Actual::from_usage(usage, cost)).await {
                tracing::warn!(error = %e.message, "settling a call's usage failed");
            }
        }
    }

    /// Settles a failed attempt: the request counts, no tokens or spend.
    pub(crate) async fn settle_failed(self) {
        self.settle_tokens(0, 0.0).await;
    }

    async fn settle_tokens(mut self, tokens: u64, cost: f64) {
        if let Some(a) = self.admission.take() {
            let actual = Actual {
                tokens: Some(tokens),
                cost_usd: Some(cost),
            };
            if let Err(e) = a.settle(actual).await {
                tracing::warn!(error = %e.message, "settling a call's usage failed");
            }
        }
    }
}

/// The answer of admission for one candidate.
pub(crate) enum Admit {
    /// It may take the call.
    Go(Held),
    /// It may not now: a limit or budget is reached, or it is full.
    Skip {
        /// What was reached, for the client's error.
        reason: String,
        /// When it has room again, if that is known.
        retry_after: Option<Duration>,
    },
}

/// A reached limit in words: `a: rpm limit 5 reached (5 used; resets in 16s)`.
fn describe_denial(id: &lb_core::DeploymentId, denied: &lb_core::Denied) -> String {
    let key = denied.key.as_str();
    let resets = denied.retry_after.as_secs() + u64::from(denied.retry_after.subsec_nanos() > 0);
    let usd = |micros: u64| lb_budget::micros_to_usd(micros);
    if denied.exceeds_limit() {
        return format!(
            "{id}: {key} limit {} is smaller than this call ({} requested)",
            denied.limit, denied.requested
        );
    }
    if key.ends_with(":rpm") {
        format!(
            "{id}: rpm limit {} reached ({} used; resets in {resets}s)",
            denied.limit, denied.current
        )
    } else if key.ends_with(":tpm") {
        format!(
            "{id}: tpm limit {} reached ({} used, {} more needed; resets in {resets}s)",
            denied.limit, denied.current, denied.requested
        )
    } else if let Some(provider) = key.strip_prefix("provider_spend:") {
        format!(
            "{id}: budget of provider {provider} reached (${} of ${} spent; resets in {resets}s)",
            usd(denied.current),
            usd(denied.limit)
        )
    } else if key.starts_with("deployment_spend:") {
        format!(
            "{id}: deployment budget reached (${} of ${} spent; resets in {resets}s)",
            usd(denied.current),
            usd(denied.limit)
        )
    } else {
        format!(
            "{id}: {key} at {} of {} (resets in {resets}s)",
            denied.current, denied.limit
        )
    }
}

impl Router {
    /// Reserves the limits and budgets of deployment `i` for one call, and
    /// takes a concurrency slot. A store that fails lets the call through
    /// (logged): limits must not take the router down.
    pub(crate) async fn admit(&self, i: usize, op: Op<'_>, estimated_tokens: u64) -> Admit {
        let inner = &*self.inner;
        let l = &inner.limits;
        let d = &inner.entries[i].deployment;
        let mut held = Held::default();
        if let Some(cap) = l.caps[i] {
            let store = if l.derived_cap[i] {
                &l.local_concurrency
            } else {
                &l.concurrency
            };
            match ConcurrencyPermit::try_acquire(Arc::clone(store), l.keys[i].parallel.clone(), cap)
                .await
            {
                Ok(Some(p)) => held._permit = Some(p),
                Ok(None) => {
                    return Admit::Skip {
                        reason: format!("{}: max_parallel_requests={cap} in flight", d.id),
                        retry_after: None,
                    };
                }
                Err(e) if l.fail_closed => {
                    inner.metrics.store_errors.increment(1);
                    return Admit::Skip {
                        reason: format!(
                            "{}: limit store unavailable ({}); redis_fail_mode is closed",
                            d.id, e.message
                        ),
                        retry_after: Some(Duration::from_secs(1)),
                    };
                }
                Err(e) => {
                    inner.metrics.store_errors.increment(1);
                    inner.metrics.fail_open.increment(1);
                    tracing::warn!(deployment = %d.id, error = %e.message, "concurrency store failed; call let through")
                }
            }
        }
        let has_limits = d.rpm.is_some() || d.tpm.is_some();
        let has_budget = !l.budgets.is_empty()
            && (l.budgets.provider(&d.provider).is_some() || l.budgets.deployment(&d.id).is_some());
        if !has_limits && !has_budget {
            return Admit::Go(held);
        }
        let mut plan = AdmissionPlan::new().with_rate_limits_keyed(&l.keys[i], d, estimated_tokens);
        if has_budget {
            let (prompt, completion) = match op {
                Op::Chat(req) | Op::Stream(req) => {
                    let prompt = lb_budget::estimate_prompt_tokens(req);
                    (prompt, estimated_tokens.saturating_sub(prompt))
                }
                Op::Embed(_) => (estimated_tokens, 0),
            };
            let cost = l.costs.estimate_cost(d, prompt, completion).unwrap_or(0.0);
            plan = plan.with_budgets(&l.budgets, d, cost);
        }
        match Admission::reserve(Arc::clone(&l.store), plan, inner.clock.wall()).await {
            Ok(a) => {
                held.admission = Some(a);
                Admit::Go(held)
            }
            Err(ReserveError::Denied(denied)) => {
                let reason = describe_denial(&d.id, &denied);
                Admit::Skip {
                    reason,
                    retry_after: (!denied.exceeds_limit()).then_some(denied.retry_after),
                }
            }
            Err(ReserveError::Store(e)) if l.fail_closed => {
                inner.metrics.store_errors.increment(1);
                Admit::Skip {
                    reason: format!(
                        "{}: limit store unavailable ({}); redis_fail_mode is closed",
                        d.id, e.message
                    ),
                    retry_after: Some(Duration::from_secs(1)),
                }
            }
            Err(ReserveError::Store(e)) => {
                inner.metrics.store_errors.increment(1);
                inner.metrics.fail_open.increment(1);
                tracing::warn!(deployment = %d.id, error = %e.message, "limit store failed; call let through");
                Admit::Go(held)
            }
        }
    }

    /// Whether the prompt fits deployment `i`'s context window (pre-call
    /// checks); unknown windows fit.
    pub(crate) fn fits_context(&self, i: usize, prompt_tokens: u64) -> bool {
        match self.inner.limits.context_windows[i] {
            Some(window) => prompt_tokens <= window,
            None => true,
        }
    }

    /// The cost of a call of deployment `i` with `usage`, when its price is known.
    pub(crate) fn cost_of(&self, i: usize, usage: &Usage) -> Option<f64> {
        let d = &self.inner.entries[i].deployment;
        self.inner.limits.costs.cost(d, usage)
    }

    /// The price per token (input + output) of deployment `i`, when known.
    pub(crate) fn cost_per_token(&self, i: usize) -> Option<f64> {
        self.inner
            .limits
            .costs
            .cost_per_token(&self.inner.entries[i].deployment)
    }

    /// The rate-limit status of the deployments of `group` that have limits.
    pub(crate) async fn group_rate_limits(&self, group: &str) -> Option<RateLimitStatus> {
        let inner = &*self.inner;
        if inner.limits.remote {
            // The last status read, refreshed off the request path at most
            // every RATE_REFRESH.
            let now = inner.clock.now();
            let (cached, stale) = {
                let mut cache = match inner.limits.rate_cache.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                let entry = cache.entry(group.to_owned()).or_insert((None, None));
                let stale = entry.1.is_none_or(|t: std::time::Instant| {
                    now.saturating_duration_since(t) >= RATE_REFRESH
                });
                if stale {
                    entry.1 = Some(now);
                }
                (entry.0, stale)
            };
            if stale {
                let router = self.clone();
                let name = group.to_owned();
                tokio::spawn(async move {
                    if let Some(status) = router.read_rate_limits(&name).await {
                        let mut cache = match router.inner.limits.rate_cache.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        if let Some(entry) = cache.get_mut(&name) {
                            entry.0 = Some(status);
                        }
                    }
                });
            }
            return cached;
        }
        self.read_rate_limits(group).await
    }

    async fn read_rate_limits(&self, group: &str) -> Option<RateLimitStatus> {
        let inner = &*self.inner;
        let members = inner.groups.get(group)?;
        let deployments: Vec<&lb_core::Deployment> = members
            .iter()
            .map(|&i| &*inner.entries[i].deployment)
            .filter(|d| d.rpm.is_some() || d.tpm.is_some())
            .collect();
        if deployments.is_empty() {
            return None;
        }
        lb_budget::rate_limit_status(&*inner.limits.store, &deployments, inner.clock.wall())
            .await
            .ok()
    }

    /// Budget, spend and reset time of every provider budget.
    pub async fn provider_budgets(&self) -> Vec<BudgetStatus> {
        let inner = &*self.inner;
        inner
            .limits
            .budgets
            .provider_status(&*inner.limits.store, inner.clock.wall())
            .await
            .unwrap_or_default()
    }

    /// Budget, spend and reset time of every deployment budget.
    pub async fn deployment_budgets(&self) -> Vec<BudgetStatus> {
        let inner = &*self.inner;
        inner
            .limits
            .budgets
            .deployment_status(&*inner.limits.store, inner.clock.wall())
            .await
            .unwrap_or_default()
    }
}
