//! Faults, one per test, through the gateway against lb-mock: exact attempt
//! counts on the mock, and waits measured on the router's manual clock
//! (backoff and Retry-After advance it instead of sleeping).

use std::time::Duration;

use lb_e2e::{Clock as _, Harness, entry};
use lb_mock::{Fault, RetryAfter};
use serde_json::{Value, json};

fn secs(h: &Harness) -> f64 {
    h.clock.elapsed().as_secs_f64()
}

async fn chat(h: &Harness, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = h.post("/v1/chat/completions", &Harness::chat(model)).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// Groups `primary` (deployment `p`, with `primary_params` as more
/// `litellm_params` lines) and `backup` (`b`), primary falling back to
/// backup.
async fn primary_backup(primary_params: &str) -> Harness {
    Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  fallbacks: [{{primary: [backup]}}]\n",
            entry("primary", "p", &u[0], primary_params),
            entry("backup", "b", &u[1], "")
        )
    })
    .await
}

#[tokio::test]
async fn a_500_once_is_retried_on_the_same_deployment_after_a_backoff() {
    let h = Harness::start(1, "").await;
    h.dep(0).fail_next(1, Fault::status(500));
    let (status, headers, _) = chat(&h, "gpt-4o").await;
    assert_eq!(status, 200);
    assert_eq!(h.dep(0).requests(), 2);
    assert_eq!(headers["x-litellm-attempted-retries"], "1");
    let waited = secs(&h);
    assert!(
        (0.5..0.76).contains(&waited),
        "backoff starts at 0.5 s plus jitter, got {waited}"
    );
}

#[tokio::test]
async fn a_503_forever_is_bounded_then_falls_back() {
    let h = primary_backup("").await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(503);
    });
    let (status, headers, body) = chat(&h, "primary").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        h.dep(0).requests(),
        3,
        "one attempt and num_retries (2) retries"
    );
    assert_eq!(h.dep(1).requests(), 1);
    assert_eq!(headers["x-litellm-model-id"], "b");
    assert_eq!(headers["x-litellm-attempted-fallbacks"], "1");
    assert_eq!(
        body["model"], "b-model",
        "the model that answered, as its upstream said"
    );
    // 0.5 s then 1 s, each plus up to half again of jitter.
    let waited = secs(&h);
    assert!((1.5..2.26).contains(&waited), "{waited}");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_not_hammered() {
    for http_date in [false, true] {
        let h = Harness::start(1, "").await;
        // The router reads an HTTP date against its own wall clock: the date
        // is 4 s past that clock (the real time has moved on since it started).
        let retry_after = if http_date {
            RetryAfter::HttpDate(h.clock.wall() + Duration::from_secs(4))
        } else {
            RetryAfter::Seconds(3)
        };
        h.dep(0)
            .fail_next(1, Fault::rate_limited(Some(retry_after.clone())));
        let (status, _, _) = chat(&h, "gpt-4o").await;
        assert_eq!(status, 200);
        assert_eq!(h.dep(0).requests(), 2, "{retry_after:?}");
        let waited = secs(&h);
        assert!(
            (2.0..4.8).contains(&waited),
            "{retry_after:?}: waited {waited}"
        );
    }
}

#[tokio::test]
async fn a_long_retry_after_moves_straight_on_to_fallbacks() {
    let h = primary_backup("").await;
    h.dep(0)
        .fail_next(1, Fault::rate_limited(Some(RetryAfter::Seconds(60))));
    let (status, headers, _) = chat(&h, "primary").await;
    assert_eq!(status, 200);
    assert_eq!(h.dep(0).requests(), 1);
    assert_eq!(headers["x-litellm-model-id"], "b");
    assert_eq!(secs(&h), 0.0, "nothing was waited");
}

