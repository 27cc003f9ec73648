//! Stream faults for mid-stream failover (stall, malformed event, missing
//! `[DONE]`) and assistant-prefill continuation, over real loopback HTTP.

// Timing assertions against a real server need real time.
#![allow(clippy::disallowed_methods)]
// Test helpers (outside #[test] fns) unwrap freely too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lb_mock::{Behavior, Fault, MockServer, canonical_text, estimate_prompt_tokens};
use serde_json::{Value, json};

mod common;
use common::{client, post, post_json, sse_events};

const MALFORMED: &str = r#"{"id": broken"#;

fn user() -> Value {
    json!({"role": "user", "content": "tell me a story"})
}

fn chat_body(stream: bool) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": [user()]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// A chat body whose last message is an assistant prefill.
fn prefill_body(prefill: Value, stream: bool) -> Value {
    let mut body = chat_body(stream);
    body["messages"] = json!([user(), {"role": "assistant", "content": prefill}]);
    body
}

/// The non-empty `delta.content` of the JSON events, in order.
fn contents(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// Reads a stream event by event, noting when each one arrived.
struct EventReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl EventReader {
    fn new(r: reqwest::Response) -> EventReader {
        EventReader {
            body: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event's payload and arrival time; `None` at a clean end.
    async fn next(&mut self) -> Option<(String, Instant)> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..i + 2).collect();
                let data = event.trim_end().strip_prefix("data: ").unwrap().to_owned();
                return Some((data, Instant::now()));
            }
            match self.body.next().await {
                Some(b) => self.buf.push_str(std::str::from_utf8(&b.unwrap()).unwrap()),
                None => {
                    assert!(self.buf.is_empty(), "trailing bytes {:?}", self.buf);
                    return None;
                }
            }
        }
    }
}

/// How much later than when it was sent an event may be read: this test's
/// task may be scheduled late for one event and not for the next, so a gap
/// between two arrivals can be shorter than the gap between the sends.
const READ_JITTER: Duration = Duration::from_millis(100);

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------ stall

#[tokio::test]
async fn stall_after_holds_the_stream_then_finishes_it() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 5,
        ..Behavior::default()
    });
    let stall = Duration::from_millis(300);
    d.fail_next(1, Fault::StallAfter { tokens: 2, stall });
    let t0 = Instant::now();
    let mut events = EventReader::new(post(d, &chat_body(true)).await);
    let mut got = Vec::new();
    while let Some((data, at)) = events.next().await {
        if contents(std::slice::from_ref(&data)).len() == 1 && got.len() == 2 {
            // Chunk 2 arrived (role + 2 content chunks seen): the stall
            // is under way and the stream is not counted yet.
            assert_eq!((d.successes(), d.faults()), (0, 0));
        }
        got.push((data, at));
    }
    let datas: Vec<String> = got.iter().map(|(d, _)| d.clone()).collect();
    // role + 5 tokens + finish + usage + [DONE]
    assert_eq!(datas.len(), 1 + 5 + 1 + 1 + 1, "{datas:#?}");
    assert_eq!(datas.last().unwrap(), "[DONE]");
    assert_eq!(contents(&datas).concat(), canonical_text(5));
    // Chunk 3 came the whole stall after the request; chunk 2 well before it.
    assert!(got[3].1 - t0 >= stall);
    let gap = got[3].1 - got[2].1; // content chunk 2 -> content chunk 3
    assert!(gap + READ_JITTER >= stall, "gap {gap:?}");
    let finish: Value = serde_json::from_str(&datas[6]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage: Value = serde_json::from_str(&datas[7]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    // A slow success, counted when the stream completed.
    assert_eq!((d.successes(), d.faults()), (1, 0));
    eventually("in_flight 0", || d.in_flight() == 0).await;

    // Non-stream requests get a normal success.
    d.fail_next(1, Fault::StallAfter { tokens: 2, stall });
    let (status, v) = post_json(d, &chat_body(false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], canonical_text(5));
    assert_eq!((d.successes(), d.faults(), d.script_len()), (2, 0, 0));
}

#[tokio::test]
async fn stall_after_all_tokens_comes_before_the_finish_chunk() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 2,
        ..Behavior::default()
    });
    let stall = Duration::from_millis(200);
    d.fail_next(1, Fault::StallAfter { tokens: 9, stall });
    let t0 = Instant::now();
    let mut events = EventReader::new(post(d, &chat_body(true)).await);
    let mut got = Vec::new();
    while let Some(e) = events.next().await {
        got.push(e);
    }
    assert_eq!(got.len(), 1 + 2 + 1 + 1 + 1);
    assert!(got[3].0.contains("\"finish_reason\":\"stop\""));
    assert!(got[3].1 - t0 >= stall);
    assert!(got[3].1 - got[2].1 + READ_JITTER >= stall);
    assert_eq!(got[5].0, "[DONE]");
}

