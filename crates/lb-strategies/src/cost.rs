//! `cost-based-routing`: cheapest price per token first.

use rand::RngCore;

use crate::util::{float_key, sort_wide_random_ties};
use crate::{CallContext, Candidate, Strategy};

/// Ranks by [`Candidate::cost_per_token`] (input plus output price per
/// token), cheapest first, in random order among equal prices; candidates
/// with an unknown (or NaN) price come after every priced one, in random
/// order. LiteLLM's `cost-based-routing`, except that LiteLLM breaks ties by
/// dictionary order and prices unknown models at 5 USD a token.
///
/// The router fills the price from the deployment's `input_cost_per_token`
/// and `output_cost_per_token`, else from its price table. Limits are not
/// checked here: the router filters candidates over their limits.
/// O(n log n); random draws only for equal prices.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostBased;

fn cost_key(c: &Candidate<'_>) -> u64 {
    match c.cost_per_token {
        Some(p) if !p.is_nan() => float_key(p),
        _ => u64::MAX,
    }
}

impl Strategy for CostBased {
    fn name(&self) -> &'static str {
        "cost-based-routing"
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
        sort_wide_random_ties(out, candidates.len(), |i| cost_key(&candidates[i]), rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deps, rank_with};

    #[test]
    fn cheapest_first_unknown_last() {
        let d = deps(5);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        let prices = [Some(3e-6), None, Some(1e-6), Some(f64::NAN), Some(2e-6)];
        for (cand, p) in c.iter_mut().zip(prices) {
            cand.cost_per_token = p;
        }
        let out = rank_with(&CostBased, &c, 3);
        assert_eq!(&out[..3], [2, 4, 0]);
        let mut tail = out[3..].to_vec();
        tail.sort_unstable();
        assert_eq!(tail, [1, 3]);
    }

    #[test]
    fn equal_prices_share_the_first_place() {
        let d = deps(3);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        for (cand, p) in c.iter_mut().zip([1e-6, 1e-6, 5e-6]) {
            cand.cost_per_token = Some(p);
        }
        let mut firsts = [0usize; 3];
        for seed in 0..400 {
            let out = rank_with(&CostBased, &c, seed);
            assert_eq!(out[2], 2);
            firsts[out[0]] += 1;
        }
        assert!(firsts[0] > 150 && firsts[1] > 150, "{firsts:?}");
    }
}
