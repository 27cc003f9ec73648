//! OTLP/HTTP protobuf export of finished spans, encoded straight from the
//! SDK's span data.
//!
//! `opentelemetry-otlp` builds the request by cloning every span, converting
//! it into the generated protobuf structs (a `String` per attribute key and
//! value) and then encoding those: measured, that was 5.4% of the gateway's
//! CPU with every trace exported (docs/benchmarks.md). This exporter writes
//! the same message (`ExportTraceServiceRequest`, checked field for field
//! against the generated types in the tests) with one buffer per batch.
//! `http/json` still goes through `opentelemetry-otlp`.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Encoding buffers kept from one export to the next: a batch's request is
/// hundreds of KiB, and a fresh allocation of that size each time costs page
/// faults (measured: about 0.5% of the gateway's CPU with every trace
/// exported).
#[derive(Debug, Default)]
struct Buffers {
    /// Request bodies, back from the HTTP client once sent.
    bodies: Mutex<Vec<Vec<u8>>>,
    /// The spans of the first scope, before they are framed.
    scope: Mutex<Vec<u8>>,
}

/// At most this many bodies are kept, each at most this large.
const KEPT_BODIES: usize = 2;
const KEPT_BODY_BYTES: usize = 8 << 20;

/// A request body that goes back to the buffers when the HTTP client
/// drops it.
struct PooledBody {
    buf: Vec<u8>,
    buffers: Arc<Buffers>,
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.capacity() > KEPT_BODY_BYTES {
            return;
        }
        buf.clear();
        let mut bodies = self
            .buffers
            .bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if bodies.len() < KEPT_BODIES {
            bodies.push(buf);
        }
    }
}

/// Posts spans as OTLP/HTTP protobuf to one endpoint.
pub(crate) struct ProtobufExporter {
    buffers: Arc<Buffers>,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    endpoint: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    /// The encoded `Resource` message (set by the provider).
    resource: Vec<u8>,
    schema_url: String,
}

impl fmt::Debug for ProtobufExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtobufExporter")
            .field(
                "endpoint",
                &lb_core::url_without_credentials(self.endpoint.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl ProtobufExporter {
    /// An exporter posting to `endpoint` (the full `.../v1/traces` URL)
    /// with `headers`, each request bounded by `timeout`.
    pub(crate) fn new(
        endpoint: String,
        headers: &[(String, String)],
        timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
        let endpoint = reqwest::Url::parse(&endpoint)
            .map_err(|e| format!("the OTLP endpoint {endpoint:?} is not a URL: {e}"))?;
        let mut map = HeaderMap::new();
        map.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("otel header name {k:?} is not a valid HTTP header name"))?;
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| format!("otel header {k:?} has a value that is not valid in HTTP"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        // No redirects: a collector's API-key header must not follow one
        // to another host.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
        let mut exporter = Self {
            buffers: Arc::default(),
            client,
            runtime,
            endpoint,
            headers: map,
            resource: Vec::new(),
            schema_url: String::new(),
        };
        exporter.set_resource(&Resource::builder_empty().build());
        Ok(exporter)
    }
}

impl SpanExporter for ProtobufExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = self
            .buffers
            .bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        {
            let mut scope = self
                .buffers
                .scope
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            encode_into(
                &mut out,
                &mut scope,
                &batch,
                &self.resource,
                &self.schema_url,
            );
            if scope.capacity() > KEPT_BODY_BYTES {
                *scope = Vec::new();
            }
        }
        drop(batch);
        let body = Bytes::from_owner(PooledBody {
            buf: out,
            buffers: Arc::clone(&self.buffers),
        });
        let request = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(body);
        // On the router's runtime, also when the SDK calls from a thread of
        // its own.
        let task = self.runtime.spawn(async move {
            let resp = request.send().await.map_err(|e| e.without_url())?;
            let status = resp.status();
            // Nothing in the reply is needed; a runaway one is not waited for.
            let _ = lb_providers::read_up_to(resp, crate::telemetry::MAX_COLLECTOR_REPLY).await;
            Ok::<_, reqwest::Error>(status)
        });
        match task.await {
            Ok(Ok(status)) if status.is_success() => Ok(()),
            Ok(Ok(status)) => Err(OTelSdkError::InternalFailure(format!(
                "the OTLP collector answered {status}"
            ))),
            Ok(Err(e)) => Err(OTelSdkError::InternalFailure(format!(
                "OTLP export failed: {e}"
            ))),
            Err(e) => Err(OTelSdkError::InternalFailure(format!(
                "OTLP export task failed: {e}"
            ))),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        let mut buf = Vec::new();
        for (k, v) in resource.iter() {
            key_value(&mut buf, 1, k.as_str(), v);
        }
        self.resource = buf;
        self.schema_url = resource.schema_url().unwrap_or_default().to_owned();
    }
}

// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Span flags: the W3C flags plus "has is-remote" and "is remote".
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// `ExportTraceServiceRequest` for `spans`: one `ResourceSpans` with the
/// resource's encoded attributes, spans grouped by instrumentation scope
/// (as opentelemetry-proto groups them).
#[cfg(test)]
pub(crate) fn encode_request(spans: &[SpanData], resource: &[u8], schema_url: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, &mut Vec::new(), spans, resource, schema_url);
    out
}

