//! One suite of state-trait cases, run against `lb_budget::MemoryStore` and
//! `RedisStore` (on a `redis-server` the harness starts), plus cases only a
//! shared backend has: several instances, Redis going away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lb_budget::MemoryStore;
use lb_core::{
    ConcurrencyPermit, ConcurrencyStore, CounterKey, CounterStore, Reserve, ReserveError, Window,
};
use lb_redis::RedisStore;
use support::RedisServer;

/// The two faces of one backend under test.
struct Stores {
    counters: Arc<dyn CounterStore>,
    concurrency: Arc<dyn ConcurrencyStore>,
    /// The port of the Redis server behind them (`None`: the memory store).
    redis_port: Option<u16>,
}

/// How many scripts the Redis server on `redis_port` has run; 0 without one
/// (the memory store applies every update at once).
async fn scripts_run(redis_port: Option<u16>) -> u64 {
    match redis_port {
        Some(port) => tokio::task::spawn_blocking(move || support::scripts_run(port))
            .await
            .unwrap(),
        None => 0,
    }
}

/// Waits until the backend has run `count` scripts in all, for up to 5 s:
/// on Redis, a fire-and-forget update (one script) sent after
/// [`scripts_run`] said `count - 1` has then landed.
async fn await_scripts_run(redis_port: Option<u16>, count: u64) {
    if redis_port.is_none() {
        return;
    }
    let mut last = 0;
    for _ in 0..500 {
        last = scripts_run(redis_port).await;
        if last >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server ran {last} scripts, want {count}");
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn item(key: &str, amount: u64, limit: u64) -> Reserve {
    Reserve {
        key: key.into(),
        window: Window::MINUTE,
        amount,
        limit,
    }
}

async fn value(store: &dyn CounterStore, key: &str, window: Window, now: SystemTime) -> u64 {
    store.get(&key.into(), window, now).await.unwrap()
}

/// Waits until `read` returns `want` (release and decrement are
/// fire-and-forget on a remote backend), for up to 5 s.
async fn eventually<F, Fut>(what: &str, want: u64, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = u64>,
{
    let mut last = 0;
    for _ in 0..500 {
        last = read().await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still {last}, want {want}");
}

fn denied(result: Result<lb_core::Reservation, ReserveError>) -> lb_core::Denied {
    match result {
        Err(ReserveError::Denied(d)) => *d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

// ---------------------------------------------------------------- cases

async fn reserve_is_all_or_nothing(s: Stores) {
    let c = &*s.counters;
    let now = at(600);
    let _ = c
        .reserve(&[item("rpm", 1, 2), item("tpm", 90, 100)], now)
        .await
        .unwrap();
    // tpm does not fit: rpm must not move either.
    let d = denied(
        c.reserve(&[item("rpm", 1, 2), item("tpm", 20, 100)], now)
            .await,
    );
    assert_eq!(d.key.as_str(), "tpm");
    assert_eq!((d.current, d.requested, d.limit), (90, 20, 100));
    assert_eq!(value(c, "rpm", Window::MINUTE, now).await, 1);
    assert_eq!(value(c, "tpm", Window::MINUTE, now).await, 90);
    // Exactly at the limit fits, on both.
    let r = c
        .reserve(&[item("rpm", 1, 2), item("tpm", 10, 100)], now)
        .await
        .unwrap();
    assert_eq!(r.items().len(), 2);
    assert_eq!(r.items()[0].index, 10);
    assert_eq!(value(c, "rpm", Window::MINUTE, now).await, 2);
    assert_eq!(value(c, "tpm", Window::MINUTE, now).await, 100);
    // Nothing to reserve is always admitted.
    assert!(c.reserve(&[], now).await.unwrap().is_empty());
}

async fn denial_details(s: Stores) {
    let c = &*s.counters;
    let now = at(630); // half a minute in
    let _ = c.reserve(&[item("tpm", 70, 100)], now).await.unwrap();
    let d = denied(c.reserve(&[item("tpm", 31, 100)], now).await);
    assert_eq!(d.window, Window::MINUTE);
    assert_eq!((d.current, d.requested, d.limit), (70, 31, 100));
    assert_eq!(d.reset_at, at(660));
    assert_eq!(d.retry_after, Duration::from_secs(30));
    assert!(!d.exceeds_limit());
    let d = denied(c.reserve(&[item("tpm", 101, 100)], now).await);
    assert!(d.exceeds_limit());

    // Of several full counters, the one that resets last.
    let day = Reserve {
        key: "spend".into(),
        window: Window::DAY,
        amount: 5,
        limit: 1,
    };
    let d = denied(c.reserve(&[item("rpm", 2, 1), day], at(30)).await);
    assert_eq!(d.key.as_str(), "spend");
    assert_eq!(d.reset_at, at(86_400));
    assert_eq!(d.retry_after, Duration::from_secs(86_370));

    // Items on one counter are summed, and the denial counts the earlier ones.
    let d = denied(c.reserve(&[item("k", 6, 10), item("k", 6, 10)], now).await);
    assert_eq!((d.current, d.requested), (6, 6));
    assert_eq!(value(c, "k", Window::MINUTE, now).await, 0);
    let _ = c
        .reserve(&[item("k", 5, 10), item("k", 5, 10)], now)
        .await
        .unwrap();
    assert_eq!(value(c, "k", Window::MINUTE, now).await, 10);
}

async fn windows_reset_exactly_at_the_boundary(s: Stores) {
    let c = &*s.counters;
    let _ = c.reserve(&[item("rpm", 1, 1)], at(120)).await.unwrap();
    let last_nano = at(180) - Duration::from_nanos(1);
    let d = denied(c.reserve(&[item("rpm", 1, 1)], last_nano).await);
    assert_eq!(d.retry_after, Duration::from_nanos(1));
    assert_eq!(d.reset_at, at(180));
    let _ = c.reserve(&[item("rpm", 1, 1)], at(180)).await.unwrap();
    assert_eq!(value(c, "rpm", Window::MINUTE, at(180)).await, 1);
    assert_eq!(value(c, "rpm", Window::MINUTE, at(240)).await, 0);

    // Calendar months: Feb 29th 2024 noon resets on March 1st.
    let feb_29_noon = at(1_709_208_000);
    let mar_1 = at(1_709_251_200);
    let budget = |amount| Reserve {
        key: "budget".into(),
        window: Window::MONTH,
        amount,
        limit: 100,
    };
    let _ = c.reserve(&[budget(100)], feb_29_noon).await.unwrap();
    let d = denied(c.reserve(&[budget(1)], feb_29_noon).await);
    assert_eq!(d.reset_at, mar_1);
    assert_eq!(d.retry_after, Duration::from_secs(12 * 3_600));
    let _ = c.reserve(&[budget(100)], mar_1).await.unwrap();
}

async fn settle_up_and_down(s: Stores) {
    let c = &*s.counters;
    let now = at(60);
    let r = c
        .reserve(&[item("rpm", 1, 10), item("tpm", 100, 1_000)], now)
        .await
        .unwrap();
    c.settle(r, &[1, 250]).await.unwrap();
    assert_eq!(value(c, "tpm", Window::MINUTE, now).await, 250);
    let r = c.reserve(&[item("tpm", 500, 1_000)], now).await.unwrap();
    c.settle(r, &[20]).await.unwrap();
    assert_eq!(value(c, "tpm", Window::MINUTE, now).await, 270);
    // A missing actual means "as reserved".
    let r = c
        .reserve(&[item("tpm", 5, 1_000), item("x", 7, 10)], now)
        .await
        .unwrap();
    c.settle(r, &[5]).await.unwrap();
    assert_eq!(value(c, "x", Window::MINUTE, now).await, 7);

    // An overrun is counted and blocks even a zero-sized request.
    let r = c.reserve(&[item("o", 100, 100)], now).await.unwrap();
    c.settle(r, &[150]).await.unwrap();
    assert_eq!(value(c, "o", Window::MINUTE, now).await, 150);
    let d = denied(c.reserve(&[item("o", 0, 100)], now).await);
    assert_eq!(d.current, 150);

    // Never below zero: settling one reservation down twice.
    let r = c.reserve(&[item("z", 10, 100)], now).await.unwrap();
    c.settle(r.clone(), &[0]).await.unwrap();
    c.settle(r, &[0]).await.unwrap();
    assert_eq!(value(c, "z", Window::MINUTE, now).await, 0);
    let _ = c.reserve(&[item("z", 100, 100)], now).await.unwrap();
    assert!(c.reserve(&[item("z", 1, 100)], now).await.is_err());

    // After its window ended, settling changes nothing.
    let r = c
        .reserve(&[item("late", 100, 1_000)], at(119))
        .await
        .unwrap();
    let _ = c
        .reserve(&[item("late", 10, 1_000)], at(120))
        .await
        .unwrap();
    c.settle(r, &[900]).await.unwrap();
    assert_eq!(value(c, "late", Window::MINUTE, at(120)).await, 10);
}

async fn release_gives_everything_back(s: Stores) {
    let c = s.counters;
    let now = at(60);
    let r = c
        .reserve(&[item("rpm", 1, 1), item("tpm", 40, 100)], now)
        .await
        .unwrap();
    c.release(r);
    eventually("rpm after release", 0, || {
        value(&*c, "rpm", Window::MINUTE, now)
    })
    .await;
    eventually("tpm after release", 0, || {
        value(&*c, "tpm", Window::MINUTE, now)
    })
    .await;
    let _ = c
        .reserve(&[item("rpm", 1, 1), item("tpm", 100, 100)], now)
        .await
        .unwrap();
}

async fn get_many_reads_in_order(s: Stores) {
    let c = &*s.counters;
    let now = at(600);
    let spend_day = Reserve {
        key: "a".into(),
        window: Window::DAY,
        amount: 9,
        limit: 100,
    };
    let _ = c
        .reserve(&[item("a", 3, 10), item("b", 4, 10), spend_day], now)
        .await
        .unwrap();
    let got = c
        .get_many(
            &[
                ("b".into(), Window::MINUTE),
                ("never".into(), Window::MINUTE),
                ("a".into(), Window::MINUTE),
                ("a".into(), Window::DAY),
            ],
            now,
        )
        .await
        .unwrap();
    // One key limited over two windows holds two independent counters.
    assert_eq!(got, vec![4, 0, 3, 9]);
    assert!(c.get_many(&[], now).await.unwrap().is_empty());
    // The next minute starts from zero; the day does not.
    let got = c
        .get_many(
            &[("a".into(), Window::MINUTE), ("a".into(), Window::DAY)],
            at(660),
        )
        .await
        .unwrap();
    assert_eq!(got, vec![0, 9]);
}

async fn concurrency_cap_and_decrement(s: Stores) {
    let store = s.concurrency;
    let key = CounterKey::from("d1");
    let in_flight = || {
        let store = store.clone();
        let key = key.clone();
        async move { u64::from(store.in_flight(&key).await.unwrap()) }
    };
    let a = ConcurrencyPermit::try_acquire(store.clone(), key.clone(), 2)
        .await
        .unwrap();
    let b = ConcurrencyPermit::try_acquire(store.clone(), key.clone(), 2)
        .await
        .unwrap();
    assert!(a.is_some() && b.is_some());
    let c = ConcurrencyPermit::try_acquire(store.clone(), key.clone(), 2)
        .await
        .unwrap();
    assert!(c.is_none());
    assert_eq!(in_flight().await, 2);
    drop(a);
    eventually("in flight after one drop", 1, in_flight).await;
    let d = ConcurrencyPermit::try_acquire(store.clone(), key.clone(), 2)
        .await
        .unwrap();
    assert!(d.is_some());
    drop((b, d));
    eventually("in flight after all drops", 0, in_flight).await;
    // Never below zero. The decrement is fire-and-forget on Redis: read
    // only once the server has run it.
    let before = scripts_run(s.redis_port).await;
    store.decrement(&key);
    await_scripts_run(s.redis_port, before + 1).await;
    assert_eq!(in_flight().await, 0);
    assert!(store.try_increment(&key, 1).await.unwrap());
    assert!(!store.try_increment(&key, 1).await.unwrap());
    // A cap of zero never admits.
    assert!(!store.try_increment(&"other".into(), 0).await.unwrap());
    assert_eq!(store.in_flight(&"other".into()).await.unwrap(), 0);
}

// ------------------------------------------------------------- backends

fn memory() -> Stores {
    let store = Arc::new(MemoryStore::new());
    Stores {
        counters: store.clone(),
        concurrency: store,
        redis_port: None,
    }
}

async fn redis(server: &RedisServer, prefix: &str) -> Stores {
    let store = Arc::new(RedisStore::connect(&server.url(), prefix).await.unwrap());
    Stores {
        counters: store.clone(),
        concurrency: store,
        redis_port: Some(server.port()),
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::memory()).await;
                }
            )*
        }
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = super::RedisServer::start();
                    super::$case(super::redis(&server, concat!("test:", stringify!($case))).await)
                        .await;
                }
            )*
        }
    };
}

