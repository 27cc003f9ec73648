//! The laws every strategy keeps, checked on generated pools with fixed seeds.

#![allow(missing_docs)]

use lb_core::Deployment;
use lb_strategies::{
    CallContext, Candidate, CostBased, LatencyBased, LatencyP2C, LeastBusy, SimpleShuffle,
    Strategy as Ranking, StrategyArgs, StrategyKind, UsageBased, fits_limits,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::{SeedableRng, rngs::SmallRng};

/// Settings and live stats of one generated deployment.
#[derive(Debug, Clone)]
struct Spec {
    weight: Option<f64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    in_flight: u64,
    latency: Option<f64>,
    peak_ewma: Option<f64>,
    cost: Option<f64>,
    tpm_used: u64,
    rpm_used: u64,
}

/// Floats with ties, extremes and the odd bad value.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => prop::sample::select(vec![0.0, 0.001, 0.01, 0.5, 1.0, 2.0]),
        8 => 0.0..10.0f64,
        1 => prop::sample::select(vec![f64::NAN, -1.0, f64::INFINITY, -0.0, 1e300]),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            prop::option::weighted(0.7, prop_oneof![4 => 0.0..5.0f64, 1 => Just(0.0)]),
            prop::option::of(0u64..8),
            prop::option::of(0u64..40),
            0u64..6,
        ),
        (
            prop::option::weighted(0.8, float()),
            prop::option::weighted(0.8, float()),
            prop::option::weighted(0.8, float()),
            0u64..40,
            0u64..8,
        ),
    )
        .prop_map(
            |((weight, rpm, tpm, in_flight), (latency, peak_ewma, cost, tpm_used, rpm_used))| {
                Spec {
                    weight,
                    rpm,
                    tpm,
                    in_flight,
                    latency,
                    peak_ewma,
                    cost,
                    tpm_used,
                    rpm_used,
                }
            },
        )
}

/// Pools from empty to past the 64 blocks of `simple-shuffle`. Limits,
/// usage and call sizes are small, so calls land exactly at a limit often.
fn pool() -> impl Strategy<Value = Vec<Spec>> {
    prop_oneof![
        4 => prop::collection::vec(spec(), 0..12),
        1 => prop::collection::vec(spec(), 60..200),
    ]
}

fn deployments(specs: &[Spec]) -> Vec<Deployment> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut d = Deployment::new(format!("d{i}"), "g", "openai", "m");
            d.weight = s.weight;
            d.rpm = s.rpm;
            d.tpm = s.tpm;
            d
        })
        .collect()
}

fn candidates<'a>(specs: &[Spec], deps: &'a [Deployment]) -> Vec<Candidate<'a>> {
    specs
        .iter()
        .zip(deps)
        .map(|(s, d)| Candidate {
            in_flight: s.in_flight,
            latency: s.latency,
            peak_ewma: s.peak_ewma,
            cost_per_token: s.cost,
            tpm_used: s.tpm_used,
            rpm_used: s.rpm_used,
            ..Candidate::new(d)
        })
        .collect()
}

fn rank(s: &dyn Ranking, call: &CallContext, c: &[Candidate<'_>], seed: u64) -> Vec<usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = vec![usize::MAX; 3]; // stale content must be cleared
    s.rank(call, c, &mut rng, &mut out);
    out
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_1ab5),
        ..Config::default()
    }
}