#[tokio::test]
async fn a_429_forever_cools_everything_down_and_answers_429_with_retry_after() {
    let h = Harness::start(2, "").await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| {
            b.failure_rate = 1.0;
            b.failure = Fault::rate_limited(None);
        });
    }
    let (status, headers, body) = chat(&h, "gpt-4o").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "5", "the default cooldown");
    assert_eq!(body["error"]["code"], "all_deployments_in_cooldown");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o"),
        "{body}"
    );
    assert_eq!(
        h.dep(0).requests() + h.dep(1).requests(),
        2,
        "each tried once"
    );
    // While they cool down, nothing reaches them.
    let (status, _, _) = chat(&h, "gpt-4o").await;
    assert_eq!(status, 429);
    assert_eq!(h.dep(0).requests() + h.dep(1).requests(), 2);
    // When the cooldown ends, one trial call per deployment.
    h.clock.advance(Duration::from_secs(5));
    for d in h.mock.deployments() {
        d.update_behavior(|b| b.failure_rate = 0.0);
    }
    let (status, _, _) = chat(&h, "gpt-4o").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_401_cools_that_deployment_down_and_the_call_moves_on() {
    let h = Harness::start(2, "").await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(401);
    });
    // Routing is random: call until dep-0 has been tried (and cooled down).
    let mut calls = 0;
    while h.dep(0).requests() == 0 {
        assert!(calls < 64, "dep-0 was never picked in {calls} calls");
        let (status, headers, _) = chat(&h, "gpt-4o").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-litellm-model-id"], "dep-1");
        calls += 1;
    }
    for _ in 0..10 {
        let (status, headers, _) = chat(&h, "gpt-4o").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-litellm-model-id"], "dep-1");
    }
    assert_eq!(
        h.dep(0).requests(),
        1,
        "a wrong key is tried once, then cooled down"
    );
    assert_eq!(h.dep(1).requests(), calls + 10);
}

#[tokio::test]
async fn connection_refused_and_reset_move_to_another_deployment() {
    // A port nothing listens on (bound without listening, so no other test
    // can take it meanwhile), and a server that resets every connection.
    let refused_socket = tokio::net::TcpSocket::new_v4().unwrap();
    refused_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = refused_socket.local_addr().unwrap().port();
    let reset = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_port = reset.local_addr().unwrap().port();
    let resets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = resets.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = reset.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Linger 0: the close is a reset (and does not block: nothing is unsent).
            #[allow(deprecated)]
            let _ = sock.set_linger(Some(Duration::ZERO));
            drop(sock); // RST before any byte
        }
    });
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}{}{}router_settings:\n  num_retries: 2\n  routing_seed: 5\n",
            entry(
                "g",
                "refused",
                &format!("http://127.0.0.1:{refused}/v1"),
                "      weight: 100\n"
            ),
            entry(
                "g",
                "reset",
                &format!("http://127.0.0.1:{reset_port}/v1"),
                "      weight: 100\n"
            ),
            entry("g", "good", &u[0], "      weight: 1\n")
        )
    })
    .await;
    for _ in 0..5 {
        let (status, headers, _) = chat(&h, "g").await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-litellm-model-id"], "good");
    }
    assert_eq!(h.dep(0).requests(), 5);
    assert!(
        resets.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the resetting server was tried"
    );
}

#[tokio::test]
async fn a_silent_upstream_costs_one_timeout_then_falls_back() {
    // The short timeout is the silent deployment's only: the backup's answer
    // is not raced against 200 ms of real time.
    let h = primary_backup("      timeout: 0.2\n").await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::Hang;
    });
    let (status, headers, _) = chat(&h, "primary").await;
    assert_eq!(status, 200);
    assert_eq!(
        h.dep(0).requests(),
        1,
        "a timeout is not retried on the same deployment"
    );
    assert_eq!(headers["x-litellm-model-id"], "b");
}

