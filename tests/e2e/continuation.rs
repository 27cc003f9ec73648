//! Streams that survive faults: a broken stream is continued by another
//! deployment from the text already delivered; when it cannot be, the
//! client gets an honest error event and no `[DONE]`.

use std::time::Duration;

use lb_e2e::Harness;
use lb_mock::Fault;
use serde_json::{Value, json};

const TOKENS: u32 = 60;

/// Two deployments of one group; `first` is always ranked first.
async fn pair(settings: &str) -> Harness {
    pair_with(settings, ["", ""]).await
}

/// [`pair`], with `params[i]` (`, key: value` pairs) added to the
/// `litellm_params` of deployment `i`.
async fn pair_with(settings: &str, params: [&str; 2]) -> Harness {
    let h = Harness::start_with(2, |u| {
        let mut yaml = String::from("model_list:\n");
        for (i, (id, w)) in [("first", 1000), ("second", 1)].into_iter().enumerate() {
            let extra = params[i];
            yaml.push_str(&format!(
                "  - model_name: g\n    litellm_params: {{model: openai_like/m, api_base: \"{}\", weight: {w}{extra}}}\n    model_info: {{id: {id}}}\n",
                u[i]
            ));
        }
        yaml.push_str(&format!("router_settings:\n  routing_seed: 1\n{settings}"));
        yaml
    })
    .await;
    for d in h.mock.deployments() {
        d.update_behavior(|b| b.completion_tokens = TOKENS);
        d.record_requests(true);
    }
    h
}

struct Sse {
    chunks: Vec<Value>,
    done: bool,
    error: Option<Value>,
}

impl Sse {
    fn text(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| {
                c["choices"]
                    .get(0)?
                    .get("delta")?
                    .get("content")?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    fn finish_reasons(&self) -> Vec<&Value> {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"].get(0).map(|ch| &ch["finish_reason"]))
            .filter(|f| !f.is_null())
            .collect()
    }
}

async fn stream(h: &Harness, include_usage: bool) -> Sse {
    let body = json!({
        "model": "g",
        "messages": [{"role": "user", "content": "tell me a story"}],
        "stream": true,
        "stream_options": {"include_usage": include_usage}
    });
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut sse = Sse {
        chunks: Vec::new(),
        done: false,
        error: None,
    };
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event.trim_start_matches("data: ");
        assert!(!sse.done, "nothing may follow [DONE]");
        if data == "[DONE]" {
            sse.done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            sse.error = Some(v);
        } else {
            assert!(sse.error.is_none(), "nothing may follow an error event");
            sse.chunks.push(v);
        }
    }
    sse
}

#[tokio::test]
async fn a_stream_cut_after_40_of_60_tokens_is_finished_by_another_deployment() {
    let h = pair("").await;
    h.dep(0).fail_next(1, Fault::CutStreamAfter(40));
    let sse = stream(&h, true).await;
    assert_eq!(
        sse.text(),
        lb_mock::canonical_text(TOKENS),
        "all 60 tokens, exactly once, in order"
    );
    assert!(sse.done && sse.error.is_none());
    assert_eq!(sse.finish_reasons().len(), 1, "one finish_reason");
    // One answer: the continuation speaks under the original id.
    let ids: std::collections::HashSet<&str> =
        sse.chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let last_content = sse
        .chunks
        .iter()
        .rev()
        .find(|c| {
            c["choices"]
                .get(0)
                .is_some_and(|ch| !ch["finish_reason"].is_null())
        })
        .unwrap();
    let cont = &last_content[lb_router::CONTINUATION_FIELD];
    assert_eq!(cont["continued_by"], "second", "{last_content}");
    assert_eq!(cont["failed_deployment"], "first");
    // Combined usage: all 60 completion tokens.
    let usage = sse
        .chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| !u.is_null()))
        .unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((55..=65).contains(&completion), "{usage}");
    // What the mocks saw: one request each; the second got the prefill.
    assert_eq!((h.dep(0).requests(), h.dep(1).requests()), (1, 1));
    assert_eq!(h.dep(1).prefill_requests(), 1);
    let prefill = &h.dep(1).recorded()[0].body["messages"];
    let last = &prefill[prefill.as_array().unwrap().len() - 1];
    assert_eq!(last["role"], "assistant");
    assert!(
        sse.text().starts_with(last["content"].as_str().unwrap()),
        "the prefill is what the client got first"
    );
    let m = h.scrape().await;
    let continued = [("outcome", "success")];
    assert_eq!(
        lb_e2e::metric(&m, "lb_stream_continuations_total", &continued),
        1.0
    );
}

#[tokio::test]
async fn a_stall_is_detected_at_the_idle_timeout_and_completed_by_continuation() {
    // The short idle timeout is the stalling deployment's only: the
    // continuation's stream is not raced against 300 ms of real time.
    let h = pair_with("", [", stream_idle_timeout: 0.3", ""]).await;
    h.dep(0).fail_next(
        1,
        Fault::StallAfter {
            tokens: 20,
            stall: Duration::from_secs(20),
        },
    );
    // The stall lasts 20 s; the answer completes through the second
    // deployment's continuation, so the stall was detected at the idle timeout.
    let sse = stream(&h, false).await;
    assert_eq!(sse.text(), lb_mock::canonical_text(TOKENS));
    assert!(sse.done && sse.error.is_none());
    assert_eq!(h.dep(1).prefill_requests(), 1);
    let health = h.router.deployment_stats();
    assert_eq!(
        health[0].1.failures, 1,
        "the stalled deployment's failure is recorded"
    );
}