/// Latency as `LatencyBased` orders it: no samples first, NaN last, negatives as 0.
fn latency_order(l: Option<f64>) -> (u8, f64) {
    match l {
        None => (0, 0.0),
        Some(x) if x.is_nan() => (1, f64::INFINITY),
        Some(x) => (1, x.max(0.0)),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn every_strategy_ranks_each_usable_candidate_once(
        specs in pool(),
        tokens in 0u64..12,
        buffer in prop_oneof![Just(0.0), 0.0..1.0f64],
        seed in any::<u64>(),
    ) {
        let deps = deployments(&specs);
        let c = candidates(&specs, &deps);
        let call = CallContext { estimated_tokens: tokens, stream: false, weights: None };
        let args = StrategyArgs { lowest_latency_buffer: buffer };
        for &kind in StrategyKind::ALL {
            let s = kind.build_with(&args);
            let out = rank(&*s, &call, &c, seed);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            let expected: Vec<usize> = if kind == StrategyKind::UsageBased {
                (0..c.len()).filter(|&i| fits_limits(&call, &c[i])).collect()
            } else {
                (0..c.len()).collect()
            };
            prop_assert_eq!(sorted, expected, "{}", kind.name());
            prop_assert_eq!(&out, &rank(&*s, &call, &c, seed), "{} is seeded", kind.name());
        }
    }

    #[test]
    fn least_busy_never_ranks_a_busier_one_first(specs in pool(), seed in any::<u64>()) {
        let deps = deployments(&specs);
        let c = candidates(&specs, &deps);
        let out = rank(&LeastBusy, &CallContext::default(), &c, seed);
        for w in out.windows(2) {
            prop_assert!(c[w[0]].in_flight <= c[w[1]].in_flight);
        }
    }

    #[test]
    fn cost_never_ranks_a_dearer_one_first(specs in pool(), seed in any::<u64>()) {
        let deps = deployments(&specs);
        let c = candidates(&specs, &deps);
        let out = rank(&CostBased, &CallContext::default(), &c, seed);
        let price = |i: usize| c[i].cost_per_token.filter(|p| !p.is_nan());
        for w in out.windows(2) {
            match (price(w[0]), price(w[1])) {
                (Some(a), Some(b)) => prop_assert!(a <= b, "{a} before {b}"),
                (None, Some(b)) => prop_assert!(false, "unknown before {b}"),
                _ => {}
            }
        }
    }

    #[test]
    fn usage_keeps_exactly_what_fits_fewest_tokens_first(
        specs in pool(),
        tokens in 0u64..12,
        seed in any::<u64>(),
    ) {
        let deps = deployments(&specs);
        let c = candidates(&specs, &deps);
        let call = CallContext { estimated_tokens: tokens, stream: false, weights: None };
        let out = rank(&UsageBased, &call, &c, seed);
        for &i in &out {
            let d = c[i].deployment;
            prop_assert!(d.tpm.is_none_or(|l| c[i].tpm_used + tokens <= l));
            prop_assert!(d.rpm.is_none_or(|l| c[i].rpm_used < l));
        }
        for (i, cand) in c.iter().enumerate() {
            let d = cand.deployment;
            // the call's request is the (rpm_used + 1)-th of the minute
            let fits = d.tpm.is_none_or(|l| cand.tpm_used + tokens <= l)
                && d.rpm.is_none_or(|l| cand.rpm_used < l);
            prop_assert_eq!(fits, out.contains(&i), "candidate {}", i);
        }
        for w in out.windows(2) {
            prop_assert!(c[w[0]].tpm_used <= c[w[1]].tpm_used);
        }
    }

    #[test]
    fn latency_tries_untried_first_then_buffer_then_fastest(
        specs in pool(),
        buffer in prop_oneof![Just(0.0), 0.0..1.0f64],
        seed in any::<u64>(),
    ) {
        let deps = deployments(&specs);
        let c = candidates(&specs, &deps);
        let out = rank(&LatencyBased::new(buffer), &CallContext::default(), &c, seed);
        let order: Vec<(u8, f64)> = out.iter().map(|&i| latency_order(c[i].latency)).collect();
        let untried = order.iter().take_while(|o| o.0 == 0).count();
        prop_assert!(order[untried..].iter().all(|o| o.0 == 1), "untried first");
        let measured = &order[untried..];
        if let Some(best) = measured.iter().map(|o| o.1).reduce(f64::min) {
            let limit = best * (1.0 + buffer);
            let group = measured.iter().take_while(|o| o.1 <= limit).count();
            prop_assert!(measured[group..].iter().all(|o| o.1 > limit));
            for w in measured[group..].windows(2) {
                prop_assert!(w[0].1 <= w[1].1, "ascending after the buffer");
            }
        }
    }

    #[test]
    fn p2c_ranks_the_lighter_of_two_first(specs in pool(), seed in any::<u64>()) {
        let deps = deployments(&specs);
        let c = candidates(&specs, &deps);
        let out = rank(&LatencyP2C, &CallContext::default(), &c, seed);
        let load = |i: usize| {
            let e = c[i].peak_ewma.filter(|e| *e > 0.0).unwrap_or(0.0);
            e * (c[i].in_flight as f64 + 1.0)
        };
        if out.len() >= 2 {
            prop_assert!(load(out[0]) <= load(out[1]));
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// First-pick shares of `simple-shuffle` converge to the weights.
    #[test]
    fn shuffle_shares_converge_to_weights(
        weights in prop::collection::vec(prop_oneof![4 => 0.1..10.0f64, 1 => Just(0.0)], 2..8)
            .prop_filter("some positive weight", |w| w.iter().any(|&x| x > 0.0)),
        seed in any::<u64>(),
    ) {
        let deps: Vec<Deployment> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Deployment::new(format!("d{i}"), "g", "openai", "m").with_weight(w))
            .collect();
        let c: Vec<Candidate<'_>> = deps.iter().map(Candidate::new).collect();
        let draws = 20_000;
        let mut firsts = vec![0usize; c.len()];
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for _ in 0..draws {
            SimpleShuffle.rank(&CallContext::default(), &c, &mut rng, &mut out);
            firsts[out[0]] += 1;
        }
        let total: f64 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let share = firsts[i] as f64 / draws as f64;
            let expected = w / total;
            // 5 standard deviations of a binomial share, never less than 0.5%
            let tolerance = (5.0 * (expected * (1.0 - expected) / draws as f64).sqrt()).max(0.005);
            prop_assert!(
                (share - expected).abs() <= tolerance,
                "candidate {} weight {} share {} expected {}", i, w, share, expected
            );
            if w == 0.0 {
                prop_assert_eq!(firsts[i], 0);
            }
        }
    }

    /// With weights spread over many blocks, shares still follow the weights.
    #[test]
    fn shuffle_shares_hold_in_large_pools(seed in any::<u64>()) {
        // 300 candidates: the first weighs 100, the others 1 each (share 100/399).
        let deps: Vec<Deployment> = (0..300)
            .map(|i| {
                Deployment::new(format!("d{i}"), "g", "openai", "m")
                    .with_weight(if i == 150 { 100.0 } else { 1.0 })
            })
            .collect();
        let c: Vec<Candidate<'_>> = deps.iter().map(Candidate::new).collect();
        let draws = 20_000;
        let mut heavy = 0;
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for _ in 0..draws {
            SimpleShuffle.rank(&CallContext::default(), &c, &mut rng, &mut out);
            heavy += usize::from(out[0] == 150);
        }
        let share = heavy as f64 / draws as f64;
        prop_assert!((share - 100.0 / 399.0).abs() < 0.016, "share {}", share);
    }
}