#[tokio::test]
async fn a_slow_first_token_past_stream_timeout_falls_back() {
    // The short stream timeout is the slow deployment's only: the backup's
    // first token is not raced against 200 ms of real time.
    let h = primary_backup("      stream_timeout: 0.2\n").await;
    h.dep(0)
        .fail_next(1, Fault::SlowFirstToken(Duration::from_secs(5)));
    let body = json!({"model": "primary", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-model-id"], "b");
    assert!(resp.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(h.dep(0).requests(), 1);
}

fn three_groups(u: &[String], settings: &str) -> String {
    format!(
        "model_list:\n{}{}{}router_settings:\n{settings}",
        entry("a", "a", &u[0], ""),
        entry("b", "b", &u[1], ""),
        entry("c", "c", &u[2], "")
    )
}

#[tokio::test]
async fn context_window_errors_go_to_their_fallbacks_after_one_attempt() {
    let settings = "  context_window_fallbacks: [{a: [c]}]\n  fallbacks: [{a: [b]}]\n";
    let h = Harness::start_with(3, |u| three_groups(u, settings)).await;
    h.dep(0).fail_next(1, Fault::ContextWindow);
    let (status, headers, _) = chat(&h, "a").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "c");
    assert_eq!((h.dep(0).requests(), h.dep(1).requests()), (1, 0));
    // Without a context-window entry, the generic fallbacks serve.
    let h = Harness::start_with(3, |u| three_groups(u, "  fallbacks: [{a: [b]}]\n")).await;
    h.dep(0).fail_next(1, Fault::ContextWindow);
    let (status, headers, _) = chat(&h, "a").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "b");
    assert_eq!(h.dep(0).requests(), 1);
}

#[tokio::test]
async fn content_policy_errors_only_go_to_content_policy_fallbacks() {
    let settings = "  content_policy_fallbacks: [{a: [c]}]\n  fallbacks: [{a: [b]}]\n";
    let h = Harness::start_with(3, |u| three_groups(u, settings)).await;
    h.dep(0).fail_next(1, Fault::ContentPolicy);
    let (status, headers, _) = chat(&h, "a").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "c");
    assert_eq!(h.dep(1).requests(), 0);
    // A generic fallback does not launder a rejected prompt through another model.
    let h = Harness::start_with(3, |u| three_groups(u, "  fallbacks: [{a: [b]}]\n")).await;
    h.dep(0).fail_next(1, Fault::ContentPolicy);
    let (status, _, body) = chat(&h, "a").await;
    assert_eq!(status, 400);
    let code = body["error"]["code"].as_str().unwrap();
    assert!(
        code == "content_policy_violation" || code == "content_filter",
        "{body}"
    );
    assert_eq!(
        (
            h.dep(0).requests(),
            h.dep(1).requests(),
            h.dep(2).requests()
        ),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn a_chain_a_b_c_is_followed_with_retries_per_group() {
    let settings = "  fallbacks: [{a: [b]}, {b: [c]}]\n";
    let h = Harness::start_with(3, |u| three_groups(u, settings)).await;
    for i in 0..2 {
        h.dep(i).update_behavior(|b| {
            b.failure_rate = 1.0;
            b.failure = Fault::status(500);
        });
    }
    let (status, headers, _) = chat(&h, "a").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "c");
    assert_eq!(headers["x-litellm-attempted-fallbacks"], "2");
    assert_eq!(
        (
            h.dep(0).requests(),
            h.dep(1).requests(),
            h.dep(2).requests()
        ),
        (3, 3, 1)
    );
}

#[tokio::test]
async fn no_group_is_tried_twice_and_max_fallbacks_bounds_the_chain() {
    // a -> b -> a loops; c is never reached because max_fallbacks is 1.
    let settings = "  fallbacks: [{a: [b]}, {b: [a, c]}]\n  max_fallbacks: 1\n  num_retries: 0\n";
    let h = Harness::start_with(3, |u| three_groups(u, settings)).await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| {
            b.failure_rate = 1.0;
            b.failure = Fault::status(502);
        });
    }
    let (status, headers, body) = chat(&h, "a").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        (
            h.dep(0).requests(),
            h.dep(1).requests(),
            h.dep(2).requests()
        ),
        (1, 1, 0)
    );
    assert_eq!(headers["x-litellm-attempted-fallbacks"], "1");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fallbacks tried: b"),
        "{body}"
    );
}

