//! OpenTelemetry traces through the gateway, exported over OTLP/HTTP to
//! lb-mock's collector on loopback: one span per client request, a child
//! per upstream attempt, the client's `traceparent` honoured and passed on.

use lb_e2e::Harness;
use lb_mock::{CollectedSpan, Fault, OtlpCollector, RetryAfter};
use serde_json::{Value, json};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Two deployments of `gpt-4o`, dep-0 always tried first, traces to `collector`.
async fn ordered_pair(collector: &OtlpCollector, otel: &str, params: &str) -> Harness {
    let endpoint = collector.endpoint();
    let params = params.to_owned();
    let otel = otel.to_owned();
    Harness::start_with(2, move |u| {
        let mut yaml = String::from("model_list:\n");
        for (i, url) in u.iter().enumerate() {
            yaml.push_str(&format!(
                "  - model_name: gpt-4o\n    litellm_params: {{model: {params}mock-{i}, api_base: \"{url}\", api_key: sk-secret-{i}, order: {}}}\n    model_info: {{id: dep-{i}}}\n",
                i + 1
            ));
        }
        yaml.push_str(&format!(
            "router_settings:\n  otel:\n    endpoint: {endpoint}\n{otel}"
        ));
        yaml
    })
    .await
}

async fn chat_with_traceparent(h: &Harness, traceparent: Option<&str>, body: &Value) -> Value {
    let mut req = h
        .http
        .post(format!("{}/v1/chat/completions", h.gateway.url()))
        .json(body);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn by_kind<'a>(spans: &'a [CollectedSpan], kind: &str) -> Vec<&'a CollectedSpan> {
    let mut v: Vec<&CollectedSpan> = spans.iter().filter(|s| s.kind == kind).collect();
    v.sort_by_key(|s| s.int_attr("lb.attempt"));
    v
}

/// The `traceparent` a mock deployment received on its `n`-th request.
fn traceparent_seen(h: &Harness, dep: usize, n: usize) -> String {
    h.dep(dep).recorded()[n]
        .header("traceparent")
        .unwrap_or_else(|| panic!("dep-{dep} request {n} had no traceparent"))
        .to_owned()
}

