//! The typed builder: every config setting, reachable from Rust.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use lb_budget::{
    BudgetLimit, Budgets, CostCalculator, DeploymentKeys, MemoryStore, PriceTable,
    max_parallel_requests, usd_to_micros_floor,
};
use lb_core::{ConcurrencyStore, CounterStore};
use lb_core::{Deployment, DeploymentId, SharedClock, SystemClock};
use lb_health::{DeploymentStats, HealthTracker, RetryBudget};
use lb_providers::{HttpClient, OpenAiCompatible, Provider};
use lb_strategies::Strategy;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::config::{AliasTarget, RouterConfig, RouterSettings};
use crate::error::ConfigError;
use crate::limits::Limits;
use crate::router::{Entry, Inner, LatencyStats, Router, StrategyNeeds};

/// Builds a [`Router`] from deployments and settings.
#[derive(Default)]
pub struct RouterBuilder {
    deployments: Vec<Deployment>,
    paths: Vec<String>,
    providers: HashMap<DeploymentId, Arc<dyn Provider>>,
    settings: RouterSettings,
    strategy: Option<Box<dyn Strategy>>,
    clock: Option<SharedClock>,
    http: Option<HttpClient>,
    warnings: Vec<String>,
    counter_store: Option<Arc<dyn CounterStore>>,
    concurrency_store: Option<Arc<dyn ConcurrencyStore>>,
    prices: Option<PriceTable>,
}

impl std::fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("deployments", &self.deployments)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RouterBuilder {
    /// An empty builder with LiteLLM's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder holding everything a config file says.
    pub fn from_config(config: RouterConfig) -> Self {
        let http = config
            .general
            .max_response_bytes()
            .map(|max| HttpClient::new().with_max_response_bytes(max));
        Self {
            http,
            paths: config.deployment_paths,
            deployments: config.deployments,
            settings: config.settings,
            warnings: config.warnings,
            ..Self::default()
        }
    }