#[tokio::test]
async fn when_everything_fails_the_client_gets_the_primary_status_and_every_attempt() {
    let settings = "  fallbacks: [{a: [b]}]\n";
    let h = Harness::start_with(3, |u| three_groups(u, settings)).await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(503);
    });
    h.dep(1).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(500);
    });
    let (status, headers, body) = chat(&h, "a").await;
    assert_eq!(status, 503, "the primary group's status");
    assert_eq!(headers["x-litellm-attempted-fallbacks"], "1");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("model group a")
            && msg.contains("6 attempts")
            && msg.contains("fallbacks tried: b"),
        "{msg}"
    );
    assert!(
        msg.contains("a: server error (status 503)")
            && msg.contains("b: server error (status 500)"),
        "{msg}"
    );
    // Bounded: two groups of three attempts, with two backoffs each.
    assert!(secs(&h) < 5.0, "{}", secs(&h));
    let m = h.scrape().await;
    let a = [("requested_model", "a")];
    assert_eq!(
        lb_e2e::metric(&m, "litellm_deployment_failed_fallbacks_total", &a),
        1.0
    );
    assert_eq!(
        lb_e2e::metric(&m, "litellm_deployment_successful_fallbacks_total", &a),
        0.0
    );
    assert_eq!(
        lb_e2e::metric(&m, "lb_retries_total", &a),
        5.0,
        "6 attempts"
    );
    assert_eq!(
        lb_e2e::metric(
            &m,
            "lb_requests_total",
            &[("requested_model", "a"), ("outcome", "failure")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_primary_down_for_a_minute_gets_traffic_back_within_seconds() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  routing_seed: 9\n",
            entry("g", "primary", &u[0], "      weight: 9\n"),
            entry("g", "secondary", &u[1], "      weight: 1\n")
        )
    })
    .await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(503);
    });
    // One call a (virtual) second for a minute: every call succeeds via the secondary.
    for _ in 0..60 {
        let (status, _, _) = chat(&h, "g").await;
        assert_eq!(status, 200);
        h.clock.advance(Duration::from_secs(1));
    }
    let primary_calls_while_down = h.dep(0).requests();
    assert!(
        primary_calls_while_down < 15,
        "cooldowns kept traffic off it: {primary_calls_while_down}"
    );
    // It recovers; count the seconds until it serves again.
    h.dep(0).update_behavior(|b| b.failure_rate = 0.0);
    let before = h.dep(0).successes();
    let mut seconds = 0;
    while h.dep(0).successes() == before {
        let (status, _, _) = chat(&h, "g").await;
        assert_eq!(status, 200);
        h.clock.advance(Duration::from_secs(1));
        seconds += 1;
        assert!(seconds <= 31, "still no traffic {seconds} s after recovery");
    }
    println!(
        "primary: {primary_calls_while_down} calls while down for 60 s, traffic back {seconds} s after recovery"
    );
}

#[tokio::test]
async fn the_retry_budget_caps_retries_under_a_total_outage() {
    let settings = "router_settings:\n  num_retries: 10\n  disable_cooldowns: true\n  retry_budget: {percent: 0.2, min_per_second: 0, ttl: 100000}\n";
    let h = Harness::start(2, settings).await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| {
            b.failure_rate = 1.0;
            b.failure = Fault::status(500);
        });
    }
    for _ in 0..100 {
        let (status, _, _) = chat(&h, "gpt-4o").await;
        assert_eq!(status, 500);
    }
    let total = h.dep(0).requests() + h.dep(1).requests();
    assert_eq!(total, 120, "100 calls plus 20% of them as retries, not 11x");
}

#[tokio::test]
async fn health_endpoint_lists_cooling_deployments_with_the_reason() {
    let h = Harness::start(2, "").await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::rate_limited(Some(RetryAfter::Seconds(30)));
    });
    // Routing is random: call until dep-0 has been tried (and cooled down).
    for _ in 0..64 {
        assert_eq!(chat(&h, "gpt-4o").await.0, 200);
        if h.dep(0).requests() > 0 {
            break;
        }
    }
    assert!(h.dep(0).requests() > 0, "dep-0 was never picked");
    let health: Value = h
        .http
        .get(format!("{}/health", h.gateway.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["healthy_count"], 1, "{health}");
    assert_eq!(health["unhealthy_count"], 1, "{health}");
    let bad = &health["unhealthy_endpoints"][0];
    assert_eq!(bad["model_id"], "dep-0");
    assert_eq!(bad["error"], "rate limited by the upstream");
    assert!(
        bad["cooldown_remaining_s"].as_f64().unwrap() > 25.0,
        "{bad}"
    );
    assert_eq!(health["healthy_endpoints"][0]["model_id"], "dep-1");
}