/// [`encode_request`] into `out` (cleared first), with `first_scope` as the
/// first scope's span buffer (handed back, for the next batch).
fn encode_into(
    out: &mut Vec<u8>,
    first_scope: &mut Vec<u8>,
    spans: &[SpanData],
    resource: &[u8],
    schema_url: &str,
) {
    // Scopes in order of first appearance (a router has one).
    let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
    let mut scratch = Vec::with_capacity(1024);
    for s in spans {
        let at = match scopes
            .iter()
            .position(|(sc, _)| *sc == &s.instrumentation_scope)
        {
            Some(at) => at,
            None => {
                let mut buf = if scopes.is_empty() {
                    std::mem::take(first_scope)
                } else {
                    Vec::new()
                };
                buf.clear();
                let scope = &s.instrumentation_scope;
                scratch.clear();
                string(&mut scratch, 1, scope.name());
                string(&mut scratch, 2, scope.version().unwrap_or_default());
                for kv in scope.attributes() {
                    key_value(&mut scratch, 3, kv.key.as_str(), &kv.value);
                }
                message(&mut buf, 1, &scratch);
                scopes.push((scope, buf));
                scopes.len() - 1
            }
        };
        scratch.clear();
        span(&mut scratch, s);
        message(&mut scopes[at].1, 2, &scratch);
    }
    // One ResourceSpans { resource = 1, scope_spans = 2, schema_url = 3 }.
    let mut rs_len = field_len(1, resource.len());
    if !schema_url.is_empty() {
        rs_len += field_len(3, schema_url.len());
    }
    for (scope, buf) in &mut scopes {
        string(buf, 3, scope.schema_url().unwrap_or_default());
        rs_len += field_len(2, buf.len());
    }
    out.clear();
    out.reserve(rs_len + 8);
    key(out, 1, LEN);
    varint(out, rs_len as u64);
    message(out, 1, resource);
    for (_, buf) in &scopes {
        message(out, 2, buf);
    }
    string(out, 3, schema_url);
    if let Some((_, buf)) = scopes.into_iter().next() {
        *first_scope = buf;
    }
}