conformance!(
    reserve_is_all_or_nothing,
    denial_details,
    windows_reset_exactly_at_the_boundary,
    settle_up_and_down,
    release_gives_everything_back,
    get_many_reads_in_order,
    concurrency_cap_and_decrement,
);

// ------------------------------------------------ shared-backend cases

/// Two router instances (two connections) on one Redis, a concurrent burst
/// of 100 reservations against an rpm of 20: exactly 20 admitted in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_admit_exactly_the_limit() {
    let server = RedisServer::start();
    let a = Arc::new(RedisStore::connect(&server.url(), "lb").await.unwrap());
    let b = Arc::new(RedisStore::connect(&server.url(), "lb").await.unwrap());
    let now = at(1_700_000_000);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store: Arc<dyn CounterStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.reserve(&[item("deployment:x:rpm", 1, 20)], now).await
        }));
    }
    let mut admitted = [0u32; 2];
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => admitted[i % 2] += 1,
            Err(ReserveError::Denied(_)) => {}
            Err(e) => panic!("store error: {e}"),
        }
    }
    assert_eq!(admitted[0] + admitted[1], 20, "{admitted:?}");
    assert_eq!(
        value(&*a, "deployment:x:rpm", Window::MINUTE, now).await,
        20
    );
    // A different prefix is a different router: its counters are separate.
    let c = RedisStore::connect(&server.url(), "other").await.unwrap();
    assert_eq!(value(&c, "deployment:x:rpm", Window::MINUTE, now).await, 0);
}

