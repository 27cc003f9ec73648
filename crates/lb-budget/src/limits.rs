//! Admission of one call: its rate-limit and budget reservations, reserved in
//! one step and settled with the real usage.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use lb_core::{
    CounterKey, CounterStore, Deployment, DeploymentId, Reservation, Reserve, ReserveError,
    StoreError, Usage, Window,
};

use crate::budget::{Budgets, usd_to_micros_ceil};

/// The counter of a deployment's requests per minute
/// (`deployment:{id}:rpm`).
pub fn rpm_key(id: &DeploymentId) -> CounterKey {
    CounterKey::new(format!("deployment:{id}:rpm"))
}

/// The counter of a deployment's tokens per minute (`deployment:{id}:tpm`).
pub fn tpm_key(id: &DeploymentId) -> CounterKey {
    CounterKey::new(format!("deployment:{id}:tpm"))
}

/// The in-flight key of a deployment's concurrency cap
/// (`deployment:{id}:parallel`).
pub fn concurrency_key(id: &DeploymentId) -> CounterKey {
    CounterKey::new(format!("deployment:{id}:parallel"))
}

/// The counter keys of one deployment, built once (keys are strings; the
/// router keeps these per deployment so a call allocates none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentKeys {
    /// [`rpm_key`].
    pub rpm: CounterKey,
    /// [`tpm_key`].
    pub tpm: CounterKey,
    /// [`concurrency_key`].
    pub parallel: CounterKey,
}

impl DeploymentKeys {
    /// The keys of deployment `id`.
    pub fn new(id: &DeploymentId) -> Self {
        Self {
            rpm: rpm_key(id),
            tpm: tpm_key(id),
            parallel: concurrency_key(id),
        }
    }
}

/// A deployment's concurrency cap, as LiteLLM's
/// `calculate_max_parallel_requests` computes it: `max_parallel_requests`,
/// else `rpm`, else `tpm * 6 / 1000` (at least 1), else
/// `default_max_parallel_requests`, else none.
pub fn max_parallel_requests(
    max_parallel_requests: Option<u32>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    default_max_parallel_requests: Option<u32>,
) -> Option<u32> {
    if let Some(n) = max_parallel_requests {
        return Some(n);
    }
    if let Some(rpm) = rpm {
        return Some(u32::try_from(rpm).unwrap_or(u32::MAX));
    }
    if let Some(tpm) = tpm {
        let rpm = tpm.saturating_mul(6) / 1_000;
        return Some(u32::try_from(rpm).unwrap_or(u32::MAX).max(1));
    }
    default_max_parallel_requests
}

/// What a reserved item counts, so it can be settled from the usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests (reserved 1, settled 1; 0 on release).
    Requests,
    /// Tokens (reserved the estimate, settled the usage's total).
    Tokens,
    /// Spend in micro-dollars (reserved the estimated cost, settled the cost).
    Spend,
}

/// The reservations of one call on one deployment, built before the call and
/// reserved in one [`CounterStore::reserve`] step.
///
/// ```
/// use lb_budget::AdmissionPlan;
/// use lb_core::Deployment;
///
/// let mut d = Deployment::new("d1", "gpt-4o", "openai", "gpt-4o");
/// d.rpm = Some(10);
/// d.tpm = Some(10_000);
/// let plan = AdmissionPlan::for_deployment(&d, 300);
/// assert_eq!(plan.items().len(), 2);
/// assert_eq!(plan.items()[1].amount, 300);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AdmissionPlan {
    items: Vec<Reserve>,
    kinds: Vec<Kind>,
}

impl AdmissionPlan {
    /// An empty plan (admits everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// The rate limits of `deployment` (its `rpm` and `tpm`, per UTC
    /// minute) for a call of `estimated_tokens` (see
    /// [`estimate_call_tokens`](crate::estimate_call_tokens) and
    /// [`estimate_embedding_tokens`](crate::estimate_embedding_tokens)).
    pub fn for_deployment(deployment: &Deployment, estimated_tokens: u64) -> Self {
        Self::new().with_rate_limits(deployment, estimated_tokens)
    }

    /// Adds the rate limits of `deployment`.
    pub fn with_rate_limits(self, deployment: &Deployment, estimated_tokens: u64) -> Self {
        if deployment.rpm.is_none() && deployment.tpm.is_none() {
            return self;
        }
        let keys = DeploymentKeys::new(&deployment.id);
        self.with_rate_limits_keyed(&keys, deployment, estimated_tokens)
    }