#[tokio::test]
async fn one_malformed_event_does_not_kill_a_good_answer() {
    let h = pair("").await;
    h.dep(0).fail_next(1, Fault::MalformedEventAt(10));
    let sse = stream(&h, false).await;
    assert_eq!(sse.text(), lb_mock::canonical_text(TOKENS));
    assert!(sse.done && sse.error.is_none());
    assert_eq!(h.dep(1).requests(), 0, "no continuation was needed");
}

#[tokio::test]
async fn a_missing_done_after_finish_reason_completes_promptly_with_usage() {
    let h = pair("  stream_idle_timeout: 20\n").await;
    h.dep(0).fail_next(1, Fault::OmitDone);
    // The body ends right after the usage chunk: that end is the answer's end.
    let sse = stream(&h, true).await;
    assert!(sse.done, "the gateway ends a complete stream with [DONE]");
    assert!(sse.error.is_none());
    assert_eq!(sse.text(), lb_mock::canonical_text(TOKENS));
    let usage = sse
        .chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| !u.is_null()))
        .unwrap();
    assert_eq!(usage["completion_tokens"], TOKENS);
    assert_eq!(h.dep(1).requests(), 0);
}

#[tokio::test]
async fn a_rejected_prefill_ends_with_the_original_error_and_no_done() {
    let h = pair("").await;
    h.dep(0).fail_next(1, Fault::CutStreamAfter(40));
    h.dep(1).update_behavior(|b| b.reject_prefill = true);
    let sse = stream(&h, false).await;
    assert!(!sse.done, "a truncated answer must not look complete");
    let err = sse.error.clone().expect("an error event");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        !msg.contains("prefill"),
        "the error describes the cut, not the prefill: {msg}"
    );
    assert!(msg.contains("stream"), "{msg}");
    assert_eq!(h.dep(1).prefill_requests(), 1, "the continuation was tried");
    assert_eq!(
        sse.text().trim_end(),
        lb_mock::canonical_text(40),
        "the 40 tokens delivered, nothing more"
    );
    let m = h.scrape().await;
    let failed = [("outcome", "failure")];
    assert_eq!(
        lb_e2e::metric(&m, "lb_stream_continuations_total", &failed),
        1.0
    );
    assert_eq!(
        lb_e2e::metric(
            &m,
            "lb_stream_continuations_total",
            &[("outcome", "success")]
        ),
        0.0
    );
}

#[tokio::test]
async fn when_no_deployment_accepts_a_prefill_a_cut_ends_with_the_original_error() {
    // OpenAI's API answers a trailing assistant message anew, so deployments
    // that speak it cannot continue text: the router keeps none and asks no one.
    let no_prefill = ", supports_prefill: false";
    let h = pair_with("", [no_prefill, no_prefill]).await;
    h.dep(0).fail_next(1, Fault::CutStreamAfter(40));
    let sse = stream(&h, false).await;
    assert!(!sse.done, "a truncated answer must not look complete");
    let err = sse.error.clone().expect("an error event");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("stream"),
        "{err}"
    );
    assert_eq!(sse.text().trim_end(), lb_mock::canonical_text(40));
    assert_eq!(h.dep(1).requests(), 0, "no continuation was asked for");
    let m = h.scrape().await;
    assert_eq!(
        lb_e2e::metric(
            &m,
            "lb_stream_continuations_total",
            &[("outcome", "failure")]
        ),
        1.0,
        "the break is counted as not continued"
    );
}

#[tokio::test]
async fn with_continuation_disabled_a_cut_ends_with_an_error_event() {
    let h = pair("  max_stream_continuations: 0\n").await;
    h.dep(0).fail_next(1, Fault::CutStreamAfter(40));
    let sse = stream(&h, false).await;
    assert!(!sse.done);
    assert!(sse.error.is_some());
    assert_eq!(h.dep(1).requests(), 0);
}

#[tokio::test]
async fn a_break_after_the_role_chunk_is_answered_afresh_by_another_deployment() {
    let h = pair("").await;
    h.dep(0).fail_next(1, Fault::CutStreamAfter(0));
    let sse = stream(&h, false).await;
    assert_eq!(sse.text(), lb_mock::canonical_text(TOKENS));
    assert!(sse.done && sse.error.is_none());
    assert_eq!(
        h.dep(1).prefill_requests(),
        0,
        "nothing to continue from: a fresh answer"
    );
    assert_eq!(h.dep(1).requests(), 1);
    let roles = sse
        .chunks
        .iter()
        .filter(|c| {
            c["choices"]
                .get(0)
                .is_some_and(|ch| ch["delta"].get("role").is_some())
        })
        .count();
    assert_eq!(roles, 1, "the role is announced once");
}
