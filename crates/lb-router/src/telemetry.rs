//! OpenTelemetry traces: one span per client request, one child span per
//! upstream attempt, exported over OTLP/HTTP.
//!
//! Off unless configured (`router_settings.otel`, `litellm_settings.callbacks:
//! ["otel"]`, or the standard `OTEL_EXPORTER_OTLP_*` variables). Spans carry
//! the OpenTelemetry GenAI semantic-convention attributes plus the router's
//! own (`lb.*`): deployment, attempt number, cooldown and fallback decisions.
//! Prompt and completion text are recorded only with
//! `capture_message_content` (or `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`).
//!
//! Spans are exported in batches by a task on the tokio runtime the router
//! was built in, through the router's HTTP stack (reqwest).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use lb_core::{ChatCompletionResponse, ChatMessage, Deployment, EmbeddingResponse, Usage};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::Secret;

/// How spans are encoded on the wire (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf`, the OTLP default.
    #[default]
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

/// Where and how traces are exported (`router_settings.otel`).
#[derive(Clone, PartialEq)]
pub struct TracingSettings {
    /// The full URL spans are posted to (`.../v1/traces`).
    pub endpoint: String,
    /// Wire encoding.
    pub protocol: OtlpProtocol,
    /// Extra request headers (e.g. a collector's API key); never printed.
    pub headers: Vec<(String, Secret)>,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Record prompts and completions (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`); off by default.
    pub capture_message_content: bool,
    /// Timeout of one export request.
    pub export_timeout: Duration,
    /// Share of new traces recorded (0 to 1), parent-based: a client's
    /// sampling decision is followed. `None`: the SDK's default (every trace,
    /// or `OTEL_TRACES_SAMPLER`).
    pub sample_ratio: Option<f64>,
}

impl fmt::Debug for TracingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingSettings")
            .field(
                "endpoint",
                &lb_core::url_without_credentials(&self.endpoint),
            )
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("capture_message_content", &self.capture_message_content)
            .field("export_timeout", &self.export_timeout)
            .field("sample_ratio", &self.sample_ratio)
            .finish()
    }
}

/// The default OTLP/HTTP traces endpoint.
pub const DEFAULT_OTLP_TRACES_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// The default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "lb-router";

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_OTLP_TRACES_ENDPOINT.to_owned(),
            protocol: OtlpProtocol::default(),
            headers: Vec::new(),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            capture_message_content: false,
            export_timeout: Duration::from_secs(10),
            sample_ratio: None,
        }
    }
}

/// Posts export requests with the router's HTTP stack, on the tokio
/// runtime the router was built in (also when the SDK calls it from a
/// thread of its own, at shutdown).
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Most bytes of an OTLP collector's reply read (a reply says at most which
/// spans were rejected); a runaway reply must not fill the router's memory.
pub(crate) const MAX_COLLECTOR_REPLY: usize = 64 * 1024;

#[async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let task = self.runtime.spawn(async move {
            let resp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(reqwest::Error::without_url)?;
            let mut out = http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            let (body, whole) = lb_providers::read_up_to(resp, MAX_COLLECTOR_REPLY)
                .await
                .map_err(reqwest::Error::without_url)?;
            if !whole {
                return Err(format!(
                    "the OTLP collector's reply is over {MAX_COLLECTOR_REPLY} bytes"
                )
                .into());
            }
            Ok::<_, opentelemetry_http::HttpError>(out.body(Bytes::from(body))?)
        });
        task.await?
    }
}

/// A batch processor for `exporter`, as a task on the runtime.
fn batch<E: opentelemetry_sdk::trace::SpanExporter + 'static>(
    exporter: E,
) -> impl opentelemetry_sdk::trace::SpanProcessor {
    opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build()
}

/// `http/json`: opentelemetry-otlp's exporter over the router's HTTP stack.
fn json_exporter(
    settings: &TracingSettings,
    runtime: tokio::runtime::Handle,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    // No redirects: a collector's API-key header must not follow one
    // to another host.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.export_timeout)
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    let headers: HashMap<String, String> = settings
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.endpoint.clone())
        .with_protocol(Protocol::HttpJson)
        .with_timeout(settings.export_timeout)
        .with_headers(headers)
        .with_http_client(ExportClient { client, runtime })
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))
}

/// The router's tracer and its exporter.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// The tracer's sampler when the router chose it (`sample_ratio`): a
    /// request it drops is decided before the SDK builds anything.
    sampler: Option<opentelemetry_sdk::trace::Sampler>,
    capture: bool,
    /// Per deployment: its attempt spans' name and fixed attributes, built
    /// once (shared strings, nothing copied per call).
    deployments: Vec<(String, Vec<KeyValue>)>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("capture", &self.capture)
            .finish_non_exhaustive()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Shutting down flushes what is queued, which needs the runtime this
        // thread may be driving: do it elsewhere, without waiting.
        let provider = self.provider.clone();
        let _ = std::thread::Builder::new()
            .name("lb-otel-shutdown".to_owned())
            .spawn(move || {
                let _ = provider.shutdown();
            });
    }
}

impl Telemetry {
    /// Whether prompts, answers and error texts may be recorded.
    pub(crate) fn capture(&self) -> bool {
        self.capture
    }

    /// The tracer and a batch exporter to `settings.endpoint`, for
    /// `deployments` (with their base URLs). Needs a tokio runtime.
    pub(crate) fn new<'a>(
        settings: &TracingSettings,
        deployments: impl Iterator<Item = (&'a Deployment, &'a str)>,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            "traces are exported from the tokio runtime: build the router inside one".to_owned()
        })?;
        let mut builder = SdkTracerProvider::builder();
        let sampler = settings.sample_ratio.map(|r| {
            opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(r),
            ))
        });
        if let Some(s) = &sampler {
            builder = builder.with_sampler(s.clone());
        }
        // The batch processor runs as a task on the router's runtime: a
        // processor thread of its own competes with the runtime's workers
        // for the cores (measured: 72% of the throughput without traces
        // against 86% this way; docs/benchmarks.md).
        builder = match settings.protocol {
            OtlpProtocol::HttpProtobuf => {
                let headers: Vec<(String, String)> = settings
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect();
                let exporter = crate::otlp::ProtobufExporter::new(
                    settings.endpoint.clone(),
                    &headers,
                    settings.export_timeout,
                    runtime,
                )?;
                builder.with_span_processor(batch(exporter))
            }
            OtlpProtocol::HttpJson => {
                builder.with_span_processor(batch(json_exporter(settings, runtime)?))
            }
        };
        let provider = builder
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let scope = opentelemetry::InstrumentationScope::builder("lb-router")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        let deployments = deployments
            .map(|(d, api_base)| {
                let attrs = vec![
                    KeyValue::new("gen_ai.system", Arc::clone(&d.provider)),
                    KeyValue::new("gen_ai.provider.name", Arc::clone(&d.provider)),
                    KeyValue::new("gen_ai.request.model", Arc::<str>::from(d.model.as_str())),
                    KeyValue::new("lb.deployment.id", Arc::clone(d.id.as_arc())),
                    KeyValue::new("lb.model_group", Arc::clone(&d.model_group)),
                    KeyValue::new("server.address", Arc::<str>::from(api_base)),
                ];
                (d.model.clone(), attrs)
            })
            .collect();
        Ok(Self {
            provider,
            tracer,
            sampler,
            capture: settings.capture_message_content,
            deployments,
        })
    }

    /// Exports what is queued and stops exporting (at the end of serving).
    pub(crate) async fn shutdown(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }

    /// Exports every finished span now.
    pub(crate) async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }

    /// Starts the span of one client request, a child of the caller's
    /// current context (the gateway puts the client's `traceparent` there).
    pub(crate) fn request_span(
        &self,
        operation: &'static str,
        model: &str,
        stream: bool,
        messages: Option<&[ChatMessage]>,
    ) -> Context {
        let parent = Context::current();
        let mut trace_id = None;
        if let Some(sampler) = &self.sampler {
            match sampled_out(sampler, &parent) {
                Ok(cx) => return cx,
                Err(id) => trace_id = id,
            }
        }
        // The client's string, kept short: it names the span and is held
        // until export.
        let model = lb_core::prefix_within(model, MAX_MODEL_LEN);
        let mut attrs = Vec::with_capacity(24);
        attrs.push(KeyValue::new("gen_ai.operation.name", operation));
        attrs.push(KeyValue::new("gen_ai.request.model", model.to_owned()));
        attrs.push(KeyValue::new("lb.stream", stream));
        let span = self
            .tracer
            .span_builder(format!("{operation} {model}"))
            .with_kind(SpanKind::Server)
            .with_attributes(attrs);
        let mut span = match trace_id {
            Some(id) => span.with_trace_id(id),
            None => span,
        }
        .start_with_context(&self.tracer, &parent);
        if let (true, true, Some(m)) = (span.is_recording(), self.capture, messages) {
            span.set_attribute(KeyValue::new("gen_ai.input.messages", json(m)));
        }
        parent.with_span(span)
    }

    /// Starts the span of one upstream attempt, a child of the request's.
    pub(crate) fn attempt_span(&self, parent: &Context, a: &AttemptInfo) -> Context {
        let Some((model, fixed)) = self.deployments.get(a.index) else {
            return parent.clone();
        };
        // Room for what the attempt's end adds (response, usage, cost).
        let mut attrs = Vec::with_capacity(fixed.len() + 14);
        attrs.extend_from_slice(fixed);
        attrs.push(KeyValue::new("gen_ai.operation.name", a.operation));
        attrs.push(KeyValue::new("lb.attempt", i64::from(a.attempt)));
        attrs.push(KeyValue::new("lb.stream", a.stream));
        if a.trial {
            attrs.push(KeyValue::new("lb.half_open_trial", true));
        }
        if a.continuation {
            attrs.push(KeyValue::new("lb.continuation", true));
        }
        if let Some(m) = a.max_tokens {
            attrs.push(KeyValue::new("gen_ai.request.max_tokens", i64::from(m)));
        }
        if let Some(t) = a.temperature {
            attrs.push(KeyValue::new("gen_ai.request.temperature", t));
        }
        let span = self
            .tracer
            .span_builder(format!("{} {model}", a.operation))
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, parent);
        parent.with_span(span)
    }

    /// The chat answer's attributes (for an attempt or request span).
    pub(crate) fn chat_response(&self, out: &mut Vec<KeyValue>, resp: &ChatCompletionResponse) {
        response_model(out, &resp.model, &resp.id);
        let reasons: Vec<opentelemetry::StringValue> = resp
            .choices
            .iter()
            .filter_map(|c| c.finish_reason.clone().map(Into::into))
            .collect();
        out.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(reasons.into()),
        ));
        if let Some(u) = &resp.usage {
            usage(out, u);
        }
        if self.capture {
            let messages: Vec<&ChatMessage> = resp.choices.iter().map(|c| &c.message).collect();
            out.push(KeyValue::new("gen_ai.output.messages", json(&messages)));
        }
    }

    /// The embeddings answer's attributes.
    pub(crate) fn embedding_response(out: &mut Vec<KeyValue>, resp: &EmbeddingResponse) {
        out.push(KeyValue::new("gen_ai.response.model", resp.model.clone()));
        if let Some(u) = &resp.usage {
            usage(out, u);
        }
    }

    /// The attributes of the text a stream delivered (the text itself only
    /// with content capture on).
    pub(crate) fn stream_output(
        &self,
        out: &mut Vec<KeyValue>,
        text: &str,
        finish_reason: Option<&str>,
    ) {
        if let Some(r) = finish_reason {
            out.push(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(vec![opentelemetry::StringValue::from(r.to_owned())].into()),
            ));
        }
        if self.capture {
            let message = serde_json::json!([{"role": "assistant", "content": text}]);
            out.push(KeyValue::new(
                "gen_ai.output.messages",
                captured(message.to_string()),
            ));
        }
    }
}

/// A request span `sampler` drops, decided up front: a non-recording span
/// with a fresh span id (so `traceparent` still travels upstream, unsampled),
/// at a fraction of what the SDK spends building one. `Err` carries the new
/// trace id the span must use when it is sampled (none under a parent).
fn sampled_out(
    sampler: &opentelemetry_sdk::trace::Sampler,
    parent: &Context,
) -> Result<Context, Option<opentelemetry::trace::TraceId>> {
    use opentelemetry::trace::{SamplingDecision, SpanContext, TraceFlags};
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, ShouldSample};
    // Suppressed telemetry (the SDK's own export path): the SDK makes no
    // span, and neither do we.
    if parent.is_telemetry_suppressed() {
        return Ok(parent.clone());
    }
    let ids = RandomIdGenerator::default();
    let parent_span = parent.span();
    let parent_sc = parent_span.span_context();
    let (trace_id, new_trace) = if parent_sc.is_valid() {
        (parent_sc.trace_id(), None)
    } else {
        let id = ids.new_trace_id();
        (id, Some(id))
    };
    let decision = sampler
        .should_sample(Some(parent), trace_id, "", &SpanKind::Server, &[], &[])
        .decision;
    if decision != SamplingDecision::Drop {
        return Err(new_trace);
    }
    // The parent's flags with "sampled" cleared, as the SDK keeps them.
    let flags = if parent_sc.is_valid() {
        parent_sc.trace_flags().with_sampled(false)
    } else {
        TraceFlags::default()
    };
    let sc = SpanContext::new(
        trace_id,
        ids.new_span_id(),
        flags,
        false,
        parent_sc.trace_state().clone(),
    );
    Ok(parent.with_remote_span_context(sc))
}

/// What an attempt span says about its attempt.
pub(crate) struct AttemptInfo {
    pub(crate) operation: &'static str,
    /// The deployment's position in the router.
    pub(crate) index: usize,
    pub(crate) attempt: u32,
    pub(crate) stream: bool,
    pub(crate) trial: bool,
    pub(crate) continuation: bool,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) temperature: Option<f64>,
}

/// Where a served call went: the request span's attributes.
pub(crate) fn served(out: &mut Vec<KeyValue>, meta: &crate::ResponseMeta) {
    out.push(KeyValue::new(
        "lb.deployment.id",
        Arc::clone(meta.deployment_id.as_arc()),
    ));
    out.push(KeyValue::new(
        "lb.model_group",
        Arc::clone(&meta.model_group),
    ));
    out.push(KeyValue::new("gen_ai.system", Arc::clone(&meta.provider)));
    out.push(KeyValue::new(
        "gen_ai.provider.name",
        Arc::clone(&meta.provider),
    ));
    out.push(KeyValue::new("lb.attempts", i64::from(meta.attempts)));
    out.push(KeyValue::new("lb.retries", i64::from(meta.retries)));
    out.push(KeyValue::new("lb.fallbacks", i64::from(meta.fallbacks)));
    cost(out, meta.cost);
}

/// Why a call failed, on its request span.
pub(crate) fn router_failed(cx: &Context, e: &crate::RouterError, capture: bool) {
    cx.span().set_attribute(KeyValue::new(
        "lb.attempts",
        i64::try_from(e.attempts().len()).unwrap_or(i64::MAX),
    ));
    failed(
        cx,
        e.error_type(),
        Some(e.status()),
        &e.to_string(),
        capture,
    );
}

/// The answering model and response id.
pub(crate) fn response_model(out: &mut Vec<KeyValue>, model: &str, id: &str) {
    out.push(KeyValue::new("gen_ai.response.model", model.to_owned()));
    out.push(KeyValue::new("gen_ai.response.id", id.to_owned()));
}

/// Token usage.
pub(crate) fn usage(out: &mut Vec<KeyValue>, u: &Usage) {
    out.push(KeyValue::new(
        "gen_ai.usage.input_tokens",
        i64::try_from(u.prompt_tokens).unwrap_or(i64::MAX),
    ));
    out.push(KeyValue::new(
        "gen_ai.usage.output_tokens",
        i64::try_from(u.completion_tokens).unwrap_or(i64::MAX),
    ));
}

/// The call's cost in USD.
pub(crate) fn cost(out: &mut Vec<KeyValue>, cost: Option<f64>) {
    if let Some(c) = cost {
        out.push(KeyValue::new("lb.cost_usd", c));
    }
}

/// Sets `attrs` on the span of `cx` (one lock for all of them).
pub(crate) fn set(cx: &Context, attrs: Vec<KeyValue>) {
    if !attrs.is_empty() {
        cx.span().set_attributes(attrs);
    }
}

/// Sets `attrs` on the span of `cx` and ends it.
pub(crate) fn end_with(cx: &Context, attrs: Vec<KeyValue>) {
    let span = cx.span();
    if !attrs.is_empty() {
        span.set_attributes(attrs);
    }
    span.end();
}

/// Marks a span failed with `error_type` (the error class or OpenAI type).
/// The message is recorded only with content capture on: an upstream's
/// error text may quote the prompt.
pub(crate) fn failed(
    cx: &Context,
    error_type: &str,
    status: Option<u16>,
    message: &str,
    capture: bool,
) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("error.type", error_type.to_owned()));
    if let Some(s) = status {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
    }
    let description = if capture {
        message.to_owned()
    } else {
        match status {
            Some(s) => format!("{error_type} (status {s})"),
            None => error_type.to_owned(),
        }
    };
    span.set_status(Status::error(description));
}

/// Adds an event with attributes to the span of `cx`.
pub(crate) fn event(cx: &Context, name: &'static str, attrs: Vec<KeyValue>) {
    cx.span().add_event(name, attrs);
}

/// Whether the span of `cx` records (its trace was sampled).
pub(crate) fn recording(cx: &Context) -> bool {
    cx.span().is_recording()
}

/// The trace id of `cx`'s span, as 32 hex digits.
pub(crate) fn trace_id(cx: &Context) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = cx.span().span_context().trace_id().to_bytes();
    let mut out = String::with_capacity(32);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Ends the span of `cx` now.
pub(crate) fn end(cx: &Context) {
    cx.span().end();
}

/// Longest requested model name recorded on a span, in bytes.
const MAX_MODEL_LEN: usize = 256;

/// Most bytes of captured content kept per attribute: a span waits in the
/// export queue after its request ended, and 2048 of them must not hold a
/// request body each.
pub(crate) const MAX_CAPTURED: usize = 256 * 1024;

/// Captured content as JSON, cut to [`MAX_CAPTURED`] bytes (then ending in
/// `...`, no longer valid JSON).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    captured(serde_json::to_string(v).unwrap_or_default())
}

fn captured(mut s: String) -> String {
    if s.len() > MAX_CAPTURED {
        let end = lb_core::prefix_within(&s, MAX_CAPTURED).len();
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_content_is_cut_on_a_char_boundary() {
        let small = json(&serde_json::json!([{"content": "hi"}]));
        assert_eq!(small, r#"[{"content":"hi"}]"#);
        let big = json(&serde_json::json!([{"content": "é".repeat(MAX_CAPTURED)}]));
        assert!(
            big.ends_with("...") && big.len() <= MAX_CAPTURED + 3,
            "{}",
            big.len()
        );
        assert!(big.starts_with(r#"[{"content":"éé"#));
    }

    #[test]
    fn trace_id_is_32_lowercase_hex_digits() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        for id in [1_u128, u128::MAX, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736] {
            let cx = Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(id),
                SpanId::from(1_u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ));
            assert_eq!(trace_id(&cx), format!("{id:032x}"));
        }
    }

    #[test]
    fn debug_never_prints_header_values() {
        let s = TracingSettings {
            headers: vec![("x-api-key".to_owned(), Secret::new("sk-otel-secret"))],
            ..TracingSettings::default()
        };
        let d = format!("{s:?}");
        assert!(d.contains("x-api-key"), "{d}");
        assert!(!d.contains("sk-otel-secret"), "{d}");
    }
}