/// One `Span` message's fields.
fn span(buf: &mut Vec<u8>, s: &SpanData) {
    let cx = &s.span_context;
    bytes_field(buf, 1, &cx.trace_id().to_bytes());
    bytes_field(buf, 2, &cx.span_id().to_bytes());
    string(buf, 3, &cx.trace_state().header());
    if s.parent_span_id != SpanId::INVALID {
        bytes_field(buf, 4, &s.parent_span_id.to_bytes());
    }
    string(buf, 5, &s.name);
    let kind = match s.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    uint(buf, 6, kind);
    fixed64(buf, 7, nanos(s.start_time));
    fixed64(buf, 8, nanos(s.end_time));
    for kv in &s.attributes {
        key_value(buf, 9, kv.key.as_str(), &kv.value);
    }
    uint(buf, 10, u64::from(s.dropped_attributes_count));
    let mut scratch = Vec::new();
    for e in s.events.iter() {
        scratch.clear();
        fixed64(&mut scratch, 1, nanos(e.timestamp));
        string(&mut scratch, 2, &e.name);
        for kv in &e.attributes {
            key_value(&mut scratch, 3, kv.key.as_str(), &kv.value);
        }
        uint(&mut scratch, 4, u64::from(e.dropped_attributes_count));
        message(buf, 11, &scratch);
    }
    uint(buf, 12, u64::from(s.events.dropped_count));
    for l in s.links.iter() {
        let lcx = &l.span_context;
        scratch.clear();
        bytes_field(&mut scratch, 1, &lcx.trace_id().to_bytes());
        bytes_field(&mut scratch, 2, &lcx.span_id().to_bytes());
        string(&mut scratch, 3, &lcx.trace_state().header());
        for kv in &l.attributes {
            key_value(&mut scratch, 4, kv.key.as_str(), &kv.value);
        }
        uint(&mut scratch, 5, u64::from(l.dropped_attributes_count));
        fixed32(
            &mut scratch,
            6,
            flags(lcx.trace_flags().to_u8(), lcx.is_remote()),
        );
        message(buf, 13, &scratch);
    }
    uint(buf, 14, u64::from(s.links.dropped_count));
    // Status { message = 2, code = 3 }, always present.
    scratch.clear();
    match &s.status {
        Status::Unset => {}
        Status::Ok => uint(&mut scratch, 3, 1),
        Status::Error { description } => {
            string(&mut scratch, 2, description);
            uint(&mut scratch, 3, 2);
        }
    }
    message(buf, 15, &scratch);
    fixed32(
        buf,
        16,
        flags(cx.trace_flags().to_u8(), s.parent_span_is_remote),
    );
}

fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A `KeyValue { key = 1, value = 2 }` as field `field`.
fn key_value(buf: &mut Vec<u8>, field: u32, k: &str, v: &Value) {
    let value_len = any_value_len(v);
    // An empty key is a proto3 default: not written, not counted.
    let key_len = if k.is_empty() {
        0
    } else {
        field_len(1, k.len())
    };
    let len = key_len + field_len(2, value_len);
    key(buf, field, LEN);
    varint(buf, len as u64);
    string(buf, 1, k);
    key(buf, 2, LEN);
    varint(buf, value_len as u64);
    any_value(buf, v);
}

/// The encoded length of an `AnyValue` message's body.
fn any_value_len(v: &Value) -> usize {
    match v {
        Value::Bool(b) => 1 + varint_len(u64::from(*b)),
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::F64(_) => 1 + 8,
        Value::String(s) => field_len(1, s.as_str().len()),
        Value::Array(a) => field_len(5, array_len(a)),
        other => field_len(1, other.as_str().len()),
    }
}

/// The encoded length of an `ArrayValue { values = 1 }` body.
fn array_len(a: &Array) -> usize {
    match a {
        Array::Bool(v) => v
            .iter()
            .map(|b| field_len(1, 1 + varint_len(u64::from(*b))))
            .sum(),
        Array::I64(v) => v
            .iter()
            .map(|i| field_len(1, 1 + varint_len(*i as u64)))
            .sum(),
        Array::F64(v) => v.len() * field_len(1, 9),
        Array::String(v) => v
            .iter()
            .map(|s| field_len(1, field_len(1, s.as_str().len())))
            .sum(),
        other => field_len(1, field_len(1, other.to_string().len())),
    }
}