#[tokio::test]
async fn background_health_checks_cool_down_failing_and_restore_passing_deployments() {
    let h = Harness::start(
        2,
        "router_settings:\n  background_health_checks: true\n  health_check_interval: 30\n",
    )
    .await;
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(500);
    });
    let results = h.router.run_health_checks().await;
    assert_eq!(results.len(), 2);
    assert!(results[0].1.is_err() && results[1].1.is_ok());
    let health = h.router.health();
    assert!(!health[0].healthy && health[1].healthy);
    assert!(
        health[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("health check failed")
    );
    // No client call reaches the failing one now.
    for _ in 0..5 {
        assert_eq!(chat(&h, "gpt-4o").await.0, 200);
    }
    assert_eq!(h.dep(0).requests(), 1, "only the probe");
    h.dep(0).update_behavior(|b| b.failure_rate = 0.0);
    h.router.run_health_checks().await;
    assert!(
        h.router.health()[0].healthy,
        "a passing probe brings it back"
    );
}

#[tokio::test]
async fn chaos_zero_client_visible_failures_while_one_deployment_stays_healthy() {
    // The hanging deployment (dep-1) times out after 200 ms; the others keep
    // the default timeout, so the healthy dep-3's answers, slowed by 32
    // concurrent calls on one thread, are never raced against 200 ms.
    let h = Harness::start_with(4, |u| {
        let mut yaml = String::from("model_list:\n");
        for (i, url) in u.iter().enumerate() {
            let timeout = if i == 1 { "      timeout: 0.2\n" } else { "" };
            yaml.push_str(&entry("gpt-4o", &format!("dep-{i}"), url, timeout));
        }
        yaml.push_str("router_settings:\n  num_retries: 3\n  retry_budget: {percent: 1.0}\n");
        yaml
    })
    .await;
    let faults = [
        Fault::status(500),
        Fault::Hang,
        Fault::rate_limited(Some(RetryAfter::Seconds(1))),
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        h.dep(i).update_behavior(|b| {
            b.failure_rate = 0.3;
            b.failure = fault;
            b.seed = 42 + i as u64;
        });
    }
    let calls = 2000;
    let mut tasks = Vec::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..32 {
        let http = h.http.clone();
        let url = format!("{}/chat/completions", h.v1());
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < calls {
                let resp = http
                    .post(&url)
                    .json(&Harness::chat("gpt-4o"))
                    .send()
                    .await
                    .unwrap();
                if resp.status() != 200 {
                    failed += 1;
                }
                let _ = resp.bytes().await;
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    let injected: u64 = h.mock.deployments().iter().map(|d| d.faults()).sum();
    println!(
        "chaos: {calls} calls, {injected} upstream faults injected (500s, hangs, 429s), {failed} reached the client; upstream requests per deployment: {:?}",
        h.mock
            .deployments()
            .iter()
            .map(|d| d.requests())
            .collect::<Vec<_>>()
    );
    assert!(injected > 0);
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn a_filtered_answer_goes_to_content_policy_fallbacks_only_when_configured() {
    let settings = "  content_policy_fallbacks: [{a: [c]}]\n";
    let h = Harness::start_with(3, |u| three_groups(u, settings)).await;
    h.dep(0).fail_next(1, Fault::ContentFiltered);
    let (status, headers, body) = chat(&h, "a").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "c");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // Without an entry, the filtered answer is the answer.
    let h = Harness::start_with(3, |u| three_groups(u, "  fallbacks: [{a: [b]}]\n")).await;
    h.dep(0).fail_next(1, Fault::ContentFiltered);
    let (status, headers, body) = chat(&h, "a").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-litellm-model-id"], "a");
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(h.dep(1).requests(), 0);
}
