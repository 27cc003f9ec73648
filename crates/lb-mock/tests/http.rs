//! End-to-end tests of the mock over real loopback HTTP.

// Timing assertions against a real server need real time.
#![allow(clippy::disallowed_methods)]
// Test helpers (outside #[test] fns) unwrap freely too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use lb_mock::{Behavior, Fault, MockServer, RetryAfter, canonical_text};
use serde_json::{Value, json};

mod common;
use common::{client, post, post_json, sse_events};

fn chat_body() -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "you are terse"},
            {"role": "user", "content": [{"type": "text", "text": "tell me a  story"}]}
        ]
    })
}

/// (3 + 3) + (4 + 3) for `chat_body`.
const CHAT_PROMPT_TOKENS: u64 = 13;

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn chat_success_shape_and_usage() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    let (status, v) = post_json(d, &chat_body()).await;
    assert_eq!(status, 200);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["system_fingerprint"], "fp_mock");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], canonical_text(16));
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], CHAT_PROMPT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], 16);
    assert_eq!(v["usage"]["total_tokens"], CHAT_PROMPT_TOKENS + 16);
    assert_eq!(
        (d.requests(), d.chat_requests(), d.successes(), d.faults()),
        (1, 1, 1, 0)
    );
    eventually("in_flight 0", || d.in_flight() == 0).await;

    // ids increase
    let (_, v2) = post_json(d, &chat_body()).await;
    assert_ne!(v["id"], v2["id"]);
}

#[tokio::test]
async fn max_tokens_truncates_and_model_override() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 30,
        model: Some("served-model".into()),
        ..Behavior::default()
    });
    let mut body = chat_body();
    body["max_tokens"] = json!(5);
    let (_, v) = post_json(d, &body).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "alpha bravo charlie delta echo"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["model"], "served-model");

    let mut body = chat_body();
    body["max_completion_tokens"] = json!(28);
    let (_, v) = post_json(d, &body).await;
    assert_eq!(v["choices"][0]["message"]["content"], canonical_text(28));
    assert!(canonical_text(28).ends_with("alpha bravo"));
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    // A limit at or above the answer length changes nothing.
    let mut body = chat_body();
    body["max_tokens"] = json!(30);
    let (_, v) = post_json(d, &body).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 30);
}

#[tokio::test]
async fn stream_events_in_order_with_usage() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 4,
        ..Behavior::default()
    });
    let mut body = chat_body();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(d, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.len(), 1 + 4 + 1 + 1 + 1, "{events:#?}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c["created"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let tokens: Vec<&str> = chunks[1..5]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["alpha ", "bravo ", "charlie ", "delta"]);
    assert_eq!(tokens.concat(), canonical_text(4));
    for c in &chunks[..5] {
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(c["usage"], Value::Null);
    }
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[6]["choices"], json!([]));
    assert_eq!(
        chunks[6]["usage"],
        json!({"prompt_tokens": CHAT_PROMPT_TOKENS, "completion_tokens": 4, "total_tokens": CHAT_PROMPT_TOKENS + 4})
    );
    assert_eq!((d.successes(), d.faults()), (1, 0));
    eventually("in_flight 0", || d.in_flight() == 0).await;
}

#[tokio::test]
async fn stream_without_usage_and_length_limit() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    let mut body = chat_body();
    body["stream"] = json!(true);
    body["max_tokens"] = json!(2);
    let events = sse_events(&post(d, &body).await.text().await.unwrap());
    assert_eq!(events.len(), 1 + 2 + 1 + 1);
    assert_eq!(events[4], "[DONE]");
    let finish: Value = serde_json::from_str(&events[3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert!(finish.get("usage").is_none());
    let last: Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(last["choices"][0]["delta"]["content"], "bravo");
}

#[tokio::test]
async fn stream_token_interval_is_respected() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 3,
        token_interval: Duration::from_millis(20),
        ..Behavior::default()
    });
    let mut body = chat_body();
    body["stream"] = json!(true);
    let t0 = Instant::now();
    let r = post(d, &body).await;
    let mut s = r.bytes_stream();
    let mut frames = 0;
    while let Some(b) = s.next().await {
        b.unwrap();
        frames += 1;
    }
    assert!(t0.elapsed() >= Duration::from_millis(60));
    assert!(frames >= 2, "chunks should arrive in several frames");
}