#[tokio::test]
async fn a_request_and_its_attempts_are_spans_in_the_clients_trace() {
    let collector = OtlpCollector::start().await.unwrap();
    let h = ordered_pair(&collector, "", "openai/").await;
    for d in h.mock.deployments() {
        d.record_requests(true);
    }
    h.dep(0)
        .fail_next(1, Fault::rate_limited(Some(RetryAfter::Seconds(30))));
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "a very private prompt"}], "max_tokens": 50});
    let resp = chat_with_traceparent(&h, Some(&tp), &body).await;
    h.router.flush_traces().await;

    let spans = collector.trace(TRACE);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = by_kind(&spans, "server");
    let attempts = by_kind(&spans, "client");
    assert_eq!((server.len(), attempts.len()), (1, 2), "{spans:#?}");
    let root = server[0];
    // The request span continues the client's trace, under its span.
    assert_eq!(root.parent_span_id, PARENT);
    assert_eq!(root.name, "chat gpt-4o");
    assert_eq!(root.service_name.as_deref(), Some("lb-router"));
    assert_eq!(root.str_attr("gen_ai.operation.name"), Some("chat"));
    assert_eq!(root.str_attr("gen_ai.request.model"), Some("gpt-4o"));
    assert_eq!(root.str_attr("lb.deployment.id"), Some("dep-1"));
    assert_eq!(root.str_attr("gen_ai.system"), Some("openai"));
    assert_eq!(root.int_attr("lb.attempts"), Some(2));
    assert_eq!(root.int_attr("lb.retries"), Some(1));
    assert_eq!(root.int_attr("lb.fallbacks"), Some(0));
    assert_eq!(
        root.int_attr("gen_ai.usage.input_tokens"),
        resp["usage"]["prompt_tokens"].as_i64()
    );
    assert_eq!(
        root.int_attr("gen_ai.usage.output_tokens"),
        resp["usage"]["completion_tokens"].as_i64()
    );
    assert_eq!(root.status, "unset");

    // Attempt 1: dep-0, rate limited, and the cooldown it caused.
    let first = attempts[0];
    assert_eq!(first.parent_span_id, root.span_id);
    assert_eq!(first.name, "chat mock-0");
    assert_eq!(first.int_attr("lb.attempt"), Some(1));
    assert_eq!(first.str_attr("lb.deployment.id"), Some("dep-0"));
    assert_eq!(first.str_attr("gen_ai.request.model"), Some("mock-0"));
    assert_eq!(first.int_attr("gen_ai.request.max_tokens"), Some(50));
    assert_eq!(first.status, "error");
    assert_eq!(first.str_attr("error.type"), Some("RateLimitError"));
    assert_eq!(first.int_attr("http.response.status_code"), Some(429));
    let cooldowns: Vec<_> = first.events_named("lb.cooldown").collect();
    assert_eq!(cooldowns.len(), 1, "{first:#?}");
    assert_eq!(
        cooldowns[0]["lb.cooldown.reason"],
        "rate limited by the upstream"
    );
    let secs = cooldowns[0]["lb.cooldown.seconds"].as_f64().unwrap();
    assert!((29.0..=30.0).contains(&secs), "Retry-After 30 s: {secs}");

    // Attempt 2: dep-1 answered, with the GenAI attributes of its answer.
    let second = attempts[1];
    assert_eq!(second.parent_span_id, root.span_id);
    assert_eq!(second.int_attr("lb.attempt"), Some(2));
    assert_eq!(second.str_attr("lb.deployment.id"), Some("dep-1"));
    assert_eq!(second.str_attr("lb.model_group"), Some("gpt-4o"));
    assert_eq!(second.str_attr("gen_ai.system"), Some("openai"));
    assert_eq!(second.str_attr("gen_ai.request.model"), Some("mock-1"));
    assert_eq!(
        second.str_attr("gen_ai.response.model"),
        resp["model"].as_str()
    );
    assert_eq!(second.str_attr("gen_ai.response.id"), resp["id"].as_str());
    assert_eq!(
        second.attr("gen_ai.response.finish_reasons"),
        Some(&json!(["stop"]))
    );
    assert_eq!(
        second.int_attr("gen_ai.usage.output_tokens"),
        resp["usage"]["completion_tokens"].as_i64()
    );
    assert_eq!(second.status, "unset");

    // Each upstream saw the trace, with its own attempt's span as parent.
    assert_eq!(
        traceparent_seen(&h, 0, 0),
        format!("00-{TRACE}-{}-01", first.span_id)
    );
    assert_eq!(
        traceparent_seen(&h, 1, 0),
        format!("00-{TRACE}-{}-01", second.span_id)
    );
    // No prompt or answer text, and no key, anywhere in the spans.
    let all = format!("{spans:?}");
    assert!(!all.contains("very private prompt"), "{all}");
    let answer = resp["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!all.contains(answer), "{all}");
    assert!(!all.contains("sk-secret"), "{all}");
}

