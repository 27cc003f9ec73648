//! Raw HTTP against the gateway: shapes, headers, auth, bad input.

use std::time::Duration;

use lb_e2e::Harness;
use serde_json::{Value, json};

#[tokio::test]
async fn chat_response_headers_and_passthrough_of_unknown_fields() {
    let h = Harness::start(1, "").await;
    h.dep(0).record_requests(true);
    h.dep(0)
        .update_behavior(|b| b.model = Some("gpt-4o-2024-08-06".into()));
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": true,
        "top_logprobs": 3,
        "num_retries": 0,
        "metadata": {"tags": ["a"]}
    });
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["x-litellm-model-id"], "dep-0");
    assert_eq!(headers["x-litellm-model-group"], "gpt-4o");
    assert_eq!(
        headers["x-litellm-model-api-base"],
        h.dep(0).base_url().as_str()
    );
    assert_eq!(headers["x-litellm-attempted-retries"], "0");
    assert!(headers.contains_key("x-litellm-call-id"));
    let json: Value = resp.json().await.unwrap();
    assert_eq!(
        json["model"], "gpt-4o-2024-08-06",
        "model is what the upstream reported"
    );
    assert_eq!(
        json["system_fingerprint"], "fp_mock",
        "unknown response fields pass through"
    );
    let seen = h.dep(0).recorded();
    assert_eq!(seen.len(), 1);
    let up = &seen[0].body;
    assert_eq!(
        up["model"], "mock-0",
        "the deployment's model name goes upstream"
    );
    assert_eq!(up["tools"], body["tools"]);
    assert_eq!(up["tool_choice"], "auto");
    assert_eq!(up["response_format"], body["response_format"]);
    assert_eq!(up["logprobs"], true);
    assert_eq!(up["top_logprobs"], 3);
    assert!(
        up.get("num_retries").is_none(),
        "router-only fields stay in the router"
    );
    assert!(up.get("metadata").is_none());
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-0"));
}

