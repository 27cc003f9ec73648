//! LiteLLM's proxy config (`model_list`, `router_settings`, ...) read into
//! validated settings.
//!
//! Bad values are refused with the exact path and value
//! (`model_list[2].litellm_params.rpm: expected a positive integer, got "ten"`).
//! Keys this project does not implement are collected as warnings, reported
//! once at start-up by name, never fatal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_budget::BudgetLimit;
use lb_core::{Deployment, DeploymentId, Secret, Window};
use lb_health::{
    AllowedFailsPolicy, Backoff, CooldownSettings, LatencyWindow, RetryBudgetSettings, RetryPolicy,
};
use lb_strategies::{StrategyArgs, StrategyKind};
use serde_yaml::Value;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::telemetry::{OtlpProtocol, TracingSettings};

/// Timeout of a call when neither request, deployment nor router sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Retries within a group when nothing sets `num_retries`.
pub const DEFAULT_NUM_RETRIES: u32 = 2;

/// Where an alias points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasTarget {
    /// The model group the alias resolves to.
    pub group: String,
    /// Hidden aliases are routable but not listed by `/v1/models`.
    pub hidden: bool,
}

/// Router-wide settings (`router_settings`).
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// The routing strategy.
    pub routing_strategy: StrategyKind,
    /// Retries within a group after the first failure.
    pub num_retries: u32,
    /// Timeout of a call.
    pub timeout: Duration,
    /// Timeout to the first chunk of a stream (else `timeout`).
    pub stream_timeout: Option<Duration>,
    /// `model_group_alias`.
    pub model_group_alias: HashMap<String, AliasTarget>,
    /// Seed of the routing RNG (random when unset).
    pub seed: Option<u64>,
    /// Cooldown rules (`cooldown_time`, `allowed_fails`, ...).
    pub cooldown: CooldownSettings,
    /// `retry_policy`: retries per error class.
    pub retry_policy: RetryPolicy,
    /// `model_group_retry_policy`: a group's own policy, replacing `retry_policy`.
    pub model_group_retry_policy: HashMap<String, RetryPolicy>,
    /// Backoff between attempts on the same deployment (`retry_after` is its floor).
    pub backoff: Backoff,
    /// Longest Retry-After waited out on a deployment with no alternative (10 s).
    pub max_retry_after_wait: Duration,
    /// The share of traffic retries may add.
    pub retry_budget: RetryBudgetSettings,
    /// `fallbacks`: group -> groups to try when it fails.
    pub fallbacks: HashMap<String, Vec<String>>,
    /// `context_window_fallbacks`.
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
    /// `content_policy_fallbacks`.
    pub content_policy_fallbacks: HashMap<String, Vec<String>>,
    /// `default_fallbacks`: for any group without its own entry.
    pub default_fallbacks: Vec<String>,
    /// Most fallback groups one call may try (5).
    pub max_fallbacks: u32,
    /// `background_health_checks` with `health_check_interval`: probe every deployment this often.
    pub health_check_interval: Option<Duration>,
    /// `default_max_parallel_requests`: the concurrency cap of deployments without their own.
    pub default_max_parallel_requests: Option<u32>,
    /// `provider_budget_config`: provider -> spend budget.
    pub provider_budgets: Vec<(String, BudgetLimit)>,
    /// `enable_pre_call_checks`: skip deployments whose context window is smaller than the prompt.
    pub enable_pre_call_checks: bool,
    /// `enable_metrics` (ours; default on): count calls for `GET /metrics`.
    pub enable_metrics: bool,
    /// `model_cost_map`: a price file in LiteLLM's schema, layered over the built-in table.
    pub model_cost_map: Option<PathBuf>,
    /// `routing_strategy_args.lowest_latency_buffer` and friends.
    pub strategy_args: StrategyArgs,
    /// `routing_strategy_args.ttl`: latency samples older than this are ignored (1 h).
    pub latency_ttl: Duration,
    /// `routing_strategy_args.max_latency_list_size`: samples kept per deployment (10).
    pub max_latency_list_size: NonZeroUsize,
    /// `enable_tag_filtering`: route by the request's `metadata.tags`.
    pub enable_tag_filtering: bool,
    /// `stream_idle_timeout`: longest gap between chunks of a stream (30 s).
    pub stream_idle_timeout: Duration,
    /// `max_stream_continuations`: how often a broken stream may be continued by another deployment (1).
    pub max_stream_continuations: u32,
    /// Shared state in Redis (`redis_url`, or `redis_host` + `redis_port` [+ `redis_password`], or `REDIS_URL`).
    pub redis: Option<RedisSettings>,
    /// OpenTelemetry trace export (`otel`, `litellm_settings.callbacks: ["otel"]`
    /// or `OTEL_EXPORTER_OTLP_ENDPOINT`); `None` means off.
    pub tracing: Option<TracingSettings>,
}

/// Where the shared state lives, and what to do when it cannot be reached.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` or `rediss://` (a secret: it may hold the password).
    pub url: Secret,
    /// Prefix of every key, so several routers can share one Redis (`redis_key_prefix`, default `lb`).
    pub key_prefix: String,
    /// `redis_fail_mode: closed`: refuse calls that need a global limit while Redis is down
    /// (default `open`: let them through on local judgement, with a warning).
    pub fail_closed: bool,
    /// How often each instance shares its strategy statistics (in-flight
    /// counts, latencies) and reads the others' (`redis_stats_interval`,
    /// ours; default 1 s; 0 keeps them per instance).
    pub stats_interval: Duration,
}

/// Default `redis_stats_interval`.
pub const DEFAULT_REDIS_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest gap between stream chunks by default.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest Retry-After waited out by default.
pub const DEFAULT_MAX_RETRY_AFTER_WAIT: Duration = Duration::from_secs(10);
/// Fallback groups one call may try by default.
pub const DEFAULT_MAX_FALLBACKS: u32 = 5;
/// LiteLLM's default `health_check_interval`.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(300);

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            routing_strategy: StrategyKind::SimpleShuffle,
            num_retries: DEFAULT_NUM_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            stream_timeout: None,
            model_group_alias: HashMap::new(),
            seed: None,
            cooldown: CooldownSettings::default(),
            retry_policy: RetryPolicy::default(),
            model_group_retry_policy: HashMap::new(),
            backoff: Backoff::default(),
            max_retry_after_wait: DEFAULT_MAX_RETRY_AFTER_WAIT,
            retry_budget: RetryBudgetSettings::default(),
            fallbacks: HashMap::new(),
            context_window_fallbacks: HashMap::new(),
            content_policy_fallbacks: HashMap::new(),
            default_fallbacks: Vec::new(),
            max_fallbacks: DEFAULT_MAX_FALLBACKS,
            health_check_interval: None,
            default_max_parallel_requests: None,
            provider_budgets: Vec::new(),
            enable_pre_call_checks: false,
            enable_metrics: true,
            model_cost_map: None,
            strategy_args: StrategyArgs::default(),
            latency_ttl: LatencyWindow::DEFAULT_TTL,
            max_latency_list_size: LatencyWindow::DEFAULT_MAX_SIZE,
            enable_tag_filtering: false,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            max_stream_continuations: 1,
            redis: None,
            tracing: None,
        }
    }
}

/// Gateway settings (`general_settings`).
#[derive(Debug, Clone, Default)]
pub struct GeneralSettings {
    /// Bearer key clients must present; none means no auth.
    pub master_key: Option<Secret>,
    /// Largest accepted request body, in MiB.
    pub max_request_size_mb: Option<u64>,
    /// Largest non-streamed answer read from an upstream, in MiB.
    pub max_response_size_mb: Option<u64>,
}

impl GeneralSettings {
    /// `max_request_size_mb` in bytes.
    pub fn max_request_bytes(&self) -> Option<usize> {
        self.max_request_size_mb.map(mib)
    }

    /// `max_response_size_mb` in bytes.
    pub fn max_response_bytes(&self) -> Option<usize> {
        self.max_response_size_mb.map(mib)
    }
}

/// `n` MiB in bytes (saturating).
fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// A whole config file, validated.
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// The deployments, in file order.
    pub deployments: Vec<Deployment>,
    /// `router_settings`.
    pub settings: RouterSettings,
    /// `general_settings`.
    pub general: GeneralSettings,
    /// Keys read but not implemented or not known, one message each.
    pub warnings: Vec<String>,
    /// The config path of each deployment, for errors found later.
    pub(crate) deployment_paths: Vec<String>,
}

