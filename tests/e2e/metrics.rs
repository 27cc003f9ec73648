//! GET /metrics after scripted traffic: exact counter values and states,
//! read with a real Prometheus exposition parser.

use lb_e2e::{Harness, entry, histogram_count, metric as value};
use lb_mock::Fault;

#[tokio::test]
async fn scripted_traffic_gives_exact_counters_and_states() {
    let h = Harness::start_with(5, |u| {
        format!(
            "model_list:\n{}{}{}{}{}router_settings:\n  routing_seed: 1\n  fallbacks: [{{primary: [backup]}}]\n  provider_budget_config:\n    openai: {{budget_limit: 100, time_period: 1d}}\n",
            entry("gpt-4o", "dep-0", &u[0], "      weight: 1000\n"),
            entry(
                "gpt-4o",
                "dep-1",
                &u[1],
                "      weight: 1\n      input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000002\n"
            ),
            entry("primary", "p", &u[2], ""),
            entry("backup", "b", &u[3], ""),
            entry("limited", "l", &u[4], "      rpm: 1\n"),
        )
    })
    .await;
    // dep-0 is ranked first; its 429 cools it down and dep-1 answers.
    h.dep(0).fail_next(1, Fault::status(429));
    let mut prompt_tokens = 0;
    let mut completion_tokens = 0;
    for _ in 0..4 {
        let resp = h
            .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-litellm-model-id"], "dep-1");
        let body: serde_json::Value = resp.json().await.unwrap();
        let p = body["usage"]["prompt_tokens"].as_u64().unwrap();
        let c = body["usage"]["completion_tokens"].as_u64().unwrap();
        prompt_tokens += p;
        completion_tokens += c;
        assert!(p > 0 && c > 0, "the mock reports usage");
    }
    // primary always fails: one attempt and two retries, then the fallback.
    h.dep(2).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(503);
    });
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("primary"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-model-id"], "b");
    // rpm 1: the second call is refused by the router's own limit.
    for expected in [200, 429] {
        let resp = h
            .post("/v1/chat/completions", &Harness::chat("limited"))
            .await;
        assert_eq!(resp.status(), expected);
    }

    let s = h.scrape().await;
    let d0 = [("model_id", "dep-0")];
    let d1 = [("model_id", "dep-1")];
    assert_eq!(
        value(&s, "litellm_deployment_total_requests_total", &d0),
        1.0
    );
    assert_eq!(
        value(&s, "litellm_deployment_success_responses_total", &d0),
        0.0
    );
    assert_eq!(
        value(
            &s,
            "litellm_deployment_failure_responses_total",
            &[("model_id", "dep-0"), ("exception_class", "RateLimitError")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "litellm_deployment_cooled_down_total",
            &[("model_id", "dep-0"), ("reason", "rate_limited")]
        ),
        1.0
    );
    assert_eq!(
        value(&s, "litellm_deployment_state", &d0),
        2.0,
        "cooling down"
    );
    assert_eq!(value(&s, "litellm_deployment_state", &d1), 0.0, "healthy");
    assert_eq!(
        value(&s, "litellm_deployment_total_requests_total", &d1),
        4.0
    );
    assert_eq!(
        value(&s, "litellm_deployment_success_responses_total", &d1),
        4.0
    );
    assert_eq!(
        value(&s, "litellm_input_tokens_metric_total", &d1),
        prompt_tokens as f64
    );
    assert_eq!(
        value(&s, "litellm_output_tokens_metric_total", &d1),
        completion_tokens as f64
    );
    assert_eq!(
        histogram_count(&s, "litellm_llm_api_latency_metric", &d1),
        4
    );
    // $1 and $2 per million tokens: spend in millionths of a dollar.
    let micro = prompt_tokens + 2 * completion_tokens;
    assert_eq!(value(&s, "lb_spend_microdollars_total", &d1), micro as f64);
    let spend = value(&s, "lb_provider_spend_usd", &[("api_provider", "openai")]);
    // The unpriced answers (b, and l's one call) keep the budget's
    // 1 µ$ minimum reservation each.
    let budget_micro = micro + 2;
    assert!(
        (spend - budget_micro as f64 / 1e6).abs() < 1e-9,
        "{spend} {budget_micro}"
    );
    let remaining = value(
        &s,
        "litellm_provider_remaining_budget_metric",
        &[("api_provider", "openai")],
    );
    assert!((remaining - (100.0 - spend)).abs() < 1e-9, "{remaining}");
    assert_eq!(
        value(&s, "lb_retries_total", &[("requested_model", "gpt-4o")]),
        1.0,
        "the first call went on to dep-1"
    );
    assert_eq!(
        value(&s, "lb_retries_total", &[("requested_model", "primary")]),
        3.0,
        "two retries on p, then the fallback's attempt"
    );
    assert_eq!(value(&s, "lb_limit_store_fail_open_total", &[]), 0.0);
    assert_eq!(value(&s, "lb_deployment_in_flight_requests", &d1), 0.0);
    let gpt = [("requested_model", "gpt-4o"), ("outcome", "success")];
    assert_eq!(value(&s, "lb_requests_total", &gpt), 4.0);
    assert_eq!(
        histogram_count(
            &s,
            "litellm_overhead_latency_metric",
            &[("requested_model", "gpt-4o")]
        ),
        4
    );
    assert_eq!(
        histogram_count(
            &s,
            "litellm_request_total_latency_metric",
            &[("requested_model", "gpt-4o")]
        ),
        4
    );

    assert_eq!(
        value(
            &s,
            "litellm_deployment_failure_responses_total",
            &[
                ("model_id", "p"),
                ("exception_class", "InternalServerError")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            "litellm_deployment_success_responses_total",
            &[("model_id", "b")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "litellm_deployment_successful_fallbacks_total",
            &[("requested_model", "primary")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "lb_requests_total",
            &[("requested_model", "primary"), ("outcome", "success")]
        ),
        1.0
    );

    assert_eq!(
        value(
            &s,
            "litellm_deployment_total_requests_total",
            &[("model_id", "l")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "litellm_remaining_requests_metric",
            &[("model_id", "l")]
        ),
        0.0,
        "rpm 1, one call this minute"
    );
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric == "litellm_remaining_requests_metric"
                && x.labels.get("model_id") == Some("dep-1")),
        "no remaining-requests series for a deployment without rpm"
    );
    assert_eq!(
        value(
            &s,
            "lb_requests_total",
            &[("requested_model", "limited"), ("outcome", "failure")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "lb_requests_total",
            &[("requested_model", "limited"), ("outcome", "success")]
        ),
        1.0
    );
}

#[tokio::test]
async fn enable_metrics_false_serves_an_empty_exposition_and_a_bad_value_names_the_key() {
    let h = Harness::start(1, "router_settings:\n  enable_metrics: false\n").await;
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 200);
    let s = h.scrape().await;
    assert!(s.samples.is_empty(), "{:?}", s.samples);
    let snap = h.router.metrics_snapshot();
    assert_eq!(
        snap.deployments[0].requests, 0,
        "nothing is counted when off"
    );

    let err = lb_router::Router::from_yaml(
        "model_list:\n  - model_name: g\n    litellm_params: {model: openai/m}\nrouter_settings:\n  enable_metrics: maybe\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("router_settings.enable_metrics"), "{err}");
    assert!(err.contains("maybe"), "{err}");
}

#[tokio::test]
async fn a_stream_counts_time_to_first_token_and_its_usage_when_it_ends() {
    let h = Harness::start(1, "").await;
    let resp = h
        .post(
            "/v1/chat/completions",
            &serde_json::json!({
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hello there"}],
                "stream": true,
                "stream_options": {"include_usage": true}
            }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let usage: serde_json::Value = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .find(|c| !c["usage"].is_null())
        .map(|c| c["usage"].clone())
        .unwrap();
    let s = h.scrape().await;
    let d = [("requested_model", "gpt-4o")];
    assert_eq!(
        histogram_count(&s, "litellm_llm_api_time_to_first_token_metric", &d),
        1
    );
    assert_eq!(
        histogram_count(&s, "litellm_llm_api_latency_metric", &d),
        0,
        "a stream is not a completed call's latency"
    );
    assert_eq!(
        value(&s, "litellm_output_tokens_metric_total", &d),
        usage["completion_tokens"].as_f64().unwrap()
    );
    assert_eq!(
        value(&s, "litellm_input_tokens_metric_total", &d),
        usage["prompt_tokens"].as_f64().unwrap()
    );
}