/// Settlements cost no round trip of their own under load: they ride with
/// the instance's next reservation; alone, they reach every instance
/// within `SETTLE_DELAY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_ride_with_reservations_and_reach_other_instances() {
    let server = RedisServer::start();
    let a = RedisStore::connect(&server.url(), "lb").await.unwrap();
    let b = RedisStore::connect(&server.url(), "lb").await.unwrap();
    let now = at(1_700_000_000);
    let before = scripts_run(Some(server.port())).await;
    for _ in 0..100 {
        let r = a
            .reserve(&[item("rpm", 1, 1_000), item("tpm", 100, 100_000)], now)
            .await
            .unwrap();
        a.settle(r, &[1, 10]).await.unwrap();
    }
    // The last settlement is still pending or on its timer; b sees it soon.
    eventually("tpm seen by the other instance", 1_000, || async {
        value(&b, "tpm", Window::MINUTE, now).await
    })
    .await;
    assert_eq!(value(&b, "rpm", Window::MINUTE, now).await, 100);
    let scripts = scripts_run(Some(server.port())).await - before;
    assert!(
        (100..190).contains(&scripts),
        "100 reservations and 100 settlements took {scripts} scripts (each alone: 200)"
    );
    // An instance reads its own settlements at once.
    let r = a.reserve(&[item("tpm", 100, 100_000)], now).await.unwrap();
    a.settle(r, &[0]).await.unwrap();
    assert_eq!(value(&a, "tpm", Window::MINUTE, now).await, 1_000);
}

