//! The cooldown bus against a real `redis-server`.

// Waiting on a real server needs real time (short polls, bounded).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // Shared with the conformance tests, which use all of it.
mod support;

use std::time::{Duration, Instant};

use lb_core::CooldownBus;
use lb_redis::RedisCooldownBus;
use support::RedisServer;

async fn subscribers(url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .unwrap();
    n
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_dropped_listener_unsubscribes_without_waiting_for_a_message() {
    let server = RedisServer::start();
    let url = server.url();
    let bus = RedisCooldownBus::new(&url, "busdrop");
    let rx = bus.subscribe().await.unwrap();
    until("the subscription", async || {
        subscribers(&url, "busdrop:cooldowns").await == 1
    })
    .await;
    drop(rx);
    until("the unsubscription", async || {
        subscribers(&url, "busdrop:cooldowns").await == 0
    })
    .await;
}