impl RouterConfig {
    /// Reads a config from YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut root: Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        // YAML merge keys (`<<: *defaults`), as PyYAML applies them.
        root.apply_merge()
            .map_err(|e| ConfigError::Syntax(e.to_string()))?;
        Parser::new(&root)?.parse(&root)
    }

    /// Reads a config file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&text)
    }
}

/// Request parameters a `litellm_params` entry may set as defaults for every
/// call (sent upstream unless the request sets them).
const FORWARDED_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "response_format",
    "reasoning_effort",
    "parallel_tool_calls",
    "service_tier",
    "dimensions",
    "encoding_format",
];

/// `litellm_params` keys LiteLLM knows that this project reads but does not
/// act on yet.
const PARAMS_NOT_IMPLEMENTED: &[&str] = &[
    "region_name",
    "organization",
    "mock_response",
    "allowed_fails",
    "custom_llm_provider",
    "max_retries",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
];

/// `model_info` keys that change routing in LiteLLM and do nothing here yet
/// (`model_info` is otherwise free-form metadata).
const MODEL_INFO_NOT_IMPLEMENTED: &[&str] = &[
    "supported_environments",
    "team_id",
    "team_public_model_name",
    "access_groups",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "max_input_tokens",
];

const ROUTER_SETTINGS_NOT_IMPLEMENTED: &[&str] = &[
    "optional_pre_call_checks",
    "redis_db",
    "cache_kwargs",
    "cache_responses",
    "caching_groups",
    "client_ttl",
    "default_litellm_params",
    "polling_interval",
    "default_priority",
    "set_verbose",
    "debug_level",
    "alerting_config",
    "router_general_settings",
    "ignore_invalid_deployments",
];

struct Parser {
    env_overlay: HashMap<String, String>,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => describe(&t.value),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The traces URL for an OTLP endpoint: a base (`OTEL_EXPORTER_OTLP_ENDPOINT`)
/// gets `/v1/traces` appended; a signal endpoint is used as it is.
fn traces_url(url: &str, base: bool) -> Option<String> {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    // A URL with a host, as given (before a path is appended).
    reqwest::Url::parse(url)
        .ok()
        .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))?;
    let full = if !base || url.trim_end_matches('/').ends_with("/v1/traces") {
        url.to_owned()
    } else {
        format!("{}/v1/traces", url.trim_end_matches('/'))
    };
    reqwest::Url::parse(&full)
        .ok()
        .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()))
        .map(|_| full)
}