/// `rediss://` works: the same store over TLS (a self-signed server
/// certificate, accepted with the `#insecure` fragment; with a real
/// certificate no fragment is needed), and a plain-text client is refused.
#[tokio::test]
async fn tls_connections_reserve_and_read() {
    let dir = std::env::temp_dir().join(format!("lb-redis-tls-{}", std::process::id()));
    let server = RedisServer::start_tls(&dir);
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port());
    let store = RedisStore::connect(&url, "tls").await.unwrap();
    let now = at(1_700_000_000);
    let _ = store.reserve(&[item("rpm", 1, 2)], now).await.unwrap();
    let _ = store.reserve(&[item("rpm", 1, 2)], now).await.unwrap();
    assert!(store.reserve(&[item("rpm", 1, 2)], now).await.is_err());
    assert_eq!(value(&store, "rpm", Window::MINUTE, now).await, 2);
    // Without TLS the server does not answer.
    let plain = format!("redis://127.0.0.1:{}/", server.port());
    assert!(RedisStore::connect(&plain, "tls").await.is_err());
    // Verification is on by default: a self-signed certificate is refused.
    let verified = format!("rediss://127.0.0.1:{}/", server.port());
    assert!(RedisStore::connect(&verified, "tls").await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Concurrency caps are global too: two instances, cap 5, 40 attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_concurrency_cap() {
    let server = RedisServer::start();
    let a = Arc::new(RedisStore::connect(&server.url(), "lb").await.unwrap());
    let b = Arc::new(RedisStore::connect(&server.url(), "lb").await.unwrap());
    let key = CounterKey::from("deployment:x");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store: Arc<dyn ConcurrencyStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            store.try_increment(&key, 5).await.unwrap()
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += u32::from(task.await.unwrap());
    }
    assert_eq!(taken, 5);
    assert_eq!(b.in_flight(&key).await.unwrap(), 5);
}

