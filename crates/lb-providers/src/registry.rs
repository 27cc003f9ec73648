//! Which providers exist and how a `provider/model` string resolves.

/// How a provider's requests are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{api_base}/chat/completions`, `Authorization: Bearer`.
    OpenAi,
    /// `{api_base}/openai/deployments/{model}/chat/completions?api-version=`, `api-key` header.
    Azure,
}

/// What this crate knows of one provider prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    /// The prefix, as in `groq/llama-3.1-8b-instant`.
    pub name: &'static str,
    /// The base URL used when the deployment sets no `api_base`.
    pub default_api_base: Option<&'static str>,
    /// The environment variable LiteLLM reads the key from when none is set.
    pub key_env: Option<&'static str>,
    /// The request shape.
    pub flavor: Flavor,
}

const fn spec(
    name: &'static str,
    default_api_base: Option<&'static str>,
    key_env: Option<&'static str>,
) -> ProviderSpec {
    ProviderSpec {
        name,
        default_api_base,
        key_env,
        flavor: Flavor::OpenAi,
    }
}

static PROVIDERS: &[ProviderSpec] = &[
    spec(
        "openai",
        Some("https://api.openai.com/v1"),
        Some("OPENAI_API_KEY"),
    ),
    ProviderSpec {
        name: "azure",
        default_api_base: None,
        key_env: Some("AZURE_API_KEY"),
        flavor: Flavor::Azure,
    },
    spec("custom_openai", None, None),
    spec("openai_like", None, None),
    spec("hosted_vllm", None, Some("HOSTED_VLLM_API_KEY")),
    spec("ollama", Some("http://localhost:11434/v1"), None),
    spec("ollama_chat", Some("http://localhost:11434/v1"), None),
    spec(
        "lm_studio",
        Some("http://localhost:1234/v1"),
        Some("LM_STUDIO_API_KEY"),
    ),
    spec(
        "groq",
        Some("https://api.groq.com/openai/v1"),
        Some("GROQ_API_KEY"),
    ),
    spec(
        "together_ai",
        Some("https://api.together.xyz/v1"),
        Some("TOGETHERAI_API_KEY"),
    ),
    spec(
        "mistral",
        Some("https://api.mistral.ai/v1"),
        Some("MISTRAL_API_KEY"),
    ),
    spec(
        "deepseek",
        Some("https://api.deepseek.com/v1"),
        Some("DEEPSEEK_API_KEY"),
    ),
    spec(
        "openrouter",
        Some("https://openrouter.ai/api/v1"),
        Some("OPENROUTER_API_KEY"),
    ),
    spec(
        "fireworks_ai",
        Some("https://api.fireworks.ai/inference/v1"),
        Some("FIREWORKS_AI_API_KEY"),
    ),
    spec(
        "perplexity",
        Some("https://api.perplexity.ai"),
        Some("PERPLEXITYAI_API_KEY"),
    ),
    spec("xai", Some("https://api.x.ai/v1"), Some("XAI_API_KEY")),
    spec(
        "deepinfra",
        Some("https://api.deepinfra.com/v1/openai"),
        Some("DEEPINFRA_API_KEY"),
    ),
    spec(
        "cerebras",
        Some("https://api.cerebras.ai/v1"),
        Some("CEREBRAS_API_KEY"),
    ),
    spec(
        "nvidia_nim",
        Some("https://integrate.api.nvidia.com/v1"),
        Some("NVIDIA_NIM_API_KEY"),
    ),
];

/// Every provider prefix this crate speaks.
pub fn known_providers() -> &'static [ProviderSpec] {
    PROVIDERS
}

/// A `litellm_params.model` string split into its provider and upstream model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The provider's spec.
    pub spec: ProviderSpec,
    /// The model name sent upstream.
    pub model: String,
}

/// Resolves `provider/model` as LiteLLM does: the text before the first `/`
/// names the provider when it is a known one; a bare name means OpenAI.
/// An unknown prefix is an error naming the supported ones.
pub fn resolve_model(model: &str) -> Result<ResolvedModel, crate::ProviderConfigError> {
    let (provider, rest) = match model.split_once('/') {
        Some((p, rest)) => (p, rest),
        None => ("openai", model),
    };
    match PROVIDERS.iter().find(|s| s.name == provider) {
        Some(spec) => Ok(ResolvedModel {
            spec: *spec,
            model: rest.to_owned(),
        }),
        None => Err(crate::ProviderConfigError::UnknownProvider {
            provider: provider.to_owned(),
            supported: PROVIDERS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Looks a provider up by name.
pub(crate) fn spec_of(name: &str) -> Option<ProviderSpec> {
    PROVIDERS.iter().find(|s| s.name == name).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_prefixes_as_litellm() {
        let r = resolve_model("groq/llama-3.1-8b-instant").unwrap();
        assert_eq!(
            (r.spec.name, r.model.as_str()),
            ("groq", "llama-3.1-8b-instant")
        );
        let r = resolve_model("gpt-4o").unwrap();
        assert_eq!((r.spec.name, r.model.as_str()), ("openai", "gpt-4o"));
        let r = resolve_model("openai/meta-llama/Llama-3-8B").unwrap();
        assert_eq!(r.model, "meta-llama/Llama-3-8B");
        let r = resolve_model("azure/my-gpt4o").unwrap();
        assert_eq!(r.spec.flavor, Flavor::Azure);
        let err = resolve_model("nosuch/model").unwrap_err().to_string();
        assert!(err.contains("unknown provider \"nosuch\""), "{err}");
        assert!(err.contains("openai, azure"), "{err}");
    }
}