#[tokio::test]
async fn abandoned_stall_is_neither_success_nor_fault() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.fail_next(
        1,
        Fault::StallAfter {
            tokens: 1,
            stall: Duration::from_secs(60),
        },
    );
    let mut events = EventReader::new(post(d, &chat_body(true)).await);
    events.next().await.unwrap(); // role
    let (first, _) = events.next().await.unwrap();
    assert_eq!(contents(&[first]), ["alpha "]);
    drop(events); // the client gives up during the stall
    eventually("in_flight 0", || d.in_flight() == 0).await;
    assert_eq!((d.requests(), d.successes(), d.faults()), (1, 0, 0));
}

#[tokio::test]
async fn shutdown_ends_a_stall() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0).clone();
    d.fail_next(
        1,
        Fault::StallAfter {
            tokens: 1,
            stall: Duration::from_secs(60),
        },
    );
    let r = post(&d, &chat_body(true)).await;
    let mut body = r.bytes_stream();
    let mut text = String::new();
    while !text.contains("alpha ") {
        text.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(d);
    let down = tokio::spawn(server.shutdown());
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(b)) = body.next().await {
            text.push_str(std::str::from_utf8(&b).unwrap());
        }
    })
    .await;
    assert!(ended.is_ok(), "the stall should end on shutdown");
    assert!(!text.contains("[DONE]"), "{text:?}");
    down.await.unwrap();
}

// -------------------------------------------------- malformed event

#[tokio::test]
async fn malformed_event_once_after_chunk_n() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 4,
        ..Behavior::default()
    });
    d.fail_next(1, Fault::MalformedEventAt(2));
    let r = post(d, &chat_body(true)).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    // role + 4 tokens + the bad event + finish + usage + [DONE]
    assert_eq!(events.len(), 1 + 4 + 1 + 1 + 1 + 1, "{events:#?}");
    assert_eq!(events.iter().filter(|e| *e == MALFORMED).count(), 1);
    assert_eq!(events[3], MALFORMED, "right after content chunk 2");
    assert!(serde_json::from_str::<Value>(MALFORMED).is_err());
    assert_eq!(events.last().unwrap(), "[DONE]");
    for e in &events[..events.len() - 1] {
        if e != MALFORMED {
            serde_json::from_str::<Value>(e).unwrap();
        }
    }
    let tokens = contents(&events);
    assert_eq!(tokens, ["alpha ", "bravo ", "charlie ", "delta"]);
    assert_eq!(tokens.concat(), canonical_text(4));
    assert_eq!((d.successes(), d.faults()), (1, 0));

    // At the end (N = number of chunks) and past it (clamped).
    for n in [4, 40] {
        d.fail_next(1, Fault::MalformedEventAt(n));
        let events = sse_events(&post(d, &chat_body(true)).await.text().await.unwrap());
        assert_eq!(events[5], MALFORMED, "n = {n}");
        assert_eq!(contents(&events).concat(), canonical_text(4));
        assert_eq!(events.last().unwrap(), "[DONE]");
    }

    // Non-stream requests get a normal success.
    d.fail_next(1, Fault::MalformedEventAt(1));
    let (status, v) = post_json(d, &chat_body(false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], canonical_text(4));
    assert_eq!((d.successes(), d.faults()), (4, 0));
}

// --------------------------------------------------------- omit done

