//! Cost of ranking one call, per strategy, at 10 to 10,000 candidates.
//!
//! Writes `target/criterion/rank/<strategy>/<candidates>/new/estimates.json`,
//! which `lb-bench strategy-report` turns into the table of
//! `docs/benchmarks.md`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lb_core::Deployment;
use lb_strategies::{CallContext, Candidate, StrategyArgs, StrategyKind, WeightIndex};
use rand::{Rng, SeedableRng, rngs::SmallRng};

/// Pool sizes of the table.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Deployments with the settings every strategy reads: a fractional weight,
/// rpm/tpm limits far from reached, prices.
fn deployments(n: usize, rng: &mut SmallRng) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            let mut d = Deployment::new(format!("d{i}"), "g", "openai", "m")
                .with_weight(rng.random_range(0.5..2.0));
            d.rpm = Some(1_000_000);
            d.tpm = Some(1_000_000_000);
            d
        })
        .collect()
}

/// Live stats as a busy pool has them: a few calls in flight, latencies and
/// peak EWMAs for most, a handful of distinct prices, some minute usage.
fn candidates<'a>(deps: &'a [Deployment], rng: &mut SmallRng) -> Vec<Candidate<'a>> {
    deps.iter()
        .map(|d| Candidate {
            in_flight: rng.random_range(0..8),
            latency: rng.random_bool(0.95).then(|| rng.random_range(0.005..0.05)),
            peak_ewma: rng.random_bool(0.95).then(|| rng.random_range(0.2..2.0)),
            cost_per_token: Some(f64::from(rng.random_range(1..6u32)) * 1e-6),
            tpm_used: rng.random_range(0..100_000),
            rpm_used: rng.random_range(0..100),
            ..Candidate::new(d)
        })
        .collect()
}

fn rank(c: &mut Criterion) {
    let mut group = c.benchmark_group("rank");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    let plain = CallContext {
        estimated_tokens: 500,
        stream: false,
        weights: None,
    };
    let args = StrategyArgs {
        lowest_latency_buffer: 0.1,
    };
    for &n in &SIZES {
        let mut setup = SmallRng::seed_from_u64(n as u64);
        let deps = deployments(n, &mut setup);
        let cands = candidates(&deps, &mut setup);
        // The router keeps each group's shuffle weights summed ahead of the
        // calls (they are config); the bench does the same, once per pool.
        let indexed = CallContext {
            weights: Some(std::sync::Arc::new(WeightIndex::new(&cands))),
            ..plain.clone()
        };
        for &kind in StrategyKind::ALL {
            let call = if kind == StrategyKind::SimpleShuffle {
                &indexed
            } else {
                &plain
            };
            let strategy = kind.build_with(&args);
            let mut rng = SmallRng::seed_from_u64(42);
            let mut out = Vec::with_capacity(n);
            group.bench_with_input(BenchmarkId::new(kind.name(), n), &cands, |b, cands| {
                b.iter(|| {
                    strategy.rank(call, black_box(cands), &mut rng, &mut out);
                    black_box(out.first().copied())
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, rank);
criterion_main!(benches);