#[test]
fn keys_carry_prefix_window_and_index() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    rt.block_on(async {
        let store = RedisStore::connect(&server.url(), "lb").await.unwrap();
        assert_eq!(store.prefix(), "lb");
        assert_eq!(
            store.counter_key(&"deployment:a:tpm".into(), Window::MINUTE, 7),
            "lb:deployment:a:tpm:60s:7"
        );
        assert_eq!(
            store.in_flight_key(&"deployment:a".into()),
            "lb:deployment:a:inflight"
        );
        // Debug never shows the URL.
        assert!(!format!("{store:?}").contains("127.0.0.1"));
    });
}

/// Connection refused is a `StoreError`, quickly, and never shows the
/// password in the URL.
#[tokio::test]
async fn unreachable_redis_is_a_store_error_without_the_password() {
    // Bound without listening: refused, and no other test can take the port.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let url = format!("redis://:hunter2secret@127.0.0.1:{port}/");
    let err = RedisStore::connect(&url, "lb").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2secret"), "{err}");
    assert!(err.to_string().contains("redis connect"), "{err}");
    let err = RedisStore::connect("not a url :hunter2secret", "lb")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2secret"), "{err}");
}

/// Redis going away mid-traffic: calls fail with `StoreError` (they do not
/// hang), and succeed again once a server is back on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back() {
    let server = RedisServer::start();
    let port = server.port();
    let store = RedisStore::connect(&server.url(), "lb").await.unwrap();
    let now = at(600);
    let _ = store.reserve(&[item("rpm", 1, 10)], now).await.unwrap();
    drop(server);
    let call = tokio::time::timeout(
        Duration::from_secs(10),
        store.reserve(&[item("rpm", 1, 10)], now),
    )
    .await
    .expect("a call with Redis down must not hang");
    match call {
        Err(ReserveError::Store(e)) => assert!(e.message.contains("redis reserve"), "{e}"),
        other => panic!("expected a store error, got {other:?}"),
    }
    assert!(store.in_flight(&"k".into()).await.is_err());

    // A new server on the same port: the connection manager reconnects.
    let _server = restart_on(port);
    let mut ok = false;
    for _ in 0..400 {
        if store.reserve(&[item("rpm", 1, 10)], now).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "no recovery after Redis came back");
}

fn restart_on(port: u16) -> RedisServer {
    RedisServer::start_on(port)
}