#[tokio::test]
async fn omit_done_ends_the_body_without_done() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 3,
        ..Behavior::default()
    });
    for include_usage in [true, false] {
        d.fail_next(1, Fault::OmitDone);
        let mut body = chat_body(true);
        body["stream_options"]["include_usage"] = json!(include_usage);
        let r = post(d, &body).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap(); // a clean end, not an error
        assert!(!text.contains("[DONE]"), "{text:?}");
        let events = sse_events(&text);
        let chunks: Vec<Value> = events
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(contents(&events).concat(), canonical_text(3));
        let finish = &chunks[4];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        if include_usage {
            assert_eq!(chunks.len(), 1 + 3 + 1 + 1);
            assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
        } else {
            assert_eq!(chunks.len(), 1 + 3 + 1);
        }
    }
    assert_eq!((d.successes(), d.faults()), (2, 0));
    eventually("in_flight 0", || d.in_flight() == 0).await;
}

// ----------------------------------------------------------- prefill

#[tokio::test]
async fn prefill_continuation_non_stream() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 6,
        ..Behavior::default()
    });
    let full = canonical_text(6);
    for (prefill, continuation, remaining) in [
        ("alpha bravo ", "charlie delta echo foxtrot", 4),
        ("alpha bravo", " charlie delta echo foxtrot", 4),
        ("alpha", " bravo charlie delta echo foxtrot", 5),
        ("alpha bravo charlie delta echo ", "foxtrot", 1),
    ] {
        let body = prefill_body(json!(prefill), false);
        let (status, v) = post_json(d, &body).await;
        assert_eq!(status, 200, "{v}");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content, continuation, "prefill {prefill:?}");
        assert_eq!(format!("{prefill}{content}"), full);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let prompt = estimate_prompt_tokens(&body);
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": prompt, "completion_tokens": remaining, "total_tokens": prompt + remaining})
        );
    }
    assert_eq!(d.prefill_requests(), 4);

    // Not a prefix at a token boundary: the full answer.
    for prefill in [
        json!("alpha bra"),
        json!("bravo"),
        json!(" alpha"),
        json!("alpha  bravo"),
    ] {
        let (_, v) = post_json(d, &prefill_body(prefill.clone(), false)).await;
        assert_eq!(v["choices"][0]["message"]["content"], full, "{prefill}");
        assert_eq!(v["usage"]["completion_tokens"], 6);
    }
    assert_eq!(d.prefill_requests(), 8);

    // Text parts, Mistral's `prefix`, vLLM's `continue_final_message`,
    // other trailing whitespace, and `max_tokens` on the new tokens.
    let mut body = prefill_body(
        json!([{"type": "text", "text": "alpha "}, {"type": "text", "text": "bravo\n"}]),
        false,
    );
    body["messages"][1]["prefix"] = json!(true);
    body["continue_final_message"] = json!(true);
    let (_, v) = post_json(d, &body).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "charlie delta echo foxtrot"
    );
    body["max_tokens"] = json!(2);
    let (_, v) = post_json(d, &body).await;
    assert_eq!(v["choices"][0]["message"]["content"], "charlie delta");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    // The whole answer prefilled: nothing left.
    let (_, v) = post_json(d, &prefill_body(json!(full), false)).await;
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["usage"]["completion_tokens"], 0);

    assert_eq!(d.prefill_requests(), 11);
    assert_eq!((d.successes(), d.faults()), (11, 0));
}