#[tokio::test]
async fn fail_next_rate_limited_then_success() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.fail_next(2, Fault::rate_limited(Some(RetryAfter::Seconds(3))));
    assert_eq!(d.script_len(), 2);
    for _ in 0..2 {
        let r = post(d, &chat_body()).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["param"], Value::Null);
        assert!(v["error"]["message"].is_string());
        assert!(v["error"]["type"].is_string());
    }
    let (status, _) = post_json(d, &chat_body()).await;
    assert_eq!(status, 200);
    assert_eq!(d.requests(), 3);
    assert_eq!((d.faults(), d.successes()), (2, 1));
    assert_eq!(d.script_len(), 0);
}

#[tokio::test]
async fn retry_after_http_date_and_millis() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    d.push_script([
        Fault::rate_limited(Some(RetryAfter::HttpDate(when))),
        Fault::status(503).with_retry_after(RetryAfter::Millis(1500)),
        Fault::status(500).with_message("boom"),
        Fault::Ok,
    ]);
    let r = post(d, &chat_body()).await;
    assert_eq!(r.status(), 429);
    let h = r.headers()["retry-after"].to_str().unwrap().to_owned();
    assert_eq!(h, httpdate::fmt_http_date(when));
    assert_eq!(httpdate::parse_http_date(&h).unwrap(), when);

    let r = post(d, &chat_body()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after-ms"], "1500");
    assert!(r.headers().get("retry-after").is_none());

    let (status, v) = post_json(d, &chat_body()).await;
    assert_eq!(status, 500);
    assert_eq!(v["error"]["message"], "boom");
    assert_eq!(v["error"]["type"], "server_error");

    let (status, _) = post_json(d, &chat_body()).await;
    assert_eq!(status, 200);
    assert_eq!((d.faults(), d.successes()), (3, 1));
}

#[tokio::test]
async fn context_window_and_content_policy() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.push_script([
        Fault::ContextWindow,
        Fault::ContentPolicy,
        Fault::ContentPolicy,
    ]);
    let (status, v) = post_json(d, &chat_body()).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 8192 tokens")
    );
    let (status, v) = post_json(d, &chat_body()).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "content_policy_violation");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // Azure paths get Azure's code.
    let r = client()
        .post(format!(
            "{}/openai/deployments/gpt4/chat/completions?api-version=2024-06-01",
            d.root_url()
        ))
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "content_filter");
    assert_eq!(
        v["error"]["innererror"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    assert_eq!(d.faults(), 3);
}

#[tokio::test]
async fn cut_stream_after_three_chunks() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.fail_next(1, Fault::CutStreamAfter(3));
    let mut body = chat_body();
    body["stream"] = json!(true);
    let r = post(d, &body).await;
    assert_eq!(r.status(), 200);
    let mut s = r.bytes_stream();
    let mut text = String::new();
    let mut failed = false;
    while let Some(item) = s.next().await {
        match item {
            Ok(b) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body should end with an error; got {text:?}");
    assert!(!text.contains("[DONE]"));
    assert!(!text.contains("finish_reason\":\"stop"));
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let contents: Vec<&str> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(contents, ["alpha ", "bravo ", "charlie "]);
    assert_eq!((d.faults(), d.successes()), (1, 0));

    // Non-stream requests with the same fault get a normal success.
    d.fail_next(1, Fault::CutStreamAfter(3));
    let (status, v) = post_json(d, &chat_body()).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], canonical_text(16));
    eventually("in_flight 0", || d.in_flight() == 0).await;
}

#[tokio::test]
async fn hang_makes_the_client_time_out() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.fail_next(1, Fault::Hang);
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = c
        .post(format!("{}/chat/completions", d.base_url()))
        .json(&chat_body())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(d.faults(), 1);
    // The client gave up: the server notices the closed connection.
    eventually("in_flight 0", || d.in_flight() == 0).await;
    // The next request is served normally.
    let (status, _) = post_json(d, &chat_body()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn shutdown_ends_hanging_and_slow_requests() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0).clone();
    d.set_behavior(Behavior {
        latency: Duration::from_secs(60),
        ..Behavior::default()
    });
    d.fail_next(1, Fault::Hang);
    let hung = tokio::spawn({
        let d = d.clone();
        async move { post(&d, &chat_body()).await.status().as_u16() }
    });
    let slow = tokio::spawn({
        let d = d.clone();
        async move { post(&d, &chat_body()).await.status().as_u16() }
    });
    eventually("two requests in flight", || d.in_flight() == 2).await;
    let t0 = Instant::now();
    server.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    let mut statuses = [hung.await.unwrap(), slow.await.unwrap()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503]);
    // The listener is closed.
    let err = client()
        .get(format!("{}/models", d.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn failure_rate_one_and_zero() {
    let server = MockServer::start(2).await.unwrap();
    let (always, never) = (server.deployment(0), server.deployment(1));
    always.set_behavior(Behavior {
        failure_rate: 1.0,
        failure: Fault::status(502),
        ..Behavior::default()
    });
    never.set_behavior(Behavior {
        failure_rate: 0.0,
        ..Behavior::default()
    });
    for _ in 0..20 {
        assert_eq!(post(always, &chat_body()).await.status(), 502);
        assert_eq!(post(never, &chat_body()).await.status(), 200);
    }
    assert_eq!((always.faults(), always.successes()), (20, 0));
    assert_eq!((never.faults(), never.successes()), (0, 20));
    // A script entry wins over the draw.
    always.push_script([Fault::Ok]);
    assert_eq!(post(always, &chat_body()).await.status(), 200);
}

#[tokio::test]
async fn failure_rate_draws_are_deterministic() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        failure_rate: 0.5,
        seed: 42,
        ..Behavior::default()
    });
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut pattern = Vec::new();
        for _ in 0..40 {
            pattern.push(post(d, &chat_body()).await.status().as_u16());
        }
        runs.push(pattern);
        d.reset_counts();
    }
    assert_eq!(runs[0], runs[1]);
    let fails = runs[0].iter().filter(|s| **s == 500).count();
    assert!((5..=35).contains(&fails), "{fails} failures of 40");
}

