//! A fake OpenTelemetry collector: OTLP/HTTP trace export on loopback.
//!
//! Accepts `POST /v1/traces` in both OTLP/HTTP encodings (protobuf, the
//! default, and JSON), decodes every span and keeps it for assertions.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header::CONTENT_TYPE};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One span as the collector received it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedSpan {
    /// The trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The span id, 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id, 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// The span's attributes, as JSON values (arrays for array attributes).
    pub attributes: BTreeMap<String, Value>,
    /// Its events: name and attributes.
    pub events: Vec<(String, BTreeMap<String, Value>)>,
    /// `ok`, `error` or `unset`.
    pub status: &'static str,
    /// The status message (for an error).
    pub status_message: String,
    /// The exporting resource's `service.name`.
    pub service_name: Option<String>,
    /// Start and end, in nanoseconds since the Unix epoch.
    pub start_end_ns: (u64, u64),
}

impl CollectedSpan {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    /// A string attribute's value.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    /// An integer attribute's value.
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(Value::as_i64)
    }

    /// The events named `name`.
    pub fn events_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a BTreeMap<String, Value>> + 'a {
        self.events
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, a)| a)
    }
}

#[derive(Default)]
struct Collected {
    /// Keep decoded spans (else count them only).
    keep: bool,
    spans: Mutex<Vec<CollectedSpan>>,
    span_count: AtomicU64,
    requests: AtomicU64,
    protobuf: AtomicU64,
    json: AtomicU64,
    /// Answer every export with an endless body (after taking its spans).
    runaway: std::sync::atomic::AtomicBool,
    /// Bytes of endless reply handed to the connection so far.
    runaway_bytes: AtomicU64,
}

/// An OTLP/HTTP trace collector on a loopback port.
pub struct OtlpCollector {
    addr: SocketAddr,
    collected: Arc<Collected>,
    task: JoinHandle<()>,
}

impl fmt::Debug for OtlpCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpCollector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpCollector {
    /// Binds `127.0.0.1:0` and serves on a task of the current runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (like `tokio::spawn`).
    pub async fn start() -> std::io::Result<OtlpCollector> {
        Self::start_opts(true).await
    }

    /// Like [`start`](Self::start), but decodes and counts spans without
    /// keeping them (for load tests that export millions).
    pub async fn start_counting() -> std::io::Result<OtlpCollector> {
        Self::start_opts(false).await
    }

    async fn start_opts(keep: bool) -> std::io::Result<OtlpCollector> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let collected = Arc::new(Collected {
            keep,
            ..Collected::default()
        });
        let app = axum::Router::new()
            .route("/v1/traces", post(export))
            .with_state(Arc::clone(&collected));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpCollector {
            addr,
            collected,
            task,
        })
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it (`/v1/traces` is appended).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.collected
            .spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans of one trace (32 hex digits), in arrival order.
    pub fn trace(&self, trace_id: &str) -> Vec<CollectedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Export requests received (protobuf, JSON).
    pub fn requests_by_encoding(&self) -> (u64, u64) {
        (
            self.collected.protobuf.load(Relaxed),
            self.collected.json.load(Relaxed),
        )
    }

    /// Spans received (kept or not).
    pub fn span_count(&self) -> u64 {
        self.collected.span_count.load(Relaxed)
    }

    /// Export requests received.
    pub fn requests(&self) -> u64 {
        self.collected.requests.load(Relaxed)
    }

    /// From now on, answers each export `200` with a body that never ends
    /// (spans are still taken): an exporter must stop reading on its own.
    pub fn reply_without_end(&self, on: bool) {
        self.collected.runaway.store(on, Relaxed);
    }

    /// Bytes of never-ending replies the exporters read so far (up to the
    /// socket buffers' worth more).
    pub fn runaway_bytes(&self) -> u64 {
        self.collected.runaway_bytes.load(Relaxed)
    }
}

