//! The admission check of one call in memory: reserve (rpm + tpm, optionally
//! a provider budget) and settle, uncontended and from 64 concurrent tasks.
//!
//! Run with `cargo bench -p lb-budget --bench admission`; criterion writes
//! `target/criterion/admission/*/new/estimates.json`.

// `criterion_group!` generates undocumented items.
#![allow(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use lb_budget::{
    Actual, Admission, AdmissionPlan, BudgetLimit, Budgets, DeploymentKeys, MemoryStore,
};
use lb_core::{CounterStore, Deployment};

const TASKS: u64 = 64;

fn deployment() -> Deployment {
    let mut d = Deployment::new("bench-d1", "gpt-4o", "openai", "gpt-4o");
    d.rpm = Some(u64::MAX / 2);
    d.tpm = Some(u64::MAX / 2);
    d
}

fn budgets() -> Budgets {
    let mut b = Budgets::new();
    if let Ok(Some(limit)) = BudgetLimit::parse(1e9, "1d", "bench") {
        b.set_provider("openai", limit);
    }
    b
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Polls a future that never waits (the memory store's) to completion.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// One call as the router makes it: keys built once per deployment, plan,
/// reserve, settle.
async fn one_call(
    store: &Arc<dyn CounterStore>,
    keys: &DeploymentKeys,
    d: &Deployment,
    budgets: Option<&Budgets>,
) {
    let mut plan = AdmissionPlan::new().with_rate_limits_keyed(keys, d, 300);
    if let Some(b) = budgets {
        plan = plan.with_budgets(b, d, 0.003);
    }
    if let Ok(adm) = Admission::reserve(store.clone(), plan, now()).await {
        let _ = adm
            .settle(Actual {
                tokens: Some(250),
                cost_usd: Some(0.0025),
            })
            .await;
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission/uncontended");
    let d = deployment();
    let keys = DeploymentKeys::new(&d.id);
    let b = budgets();

    let mem = MemoryStore::new();
    let plan = AdmissionPlan::for_deployment(&d, 300);
    g.bench_function("memory core: reserve_now + settle_now (rpm+tpm)", |bench| {
        bench.iter(|| {
            if let Ok(r) = mem.reserve_now(plan.items(), now()) {
                mem.settle_now(&r, &[1, 250]);
            }
        })
    });

    let store: Arc<dyn CounterStore> = Arc::new(MemoryStore::new());
    g.bench_function("Admission via dyn CounterStore (rpm+tpm)", |bench| {
        bench.iter(|| ready(one_call(&store, &keys, &d, None)))
    });

    let store: Arc<dyn CounterStore> = Arc::new(MemoryStore::new());
    g.bench_function("Admission via dyn CounterStore (rpm+tpm+budget)", |bench| {
        bench.iter(|| ready(one_call(&store, &keys, &d, Some(&b))))
    });
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission/64 tasks, one deployment");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let d = Arc::new(deployment());
    let keys = Arc::new(DeploymentKeys::new(&d.id));
    let b = Arc::new(budgets());
    for with_budget in [false, true] {
        let name = if with_budget {
            "per call (rpm+tpm+budget), 2 worker threads"
        } else {
            "per call (rpm+tpm), 2 worker threads"
        };
        let store: Arc<dyn CounterStore> = Arc::new(MemoryStore::new());
        g.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let per_task = iters.div_ceil(TASKS);
                #[allow(clippy::disallowed_methods)] // the benchmark's own stopwatch
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let (store, keys, d, b) =
                                (store.clone(), keys.clone(), d.clone(), b.clone());
                            tokio::spawn(async move {
                                for i in 0..per_task {
                                    one_call(&store, &keys, &d, with_budget.then_some(&*b)).await;
                                    if i % 16 == 0 {
                                        tokio::task::yield_now().await;
                                    }
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                // Wall time of `iters` calls spread over the tasks.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * TASKS) as f64)
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended, contended
}
criterion_main!(benches);
