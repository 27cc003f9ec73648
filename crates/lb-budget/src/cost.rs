//! Prices and context windows (LiteLLM's `model_prices_and_context_window.json`
//! schema) and the cost of a call.

use std::collections::HashMap;
use std::path::Path;

use lb_core::{Deployment, DeploymentId, Usage};
use serde_json::{Map, Value};

use crate::error::PriceTableError;

/// The built-in table: common models of OpenAI, Azure OpenAI, Anthropic,
/// Google, Mistral, Cohere, Groq, DeepSeek, xAI and others, copied from
/// LiteLLM's map (see `data/README.md` for the source and the list).
const BUILTIN_JSON: &str = include_str!("../data/model_prices_and_context_window.json");

/// The name of the built-in table in errors.
const BUILTIN_NAME: &str = "<built-in price table>";

/// One entry of the table: the fields of LiteLLM's schema this router reads.
///
/// Every field is optional, as in LiteLLM's file; other fields are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelPrice {
    /// USD per prompt token.
    pub input_cost_per_token: Option<f64>,
    /// USD per completion token.
    pub output_cost_per_token: Option<f64>,
    /// USD per prompt token read from the provider's prompt cache.
    pub cache_read_input_token_cost: Option<f64>,
    /// Context window: the most prompt tokens.
    pub max_input_tokens: Option<u64>,
    /// The most completion tokens.
    pub max_output_tokens: Option<u64>,
    /// LiteLLM's legacy limit (output limit if known, else input).
    pub max_tokens: Option<u64>,
    /// The LiteLLM provider name (`openai`, `azure`, `anthropic`, ...).
    pub litellm_provider: Option<String>,
    /// `chat`, `embedding`, `completion`, ...
    pub mode: Option<String>,
}

impl ModelPrice {
    /// The context window for pre-call checks: `max_input_tokens`, else
    /// `max_tokens`.
    pub fn context_window(&self) -> Option<u64> {
        self.max_input_tokens.or(self.max_tokens)
    }

    fn from_json(v: &Value) -> Result<ModelPrice, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "entry is not an object".to_owned())?;
        Ok(ModelPrice {
            input_cost_per_token: price(obj, "input_cost_per_token")?,
            output_cost_per_token: price(obj, "output_cost_per_token")?,
            cache_read_input_token_cost: price(obj, "cache_read_input_token_cost")?,
            max_input_tokens: tokens(obj, "max_input_tokens")?,
            max_output_tokens: tokens(obj, "max_output_tokens")?,
            max_tokens: tokens(obj, "max_tokens")?,
            litellm_provider: text(obj, "litellm_provider")?,
            mode: text(obj, "mode")?,
        })
    }
}

fn number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("{field} is not a number: {s:?}")),
        Some(other) => Err(format!("{field} is not a number: {other}")),
    }
}

fn price(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match number(obj, field)? {
        Some(p) if !p.is_finite() || p < 0.0 => Err(format!("{field} must be a price >= 0: {p}")),
        p => Ok(p),
    }
}

fn tokens(obj: &Map<String, Value>, field: &str) -> Result<Option<u64>, String> {
    match number(obj, field)? {
        // LiteLLM's file writes some counts as floats (`2000000.0`).
        Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 1e15 => Ok(Some(n as u64)),
        Some(n) => Err(format!("{field} must be a whole number of tokens: {n}")),
        None => Ok(None),
    }
}

fn text(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{field} is not a string: {other}")),
    }
}

/// An entry of a loaded file that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The model key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Prices and context windows by model name, in the schema of LiteLLM's
/// `model_prices_and_context_window.json`.
///
/// Lookups ([`lookup`](Self::lookup)) try the exact key, then
/// `provider/model`, then the model without its provider prefix.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    entries: HashMap<String, ModelPrice>,
    skipped: Vec<SkippedEntry>,
}

impl PriceTable {
    /// The built-in table (see `data/README.md` in this crate for its models
    /// and source).
    pub fn builtin() -> Self {
        // The embedded file is valid (a unit test parses it); an empty table
        // is the harmless fallback.
        Self::from_json_str(BUILTIN_JSON, BUILTIN_NAME).unwrap_or_default()
    }

