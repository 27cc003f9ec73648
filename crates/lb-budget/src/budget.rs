//! Spend budgets per provider (`provider_budget_config`) and per deployment
//! (`max_budget` + `budget_duration`).
//!
//! Unlike LiteLLM, which checks spend so far before a call and adds the cost
//! after it, a call here reserves its *estimated* cost before it runs (in the
//! same atomic step as its rate limits) and settles the actual cost after.
//! Spend is kept in integer micro-dollars (costs rounded up to the next
//! micro-dollar), in fixed windows of the budget period (see
//! [`Window`]): `1d` is the UTC day, `1mo` the calendar month. A budget's
//! spend in a window never exceeds its limit by more than the overruns
//! (actual − estimated cost) of the calls that were in flight when it was
//! crossed; run one at a time, by more than the last call's overrun.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use lb_core::{CounterKey, CounterStore, Deployment, DeploymentId, Reserve, StoreError, Window};
use serde::Deserialize;

use crate::error::BudgetConfigError;

/// One entry of `provider_budget_config`, as LiteLLM reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProviderBudgetEntry {
    /// The budget in USD (alias `max_budget`). Zero means no limit, as in
    /// LiteLLM.
    #[serde(alias = "max_budget")]
    pub budget_limit: f64,
    /// The budget period, e.g. `1d`, `30d`, `1mo` (alias `budget_duration`).
    #[serde(alias = "budget_duration")]
    pub time_period: String,
    /// Keys this router does not read (reported by the config loader).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// `provider_budget_config`: provider name → budget.
pub type ProviderBudgetConfig = BTreeMap<String, ProviderBudgetEntry>;

/// A validated budget: a limit per window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimit {
    /// The limit in USD.
    pub limit_usd: f64,
    /// The limit in micro-dollars (rounded down), what the store enforces.
    pub limit_micros: u64,
    /// The budget period.
    pub window: Window,
}

impl BudgetLimit {
    /// Validates a limit and a LiteLLM duration; `path` names the setting in
    /// errors. `Ok(None)` for a zero limit (no limit, as in LiteLLM).
    pub fn parse(
        limit_usd: f64,
        period: &str,
        path: &str,
    ) -> Result<Option<BudgetLimit>, BudgetConfigError> {
        if !limit_usd.is_finite() || limit_usd < 0.0 {
            return Err(BudgetConfigError {
                path: path.to_owned(),
                message: format!("budget must be a finite amount of USD >= 0, got {limit_usd}"),
            });
        }
        let window = Window::parse(period).map_err(|e| BudgetConfigError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if limit_usd == 0.0 {
            return Ok(None);
        }
        Ok(Some(BudgetLimit {
            limit_usd,
            limit_micros: usd_to_micros_floor(limit_usd),
            window,
        }))
    }
}

/// USD to micro-dollars, rounded up (for spend: never under-counts).
pub fn usd_to_micros_ceil(usd: f64) -> u64 {
    let nanos = to_nanos(usd);
    nanos.div_ceil(1_000)
}

/// USD to micro-dollars, rounded down (for limits).
pub fn usd_to_micros_floor(usd: f64) -> u64 {
    to_nanos(usd) / 1_000
}

/// Micro-dollars to USD.
pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Rounds to whole nano-dollars first, so `0.0025` is not `2500.0000000001`
/// micro-dollars. Negative and NaN are zero; huge values saturate.
fn to_nanos(usd: f64) -> u64 {
    let nanos = (usd * 1e9).round();
    if nanos.is_nan() || nanos <= 0.0 {
        0
    } else if nanos >= u64::MAX as f64 {
        u64::MAX
    } else {
        nanos as u64
    }
}

/// The spend of one budget in its current window, for
/// `GET /provider/budgets`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The provider name or deployment id.
    pub name: String,
    /// The limit in USD.
    pub budget_limit: f64,
    /// Spend in the current window, USD.
    pub spend: f64,
    /// The budget period.
    pub window: Window,
    /// When the current window started.
    pub window_start: SystemTime,
    /// When it resets.
    pub reset_at: SystemTime,
}

/// All spend budgets of a router.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    providers: BTreeMap<Arc<str>, (CounterKey, BudgetLimit)>,
    deployments: HashMap<DeploymentId, (CounterKey, BudgetLimit)>,
}

impl Budgets {
    /// No budgets.
    pub fn new() -> Self {
        Self::default()
    }

    /// The budgets of `provider_budget_config`. Zero limits are dropped
    /// (no limit, as in LiteLLM).
    pub fn from_provider_config(config: &ProviderBudgetConfig) -> Result<Self, BudgetConfigError> {
        let mut budgets = Self::new();
        for (provider, entry) in config {
            let path = format!("provider_budget_config.{provider}");
            if let Some(limit) = BudgetLimit::parse(entry.budget_limit, &entry.time_period, &path)?
            {
                budgets.set_provider(provider, limit);
            }
        }
        Ok(budgets)
    }

