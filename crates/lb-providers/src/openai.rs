//! The OpenAI-compatible client (OpenAI, Azure OpenAI, and compatible APIs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use lb_core::{
    ChatCompletionRequest, ChatCompletionResponse, ChunkStream, Deployment, EmbeddingRequest,
    EmbeddingResponse, ErrorClass, Secret, SharedClock, SystemClock, UpstreamError,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::classify::classify_error;
use crate::registry::{Flavor, spec_of};
use crate::{Provider, ProviderConfigError};

/// Azure `api-version` used when a deployment sets none.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// Default largest body of a non-streamed answer read from an upstream:
/// 256 MiB (an embeddings answer for thousands of inputs runs to ~100 MB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// The pooled HTTP client every deployment shares, and the largest answer
/// body it reads.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl HttpClient {
    /// A client with keep-alive pooling and no global timeout (calls set
    /// their own), reading answers of up to [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            // Never follow redirects: a key in an `api-key` header would follow
            // to another host, and a POST would turn into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self::from_reqwest(client)
    }

    /// Wraps a client built elsewhere.
    pub fn from_reqwest(client: reqwest::Client) -> Self {
        Self {
            client,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The same client, refusing non-streamed answers longer than `max`
    /// bytes (`general_settings.max_response_size_mb`): such a call fails
    /// with a 400-class error once `max` bytes arrived, without reading on.
    /// A client given to `RouterBuilder::http_client` keeps its own limit.
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The largest non-streamed answer body read, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

/// Removes a deployment's API key from text that came back from upstream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor(Option<Secret>);

impl Redactor {
    pub(crate) fn redact(&self, text: String) -> String {
        match &self.0 {
            Some(key) if key.expose().len() >= 4 && text.contains(key.expose()) => {
                text.replace(key.expose(), "***")
            }
            _ => text,
        }
    }
}

/// A client for one OpenAI-compatible deployment.
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    http: reqwest::Client,
    /// Largest non-streamed answer body read.
    max_response: usize,
    api_base: String,
    chat_url: reqwest::Url,
    embeddings_url: reqwest::Url,
    auth: Option<(HeaderName, HeaderValue)>,
    model: String,
    default_params: Map<String, Value>,
    redactor: Redactor,
    clock: SharedClock,
    provider: String,
    supports_prefill: bool,
    malformed: Arc<AtomicU64>,
}

impl OpenAiCompatible {
    /// Builds the client for `deployment`, whose `provider` must be one of
    /// [`crate::known_providers`].
    pub fn new(http: &HttpClient, deployment: &Deployment) -> Result<Self, ProviderConfigError> {
        Self::with_clock(http, deployment, SystemClock::shared())
    }

    /// Like [`OpenAiCompatible::new`], reading time (for `Retry-After` dates) from `clock`.
    pub fn with_clock(
        http: &HttpClient,
        deployment: &Deployment,
        clock: SharedClock,
    ) -> Result<Self, ProviderConfigError> {
        let spec = spec_of(&deployment.provider).ok_or_else(|| {
            match crate::resolve_model(&format!("{}/x", deployment.provider)) {
                Err(e) => e,
                Ok(_) => ProviderConfigError::UnknownProvider {
                    provider: deployment.provider.to_string(),
                    supported: String::new(),
                },
            }
        })?;
        let base = deployment
            .api_base
            .as_deref()
            .or(spec.default_api_base)
            .ok_or_else(|| ProviderConfigError::MissingApiBase {
                provider: spec.name.to_owned(),
            })?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ProviderConfigError::BadApiBase {
                api_base: lb_core::url_without_credentials(base),
            });
        }
        // A query in the base (`...?key=k`) goes after the path the
        // router appends, not before it.
        let (base, query) = match base.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (base, None),
        };
        let with_query = |url: String| match query {
            Some(q) if url.contains('?') => format!("{url}&{q}"),
            Some(q) => format!("{url}?{q}"),
            None => url,
        };
        let mut base = base.trim_end_matches('/').to_owned();
        if matches!(spec.name, "ollama" | "ollama_chat") && !base.ends_with("/v1") {
            base.push_str("/v1");
        }
        let (chat_url, embeddings_url, auth_name, auth_value) = match spec.flavor {
            Flavor::OpenAi => (
                format!("{base}/chat/completions"),
                format!("{base}/embeddings"),
                AUTHORIZATION,
                deployment
                    .api_key
                    .as_ref()
                    .map(|k| format!("Bearer {}", k.expose())),
            ),
            Flavor::Azure => {
                let version = deployment
                    .api_version
                    .as_deref()
                    .unwrap_or(DEFAULT_AZURE_API_VERSION);
                let prefix = format!("{base}/openai/deployments/{}", deployment.model);
                (
                    format!("{prefix}/chat/completions?api-version={version}"),
                    format!("{prefix}/embeddings?api-version={version}"),
                    HeaderName::from_static("api-key"),
                    deployment.api_key.as_ref().map(|k| k.expose().to_owned()),
                )
            }
        };
        let parse = |url: String| {
            reqwest::Url::parse(&with_query(url)).map_err(|_| ProviderConfigError::BadApiBase {
                api_base: lb_core::url_without_credentials(&base),
            })
        };
        let chat_url = parse(chat_url)?;
        let embeddings_url = parse(embeddings_url)?;
        let auth = match auth_value {
            Some(v) => {
                let mut value =
                    HeaderValue::from_str(&v).map_err(|_| ProviderConfigError::BadApiKey)?;
                value.set_sensitive(true);
                Some((auth_name, value))
            }
            None => None,
        };
        Ok(Self {
            http: http.client.clone(),
            max_response: http.max_response_bytes,
            // As shown in headers, logs and errors: no user or password (the
            // query was split off above, the trailing slash trimmed).
            api_base: lb_core::url_without_credentials(&base),
            chat_url,
            embeddings_url,
            auth,
            model: deployment.model.clone(),
            default_params: deployment.default_params.clone(),
            redactor: Redactor(deployment.api_key.clone()),
            clock,
            provider: spec.name.to_owned(),
            // OpenAI's and Azure's APIs answer a trailing assistant message anew
            // instead of continuing it: continuing there would repeat text.
            supports_prefill: deployment
                .supports_prefill
                .unwrap_or(!matches!(spec.name, "openai" | "azure")),
            malformed: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        url: &reqwest::Url,
        body: &B,
    ) -> Result<reqwest::Response, UpstreamError> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            UpstreamError::new(
                ErrorClass::BadRequest,
                format!("request cannot be encoded: {e}"),
            )
        })?;
        let mut req = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(bytes);
        if let Some((name, value)) = &self.auth {
            req = req.header(name.clone(), value.clone());
        }
        req = with_trace_context(req);
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = read_up_to(resp, MAX_ERROR_BODY)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        let mut err = classify_error(status, &headers, &body, self.clock.wall());
        err.message = self.redactor.redact(err.message);
        Err(err)
    }

    /// The body of a successful answer, refused (a 400-class error, as
    /// LiteLLM's `max_response_size_mb` check answers) once longer than
    /// `max_response`.
    async fn read_answer(&self, resp: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
        let too_large = || {
            UpstreamError::new(
                ErrorClass::BadRequest,
                format!(
                    "Response size is too large: the upstream's answer is longer than \
                     general_settings.max_response_size_mb allows ({} bytes)",
                    self.max_response
                ),
            )
        };
        // Refused before reading when its Content-Length says so.
        if resp.content_length().unwrap_or(0) > self.max_response as u64 {
            return Err(too_large());
        }
        match read_up_to(resp, self.max_response).await {
            Ok((body, true)) => Ok(body),
            Ok((_, false)) => Err(too_large()),
            Err(e) => Err(self.transport_error(e)),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> UpstreamError {
        let class = if e.is_timeout() {
            ErrorClass::Timeout
        } else {
            ErrorClass::Connection
        };
        // The URL is left out (it may carry credentials); the cleaned base is named instead.
        let e = e.without_url();
        let mut msg = format!("{e} (calling {})", self.api_base);
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        UpstreamError::new(class, self.redactor.redact(msg))
    }

    fn unreadable(&self, what: &str, e: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::new(
            ErrorClass::ServerError,
            self.redactor
                .redact(format!("unreadable {what} from upstream: {e}")),
        )
    }
}

fn timed_out(timeout: Duration) -> UpstreamError {
    UpstreamError::new(
        ErrorClass::Timeout,
        format!("no response from upstream within {timeout:?}"),
    )
}

/// The chat body sent upstream: the request with the deployment's model name
/// and its default parameters (request fields win).
struct ChatBody<'a> {
    req: &'a ChatCompletionRequest,
    model: &'a str,
    defaults: &'a Map<String, Value>,
}

