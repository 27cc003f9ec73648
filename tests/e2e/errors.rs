//! Upstream errors reach the client with their status, type and retry hint.

use std::time::Duration;

use lb_e2e::{Clock as _, Harness};
use lb_mock::{Fault, RetryAfter};
use serde_json::{Value, json};

async fn one_fault(fault: Fault) -> (u16, reqwest::header::HeaderMap, Value, u64) {
    one_fault_with(|_| fault).await
}

/// [`one_fault`], with the fault made from the harness (e.g. from its clock).
async fn one_fault_with(
    fault: impl FnOnce(&Harness) -> Fault,
) -> (u16, reqwest::header::HeaderMap, Value, u64) {
    let h = Harness::start(1, "").await;
    h.dep(0).fail_next(1, fault(&h));
    // No retries: this is about how one upstream error reaches the client.
    let mut body = Harness::chat("gpt-4o");
    body["num_retries"] = 0.into();
    let resp = h.post("/v1/chat/completions", &body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    (status, headers, body, h.dep(0).requests())
}

#[tokio::test]
async fn each_upstream_status_is_mapped_faithfully() {
    for (status, kind) in [
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (401, "authentication_error"),
        (403, "authentication_error"),
        (404, "not_found_error"),
        (408, "timeout"),
        (400, "invalid_request_error"),
        (422, "invalid_request_error"),
    ] {
        let (got, _, body, upstream_calls) = one_fault(Fault::status(status)).await;
        assert_eq!(got, status, "status {status}: {body}");
        assert_eq!(body["error"]["type"], kind, "status {status}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("dep-0"),
            "{body}"
        );
        assert_eq!(
            upstream_calls, 1,
            "a single deployment is tried once (status {status})"
        );
    }
}

#[tokio::test]
async fn rate_limit_passes_retry_after_to_the_client() {
    let (status, headers, body, _) =
        one_fault(Fault::rate_limited(Some(RetryAfter::Seconds(7)))).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // The router reads an HTTP date against its own wall clock: the date is
    // 30 s past that clock (the real time has moved on since it started).
    let (status, headers, _, _) = one_fault_with(|h| {
        let at = h.clock.wall() + Duration::from_secs(30);
        Fault::rate_limited(Some(RetryAfter::HttpDate(at)))
    })
    .await;
    assert_eq!(status, 429);
    let secs: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((28..=31).contains(&secs), "{secs}");

    let (status, headers, _, _) =
        one_fault(Fault::rate_limited(Some(RetryAfter::Millis(1500)))).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2", "rounded up to whole seconds");
}

#[tokio::test]
async fn context_window_and_content_policy_keep_their_codes() {
    let (status, _, body, _) = one_fault(Fault::ContextWindow).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let (status, _, body, _) = one_fault(Fault::ContentPolicy).await;
    assert_eq!(status, 400);
    let code = body["error"]["code"].as_str().unwrap();
    assert!(
        code == "content_policy_violation" || code == "content_filter",
        "{code}"
    );
}

#[tokio::test]
async fn request_faults_are_not_retried_on_other_deployments() {
    let h = Harness::start(3, "").await;
    for d in h.mock.deployments() {
        d.fail_next(1, Fault::ContextWindow);
    }
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 400);
    let total: u64 = h.mock.deployments().iter().map(|d| d.requests()).sum();
    assert_eq!(total, 1, "a context-window error is the request's fault");
}

#[tokio::test]
async fn silent_upstream_times_out_with_408() {
    let h = Harness::start(1, "router_settings:\n  timeout: 0.2\n").await;
    h.dep(0).fail_next(1, Fault::Hang);
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 408);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "timeout");
    assert_eq!(h.dep(0).requests(), 1);
}

#[tokio::test]
async fn a_timeout_the_request_set_shorter_does_not_count_against_the_deployment() {
    // One counted failure cools a deployment down here.
    let h = Harness::start(
        2,
        "router_settings:\n  timeout: 0.3\n  allowed_fails: 0\n  num_retries: 0\n",
    )
    .await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| {
            b.failure_rate = 1.0;
            b.failure = Fault::Hang;
        });
    }
    let mut body = Harness::chat("gpt-4o");
    body["timeout"] = json!(0.05);
    for _ in 0..3 {
        let resp = h.post("/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 408);
    }
    let tried: u64 = h.mock.deployments().iter().map(|d| d.requests()).sum();
    assert!(tried >= 3, "{tried}");
    assert!(
        h.router.health().iter().all(|d| d.healthy),
        "a client's own short timeout cools nothing down: {:?}",
        h.router.health()
    );
    // The deployment's own timeout running out does count.
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 408);
    let cooling: Vec<_> = h
        .router
        .health()
        .into_iter()
        .filter(|d| !d.healthy)
        .collect();
    assert_eq!(cooling.len(), 1, "{cooling:?}");
}

#[tokio::test]
async fn an_unknown_model_is_echoed_cut_and_escaped() {
    let h = Harness::start(1, "").await;
    let model = format!("x\nINFO forged line {}", "é".repeat(100_000));
    let mut body = Harness::chat("gpt-4o");
    body["model"] = json!(model);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.len() < 1000, "{} bytes", message.len());
    assert!(
        message.contains("model=x\\nINFO forged line éé"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.contains("...; available model groups: gpt-4o"),
        "{message}"
    );
    assert_eq!(err["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn connection_refused_is_a_502() {
    // A port nothing listens on: bound without listening, so no other test
    // can take it meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let h = Harness::start_with(0, |_| {
        format!(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {{model: openai/x, api_base: \"http://127.0.0.1:{port}/v1\", api_key: sk-secret-abc}}\n    model_info: {{id: dead}}\n"
        )
    })
    .await;
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "api_connection_error");
    assert!(!body.to_string().contains("sk-secret-abc"));
}

#[tokio::test]
async fn upstream_messages_never_leak_the_api_key() {
    let h = Harness::start(1, "").await;
    h.dep(0).fail_next(
        1,
        Fault::status(401).with_message("Incorrect API key provided: sk-test-0"),
    );
    let resp = h
        .post("/v1/chat/completions", &Harness::chat("gpt-4o"))
        .await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-test-0"), "{text}");
    assert!(text.contains("Incorrect API key provided: ***"), "{text}");
}