    /// Sets a provider's budget.
    pub fn set_provider(&mut self, provider: &str, limit: BudgetLimit) {
        self.providers
            .insert(provider.into(), (Self::provider_key(provider), limit));
    }

    /// Sets a deployment's budget (`max_budget` + `budget_duration`).
    pub fn set_deployment(&mut self, id: DeploymentId, limit: BudgetLimit) {
        let key = Self::deployment_key(&id);
        self.deployments.insert(id, (key, limit));
    }

    /// Whether no budget is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty() && self.deployments.is_empty()
    }

    /// A provider's budget.
    pub fn provider(&self, provider: &str) -> Option<&BudgetLimit> {
        self.providers.get(provider).map(|(_, l)| l)
    }

    /// A deployment's own budget.
    pub fn deployment(&self, id: &DeploymentId) -> Option<&BudgetLimit> {
        self.deployments.get(id).map(|(_, l)| l)
    }

    /// The counter of a provider's spend (`provider_spend:{provider}`).
    pub fn provider_key(provider: &str) -> CounterKey {
        CounterKey::new(format!("provider_spend:{provider}"))
    }

    /// The counter of a deployment's spend (`deployment_spend:{id}`).
    pub fn deployment_key(id: &DeploymentId) -> CounterKey {
        CounterKey::new(format!("deployment_spend:{id}"))
    }

    /// The reservations of one call's estimated cost on the budgets that
    /// apply to `deployment` (its provider's, its own). At least one
    /// micro-dollar is reserved, so a spent budget admits nothing, as in
    /// LiteLLM (`spend >= budget` excludes).
    pub fn reserve_items(&self, deployment: &Deployment, estimated_cost_usd: f64) -> Vec<Reserve> {
        let amount = usd_to_micros_ceil(estimated_cost_usd).max(1);
        let mut items = Vec::with_capacity(2);
        let budgets = [
            self.providers.get(&*deployment.provider),
            self.deployments.get(&deployment.id),
        ];
        for (key, limit) in budgets.into_iter().flatten() {
            items.push(Reserve {
                key: key.clone(),
                window: limit.window,
                amount,
                limit: limit.limit_micros,
            });
        }
        items
    }

    /// Budget, spend and reset time of every provider budget, read in one
    /// step.
    pub async fn provider_status(
        &self,
        store: &dyn CounterStore,
        now: SystemTime,
    ) -> Result<Vec<BudgetStatus>, StoreError> {
        let entries: Vec<(String, CounterKey, BudgetLimit)> = self
            .providers
            .iter()
            .map(|(p, (key, l))| (p.to_string(), key.clone(), *l))
            .collect();
        status(store, entries, now).await
    }

    /// Budget, spend and reset time of every deployment budget, read in one
    /// step, sorted by deployment id.
    pub async fn deployment_status(
        &self,
        store: &dyn CounterStore,
        now: SystemTime,
    ) -> Result<Vec<BudgetStatus>, StoreError> {
        let mut entries: Vec<(String, CounterKey, BudgetLimit)> = self
            .deployments
            .iter()
            .map(|(id, (key, l))| (id.to_string(), key.clone(), *l))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        status(store, entries, now).await
    }
}