    /// Parses a table. `source` names it in errors (a path, or a label).
    ///
    /// Unknown fields are ignored, `sample_spec` (LiteLLM's documentation
    /// entry) is skipped, and an entry whose known fields have the wrong type
    /// is left out and listed in [`skipped`](Self::skipped), so one odd entry
    /// of a large user file does not reject the rest. Invalid JSON, or a top
    /// level that is not an object, is an error naming `source` and the
    /// position.
    pub fn from_json_str(json: &str, source: &str) -> Result<Self, PriceTableError> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned();
            PriceTableError::Json {
                path: source.to_owned(),
                line: e.line(),
                column: e.column(),
                message,
            }
        })?;
        let Value::Object(map) = value else {
            return Err(PriceTableError::NotAnObject {
                path: source.to_owned(),
            });
        };
        let mut table = PriceTable::default();
        for (key, entry) in map {
            if key == "sample_spec" {
                continue;
            }
            match ModelPrice::from_json(&entry) {
                Ok(price) => {
                    table.entries.insert(key, price);
                }
                Err(reason) => table.skipped.push(SkippedEntry { key, reason }),
            }
        }
        Ok(table)
    }

    /// Reads and parses a table file (a user's `model_cost_map`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, PriceTableError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|source| PriceTableError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&json, &path.display().to_string())
    }

    /// Adds `other`'s entries, replacing entries of the same key (a user file
    /// over the built-in table).
    pub fn extend(&mut self, other: PriceTable) {
        self.entries.extend(other.entries);
        self.skipped.extend(other.skipped);
    }

    /// The entry under exactly this key.
    pub fn get(&self, key: &str) -> Option<&ModelPrice> {
        self.entries.get(key)
    }

    /// Adds or replaces one entry.
    pub fn insert(&mut self, key: impl Into<String>, price: ModelPrice) {
        self.entries.insert(key.into(), price);
    }

    /// Finds a model's entry: the exact key `model`, then
    /// `{provider}/{model}` (when `provider` is given and `model` does not
    /// start with it), then `model` without its first `prefix/`. Returns the
    /// key that matched.
    pub fn lookup(&self, model: &str, provider: Option<&str>) -> Option<(&str, &ModelPrice)> {
        let found = |key: &str| {
            self.entries
                .get_key_value(key)
                .map(|(k, v)| (k.as_str(), v))
        };
        if let Some(hit) = found(model) {
            return Some(hit);
        }
        if let Some(p) = provider.filter(|p| !p.is_empty()) {
            let already = model
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'));
            if !already {
                if let Some(hit) = found(&format!("{p}/{model}")) {
                    return Some(hit);
                }
            }
        }
        model.split_once('/').and_then(|(_, rest)| found(rest))
    }

    /// The entries that were left out when loading, and why.
    pub fn skipped(&self) -> &[SkippedEntry] {
        &self.skipped
    }

    /// How many entries the table has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// The resolved prices of one deployment, USD per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per prompt token.
    pub input_cost_per_token: f64,
    /// Per completion token.
    pub output_cost_per_token: f64,
    /// Per prompt token read from cache.
    pub cache_read_input_token_cost: f64,
}

impl Price {
    /// The cost of `prompt` prompt tokens (of which `cached` read from
    /// cache; clamped to `prompt`) and `completion` completion tokens.
    pub fn cost(&self, prompt: u64, cached: u64, completion: u64) -> f64 {
        let cached = cached.min(prompt);
        (prompt - cached) as f64 * self.input_cost_per_token
            + cached as f64 * self.cache_read_input_token_cost
            + completion as f64 * self.output_cost_per_token
    }
}

/// Prices calls from their [`Usage`].
///
/// A deployment's price is its `input_cost_per_token` /
/// `output_cost_per_token` when set, else the table's entry for its
/// `base_model` (registered with [`set_base_model`](Self::set_base_model)),
/// else for `{provider}/{model}` (see [`PriceTable::lookup`]). Cached prompt
/// tokens (`usage.prompt_tokens_details.cached_tokens`) cost the table's
/// `cache_read_input_token_cost` when the input price comes from the table,
/// else the input price.
#[derive(Debug, Clone, Default)]
pub struct CostCalculator {
    table: PriceTable,
    base_models: HashMap<DeploymentId, String>,
}

impl CostCalculator {
    /// A calculator over `table`.
    pub fn new(table: PriceTable) -> Self {
        Self {
            table,
            base_models: HashMap::new(),
        }
    }

    /// A calculator over the built-in table.
    pub fn builtin() -> Self {
        Self::new(PriceTable::builtin())
    }

    /// Looks `id` up by `base_model` (LiteLLM's `model_info.base_model`),
    /// e.g. an Azure deployment named `my-gpt4o` with base model `gpt-4o`.
    pub fn set_base_model(&mut self, id: DeploymentId, base_model: impl Into<String>) {
        self.base_models.insert(id, base_model.into());
    }