    /// Adds the rate limits of `deployment`, with its keys built beforehand
    /// (the allocation-free path for the router).
    pub fn with_rate_limits_keyed(
        mut self,
        keys: &DeploymentKeys,
        deployment: &Deployment,
        estimated_tokens: u64,
    ) -> Self {
        if let Some(rpm) = deployment.rpm {
            self.push(
                Kind::Requests,
                Reserve {
                    key: keys.rpm.clone(),
                    window: Window::MINUTE,
                    amount: 1,
                    limit: rpm,
                },
            );
        }
        if let Some(tpm) = deployment.tpm {
            self.push(
                Kind::Tokens,
                Reserve {
                    key: keys.tpm.clone(),
                    window: Window::MINUTE,
                    amount: estimated_tokens,
                    limit: tpm,
                },
            );
        }
        self
    }

    /// Adds the budgets that apply to `deployment`, reserving
    /// `estimated_cost_usd` (see
    /// [`CostCalculator::estimate_cost`](crate::CostCalculator::estimate_cost)).
    pub fn with_budgets(
        mut self,
        budgets: &Budgets,
        deployment: &Deployment,
        estimated_cost_usd: f64,
    ) -> Self {
        for item in budgets.reserve_items(deployment, estimated_cost_usd) {
            self.push(Kind::Spend, item);
        }
        self
    }

    /// Adds one reservation.
    pub fn push(&mut self, kind: Kind, item: Reserve) {
        self.items.push(item);
        self.kinds.push(kind);
    }

    /// The reservations.
    pub fn items(&self) -> &[Reserve] {
        &self.items
    }

    /// What each reservation counts.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// Whether the plan reserves nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The actual amounts of a finished call; `None` keeps the estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Actual {
    /// Tokens used (`usage.total_tokens`).
    pub tokens: Option<u64>,
    /// Cost in USD.
    pub cost_usd: Option<f64>,
}

impl Actual {
    /// From a response's usage (when it reported one) and its cost.
    pub fn from_usage(usage: Option<&Usage>, cost_usd: Option<f64>) -> Self {
        Self {
            tokens: usage.map(total_tokens),
            cost_usd,
        }
    }
}

/// The tokens of a usage: `total_tokens`, or prompt + completion when the
/// total is missing.
pub fn total_tokens(usage: &Usage) -> u64 {
    if usage.total_tokens > 0 {
        usage.total_tokens
    } else {
        usage.prompt_tokens.saturating_add(usage.completion_tokens)
    }
}

/// An admitted call's reservation, held until it is settled.
///
/// Dropping it unsettled (an error before the upstream was reached, a
/// cancelled future) releases the reservation, so nothing leaks; a call that
/// reached the upstream should be settled with [`settle`](Self::settle).
#[must_use = "settle the admission with the call's usage; dropping it releases the reservation"]
pub struct Admission {
    store: Arc<dyn CounterStore>,
    reservation: Option<Reservation>,
    kinds: Vec<Kind>,
}

impl Admission {
    /// Reserves the plan at `now`, all or nothing.
    pub async fn reserve(
        store: Arc<dyn CounterStore>,
        plan: AdmissionPlan,
        now: SystemTime,
    ) -> Result<Admission, ReserveError> {
        let reservation = if plan.items.is_empty() {
            Reservation::default()
        } else {
            store.reserve(&plan.items, now).await?
        };
        Ok(Admission {
            store,
            reservation: Some(reservation),
            kinds: plan.kinds,
        })
    }

