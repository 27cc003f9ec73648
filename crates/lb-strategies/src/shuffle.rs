//! `simple-shuffle`: weighted random order.

use rand::{Rng, RngCore};

use crate::{CallContext, Candidate, Strategy};

/// Weighted random ranking, LiteLLM's default `simple-shuffle`.
///
/// The weight set is chosen once per call over all candidates:
/// - if any candidate sets `weight`, weights are used, and a candidate
///   without one counts as weight `1.0` (fractional weights work);
/// - else if any sets `rpm`, rpm is the weight; else if any sets `tpm`, tpm is;
///   a candidate missing that field gets the mean of those that set it;
/// - else all are equally likely.
///
/// The first position is drawn with probability proportional to weight, the
/// next among the rest likewise (weighted sampling without replacement).
/// Candidates of weight 0 come last, in random order.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleShuffle;

/// The weight a candidate without `weight` gets when others set one.
pub const DEFAULT_WEIGHT: f64 = 1.0;

fn weights(candidates: &[Candidate<'_>], out: &mut Vec<f64>) {
    out.clear();
    if candidates.iter().any(|c| c.deployment.weight.is_some()) {
        out.extend(
            candidates
                .iter()
                .map(|c| c.deployment.weight.unwrap_or(DEFAULT_WEIGHT)),
        );
        return;
    }
    let pick: [fn(&Candidate<'_>) -> Option<u64>; 2] = [|c| c.deployment.rpm, |c| c.deployment.tpm];
    for field in pick {
        let set: Vec<f64> = candidates
            .iter()
            .filter_map(field)
            .map(|v| v as f64)
            .collect();
        if !set.is_empty() {
            let mean = set.iter().sum::<f64>() / set.len() as f64;
            out.extend(
                candidates
                    .iter()
                    .map(|c| field(c).map_or(mean, |v| v as f64)),
            );
            return;
        }
    }
    out.extend(candidates.iter().map(|_| 1.0));
}

impl Strategy for SimpleShuffle {
    fn name(&self) -> &'static str {
        "simple-shuffle"
    }

    fn rank(
        &self,
        _call: &CallContext,
        candidates: &[Candidate<'_>],
        rng: &mut dyn RngCore,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        match candidates.len() {
            0 => return,
            1 => {
                out.push(0);
                return;
            }
            _ => {}
        }
        let mut w = Vec::with_capacity(candidates.len());
        weights(candidates, &mut w);
        // Exponential race (Efraimidis-Spirakis): key = Exp(1) / w, ascending.
        // Non-positive or non-finite weights race after every positive one.
        let mut keyed: Vec<(f64, usize)> = w
            .iter()
            .enumerate()
            .map(|(i, &wi)| {
                let u: f64 = rng.random::<f64>();
                let e = -(1.0 - u).ln();
                let key = if wi > 0.0 && wi.is_finite() {
                    e / wi
                } else {
                    f64::INFINITY
                };
                (key, i)
            })
            .collect();
        let zeros_start = {
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            keyed
                .iter()
                .position(|k| k.0.is_infinite())
                .unwrap_or(keyed.len())
        };
        // Zero-weight candidates: uniformly shuffled among themselves.
        let tail = &mut keyed[zeros_start..];
        for i in (1..tail.len()).rev() {
            let j = rng.random_range(0..=i);
            tail.swap(i, j);
        }
        out.extend(keyed.iter().map(|k| k.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::Deployment;
    use rand::{SeedableRng, rngs::SmallRng};

    fn dep(id: &str) -> Deployment {
        Deployment::new(id, "g", "openai", "m")
    }

    fn first_pick_shares(deps: &[Deployment], draws: usize, seed: u64) -> Vec<f64> {
        let cands: Vec<_> = deps.iter().map(Candidate::new).collect();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut counts = vec![0usize; deps.len()];
        let mut out = Vec::new();
        for _ in 0..draws {
            SimpleShuffle.rank(&CallContext::default(), &cands, &mut rng, &mut out);
            counts[out[0]] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn ranking_holds_each_candidate_once() {
        let deps: Vec<_> = (0..7)
            .map(|i| dep(&i.to_string()).with_weight(i as f64))
            .collect();
        let cands: Vec<_> = deps.iter().map(Candidate::new).collect();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        for _ in 0..100 {
            SimpleShuffle.rank(&CallContext::default(), &cands, &mut rng, &mut out);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..7).collect::<Vec<_>>());
            // weight 0 (candidate 0) is always last
            assert_eq!(*out.last().unwrap(), 0);
        }
    }

    #[test]
    fn weights_decide_shares_even_when_set_on_a_later_deployment() {
        // LiteLLM's bug: weight only on a later deployment meant uniform.
        let deps = vec![dep("a"), dep("b").with_weight(3.0)];
        let shares = first_pick_shares(&deps, 20_000, 42);
        // a gets the default weight 1 -> 1/4, b 3/4
        assert!((shares[0] - 0.25).abs() < 0.02, "{shares:?}");
    }

    #[test]
    fn fractional_weights_work() {
        let deps = vec![dep("a").with_weight(0.2), dep("b").with_weight(0.8)];
        let shares = first_pick_shares(&deps, 20_000, 3);
        assert!((shares[1] - 0.8).abs() < 0.02, "{shares:?}");
    }

    #[test]
    fn rpm_then_tpm_then_uniform() {
        let mut a = dep("a");
        a.rpm = Some(900);
        let mut b = dep("b");
        b.rpm = Some(100);
        let shares = first_pick_shares(&[a, b], 20_000, 5);
        assert!((shares[0] - 0.9).abs() < 0.02, "{shares:?}");

        let mut a = dep("a");
        a.tpm = Some(1_000);
        let mut b = dep("b");
        b.tpm = Some(3_000);
        let shares = first_pick_shares(&[a, b], 20_000, 6);
        assert!((shares[1] - 0.75).abs() < 0.02, "{shares:?}");

        let shares = first_pick_shares(&[dep("a"), dep("b"), dep("c"), dep("d")], 20_000, 7);
        for s in shares {
            assert!((s - 0.25).abs() < 0.02);
        }
    }

    #[test]
    fn seeded_rankings_repeat() {
        let deps: Vec<_> = (0..5).map(|i| dep(&i.to_string())).collect();
        let cands: Vec<_> = deps.iter().map(Candidate::new).collect();
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut out = Vec::new();
            SimpleShuffle.rank(&CallContext::default(), &cands, &mut rng, &mut out);
            out
        };
        assert_eq!(run(9), run(9));
    }
}