/// An `AnyValue` message's body: one field of its `oneof`, always written.
fn any_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => {
            key(buf, 2, VARINT);
            varint(buf, u64::from(*b));
        }
        Value::I64(i) => {
            key(buf, 3, VARINT);
            varint(buf, *i as u64);
        }
        Value::F64(f) => {
            key(buf, 4, FIXED64);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => string_always(buf, 1, s.as_str()),
        Value::Array(a) => {
            key(buf, 5, LEN);
            varint(buf, array_len(a) as u64);
            let item = |buf: &mut Vec<u8>, v: Value| {
                key(buf, 1, LEN);
                varint(buf, any_value_len(&v) as u64);
                any_value(buf, &v);
            };
            match a {
                Array::Bool(v) => v.iter().for_each(|b| item(buf, Value::Bool(*b))),
                Array::I64(v) => v.iter().for_each(|i| item(buf, Value::I64(*i))),
                Array::F64(v) => v.iter().for_each(|f| item(buf, Value::F64(*f))),
                Array::String(v) => v.iter().for_each(|s| item(buf, Value::String(s.clone()))),
                other => item(buf, Value::from(other.to_string())),
            }
        }
        other => string_always(buf, 1, other.as_str().as_ref()),
    }
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from(field << 3 | wire));
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The length of a length-delimited field (`field` < 16: a 1-byte key).
fn field_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field << 3)) + varint_len(len as u64) + len
}

/// A proto3 scalar: omitted when zero.
fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, VARINT);
        varint(buf, v);
    }
}

fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        key(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// A proto3 string: omitted when empty.
fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        string_always(buf, field, s);
    }
}

fn string_always(buf: &mut Vec<u8>, field: u32, s: &str) {
    key(buf, field, LEN);
    varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        key(buf, field, LEN);
        varint(buf, b.len() as u64);
        buf.extend_from_slice(b);
    }
}