    /// The table.
    pub fn table(&self) -> &PriceTable {
        &self.table
    }

    /// The table entry of a deployment: by base model, then by
    /// `{provider}/{model}`.
    pub fn model_price(&self, deployment: &Deployment) -> Option<&ModelPrice> {
        let provider = Some(&*deployment.provider).filter(|p| !p.is_empty());
        let find = |name: &str| {
            let full = match provider {
                Some(p) if !name.starts_with(&format!("{p}/")) => format!("{p}/{name}"),
                _ => name.to_owned(),
            };
            self.table.lookup(&full, provider)
        };
        self.base_models
            .get(&deployment.id)
            .and_then(|base| find(base))
            .or_else(|| find(&deployment.model))
            .map(|(_, price)| price)
    }

    /// A deployment's prices, overrides applied; `None` when neither the
    /// deployment nor the table gives an input or output price (a missing
    /// side then costs zero).
    pub fn price(&self, deployment: &Deployment) -> Option<Price> {
        let entry = self.model_price(deployment);
        let table_input = entry.and_then(|e| e.input_cost_per_token);
        let table_output = entry.and_then(|e| e.output_cost_per_token);
        let input = deployment.input_cost_per_token.or(table_input);
        let output = deployment.output_cost_per_token.or(table_output);
        if input.is_none() && output.is_none() {
            return None;
        }
        let input_cost_per_token = input.unwrap_or(0.0);
        let cache_read_input_token_cost = match deployment.input_cost_per_token {
            Some(own) => own,
            None => entry
                .and_then(|e| e.cache_read_input_token_cost)
                .unwrap_or(input_cost_per_token),
        };
        Some(Price {
            input_cost_per_token,
            output_cost_per_token: output.unwrap_or(0.0),
            cache_read_input_token_cost,
        })
    }

    /// The cost of a call in USD from its usage; `None` when the deployment
    /// has no known price.
    pub fn cost(&self, deployment: &Deployment, usage: &Usage) -> Option<f64> {
        let price = self.price(deployment)?;
        let (prompt, completion) = if usage.prompt_tokens == 0 && usage.completion_tokens == 0 {
            (usage.total_tokens, 0)
        } else {
            (usage.prompt_tokens, usage.completion_tokens)
        };
        Some(price.cost(prompt, cached_prompt_tokens(usage), completion))
    }

    /// The cost of a call that would use these tokens (no cache hits), for
    /// budget reservations; `None` when the price is unknown.
    pub fn estimate_cost(
        &self,
        deployment: &Deployment,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Option<f64> {
        self.price(deployment)
            .map(|p| p.cost(prompt_tokens, 0, completion_tokens))
    }

    /// Input plus output price per token, for the cost-based strategy.
    pub fn cost_per_token(&self, deployment: &Deployment) -> Option<f64> {
        self.price(deployment)
            .map(|p| p.input_cost_per_token + p.output_cost_per_token)
    }

    /// The context window of a model name (`gpt-4o`, `azure/gpt-4o`), for
    /// pre-call checks.
    pub fn context_window(&self, model: &str) -> Option<u64> {
        self.table
            .lookup(model, None)
            .and_then(|(_, p)| p.context_window())
    }

    /// The context window of a deployment (by base model, then
    /// `{provider}/{model}`).
    pub fn deployment_context_window(&self, deployment: &Deployment) -> Option<u64> {
        self.model_price(deployment)
            .and_then(ModelPrice::context_window)
    }
}

/// `usage.prompt_tokens_details.cached_tokens`, or zero.
pub fn cached_prompt_tokens(usage: &Usage) -> u64 {
    usage
        .extra
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage(prompt: u64, completion: u64, cached: Option<u64>) -> Usage {
        let mut v = json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        });
        if let Some(c) = cached {
            v["prompt_tokens_details"] = json!({ "cached_tokens": c });
        }
        serde_json::from_value(v).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn builtin_table_parses_completely() {
        let table = PriceTable::builtin();
        assert!(table.skipped().is_empty(), "{:?}", table.skipped());
        assert!(table.len() >= 70, "{}", table.len());
        // Every entry has both prices and a mode.
        for key in table.keys() {
            let p = table.get(key).unwrap();
            assert!(
                p.input_cost_per_token.is_some() && p.output_cost_per_token.is_some(),
                "{key}"
            );
            assert!(p.litellm_provider.is_some() && p.mode.is_some(), "{key}");
        }
    }