impl Serialize for ChatBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", self.model)?;
        m.serialize_entry("messages", &r.messages)?;
        if let Some(v) = &r.stream {
            m.serialize_entry("stream", v)?;
        }
        if let Some(v) = &r.stream_options {
            m.serialize_entry("stream_options", v)?;
        }
        if let Some(v) = &r.max_tokens {
            m.serialize_entry("max_tokens", v)?;
        }
        if let Some(v) = &r.max_completion_tokens {
            m.serialize_entry("max_completion_tokens", v)?;
        }
        for (k, v) in &r.extra {
            m.serialize_entry(k, v)?;
        }
        for (k, v) in self.defaults {
            if !(r.extra.contains_key(k) || request_sets(r, k)) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

fn request_sets(r: &ChatCompletionRequest, key: &str) -> bool {
    match key {
        "stream" => r.stream.is_some(),
        "stream_options" => r.stream_options.is_some(),
        // One generation limit: a request that sets either name overrides a
        // default under either name (OpenAI refuses both at once).
        "max_tokens" | "max_completion_tokens" => {
            r.max_tokens.is_some() || r.max_completion_tokens.is_some()
        }
        "model" | "messages" => true,
        _ => false,
    }
}

struct EmbeddingBody<'a> {
    req: &'a EmbeddingRequest,
    model: &'a str,
    defaults: &'a Map<String, Value>,
}