#[tokio::test]
async fn fallbacks_and_skipped_deployments_are_events_on_the_request_span() {
    let collector = OtlpCollector::start().await.unwrap();
    let endpoint = collector.endpoint();
    let h = Harness::start_with(3, move |u| {
        format!(
            "model_list:\n{}{}{}router_settings:\n  num_retries: 1\n  fallbacks: [{{primary: [backup]}}]\n  otel: {{endpoint: \"{endpoint}\"}}\n",
            lb_e2e::entry("primary", "p-0", &u[0], ""),
            lb_e2e::entry("primary", "p-1", &u[1], ""),
            lb_e2e::entry("backup", "b-0", &u[2], ""),
        )
    })
    .await;
    // Both primaries are rate limited: each cools down, the group gives up,
    // and the backup answers.
    for i in 0..2 {
        h.dep(i)
            .fail_next(1, Fault::rate_limited(Some(RetryAfter::Seconds(60))));
    }
    let first = format!("00-{TRACE}-{PARENT}-01");
    chat_with_traceparent(&h, Some(&first), &Harness::chat("primary")).await;
    // A second call finds both primaries cooling down.
    let second_trace = "0af7651916cd43dd8448eb211c80319c";
    let second = format!("00-{second_trace}-{PARENT}-01");
    chat_with_traceparent(&h, Some(&second), &Harness::chat("primary")).await;
    h.router.flush_traces().await;

    let spans = collector.trace(TRACE);
    let root = by_kind(&spans, "server")[0];
    let attempts = by_kind(&spans, "client");
    let ids: Vec<_> = attempts
        .iter()
        .map(|s| s.str_attr("lb.deployment.id").unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "two primaries, then the backup: {ids:?}");
    let mut primaries = ids[..2].to_vec();
    primaries.sort_unstable();
    assert_eq!((primaries, ids[2]), (vec!["p-0", "p-1"], "b-0"));
    assert!(
        attempts[..2]
            .iter()
            .all(|s| s.status == "error" && s.events_named("lb.cooldown").count() == 1)
    );
    let fallbacks: Vec<_> = root.events_named("lb.fallback").collect();
    assert_eq!(fallbacks.len(), 1, "{root:#?}");
    assert_eq!(fallbacks[0]["lb.fallback.from"], "primary");
    assert_eq!(fallbacks[0]["lb.fallback.to"], "backup");
    assert_eq!(fallbacks[0]["error.type"], "RateLimitError");
    assert_eq!(root.int_attr("lb.fallbacks"), Some(1));
    assert_eq!(root.str_attr("lb.model_group"), Some("backup"));

    let spans = collector.trace(second_trace);
    let root = by_kind(&spans, "server")[0];
    let mut skipped: Vec<String> = root
        .events_named("lb.deployment_skipped")
        .map(|e| {
            assert_eq!(e["lb.reason"], "cooling_down");
            e["lb.deployment.id"].as_str().unwrap().to_owned()
        })
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["p-0", "p-1"], "{root:#?}");
    let attempts = by_kind(&spans, "client");
    assert_eq!(attempts.len(), 1, "only the backup was called: {spans:#?}");
    assert_eq!(attempts[0].str_attr("lb.deployment.id"), Some("b-0"));
}

#[tokio::test]
async fn a_streamed_request_span_ends_with_the_stream_and_records_its_continuation() {
    let collector = OtlpCollector::start().await.unwrap();
    let h = ordered_pair(&collector, "", "openai_like/").await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| b.completion_tokens = 60);
    }
    h.dep(0).fail_next(1, Fault::CutStreamAfter(40));
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "tell me a story"}],
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let resp = h
        .http
        .post(format!("{}/v1/chat/completions", h.gateway.url()))
        .header("traceparent", &tp)
        .json(&body)
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let usage: Value = text
        .split("\n\n")
        .filter_map(|e| serde_json::from_str::<Value>(e.trim_start_matches("data: ")).ok())
        .find_map(|c| c.get("usage").filter(|u| !u.is_null()).cloned())
        .unwrap();
    h.router.flush_traces().await;

    let spans = collector.trace(TRACE);
    let root = by_kind(&spans, "server")[0];
    assert_eq!(root.attr("lb.stream"), Some(&json!(true)));
    assert_eq!(root.int_attr("lb.stream_continuations"), Some(1));
    assert_eq!(root.str_attr("lb.deployment.id"), Some("dep-0"));
    assert_eq!(root.str_attr("lb.continued_by"), Some("dep-1"));
    let cont: Vec<_> = root.events_named("lb.stream_continuation").collect();
    assert_eq!(cont.len(), 1, "{root:#?}");
    assert_eq!(cont[0]["lb.failed_deployment"], "dep-0");
    assert_eq!(cont[0]["lb.continued_by"], "dep-1");
    // The span's usage is the combined usage the client was told.
    assert_eq!(
        root.int_attr("gen_ai.usage.output_tokens"),
        usage["completion_tokens"].as_i64()
    );
    assert_eq!(
        root.int_attr("gen_ai.usage.input_tokens"),
        usage["prompt_tokens"].as_i64()
    );
    assert_eq!(
        root.attr("gen_ai.response.finish_reasons"),
        Some(&json!(["stop"]))
    );
    assert_eq!(root.str_attr("gen_ai.response.model"), Some("mock-0"));
    let attempts = by_kind(&spans, "client");
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert_eq!(
        attempts[0].str_attr("gen_ai.response.model"),
        Some("mock-0")
    );
    let (cut, rest) = (attempts[0], attempts[1]);
    assert_eq!(cut.str_attr("lb.deployment.id"), Some("dep-0"));
    assert_eq!(cut.status, "error");
    assert_eq!(rest.str_attr("lb.deployment.id"), Some("dep-1"));
    assert_eq!(rest.attr("lb.continuation"), Some(&json!(true)));
    assert!(rest.int_attr("gen_ai.usage.output_tokens").unwrap() > 0);
    // The request span lasts until the stream's end, past both attempts.
    for a in &attempts {
        assert_eq!(a.parent_span_id, root.span_id);
        assert!(root.start_end_ns.1 >= a.start_end_ns.1, "{root:#?}\n{a:#?}");
    }
}

