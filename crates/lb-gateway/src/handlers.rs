//! Request handlers and the OpenAI error shape.

use std::any::Any;
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lb_router::{
    ChatCompletionRequest, EmbeddingRequest, ResponseMeta, RouterError, prefix_within,
};
use serde_json::json;

use crate::AppState;

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
pub(crate) fn error_response(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
    retry_after_secs: Option<u64>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = code.map_or_else(|| status.as_u16().to_string(), str::to_owned);
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub(crate) fn router_error_response(err: &RouterError) -> Response {
    let retry_after = err
        .retry_after()
        .map(|d| d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)));
    let mut resp = error_response(
        err.status(),
        &err.to_string(),
        err.error_type(),
        err.param(),
        err.code(),
        retry_after,
    );
    if !err.attempts().is_empty() {
        let h = resp.headers_mut();
        let attempts = u32::try_from(err.attempts().len()).unwrap_or(u32::MAX);
        h.insert(
            HeaderName::from_static("x-litellm-attempted-retries"),
            HeaderValue::from(attempts.saturating_sub(1)),
        );
        h.insert(
            HeaderName::from_static("x-litellm-attempted-fallbacks"),
            HeaderValue::from(u32::try_from(err.fallbacks().len()).unwrap_or(u32::MAX)),
        );
    }
    resp
}

fn bad_json(e: &serde_json::Error) -> Response {
    error_response(
        400,
        &format!("request body is not valid: {e}"),
        "invalid_request_error",
        None,
        None,
        None,
    )
}

fn body_rejection(r: &BytesRejection) -> Response {
    error_response(
        r.status().as_u16(),
        &r.body_text(),
        "invalid_request_error",
        None,
        None,
        None,
    )
}

/// A request id: the client's `x-request-id` when sane, else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

fn meta_headers(headers: &mut HeaderMap, meta: &ResponseMeta, request_id: &str, start: Instant) {
    // LiteLLM's timing headers: the whole response, and the part that was
    // the gateway's own (not spent waiting on upstreams).
    let total = start.elapsed();
    let ms = |d: std::time::Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    set(headers, "x-litellm-response-duration-ms", &ms(total));
    set(
        headers,
        "x-litellm-overhead-duration-ms",
        &ms(total.saturating_sub(meta.upstream_latency)),
    );
    set(headers, "x-litellm-model-id", meta.deployment_id.as_str());
    set(headers, "x-litellm-model-api-base", &meta.api_base);
    set(headers, "x-litellm-model-group", &meta.model_group);
    headers.insert(
        HeaderName::from_static("x-litellm-attempted-retries"),
        HeaderValue::from(meta.retries()),
    );
    headers.insert(
        HeaderName::from_static("x-litellm-max-retries"),
        HeaderValue::from(meta.max_retries),
    );
    headers.insert(
        HeaderName::from_static("x-litellm-attempted-fallbacks"),
        HeaderValue::from(meta.fallbacks),
    );
    set(headers, "x-litellm-call-id", request_id);
    if let Some(cost) = meta.cost {
        set(headers, "x-litellm-response-cost", &format!("{cost}"));
    }
    if let Some(r) = &meta.rate_limits {
        for (name, value) in [
            ("x-ratelimit-limit-requests", r.limit_requests),
            ("x-ratelimit-remaining-requests", r.remaining_requests),
            ("x-ratelimit-limit-tokens", r.limit_tokens),
            ("x-ratelimit-remaining-tokens", r.remaining_tokens),
        ] {
            if let Some(v) = value {
                headers.insert(HeaderName::from_static(name), HeaderValue::from(v));
            }
        }
    }
}

fn log_done(
    request_id: &str,
    model: &str,
    outcome: Result<(&ResponseMeta, Option<&lb_router::Usage>), &RouterError>,
    start: Instant,
    stream: bool,
) {
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    // A client's model name, cut; as a `str` field, log formats escape it.
    let model = prefix_within(model, 256);
    match outcome {
        Ok((meta, usage)) => tracing::info!(
            request_id,
            model,
            group = %meta.model_group,
            deployment = %meta.deployment_id,
            provider = %meta.provider,
            attempts = meta.attempts,
            retries = meta.retries,
            fallbacks = meta.fallbacks,
            status = 200,
            stream,
            latency_ms,
            upstream_ms = meta.upstream_latency.as_secs_f64() * 1000.0,
            cost = meta.cost.unwrap_or(0.0),
            input_tokens = usage.map(|u| u.prompt_tokens),
            output_tokens = usage.map(|u| u.completion_tokens),
            trace_id = meta.trace_id.as_deref(),
            "request served"
        ),
        Err(e) => tracing::info!(
            request_id,
            model,
            status = e.status(),
            stream,
            latency_ms,
            // Escaped as a `str` field: an upstream's message may hold newlines.
            error = e.to_string().as_str(),
            "request failed"
        ),
    }
}

#[allow(clippy::disallowed_methods)] // request latency for logs only; no policy reads it
fn started() -> Instant {
    Instant::now()
}

/// The request body as JSON, or the error response (413 for an oversized
/// body, 400 for bad JSON).
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Box<Response>> {
    let body = body.map_err(|r| Box::new(body_rejection(&r)))?;
    serde_json::from_slice(&body).map_err(|e| Box::new(bad_json(&e)))
}