    /// The reservation (what was reserved, in which windows).
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }

    /// The amounts to settle for `actual`, one per reserved item.
    pub fn actual_amounts(&self, actual: Actual) -> Vec<u64> {
        let Some(reservation) = &self.reservation else {
            return Vec::new();
        };
        reservation
            .items()
            .iter()
            .zip(&self.kinds)
            .map(|(item, kind)| match kind {
                Kind::Requests => item.amount,
                Kind::Tokens => actual.tokens.unwrap_or(item.amount),
                Kind::Spend => actual.cost_usd.map_or(item.amount, usd_to_micros_ceil),
            })
            .collect()
    }

    /// Settles with the call's actual usage and cost.
    pub async fn settle(mut self, actual: Actual) -> Result<(), StoreError> {
        let amounts = self.actual_amounts(actual);
        match self.reservation.take() {
            Some(r) if !r.is_empty() => self.store.settle(r, &amounts).await,
            _ => Ok(()),
        }
    }

    /// Gives the reservation back (the call never reached the upstream).
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if let Some(r) = self.reservation.take() {
            if !r.is_empty() {
                self.store.release(r);
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release_now();
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("reservation", &self.reservation)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// The rate-limit headers of a model group
/// (`x-ratelimit-{limit,remaining}-{requests,tokens}`): sums over the
/// deployments that have the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// Σ rpm, if any deployment has one.
    pub limit_requests: Option<u64>,
    /// Σ (rpm − requests this minute), floored at zero per deployment.
    pub remaining_requests: Option<u64>,
    /// Σ tpm, if any deployment has one.
    pub limit_tokens: Option<u64>,
    /// Σ (tpm − tokens this minute), floored at zero per deployment.
    pub remaining_tokens: Option<u64>,
    /// When the current minute ends.
    pub reset_at: SystemTime,
}

/// Reads the rate-limit status of a group's deployments in one step.
pub async fn rate_limit_status(
    store: &dyn CounterStore,
    deployments: &[&Deployment],
    now: SystemTime,
) -> Result<RateLimitStatus, StoreError> {
    let mut counters = Vec::new();
    let mut limits = Vec::new();
    for d in deployments {
        if let Some(rpm) = d.rpm {
            counters.push((rpm_key(&d.id), Window::MINUTE));
            limits.push((Kind::Requests, rpm));
        }
        if let Some(tpm) = d.tpm {
            counters.push((tpm_key(&d.id), Window::MINUTE));
            limits.push((Kind::Tokens, tpm));
        }
    }
    let used = if counters.is_empty() {
        Vec::new()
    } else {
        store.get_many(&counters, now).await?
    };
    let mut status = RateLimitStatus {
        limit_requests: None,
        remaining_requests: None,
        limit_tokens: None,
        remaining_tokens: None,
        reset_at: Window::MINUTE.reset_at(now),
    };
    for ((kind, limit), used) in limits.into_iter().zip(used) {
        let left = limit.saturating_sub(used);
        let (total, remaining) = match kind {
            Kind::Requests => (&mut status.limit_requests, &mut status.remaining_requests),
            Kind::Tokens | Kind::Spend => (&mut status.limit_tokens, &mut status.remaining_tokens),
        };
        *total = Some(total.unwrap_or(0).saturating_add(limit));
        *remaining = Some(remaining.unwrap_or(0).saturating_add(left));
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::budget::BudgetLimit;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn limited(id: &str, rpm: u64, tpm: u64) -> Deployment {
        let mut d = Deployment::new(id, "g", "openai", "gpt-4o");
        d.rpm = Some(rpm);
        d.tpm = Some(tpm);
        d
    }

    fn usage(prompt: u64, completion: u64) -> Usage {
        serde_json::from_value(serde_json::json!({
            "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion
        }))
        .unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn concurrency_cap_follows_litellm() {
        assert_eq!(
            max_parallel_requests(Some(3), Some(10), Some(1_000), Some(7)),
            Some(3)
        );
        assert_eq!(
            max_parallel_requests(None, Some(10), Some(1_000), Some(7)),
            Some(10)
        );
        assert_eq!(
            max_parallel_requests(None, None, Some(1_500), Some(7)),
            Some(9)
        );
        assert_eq!(
            max_parallel_requests(None, None, Some(100), Some(7)),
            Some(1)
        );
        assert_eq!(max_parallel_requests(None, None, None, Some(7)), Some(7));
        assert_eq!(max_parallel_requests(None, None, None, None), None);
    }

    #[test]
    fn plans_only_reserve_configured_limits() {
        let d = Deployment::new("free", "g", "openai", "gpt-4o");
        assert!(AdmissionPlan::for_deployment(&d, 100).is_empty());
        let plan = AdmissionPlan::for_deployment(&limited("d1", 5, 1_000), 100);
        assert_eq!(plan.kinds(), [Kind::Requests, Kind::Tokens]);
        assert_eq!(plan.items()[0].key.as_str(), "deployment:d1:rpm");
        assert_eq!(plan.items()[1].key.as_str(), "deployment:d1:tpm");
    }

    #[test]
    fn estimates_settle_to_actuals() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn CounterStore> = mem.clone();
        let d = limited("d1", 10, 1_000);
        let mut budgets = Budgets::new();
        budgets.set_provider(
            "openai",
            BudgetLimit::parse(1.0, "1d", "p").unwrap().unwrap(),
        );
        let now = at(600);
        let read = |key: CounterKey, w: Window| mem.get_now(&[(key, w)], now)[0];
        block_on(async {
            let plan = AdmissionPlan::for_deployment(&d, 300).with_budgets(&budgets, &d, 0.003);
            let adm = Admission::reserve(store.clone(), plan, now).await.unwrap();
            assert_eq!(read(tpm_key(&d.id), Window::MINUTE), 300);
            assert_eq!(read(Budgets::provider_key("openai"), Window::DAY), 3_000);
            let u = usage(100, 20);
            adm.settle(Actual::from_usage(Some(&u), Some(0.0005)))
                .await
                .unwrap();
            assert_eq!(read(rpm_key(&d.id), Window::MINUTE), 1);
            assert_eq!(read(tpm_key(&d.id), Window::MINUTE), 120);
            assert_eq!(read(Budgets::provider_key("openai"), Window::DAY), 500);
            // Without usage (a stream cut short), the estimate stays counted.
            let adm = Admission::reserve(store.clone(), AdmissionPlan::for_deployment(&d, 50), now)
                .await
                .unwrap();
            adm.settle(Actual::default()).await.unwrap();
            assert_eq!(read(tpm_key(&d.id), Window::MINUTE), 170);
            assert_eq!(read(rpm_key(&d.id), Window::MINUTE), 2);
        });
    }

    #[test]
    fn dropped_admissions_release_everything() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn CounterStore> = mem.clone();
        let d = limited("d1", 1, 1_000);
        let now = at(600);
        block_on(async {
            let adm =
                Admission::reserve(store.clone(), AdmissionPlan::for_deployment(&d, 400), now)
                    .await
                    .unwrap();
            // rpm 1 is full while the call is admitted.
            let err = Admission::reserve(store.clone(), AdmissionPlan::for_deployment(&d, 1), now)
                .await
                .unwrap_err();
            let ReserveError::Denied(denied) = err else {
                panic!("{err:?}")
            };
            assert_eq!(denied.key, rpm_key(&d.id));
            assert_eq!(denied.retry_after, Duration::from_secs(60));
            // A cancelled call (its future dropped mid-flight) gives it back.
            let call = async move {
                let _held = adm;
                std::future::pending::<()>().await;
            };
            assert!(
                tokio::time::timeout(Duration::from_secs(5), call)
                    .await
                    .is_err()
            );
            assert_eq!(mem.get_now(&[(rpm_key(&d.id), Window::MINUTE)], now), [0]);
            assert_eq!(mem.get_now(&[(tpm_key(&d.id), Window::MINUTE)], now), [0]);
            let again =
                Admission::reserve(store.clone(), AdmissionPlan::for_deployment(&d, 1), now)
                    .await
                    .unwrap();
            again.release();
            assert_eq!(mem.get_now(&[(rpm_key(&d.id), Window::MINUTE)], now), [0]);
        });
    }

    #[test]
    fn ten_calls_fit_two_deployments_of_rpm_five() {
        let store: Arc<dyn CounterStore> = Arc::new(MemoryStore::new());
        let ds = [limited("a", 5, 1_000_000), limited("b", 5, 1_000_000)];
        let now = at(1_000);
        block_on(async {
            let mut admitted = 0;
            let mut last_denial = None;
            for _ in 0..11 {
                let mut ok = false;
                for d in &ds {
                    match Admission::reserve(
                        store.clone(),
                        AdmissionPlan::for_deployment(d, 10),
                        now,
                    )
                    .await
                    {
                        Ok(adm) => {
                            adm.settle(Actual {
                                tokens: Some(10),
                                cost_usd: None,
                            })
                            .await
                            .unwrap();
                            ok = true;
                            break;
                        }
                        Err(ReserveError::Denied(denied)) => last_denial = Some(denied),
                        Err(e) => panic!("{e}"),
                    }
                }
                admitted += usize::from(ok);
            }
            assert_eq!(admitted, 10);
            let denied = last_denial.unwrap();
            assert_eq!(denied.retry_after, Duration::from_secs(20));
            let refs: Vec<&Deployment> = ds.iter().collect();
            let status = rate_limit_status(&*store, &refs, now).await.unwrap();
            assert_eq!(status.limit_requests, Some(10));
            assert_eq!(status.remaining_requests, Some(0));
            assert_eq!(status.limit_tokens, Some(2_000_000));
            assert_eq!(status.remaining_tokens, Some(2_000_000 - 100));
            assert_eq!(status.reset_at, at(1_020));
        });
    }

    #[test]
    fn status_without_limits_is_empty() {
        let store = MemoryStore::new();
        let d = Deployment::new("x", "g", "openai", "gpt-4o");
        let s = block_on(rate_limit_status(&store, &[&d], at(0))).unwrap();
        assert_eq!((s.limit_requests, s.limit_tokens), (None, None));
    }

    #[test]
    fn total_tokens_falls_back_to_the_sum() {
        let mut u = usage(7, 3);
        assert_eq!(total_tokens(&u), 10);
        u.total_tokens = 0;
        assert_eq!(total_tokens(&u), 10);
    }
}
