//! `latency-p2c`: power of two random choices by peak-EWMA load.

use rand::RngCore;

use crate::util::{below, extend_rotated, two_distinct};
use crate::{CallContext, Candidate, Strategy};

/// Power of two random choices, as tower's `p2c` balancer with its
/// `PeakEwma` load: draw two distinct candidates uniformly, and rank first
/// the one with the lower load `peak_ewma × (in_flight + 1)` (ties: fewer in
/// flight, then the first drawn); the other is second.
///
/// A candidate without a peak EWMA (never measured) counts as load 0, the
/// best, so new deployments get tried; because only two random candidates
/// are compared, that costs a new deployment about `2/n` of the calls until
/// its first sample, not all of them.
///
/// The rest of the ranking, used only by the third attempt on, is every
/// other candidate in index order rotated from a random offset: no reads, no
/// comparisons. So the cost is O(1) for the choice plus plain stores for the
/// rest of `out`, at any pool size.
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyP2C;

/// Load of a candidate, smaller is better.
fn load(c: &Candidate<'_>) -> (f64, u64) {
    let ewma = match c.peak_ewma {
        Some(e) if e > 0.0 => e, // NaN and negatives fail `> 0.0`
        _ => 0.0,
    };
    (ewma * (c.in_flight as f64 + 1.0), c.in_flight)
}

impl Strategy for LatencyP2C {
    fn name(&self) -> &'static str {
        "latency-p2c"
    }

    fn rank(
        &self,
        _call: &CallContext,
        candidates: &[Candidate<'_>],
        rng: &mut dyn RngCore,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let n = candidates.len();
        match n {
            0 => return,
            1 => {
                out.push(0);
                return;
            }
            _ => {}
        }
        out.reserve(n);
        let (a, b) = two_distinct(n, rng);
        let (la, lb) = (load(&candidates[a]), load(&candidates[b]));
        let b_first = lb.0.total_cmp(&la.0).then(lb.1.cmp(&la.1)).is_lt();
        let (first, second) = if b_first { (b, a) } else { (a, b) };
        out.push(first);
        out.push(second);
        let offset = below(rng, n);
        extend_rotated(out, n, offset, &mut [a, b]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deps, rank_with};

    #[test]
    fn two_candidates_lower_load_first() {
        let d = deps(2);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        c[0].peak_ewma = Some(0.5);
        c[0].in_flight = 0; // load 0.5
        c[1].peak_ewma = Some(0.2);
        c[1].in_flight = 3; // load 0.8
        for seed in 0..50 {
            assert_eq!(rank_with(&LatencyP2C, &c, seed), [0, 1]);
        }
        c[1].in_flight = 1; // load 0.4
        for seed in 0..50 {
            assert_eq!(rank_with(&LatencyP2C, &c, seed), [1, 0]);
        }
    }

    #[test]
    fn unmeasured_counts_as_best() {
        let d = deps(2);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        c[0].peak_ewma = Some(0.001);
        assert_eq!(rank_with(&LatencyP2C, &c, 3)[0], 1);
    }

    #[test]
    fn seeded_exact_ranking() {
        let d = deps(6);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        for (i, cand) in c.iter_mut().enumerate() {
            cand.peak_ewma = Some(0.1 * (i + 1) as f64);
        }
        let out = rank_with(&LatencyP2C, &c, 11);
        // drew 4 and 5, the lighter 4 first; the rest rotated from offset 0
        assert_eq!(out, [4, 5, 0, 1, 2, 3]);
        assert_eq!(out, rank_with(&LatencyP2C, &c, 11));
    }

    #[test]
    fn the_slowest_is_never_first_with_three_or_more() {
        let d = deps(3);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        for (cand, e) in c.iter_mut().zip([0.1, 0.2, 5.0]) {
            cand.peak_ewma = Some(e);
        }
        let mut firsts = [0usize; 3];
        for seed in 0..600 {
            firsts[rank_with(&LatencyP2C, &c, seed)[0]] += 1;
        }
        assert_eq!(firsts[2], 0);
        // 0 wins every pair it is in (2 of 3 pairs), 1 only the pair {1, 2}
        assert!(firsts[0] > 330 && firsts[1] > 130, "{firsts:?}");
    }
}
