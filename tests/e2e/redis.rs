//! Several routers sharing one Redis behave as one router.

use lb_e2e::{Harness, RedisServer};
use lb_gateway::GatewayOptions;

fn config(mock_url: &str, redis_url: &str, extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{mock_url}\", rpm: 20}}\n    model_info: {{id: d}}\nrouter_settings:\n  redis_url: {redis_url}\n  redis_key_prefix: test\n{extra}"
    )
}

/// Another instance over `yaml` on `clock`: its router and its gateway.
async fn instance(
    yaml: &str,
    clock: lb_router::SharedClock,
) -> (lb_router::Router, lb_gateway::RunningGateway) {
    let config = lb_router::RouterConfig::from_yaml(yaml).unwrap();
    let router = lb_router::RouterBuilder::from_config(config)
        .clock(clock)
        .build()
        .unwrap();
    let gateway = lb_gateway::start(
        "127.0.0.1:0".parse().unwrap(),
        router.clone(),
        GatewayOptions::default(),
    )
    .await
    .unwrap();
    (router, gateway)
}

/// A second gateway over the same config (another instance), on the same
/// clock so both count in the same minute window.
async fn second(yaml: &str, clock: lb_router::SharedClock) -> lb_gateway::RunningGateway {
    instance(yaml, clock).await.1
}

/// Polls `done` every 10 ms, for up to 10 s: whether it came true.
async fn eventually<F, Fut>(mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

async fn burst(urls: &[String], calls: usize) -> (usize, usize) {
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..calls {
        let http = http.clone();
        let url = format!("{}/v1/chat/completions", urls[i % urls.len()]);
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
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (ok, limited)
}

/// `lb_limit_store_errors_total` and `lb_limit_store_fail_open_total` from GET /metrics.
async fn store_metrics(h: &Harness) -> (f64, f64) {
    let s = h.scrape().await;
    (
        lb_e2e::metric(&s, "lb_limit_store_errors_total", &[]),
        lb_e2e::metric(&s, "lb_limit_store_fail_open_total", &[]),
    )
}

#[tokio::test]
async fn two_instances_share_one_rpm_limit_exactly() {
    let redis = RedisServer::start().await;
    let mut yaml = String::new();
    let h = Harness::start_with(1, |u| {
        yaml = config(&u[0], &redis.url(), "");
        yaml.clone()
    })
    .await;
    let other = second(&yaml, h.clock.shared()).await;
    let (ok, limited) = burst(&[h.gateway.url(), other.url()], 60).await;
    assert_eq!(
        (ok, limited),
        (20, 40),
        "a global rpm of 20 across both instances"
    );
    assert_eq!(h.dep(0).requests(), 20);
}

#[tokio::test]
async fn with_redis_down_calls_keep_flowing_and_limits_return_with_it() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let mut yaml = String::new();
    let h = Harness::start_with(1, |u| {
        yaml = config(&u[0], &redis.url(), "");
        yaml.clone()
    })
    .await;
    assert_eq!(burst(&[h.gateway.url()], 5).await, (5, 0));
    redis.kill();
    // Fail open: no call fails only because Redis is down (and it is past
    // the limit now). Batches of 10 stay under the per-process concurrency
    // cap LiteLLM derives from rpm (20).
    for _ in 0..3 {
        assert_eq!(burst(&[h.gateway.url()], 10).await, (10, 0));
    }
    let (errors, fail_open) = store_metrics(&h).await;
    assert_eq!(fail_open, 30.0, "each call let through is counted once");
    assert_eq!(errors, fail_open);
    // Redis returns (empty). Wait until the router reads it again: each
    // scrape reads the remaining requests from the store, and only a read
    // that succeeds sets the gauge (none did yet; the old server would have
    // said 15), so the fresh server's full 20 means the store is back. Then
    // limits are shared again.
    let _redis = RedisServer::start_on(port).await;
    let back = eventually(|| async {
        let s = h.scrape().await;
        s.samples.iter().any(|x| {
            x.metric == "litellm_remaining_requests_metric"
                && x.labels.get("model_id") == Some("d")
                && matches!(x.value, lb_e2e::MetricValue::Gauge(v) if v == 20.0)
        })
    })
    .await;
    assert!(back, "the router never read the restarted Redis");
    assert_eq!(
        burst(&[h.gateway.url()], 40).await,
        (20, 20),
        "limits hold again"
    );
}

#[tokio::test]
async fn fail_closed_refuses_calls_that_need_a_limit_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let h = Harness::start_with(1, |u| {
        config(&u[0], &redis.url(), "  redis_fail_mode: closed\n")
    })
    .await;
    assert_eq!(burst(&[h.gateway.url()], 3).await, (3, 0));
    redis.kill();
    assert_eq!(burst(&[h.gateway.url()], 3).await, (0, 3));
    assert_eq!(h.dep(0).requests(), 3);
    let (errors, fail_open) = store_metrics(&h).await;
    assert_eq!((errors, fail_open), (3.0, 0.0), "refused, not let through");
}

