//! `least-busy`: fewest calls in flight first.

use rand::RngCore;

use crate::util::sort_random_ties;
use crate::{CallContext, Candidate, Strategy};

/// Ranks by calls in flight ([`Candidate::in_flight`]), fewest first, in
/// random order among equals; LiteLLM's `least-busy`.
///
/// Unlike LiteLLM (first minimum of a shared dict wins, racy read-modify-write
/// of counts), ties are broken at random, so idle deployments share the
/// traffic, and the counts come from in-flight guards that cannot leak.
/// O(n log n); random draws only for tied candidates.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastBusy;

impl Strategy for LeastBusy {
    fn name(&self) -> &'static str {
        "least-busy"
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
        sort_random_ties(out, candidates.len(), |i| candidates[i].in_flight, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deps, rank_with};

    #[test]
    fn fewest_in_flight_first_exact_order() {
        let d = deps(4);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        for (cand, busy) in c.iter_mut().zip([3, 0, 7, 1]) {
            cand.in_flight = busy;
        }
        assert_eq!(rank_with(&LeastBusy, &c, 1), [1, 3, 0, 2]);
    }

    #[test]
    fn ties_are_random_and_seeded() {
        let d = deps(3);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        c[2].in_flight = 5;
        let mut firsts = [0usize; 3];
        for seed in 0..400 {
            let out = rank_with(&LeastBusy, &c, seed);
            assert_eq!(out[2], 2, "the busy one is last");
            firsts[out[0]] += 1;
            assert_eq!(
                out,
                rank_with(&LeastBusy, &c, seed),
                "same seed, same ranking"
            );
        }
        assert!(firsts[0] > 150 && firsts[1] > 150, "{firsts:?}");
    }
}