async fn export(
    State(c): State<Arc<Collected>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let answer = take(State(Arc::clone(&c)), headers, body).await;
    if !c.runaway.load(Relaxed) {
        return answer.into_response();
    }
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let endless = futures_util::stream::repeat_with(move || {
        c.runaway_bytes.fetch_add(chunk.len() as u64, Relaxed);
        Ok::<_, std::convert::Infallible>(chunk.clone())
    });
    (StatusCode::OK, axum::body::Body::from_stream(endless)).into_response()
}

/// Takes one export request's spans; the answer the collector gives.
async fn take(
    State(c): State<Arc<Collected>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    c.requests.fetch_add(1, Relaxed);
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !c.keep && !json {
        // Counting only: walk the message down to its spans and skip their
        // contents, so a load test's collector costs little CPU.
        return match skeleton::Export::decode(body) {
            Ok(req) => {
                c.protobuf.fetch_add(1, Relaxed);
                count_spans(
                    &c,
                    req.resource_spans
                        .iter()
                        .flat_map(|rs| &rs.scope_spans)
                        .map(|ss| ss.spans.len()),
                );
                (StatusCode::OK, protobuf_headers(), Vec::new())
            }
            Err(e) => (
                StatusCode::BAD_REQUEST,
                HeaderMap::new(),
                e.to_string().into_bytes(),
            ),
        };
    }
    let decoded = if json {
        c.json.fetch_add(1, Relaxed);
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).map_err(|e| e.to_string())
    } else {
        c.protobuf.fetch_add(1, Relaxed);
        ExportTraceServiceRequest::decode(body.as_ref()).map_err(|e| e.to_string())
    };
    let req = match decoded {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, HeaderMap::new(), e.into_bytes()),
    };
    count_spans(
        &c,
        req.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len()),
    );
    let mut out = Vec::new();
    for rs in req.resource_spans.into_iter().filter(|_| c.keep) {
        let service_name = rs.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
        });
        for ss in rs.scope_spans {
            for s in ss.spans {
                let kind = match s.kind {
                    1 => "internal",
                    2 => "server",
                    3 => "client",
                    4 => "producer",
                    5 => "consumer",
                    _ => "unspecified",
                };
                let (status, status_message) = match &s.status {
                    Some(st) if st.code == 1 => ("ok", st.message.clone()),
                    Some(st) if st.code == 2 => ("error", st.message.clone()),
                    _ => ("unset", String::new()),
                };
                out.push(CollectedSpan {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind,
                    attributes: attributes(&s.attributes),
                    events: s
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), attributes(&e.attributes)))
                        .collect(),
                    status,
                    status_message,
                    service_name: service_name.clone(),
                    start_end_ns: (s.start_time_unix_nano, s.end_time_unix_nano),
                });
            }
        }
    }
    c.spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(out);
    // An empty ExportTraceServiceResponse, in the request's encoding.
    if json {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        (StatusCode::OK, h, b"{}".to_vec())
    } else {
        (StatusCode::OK, protobuf_headers(), Vec::new())
    }
}

/// Adds the spans of one request (a count per scope) to the total.
fn count_spans(c: &Collected, per_scope: impl Iterator<Item = usize>) {
    let count: usize = per_scope.sum();
    c.span_count
        .fetch_add(u64::try_from(count).unwrap_or(u64::MAX), Relaxed);
}

fn protobuf_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    h
}

/// The OTLP export request down to its spans, whose fields are skipped.
mod skeleton {
    /// `ExportTraceServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Export {
        #[prost(message, repeated, tag = "1")]
        pub(super) resource_spans: Vec<ResourceSpans>,
    }

    /// `ResourceSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ResourceSpans {
        #[prost(message, repeated, tag = "2")]
        pub(super) scope_spans: Vec<ScopeSpans>,
    }

    /// `ScopeSpans`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ScopeSpans {
        /// Each span's bytes, not decoded (slices of the request body).
        #[prost(bytes = "bytes", repeated, tag = "2")]
        pub(super) spans: Vec<bytes::Bytes>,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
        .collect()
}

fn json(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(f)) => Value::from(*f),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::from(hex(b)),
        None => Value::Null,
    }
}
