//! Deployments and model groups.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::secret::Secret;

/// The id of one deployment (`model_info.id`, or derived from its entry).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentId(Arc<str>);

impl DeploymentId {
    /// Wraps an id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a shared string (cloning it does not copy the text).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for DeploymentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DeploymentId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// One upstream endpoint serving a model: a provider, a model name, a base
/// URL and credentials, with the routing settings LiteLLM's `litellm_params`
/// carry.
///
/// Its `Debug` output shows no secret: the key is redacted, `api_base`
/// without user, password or query, and `default_params` by their keys only.
#[derive(Clone)]
pub struct Deployment {
    /// Unique id.
    pub id: DeploymentId,
    /// The model group (`model_name`) this deployment serves.
    pub model_group: Arc<str>,
    /// The provider name from the `provider/model` prefix (`openai`, `azure`, `groq`, ...).
    pub provider: Arc<str>,
    /// The model name sent upstream (the part after the provider prefix).
    pub model: String,
    /// Base URL of the upstream API.
    pub api_base: Option<String>,
    /// API key.
    pub api_key: Option<Secret>,
    /// API version (Azure).
    pub api_version: Option<String>,
    /// Shuffle weight.
    pub weight: Option<f64>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Priority level; lower is preferred.
    pub order: Option<u32>,
    /// Timeout of a call (to the full response; for streams see `stream_timeout`).
    pub timeout: Option<Duration>,
    /// Timeout to the first chunk of a stream.
    pub stream_timeout: Option<Duration>,
    /// Retries for calls routed here.
    pub num_retries: Option<u32>,
    /// Cooldown after a failure that cools it down (`Some(0)`: never cool it down).
    pub cooldown_time: Option<Duration>,
    /// Whether it continues an answer from an assistant prefill
    /// (`supports_prefill`; default: yes for OpenAI-compatible providers).
    pub supports_prefill: Option<bool>,
    /// Longest gap between stream chunks before the stream counts as stalled.
    pub stream_idle_timeout: Option<Duration>,
    /// Most calls in flight at once (`max_parallel_requests`).
    pub max_parallel_requests: Option<u32>,
    /// Spend budget in USD per `budget_duration` (`max_budget`).
    pub max_budget: Option<f64>,
    /// The window of `max_budget`.
    pub budget_duration: Option<crate::state::Window>,
    /// The model whose prices and context window apply (`base_model`, e.g.
    /// for an Azure deployment with a custom name).
    pub base_model: Option<String>,
    /// Tags for tag routing.
    pub tags: Vec<String>,
    /// Price per input token, USD.
    pub input_cost_per_token: Option<f64>,
    /// Price per output token, USD.
    pub output_cost_per_token: Option<f64>,
    /// Request fields every call to this deployment sends (from `litellm_params`
    /// keys the router does not interpret, e.g. `temperature`), unless the
    /// request sets them itself.
    pub default_params: Map<String, Value>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("model_group", &self.model_group)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field(
                "api_base",
                &self.api_base.as_deref().map(crate::url_without_credentials),
            )
            .field("api_key", &self.api_key)
            .field("api_version", &self.api_version)
            .field("weight", &self.weight)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("order", &self.order)
            .field("timeout", &self.timeout)
            .field("stream_timeout", &self.stream_timeout)
            .field("num_retries", &self.num_retries)
            .field("cooldown_time", &self.cooldown_time)
            .field("supports_prefill", &self.supports_prefill)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("max_parallel_requests", &self.max_parallel_requests)
            .field("max_budget", &self.max_budget)
            .field("budget_duration", &self.budget_duration)
            .field("base_model", &self.base_model)
            .field("tags", &self.tags)
            .field("input_cost_per_token", &self.input_cost_per_token)
            .field("output_cost_per_token", &self.output_cost_per_token)
            .field(
                "default_params",
                &self.default_params.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Deployment {
    /// A deployment of `provider`/`model` serving `model_group`, with no
    /// limits, credentials or base URL.
    pub fn new(
        id: impl Into<DeploymentId>,
        model_group: &str,
        provider: &str,
        model: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            model_group: model_group.into(),
            provider: provider.into(),
            model: model.into(),
            api_base: None,
            api_key: None,
            api_version: None,
            weight: None,
            rpm: None,
            tpm: None,
            order: None,
            timeout: None,
            stream_timeout: None,
            num_retries: None,
            cooldown_time: None,
            supports_prefill: None,
            stream_idle_timeout: None,
            max_parallel_requests: None,
            max_budget: None,
            budget_duration: None,
            base_model: None,
            tags: Vec::new(),
            input_cost_per_token: None,
            output_cost_per_token: None,
            default_params: Map::new(),
        }
    }

    /// Sets the base URL.
    pub fn with_api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = Some(api_base.into());
        self
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: Secret) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sets the shuffle weight.
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = Some(weight);
        self
    }
}

impl From<String> for DeploymentId {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// All deployments sharing one `model_name`.
#[derive(Debug, Clone)]
pub struct ModelGroup {
    /// The group name clients send as `model`.
    pub name: Arc<str>,
    /// Its deployments, in config order.
    pub deployments: Vec<Arc<Deployment>>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_shows_no_credentials() {
        let mut d = super::Deployment::new("d", "g", "openai", "m");
        d.api_base = Some("https://user:hunter2@host.example/v1?api-key=sk-q".to_owned());
        d.api_key = Some(crate::Secret::new("sk-key"));
        d.default_params.insert(
            "extra_headers".to_owned(),
            serde_json::json!({"x-key": "sk-h"}),
        );
        let shown = format!("{d:?}");
        for secret in ["hunter2", "sk-q", "sk-key", "sk-h"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("https://host.example/v1"), "{shown}");
        assert!(shown.contains("extra_headers"), "{shown}");
    }

    use super::*;

    #[test]
    fn debug_of_deployment_hides_key() {
        let d = Deployment::new("d1", "g", "openai", "gpt-4o").with_api_key(Secret::new("sk-abc"));
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("sk-abc"));
        assert!(dbg.contains("\"d1\""));
    }
}