#[tokio::test]
async fn message_content_is_recorded_only_when_opted_in() {
    let collector = OtlpCollector::start().await.unwrap();
    let h = ordered_pair(
        &collector,
        "    protocol: http/json\n    capture_message_content: true\n    service_name: my-gateway\n",
        "openai/",
    )
    .await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "a very private prompt"}]});
    let resp = chat_with_traceparent(&h, Some(&format!("00-{TRACE}-{PARENT}-01")), &body).await;
    h.router.flush_traces().await;
    let spans = collector.trace(TRACE);
    let root = by_kind(&spans, "server")[0];
    assert_eq!(root.service_name.as_deref(), Some("my-gateway"));
    let input = root.str_attr("gen_ai.input.messages").unwrap();
    assert!(input.contains("a very private prompt"), "{input}");
    let answer = resp["choices"][0]["message"]["content"].as_str().unwrap();
    let output = root.str_attr("gen_ai.output.messages").unwrap();
    assert!(output.contains(answer), "{output}");
    let (protobuf, json_requests) = collector.requests_by_encoding();
    assert!(
        protobuf == 0 && json_requests > 0,
        "http/json: {protobuf} {json_requests}"
    );
}

#[tokio::test]
async fn captured_stream_text_is_whole_when_no_continuation_needs_it() {
    // Continuations off and no deployment able to continue: the stream keeps
    // its text for the opted-in capture alone.
    let collector = OtlpCollector::start().await.unwrap();
    let h = ordered_pair(
        &collector,
        "    capture_message_content: true\n  max_stream_continuations: 0\n",
        "openai/",
    )
    .await;
    h.dep(0).update_behavior(|b| b.completion_tokens = 50);
    let body = json!({"model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": "tell me a story"}]});
    let resp = h
        .http
        .post(format!("{}/v1/chat/completions", h.gateway.url()))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text: String = resp
        .text()
        .await
        .unwrap()
        .split("\n\n")
        .filter_map(|e| serde_json::from_str::<Value>(e.trim_start_matches("data: ")).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, lb_mock::canonical_text(50));
    h.router.flush_traces().await;
    let spans = collector.trace(TRACE);
    let root = by_kind(&spans, "server")[0];
    let output: Value =
        serde_json::from_str(root.str_attr("gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(output, json!([{"role": "assistant", "content": text}]));
}

#[tokio::test]
async fn a_collector_reply_that_never_ends_is_not_read_past_64_kib() {
    for protocol in ["http/protobuf", "http/json"] {
        let collector = OtlpCollector::start().await.unwrap();
        collector.reply_without_end(true);
        let h = ordered_pair(
            &collector,
            &format!("    protocol: {protocol}\n    export_timeout: 600\n"),
            "openai/",
        )
        .await;
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        chat_with_traceparent(&h, None, &body).await;
        // A liveness bound only: the export must end by itself, not at its
        // 600 s timeout.
        tokio::time::timeout(std::time::Duration::from_secs(60), h.router.flush_traces())
            .await
            .unwrap_or_else(|_| panic!("{protocol}: the export kept reading the reply"));
        assert_eq!(collector.span_count(), 2, "{protocol}: the spans arrived");
        // The exporter stops at 64 KiB; what else left the collector sits in
        // socket buffers (a few MiB on loopback at most).
        let read = collector.runaway_bytes();
        assert!(read < 32 << 20, "{protocol}: {read} bytes of reply");
    }
}

#[tokio::test]
async fn traces_are_off_unless_configured_and_standard_variables_turn_them_on() {
    // Not configured: no tracer, and nothing sent upstream.
    let h = Harness::start(1, "").await;
    h.dep(0).record_requests(true);
    assert!(!h.router.tracing_enabled());
    chat_with_traceparent(
        &h,
        Some(&format!("00-{TRACE}-{PARENT}-01")),
        &Harness::chat("gpt-4o"),
    )
    .await;
    assert_eq!(h.dep(0).recorded()[0].header("traceparent"), None);

    // OTEL_EXPORTER_OTLP_ENDPOINT (here from the config's
    // environment_variables, read like the process environment) turns them on.
    let collector = OtlpCollector::start().await.unwrap();
    let endpoint = collector.endpoint();
    let h = Harness::start_with(1, move |u| {
        format!(
            "{}environment_variables:\n  OTEL_EXPORTER_OTLP_ENDPOINT: \"{endpoint}\"\n  OTEL_SERVICE_NAME: from-env\n",
            lb_e2e::model_list("gpt-4o", u, "")
        )
    })
    .await;
    h.dep(0).record_requests(true);
    assert!(h.router.tracing_enabled());
    chat_with_traceparent(&h, None, &Harness::chat("gpt-4o")).await;
    // A client that sampled its trace out: nothing exported, the decision passed on.
    let unsampled = "11111111111111111111111111111111";
    chat_with_traceparent(
        &h,
        Some(&format!("00-{unsampled}-{PARENT}-00")),
        &Harness::chat("gpt-4o"),
    )
    .await;
    h.router.flush_traces().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "one request, one attempt: {spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| s.service_name.as_deref() == Some("from-env"))
    );
    let root = by_kind(&spans, "server")[0];
    assert_eq!(root.parent_span_id, "", "no traceparent: a new trace");
    let seen = h.dep(0).recorded();
    let tp = seen[1].header("traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{unsampled}-")) && tp.ends_with("-00"),
        "{tp}"
    );
}