#[tokio::test]
async fn counters_are_per_port() {
    let server = MockServer::start(3).await.unwrap();
    assert_eq!(server.deployments().len(), 3);
    assert!(server.get(3).is_none());
    let ports: std::collections::HashSet<u16> = server
        .deployments()
        .iter()
        .map(|d| d.addr().port())
        .collect();
    assert_eq!(ports.len(), 3);
    for _ in 0..3 {
        post(server.deployment(0), &chat_body()).await;
    }
    post(server.deployment(2), &chat_body()).await;
    let counts: Vec<u64> = server.deployments().iter().map(|d| d.requests()).collect();
    assert_eq!(counts, [3, 0, 1]);
    server.deployment(0).reset_counts();
    assert_eq!(server.deployment(0).requests(), 0);
    assert_eq!(server.deployment(2).requests(), 1);
    let d = server.deployment(1);
    assert_eq!(
        d.base_url(),
        format!("http://127.0.0.1:{}/v1", d.addr().port())
    );
    assert_eq!(
        d.root_url(),
        format!("http://127.0.0.1:{}", d.addr().port())
    );
}

#[tokio::test]
async fn embeddings_shape() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    let url = format!("{}/embeddings", d.base_url());
    let v: Value = client()
        .post(&url)
        .json(&json!({"model": "text-embedding-3-small", "input": ["hello world", "x", "hello world"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, e) in data.iter().enumerate() {
        assert_eq!(e["object"], "embedding");
        assert_eq!(e["index"], i);
        let vec = e["embedding"].as_array().unwrap();
        assert_eq!(vec.len(), 8);
        let norm: f64 = vec.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(v["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));

    let v: Value = client()
        .post(&url)
        .json(&json!({"model": "m", "input": "one two", "dimensions": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(
        (d.requests(), d.embedding_requests(), d.chat_requests()),
        (2, 2, 0)
    );

    // Embeddings take scripted faults too.
    d.fail_next(1, Fault::status(503));
    let r = client()
        .post(&url)
        .json(&json!({"input": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn latency_is_respected() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        latency: Duration::from_millis(50),
        jitter: Duration::from_millis(10),
        ..Behavior::default()
    });
    let t0 = Instant::now();
    assert_eq!(post(d, &chat_body()).await.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(50));

    // Error faults wait too.
    d.fail_next(1, Fault::status(500));
    let t0 = Instant::now();
    assert_eq!(post(d, &chat_body()).await.status(), 500);
    assert!(t0.elapsed() >= Duration::from_millis(50));

    // SlowFirstToken replaces the latency.
    d.update_behavior(|b| b.latency = Duration::ZERO);
    d.fail_next(1, Fault::SlowFirstToken(Duration::from_millis(50)));
    let mut body = chat_body();
    body["stream"] = json!(true);
    let t0 = Instant::now();
    let r = post(d, &body).await;
    let mut s = r.bytes_stream();
    let first = s.next().await.unwrap().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(first.starts_with(b"data: "));
    assert_eq!(d.successes(), 2);
}

#[tokio::test]
async fn recording_captures_requests() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    post(d, &chat_body()).await; // not recorded
    d.record_requests(true);
    client()
        .post(format!("{}/chat/completions", d.base_url()))
        .header("Authorization", "Bearer sk-test")
        .header("X-Custom", "1")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    let r = client()
        .post(format!(
            "{}/openai/deployments/my-gpt/chat/completions?api-version=2024-06-01",
            d.root_url()
        ))
        .header("api-key", "azure-key")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["model"], "my-gpt",
        "Azure requests without model report the deployment"
    );
    let rec = d.recorded();
    assert_eq!(rec.len(), 2);
    assert_eq!(rec[0].method, "POST");
    assert_eq!(rec[0].path, "/v1/chat/completions");
    assert_eq!(rec[0].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(rec[0].header("X-CUSTOM"), Some("1"));
    assert!(rec[0].headers.iter().all(|(n, _)| n == &n.to_lowercase()));
    assert_eq!(rec[0].body, chat_body());
    assert_eq!(
        rec[1].path,
        "/openai/deployments/my-gpt/chat/completions?api-version=2024-06-01"
    );
    assert_eq!(rec[1].header("api-key"), Some("azure-key"));
    assert_eq!(rec[1].body["messages"][0]["content"], "hi");
    assert!(rec[0].at <= rec[1].at);
    assert_eq!(d.take_recorded().len(), 2);
    assert!(d.recorded().is_empty());
    d.record_requests(false);
    post(d, &chat_body()).await;
    assert!(d.recorded().is_empty());
}

#[tokio::test]
async fn invalid_json_unknown_paths_and_models() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    let c = client();
    let r = c
        .post(format!("{}/chat/completions", d.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // A malformed request consumes no scripted fault.
    d.fail_next(1, Fault::status(500));
    let r = c
        .post(format!("{}/embeddings", d.base_url()))
        .body("[1,")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(d.script_len(), 1);
    d.clear_script();

    let r = c
        .get(format!("{}/nope", d.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(format!("{}/health", d.root_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(format!("{}/chat/completions", d.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = c
        .get(format!("{}/models", d.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["id"], "mock");
    // chat + embeddings + /v1/nope + GET /v1/chat/completions + /v1/models; not /health.
    assert_eq!(d.requests(), 5);
    assert_eq!((d.chat_requests(), d.embedding_requests()), (2, 1));
    assert_eq!((d.successes(), d.faults()), (1, 0));
}

#[tokio::test]
async fn http_control_plane() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    let c = client();
    let ctl = |p: &str| format!("{}/__mock/{p}", d.root_url());
    let r = c
        .post(ctl("fail_next"))
        .json(&json!({"n": 2, "status": 503, "retry_after_secs": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(d, &chat_body()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let stats: Value = c
        .get(ctl("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"requests": 1, "chat_requests": 1, "embedding_requests": 0, "successes": 0, "faults": 1, "in_flight": 0, "prefill_requests": 0})
    );
    c.post(ctl("reset")).send().await.unwrap();
    assert_eq!((d.requests(), d.faults(), d.script_len()), (0, 0, 0));

    let r = c
        .post(ctl("behavior"))
        .json(&json!({"completion_tokens": 2, "failure_rate": 0.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(d.behavior().completion_tokens, 2);
    let (_, v) = post_json(d, &chat_body()).await;
    assert_eq!(v["choices"][0]["message"]["content"], "alpha bravo");
    let b: Value = c
        .get(ctl("behavior"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["completion_tokens"], 2);

    c.post(ctl("fail_next"))
        .json(&json!({"kind": "context_window"}))
        .send()
        .await
        .unwrap();
    assert_eq!(d.script_len(), 1);
    assert_eq!(
        c.post(ctl("fail_next"))
            .json(&json!({"kind": "bogus"}))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    c.post(ctl("clear_script")).send().await.unwrap();
    assert_eq!(d.script_len(), 0);
    assert_eq!(d.requests(), 1, "control requests are not counted");
}

#[tokio::test]
async fn deployment_handles_keep_the_port_alive() {
    let server = MockServer::start(2).await.unwrap();
    let kept = server.deployment(0).clone();
    let dropped_url = server.deployment(1).base_url();
    drop(server);
    assert_eq!(post(&kept, &chat_body()).await.status(), 200);
    // Nobody holds deployment 1 any more: its port closes.
    let c = client();
    let mut closed = false;
    for _ in 0..1000 {
        match c.get(format!("{dropped_url}/models")).send().await {
            Err(e) if e.is_connect() => {
                closed = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_all_counted() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0).clone();
    d.fail_next(10, Fault::status(500));
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (c, url) = (c.clone(), format!("{}/chat/completions", d.base_url()));
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .json(&chat_body())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut fails = 0;
    for t in tasks {
        if t.await.unwrap() == 500 {
            fails += 1;
        }
    }
    assert_eq!(fails, 10);
    assert_eq!((d.requests(), d.successes(), d.faults()), (50, 40, 10));
    eventually("in_flight 0", || d.in_flight() == 0).await;
}