impl Serialize for EmbeddingBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", self.model)?;
        m.serialize_entry("input", &self.req.input)?;
        for (k, v) in &self.req.extra {
            m.serialize_entry(k, v)?;
        }
        for (k, v) in self.defaults {
            if !self.req.extra.contains_key(k) && k != "model" && k != "input" {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    async fn chat(
        &self,
        req: &ChatCompletionRequest,
        timeout: Duration,
    ) -> Result<ChatCompletionResponse, UpstreamError> {
        let body = ChatBody {
            req,
            model: &self.model,
            defaults: &self.default_params,
        };
        let call = async {
            let resp = self.send(&self.chat_url, &body).await?;
            let bytes = self.read_answer(resp).await?;
            serde_json::from_slice::<ChatCompletionResponse>(&bytes)
                .map_err(|e| self.unreadable("chat completion", e))
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(timed_out(timeout)))
    }

    async fn chat_stream(
        &self,
        req: &ChatCompletionRequest,
        timeout: Duration,
        idle: Duration,
    ) -> Result<ChunkStream, UpstreamError> {
        let body = ChatBody {
            req,
            model: &self.model,
            defaults: &self.default_params,
        };
        let first = async {
            let resp = self.send(&self.chat_url, &body).await?;
            let mut chunks = Box::pin(crate::sse::chunks(
                resp,
                self.redactor.clone(),
                Arc::clone(&self.malformed),
            ));
            match chunks.next().await {
                Some(Ok(first)) => Ok((first, chunks)),
                Some(Err(e)) => Err(e),
                None => Err(UpstreamError::new(
                    ErrorClass::Connection,
                    "upstream stream ended before the first chunk",
                )),
            }
        };
        let (first, rest) = tokio::time::timeout(timeout, first)
            .await
            .unwrap_or_else(|_| Err(timed_out(timeout)))?;
        // After the first chunk, `idle` bounds every gap between chunks: a
        // stream that goes quiet ends with a timeout instead of hanging.
        let timeout = idle;
        let rest = stream::unfold(Some(rest), move |state| async move {
            let mut rest = state?;
            match tokio::time::timeout(timeout, rest.next()).await {
                Ok(Some(item)) => {
                    let ended = item.is_err();
                    Some((item, (!ended).then_some(rest)))
                }
                Ok(None) => None,
                Err(_) => Some((
                    Err(UpstreamError::new(
                        ErrorClass::Timeout,
                        format!("upstream stream stalled: no chunk for {timeout:?}"),
                    )),
                    None,
                )),
            }
        });
        Ok(Box::pin(stream::once(async move { Ok(first) }).chain(rest)))
    }

    async fn embedding(
        &self,
        req: &EmbeddingRequest,
        timeout: Duration,
    ) -> Result<EmbeddingResponse, UpstreamError> {
        let body = EmbeddingBody {
            req,
            model: &self.model,
            defaults: &self.default_params,
        };
        let call = async {
            let resp = self.send(&self.embeddings_url, &body).await?;
            let bytes = self.read_answer(resp).await?;
            serde_json::from_slice::<EmbeddingResponse>(&bytes)
                .map_err(|e| self.unreadable("embeddings response", e))
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(timed_out(timeout)))
    }

    fn api_base(&self) -> &str {
        &self.api_base
    }

    fn supports_prefill(&self) -> bool {
        self.supports_prefill
    }

    fn prepare_continuation(&self, req: &mut ChatCompletionRequest) {
        match self.provider.as_str() {
            // vLLM continues the last message when told to.
            "hosted_vllm" | "openai_like" | "custom_openai" | "lm_studio" => {
                req.extra
                    .insert("continue_final_message".into(), true.into());
                req.extra
                    .insert("add_generation_prompt".into(), false.into());
            }
            // Mistral and DeepSeek mark the prefill itself.
            "mistral" | "deepseek" => {
                if let Some(last) = req.messages.last_mut() {
                    last.extra.insert("prefix".into(), true.into());
                }
            }
            // Others take a trailing assistant message as the start of the answer.
            _ => {}
        }
    }

    fn malformed_events(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

/// Adds the W3C `traceparent` (and `tracestate`) of the current
/// OpenTelemetry span, when there is one, so the upstream's spans join the
/// caller's trace.
fn with_trace_context(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    use opentelemetry::trace::{TraceContextExt, TraceState};

    let headers = opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return None;
        }
        let state = (*sc.trace_state() != TraceState::NONE)
            .then(|| sc.trace_state().header())
            .filter(|h| !h.is_empty())
            .and_then(|h| HeaderValue::from_str(&h).ok());
        Some((traceparent(sc), state))
    });
    match headers {
        Some((parent, state)) => {
            let req = req.header(HeaderName::from_static("traceparent"), parent);
            match state {
                Some(state) => req.header(HeaderName::from_static("tracestate"), state),
                None => req,
            }
        }
        None => req,
    }
}

