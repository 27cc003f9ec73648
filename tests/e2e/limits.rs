//! Rate limits, concurrency caps, budgets and cost, enforced through the
//! gateway against lb-mock.

use std::time::Duration;

use lb_e2e::{Harness, entry_with_model as entry};
use serde_json::{Value, json};

async fn chat(h: &Harness, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = h.post("/v1/chat/completions", body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

#[tokio::test]
async fn two_deployments_of_rpm_5_serve_ten_calls_and_the_eleventh_gets_429() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}",
            entry("g", "a", "openai/m", &u[0], "      rpm: 5\n"),
            entry("g", "b", "openai/m", &u[1], "      rpm: 5\n")
        )
    })
    .await;
    let body = Harness::chat("g");
    let mut remaining = Vec::new();
    for _ in 0..10 {
        let (status, headers, _) = chat(&h, &body).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-ratelimit-limit-requests"], "10");
        remaining.push(
            headers["x-ratelimit-remaining-requests"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining.first().map(String::as_str), Some("9"));
    assert_eq!(remaining.last().map(String::as_str), Some("0"));
    assert_eq!(
        (h.dep(0).requests(), h.dep(1).requests()),
        (5, 5),
        "each exactly at its limit"
    );
    let (status, headers, err) = chat(&h, &body).await;
    assert_eq!(status, 429, "{err}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "until the minute ends: {retry_after}"
    );
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("a: rpm limit 5 reached (5 used") && msg.contains("b: rpm limit 5 reached"),
        "{msg}"
    );
    assert_eq!(
        h.dep(0).requests() + h.dep(1).requests(),
        10,
        "the 11th reached no upstream"
    );
    // The next minute has room again.
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(chat(&h, &body).await.0, 200);
}

#[tokio::test]
async fn tpm_counts_real_usage_and_embeddings_count_too() {
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}",
            entry("g", "a", "openai/m", &u[0], "      tpm: 100\n")
        )
    })
    .await;
    // Each call: ~5 prompt tokens estimated + max_tokens 20 reserved; the mock
    // answers 16 tokens, so about 21 settle per call.
    let mut body = Harness::chat("g");
    body["max_tokens"] = json!(20);
    let mut ok = 0;
    for _ in 0..10 {
        let (status, _, _) = chat(&h, &body).await;
        if status == 200 {
            ok += 1;
        }
    }
    assert!((3..=4).contains(&ok), "about 100 / 21 calls fit: {ok}");
    let resp = h
        .post(
            "/v1/embeddings",
            &json!({"model": "g", "input": "x".repeat(200)}),
        )
        .await;
    assert_eq!(
        resp.status(),
        429,
        "embeddings count against the same limit"
    );
}