/// `%XX` escapes decoded (OTLP header values are percent-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if let (b'%', Some(Some(h)), Some(Some(l))) = (
            bytes[i],
            bytes.get(i + 1).map(|b| hex(*b)),
            bytes.get(i + 2).map(|b| hex(*b)),
        ) {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn invalid(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn mapping<'a>(v: &'a Value, path: &str) -> Result<Vec<(&'a str, &'a Value)>, ConfigError> {
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| match k {
                Value::String(k) => Ok((k.as_str(), v)),
                other => Err(invalid(
                    path,
                    format!("keys must be strings, got {}", describe(other)),
                )),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(invalid(
            path,
            format!("expected a mapping, got {}", describe(other)),
        )),
    }
}

impl Parser {
    fn new(root: &Value) -> Result<Self, ConfigError> {
        let mut env_overlay = HashMap::new();
        if let Some(vars) = root.get("environment_variables") {
            for (k, v) in mapping(vars, "environment_variables")? {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(invalid(
                            &join("environment_variables", k),
                            format!("expected a string, got {}", describe(other)),
                        ));
                    }
                };
                env_overlay.insert(k.to_owned(), value);
            }
        }
        Ok(Self { env_overlay })
    }

    /// Resolves `os.environ/NAME` strings.
    fn resolve(&self, v: &Value, path: &str) -> Result<Value, ConfigError> {
        if let Value::String(s) = v {
            if let Some(name) = s.strip_prefix("os.environ/") {
                let value = self
                    .env_overlay
                    .get(name)
                    .cloned()
                    .or_else(|| std::env::var(name).ok())
                    .ok_or_else(|| {
                        invalid(path, format!("environment variable {name} is not set"))
                    })?;
                return Ok(Value::String(value));
            }
        }
        Ok(v.clone())
    }

    fn string(&self, v: &Value, path: &str) -> Result<String, ConfigError> {
        match self.resolve(v, path)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(invalid(
                path,
                format!("expected a string, got {}", describe(&other)),
            )),
        }
    }

    fn number(&self, v: &Value, path: &str, what: &str) -> Result<f64, ConfigError> {
        let resolved = self.resolve(v, path)?;
        let n = match &resolved {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        n.filter(|n| n.is_finite()).ok_or_else(|| {
            invalid(
                path,
                format!("expected {what}, got {}", describe(&resolved)),
            )
        })
    }

    fn positive_int(&self, v: &Value, path: &str) -> Result<u64, ConfigError> {
        let what = "a positive integer";
        let n = self.number(v, path, what)?;
        if n >= 1.0 && n.fract() == 0.0 && n <= u64::MAX as f64 {
            Ok(n as u64)
        } else {
            Err(invalid(
                path,
                format!("expected {what}, got {}", describe(&self.resolve(v, path)?)),
            ))
        }
    }

    fn non_negative_int(&self, v: &Value, path: &str) -> Result<u64, ConfigError> {
        let what = "a non-negative integer";
        let n = self.number(v, path, what)?;
        if n >= 0.0 && n.fract() == 0.0 && n <= u64::MAX as f64 {
            Ok(n as u64)
        } else {
            Err(invalid(
                path,
                format!("expected {what}, got {}", describe(&self.resolve(v, path)?)),
            ))
        }
    }

    fn positive_u32(&self, v: &Value, path: &str) -> Result<u32, ConfigError> {
        let n = self.positive_int(v, path)?;
        u32::try_from(n)
            .map_err(|_| invalid(path, format!("expected at most {}, got {n}", u32::MAX)))
    }

    fn small_int(&self, v: &Value, path: &str) -> Result<u32, ConfigError> {
        let n = self.non_negative_int(v, path)?;
        u32::try_from(n)
            .map_err(|_| invalid(path, format!("expected at most {}, got {n}", u32::MAX)))
    }

    fn non_negative(&self, v: &Value, path: &str) -> Result<f64, ConfigError> {
        let what = "a non-negative number";
        let n = self.number(v, path, what)?;
        if n >= 0.0 {
            Ok(n)
        } else {
            Err(invalid(
                path,
                format!("expected {what}, got {}", describe(&self.resolve(v, path)?)),
            ))
        }
    }

    fn seconds(&self, v: &Value, path: &str) -> Result<Duration, ConfigError> {
        let what = "a positive number of seconds";
        let n = self.number(v, path, what)?;
        if n > 0.0 && n < 1e10 {
            Ok(Duration::from_secs_f64(n))
        } else {
            Err(invalid(
                path,
                format!("expected {what}, got {}", describe(&self.resolve(v, path)?)),
            ))
        }
    }

    /// Seconds where `0` means "not set", as LiteLLM's `value or default` reads it.
    fn optional_seconds(&self, v: &Value, path: &str) -> Result<Option<Duration>, ConfigError> {
        if self.number(v, path, "a non-negative number of seconds")? == 0.0 {
            return Ok(None);
        }
        self.seconds(v, path).map(Some)
    }

    fn boolean(&self, v: &Value, path: &str) -> Result<bool, ConfigError> {
        match self.resolve(v, path)? {
            Value::Bool(b) => Ok(b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            other => Err(invalid(
                path,
                format!("expected true or false, got {}", describe(&other)),
            )),
        }
    }

    fn string_list(&self, v: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
                .collect(),
            Value::String(_) => Ok(vec![self.string(v, path)?]),
            other => Err(invalid(
                path,
                format!("expected a list of strings, got {}", describe(other)),
            )),
        }
    }

    /// Python's `str()` of a value, as LiteLLM's id derivation sees it.
    fn py_str(&self, v: &Value, path: &str) -> Result<String, ConfigError> {
        Ok(match self.resolve(v, path)? {
            Value::String(s) => s,
            Value::Bool(true) => "True".to_owned(),
            Value::Bool(false) => "False".to_owned(),
            Value::Null => "None".to_owned(),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i.to_string(),
                (None, Some(f)) => py_float(f),
                _ => n.to_string(),
            },
            Value::Sequence(items) => {
                let mut out = String::from("[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match item {
                        Value::String(s) => out.push_str(&py_repr_str(s)),
                        other => out.push_str(&self.py_str(other, path)?),
                    }
                }
                out.push(']');
                out
            }
            mapping @ Value::Mapping(_) => py_json_dumps(&mapping),
            Value::Tagged(t) => self.py_str(&t.value, path)?,
        })
    }

    fn parse(&self, root: &Value) -> Result<RouterConfig, ConfigError> {
        let mut cfg = RouterConfig::default();
        let mut litellm_num_retries = None;
        let mut litellm_timeout = None;
        let mut otel_callback = false;
        for (key, value) in mapping(root, "")? {
            match key {
                "model_list" | "router_settings" | "general_settings" | "environment_variables" => {
                }
                "litellm_settings" => {
                    for (k, v) in mapping(value, "litellm_settings")? {
                        let path = join("litellm_settings", k);
                        match k {
                            "num_retries" => litellm_num_retries = Some(self.small_int(v, &path)?),
                            "request_timeout" => litellm_timeout = Some(self.seconds(v, &path)?),
                            "callbacks" | "success_callback" | "failure_callback" => {
                                for name in self.string_list(v, &path)? {
                                    if matches!(name.as_str(), "otel" | "opentelemetry") {
                                        otel_callback = true;
                                    } else {
                                        cfg.warnings.push(format!(
                                            "{path}: callback {name:?} is not implemented yet and is ignored"
                                        ));
                                    }
                                }
                            }
                            _ => cfg
                                .warnings
                                .push(format!("{path} is not implemented yet and is ignored")),
                        }
                    }
                }
                other => cfg.warnings.push(format!(
                    "{other} is not a known config section and is ignored"
                )),
            }
        }
        if let Some(n) = litellm_num_retries {
            cfg.settings.num_retries = n;
        }
        if let Some(t) = litellm_timeout {
            cfg.settings.timeout = t;
        }
        if let Some(list) = root.get("model_list") {
            let Value::Sequence(entries) = list else {
                return Err(invalid(
                    "model_list",
                    format!("expected a list, got {}", describe(list)),
                ));
            };
            let mut seen: HashMap<DeploymentId, String> = HashMap::new();
            for (i, entry) in entries.iter().enumerate() {
                let path = format!("model_list[{i}]");
                let (deployment, id_path) = self.deployment(entry, &path, &mut cfg.warnings)?;
                if let Some(first) = seen.get(&deployment.id) {
                    cfg.warnings.push(format!(
                        "{id_path}: deployment id \"{}\" is also {first}'s; the entries share it (as in LiteLLM), and addressing the id reaches the first",
                        deployment.id
                    ));
                } else {
                    seen.insert(deployment.id.clone(), path.clone());
                }
                cfg.deployments.push(deployment);
                cfg.deployment_paths.push(path);
            }
        }
        if let Some(rs) = root.get("router_settings") {
            self.router_settings(rs, &mut cfg)?;
        }
        let otel = root.get("router_settings").and_then(|rs| rs.get("otel"));
        cfg.settings.tracing = match self.tracing_settings(otel, otel_callback) {
            Ok(t) => t,
            // Turned on only by OTEL_* variables (often set for other tools,
            // e.g. a gRPC endpoint): a value we cannot use leaves traces off.
            Err(e) if otel.is_none() && !otel_callback => {
                cfg.warnings
                    .push(format!("{e}; OpenTelemetry traces stay off"));
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(gs) = root.get("general_settings") {
            for (k, v) in mapping(gs, "general_settings")? {
                let path = join("general_settings", k);
                match k {
                    "master_key" => {
                        let key = self.string(v, &path)?;
                        if key.is_empty() {
                            return Err(invalid(&path, "expected a non-empty key"));
                        }
                        cfg.general.master_key = Some(Secret::new(key));
                    }
                    "max_request_size_mb" => {
                        cfg.general.max_request_size_mb = Some(self.positive_int(v, &path)?);
                    }
                    "max_response_size_mb" => {
                        cfg.general.max_response_size_mb = Some(self.positive_int(v, &path)?);
                    }
                    _ => cfg
                        .warnings
                        .push(format!("{path} is not implemented yet and is ignored")),
                }
            }
        }
        if cfg.general.master_key.is_none() {
            if let Some(key) = self.env("LITELLM_MASTER_KEY").filter(|k| !k.is_empty()) {
                cfg.general.master_key = Some(Secret::new(key));
            }
        }
        Ok(cfg)
    }

    /// An environment variable, from the file's `environment_variables` first.
    fn env(&self, name: &str) -> Option<String> {
        self.env_overlay
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    fn router_settings(&self, rs: &Value, cfg: &mut RouterConfig) -> Result<(), ConfigError> {
        self.redis_settings(rs, cfg)?;
        let mut health_interval = None;
        let mut health_checks_off = false;
        for (k, v) in mapping(rs, "router_settings")? {
            let path = join("router_settings", k);
            match k {
                "routing_strategy" => {
                    let name = self.string(v, &path)?;
                    match StrategyKind::from_name(&name) {
                        Some(kind) => cfg.settings.routing_strategy = kind,
                        None => {
                            return Err(invalid(
                                &path,
                                format!(
                                    "expected one of {}, got {:?}",
                                    StrategyKind::NAMES.join(", "),
                                    name
                                ),
                            ));
                        }
                    }
                }
                "routing_strategy_args" => {
                    for (ak, av) in mapping(v, &path)? {
                        let apath = join(&path, ak);
                        match ak {
                            "lowest_latency_buffer" => {
                                cfg.settings.strategy_args.lowest_latency_buffer =
                                    self.non_negative(av, &apath)?;
                            }
                            "ttl" => cfg.settings.latency_ttl = self.seconds(av, &apath)?,
                            "max_latency_list_size" => {
                                let n = self.positive_int(av, &apath)?;
                                cfg.settings.max_latency_list_size =
                                    NonZeroUsize::new(usize::try_from(n).unwrap_or(usize::MAX))
                                        .unwrap_or(NonZeroUsize::MIN);
                            }
                            _ => cfg
                                .warnings
                                .push(format!("{apath} is not a known key and is ignored")),
                        }
                    }
                }
                "enable_tag_filtering" => {
                    cfg.settings.enable_tag_filtering = self.boolean(v, &path)?
                }
                "stream_idle_timeout" => {
                    if let Some(t) = self.optional_seconds(v, &path)? {
                        cfg.settings.stream_idle_timeout = t;
                    }
                }
                "max_stream_continuations" => {
                    cfg.settings.max_stream_continuations = self.small_int(v, &path)?
                }
                "redis_url"
                | "redis_host"
                | "redis_port"
                | "redis_password"
                | "redis_key_prefix"
                | "redis_fail_mode"
                | "redis_stats_interval"
                | "otel" => {}
                "num_retries" => cfg.settings.num_retries = self.small_int(v, &path)?,
                "timeout" => {
                    if let Some(t) = self.optional_seconds(v, &path)? {
                        cfg.settings.timeout = t;
                    }
                }
                "stream_timeout" => {
                    cfg.settings.stream_timeout = self.optional_seconds(v, &path)?
                }
                "routing_seed" => cfg.settings.seed = Some(self.non_negative_int(v, &path)?),
                "cooldown_time" => {
                    // LiteLLM: `cooldown_time or 5`, so 0 means the default here.
                    if let Some(t) = self.optional_seconds(v, &path)? {
                        cfg.settings.cooldown.cooldown_time = t;
                    }
                }
                "max_cooldown_time" => {
                    cfg.settings.cooldown.max_cooldown_time = self.seconds(v, &path)?
                }
                "max_trial_cooldown" => {
                    cfg.settings.cooldown.max_trial_cooldown = self.seconds(v, &path)?
                }
                "disable_cooldowns" => {
                    cfg.settings.cooldown.disable_cooldowns = self.boolean(v, &path)?
                }
                "allowed_fails" => {
                    cfg.settings.cooldown.allowed_fails = Some(self.small_int(v, &path)?)
                }
                "allowed_fails_policy" => {
                    cfg.settings.cooldown.allowed_fails_policy =
                        self.allowed_fails_policy(v, &path, &mut cfg.warnings)?;
                }
                "retry_policy" => {
                    cfg.settings.retry_policy = self.retry_policy(v, &path, &mut cfg.warnings)?
                }
                "model_group_retry_policy" => {
                    for (group, policy) in mapping(v, &path)? {
                        let p =
                            self.retry_policy(policy, &join(&path, group), &mut cfg.warnings)?;
                        cfg.settings
                            .model_group_retry_policy
                            .insert(group.to_owned(), p);
                    }
                }
                "retry_after" => {
                    cfg.settings.backoff.min =
                        self.optional_seconds(v, &path)?.unwrap_or(Duration::ZERO);
                }
                "max_retry_after_wait" => {
                    cfg.settings.max_retry_after_wait =
                        self.optional_seconds(v, &path)?.unwrap_or(Duration::ZERO);
                }
                "retry_budget" => {
                    for (bk, bv) in mapping(v, &path)? {
                        let bpath = join(&path, bk);
                        match bk {
                            "percent" => {
                                cfg.settings.retry_budget.percent = self.non_negative(bv, &bpath)?
                            }
                            "min_per_second" => {
                                cfg.settings.retry_budget.min_per_second =
                                    self.small_int(bv, &bpath)?
                            }
                            "ttl" => cfg.settings.retry_budget.ttl = self.seconds(bv, &bpath)?,
                            _ => cfg
                                .warnings
                                .push(format!("{bpath} is not a known key and is ignored")),
                        }
                    }
                }
                "fallbacks" => cfg.settings.fallbacks = self.fallback_map(v, &path)?,
                "context_window_fallbacks" => {
                    cfg.settings.context_window_fallbacks = self.fallback_map(v, &path)?
                }
                "content_policy_fallbacks" => {
                    cfg.settings.content_policy_fallbacks = self.fallback_map(v, &path)?
                }
                "default_fallbacks" => {
                    cfg.settings.default_fallbacks = self.string_list(v, &path)?
                }
                "max_fallbacks" => cfg.settings.max_fallbacks = self.small_int(v, &path)?,
                "background_health_checks" => {
                    if self.boolean(v, &path)? {
                        cfg.settings
                            .health_check_interval
                            .get_or_insert(DEFAULT_HEALTH_CHECK_INTERVAL);
                    } else {
                        cfg.settings.health_check_interval = None;
                        health_checks_off = true;
                    }
                }
                "health_check_interval" => health_interval = Some(self.seconds(v, &path)?),
                "default_max_parallel_requests" => {
                    cfg.settings.default_max_parallel_requests = Some(self.positive_u32(v, &path)?);
                }
                "enable_metrics" => cfg.settings.enable_metrics = self.boolean(v, &path)?,
                "enable_pre_call_checks" => {
                    cfg.settings.enable_pre_call_checks = self.boolean(v, &path)?
                }
                "model_cost_map" => {
                    cfg.settings.model_cost_map = Some(PathBuf::from(self.string(v, &path)?))
                }
                "provider_budget_config" => {
                    for (provider, entry) in mapping(v, &path)? {
                        let ppath = join(&path, provider);
                        let mut limit = None;
                        let mut period = None;
                        for (bk, bv) in mapping(entry, &ppath)? {
                            let bpath = join(&ppath, bk);
                            match bk {
                                "budget_limit" | "max_budget" => {
                                    limit = Some(self.non_negative(bv, &bpath)?)
                                }
                                "time_period" | "budget_duration" => {
                                    period = Some(self.string(bv, &bpath)?)
                                }
                                _ => cfg
                                    .warnings
                                    .push(format!("{bpath} is not a known key and is ignored")),
                            }
                        }
                        let limit = limit
                            .ok_or_else(|| invalid(&join(&ppath, "budget_limit"), "required"))?;
                        let period = period
                            .ok_or_else(|| invalid(&join(&ppath, "time_period"), "required"))?;
                        let parsed =
                            BudgetLimit::parse(limit, &period, &join(&ppath, "time_period"))
                                .map_err(|e| invalid(&e.path, e.message))?;
                        if let Some(b) = parsed {
                            cfg.settings.provider_budgets.push((provider.to_owned(), b));
                        }
                    }
                }
                "model_group_alias" => {
                    for (alias, target) in mapping(v, &path)? {
                        let apath = join(&path, alias);
                        let t = match target {
                            Value::Mapping(_) => {
                                let mut group = None;
                                let mut hidden = false;
                                for (tk, tv) in mapping(target, &apath)? {
                                    let tpath = join(&apath, tk);
                                    match tk {
                                        "model" => group = Some(self.string(tv, &tpath)?),
                                        "hidden" => hidden = self.boolean(tv, &tpath)?,
                                        _ => cfg.warnings.push(format!(
                                            "{tpath} is not a known key and is ignored"
                                        )),
                                    }
                                }
                                let group = group
                                    .ok_or_else(|| invalid(&join(&apath, "model"), "required"))?;
                                AliasTarget { group, hidden }
                            }
                            _ => AliasTarget {
                                group: self.string(target, &apath)?,
                                hidden: false,
                            },
                        };
                        cfg.settings.model_group_alias.insert(alias.to_owned(), t);
                    }
                }
                _ if ROUTER_SETTINGS_NOT_IMPLEMENTED.contains(&k) => {
                    cfg.warnings
                        .push(format!("{path} is not implemented yet and is ignored"));
                }
                _ => cfg
                    .warnings
                    .push(format!("{path} is not a known setting and is ignored")),
            }
        }
        if let (Some(interval), false) = (health_interval, health_checks_off) {
            if cfg.settings.health_check_interval.is_some() {
                cfg.settings.health_check_interval = Some(interval);
            }
        }
        Ok(())
    }

    /// `redis_url`, else `redis_host` + `redis_port` (+ `redis_password`),
    /// else the `REDIS_URL` environment variable; `redis_key_prefix`,
    /// `redis_fail_mode`.
    fn redis_settings(&self, rs: &Value, cfg: &mut RouterConfig) -> Result<(), ConfigError> {
        let get = |k: &str| rs.get(k);
        let path = |k: &str| join("router_settings", k);
        let url = if let Some(v) = get("redis_url") {
            Some(self.string(v, &path("redis_url"))?)
        } else if let Some(host) = get("redis_host") {
            let host = self.string(host, &path("redis_host"))?;
            let port = match get("redis_port") {
                Some(p) => self.positive_int(p, &path("redis_port"))?,
                None => 6379,
            };
            let auth = match get("redis_password") {
                Some(p) => format!(":{}@", self.string(p, &path("redis_password"))?),
                None => String::new(),
            };
            Some(format!("redis://{auth}{host}:{port}"))
        } else {
            self.env("REDIS_URL").filter(|u| !u.is_empty())
        };
        let Some(url) = url else {
            return Ok(());
        };
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("unix://"))
        {
            return Err(invalid(
                &path("redis_url"),
                "expected a redis:// or rediss:// URL",
            ));
        }
        let key_prefix = match get("redis_key_prefix") {
            Some(v) => self.string(v, &path("redis_key_prefix"))?,
            None => "lb".to_owned(),
        };
        let fail_closed = match get("redis_fail_mode") {
            Some(v) => match self.string(v, &path("redis_fail_mode"))?.as_str() {
                "open" => false,
                "closed" => true,
                other => {
                    return Err(invalid(
                        &path("redis_fail_mode"),
                        format!("expected open or closed, got {other:?}"),
                    ));
                }
            },
            None => false,
        };
        cfg.settings.redis = Some(RedisSettings {
            url: Secret::new(url),
            key_prefix,
            fail_closed,
            stats_interval: match get("redis_stats_interval") {
                Some(v) => self
                    .optional_seconds(v, &path("redis_stats_interval"))?
                    .unwrap_or(Duration::ZERO),
                None => DEFAULT_REDIS_STATS_INTERVAL,
            },
        });
        Ok(())
    }

    /// Trace export: `router_settings.otel` first, then the standard
    /// `OTEL_*` variables (and LiteLLM's `OTEL_ENDPOINT`, `OTEL_HEADERS`).
    /// On when `otel` names an endpoint or sets `enabled: true`, when a
    /// LiteLLM callback says `otel`, or when an OTLP endpoint variable is set.
    fn tracing_settings(
        &self,
        otel: Option<&Value>,
        callback: bool,
    ) -> Result<Option<TracingSettings>, ConfigError> {
        let env = |name: &str| self.env(name).filter(|v| !v.trim().is_empty());
        let mut s = TracingSettings::default();
        let mut enabled: Option<bool> = None;
        let mut endpoint: Option<String> = None;
        let mut protocol: Option<(String, String)> = None;
        let mut headers: Option<String> = None;
        let mut service_name: Option<String> = None;
        let mut capture: Option<bool> = None;
        if let Some(otel) = otel {
            for (k, v) in mapping(otel, "router_settings.otel")? {
                let path = join("router_settings.otel", k);
                match k {
                    "enabled" => enabled = Some(self.boolean(v, &path)?),
                    "endpoint" => {
                        let url = self.string(v, &path)?;
                        endpoint = Some(traces_url(&url, true).ok_or_else(|| {
                            invalid(
                                &path,
                                format!("expected an http:// or https:// URL, got {url:?}"),
                            )
                        })?);
                    }
                    "protocol" => protocol = Some((path.clone(), self.string(v, &path)?)),
                    "headers" => match v {
                        Value::Mapping(_) => {
                            for (hk, hv) in mapping(v, &path)? {
                                let value = self.string(hv, &join(&path, hk))?;
                                s.headers.push((hk.to_owned(), Secret::new(value)));
                            }
                        }
                        _ => headers = Some(self.string(v, &path)?),
                    },
                    "service_name" => service_name = Some(self.string(v, &path)?),
                    "capture_message_content" => capture = Some(self.boolean(v, &path)?),
                    "export_timeout" => s.export_timeout = self.seconds(v, &path)?,
                    "sample_ratio" => {
                        let r = self.number(v, &path, "a number from 0 to 1")?;
                        if !(0.0..=1.0).contains(&r) {
                            return Err(invalid(
                                &path,
                                format!("expected a number from 0 to 1, got {r}"),
                            ));
                        }
                        s.sample_ratio = Some(r);
                    }
                    _ => {
                        return Err(invalid(
                            &path,
                            "unknown key; expected enabled, endpoint, protocol, headers, service_name, capture_message_content, sample_ratio or export_timeout",
                        ));
                    }
                }
            }
        }
        let env_off = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        if endpoint.is_none() {
            let from_env = [
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", false),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", true),
                ("OTEL_ENDPOINT", true),
            ]
            .into_iter()
            .find_map(|(name, base)| env(name).map(|url| (name, url, base)));
            if let Some((name, url, base)) = from_env {
                endpoint = Some(traces_url(&url, base).ok_or_else(|| {
                    invalid(
                        name,
                        format!("expected an http:// or https:// URL, got {url:?}"),
                    )
                })?);
            }
        }
        let on = match enabled {
            Some(on) => on,
            None => !env_off && (endpoint.is_some() || callback),
        };
        if !on {
            return Ok(None);
        }
        if let Some(e) = endpoint {
            s.endpoint = e;
        }
        let protocol = protocol.or_else(|| {
            [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ]
            .into_iter()
            .find_map(|n| env(n).map(|v| (n.to_owned(), v)))
        });
        if let Some((path, p)) = protocol {
            s.protocol = match p.trim() {
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                "http/json" => OtlpProtocol::HttpJson,
                other => {
                    return Err(invalid(
                        &path,
                        format!(
                            "expected http/protobuf or http/json (grpc is not supported), got {other:?}"
                        ),
                    ));
                }
            };
        }
        let headers = headers.or_else(|| {
            [
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_HEADERS",
            ]
            .into_iter()
            .find_map(env)
        });
        if let Some(list) = headers {
            // `key=value,key2=value2`, values percent-decoded as the spec says.
            for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(invalid(
                        "router_settings.otel.headers",
                        "expected key=value pairs separated by commas",
                    ));
                };
                s.headers
                    .push((k.trim().to_owned(), Secret::new(percent_decode(v.trim()))));
            }
        }
        // Every header must be sendable (the value is a secret: not quoted).
        for (k, v) in &s.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(invalid(
                    "router_settings.otel.headers",
                    format!("{k:?} is not a valid HTTP header name"),
                ));
            }
            if http::HeaderValue::from_str(v.expose()).is_err() {
                return Err(invalid(
                    "router_settings.otel.headers",
                    format!("the value of {k:?} is not valid in an HTTP header"),
                ));
            }
        }
        if let Some(name) = service_name.or_else(|| env("OTEL_SERVICE_NAME")) {
            s.service_name = name;
        }
        s.capture_message_content = match capture {
            Some(c) => c,
            None => env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        };
        Ok(Some(s))
    }

    /// LiteLLM's fallback lists: `[{group: [fallback, ...]}, ...]`, one key per entry.
    fn fallback_map(
        &self,
        v: &Value,
        path: &str,
    ) -> Result<HashMap<String, Vec<String>>, ConfigError> {
        let mut out = HashMap::new();
        let Value::Sequence(entries) = v else {
            return Err(invalid(
                path,
                format!(
                    "expected a list of {{group: [fallbacks]}} entries, got {}",
                    describe(v)
                ),
            ));
        };
        for (i, entry) in entries.iter().enumerate() {
            let epath = format!("{path}[{i}]");
            let pairs = mapping(entry, &epath)?;
            if pairs.len() != 1 {
                return Err(invalid(
                    &epath,
                    format!("expected exactly one group per entry, got {}", pairs.len()),
                ));
            }
            for (group, targets) in pairs {
                out.insert(
                    group.to_owned(),
                    self.string_list(targets, &join(&epath, group))?,
                );
            }
        }
        Ok(out)
    }

    fn allowed_fails_policy(
        &self,
        v: &Value,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<AllowedFailsPolicy, ConfigError> {
        let mut p = AllowedFailsPolicy::default();
        for (k, value) in mapping(v, path)? {
            let kpath = join(path, k);
            let n = Some(self.small_int(value, &kpath)?);
            match k {
                "RateLimitErrorAllowedFails" => p.rate_limit = n,
                "TimeoutErrorAllowedFails" => p.timeout = n,
                "AuthenticationErrorAllowedFails" => p.authentication = n,
                "InternalServerErrorAllowedFails" => p.internal_server = n,
                "NotFoundErrorAllowedFails" => p.not_found = n,
                "BadRequestErrorAllowedFails" | "ContentPolicyViolationErrorAllowedFails" => warnings.push(format!(
                    "{kpath} has no effect: these errors are the request's fault and never cool a deployment down"
                )),
                _ => warnings.push(format!("{kpath} is not a known key and is ignored")),
            }
        }
        Ok(p)
    }

    fn retry_policy(
        &self,
        v: &Value,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<RetryPolicy, ConfigError> {
        let mut p = RetryPolicy::default();
        for (k, value) in mapping(v, path)? {
            let kpath = join(path, k);
            let n = Some(self.small_int(value, &kpath)?);
            match k {
                "RateLimitErrorRetries" => p.rate_limit = n,
                "TimeoutErrorRetries" => p.timeout = n,
                "AuthenticationErrorRetries" => p.authentication = n,
                "InternalServerErrorRetries" => p.internal_server = n,
                "ServiceUnavailableErrorRetries" => p.service_unavailable = n,
                "DefaultRetries" => p.default = n,
                "BadRequestErrorRetries"
                | "ContentPolicyViolationErrorRetries"
                | "NotFoundErrorRetries" => {
                    warnings.push(format!(
                        "{kpath} has no effect: bad requests, missing models, context-window and content-policy errors are never retried"
                    ));
                }
                _ => warnings.push(format!("{kpath} is not a known key and is ignored")),
            }
        }
        Ok(p)
    }

    fn deployment(
        &self,
        entry: &Value,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(Deployment, String), ConfigError> {
        let entry_map = mapping(entry, path)?;
        let get = |k: &str| entry_map.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let name_path = join(path, "model_name");
        let model_name = self.string(
            get("model_name").ok_or_else(|| invalid(&name_path, "required"))?,
            &name_path,
        )?;
        if model_name.is_empty() {
            return Err(invalid(&name_path, "expected a non-empty name"));
        }
        let params_path = join(path, "litellm_params");
        let params_value =
            get("litellm_params").ok_or_else(|| invalid(&params_path, "required"))?;
        let params = mapping(params_value, &params_path)?;
        let info_path = join(path, "model_info");
        let info = match get("model_info") {
            Some(v) => mapping(v, &info_path)?,
            None => Vec::new(),
        };
        for (k, _) in &entry_map {
            if !matches!(
                *k,
                "model_name" | "litellm_params" | "model_info" | "rpm" | "tpm"
            ) {
                warnings.push(format!(
                    "{} is not a known key and is ignored",
                    join(path, k)
                ));
            }
        }

        let model_path = join(&params_path, "model");
        let model_value = params
            .iter()
            .find(|(k, _)| *k == "model")
            .map(|(_, v)| *v)
            .ok_or_else(|| invalid(&model_path, "required"))?;
        let model = self.string(model_value, &model_path)?;
        // `custom_llm_provider` names the provider outright, as in LiteLLM.
        let custom_path = join(&params_path, "custom_llm_provider");
        let resolved = match params.iter().find(|(k, _)| *k == "custom_llm_provider") {
            Some((_, v)) => {
                let provider = self.string(v, &custom_path)?;
                let bare = model
                    .strip_prefix(&format!("{provider}/"))
                    .unwrap_or(&model);
                lb_providers::resolve_model(&format!("{provider}/{bare}"))
                    .map_err(|e| invalid(&custom_path, e.to_string()))?
            }
            None => lb_providers::resolve_model(&model)
                .map_err(|e| invalid(&model_path, e.to_string()))?,
        };
        if model_name.contains('*') || resolved.model.contains('*') {
            warnings.push(format!(
                "{path}: wildcard routes are not implemented yet; \"{model_name}\" is matched literally"
            ));
        }

        // id: explicit, else derived as LiteLLM does.
        let (id, id_path) = match info.iter().find(|(k, _)| *k == "id") {
            Some((_, v)) => {
                let p = join(&info_path, "id");
                let id = self.string(v, &p)?;
                if id.is_empty() {
                    return Err(invalid(&p, "expected a non-empty id"));
                }
                (id, p)
            }
            None => {
                let mut text = model_name.clone();
                for (k, v) in &params {
                    text.push_str(k);
                    text.push_str(&self.py_str(v, &join(&params_path, k))?);
                }
                let digest = Sha256::digest(text.as_bytes());
                let mut hex = String::with_capacity(64);
                for b in digest {
                    let _ = write!(hex, "{b:02x}");
                }
                (hex, path.to_owned())
            }
        };

        let mut d = Deployment::new(id.as_str(), &model_name, resolved.spec.name, resolved.model);
        for (k, v) in &params {
            let p = join(&params_path, k);
            match *k {
                "model" | "custom_llm_provider" => {}
                "api_base" | "base_url" => d.api_base = Some(self.string(v, &p)?),
                "api_key" => {
                    let key = self.string(v, &p)?;
                    d.api_key = Some(Secret::new(key));
                }
                "api_version" => d.api_version = Some(self.string(v, &p)?),
                "rpm" => d.rpm = Some(self.positive_int(v, &p)?),
                "tpm" => d.tpm = Some(self.positive_int(v, &p)?),
                "weight" => d.weight = Some(self.non_negative(v, &p)?),
                "order" => d.order = Some(self.small_int(v, &p)?),
                "timeout" => d.timeout = self.optional_seconds(v, &p)?.or(d.timeout),
                "request_timeout" => {
                    // `timeout` wins over `request_timeout`, wherever it sits.
                    let has_timeout = params.iter().any(|(k, _)| *k == "timeout");
                    let t = self.optional_seconds(v, &p)?;
                    if !has_timeout {
                        d.timeout = t;
                    }
                }
                "stream_timeout" => d.stream_timeout = self.optional_seconds(v, &p)?,
                "cooldown_time" => {
                    let secs = self.number(v, &p, "a non-negative number of seconds")?;
                    if secs < 0.0 {
                        return Err(invalid(
                            &p,
                            format!("expected a non-negative number of seconds, got {secs}"),
                        ));
                    }
                    d.cooldown_time = Some(if secs == 0.0 {
                        Duration::ZERO
                    } else {
                        self.seconds(v, &p)?
                    });
                }
                "num_retries" => d.num_retries = Some(self.small_int(v, &p)?),
                "max_parallel_requests" => {
                    d.max_parallel_requests = Some(self.positive_u32(v, &p)?)
                }
                "max_budget" => d.max_budget = Some(self.non_negative(v, &p)?),
                "budget_duration" => {
                    let text = self.string(v, &p)?;
                    d.budget_duration =
                        Some(Window::parse(&text).map_err(|e| invalid(&p, e.to_string()))?);
                }
                "base_model" => d.base_model = Some(self.string(v, &p)?),
                "supports_prefill" => d.supports_prefill = Some(self.boolean(v, &p)?),
                "stream_idle_timeout" => d.stream_idle_timeout = self.optional_seconds(v, &p)?,
                "tags" => d.tags = self.string_list(v, &p)?,
                "input_cost_per_token" => d.input_cost_per_token = Some(self.non_negative(v, &p)?),
                "output_cost_per_token" => {
                    d.output_cost_per_token = Some(self.non_negative(v, &p)?)
                }
                _ if FORWARDED_PARAMS.contains(k) => {
                    let resolved = self.resolve(v, &p)?;
                    let json = serde_json::to_value(&resolved)
                        .map_err(|e| invalid(&p, format!("cannot be sent as JSON: {e}")))?;
                    d.default_params.insert((*k).to_owned(), json);
                }
                _ if PARAMS_NOT_IMPLEMENTED.contains(k) => {
                    warnings.push(format!("{p} is not implemented yet and is ignored"));
                }
                _ => warnings.push(format!("{p} is not a known parameter and is ignored")),
            }
        }
        // rpm/tpm may also sit at the entry's top level or in model_info.
        for (source, source_path) in [(&entry_map, path.to_owned()), (&info, info_path.clone())] {
            for (k, v) in source.iter() {
                let p = join(&source_path, k);
                match *k {
                    "rpm" if d.rpm.is_none() => d.rpm = Some(self.positive_int(v, &p)?),
                    "tpm" if d.tpm.is_none() => d.tpm = Some(self.positive_int(v, &p)?),
                    _ => {}
                }
            }
        }
        if d.max_budget.is_some() && d.budget_duration.is_none() {
            return Err(invalid(
                &join(&params_path, "budget_duration"),
                "required with max_budget",
            ));
        }
        if d.base_model.is_none() {
            if let Some((_, v)) = info.iter().find(|(k, _)| *k == "base_model") {
                d.base_model = Some(self.string(v, &join(&info_path, "base_model"))?);
            }
        }
        for (k, _) in &info {
            if MODEL_INFO_NOT_IMPLEMENTED.contains(k) {
                warnings.push(format!(
                    "{} is not implemented yet and is ignored",
                    join(&info_path, k)
                ));
            }
        }
        if d.api_key.is_none() {
            if let Some(key) = resolved.spec.key_env.and_then(|var| self.env(var)) {
                d.api_key = Some(Secret::new(key));
            }
        }
        if d.provider.as_ref() == "azure" {
            if d.api_base.is_none() {
                d.api_base = self.env("AZURE_API_BASE");
            }
            if d.api_version.is_none() {
                d.api_version = self.env("AZURE_API_VERSION");
            }
            if d.api_base.is_none() {
                return Err(invalid(
                    &join(&params_path, "api_base"),
                    "required for azure deployments (or set AZURE_API_BASE)",
                ));
            }
        }
        if let Some(base) = &d.api_base {
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(invalid(
                    &join(&params_path, "api_base"),
                    format!("expected an http:// or https:// URL, got {base:?}"),
                ));
            }
        }
        Ok((d, id_path))
    }
}

/// Python's `repr()` of a float: the shortest round-tripping digits, in
/// scientific notation (two-digit exponent) below 1e-4 or from 1e16 up.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let plain = format!("{f}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Python's `repr()` of a string inside a list.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `json.dumps` of a mapping (", " and ": " separators).
fn py_json_dumps(v: &Value) -> String {
    match serde_json::to_value(v) {
        Ok(json) => py_json(&json),
        Err(_) => String::new(),
    }
}

fn py_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", serde_json::Value::String(k.clone()), py_json(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        serde_json::Value::Array(a) => {
            format!("[{}]", a.iter().map(py_json).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        RouterConfig::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn bad_values_name_the_exact_path_and_value() {
        let yaml = r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/a}
  - model_name: b
    litellm_params: {model: openai/b}
  - model_name: c
    litellm_params:
      model: openai/c
      rpm: ten
"#;
        assert_eq!(
            err(yaml),
            r#"model_list[2].litellm_params.rpm: expected a positive integer, got "ten""#
        );
        assert_eq!(
            err(
                "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, weight: -1}\n"
            ),
            "model_list[0].litellm_params.weight: expected a non-negative number, got -1"
        );
        assert_eq!(
            err(
                "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, timeout: -1}\n"
            ),
            "model_list[0].litellm_params.timeout: expected a positive number of seconds, got -1"
        );
        assert_eq!(
            err("model_list:\n  - litellm_params: {model: openai/a}\n"),
            "model_list[0].model_name: required"
        );
        assert!(
            err("model_list:\n  - model_name: a\n    litellm_params: {model: bogus/a}\n")
                .starts_with("model_list[0].litellm_params.model: unknown provider \"bogus\"")
        );
        assert_eq!(
            err("router_settings:\n  num_retries: many\n"),
            r#"router_settings.num_retries: expected a non-negative integer, got "many""#
        );
        assert!(
            err("router_settings:\n  routing_strategy: fastest\n")
                .starts_with("router_settings.routing_strategy: expected one of simple-shuffle")
        );
        assert_eq!(
            err("model_list:\n  - model_name: a\n    litellm_params: {model: azure/a}\n"),
            "model_list[0].litellm_params.api_base: required for azure deployments (or set AZURE_API_BASE)"
        );
        assert!(err("model_list: [\n").starts_with("config is not valid YAML"));
    }

    #[test]
    fn env_secrets_and_missing_env() {
        let yaml = r#"
environment_variables:
  MY_KEY: sk-from-overlay
model_list:
  - model_name: g
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/MY_KEY
      rpm: os.environ/MY_RPM_THAT_IS_NOT_SET
"#;
        assert_eq!(
            err(yaml),
            "model_list[0].litellm_params.rpm: environment variable MY_RPM_THAT_IS_NOT_SET is not set"
        );
        let cfg = RouterConfig::from_yaml(
            &yaml.replace("      rpm: os.environ/MY_RPM_THAT_IS_NOT_SET\n", ""),
        )
        .unwrap();
        assert_eq!(
            cfg.deployments[0].api_key.as_ref().unwrap().expose(),
            "sk-from-overlay"
        );
        assert!(!format!("{cfg:?}").contains("sk-from-overlay"));
    }

    #[test]
    fn fields_are_read_from_all_places() {
        let yaml = r#"
model_list:
  - model_name: gpt-4o
    rpm: 30
    litellm_params:
      model: azure/gpt-4o-eu
      api_base: https://eu.example.com
      api_version: "2024-10-21"
      weight: 0.5
      order: 1
      timeout: 1.5
      stream_timeout: 3
      num_retries: 4
      tags: [paid, default]
      temperature: 0.2
      input_cost_per_token: 0.000001
    model_info:
      id: azure-eu
      tpm: 1000
router_settings:
  num_retries: 3
  timeout: 30
  model_group_alias: {gpt-4: gpt-4o, secret: {model: gpt-4o, hidden: true}}
general_settings:
  master_key: sk-1234
  max_request_size_mb: 8
  max_response_size_mb: 64
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        let d = &cfg.deployments[0];
        assert_eq!(d.id.as_str(), "azure-eu");
        assert_eq!(
            (d.provider.as_ref(), d.model.as_str()),
            ("azure", "gpt-4o-eu")
        );
        assert_eq!((d.rpm, d.tpm), (Some(30), Some(1000)));
        assert_eq!(d.weight, Some(0.5));
        assert_eq!(d.order, Some(1));
        assert_eq!(d.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(d.stream_timeout, Some(Duration::from_secs(3)));
        assert_eq!(d.num_retries, Some(4));
        assert_eq!(d.tags, vec!["paid", "default"]);
        assert_eq!(d.default_params["temperature"], 0.2);
        assert_eq!(cfg.settings.num_retries, 3);
        assert_eq!(cfg.settings.timeout, Duration::from_secs(30));
        assert_eq!(
            cfg.settings.model_group_alias["secret"],
            AliasTarget {
                group: "gpt-4o".into(),
                hidden: true
            }
        );
        assert_eq!(cfg.general.master_key.as_ref().unwrap().expose(), "sk-1234");
        assert_eq!(cfg.general.max_request_size_mb, Some(8));
        assert_eq!(cfg.general.max_response_size_mb, Some(64));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn a_size_limit_must_be_a_positive_whole_number_of_mib() {
        for key in ["max_request_size_mb", "max_response_size_mb"] {
            for bad in ["0", "1.5", "lots"] {
                let yaml = format!(
                    "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m}}\ngeneral_settings:\n  {key}: {bad}\n"
                );
                let e = RouterConfig::from_yaml(&yaml).unwrap_err().to_string();
                assert!(e.contains(&format!("general_settings.{key}")), "{e}");
                assert!(e.contains(bad), "{e}");
            }
        }
    }

    #[test]
    fn unimplemented_and_unknown_keys_are_warnings() {
        let yaml = r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/m, region_name: eu, frobnicate: 1}
router_settings:
  cache_responses: true
  shiny_new_thing: true
litellm_settings:
  drop_params: true
general_settings:
  database_url: x
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        let w = cfg.warnings.join("\n");
        for expected in [
            "model_list[0].litellm_params.region_name is not implemented yet",
            "model_list[0].litellm_params.frobnicate is not a known parameter",
            "router_settings.cache_responses is not implemented yet",
            "router_settings.shiny_new_thing is not a known setting",
            "litellm_settings.drop_params is not implemented yet",
            "general_settings.database_url is not implemented yet",
        ] {
            assert!(w.contains(expected), "missing {expected:?} in\n{w}");
        }
    }

    #[test]
    fn derived_id_matches_litellm() {
        // sha256("gpt-4o" + "model" + "openai/gpt-4o" + "api_base" + ... ) as LiteLLM computes it
        // (value computed with Python's hashlib and str()).
        let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:1/v1
      rpm: 10
      weight: 0.5
      stream: true
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        assert_eq!(
            cfg.deployments[0].id.as_str(),
            "84faaa305ba72f575386221674c3bf3b72c9c9b5b7465196a38a905710104d1e"
        );
    }

    #[test]
    fn duplicate_ids_are_shared_with_a_warning() {
        let yaml = r#"
model_list:
  - model_name: g
    litellm_params: {model: openai/m}
    model_info: {id: x}
  - model_name: g
    litellm_params: {model: openai/n}
    model_info: {id: x}
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        assert_eq!(cfg.deployments.len(), 2);
        assert!(
            cfg.warnings.iter().any(|w| w.starts_with(
                "model_list[1].model_info.id: deployment id \"x\" is also model_list[0]'s"
            )),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn derived_id_matches_litellm_for_floats_lists_and_mappings() {
        // Python: str(1e-06) == "1e-06", str(2.5e16) == "2.5e+16", str(['a', "b'c"]), json.dumps({"k": [1, 2]})
        let yaml = r#"
model_list:
  - model_name: g
    litellm_params:
      model: openai/x
      input_cost_per_token: 0.000001
      output_cost_per_token: 2.5e16
      weight: 1.0
      tags: [a, "b'c"]
      extra: {k: [1, 2]}
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        assert_eq!(
            cfg.deployments[0].id.as_str(),
            "c9056b864a1c61d626cb03c4a0ea8fe5ceffcec9b4c0daced857c0ea12718657"
        );
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(1e15), "1000000000000000.0");
        assert_eq!(py_float(-3.5e-7), "-3.5e-07");
        assert_eq!(py_float(1e100), "1e+100");
    }

    #[test]
    fn merge_keys_custom_provider_and_env_fallbacks() {
        let yaml = r#"
environment_variables:
  AZURE_API_BASE: https://from-env.example.com
  AZURE_API_VERSION: "2024-02-01"
  LITELLM_MASTER_KEY: sk-env-master
common: &common
  api_key: sk-shared
  timeout: 7
model_list:
  - model_name: a
    litellm_params:
      <<: *common
      model: openai/a
  - model_name: b
    litellm_params:
      model: meta-llama/Llama-3-8B
      custom_llm_provider: hosted_vllm
      api_base: http://vllm.internal/v1
  - model_name: c
    litellm_params:
      model: azure/dep
      timeout: 3
      request_timeout: 9
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        let a = &cfg.deployments[0];
        assert_eq!(a.api_key.as_ref().unwrap().expose(), "sk-shared");
        assert_eq!(a.timeout, Some(Duration::from_secs(7)));
        let b = &cfg.deployments[1];
        assert_eq!(
            (b.provider.as_ref(), b.model.as_str()),
            ("hosted_vllm", "meta-llama/Llama-3-8B")
        );
        let c = &cfg.deployments[2];
        assert_eq!(c.api_base.as_deref(), Some("https://from-env.example.com"));
        assert_eq!(c.api_version.as_deref(), Some("2024-02-01"));
        assert_eq!(
            c.timeout,
            Some(Duration::from_secs(3)),
            "timeout wins over request_timeout"
        );
        assert_eq!(
            cfg.general.master_key.as_ref().unwrap().expose(),
            "sk-env-master"
        );
    }

    #[test]
    fn redis_settings_from_litellm_keys() {
        let cfg = RouterConfig::from_yaml(
            "router_settings:\n  redis_host: cache.internal\n  redis_port: 6380\n  redis_password: pw\n  redis_fail_mode: closed\n",
        )
        .unwrap();
        let r = cfg.settings.redis.clone().unwrap();
        assert_eq!(r.url.expose(), "redis://:pw@cache.internal:6380");
        assert!(r.fail_closed);
        assert_eq!(r.key_prefix, "lb");
        assert_eq!(r.stats_interval, DEFAULT_REDIS_STATS_INTERVAL);
        let r = RouterConfig::from_yaml(
            "router_settings:\n  redis_url: redis://r\n  redis_stats_interval: 0\n",
        )
        .unwrap()
        .settings
        .redis
        .unwrap();
        assert!(
            r.stats_interval.is_zero(),
            "0 keeps statistics per instance"
        );
        assert!(!format!("{:?}", cfg.settings.redis).contains("pw@"));
        assert_eq!(
            err("router_settings:\n  redis_url: http://x\n"),
            "router_settings.redis_url: expected a redis:// or rediss:// URL"
        );
    }

    #[test]
    fn otel_settings_from_config_and_standard_variables() {
        // Off unless configured.
        assert!(
            RouterConfig::from_yaml("model_list: []\n")
                .unwrap()
                .settings
                .tracing
                .is_none()
        );
        // Our key: a base endpoint gets /v1/traces; headers are secrets.
        let cfg = RouterConfig::from_yaml(
            "router_settings:\n  otel:\n    endpoint: http://collector:4318/\n    protocol: http/json\n    headers: {x-api-key: otel-secret}\n",
        )
        .unwrap();
        let t = cfg.settings.tracing.clone().unwrap();
        assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::HttpJson);
        assert_eq!(t.service_name, "lb-router");
        assert!(!t.capture_message_content);
        assert_eq!(t.headers[0].1.expose(), "otel-secret");
        assert!(!format!("{cfg:?}").contains("otel-secret"));
        // LiteLLM's switch, with the standard variables (here from environment_variables).
        let cfg = RouterConfig::from_yaml(
            "litellm_settings:\n  callbacks: [\"otel\"]\nenvironment_variables:\n  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: https://otel.example/custom/path\n  OTEL_EXPORTER_OTLP_HEADERS: \"a=1,b=x%20y\"\n  OTEL_SERVICE_NAME: gw\n  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: \"true\"\n",
        )
        .unwrap();
        let t = cfg.settings.tracing.unwrap();
        assert_eq!(
            t.endpoint, "https://otel.example/custom/path",
            "a signal endpoint is used as is"
        );
        let headers: Vec<(&str, &str)> = t
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(headers, [("a", "1"), ("b", "x y")]);
        assert_eq!(t.service_name, "gw");
        assert!(t.capture_message_content);
        // The callback alone: the default collector address.
        let t = RouterConfig::from_yaml("litellm_settings:\n  callbacks: otel\n")
            .unwrap()
            .settings
            .tracing
            .unwrap();
        assert_eq!(t.endpoint, crate::DEFAULT_OTLP_TRACES_ENDPOINT);
        // The standard kill switches win over an endpoint variable, not over `enabled: true`.
        let off = "environment_variables:\n  OTEL_EXPORTER_OTLP_ENDPOINT: http://c:4318\n  OTEL_SDK_DISABLED: \"true\"\n";
        assert!(
            RouterConfig::from_yaml(off)
                .unwrap()
                .settings
                .tracing
                .is_none()
        );
        let forced = format!("{off}router_settings:\n  otel: {{enabled: true}}\n");
        assert_eq!(
            RouterConfig::from_yaml(&forced)
                .unwrap()
                .settings
                .tracing
                .unwrap()
                .endpoint,
            "http://c:4318/v1/traces"
        );
        assert!(
            RouterConfig::from_yaml(
                "router_settings:\n  otel: {endpoint: http://c:4318, enabled: false}\n"
            )
            .unwrap()
            .settings
            .tracing
            .is_none()
        );
        // A variable meant for another tool (gRPC) leaves traces off with a
        // warning, unless the config asked for traces.
        let cfg = RouterConfig::from_yaml(
            "environment_variables:\n  OTEL_EXPORTER_OTLP_ENDPOINT: http://c:4317\n  OTEL_EXPORTER_OTLP_PROTOCOL: grpc\n",
        )
        .unwrap();
        assert!(cfg.settings.tracing.is_none());
        assert!(
            cfg.warnings.iter().any(|w| w.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && w.contains("traces stay off")),
            "{:?}",
            cfg.warnings
        );
        // Bad values name the key.
        assert_eq!(
            err("router_settings:\n  otel: {endpoint: http://c, protocol: grpc}\n"),
            "router_settings.otel.protocol: expected http/protobuf or http/json (grpc is not supported), got \"grpc\""
        );
        assert_eq!(
            err("router_settings:\n  otel: {endpoint: \"collector:4317\"}\n"),
            "router_settings.otel.endpoint: expected an http:// or https:// URL, got \"collector:4317\""
        );
        assert_eq!(
            err("router_settings:\n  otel: {sample_ratio: 1.5}\n"),
            "router_settings.otel.sample_ratio: expected a number from 0 to 1, got 1.5"
        );
        assert!(
            err("router_settings:\n  otel: {endpont: http://c}\n")
                .starts_with("router_settings.otel.endpont: unknown key")
        );
        assert_eq!(
            err("router_settings:\n  otel: {endpoint: \"http://\"}\n"),
            "router_settings.otel.endpoint: expected an http:// or https:// URL, got \"http://\""
        );
        // A header that cannot be sent names the header, never its value.
        let e = err(
            "router_settings:\n  otel:\n    endpoint: http://c\n    headers: {x-key: \"sk-otel\\nsecret\"}\n",
        );
        assert_eq!(
            e,
            "router_settings.otel.headers: the value of \"x-key\" is not valid in an HTTP header"
        );
        assert_eq!(
            err(
                "router_settings:\n  otel:\n    endpoint: http://c\n    headers: {\"bad key\": v}\n"
            ),
            "router_settings.otel.headers: \"bad key\" is not a valid HTTP header name"
        );
        // Set for another tool, a bad header variable leaves traces off.
        let cfg = RouterConfig::from_yaml(
            "environment_variables:\n  OTEL_EXPORTER_OTLP_ENDPOINT: http://c:4318\n  OTEL_EXPORTER_OTLP_HEADERS: \"bad key=1\"\n",
        )
        .unwrap();
        assert!(cfg.settings.tracing.is_none());
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.contains("bad key") && w.contains("traces stay off")),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn zero_timeouts_mean_unset_as_in_litellm() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, timeout: 0}\nrouter_settings:\n  timeout: 0\n";
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        assert_eq!(cfg.deployments[0].timeout, None);
        assert_eq!(cfg.settings.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn wildcards_and_routing_model_info_keys_are_reported() {
        let yaml = r#"
model_list:
  - model_name: "openai/*"
    litellm_params: {model: "openai/*"}
    model_info: {supported_environments: [production], description: free text}
"#;
        let cfg = RouterConfig::from_yaml(yaml).unwrap();
        let w = cfg.warnings.join("\n");
        assert!(w.contains("wildcard routes are not implemented yet"), "{w}");
        assert!(
            w.contains("model_list[0].model_info.supported_environments is not implemented yet"),
            "{w}"
        );
        assert!(!w.contains("description"), "{w}");
    }
}