/// Runs a router call in the trace the client's W3C `traceparent` (and
/// `tracestate`) names, so the request's span joins it; when traces are
/// off, just runs it.
async fn traced<F: std::future::Future>(
    state: &AppState,
    headers: &HeaderMap,
    call: F,
) -> F::Output {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::FutureExt;

    struct Headers<'a>(&'a HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }
    // Without a `traceparent` the request span is a root: nothing to attach.
    if !state.router.tracing_enabled() || !headers.contains_key("traceparent") {
        return call.await;
    }
    let parent =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    call.with_context(parent).await
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = started();
    let req: ChatCompletionRequest = match parse_body(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let id = request_id(&headers);
    let model = req.model.clone();
    if req.is_stream() {
        match traced(&state, &headers, state.router.completion_stream(req)).await {
            Ok(routed) => {
                log_done(&id, &model, Ok((&routed.meta, None)), start, true);
                let mut resp = Response::new(Body::from_stream(crate::sse::encode(routed.stream)));
                let h = resp.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                meta_headers(h, &routed.meta, &id, start);
                resp
            }
            Err(e) => {
                log_done(&id, &model, Err(&e), start, true);
                router_error_response(&e)
            }
        }
    } else {
        match traced(&state, &headers, state.router.completion(req)).await {
            Ok(routed) => {
                log_done(
                    &id,
                    &model,
                    Ok((&routed.meta, routed.response.usage.as_ref())),
                    start,
                    false,
                );
                let mut resp = Json(&routed.response).into_response();
                meta_headers(resp.headers_mut(), &routed.meta, &id, start);
                resp
            }
            Err(e) => {
                log_done(&id, &model, Err(&e), start, false);
                router_error_response(&e)
            }
        }
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = started();
    let req: EmbeddingRequest = match parse_body(body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let id = request_id(&headers);
    let model = req.model.clone();
    match traced(&state, &headers, state.router.embedding(req)).await {
        Ok(routed) => {
            log_done(
                &id,
                &model,
                Ok((&routed.meta, routed.response.usage.as_ref())),
                start,
                false,
            );
            let mut resp = Json(&routed.response).into_response();
            meta_headers(resp.headers_mut(), &routed.meta, &id, start);
            resp
        }
        Err(e) => {
            log_done(&id, &model, Err(&e), start, false);
            router_error_response(&e)
        }
    }
}

/// `GET /v1/models`: every group and visible alias.
pub(crate) async fn models(State(state): State<AppState>) -> Response {
    let data: Vec<_> = state
        .router
        .model_names()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "lb-router"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /health`: healthy and unhealthy deployments with the reason (LiteLLM's shape).
/// GET /metrics: Prometheus text exposition, without a key (LiteLLM's
/// default, `require_auth_for_metrics_endpoint: false`).
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.router.metrics_text().await,
    )
        .into_response()
}

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let mut healthy = Vec::new();
    let mut unhealthy = Vec::new();
    for d in state.router.health() {
        let mut item = json!({
            "model": d.model,
            "model_group": &*d.model_group,
            "model_id": d.id.as_str(),
            "api_base": d.api_base,
        });
        if d.healthy {
            healthy.push(item);
        } else {
            item["error"] = json!(d.reason);
            item["cooldown_remaining_s"] = json!(d.cooldown_remaining.map(|r| r.as_secs_f64()));
            unhealthy.push(item);
        }
    }
    Json(json!({
        "healthy_count": healthy.len(),
        "unhealthy_count": unhealthy.len(),
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
    }))
    .into_response()
}

/// `GET /provider/budgets`: budget, spend and reset time per provider (LiteLLM's shape).
pub(crate) async fn provider_budgets(State(state): State<AppState>) -> Response {
    let mut providers = serde_json::Map::new();
    for b in state.router.provider_budgets().await {
        let reset = b
            .reset_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        providers.insert(
            b.name.clone(),
            json!({
                "budget_limit": b.budget_limit,
                "time_period": b.window.to_string(),
                "spend": b.spend,
                "budget_reset_at": reset,
            }),
        );
    }
    Json(json!({"providers": providers})).into_response()
}

/// `GET /health/liveliness`: the process answers.
pub(crate) async fn liveliness() -> Response {
    Json("I'm alive!").into_response()
}

/// `GET /health/readiness`: cheap; reads no upstream.
pub(crate) async fn readiness(State(state): State<AppState>) -> Response {
    let deployments = state.router.deployments().count();
    Json(json!({"status": "healthy", "deployments": deployments})).into_response()
}

/// Any other path.
pub(crate) async fn not_found() -> Response {
    error_response(
        404,
        "no such route",
        "invalid_request_error",
        None,
        Some("not_found"),
        None,
    )
}

/// A known path with the wrong method.
pub(crate) async fn method_not_allowed() -> Response {
    error_response(
        405,
        "method not allowed on this route",
        "invalid_request_error",
        None,
        Some("method_not_allowed"),
        None,
    )
}

/// A handler panicked: the client gets a 500 JSON error, the gateway keeps serving.
pub(crate) fn panic_response(_err: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(500, "internal error", "api_error", None, None, None)
}