/// A submessage, always written (present even when empty).
fn message(buf: &mut Vec<u8>, field: u32, body: &[u8]) {
    key(buf, field, LEN);
    varint(buf, body.len() as u64);
    buf.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;
    use std::borrow::Cow;
    use std::str::FromStr;

    fn every_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("s", "text"),
            KeyValue::new("empty", ""),
            KeyValue::new("t", true),
            KeyValue::new("f", false),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("neg", -5_i64),
            KeyValue::new("big", i64::MAX),
            KeyValue::new("pi", 3.25_f64),
            KeyValue::new("nan", 0.0_f64),
            KeyValue::new("long", "x".repeat(300)),
            KeyValue::new(
                "strings",
                Value::Array(vec![StringValue::from("a"), StringValue::from("")].into()),
            ),
            KeyValue::new("ints", Value::Array(vec![1_i64, -1, 1 << 40].into())),
            KeyValue::new("bools", Value::Array(vec![true, false].into())),
            KeyValue::new("floats", Value::Array(vec![0.5_f64, -2.0].into())),
            KeyValue::new("no_items", Value::Array(Vec::<i64>::new().into())),
            KeyValue::new("", "an empty key"),
        ]
    }

    fn span_data(scope: &InstrumentationScope, n: u64, status: Status, parent: bool) -> SpanData {
        let mut events = SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            "lb.cooldown",
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789 + n),
            every_value(),
            2,
        ));
        events.dropped_count = 1;
        let mut links = SpanLinks::default();
        links.links.push(opentelemetry::trace::Link::new(
            SpanContext::new(
                TraceId::from(0xabc_u128 + u128::from(n)),
                SpanId::from(0x11_u64),
                TraceFlags::SAMPLED,
                true,
                TraceState::from_str("k=v").unwrap_or_default(),
            ),
            vec![KeyValue::new("l", 1_i64)],
            0,
        ));
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10_u128 + u128::from(n)),
                SpanId::from(0x1112_1314_1516_1718_u64 + n),
                TraceFlags::SAMPLED,
                false,
                if n % 2 == 0 {
                    TraceState::from_str("vendor=abc,other=1").unwrap_or_default()
                } else {
                    TraceState::default()
                },
            ),
            parent_span_id: if parent {
                SpanId::from(0x99_u64)
            } else {
                SpanId::INVALID
            },
            parent_span_is_remote: parent && n % 2 == 1,
            span_kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal][n as usize % 3]
                .clone(),
            name: Cow::Owned(format!("chat model-{n}")),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + n),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_500_000_000 + n),
            attributes: every_value(),
            dropped_attributes_count: u32::try_from(n).unwrap_or(0),
            events,
            links,
            status,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Ours against opentelemetry-proto's conversion, decoded by prost.
    fn check(spans: Vec<SpanData>, resource: &Resource) {
        let mut exporter = ProtobufExporter {
            buffers: Arc::default(),
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .map(|rt| rt.handle().clone())
                .unwrap_or_else(|e| panic!("runtime: {e}")),
            endpoint: reqwest::Url::parse("http://localhost:4318/v1/traces")
                .unwrap_or_else(|e| panic!("{e}")),
            headers: reqwest::header::HeaderMap::new(),
            resource: Vec::new(),
            schema_url: String::new(),
        };
        exporter.set_resource(resource);
        let ours = encode_request(&spans, &exporter.resource, &exporter.schema_url);
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice())
            .unwrap_or_else(|e| panic!("our encoding does not decode: {e}"));
        let mut expected = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        };
        let mut decoded = decoded;
        for r in [&mut expected, &mut decoded] {
            for rs in &mut r.resource_spans {
                rs.scope_spans.sort_by(|a, b| {
                    let name = |x: &opentelemetry_proto::tonic::trace::v1::ScopeSpans| {
                        x.scope.as_ref().map(|s| s.name.clone())
                    };
                    name(a).cmp(&name(b))
                });
            }
        }
        assert_eq!(decoded, expected);
        // Byte for byte too (field order and proto3 defaults as prost writes them).
        assert_eq!(ours, expected.encode_to_vec());
    }

    #[test]
    fn encodes_what_opentelemetry_proto_encodes() {
        let scope = InstrumentationScope::builder("lb-router")
            .with_version("0.1.0")
            .build();
        let resource = Resource::builder_empty()
            .with_service_name("lb-router")
            .with_attribute(KeyValue::new("deployment.environment", "test"))
            .build();
        let spans = vec![
            span_data(&scope, 0, Status::Unset, false),
            span_data(
                &scope,
                1,
                Status::error("context_window (status 400)"),
                true,
            ),
            span_data(&scope, 2, Status::Ok, true),
        ];
        check(spans, &resource);
    }

    #[test]
    fn groups_spans_by_scope_and_keeps_schema_urls() {
        let a = InstrumentationScope::builder("a")
            .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
            .with_attributes([KeyValue::new("scope.attr", 7_i64)])
            .build();
        let b = InstrumentationScope::builder("b").build();
        let resource = Resource::builder_empty()
            .with_schema_url(
                [KeyValue::new("service.name", "x")],
                "https://opentelemetry.io/schemas/1.21.0",
            )
            .build();
        let spans = vec![
            span_data(&a, 3, Status::Unset, true),
            span_data(&b, 4, Status::Unset, false),
            span_data(&a, 5, Status::Ok, false),
        ];
        check(spans, &resource);
    }

    #[test]
    fn an_empty_batch_is_an_empty_request() {
        check(Vec::new(), &Resource::builder_empty().build());
    }

    #[test]
    fn varint_lengths() {
        for v in [
            0_u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
            assert_eq!(prost::encoding::encoded_len_varint(v), varint_len(v), "{v}");
        }
    }
}
