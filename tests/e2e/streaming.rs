//! Raw SSE through the gateway.

use std::time::Duration;

use lb_e2e::Harness;
use lb_mock::Fault;
use serde_json::{Value, json};

fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_owned())
        .collect()
}

fn stream_body(include_usage: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "stream_options": {"include_usage": include_usage}
    })
}

#[tokio::test]
async fn every_chunk_arrives_and_done_is_last() {
    let h = Harness::start(1, "").await;
    let resp = h.post("/v1/chat/completions", &stream_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-litellm-model-id"], "dep-0");
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks.len(), 19, "role + 16 tokens + finish + usage");
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)?
                .get("delta")?
                .get("content")?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text.split(' ').count(), 16);
    assert_eq!(chunks[17]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[18]["usage"]["completion_tokens"], 16);
    assert_eq!(
        chunks[0]["model"], "mock-0",
        "the model the upstream reported, not rewritten"
    );
}

#[tokio::test]
async fn no_usage_chunk_unless_asked() {
    let h = Harness::start(1, "").await;
    let ev = events(
        &h.post("/v1/chat/completions", &stream_body(false))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(ev.len(), 19, "role + 16 tokens + finish + [DONE]");
    assert!(ev.iter().all(|e| !e.contains("\"usage\"")));
}

#[tokio::test]
async fn chunks_are_passed_through_as_they_arrive() {
    let h = Harness::start(1, "").await;
    // The upstream sends its role chunk at once, then one token every 10 s.
    h.dep(0).update_behavior(|b| {
        b.token_interval = Duration::from_secs(10);
        b.completion_tokens = 3;
    });
    let mut resp = h.post("/v1/chat/completions", &stream_body(false)).await;
    // A buffering gateway would hold the first chunk for 30 s; a passthrough one
    // delivers it at once. 5 s is a generous bound between the two.
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await;
    let first = first
        .expect("the first chunk was buffered")
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.starts_with("data: ") && first.contains("\"role\":\"assistant\""),
        "{first}"
    );
}

#[tokio::test]
async fn stream_cut_mid_way_ends_with_error_event_and_no_done() {
    let h = Harness::start(1, "").await;
    h.dep(0).fail_next(1, Fault::CutStreamAfter(5));
    let resp = h.post("/v1/chat/completions", &stream_body(true)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    let last: Value = serde_json::from_str(ev.last().unwrap()).unwrap();
    assert!(last.get("error").is_some(), "{last}");
    assert!(
        ev.iter().all(|e| e != "[DONE]"),
        "a truncated answer must not look complete"
    );
    let contents = ev
        .iter()
        .filter(|e| e.contains("\"content\":\"") && !e.contains("\"content\":\"\""))
        .count();
    assert_eq!(contents, 5);
}

#[tokio::test]
async fn stream_error_before_first_chunk_fails_over() {
    let h = Harness::start(2, "").await;
    for d in h.mock.deployments() {
        d.fail_next(1, Fault::status(503));
    }
    // Both fail once before any byte reached the client: the third attempt
    // (the last one again, after a backoff) serves the stream.
    let resp = h.post("/v1/chat/completions", &stream_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-litellm-attempted-retries"], "2");
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(h.dep(0).requests() + h.dep(1).requests(), 3);
}

#[tokio::test]
async fn slow_first_token_past_stream_timeout_is_a_timeout() {
    let h = Harness::start(
        1,
        "router_settings:\n  stream_timeout: 0.2\n  timeout: 30\n",
    )
    .await;
    h.dep(0)
        .fail_next(1, Fault::SlowFirstToken(Duration::from_secs(3)));
    let resp = h.post("/v1/chat/completions", &stream_body(false)).await;
    assert_eq!(resp.status(), 408);
}

#[tokio::test]
async fn a_stream_that_goes_quiet_ends_with_a_timeout_event() {
    let h = Harness::start(1, "router_settings:\n  stream_idle_timeout: 0.3\n").await;
    // The role chunk comes at once, then nothing for 10 s.
    h.dep(0).update_behavior(|b| {
        b.token_interval = Duration::from_secs(10);
        b.completion_tokens = 2;
    });
    let resp = h.post("/v1/chat/completions", &stream_body(false)).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev.len(), 2, "{ev:?}");
    let last: Value = serde_json::from_str(&ev[1]).unwrap();
    assert_eq!(last["error"]["type"], "timeout", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{last}"
    );
}