#[tokio::test]
async fn a_cooldown_set_through_one_instance_is_honoured_by_the_other() {
    let redis = RedisServer::start().await;
    let mut yaml = String::new();
    let h = Harness::start_with(2, |u| {
        yaml = format!(
            "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", weight: 1000}}\n    model_info: {{id: limited}}\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", weight: 1}}\n    model_info: {{id: fine}}\nrouter_settings:\n  redis_url: {}\n  redis_key_prefix: share\n  routing_seed: 1\n",
            u[0],
            u[1],
            redis.url()
        );
        yaml.clone()
    })
    .await;
    let other_clock = lb_router::ManualClock::new();
    let (other_router, other) = instance(&yaml, other_clock.shared()).await;
    // (Instance two may subscribe after the cooldown is published: it then
    // reads the cooldowns stored in Redis.)
    h.dep(0).update_behavior(|b| {
        b.failure_rate = 1.0;
        b.failure = lb_mock::Fault::rate_limited(Some(lb_mock::RetryAfter::Seconds(30)));
    });
    // Instance one meets the 429 and cools "limited" down.
    assert_eq!(burst(&[h.gateway.url()], 1).await, (1, 0));
    assert_eq!(h.dep(0).requests(), 1);
    // Instance two learns it (pub/sub): wait for the message, then no call of its reaches "limited".
    let shared = eventually(|| async { !other_router.health()[0].healthy }).await;
    assert!(shared, "the cooldown reached the other instance");
    let reason = other_router.health()[0].reason.clone().unwrap();
    assert!(
        reason.starts_with("cooled down by another instance: rate limited"),
        "{reason}"
    );
    assert_eq!(burst(&[other.url()], 10).await, (10, 0));
    assert_eq!(
        h.dep(0).requests(),
        1,
        "instance two never called the cooled deployment"
    );
}

#[tokio::test]
async fn two_instances_share_one_provider_budget() {
    let redis = RedisServer::start().await;
    let mut yaml = String::new();
    let h = Harness::start_with(1, |u| {
        yaml = format!(
            "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}\n    model_info: {{id: d}}\nrouter_settings:\n  redis_url: {}\n  redis_key_prefix: budget\n  provider_budget_config:\n    openai: {{budget_limit: 0.0001, time_period: 1d}}\n",
            u[0],
            redis.url()
        );
        yaml.clone()
    })
    .await;
    let other = second(&yaml, h.clock.shared()).await;
    let http = reqwest::Client::new();
    let mut body = Harness::chat("g");
    body["max_tokens"] = serde_json::json!(16);
    let mut ok = 0;
    for i in 0..10 {
        let url = if i % 2 == 0 {
            h.gateway.url()
        } else {
            other.url()
        };
        let status = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            ok += 1;
        } else {
            assert_eq!(status, 429);
        }
    }
    // $0.0001 at about $0.000026 reserved and $0.000021 spent per call: 3 or 4
    // calls in all (one instance alone would admit as many; two unshared
    // budgets would admit twice that).
    assert!(
        (3..=4).contains(&ok),
        "{ok} calls admitted across both instances"
    );
    assert_eq!(h.dep(0).requests(), ok);
}