async fn status(
    store: &dyn CounterStore,
    entries: Vec<(String, CounterKey, BudgetLimit)>,
    now: SystemTime,
) -> Result<Vec<BudgetStatus>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let counters: Vec<(CounterKey, Window)> = entries
        .iter()
        .map(|(_, key, l)| (key.clone(), l.window))
        .collect();
    let spend = store.get_many(&counters, now).await?;
    Ok(entries
        .into_iter()
        .zip(spend)
        .map(|((name, _, limit), micros)| {
            let index = limit.window.index(now);
            BudgetStatus {
                name,
                budget_limit: limit.limit_usd,
                spend: micros_to_usd(micros),
                window: limit.window,
                window_start: limit.window.start_of(index),
                reset_at: limit.window.end_of(index),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn config(yaml_like: serde_json::Value) -> ProviderBudgetConfig {
        serde_json::from_value(yaml_like).unwrap()
    }

    #[test]
    fn micro_dollar_rounding() {
        assert_eq!(usd_to_micros_ceil(0.0025), 2_500);
        assert_eq!(usd_to_micros_ceil(2.5e-06 * 1_000.0), 2_500);
        assert_eq!(usd_to_micros_ceil(1.5e-07), 1);
        assert_eq!(usd_to_micros_ceil(0.0), 0);
        assert_eq!(usd_to_micros_ceil(-1.0), 0);
        assert_eq!(usd_to_micros_ceil(f64::NAN), 0);
        assert_eq!(usd_to_micros_floor(1e-12), 0);
        assert_eq!(usd_to_micros_floor(100.0), 100_000_000);
        assert_eq!(micros_to_usd(2_500), 0.0025);
    }

    #[test]
    fn provider_config_accepts_litellm_keys_and_aliases() {
        let cfg = config(serde_json::json!({
            "openai": {"budget_limit": 100, "time_period": "1d"},
            "azure": {"max_budget": 0.5, "budget_duration": "1mo", "tpm_limit": 10},
            "anthropic": {"budget_limit": 0, "time_period": "1d"},
        }));
        assert_eq!(
            cfg["azure"].unknown.keys().collect::<Vec<_>>(),
            ["tpm_limit"]
        );
        let b = Budgets::from_provider_config(&cfg).unwrap();
        let openai = b.provider("openai").unwrap();
        assert_eq!(
            (openai.limit_micros, openai.window),
            (100_000_000, Window::DAY)
        );
        assert_eq!(b.provider("azure").unwrap().window, Window::MONTH);
        assert!(b.provider("anthropic").is_none(), "zero means no limit");
    }

    #[test]
    fn bad_budgets_name_their_path() {
        let cfg =
            config(serde_json::json!({"openai": {"budget_limit": 10, "time_period": "1 day"}}));
        let err = Budgets::from_provider_config(&cfg).unwrap_err();
        assert_eq!(err.path, "provider_budget_config.openai");
        assert!(err.message.contains("\"1 day\""), "{err}");
        let err =
            BudgetLimit::parse(-1.0, "1d", "model_list[0].litellm_params.max_budget").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("model_list[0].litellm_params.max_budget: "),
            "{err}"
        );
    }

    #[test]
    fn reservations_respect_the_budget_and_settle_to_actual_cost() {
        let store = MemoryStore::new();
        let mut budgets = Budgets::new();
        budgets.set_provider(
            "openai",
            BudgetLimit::parse(0.01, "1d", "p").unwrap().unwrap(),
        );
        let d = Deployment::new("d1", "g", "openai", "gpt-4o");
        let now = at(1_000);
        let r = store
            .reserve_now(&budgets.reserve_items(&d, 0.004), now)
            .unwrap();
        store.settle_now(&r, &[usd_to_micros_ceil(0.006)]);
        // 6000 spent; an estimate of 5000 no longer fits, 4000 does.
        assert!(
            store
                .reserve_now(&budgets.reserve_items(&d, 0.005), now)
                .is_err()
        );
        let r = store
            .reserve_now(&budgets.reserve_items(&d, 0.004), now)
            .unwrap();
        store.settle_now(&r, &[4_000]);
        // Spent exactly: even a free call (1 micro-dollar minimum) is refused.
        let denied = store
            .reserve_now(&budgets.reserve_items(&d, 0.0), now)
            .unwrap_err();
        assert_eq!(denied.key.as_str(), "provider_spend:openai");
        assert_eq!(denied.reset_at, at(86_400));
        // Other providers are not limited.
        let other = Deployment::new("d2", "g", "azure", "gpt-4o");
        assert!(budgets.reserve_items(&other, 1.0).is_empty());
        // The next day starts from zero.
        assert!(
            store
                .reserve_now(&budgets.reserve_items(&d, 0.004), at(86_400))
                .is_ok()
        );
    }

    #[test]
    fn deployment_and_provider_budgets_reserve_together() {
        let mut budgets = Budgets::new();
        budgets.set_provider(
            "openai",
            BudgetLimit::parse(10.0, "1d", "p").unwrap().unwrap(),
        );
        budgets.set_deployment(
            "d1".into(),
            BudgetLimit::parse(1.0, "30s", "d").unwrap().unwrap(),
        );
        let d = Deployment::new("d1", "g", "openai", "gpt-4o");
        let items = budgets.reserve_items(&d, 0.25);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].key.as_str(), "deployment_spend:d1");
        assert_eq!((items[1].amount, items[1].limit), (250_000, 1_000_000));
    }

    #[test]
    fn status_reports_budget_spend_and_reset() {
        let store = MemoryStore::new();
        let mut budgets = Budgets::new();
        budgets.set_provider(
            "openai",
            BudgetLimit::parse(100.0, "1d", "p").unwrap().unwrap(),
        );
        budgets.set_provider(
            "azure",
            BudgetLimit::parse(5.0, "1h", "p").unwrap().unwrap(),
        );
        let d = Deployment::new("d1", "g", "openai", "gpt-4o");
        let now = at(90_000);
        let r = store
            .reserve_now(&budgets.reserve_items(&d, 1.5), now)
            .unwrap();
        store.settle_now(&r, &[1_250_000]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let status = rt.block_on(budgets.provider_status(&store, now)).unwrap();
        assert_eq!(status.len(), 2);
        assert_eq!(status[0].name, "azure");
        assert_eq!((status[0].spend, status[0].reset_at), (0.0, at(93_600)));
        let openai = &status[1];
        assert_eq!((openai.budget_limit, openai.spend), (100.0, 1.25));
        assert_eq!(
            (openai.window_start, openai.reset_at),
            (at(86_400), at(172_800))
        );
    }
}