#[tokio::test]
async fn prefill_continuation_stream() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.set_behavior(Behavior {
        completion_tokens: 5,
        ..Behavior::default()
    });
    for (prefill, chunks) in [
        ("alpha bravo ", vec!["charlie ", "delta ", "echo"]),
        ("alpha bravo", vec![" charlie ", "delta ", "echo"]),
        ("", vec!["alpha ", "bravo ", "charlie ", "delta ", "echo"]),
    ] {
        let body = prefill_body(json!(prefill), true);
        let r = post(d, &body).await;
        assert_eq!(r.status(), 200);
        let events = sse_events(&r.text().await.unwrap());
        assert_eq!(events.last().unwrap(), "[DONE]");
        let tokens = contents(&events);
        assert_eq!(tokens, chunks, "prefill {prefill:?}");
        assert_eq!(format!("{prefill}{}", tokens.concat()), canonical_text(5));
        let finish: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        let prompt = estimate_prompt_tokens(&body);
        let n = chunks.len() as u64;
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n})
        );
    }

    // Stream faults count continuation chunks.
    d.fail_next(1, Fault::MalformedEventAt(1));
    let events = sse_events(
        &post(d, &prefill_body(json!("alpha bravo"), true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events[2], MALFORMED);
    assert_eq!(contents(&events).concat(), " charlie delta echo");
    assert_eq!(d.prefill_requests(), 4);
}

#[tokio::test]
async fn reject_prefill_is_a_400_fault() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.update_behavior(|b| b.reject_prefill = true);
    d.fail_next(1, Fault::status(503));
    for stream in [false, true] {
        let (status, v) = post_json(d, &prefill_body(json!("alpha "), stream)).await;
        assert_eq!(status, 400);
        assert_eq!(
            v["error"]["message"],
            "This model does not support assistant message prefill"
        );
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "prefill_not_supported");
    }
    assert_eq!((d.faults(), d.successes(), d.prefill_requests()), (2, 0, 2));
    assert_eq!(
        d.script_len(),
        1,
        "the rejection does not consume the script"
    );

    // Requests without a prefill are served as usual.
    let (status, _) = post_json(d, &chat_body(false)).await;
    assert_eq!(status, 503);
    let (status, v) = post_json(d, &chat_body(false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], canonical_text(16));
    // An assistant message that is not the last one is not a prefill.
    let mut body = chat_body(false);
    body["messages"] = json!([{"role": "assistant", "content": "hi"}, user()]);
    assert_eq!(post_json(d, &body).await.0, 200);
    assert_eq!((d.faults(), d.successes(), d.prefill_requests()), (3, 2, 2));
}

#[tokio::test]
async fn prefill_requests_are_counted_per_deployment_and_reset() {
    let server = MockServer::start(2).await.unwrap();
    let (d0, d1) = (server.deployment(0), server.deployment(1));
    d0.fail_next(1, Fault::status(500));
    assert_eq!(
        post_json(d0, &prefill_body(json!("alpha"), false)).await.0,
        500
    );
    assert_eq!(
        post_json(d0, &prefill_body(json!(null), false)).await.0,
        200
    );
    assert_eq!(post_json(d0, &chat_body(false)).await.0, 200);
    assert_eq!((d0.prefill_requests(), d1.prefill_requests()), (2, 0));
    assert_eq!(d0.stats().prefill_requests, 2);
    d0.reset_counts();
    assert_eq!(d0.prefill_requests(), 0);
}

// ----------------------------------------------------- control plane

#[tokio::test]
async fn control_plane_kinds_and_reject_prefill() {
    let server = MockServer::start(1).await.unwrap();
    let d = server.deployment(0);
    d.update_behavior(|b| b.completion_tokens = 3);
    let c = client();
    let ctl = |p: &str| format!("{}/__mock/{p}", d.root_url());
    let fail_next = |body: Value| {
        let c = c.clone();
        let url = ctl("fail_next");
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{body}");
        }
    };

    fail_next(json!({"kind": "stall_after", "chunks": 1, "delay_ms": 250})).await;
    let mut events = EventReader::new(post(d, &chat_body(true)).await);
    let mut got = Vec::new();
    while let Some(e) = events.next().await {
        got.push(e);
    }
    assert!(got[2].1 - got[1].1 >= Duration::from_millis(250));
    assert_eq!(got.last().unwrap().0, "[DONE]");

    fail_next(json!({"kind": "malformed_event_at", "chunks": 3})).await;
    let events = sse_events(&post(d, &chat_body(true)).await.text().await.unwrap());
    assert_eq!(events[4], MALFORMED);

    fail_next(json!({"kind": "omit_done"})).await;
    let text = post(d, &chat_body(true)).await.text().await.unwrap();
    assert!(!text.contains("[DONE]") && text.contains("\"finish_reason\":\"stop\""));
    assert_eq!((d.successes(), d.faults(), d.script_len()), (3, 0, 0));

    let r = c
        .post(ctl("behavior"))
        .json(&json!({"reject_prefill": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["reject_prefill"], true);
    assert!(d.behavior().reject_prefill);
    let (status, v) = post_json(d, &prefill_body(json!("alpha"), false)).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("prefill_not_supported"))
    );
    let stats: Value = c
        .get(ctl("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["prefill_requests"], 1);
    assert_eq!(stats["faults"], 1);
}