#[tokio::test]
async fn sample_ratio_drops_new_traces_up_front_and_follows_a_sampled_client() {
    // sample_ratio 0: the router's own decision drops every new trace
    // before the SDK builds a span, but a client's sampled trace is followed.
    let collector = OtlpCollector::start().await.unwrap();
    let h = ordered_pair(&collector, "    sample_ratio: 0.0\n", "openai/").await;
    h.dep(0).record_requests(true);
    let body = Harness::chat("gpt-4o");
    chat_with_traceparent(&h, None, &body).await;
    let unsampled = "22222222222222222222222222222222";
    chat_with_traceparent(&h, Some(&format!("00-{unsampled}-{PARENT}-00")), &body).await;
    chat_with_traceparent(&h, Some(&format!("00-{TRACE}-{PARENT}-01")), &body).await;
    h.router.flush_traces().await;

    // Only the client's sampled trace was exported: its request and attempt.
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == TRACE), "{spans:#?}");
    let root = by_kind(&spans, "server")[0];
    assert_eq!(root.parent_span_id, PARENT);
    let attempt = by_kind(&spans, "client")[0];
    assert_eq!(
        traceparent_seen(&h, 0, 2),
        format!("00-{TRACE}-{}-01", attempt.span_id)
    );

    // Dropped traces still travel upstream, unsampled, each with a span id
    // of its own (not the client's).
    let fresh = traceparent_seen(&h, 0, 0);
    let parts: Vec<&str> = fresh.split('-').collect();
    assert_eq!(parts.len(), 4, "{fresh}");
    assert_eq!((parts[0], parts[3]), ("00", "00"), "{fresh}");
    assert!(
        parts[1].len() == 32 && parts[1] != "0".repeat(32),
        "{fresh}"
    );
    assert!(
        parts[2].len() == 16 && parts[2] != "0".repeat(16),
        "{fresh}"
    );
    let followed = traceparent_seen(&h, 0, 1);
    assert!(
        followed.starts_with(&format!("00-{unsampled}-")) && followed.ends_with("-00"),
        "{followed}"
    );
    assert!(
        !followed.contains(PARENT),
        "a span id of the router's own: {followed}"
    );
}

#[tokio::test]
async fn a_long_requested_model_is_recorded_cut_to_256_bytes() {
    let collector = OtlpCollector::start().await.unwrap();
    let h = ordered_pair(&collector, "", "openai/").await;
    let model = "é".repeat(5000);
    let resp = h
        .http
        .post(format!("{}/v1/chat/completions", h.gateway.url()))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "an unknown model");
    h.router.flush_traces().await;
    let spans = collector.trace(TRACE);
    let root = by_kind(&spans, "server")[0];
    let recorded = root.str_attr("gen_ai.request.model").unwrap();
    assert_eq!(recorded, "é".repeat(128));
    assert_eq!(root.name, format!("chat {}", "é".repeat(128)));
}