/// Half-open state is shared: when a cooldown ends, one trial call goes to
/// the deployment among all instances, and when it passes every instance
/// takes the deployment back.
#[tokio::test]
async fn one_trial_call_among_instances_and_its_success_is_shared() {
    let redis = RedisServer::start().await;
    let mut yaml = String::new();
    let h = Harness::start_with(2, |u| {
        yaml = format!(
            "model_list:\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", order: 1}}\n    model_info: {{id: primary}}\n  - model_name: g\n    litellm_params: {{model: openai/m, api_base: \"{}\", order: 2}}\n    model_info: {{id: backup}}\nrouter_settings:\n  redis_url: {}\n  redis_key_prefix: trial\n",
            u[0],
            u[1],
            redis.url()
        );
        yaml.clone()
    })
    .await;
    let other_clock = lb_router::ManualClock::new();
    let (other_router, other) = instance(&yaml, other_clock.shared()).await;
    let state = |r: &lb_router::Router| r.health()[0].healthy;
    // Instance one meets a 429 (Retry-After 5 s): "primary" cools down
    // there and, through Redis, in instance two.
    h.dep(0).fail_next(
        1,
        lb_mock::Fault::rate_limited(Some(lb_mock::RetryAfter::Seconds(5))),
    );
    assert_eq!(burst(&[h.gateway.url()], 1).await, (1, 0));
    let shared = eventually(|| async { !state(&other_router) }).await;
    assert!(shared, "the cooldown reached instance two");
    // Both cooldowns end; "primary" is half-open in both, and slow to answer.
    h.clock.advance(std::time::Duration::from_secs(6));
    other_clock.advance(std::time::Duration::from_secs(6));
    h.dep(0)
        .update_behavior(|b| b.latency = std::time::Duration::from_millis(300));
    h.dep(0).reset_counts();
    h.dep(1).reset_counts();
    // One call through each instance at once: one of them sends the trial,
    // the other goes to the backup instead of a second trial.
    assert_eq!(burst(&[h.gateway.url(), other.url()], 2).await, (2, 0));
    assert_eq!(
        (h.dep(0).requests(), h.dep(1).requests()),
        (1, 1),
        "one trial call in all"
    );
    // The trial passed: instance two hears it and closes "primary" without
    // a trial of its own (its state gauge goes from half-open to healthy).
    let primary_state = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("litellm_deployment_state{") && l.contains("model_id=\"primary\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    // Both instances: whichever sent the trial closed it on its success.
    let closed = eventually(|| async {
        primary_state(&other_router.metrics_text().await).as_deref() == Some("0")
            && primary_state(&h.router.metrics_text().await).as_deref() == Some("0")
    })
    .await;
    assert!(closed, "{}", other_router.metrics_text().await);
    h.dep(0)
        .update_behavior(|b| b.latency = std::time::Duration::ZERO);
    assert_eq!(burst(&[h.gateway.url(), other.url()], 4).await, (4, 0));
    assert_eq!(
        (h.dep(0).requests(), h.dep(1).requests()),
        (5, 1),
        "every call since goes to the primary"
    );
}

/// Strategy statistics are shared (approximately, once per
/// `redis_stats_interval`): calls held in flight on one instance steer
/// `least-busy` on the other.
#[tokio::test]
async fn in_flight_counts_are_shared_for_least_busy() {
    let redis = RedisServer::start().await;
    let mut yaml = String::new();
    let h = Harness::start_with(2, |u| {
        yaml = format!(
            "{}{}router_settings:\n  routing_strategy: least-busy\n  redis_url: {}\n  redis_key_prefix: load\n  redis_stats_interval: 0.5\n",
            lb_e2e::entry("g", "d0", &u[0], ""),
            lb_e2e::entry("g", "d1", &u[1], ""),
            redis.url()
        );
        format!("model_list:\n{yaml}")
    })
    .await;
    let yaml = format!("model_list:\n{yaml}");
    let other_clock = lb_router::ManualClock::new();
    let (other_router, other) = instance(&yaml, other_clock.shared()).await;
    // Instance one holds three calls on d0 (addressed by id; the upstream hangs).
    h.dep(0).fail_next(3, lb_mock::Fault::Hang);
    let mut held = Vec::new();
    for _ in 0..3 {
        let http = h.http.clone();
        let url = format!("{}/v1/chat/completions", h.gateway.url());
        held.push(tokio::spawn(async move {
            let _ = http.post(url).json(&Harness::chat("d0")).send().await;
        }));
    }
    // Instance two learns it within a few intervals.
    let seen = eventually(|| async { other_router.in_flight_everywhere()[0].1 == 3 }).await;
    assert!(seen, "{:?}", other_router.in_flight_everywhere());
    assert_eq!(other_router.in_flight_everywhere()[1].1, 0);
    // Its own counts are zero on both, yet each of its calls (one at a
    // time) goes to d1.
    for _ in 0..10 {
        assert_eq!(burst(&[other.url()], 1).await, (1, 0));
    }
    assert_eq!(
        (h.dep(0).requests(), h.dep(1).requests()),
        (3, 10),
        "least-busy on instance two saw instance one's calls on d0"
    );
    for t in held {
        t.abort();
    }
}

#[tokio::test]
async fn the_cooldown_listener_ends_when_its_router_is_dropped() {
    let redis = RedisServer::start().await;
    let router =
        lb_router::Router::from_yaml(&config("http://127.0.0.1:9", &redis.url(), "")).unwrap();
    let task = router
        .spawn_cooldown_listener()
        .expect("a listener when Redis is configured");
    // No cooldown message ever comes: the task must still end with its router.
    drop(router);
    assert!(
        eventually(|| async { task.is_finished() }).await,
        "the listener outlived its router"
    );
}