#[tokio::test]
async fn chat_completions_without_v1_prefix_and_embeddings() {
    let h = Harness::start(1, "").await;
    let resp = h.post("/chat/completions", &Harness::chat("gpt-4o")).await;
    assert_eq!(resp.status(), 200);
    let resp = h
        .post(
            "/v1/embeddings",
            &json!({"model": "gpt-4o", "input": "abc"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-model-id"], "dep-0");
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["data"].as_array().unwrap().len(), 1);
    assert_eq!(json["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn models_lists_groups_and_visible_aliases() {
    let h = Harness::start(
        1,
        "router_settings:\n  model_group_alias: {gpt-4: gpt-4o, internal: {model: gpt-4o, hidden: true}}\n",
    )
    .await;
    let json: Value = h
        .http
        .get(format!("{}/models", h.v1()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4", "gpt-4o"]);
    // hidden alias still routes
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("internal"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-model-group"], "gpt-4o");
    // so does a deployment id
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("dep-0"))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn auth_missing_wrong_and_right_key() {
    let h = Harness::start(1, "general_settings:\n  master_key: sk-master-123\n").await;
    let url = format!("{}/chat/completions", h.v1());
    let body = Harness::chat("gpt-4o");
    let missing = h.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");
    let wrong = h
        .http
        .post(&url)
        .bearer_auth("sk-master-124")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let err: Value = wrong.json().await.unwrap();
    assert!(!err.to_string().contains("sk-master-123"));
    let right = h
        .http
        .post(&url)
        .bearer_auth("sk-master-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let azure_style = h
        .http
        .post(&url)
        .header("api-key", "sk-master-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(azure_style.status(), 200);
    // models needs the key too; health does not
    let models = h
        .http
        .get(format!("{}/models", h.v1()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    for path in ["/health/liveliness", "/health/readiness"] {
        let r = h
            .http
            .get(format!("{}{path}", h.gateway.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(
        h.dep(0).requests(),
        2,
        "only authorised calls reach the upstream"
    );
}

#[tokio::test]
async fn bad_json_unknown_model_and_bad_router_param() {
    let h = Harness::start(1, "").await;
    let resp = h
        .http
        .post(format!("{}/chat/completions", h.v1()))
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt-4o\", \"messages\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid")
    );

    let resp = h
        .post("/v1/chat/completions", &json!({"model": "gpt-4o"}))
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{err}"
    );

    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-5-turbo"))
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "model_not_found");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("model=gpt-5-turbo") && msg.contains("gpt-4o"),
        "{msg}"
    );

    let mut body = Harness::chat("gpt-4o");
    body["num_retries"] = json!("three");
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "num_retries");
    assert_eq!(h.dep(0).requests(), 0, "nothing bad reached the upstream");
}

#[tokio::test]
async fn wrong_method_and_unknown_path_get_json_errors() {
    let h = Harness::start(1, "").await;
    let resp = h
        .http
        .get(format!("{}/chat/completions", h.v1()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "method_not_allowed");
    let resp = h
        .http
        .get(format!("{}/v1/nope", h.gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn body_limit_gives_413_json() {
    let h = Harness::start(1, "general_settings:\n  max_request_size_mb: 1\n").await;
    let big = "x".repeat(1_100_000);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]});
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].is_string());
    assert_eq!(h.dep(0).requests(), 0);
    // the gateway keeps serving
    assert_eq!(
        h.post("/v1/chat/completions", &Harness::chat("gpt-4o"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn azure_deployment_gets_azure_url_and_api_key_header() {
    // Build a config whose api_base is the mock's root (Azure appends /openai/deployments/...).
    let mock = lb_mock::MockServer::start(1).await.unwrap();
    mock.deployment(0).record_requests(true);
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: azure/my-gpt4o\n      api_base: {}\n      api_key: az-key-1\n      api_version: \"2024-06-01\"\n",
        mock.deployment(0).root_url()
    );
    let router = lb_router::Router::from_yaml(&yaml).unwrap();
    let gw = lb_gateway::start("127.0.0.1:0".parse().unwrap(), router, Default::default())
        .await
        .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&Harness::chat("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = mock.deployment(0).recorded();
    assert_eq!(
        seen[0].path,
        "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-06-01"
    );
    assert_eq!(seen[0].header("api-key"), Some("az-key-1"));
    assert_eq!(seen[0].header("authorization"), None);
}

#[tokio::test]
async fn a_query_in_api_base_follows_the_path_upstream() {
    // Some gateways take their key in the query (`.../v1?key=...`).
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai_like/m, api_base: \"{}/?key=k1\"}}\n",
            u[0]
        )
    })
    .await;
    h.dep(0).record_requests(true);
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 200);
    let seen = h.dep(0).recorded();
    assert!(
        seen[0].path.ends_with("/chat/completions?key=k1"),
        "{}",
        seen[0].path
    );
    // The key in the query is not shown where the base URL is.
    let health = h.router.health();
    assert!(!health[0].api_base.contains("k1"), "{}", health[0].api_base);
}

#[tokio::test]
async fn failover_to_another_deployment_on_server_error() {
    // dep-0 is ranked first (by weight, with a fixed seed) and fails once;
    // the retry goes to dep-1 at once.
    let h = Harness::start_with(2, |u| {
        let mut yaml = String::from("model_list:\n");
        for (i, w) in [(0, 1000), (1, 1)] {
            yaml.push_str(&format!(
                "  - model_name: gpt-4o\n    litellm_params: {{model: openai/m, api_base: \"{}\", weight: {w}}}\n    model_info: {{id: dep-{i}}}\n",
                u[i]
            ));
        }
        yaml.push_str("router_settings:\n  routing_seed: 1\n");
        yaml
    })
    .await;
    h.dep(0).fail_next(1, lb_mock::Fault::status(500));
    for _ in 0..4 {
        let resp = h
            .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-litellm-attempted-fallbacks"], "0");
    }
    assert_eq!(h.dep(0).faults(), 1);
    assert_eq!(h.dep(0).successes() + h.dep(1).successes(), 4);
    assert_eq!(
        h.clock.elapsed(),
        Duration::ZERO,
        "another deployment was tried at once, no backoff"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let h = Harness::start(1, "").await;
    h.dep(0)
        .update_behavior(|b| b.latency = Duration::from_millis(300));
    let url = format!("{}/chat/completions", h.v1());
    let client = h.http.clone();
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&Harness::chat("gpt-4o")).send().await });
    // wait until the upstream has the request
    while h.dep(0).in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = h.gateway.addr();
    h.gateway.shutdown().await.unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn timing_headers_split_the_response_time_into_upstream_and_overhead() {
    let h = Harness::start_real_clock(1, |u| lb_e2e::model_list("gpt-4o", u, "")).await;
    h.dep(0)
        .update_behavior(|b| b.latency = Duration::from_millis(50));
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 200);
    let header = |name: &str| -> f64 { resp.headers()[name].to_str().unwrap().parse().unwrap() };
    let total = header("x-litellm-response-duration-ms");
    let overhead = header("x-litellm-overhead-duration-ms");
    assert!(total >= 50.0, "the upstream took 50 ms: {total}");
    assert!(
        overhead >= 0.0 && overhead < total,
        "overhead {overhead} of {total}"
    );
    assert!(
        overhead < total - 49.0,
        "the upstream's 50 ms are not overhead: {overhead} of {total}"
    );
}

#[tokio::test]
async fn an_answer_over_max_response_size_mb_is_refused_without_retry() {
    let h = Harness::start(2, "general_settings:\n  max_response_size_mb: 1\n").await;
    for i in 0..2 {
        // About 1.6 MB of text: over 1 MiB.
        h.dep(i).update_behavior(|b| b.completion_tokens = 250_000);
    }
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_response_size_mb"), "{message}");
    assert_eq!(
        h.dep(0).requests() + h.dep(1).requests(),
        1,
        "the request's own answer is too large: neither retried nor sent to the other deployment"
    );
    // Embeddings are held to the same limit; smaller answers pass.
    let embed =
        |inputs: usize| json!({"model": "gpt-4o", "input": vec!["hi"; inputs], "dimensions": 4096});
    // 64 vectors of 4096 numbers: several MB.
    let big = h.post("/v1/embeddings", &embed(64)).await;
    assert_eq!(big.status(), 400);
    let small = h.post("/v1/embeddings", &embed(1)).await;
    assert_eq!(small.status(), 200);
    let small: Value = small.json().await.unwrap();
    assert_eq!(
        small["data"][0]["embedding"].as_array().map(Vec::len),
        Some(4096)
    );
    for i in 0..2 {
        h.dep(i).update_behavior(|b| b.completion_tokens = 100_000);
    }
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(
        resp.status(),
        200,
        "an answer under the limit (about 0.6 MB) is served"
    );
}

#[tokio::test]
async fn a_request_fallbacks_list_is_bounded_and_bad_values_are_echoed_cut() {
    let h = Harness::start(1, "").await;
    let mut body = Harness::chat("gpt-4o");
    body["fallbacks"] = json!(vec!["no-such-group"; 33]);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "fallbacks");
    let msg = err["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("at most 32"), "{msg}");
    assert_eq!(h.dep(0).requests(), 0, "refused before any upstream call");
    // 32 names are accepted (the unknown ones are skipped).
    body["fallbacks"] = json!(vec!["no-such-group"; 32]);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    // Tags likewise: at most 64.
    let mut body = Harness::chat("gpt-4o");
    body["metadata"] = json!({"tags": vec!["t"; 65]});
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["param"], "metadata.tags");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 64")
    );
    // A huge bad value is named, not sent back whole.
    let mut body = Harness::chat("gpt-4o");
    body["num_retries"] = json!("x".repeat(1_000_000));
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.len() < 1000, "{} bytes", text.len());
    assert!(text.contains("num_retries"), "{text}");
}
