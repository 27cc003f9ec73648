//! Errors of building a provider client.

/// Why a deployment's client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderConfigError {
    /// The `provider/` prefix names a provider this crate does not speak.
    #[error("unknown provider \"{provider}\" (supported: {supported})")]
    UnknownProvider {
        /// The prefix given.
        provider: String,
        /// The supported prefixes, comma-separated.
        supported: String,
    },
    /// The provider has no default base URL and none was given.
    #[error("provider \"{provider}\" needs an api_base")]
    MissingApiBase {
        /// The provider.
        provider: String,
    },
    /// The base URL is not an http(s) URL.
    #[error("api_base must start with http:// or https://, got \"{api_base}\"")]
    BadApiBase {
        /// The value given, without what may be a credential.
        api_base: String,
    },
    /// The API key cannot be sent as an HTTP header.
    #[error("api_key contains characters that cannot be sent in an HTTP header")]
    BadApiKey,
}
