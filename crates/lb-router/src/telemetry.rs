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
            .field("endpoint", &self.endpoint)
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
            let bytes = resp.bytes().await.map_err(reqwest::Error::without_url)?;
            Ok::<_, opentelemetry_http::HttpError>(out.body(bytes)?)
        });
        task.await?
    }
}

/// The router's tracer and its exporter.
pub(crate) struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
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
        use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            "traces are exported from the tokio runtime: build the router inside one".to_owned()
        })?;
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
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone())
            .with_protocol(match settings.protocol {
                OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
                OtlpProtocol::HttpJson => Protocol::HttpJson,
            })
            .with_timeout(settings.export_timeout)
            .with_headers(headers)
            .with_http_client(ExportClient { client, runtime })
            .build()
            .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
        let mut builder = SdkTracerProvider::builder();
        if let Some(r) = settings.sample_ratio {
            builder = builder.with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(
                Box::new(opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(r)),
            ));
        }
        // The batch processor runs as a task on the router's runtime: a
        // processor thread of its own competes with the runtime's workers
        // for the cores (measured: 72% of the throughput without traces
        // against 86% this way; docs/benchmarks.md).
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        let provider = builder
            .with_span_processor(processor)
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
        let mut span = self
            .tracer
            .span_builder(format!("{operation} {model}"))
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        // A trace sampled out costs no attributes.
        if span.is_recording() {
            span.set_attribute(KeyValue::new("gen_ai.operation.name", operation));
            span.set_attribute(KeyValue::new("gen_ai.request.model", model.to_owned()));
            span.set_attribute(KeyValue::new("lb.stream", stream));
            if let (true, Some(m)) = (self.capture, messages) {
                span.set_attribute(KeyValue::new("gen_ai.input.messages", json(m)));
            }
        }
        parent.with_span(span)
    }

    /// Starts the span of one upstream attempt, a child of the request's.
    pub(crate) fn attempt_span(&self, parent: &Context, a: &AttemptInfo) -> Context {
        let Some((model, fixed)) = self.deployments.get(a.index) else {
            return parent.clone();
        };
        let mut span = self
            .tracer
            .span_builder(format!("{} {model}", a.operation))
            .with_kind(SpanKind::Client)
            .start_with_context(&self.tracer, parent);
        if span.is_recording() {
            let mut attrs = Vec::with_capacity(fixed.len() + 6);
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
            span.set_attributes(attrs);
        }
        parent.with_span(span)
    }

    /// Records the chat answer on a span (attempt or request).
    pub(crate) fn chat_response(&self, cx: &Context, resp: &ChatCompletionResponse) {
        response_model(cx, &resp.model, &resp.id);
        let span = cx.span();
        let reasons: Vec<opentelemetry::StringValue> = resp
            .choices
            .iter()
            .filter_map(|c| c.finish_reason.clone().map(Into::into))
            .collect();
        span.set_attribute(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(reasons.into()),
        ));
        if let Some(u) = &resp.usage {
            usage(cx, u);
        }
        if self.capture {
            let messages: Vec<&ChatMessage> = resp.choices.iter().map(|c| &c.message).collect();
            span.set_attribute(KeyValue::new("gen_ai.output.messages", json(&messages)));
        }
    }

    /// Records the embeddings answer on a span.
    pub(crate) fn embedding_response(cx: &Context, resp: &EmbeddingResponse) {
        cx.span()
            .set_attribute(KeyValue::new("gen_ai.response.model", resp.model.clone()));
        if let Some(u) = &resp.usage {
            usage(cx, u);
        }
    }

    /// Records the text a stream delivered (only with content capture on).
    pub(crate) fn stream_output(&self, cx: &Context, text: &str, finish_reason: Option<&str>) {
        if let Some(r) = finish_reason {
            cx.span().set_attribute(KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(vec![opentelemetry::StringValue::from(r.to_owned())].into()),
            ));
        }
        if self.capture {
            let message = serde_json::json!([{"role": "assistant", "content": text}]);
            cx.span()
                .set_attribute(KeyValue::new("gen_ai.output.messages", message.to_string()));
        }
    }
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

/// Where a served call went, on its request span.
pub(crate) fn served(cx: &Context, meta: &crate::ResponseMeta) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "lb.deployment.id",
        meta.deployment_id.to_string(),
    ));
    span.set_attribute(KeyValue::new(
        "lb.model_group",
        meta.model_group.to_string(),
    ));
    span.set_attribute(KeyValue::new("gen_ai.system", meta.provider.to_string()));
    span.set_attribute(KeyValue::new(
        "gen_ai.provider.name",
        meta.provider.to_string(),
    ));
    span.set_attribute(KeyValue::new("lb.attempts", i64::from(meta.attempts)));
    span.set_attribute(KeyValue::new("lb.retries", i64::from(meta.retries)));
    span.set_attribute(KeyValue::new("lb.fallbacks", i64::from(meta.fallbacks)));
    cost(cx, meta.cost);
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

/// The answering model and response id on a span.
pub(crate) fn response_model(cx: &Context, model: &str, id: &str) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("gen_ai.response.model", model.to_owned()));
    span.set_attribute(KeyValue::new("gen_ai.response.id", id.to_owned()));
}

/// Token usage on a span.
pub(crate) fn usage(cx: &Context, u: &Usage) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "gen_ai.usage.input_tokens",
        i64::try_from(u.prompt_tokens).unwrap_or(i64::MAX),
    ));
    span.set_attribute(KeyValue::new(
        "gen_ai.usage.output_tokens",
        i64::try_from(u.completion_tokens).unwrap_or(i64::MAX),
    ));
}

/// The call's cost in USD on a span.
pub(crate) fn cost(cx: &Context, cost: Option<f64>) {
    if let Some(c) = cost {
        cx.span().set_attribute(KeyValue::new("lb.cost_usd", c));
    }
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

/// The trace id of `cx`'s span, as 32 hex digits.
pub(crate) fn trace_id(cx: &Context) -> String {
    cx.span().span_context().trace_id().to_string()
}

/// Ends the span of `cx` now.
pub(crate) fn end(cx: &Context) {
    cx.span().end();
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