/// Most bytes of an error answer's body read; the rest is not waited for
/// (an error page or a runaway body must not fill the router's memory).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Up to `max` bytes of `resp`'s body, and whether that is all of it:
/// reading stops at the first chunk that goes past `max`, so a runaway body
/// costs at most `max` bytes of memory.
pub async fn read_up_to(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    // What the upstream announced is reserved up to 1 MiB (a header alone
    // must not make the router reserve a whole limit); beyond, it grows.
    let announced = resp.content_length().unwrap_or(0);
    let reserve = usize::try_from(announced)
        .unwrap_or(max)
        .min(max)
        .min(1 << 20);
    let mut body = Vec::with_capacity(reserve);
    while let Some(chunk) = resp.chunk().await? {
        let room = max - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// `00-{trace id}-{span id}-{flags}` as the W3C Trace Context says (the
/// sampled flag only, as OpenTelemetry's propagator writes it).
fn traceparent(sc: &opentelemetry::trace::SpanContext) -> HeaderValue {
    fn hex(out: &mut [u8], bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
    }
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&mut out[3..35], &sc.trace_id().to_bytes());
    hex(&mut out[36..52], &sc.span_id().to_bytes());
    let flags = sc.trace_flags() & opentelemetry::trace::TraceFlags::SAMPLED;
    hex(&mut out[53..55], &[flags.to_u8()]);
    // Only hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("00"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::ChatMessage;

    #[tokio::test]
    async fn an_error_body_is_read_up_to_its_cap() {
        let response = |body: Vec<u8>| {
            reqwest::Response::from(
                http::Response::builder()
                    .status(502)
                    .body(body)
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let big = read_up_to(response(vec![b'x'; 1 << 20]), MAX_ERROR_BODY).await;
        assert!(matches!(big, Ok((b, false)) if b.len() == MAX_ERROR_BODY));
        let small = read_up_to(response(b"{\"error\":\"busy\"}".to_vec()), MAX_ERROR_BODY).await;
        assert!(matches!(small, Ok((b, true)) if b == b"{\"error\":\"busy\"}"));
    }

    #[tokio::test]
    async fn a_body_is_read_whole_up_to_its_limit_and_cut_past_it() {
        // Chunked (no Content-Length): the limit is found while reading.
        let chunked = |pieces: usize| {
            let chunks = (0..pieces).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1000]));
            reqwest::Response::from(
                http::Response::builder()
                    .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                        chunks,
                    )))
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let exact = read_up_to(chunked(10), 10_000).await;
        assert!(matches!(exact, Ok((b, true)) if b.len() == 10_000));
        let over = read_up_to(chunked(11), 10_000).await;
        assert!(matches!(over, Ok((b, false)) if b.len() == 10_000));
        // (`read_answer` also refuses an answer whose Content-Length is over
        // the limit before reading; over loopback, tests/e2e/gateway.rs sees
        // the same 400 either way.)
    }

    #[test]
    fn traceparent_is_what_the_w3c_propagator_writes() {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use std::collections::HashMap;
        for (trace, span, flags) in [
            (1_u128, 1_u64, TraceFlags::SAMPLED),
            (u128::MAX, u64::MAX, TraceFlags::NOT_SAMPLED),
            (
                0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
                0xb7ad_6b71_6920_3331,
                TraceFlags::new(0xff),
            ),
        ] {
            let sc = SpanContext::new(
                TraceId::from(trace),
                SpanId::from(span),
                flags,
                false,
                TraceState::NONE,
            );
            let mut expected = HashMap::new();
            opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(
                &opentelemetry::Context::new().with_remote_span_context(sc.clone()),
                &mut expected,
            );
            assert_eq!(
                traceparent(&sc).to_str().ok(),
                expected.get("traceparent").map(String::as_str)
            );
        }
    }

    #[test]
    fn body_uses_deployment_model_and_defaults_yield_to_request() {
        let mut req = ChatCompletionRequest::new("group", vec![ChatMessage::user("hi")]);
        req.extra.insert("temperature".into(), 0.1.into());
        req.extra
            .insert("tools".into(), serde_json::json!([{"type": "function"}]));
        let mut defaults = Map::new();
        defaults.insert("temperature".into(), 0.9.into());
        defaults.insert("top_p".into(), 0.5.into());
        let body = serde_json::to_value(ChatBody {
            req: &req,
            model: "gpt-4o-mini",
            defaults: &defaults,
        })
        .unwrap();
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["temperature"], 0.1);
        assert_eq!(body["top_p"], 0.5);
        assert_eq!(body["tools"][0]["type"], "function");
    }

    #[test]
    fn azure_urls_and_header() {
        let mut d = Deployment::new("a", "g", "azure", "my-deploy")
            .with_api_base("https://x.openai.azure.com/")
            .with_api_key(Secret::new("azkey"));
        d.api_version = Some("2024-06-01".into());
        let c = OpenAiCompatible::new(&HttpClient::new(), &d).unwrap();
        assert_eq!(
            c.chat_url.as_str(),
            "https://x.openai.azure.com/openai/deployments/my-deploy/chat/completions?api-version=2024-06-01"
        );
        let (name, value) = c.auth.as_ref().unwrap();
        assert_eq!(name.as_str(), "api-key");
        assert!(value.is_sensitive());
        assert!(!format!("{c:?}").contains("azkey"));
    }

    #[test]
    fn a_query_in_api_base_follows_the_path() {
        let d = Deployment::new("a", "g", "openai_like", "m")
            .with_api_base("https://gw.example/v1/?key=k1");
        let c = OpenAiCompatible::new(&HttpClient::new(), &d).unwrap();
        assert_eq!(
            c.chat_url.as_str(),
            "https://gw.example/v1/chat/completions?key=k1"
        );
        assert_eq!(
            c.embeddings_url.as_str(),
            "https://gw.example/v1/embeddings?key=k1"
        );
        assert_eq!(c.api_base, "https://gw.example/v1");
        let mut d = Deployment::new("a", "g", "azure", "dep")
            .with_api_base("https://x.openai.azure.com?tenant=t");
        d.api_version = Some("2024-06-01".into());
        let c = OpenAiCompatible::new(&HttpClient::new(), &d).unwrap();
        assert_eq!(
            c.chat_url.as_str(),
            "https://x.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-06-01&tenant=t"
        );
    }

    #[test]
    fn missing_base_and_bad_base_are_errors() {
        let d = Deployment::new("a", "g", "azure", "m");
        assert!(matches!(
            OpenAiCompatible::new(&HttpClient::new(), &d),
            Err(ProviderConfigError::MissingApiBase { .. })
        ));
        let d = Deployment::new("a", "g", "openai", "m").with_api_base("ftp://x");
        assert!(matches!(
            OpenAiCompatible::new(&HttpClient::new(), &d),
            Err(ProviderConfigError::BadApiBase { .. })
        ));
    }

    #[test]
    fn api_base_is_shown_without_credentials_or_query() {
        let d = Deployment::new("a", "g", "openai", "m")
            .with_api_base("https://user:tok@vllm.internal/v1?key=abc");
        let c = OpenAiCompatible::new(&HttpClient::new(), &d).unwrap();
        assert_eq!(c.api_base(), "https://vllm.internal/v1");
    }

    #[test]
    fn a_request_limit_under_either_name_overrides_both_defaults() {
        let mut req = ChatCompletionRequest::new("group", vec![ChatMessage::user("hi")]);
        req.max_completion_tokens = Some(5);
        let mut defaults = Map::new();
        defaults.insert("max_tokens".into(), 1000.into());
        let body = serde_json::to_value(ChatBody {
            req: &req,
            model: "m",
            defaults: &defaults,
        })
        .unwrap();
        assert_eq!(body["max_completion_tokens"], 5);
        assert!(body.get("max_tokens").is_none(), "{body}");
    }

    #[test]
    fn redactor_hides_key() {
        let r = Redactor(Some(Secret::new("sk-secret-1")));
        assert_eq!(
            r.redact("bad key sk-secret-1 given".into()),
            "bad key *** given"
        );
    }
}