    /// Adds a deployment (its client is built from its provider prefix).
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.paths
            .push(format!("deployments[{}]", self.deployments.len()));
        self.deployments.push(deployment);
        self
    }

    /// Adds a deployment served by a custom provider implementation.
    pub fn deployment_with_provider(
        mut self,
        deployment: Deployment,
        provider: Arc<dyn Provider>,
    ) -> Self {
        self.providers.insert(deployment.id.clone(), provider);
        self.deployment(deployment)
    }

    /// Replaces the routing strategy (default: the one the settings name).
    pub fn strategy(mut self, strategy: Box<dyn Strategy>) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Retries within a group after the first failure (default 2).
    pub fn num_retries(mut self, n: u32) -> Self {
        self.settings.num_retries = n;
        self
    }

    /// Timeout of a call (default 600 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Timeout to the first chunk of a stream.
    pub fn stream_timeout(mut self, timeout: Duration) -> Self {
        self.settings.stream_timeout = Some(timeout);
        self
    }

    /// Routes `alias` to `group`; hidden aliases are not listed.
    pub fn alias(
        mut self,
        alias: impl Into<String>,
        group: impl Into<String>,
        hidden: bool,
    ) -> Self {
        self.settings.model_group_alias.insert(
            alias.into(),
            AliasTarget {
                group: group.into(),
                hidden,
            },
        );
        self
    }

    /// Replaces all router settings (cooldowns, retries, fallbacks...).
    pub fn settings(mut self, settings: RouterSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Changes router settings in place.
    pub fn configure(mut self, f: impl FnOnce(&mut RouterSettings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// Adds `fallbacks` for `group`, tried in order when it fails.
    pub fn fallbacks(
        mut self,
        group: impl Into<String>,
        fallbacks: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.settings.fallbacks.insert(
            group.into(),
            fallbacks.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Seeds the routing RNG, for reproducible routing.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = Some(seed);
        self
    }

    /// Reads time from `clock` (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Keeps rate-limit and budget counters in `store` (default: in memory;
    /// a shared store makes limits global across instances).
    pub fn counter_store(mut self, store: Arc<dyn CounterStore>) -> Self {
        self.counter_store = Some(store);
        self
    }

    /// Keeps concurrency counts in `store` (default: in memory).
    pub fn concurrency_store(mut self, store: Arc<dyn ConcurrencyStore>) -> Self {
        self.concurrency_store = Some(store);
        self
    }

    /// Prices calls with `table` (default: the built-in table, plus
    /// `model_cost_map` when set).
    pub fn price_table(mut self, table: PriceTable) -> Self {
        self.prices = Some(table);
        self
    }

    /// Uses `http` for every deployment (default: one new pooled client,
    /// with the config's `max_response_size_mb`); `http` keeps its own
    /// answer size limit.
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Validates everything and builds the router. Warnings about ignored
    /// config keys are logged once, here.
    pub fn build(mut self) -> Result<Router, ConfigError> {
        let clock = self.clock.unwrap_or_else(SystemClock::shared);
        let http = self.http.unwrap_or_default();
        let providers = self.providers;
        let mut entries = Vec::with_capacity(self.deployments.len());
        let mut groups: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
        let mut group_order: Vec<Arc<str>> = Vec::new();
        let mut by_id: HashMap<DeploymentId, usize> = HashMap::new();
        for (i, d) in self.deployments.into_iter().enumerate() {
            let path = self
                .paths
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("deployments[{i}]"));
            // Entries sharing an id (LiteLLM allows it) are separate
            // deployments; addressing the id reaches the first.
            let provider: Arc<dyn Provider> = match providers.get(&d.id).cloned() {
                Some(p) => p,
                None => Arc::new(
                    OpenAiCompatible::with_clock(&http, &d, Arc::clone(&clock)).map_err(|e| {
                        ConfigError::Invalid {
                            path: format!("{path}.litellm_params"),
                            message: e.to_string(),
                        }
                    })?,
                ),
            };
            by_id.entry(d.id.clone()).or_insert(i);
            match groups.get_mut(&d.model_group) {
                Some(members) => members.push(i),
                None => {
                    groups.insert(Arc::clone(&d.model_group), vec![i]);
                    group_order.push(Arc::clone(&d.model_group));
                }
            }
            entries.push(Entry {
                deployment: Arc::new(d),
                provider,
                stats: Arc::new(DeploymentStats::default()),
                latency: std::sync::Mutex::new(LatencyStats::new(
                    self.settings.max_latency_list_size,
                    self.settings.latency_ttl,
                )),
            });
        }
        for (alias, target) in &self.settings.model_group_alias {
            if !groups.contains_key(target.group.as_str()) {
                return Err(ConfigError::Invalid {
                    path: format!("router_settings.model_group_alias.{alias}"),
                    message: format!("model group \"{}\" does not exist", target.group),
                });
            }
        }
        check_fallbacks(&self.settings, &groups, &by_id)?;
        let limits = build_limits(
            &self.settings,
            &entries,
            self.prices.take(),
            self.counter_store.take(),
            self.concurrency_store.take(),
        )?;
        for w in &self.warnings {
            tracing::warn!("config: {w}");
        }
        let seed = self
            .settings
            .seed
            .unwrap_or_else(|| SmallRng::from_os_rng().next_u64());
        let strategy_needs = StrategyNeeds::of(
            self.strategy
                .is_none()
                .then_some(self.settings.routing_strategy),
        );
        let strategy = self.strategy.unwrap_or_else(|| {
            self.settings
                .routing_strategy
                .build_with(&self.settings.strategy_args)
        });
        let now = clock.now();
        let group_weights = groups
            .iter()
            .map(|(name, members)| {
                let candidates: Vec<lb_strategies::Candidate<'_>> = members
                    .iter()
                    .map(|&i| lb_strategies::Candidate::new(&entries[i].deployment))
                    .collect();
                (
                    Arc::clone(name),
                    Arc::new(lb_strategies::WeightIndex::new(&candidates)),
                )
            })
            .collect();
        let telemetry = match &self.settings.tracing {
            Some(t) => Some(
                crate::telemetry::Telemetry::new(
                    t,
                    entries
                        .iter()
                        .map(|e| (&*e.deployment, e.provider.api_base())),
                )
                .map_err(|message| ConfigError::Invalid {
                    path: "router_settings.otel".to_owned(),
                    message,
                })?,
            ),
            None => None,
        };
        Ok(Router {
            inner: Arc::new(Inner {
                telemetry,
                metrics: crate::metrics::RouterMetrics::new(
                    self.settings.enable_metrics,
                    entries
                        .iter()
                        .map(|e| (&*e.deployment, e.provider.api_base())),
                    group_order.iter().cloned(),
                ),
                load: self
                    .settings
                    .redis
                    .as_ref()
                    .filter(|r| {
                        !r.stats_interval.is_zero()
                            && (strategy_needs.in_flight || strategy_needs.latency)
                    })
                    .map(|r| {
                        (
                            Arc::new(lb_redis::RedisLoadExchange::new(
                                r.url.expose(),
                                &r.key_prefix,
                            )) as Arc<dyn lb_core::LoadExchange>,
                            r.stats_interval,
                        )
                    }),
                remote: arc_swap::ArcSwap::from_pointee(vec![
                    crate::router::RemoteLoad::default();
                    entries.len()
                ]),
                bus: self.settings.redis.as_ref().map(|r| {
                    Arc::new(lb_redis::RedisCooldownBus::new(
                        r.url.expose(),
                        &r.key_prefix,
                    )) as Arc<dyn lb_core::CooldownBus>
                }),
                strategy_needs,
                group_weights,
                health: Arc::new(HealthTracker::new(
                    entries.len(),
                    self.settings.cooldown.clone(),
                    now,
                )),
                retry_budget: RetryBudget::new(self.settings.retry_budget, now),
                limits,
                any_prefill: entries.iter().any(|e| e.provider.supports_prefill()),
                entries,
                groups,
                group_order,
                by_id,
                aliases: self.settings.model_group_alias.clone(),
                strategy,
                settings: self.settings,
                clock,
                seed,
                calls: AtomicU64::new(0),
                warnings: self.warnings,
                alive: tokio::sync::watch::channel(()).0,
            }),
        })
    }
}

/// Price table, budgets, counter keys, caps and context windows.
fn build_limits(
    settings: &RouterSettings,
    entries: &[Entry],
    prices: Option<PriceTable>,
    counter_store: Option<Arc<dyn CounterStore>>,
    concurrency_store: Option<Arc<dyn ConcurrencyStore>>,
) -> Result<Limits, ConfigError> {
    let mut table = prices.unwrap_or_else(PriceTable::builtin);
    if let Some(path) = &settings.model_cost_map {
        let extra = PriceTable::from_path(path).map_err(|e| ConfigError::Invalid {
            path: "router_settings.model_cost_map".to_owned(),
            message: e.to_string(),
        })?;
        table.extend(extra);
    }
    let mut costs = CostCalculator::new(table);
    let mut budgets = Budgets::new();
    for (provider, limit) in &settings.provider_budgets {
        budgets.set_provider(provider, *limit);
    }
    for e in entries {
        let d = &e.deployment;
        if let Some(base) = &d.base_model {
            costs.set_base_model(d.id.clone(), base.clone());
        }
        if let (Some(usd), Some(window)) = (d.max_budget, d.budget_duration) {
            if usd > 0.0 {
                budgets.set_deployment(
                    d.id.clone(),
                    BudgetLimit {
                        limit_usd: usd,
                        limit_micros: usd_to_micros_floor(usd),
                        window,
                    },
                );
            }
        }
    }
    // Shared state: Redis when configured (connected on first use), else memory.
    let remote = settings.redis.is_some() || counter_store.is_some();
    // Redis queues settlements (no round trip); a custom store may not.
    let settle_in_background = counter_store.is_some();
    let (counter_store, concurrency_store) =
        match (&settings.redis, counter_store, concurrency_store) {
            (Some(r), None, None) => {
                let redis = Arc::new(lb_redis::LazyRedisStore::new(
                    r.url.expose(),
                    r.key_prefix.clone(),
                ));
                let counters: Arc<dyn CounterStore> = redis.clone();
                let concurrency: Arc<dyn ConcurrencyStore> = redis;
                (Some(counters), Some(concurrency))
            }
            (_, c, k) => (c, k),
        };
    let memory = Arc::new(MemoryStore::new());
    let local_concurrency: Arc<dyn ConcurrencyStore> = memory.clone();
    let needs_usage = !budgets.is_empty() || entries.iter().any(|e| e.deployment.tpm.is_some());
    Ok(Limits {
        fail_closed: settings.redis.as_ref().is_some_and(|r| r.fail_closed),
        remote,
        settle_in_background,
        rate_cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        needs_usage,
        store: counter_store.unwrap_or_else(|| memory.clone()),
        concurrency: concurrency_store.unwrap_or(memory),
        keys: entries
            .iter()
            .map(|e| DeploymentKeys::new(&e.deployment.id))
            .collect(),
        // Caps derived from rpm/tpm/default are per process, as in LiteLLM;
        // an explicit max_parallel_requests is global with a shared store.
        derived_cap: entries
            .iter()
            .map(|e| e.deployment.max_parallel_requests.is_none())
            .collect(),
        local_concurrency,
        caps: entries
            .iter()
            .map(|e| {
                let d = &e.deployment;
                max_parallel_requests(
                    d.max_parallel_requests,
                    d.rpm,
                    d.tpm,
                    settings.default_max_parallel_requests,
                )
            })
            .collect(),
        context_windows: entries
            .iter()
            .map(|e| costs.deployment_context_window(&e.deployment))
            .collect(),
        costs,
        budgets,
    })
}

/// Every fallback names a group, alias or deployment id.
fn check_fallbacks(
    s: &RouterSettings,
    groups: &HashMap<Arc<str>, Vec<usize>>,
    by_id: &HashMap<DeploymentId, usize>,
) -> Result<(), ConfigError> {
    {
        let known = |name: &str| {
            groups.contains_key(name)
                || s.model_group_alias.contains_key(name)
                || by_id.contains_key(name)
        };
        for (key, map) in [
            ("fallbacks", &s.fallbacks),
            ("context_window_fallbacks", &s.context_window_fallbacks),
            ("content_policy_fallbacks", &s.content_policy_fallbacks),
        ] {
            for (group, targets) in map {
                if group != "*" && !known(group) {
                    return Err(ConfigError::Invalid {
                        path: format!("router_settings.{key}.{group}"),
                        message: format!("model group \"{group}\" does not exist"),
                    });
                }
                for t in targets {
                    if !known(t) {
                        return Err(ConfigError::Invalid {
                            path: format!("router_settings.{key}.{group}"),
                            message: format!(
                                "fallback \"{t}\" is no model group, alias or deployment id"
                            ),
                        });
                    }
                }
            }
        }
        for t in &s.default_fallbacks {
            if !known(t) {
                return Err(ConfigError::Invalid {
                    path: "router_settings.default_fallbacks".to_owned(),
                    message: format!("fallback \"{t}\" is no model group, alias or deployment id"),
                });
            }
        }
        Ok(())
    }
}

impl Router {
    /// A builder with LiteLLM's defaults.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::new()
    }

    /// A router from a validated config.
    pub fn from_config(config: RouterConfig) -> Result<Router, ConfigError> {
        RouterBuilder::from_config(config).build()
    }

    /// A router from LiteLLM proxy config YAML.
    pub fn from_yaml(text: &str) -> Result<Router, ConfigError> {
        Self::from_config(RouterConfig::from_yaml(text)?)
    }

    /// A router from a LiteLLM proxy config file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Router, ConfigError> {
        Self::from_config(RouterConfig::from_path(path)?)
    }
}
