//! Routing strategies, order and tags through the gateway against lb-mock.

use std::time::Duration;

use lb_e2e::Harness;

fn entry(id: &str, url: &str, extra: &str) -> String {
    lb_e2e::entry("g", id, url, extra)
}
use lb_mock::Fault;
use serde_json::{Value, json};

async fn served_by(h: &Harness, body: &Value) -> String {
    let resp = h.post("/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["x-litellm-model-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn slow_one_loses_traffic(strategy: &str) {
    let h = Harness::start_real_clock(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  routing_strategy: {strategy}\n",
            entry("fast", &u[0], ""),
            entry("slow", &u[1], "")
        )
    })
    .await;
    // 250 ms: a fast call stalled past the slow one's latency (on a busy
    // machine) would make the strategies rightly prefer the slow one for a
    // while; 40 ms left little room for such a stall.
    h.dep(1)
        .update_behavior(|b| b.latency = Duration::from_millis(250));
    for _ in 0..30 {
        served_by(&h, &Harness::chat("g")).await;
    }
    let slow = h.dep(1).requests();
    println!("{strategy}: slow deployment served {slow} of 30");
    assert!(
        slow <= 2,
        "{strategy}: the slow deployment got {slow} of 30 calls"
    );
}

#[tokio::test]
async fn latency_based_routing_moves_traffic_off_a_slow_deployment() {
    slow_one_loses_traffic("latency-based-routing").await;
}

#[tokio::test]
async fn latency_p2c_moves_traffic_off_a_slow_deployment() {
    slow_one_loses_traffic("latency-p2c").await;
}

#[tokio::test]
async fn least_busy_avoids_a_deployment_held_busy() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  routing_strategy: least-busy\n",
            entry("a", &u[0], ""),
            entry("b", &u[1], "")
        )
    })
    .await;
    // Hold a busy: two streams addressed to it by id, which stall after
    // their first token for longer than the test lasts (a slow call would
    // only hold it for a window of real time the test could overrun).
    h.dep(0).fail_next(
        2,
        Fault::StallAfter {
            tokens: 1,
            stall: Duration::from_secs(60),
        },
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let body =
            json!({"model": "a", "messages": [{"role": "user", "content": "hi"}], "stream": true});
        let resp = h.post("/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    assert_eq!(h.dep(0).in_flight(), 2);
    for _ in 0..10 {
        assert_eq!(served_by(&h, &Harness::chat("g")).await, "b");
    }
    assert_eq!(h.dep(0).in_flight(), 2, "a was busy all along");
    drop(held);
    assert_eq!((h.dep(0).requests(), h.dep(1).requests()), (2, 10));
}

#[tokio::test]
async fn cost_based_routing_picks_the_cheapest() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  routing_strategy: cost-based-routing\n",
            entry(
                "dear",
                &u[0],
                "      input_cost_per_token: 0.00001\n      output_cost_per_token: 0.00003\n"
            ),
            entry(
                "cheap",
                &u[1],
                "      input_cost_per_token: 0.000001\n      output_cost_per_token: 0.000002\n"
            )
        )
    })
    .await;
    for _ in 0..10 {
        assert_eq!(served_by(&h, &Harness::chat("g")).await, "cheap");
    }
}

#[tokio::test]
async fn usage_based_routing_spreads_by_tokens_and_never_pushes_one_over() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}router_settings:\n  routing_strategy: usage-based-routing-v2\n",
            entry("a", &u[0], "      tpm: 100\n"),
            entry("b", &u[1], "      tpm: 100\n")
        )
    })
    .await;
    let mut body = Harness::chat("g");
    body["max_tokens"] = json!(20);
    let mut ok = 0;
    for _ in 0..12 {
        let resp = h.post("/v1/chat/completions", &body).await;
        if resp.status() == 200 {
            ok += 1;
        } else {
            assert_eq!(resp.status(), 429);
        }
    }
    let (a, b) = (h.dep(0).requests(), h.dep(1).requests());
    assert!(a.abs_diff(b) <= 1, "lowest usage first: {a} vs {b}");
    assert_eq!(a + b, ok);
    assert!(
        (6..=8).contains(&ok),
        "about 100 / 21 calls fit in each: {ok}"
    );
}

#[tokio::test]
async fn order_1_takes_all_traffic_until_it_fails() {
    let h = Harness::start_with(2, |u| {
        format!(
            "model_list:\n{}{}",
            entry("primary", &u[0], "      order: 1\n"),
            entry("backup", &u[1], "      order: 2\n")
        )
    })
    .await;
    for _ in 0..10 {
        assert_eq!(served_by(&h, &Harness::chat("g")).await, "primary");
    }
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = Fault::status(503);
    });
    for _ in 0..10 {
        assert_eq!(served_by(&h, &Harness::chat("g")).await, "backup");
    }
    assert_eq!(
        h.dep(1).requests(),
        10,
        "order 2 only served once order 1 failed"
    );
}

#[tokio::test]
async fn tags_keep_only_matching_and_default_deployments() {
    let h = Harness::start_with(3, |u| {
        format!(
            "model_list:\n{}{}{}router_settings:\n  enable_tag_filtering: true\n  routing_seed: 7\n",
            entry("paid", &u[0], "      tags: [paid]\n"),
            entry("free", &u[1], "      tags: [free]\n"),
            entry("fallback", &u[2], "      tags: [default]\n")
        )
    })
    .await;
    let tagged = |tags: Value| json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": tags}});
    for _ in 0..10 {
        let by = served_by(&h, &tagged(json!(["paid"]))).await;
        assert!(by == "paid" || by == "fallback", "{by}");
        let by = served_by(&h, &json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "tags": ["free"]})).await;
        assert!(by == "free" || by == "fallback", "{by}");
        assert_eq!(
            served_by(&h, &Harness::chat("g")).await,
            "fallback",
            "untagged: default only"
        );
    }
    assert!(h.dep(0).requests() > 0 && h.dep(1).requests() > 0);
}

#[tokio::test]
async fn a_request_whose_tags_match_nothing_gets_400() {
    let h = Harness::start_with(1, |u| {
        format!(
            "model_list:\n{}router_settings:\n  enable_tag_filtering: true\n",
            entry("paid", &u[0], "      tags: [paid]\n")
        )
    })
    .await;
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": ["vip"]}});
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"].as_str().unwrap().contains("tags"),
        "{err}"
    );
    assert_eq!(h.dep(0).requests(), 0);
}
