//! `latency-based-routing`: untried first, then fastest, with a buffer.

use rand::RngCore;

use crate::util::{shuffle_run, sort_wide_random_ties};
use crate::{CallContext, Candidate, Strategy};

/// Ranks by mean recent latency ([`Candidate::latency`]); LiteLLM's
/// `latency-based-routing`.
///
/// 1. Candidates without samples come first, in random order, so a new or
///    long-unused deployment gets tried (LiteLLM scores them 0).
/// 2. Then those within the buffer of the best: latency at most
///    `best × (1 + buffer)` (`routing_strategy_args.lowest_latency_buffer`),
///    in random order, so near-equal deployments share the traffic instead of
///    the fastest taking all of it.
/// 3. Then the rest, fastest first, in random order among equal latencies.
///
/// The latency is what the router measured for this kind of call: seconds
/// per output token for completions, time to first token for streams; a
/// timeout counts as a penalty sample. A negative latency counts as 0, a NaN
/// one as the slowest. With `buffer = 0` (LiteLLM's default) only exact ties
/// with the best share the first place. O(n log n).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyBased {
    /// `lowest_latency_buffer`: the fraction of the best latency within
    /// which candidates count as equally fast. Negative or NaN means 0.
    pub buffer: f64,
}

impl LatencyBased {
    /// With `lowest_latency_buffer = buffer`.
    pub fn new(buffer: f64) -> Self {
        Self { buffer }
    }
}

/// Latency made total: NaN is the slowest, negatives are 0.
fn sane(latency: f64) -> f64 {
    if latency.is_nan() {
        f64::INFINITY
    } else if latency > 0.0 {
        latency
    } else {
        0.0
    }
}

/// Candidates without samples sort before every latency.
fn latency_key(c: &Candidate<'_>) -> u64 {
    // Non-negative floats order like their bits; +1 leaves 0 for "no samples".
    c.latency.map_or(0, |l| sane(l).to_bits() + 1)
}

impl Strategy for LatencyBased {
    fn name(&self) -> &'static str {
        "latency-based-routing"
    }

    fn rank(
        &self,
        _call: &CallContext,
        candidates: &[Candidate<'_>],
        rng: &mut dyn RngCore,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        out.extend(0..candidates.len());
        sort_wide_random_ties(out, candidates.len(), |i| latency_key(&candidates[i]), rng);
        let buffer = if self.buffer > 0.0 { self.buffer } else { 0.0 };
        if buffer == 0.0 {
            return;
        }
        let measured = |i: usize| candidates[i].latency.map(sane);
        let Some(start) = out.iter().position(|&i| measured(i).is_some()) else {
            return;
        };
        let Some(best) = measured(out[start]) else {
            return;
        };
        let limit = best * (1.0 + buffer);
        let end = start
            + out[start..]
                .iter()
                .take_while(|&&i| measured(i).is_some_and(|l| l <= limit))
                .count();
        shuffle_run(&mut out[start..end], start, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deps, rank_with};

    fn with_latencies<'a>(
        d: &'a [lb_core::Deployment],
        latencies: &[Option<f64>],
    ) -> Vec<Candidate<'a>> {
        d.iter()
            .zip(latencies)
            .map(|(d, &l)| Candidate {
                latency: l,
                ..Candidate::new(d)
            })
            .collect()
    }

    #[test]
    fn untried_first_then_fastest() {
        let d = deps(5);
        let c = with_latencies(
            &d,
            &[Some(0.30), None, Some(0.10), Some(0.20), Some(f64::NAN)],
        );
        assert_eq!(rank_with(&LatencyBased::default(), &c, 4), [1, 2, 3, 0, 4]);
    }

    #[test]
    fn buffer_shares_the_first_place() {
        let d = deps(4);
        // best 0.10; buffer 0.5 admits up to 0.15
        let c = with_latencies(&d, &[Some(0.14), Some(0.10), Some(0.16), Some(0.15)]);
        let strategy = LatencyBased::new(0.5);
        let mut firsts = [0usize; 4];
        for seed in 0..600 {
            let out = rank_with(&strategy, &c, seed);
            assert_eq!(out[3], 2, "outside the buffer: last");
            firsts[out[0]] += 1;
        }
        for i in [0, 1, 3] {
            assert!(firsts[i] > 150, "{firsts:?}");
        }
        // without a buffer, the fastest always leads
        let out = rank_with(&LatencyBased::default(), &c, 9);
        assert_eq!(out, [1, 0, 3, 2]);
    }

    #[test]
    fn several_untried_are_shuffled() {
        let d = deps(3);
        let c = with_latencies(&d, &[None, None, Some(0.01)]);
        let mut firsts = [0usize; 3];
        for seed in 0..400 {
            let out = rank_with(&LatencyBased::new(0.2), &c, seed);
            assert_eq!(out[2], 2);
            firsts[out[0]] += 1;
        }
        assert!(firsts[0] > 150 && firsts[1] > 150, "{firsts:?}");
    }
}