#[tokio::test]
async fn a_full_deployment_is_skipped_and_a_burst_beyond_every_cap_gets_429_at_once() {
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}router_settings:\n  num_retries: 0\n",
            entry(
                "g",
                "a",
                "openai/m",
                &u[0],
                "      max_parallel_requests: 2\n"
            )
        )
    })
    .await;
    // Two streams take both slots and keep them: each stalls after its
    // first token for longer than the test lasts (slow calls would only hold
    // them for a window of real time the burst could overrun).
    h.dep(0).fail_next(
        2,
        lb_mock::Fault::StallAfter {
            tokens: 1,
            stall: Duration::from_secs(60),
        },
    );
    let mut statuses = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut body = Harness::chat("g");
        body["stream"] = json!(true);
        let resp = h.post("/v1/chat/completions", &body).await;
        statuses.push(resp.status().as_u16());
        held.push(resp);
    }
    // A burst beyond the cap while both are in flight.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let http = h.http.clone();
        let url = format!("{}/chat/completions", h.v1());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&Harness::chat("g"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    assert_eq!(h.dep(0).in_flight(), 2, "both held their slots all along");
    assert_eq!(
        h.dep(0).requests(),
        2,
        "the cap held: no more than 2 reached the upstream"
    );
    // Slots come back when the calls end (the clients go away; the router
    // notices on its own time).
    drop(held);
    let mut ended = false;
    for _ in 0..1000 {
        if h.router.deployment_stats()[0].1.in_flight == 0 {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ended, "the dropped streams still hold their slots");
    assert_eq!(chat(&h, &Harness::chat("g")).await.0, 200);
}

#[tokio::test]
async fn a_tiny_provider_budget_moves_traffic_then_429_when_both_are_spent() {
    let prices = "      input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000001\n";
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  routing_seed: 3\n  provider_budget_config:\n    openai: {{budget_limit: 0.00005, time_period: 1d}}\n    custom_openai: {{budget_limit: 0.00005, time_period: 1d}}\n",
            entry("g", "a", "openai/m", &u[0], &format!("      weight: 1000\n{prices}")),
            entry("g", "b", "custom_openai/m", &u[1], &format!("      weight: 1\n{prices}"))
        )
    })
    .await;
    let mut body = Harness::chat("g");
    body["max_tokens"] = json!(16);
    let mut served_by = Vec::new();
    let mut last_error = Value::Null;
    for _ in 0..8 {
        let (status, headers, resp) = chat(&h, &body).await;
        if status == 200 {
            served_by.push(headers["x-litellm-model-id"].to_str().unwrap().to_owned());
            let cost: f64 = headers["x-litellm-response-cost"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(cost > 0.0);
        } else {
            assert_eq!(status, 429, "{resp}");
            last_error = resp;
        }
    }
    // openai (preferred by weight) first until its budget is spent, then the other.
    let first_b = served_by
        .iter()
        .position(|s| s == "b")
        .expect("traffic moved to b");
    assert!(
        first_b >= 1 && served_by[..first_b].iter().all(|s| s == "a"),
        "{served_by:?}"
    );
    assert!(
        served_by[first_b..].iter().all(|s| s == "b"),
        "{served_by:?}"
    );
    let msg = last_error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("budget of provider openai reached")
            && msg.contains("budget of provider custom_openai reached"),
        "{last_error}"
    );
    // GET /provider/budgets: spend never above the limit, and a reset time.
    let budgets: Value = h
        .http
        .get(format!("{}/provider/budgets", h.gateway.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for provider in ["openai", "custom_openai"] {
        let b = &budgets["providers"][provider];
        assert_eq!(b["budget_limit"], 0.00005, "{budgets}");
        assert_eq!(b["time_period"], "86400s");
        let spend = b["spend"].as_f64().unwrap();
        assert!(spend > 0.0 && spend <= 0.00005, "{provider}: {spend}");
        assert!(b["budget_reset_at"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn the_cost_header_matches_the_price_table_for_a_known_model() {
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}",
            entry("g", "a", "openai/gpt-4o-mini", &u[0], "")
        )
    })
    .await;
    let (status, headers, body) = chat(&h, &Harness::chat("g")).await;
    assert_eq!(status, 200);
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_f64().unwrap();
    let completion = usage["completion_tokens"].as_f64().unwrap();
    let table = lb_budget::PriceTable::builtin();
    let price = table
        .get("gpt-4o-mini")
        .expect("gpt-4o-mini is in the built-in table");
    let expected = prompt * price.input_cost_per_token.unwrap()
        + completion * price.output_cost_per_token.unwrap();
    let cost: f64 = headers["x-litellm-response-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((cost - expected).abs() < 1e-15, "{cost} vs {expected}");
}

#[tokio::test]
async fn a_stream_asks_for_usage_settles_it_and_hides_it_from_a_client_that_did_not_ask() {
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}",
            entry("g", "a", "openai/gpt-4o-mini", &u[0], "      tpm: 1000\n")
        )
    })
    .await;
    h.dep(0).record_requests(true);
    let body =
        json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let text = h
        .post("/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(
        h.dep(0).recorded()[0].body["stream_options"]["include_usage"],
        true
    );
    // A client that asks gets the usage, with the cost in it.
    let mut body = body;
    body["stream_options"] = json!({"include_usage": true});
    let text = h
        .post("/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let usage_event = text
        .split("\n\n")
        .find(|e| e.contains("\"usage\""))
        .expect("a usage chunk");
    let chunk: Value = serde_json::from_str(usage_event.trim_start_matches("data: ")).unwrap();
    assert!(chunk["usage"]["cost"].as_f64().unwrap() > 0.0, "{chunk}");
    // The two streams' real usage was settled against tpm: 1000 minus what they used.
    let (_, headers, _) = chat(&h, &Harness::chat("g")).await;
    let remaining: u64 = headers["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let used = 1000 - remaining;
    assert!(
        (3 * 18..=3 * 30).contains(&used),
        "three calls of about 21 tokens each: {used}"
    );
}

#[tokio::test]
async fn pre_call_checks_skip_deployments_whose_context_window_is_too_small() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  enable_pre_call_checks: true\n  context_window_fallbacks: [{{small: [large]}}]\n",
            entry("small", "s", "openai/gpt-3.5-turbo", &u[0], ""),
            entry("large", "l", "openai/gpt-4o-mini", &u[1], "")
        )
    })
    .await;
    // About 25,000 tokens: over gpt-3.5-turbo's 16,385, under gpt-4o-mini's 128,000.
    let long = "word ".repeat(20_000);
    let body = json!({"model": "small", "messages": [{"role": "user", "content": long}]});
    let (status, headers, _) = chat(&h, &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "l");
    assert_eq!(
        h.dep(0).requests(),
        0,
        "the small deployment was never called"
    );
    // A short prompt still goes to the small one.
    assert_eq!(
        chat(&h, &Harness::chat("small")).await.1["x-litellm-model-id"],
        "s"
    );
}

#[tokio::test]
async fn dropping_a_stream_mid_way_does_not_give_the_request_back() {
    use futures_util::StreamExt;
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}",
            entry("g", "a", "openai/m", &u[0], "      rpm: 2\n")
        )
    })
    .await;
    let req =
        || lb_router::ChatCompletionRequest::new("g", vec![lb_router::ChatMessage::user("hi")]);
    for _ in 0..2 {
        // The caller reads one chunk and goes away (a client disconnecting).
        let mut routed = h.router.completion_stream(req()).await.unwrap();
        let _ = routed.stream.next().await;
        drop(routed);
    }
    // The dropped streams' reservations are settled on a spawned task.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let err = h.router.completion(req()).await.unwrap_err();
    assert_eq!(
        err.status(),
        429,
        "both requests of the minute were used: {err}"
    );
    assert_eq!(h.dep(0).requests(), 2);
}

#[tokio::test]
async fn a_deployment_addressed_by_id_over_its_limit_gets_429() {
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}",
            entry("g", "a", "openai/m", &u[0], "      rpm: 1\n")
        )
    })
    .await;
    assert_eq!(chat(&h, &Harness::chat("a")).await.0, 200);
    let (status, headers, err) = chat(&h, &Harness::chat("a")).await;
    assert_eq!(status, 429, "{err}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rpm limit 1 reached"),
        "{err}"
    );
    assert_eq!(h.dep(0).requests(), 1);
}
