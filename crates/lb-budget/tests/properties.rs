//! Laws of the memory store under concurrency: whatever the interleaving of
//! reserve/settle/release calls on real threads, no window admits more than
//! its limit allows (plus the overruns of estimates), and concurrency
//! permits never exceed their cap and all come back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lb_budget::{Actual, Admission, AdmissionPlan, MemoryStore};
use lb_core::{
    ConcurrencyPermit, ConcurrencyStore, CounterKey, CounterStore, Deployment, Reservation,
    Reserve, Window,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const THREADS: usize = 4;

fn config() -> Config {
    Config {
        cases: 48,
        rng_seed: RngSeed::Fixed(0x6c62_2d62_7564_6765),
        ..Config::default()
    }
}

/// One call of the schedule.
#[derive(Debug, Clone)]
struct Call {
    /// Milliseconds after the base time; each thread's calls are sorted.
    at_ms: u64,
    estimate: u64,
    actual: u64,
    /// Released (never reached the upstream) instead of settled.
    release: bool,
    /// How many later calls of the same thread start before this one ends.
    hold: usize,
}

fn call() -> impl Strategy<Value = Call> {
    (
        0u64..200_000,
        1u64..400,
        0u64..700,
        prop::bool::weighted(0.15),
        0usize..4,
    )
        .prop_map(|(at_ms, estimate, actual, release, hold)| Call {
            at_ms,
            estimate,
            actual,
            release,
            hold,
        })
}

fn schedule() -> impl Strategy<Value = Vec<Vec<Call>>> {
    prop::collection::vec(prop::collection::vec(call(), 10..60), THREADS).prop_map(|mut threads| {
        for calls in &mut threads {
            calls.sort_by_key(|c| c.at_ms);
        }
        threads
    })
}

fn base() -> SystemTime {
    // Not aligned to a minute, so windows split the schedule unevenly.
    UNIX_EPOCH + Duration::from_millis(1_700_000_017_250)
}

/// What one admitted call did in its window.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    requests: u64,
    tokens: u64,
    overrun: u64,
}