    /// The values copied from LiteLLM's map (see data/README.md).
    #[test]
    fn builtin_prices_match_litellm() {
        let t = PriceTable::builtin();
        let gpt4o = t.get("gpt-4o").unwrap();
        assert_eq!(gpt4o.input_cost_per_token, Some(2.5e-06));
        assert_eq!(gpt4o.output_cost_per_token, Some(1e-05));
        assert_eq!(gpt4o.cache_read_input_token_cost, Some(1.25e-06));
        assert_eq!(gpt4o.max_input_tokens, Some(128_000));
        assert_eq!(gpt4o.max_output_tokens, Some(16_384));
        assert_eq!(gpt4o.litellm_provider.as_deref(), Some("openai"));
        let mini = t.get("azure/gpt-4o-mini").unwrap();
        assert_eq!(mini.input_cost_per_token, Some(1.65e-07));
        assert_eq!(mini.output_cost_per_token, Some(6.6e-07));
        let sonnet = t.get("claude-sonnet-4-20250514").unwrap();
        assert_eq!(
            (sonnet.input_cost_per_token, sonnet.output_cost_per_token),
            (Some(3e-06), Some(1.5e-05))
        );
        let pro = t.get("gemini/gemini-2.5-pro").unwrap();
        assert_eq!(pro.max_input_tokens, Some(1_048_576));
        let emb = t.get("text-embedding-3-small").unwrap();
        assert_eq!(emb.mode.as_deref(), Some("embedding"));
        assert_eq!(emb.input_cost_per_token, Some(2e-08));
        // Float token counts as LiteLLM writes them.
        assert_eq!(
            t.get("xai/grok-4-1-fast").unwrap().max_input_tokens,
            Some(2_000_000)
        );
        let required = [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "text-embedding-ada-002",
            "azure/gpt-4o",
            "azure/gpt-4o-mini",
            "azure/gpt-4.1",
            "claude-3-7-sonnet-20250219",
            "claude-sonnet-4-20250514",
            "claude-opus-4-20250514",
            "vertex_ai/claude-3-5-sonnet",
            "vertex_ai/claude-3-5-haiku",
            "gemini/gemini-2.0-flash",
            "gemini/gemini-2.5-pro",
            "gemini/gemini-2.5-flash",
            "mistral/mistral-large-latest",
            "command-r",
            "groq/openai/gpt-oss-120b",
            "deepseek/deepseek-chat",
            "xai/grok-4",
        ];
        for key in required {
            assert!(t.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn lookup_tries_exact_then_provider_then_bare() {
        let t = PriceTable::builtin();
        assert_eq!(t.lookup("gpt-4o", None).unwrap().0, "gpt-4o");
        assert_eq!(
            t.lookup("azure/gpt-4o-mini", Some("azure")).unwrap().0,
            "azure/gpt-4o-mini"
        );
        assert_eq!(
            t.lookup("gpt-4o-mini", Some("azure")).unwrap().0,
            "gpt-4o-mini"
        );
        assert_eq!(t.lookup("grok-4", Some("xai")).unwrap().0, "xai/grok-4");
        assert_eq!(
            t.lookup("openai/gpt-4o", Some("openai")).unwrap().0,
            "gpt-4o"
        );
        assert_eq!(
            t.lookup("anthropic/claude-opus-4-20250514", None)
                .unwrap()
                .0,
            "claude-opus-4-20250514"
        );
        assert!(t.lookup("no-such-model", Some("openai")).is_none());
    }

    #[test]
    fn cost_of_a_known_model_matches_the_table() {
        let calc = CostCalculator::builtin();
        let d = Deployment::new("d1", "g", "openai", "gpt-4o");
        // 800 uncached + 200 cached prompt tokens, 500 completion tokens.
        let cost = calc.cost(&d, &usage(1_000, 500, Some(200))).unwrap();
        let want = 800.0 * 2.5e-06 + 200.0 * 1.25e-06 + 500.0 * 1e-05;
        assert!(close(cost, want), "{cost} != {want}");
        assert!(close(cost, 0.00725));
        // Azure prices differ from OpenAI's for the same model name.
        let az = Deployment::new("d2", "g", "azure", "gpt-4o-mini");
        let cost = calc.cost(&az, &usage(1_000_000, 1_000_000, None)).unwrap();
        assert!(close(cost, 0.165 + 0.66), "{cost}");
        // Embeddings: prompt tokens only.
        let emb = Deployment::new("e", "emb", "openai", "text-embedding-3-small");
        assert!(close(
            calc.cost(&emb, &usage(1_000, 0, None)).unwrap(),
            2e-05
        ));
        assert_eq!(calc.cost_per_token(&d), Some(2.5e-06 + 1e-05));
    }

    #[test]
    fn deployment_prices_override_the_table() {
        let calc = CostCalculator::builtin();
        let mut d = Deployment::new("d1", "g", "openai", "gpt-4o");
        d.input_cost_per_token = Some(1e-06);
        d.output_cost_per_token = Some(2e-06);
        // Cached tokens cost the overridden input price.
        let cost = calc.cost(&d, &usage(100, 10, Some(50))).unwrap();
        assert!(close(cost, 100.0 * 1e-06 + 10.0 * 2e-06), "{cost}");
        // Custom models need no table entry.
        let mut custom = Deployment::new("c", "g", "openai", "my-private-model");
        assert_eq!(calc.price(&custom), None);
        assert_eq!(calc.cost(&custom, &usage(1, 1, None)), None);
        custom.input_cost_per_token = Some(3e-06);
        let p = calc.price(&custom).unwrap();
        assert_eq!(
            (p.input_cost_per_token, p.output_cost_per_token),
            (3e-06, 0.0)
        );
    }

    #[test]
    fn base_model_is_used_for_lookup() {
        let mut calc = CostCalculator::builtin();
        let d = Deployment::new("az1", "g", "azure", "my-gpt4o-deployment");
        assert_eq!(calc.price(&d), None);
        assert_eq!(calc.deployment_context_window(&d), None);
        calc.set_base_model("az1".into(), "gpt-4o-mini");
        let p = calc.price(&d).unwrap();
        assert_eq!(p.input_cost_per_token, 1.65e-07);
        assert_eq!(calc.deployment_context_window(&d), Some(128_000));
    }

    #[test]
    fn context_windows() {
        let calc = CostCalculator::builtin();
        assert_eq!(calc.context_window("gpt-4.1"), Some(1_047_576));
        assert_eq!(calc.context_window("azure/gpt-4o"), Some(128_000));
        assert_eq!(calc.context_window("text-embedding-3-large"), Some(8_191));
        assert_eq!(calc.context_window("unknown"), None);
        let p = ModelPrice {
            max_tokens: Some(4_096),
            ..ModelPrice::default()
        };
        assert_eq!(p.context_window(), Some(4_096));
    }

    #[test]
    fn user_files_ignore_unknown_fields_and_skip_odd_entries() {
        let json = r#"{
            "sample_spec": {"max_input_tokens": "max input tokens, if the provider specifies it"},
            "my-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": "2e-06",
                         "max_input_tokens": 4096, "supports_vision": true, "tiered_pricing": []},
            "broken": {"input_cost_per_token": "cheap"},
            "negative": {"input_cost_per_token": -1},
            "image": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04}
        }"#;
        let t = PriceTable::from_json_str(json, "prices.json").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.get("my-model").unwrap().output_cost_per_token,
            Some(2e-06)
        );
        let mut skipped: Vec<&str> = t.skipped().iter().map(|s| s.key.as_str()).collect();
        skipped.sort_unstable();
        assert_eq!(skipped, ["broken", "negative"]);
        assert!(
            t.skipped()
                .iter()
                .any(|s| s.reason.contains("input_cost_per_token"))
        );
    }

    #[test]
    fn bad_json_names_the_file_and_position() {
        let err = PriceTable::from_json_str("{\n  \"a\": {,}\n}", "/etc/prices.json").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/etc/prices.json"), "{msg}");
        assert!(msg.contains("line 2 column 9"), "{msg}");
        let err = PriceTable::from_json_str("[1, 2]", "list.json").unwrap_err();
        assert!(err.to_string().contains("list.json"), "{err}");
        let err = PriceTable::from_path("/nonexistent/prices.json").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/prices.json"),
            "{err}"
        );
    }

    #[test]
    fn user_entries_extend_and_override_the_builtin_table() {
        let mut t = PriceTable::builtin();
        let before = t.len();
        let user = PriceTable::from_json_str(
            r#"{"gpt-4o": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
                "new-model": {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-07}}"#,
            "user.json",
        )
        .unwrap();
        t.extend(user);
        assert_eq!(t.len(), before + 1);
        assert_eq!(t.get("gpt-4o").unwrap().input_cost_per_token, Some(1e-06));
    }

    #[test]
    fn user_files_load_from_disk() {
        let dir = std::env::temp_dir().join(format!("lb-budget-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prices.json");
        std::fs::write(&path, r#"{"m": {"input_cost_per_token": 1e-06}}"#).unwrap();
        let t = PriceTable::from_path(&path).unwrap();
        assert_eq!(t.get("m").unwrap().input_cost_per_token, Some(1e-06));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