/// Runs each thread's calls against `store` at once; returns, per counted
/// window index, the sums of the admitted calls' outcomes.
fn run(
    store: &MemoryStore,
    threads: &[Vec<Call>],
    items: impl Fn(&Call) -> Vec<Reserve> + Sync,
    actuals: impl Fn(&Call) -> Vec<u64> + Sync,
) -> BTreeMap<u64, Outcome> {
    let totals = Mutex::new(BTreeMap::<u64, Outcome>::new());
    let barrier = Barrier::new(threads.len());
    std::thread::scope(|s| {
        for calls in threads {
            s.spawn(|| {
                barrier.wait();
                let mut held: VecDeque<(Reservation, Call, usize)> = VecDeque::new();
                let finish = |r: Reservation, c: &Call| {
                    let index = r.items()[0].index;
                    let mut totals = totals.lock().unwrap();
                    let o = totals.entry(index).or_default();
                    if c.release {
                        CounterStore::release(store, r);
                    } else {
                        store.settle_now(&r, &actuals(c));
                        o.requests += 1;
                        o.tokens += c.actual;
                        o.overrun += c.actual.saturating_sub(c.estimate);
                    }
                };
                for (i, c) in calls.iter().enumerate() {
                    let now = base() + Duration::from_millis(c.at_ms);
                    if let Ok(r) = store.reserve_now(&items(c), now) {
                        held.push_back((r, c.clone(), i + c.hold));
                    }
                    while held.front().is_some_and(|(_, _, until)| *until <= i) {
                        let (r, c, _) = held.pop_front().unwrap();
                        finish(r, &c);
                    }
                }
                for (r, c, _) in held {
                    finish(r, &c);
                }
            });
        }
    });
    totals.into_inner().unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// In any minute: admitted requests <= rpm, and admitted tokens <= tpm
    /// plus the overruns of the calls that overran their estimate.
    #[test]
    fn rate_limits_hold_under_any_interleaving(
        rpm in 1u64..25,
        tpm in 200u64..6_000,
        threads in schedule(),
    ) {
        let store = MemoryStore::new();
        let items = |c: &Call| vec![
            Reserve { key: "d:rpm".into(), window: Window::MINUTE, amount: 1, limit: rpm },
            Reserve { key: "d:tpm".into(), window: Window::MINUTE, amount: c.estimate, limit: tpm },
        ];
        let totals = run(&store, &threads, items, |c| vec![1, c.actual]);
        prop_assert!(!totals.is_empty());
        for (window, o) in &totals {
            prop_assert!(o.requests <= rpm, "window {window}: {} requests > rpm {rpm}", o.requests);
            prop_assert!(
                o.tokens <= tpm + o.overrun,
                "window {window}: {} tokens > tpm {tpm} + overrun {}", o.tokens, o.overrun
            );
        }
    }

    /// A budget's spend never exceeds its limit by more than the overruns of
    /// the calls admitted in its window, whatever the interleaving.
    #[test]
    fn budgets_hold_under_any_interleaving(
        limit in 1_000u64..50_000,
        threads in schedule(),
    ) {
        let store = MemoryStore::new();
        let items = |c: &Call| vec![Reserve {
            key: "provider_spend:openai".into(),
            window: Window::DAY,
            amount: c.estimate.max(1),
            limit,
        }];
        let totals = run(&store, &threads, items, |c| vec![c.actual]);
        for (window, o) in &totals {
            prop_assert!(
                o.tokens <= limit + o.overrun,
                "window {window}: spend {} > limit {limit} + overrun {}", o.tokens, o.overrun
            );
        }
    }

    /// One call at a time, a budget is exceeded by at most the overrun of
    /// the single call that crossed it.
    #[test]
    fn sequential_budgets_overshoot_by_at_most_one_call(
        limit in 1_000u64..20_000,
        calls in prop::collection::vec(call(), 1..200),
    ) {
        let store = MemoryStore::new();
        let now = base();
        let mut spend = 0u64;
        for c in &calls {
            let item = Reserve {
                key: "deployment_spend:d1".into(),
                window: Window::DAY,
                amount: c.estimate.max(1),
                limit,
            };
            if let Ok(r) = store.reserve_now(&[item], now) {
                let before = spend;
                store.settle_now(&r, &[c.actual]);
                spend += c.actual;
                prop_assert!(before <= limit);
                prop_assert!(spend <= limit + c.actual.saturating_sub(c.estimate.max(1)));
            }
        }
        let stored = store.get_now(&[("deployment_spend:d1".into(), Window::DAY)], now)[0];
        prop_assert_eq!(stored, spend);
    }

    /// In-flight permits never exceed the cap, and all come back.
    #[test]
    fn concurrency_permits_never_exceed_the_cap(
        cap in 1u32..6,
        holds in prop::collection::vec(prop::collection::vec(0usize..4, 20..80), THREADS),
    ) {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ConcurrencyStore> = mem.clone();
        let key = CounterKey::from("deployment:d1:parallel");
        let observed = AtomicU32::new(0);
        let peak = AtomicU32::new(0);
        let barrier = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for plan in &holds {
                let store = store.clone();
                let (key, observed, peak, barrier) = (&key, &observed, &peak, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut held: VecDeque<(ConcurrencyPermit, usize)> = VecDeque::new();
                    for (i, hold) in plan.iter().enumerate() {
                        if let Some(p) = poll_once(ConcurrencyPermit::try_acquire(store.clone(), key.clone(), cap)).unwrap() {
                            let n = observed.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            held.push_back((p, i + hold));
                        }
                        while held.front().is_some_and(|(_, until)| *until <= i) {
                            observed.fetch_sub(1, Ordering::SeqCst);
                            held.pop_front();
                        }
                        std::thread::yield_now();
                    }
                    for _ in held.drain(..) {
                        observed.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        prop_assert!(peak.load(Ordering::SeqCst) <= cap);
        prop_assert!(peak.load(Ordering::SeqCst) >= 1);
        prop_assert_eq!(mem.in_flight_now(&key), 0);
        prop_assert_eq!(mem.in_flight_len(), 0);
    }
}

/// Polls a future that completes without waiting (the memory store's).
fn poll_once<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the memory store never waits"),
    }
}

/// The same law through the router's path: `Arc<dyn CounterStore>`,
/// [`Admission`] guards, 64 tokio tasks on a multi-thread runtime.
#[test]
fn admissions_from_many_tasks_respect_rpm_and_tpm() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let store: Arc<dyn CounterStore> = Arc::new(MemoryStore::new());
    let mut d = Deployment::new("d1", "g", "openai", "gpt-4o");
    d.rpm = Some(40);
    d.tpm = Some(4_000);
    let d = Arc::new(d);
    let now = base();
    let admitted = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..64u64 {
            let (store, d, admitted) = (store.clone(), d.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                for call in 0..10u64 {
                    let estimate = 50 + (task * 7 + call * 13) % 100;
                    let actual = (task * 11 + call * 17) % 200;
                    let plan = AdmissionPlan::for_deployment(&d, estimate);
                    if let Ok(adm) = Admission::reserve(store.clone(), plan, now).await {
                        tokio::task::yield_now().await;
                        adm.settle(Actual {
                            tokens: Some(actual),
                            cost_usd: None,
                        })
                        .await
                        .unwrap();
                        let mut a = admitted.lock().unwrap();
                        a.0 += 1;
                        a.1 += actual;
                        a.2 += actual.saturating_sub(estimate);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let (requests, tokens, overrun) = *admitted.lock().unwrap();
    assert!((1..=40).contains(&requests), "{requests}");
    assert!(tokens <= 4_000 + overrun, "{tokens} > 4000 + {overrun}");
}
