//! `simple-shuffle`: weighted random order.

use rand::RngCore;

use crate::util::{below, extend_rotated, extend_rotated_filtered};
use crate::{CallContext, Candidate, Strategy};

/// Weighted random ranking, LiteLLM's default `simple-shuffle`.
///
/// The weight set is chosen once per call over all candidates:
/// - if any candidate sets `weight`, weights are used, and a candidate
///   without one counts as [`DEFAULT_WEIGHT`] (fractional weights work;
///   a negative, NaN or infinite weight counts as 0);
/// - else if any sets `rpm`, rpm is the weight; else if any sets `tpm`, tpm is;
///   a candidate missing that field gets the mean of those that set it;
/// - else (or when every weight is 0) all are equally likely.
///
/// The first [`WEIGHTED_PICKS`] positions are drawn with probability
/// proportional to weight, each among the candidates not drawn yet (weighted
/// sampling without replacement): that covers the first attempt and the
/// retries of the default `num_retries: 2`. The rest follow in index order
/// rotated from a random offset, candidates of weight 0 after all others.
///
/// Cost: one pass over the candidates sums every weight set in 64 blocks;
/// a weighted pick then scans the block sums and one block (about n/64
/// candidates); the rest of the ranking is plain stores. O(n), no allocation
/// besides `out`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimpleShuffle;

/// The weight a candidate without `weight` gets when others set one.
pub const DEFAULT_WEIGHT: f64 = 1.0;

/// How many leading positions of a ranking are drawn by weight.
pub const WEIGHTED_PICKS: usize = 3;

/// How many blocks the candidates are summed in: a weighted pick scans the
/// block sums, then one block, instead of the whole pool.
const BLOCKS: usize = 64;

/// Which field weighs the candidates of one call.
#[derive(Debug, Clone, Copy)]
enum Weights {
    /// `weight`, missing = [`DEFAULT_WEIGHT`].
    Weight,
    /// `rpm`, missing = the mean of those set.
    Rpm(f64),
    /// `tpm`, missing = the mean of those set.
    Tpm(f64),
}

impl Weights {
    fn of(self, c: &Candidate<'_>) -> f64 {
        match self {
            Self::Weight => c.deployment.weight.map_or(DEFAULT_WEIGHT, sane),
            Self::Rpm(mean) => c.deployment.rpm.map_or(mean, |v| v as f64),
            Self::Tpm(mean) => c.deployment.tpm.map_or(mean, |v| v as f64),
        }
    }
}

/// A usable weight: positive and finite, else 0.
fn sane(w: f64) -> f64 {
    if w > 0.0 && w.is_finite() { w } else { 0.0 }
}

/// The one pass over the candidates: the block sums of `weight` (missing =
/// [`DEFAULT_WEIGHT`]) and the totals of `rpm` and `tpm`.
#[derive(Debug)]
struct Sums {
    block_len: usize,
    /// Blocks in use: `ceil(n / block_len)`.
    used: usize,
    any_weight: bool,
    weight_zeros: usize,
    rpm_set: usize,
    rpm_sum: f64,
    rpm_zeros: usize,
    tpm_set: usize,
    tpm_sum: f64,
    tpm_zeros: usize,
}

impl Sums {
    /// Sums `candidates`, writing the block sums of `weight` to `block_w`.
    fn of(candidates: &[Candidate<'_>], block_w: &mut [f64; BLOCKS]) -> Self {
        let block_len = candidates.len().div_ceil(BLOCKS).max(1);
        let mut s = Self {
            block_len,
            used: 0,
            any_weight: false,
            weight_zeros: 0,
            rpm_set: 0,
            rpm_sum: 0.0,
            rpm_zeros: 0,
            tpm_set: 0,
            tpm_sum: 0.0,
            tpm_zeros: 0,
        };
        for (chunk, block) in candidates.chunks(block_len).zip(block_w.iter_mut()) {
            s.used += 1;
            let mut sum = 0.0;
            for c in chunk {
                let d = c.deployment;
                match d.weight {
                    Some(w) => {
                        s.any_weight = true;
                        let w = sane(w);
                        sum += w;
                        s.weight_zeros += usize::from(w == 0.0);
                    }
                    None => sum += DEFAULT_WEIGHT,
                }
                if let Some(r) = d.rpm {
                    s.rpm_set += 1;
                    s.rpm_sum += r as f64;
                    s.rpm_zeros += usize::from(r == 0);
                }
                if let Some(t) = d.tpm {
                    s.tpm_set += 1;
                    s.tpm_sum += t as f64;
                    s.tpm_zeros += usize::from(t == 0);
                }
            }
            *block = sum;
        }
        s
    }

    /// The weight set and how many candidates weigh 0, with `block_w` made
    /// the block sums of that set (a second pass for `rpm`/`tpm`); `None`
    /// for uniform.
    fn choose(
        &self,
        candidates: &[Candidate<'_>],
        block_w: &mut [f64; BLOCKS],
    ) -> Option<(Weights, usize)> {
        let n = candidates.len();
        let (weights, zeros) = if self.any_weight {
            (Weights::Weight, self.weight_zeros)
        } else {
            let (weights, mean, set, zeros) = if self.rpm_set > 0 {
                let mean = self.rpm_sum / self.rpm_set as f64;
                (Weights::Rpm(mean), mean, self.rpm_set, self.rpm_zeros)
            } else if self.tpm_set > 0 {
                let mean = self.tpm_sum / self.tpm_set as f64;
                (Weights::Tpm(mean), mean, self.tpm_set, self.tpm_zeros)
            } else {
                return None;
            };
            for (chunk, block) in candidates.chunks(self.block_len).zip(block_w.iter_mut()) {
                *block = chunk.iter().map(|c| weights.of(c)).sum();
            }
            // Missing values get the mean: weight 0 too when it is 0.
            (
                weights,
                if mean == 0.0 {
                    zeros + (n - set)
                } else {
                    zeros
                },
            )
        };
        let total: f64 = block_w[..self.used].iter().sum();
        (total > 0.0 && total.is_finite()).then_some((weights, zeros))
    }
}

/// A uniform float in `[0, 1)`.
fn unit(rng: &mut dyn RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws one candidate not in `picked` with probability proportional to its
/// weight: a block by its remaining weight, then a candidate in it. The
/// drawn weight is taken off its block and off `remaining` (the sum of the
/// positive block weights).
fn weighted_pick(
    candidates: &[Candidate<'_>],
    weights: Weights,
    block_len: usize,
    block_w: &mut [f64],
    remaining: &mut f64,
    picked: &[usize],
    rng: &mut dyn RngCore,
) -> Option<usize> {
    // A block may keep a rounding residue after its last positive candidate
    // was drawn: found empty, it is zeroed and the draw repeated.
    for _ in 0..=block_w.len() {
        if remaining.is_nan() || *remaining <= 0.0 {
            *remaining = block_w.iter().filter(|w| **w > 0.0).sum();
            if remaining.is_nan() || *remaining <= 0.0 {
                return None;
            }
        }
        let target = unit(rng) * *remaining;
        let mut acc = 0.0;
        let mut chosen = None;
        for (j, &w) in block_w.iter().enumerate() {
            if w > 0.0 {
                acc += w;
                chosen = Some((j, target - (acc - w)));
                if target < acc {
                    break;
                }
            }
        }
        let (j, target) = chosen?;
        let lo = j * block_len;
        let hi = (lo + block_len).min(candidates.len());
        let mut acc = 0.0;
        let mut found = None;
        for (i, c) in candidates[lo..hi].iter().enumerate() {
            let i = lo + i;
            let w = weights.of(c);
            if w <= 0.0 || picked.contains(&i) {
                continue;
            }
            acc += w;
            found = Some((i, w));
            if target < acc {
                break;
            }
        }
        match found {
            Some((i, w)) => {
                block_w[j] -= w;
                *remaining -= w;
                return Some(i);
            }
            None => {
                *remaining -= block_w[j];
                block_w[j] = 0.0;
            }
        }
    }
    None
}

/// Draws one index of `0..n` not in `picked` (sorted ascending), uniformly.
fn uniform_pick(n: usize, picked: &[usize], rng: &mut dyn RngCore) -> usize {
    let mut r = below(rng, n - picked.len());
    for &p in picked {
        if r >= p {
            r += 1;
        }
    }
    r
}

impl Strategy for SimpleShuffle {
    fn name(&self) -> &'static str {
        "simple-shuffle"
    }

    fn rank(
        &self,
        call: &CallContext,
        candidates: &[Candidate<'_>],
        rng: &mut dyn RngCore,
        out: &mut Vec<usize>,
    ) {
        if let Some(index) = call
            .weights
            .as_deref()
            .filter(|w| w.len() == candidates.len())
        {
            index.rank(rng, out);
            return;
        }
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
        let mut picked = [0usize; WEIGHTED_PICKS];
        let mut k = 0;
        let mut block_w = [0.0; BLOCKS];
        let sums = Sums::of(candidates, &mut block_w);
        match sums.choose(candidates, &mut block_w) {
            None => {
                // Uniform: the picks need no reads at all.
                let mut sorted = [0usize; WEIGHTED_PICKS];
                while k < WEIGHTED_PICKS.min(n) {
                    let i = uniform_pick(n, &sorted[..k], rng);
                    picked[k] = i;
                    sorted[k] = i;
                    k += 1;
                    sorted[..k].sort_unstable();
                }
                out.extend_from_slice(&picked[..k]);
                let offset = below(rng, n);
                extend_rotated(out, n, offset, &mut picked[..k]);
            }
            Some((weights, zeros)) => {
                let positives = n - zeros;
                let block_w = &mut block_w[..sums.used];
                let mut remaining: f64 = block_w.iter().sum();
                while k < WEIGHTED_PICKS.min(positives) {
                    let Some(i) = weighted_pick(
                        candidates,
                        weights,
                        sums.block_len,
                        block_w,
                        &mut remaining,
                        &picked[..k],
                        rng,
                    ) else {
                        break;
                    };
                    picked[k] = i;
                    k += 1;
                }
                out.extend_from_slice(&picked[..k]);
                let offset = below(rng, n);
                if zeros == 0 || k == positives {
                    // Either no zero weights, or only they are left.
                    extend_rotated(out, n, offset, &mut picked[..k]);
                } else {
                    let w = |i: usize| weights.of(&candidates[i]);
                    extend_rotated_filtered(out, n, offset, &picked[..k], |i| w(i) > 0.0);
                    extend_rotated_filtered(out, n, offset, &picked[..k], |i| w(i) <= 0.0);
                }
            }
        }
    }
}

/// The `simple-shuffle` weights of a fixed list of candidates, summed ahead
/// of the calls: a ranking then draws its weighted picks by binary search
/// (O(log n)) and reads no candidate, instead of one pass over all of them.
///
/// The router builds one per model group from its config (weights do not
/// change between calls) and hands it over in [`CallContext::weights`] when
/// a call's candidates are the whole group, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightIndex {
    /// Running sums of the weights; the last is the total.
    cumulative: Vec<f64>,
    /// Per candidate: weighs 0 (ranked after every other).
    zero: Vec<bool>,
    zeros: usize,
}

impl WeightIndex {
    /// The weights of `candidates` by [`SimpleShuffle`]'s rules.
    pub fn new(candidates: &[Candidate<'_>]) -> Self {
        let mut block_w = [0.0; BLOCKS];
        let sums = Sums::of(candidates, &mut block_w);
        let rule = sums.choose(candidates, &mut block_w).map(|(w, _)| w);
        let mut cumulative = Vec::with_capacity(candidates.len());
        let mut zero = Vec::with_capacity(candidates.len());
        let mut total = 0.0;
        for c in candidates {
            // Uniform when no rule applies: every candidate weighs 1.
            let w = rule.map_or(1.0, |r| sane(r.of(c)));
            total += w;
            cumulative.push(total);
            zero.push(w == 0.0);
        }
        let zeros = zero.iter().filter(|z| **z).count();
        Self {
            cumulative,
            zero,
            zeros,
        }
    }

    /// How many candidates it was built from.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Whether it was built from no candidate.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// A ranking: [`WEIGHTED_PICKS`] weighted draws without replacement,
    /// then the rest rotated from a random offset, weight-0 candidates last.
    fn rank(&self, rng: &mut dyn RngCore, out: &mut Vec<usize>) {
        out.clear();
        let n = self.len();
        if n <= 1 {
            out.extend(0..n);
            return;
        }
        out.reserve(n);
        let total = self.cumulative[n - 1];
        let positives = n - self.zeros;
        let mut picked = [0usize; WEIGHTED_PICKS];
        let mut k = 0;
        if total > 0.0 && total.is_finite() {
            let mut tries = 0;
            while k < WEIGHTED_PICKS.min(positives) && tries < 64 {
                tries += 1;
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                let i = self.cumulative.partition_point(|&c| c <= u).min(n - 1);
                if !self.zero[i] && !picked[..k].contains(&i) {
                    picked[k] = i;
                    k += 1;
                }
            }
        }
        out.extend_from_slice(&picked[..k]);
        let offset = below(rng, n);
        if self.zeros == 0 || k == positives {
            extend_rotated(out, n, offset, &mut picked[..k]);
        } else {
            extend_rotated_filtered(out, n, offset, &picked[..k], |i| !self.zero[i]);
            extend_rotated_filtered(out, n, offset, &picked[..k], |i| self.zero[i]);
        }
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
    fn the_precomputed_index_ranks_like_the_scan() {
        let mut deps: Vec<_> = (0..6)
            .map(|i| dep(&i.to_string()).with_weight(i as f64))
            .collect();
        deps.push(dep("unweighted")); // counts as weight 1
        let cands: Vec<_> = deps.iter().map(Candidate::new).collect();
        let call = CallContext {
            weights: Some(std::sync::Arc::new(WeightIndex::new(&cands))),
            ..CallContext::default()
        };
        let mut rng = SmallRng::seed_from_u64(11);
        let mut out = Vec::new();
        let mut firsts = vec![0usize; cands.len()];
        let draws = 40_000;
        for _ in 0..draws {
            SimpleShuffle.rank(&call, &cands, &mut rng, &mut out);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..cands.len()).collect::<Vec<_>>());
            assert_eq!(*out.last().unwrap(), 0, "weight 0 last");
            firsts[out[0]] += 1;
        }
        // weights 0,1,2,3,4,5 and 1: total 16
        for (i, w) in [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 1.0].iter().enumerate() {
            let share = firsts[i] as f64 / draws as f64;
            assert!(
                (share - w / 16.0).abs() < 0.01,
                "candidate {i}: {share} vs {}",
                w / 16.0
            );
        }
        // An index built for another pool size is ignored.
        let fewer = &cands[..3];
        SimpleShuffle.rank(&call, fewer, &mut rng, &mut out);
        assert_eq!(out.len(), 3);
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
    fn zero_weights_come_last_in_large_pools() {
        // 200 candidates over 64 blocks; every 10th weighs 0
        let deps: Vec<_> = (0..200)
            .map(|i| dep(&i.to_string()).with_weight(if i % 10 == 0 { 0.0 } else { 1.5 }))
            .collect();
        let cands: Vec<_> = deps.iter().map(Candidate::new).collect();
        let mut rng = SmallRng::seed_from_u64(12);
        let mut out = Vec::new();
        for _ in 0..50 {
            SimpleShuffle.rank(&CallContext::default(), &cands, &mut rng, &mut out);
            assert_eq!(out.len(), 200);
            assert!(out[..180].iter().all(|i| i % 10 != 0), "{out:?}");
            assert!(out[180..].iter().all(|i| i % 10 == 0));
        }
    }

    #[test]
    fn only_zero_weights_is_uniform() {
        let deps: Vec<_> = (0..4)
            .map(|i| dep(&i.to_string()).with_weight(0.0))
            .collect();
        let shares = first_pick_shares(&deps, 20_000, 8);
        for s in shares {
            assert!((s - 0.25).abs() < 0.02);
        }
    }

    #[test]
    fn seeded_exact_ranking() {
        let deps: Vec<_> = (0..6)
            .map(|i| dep(&i.to_string()).with_weight(f64::from(i + 1)))
            .collect();
        let cands: Vec<_> = deps.iter().map(Candidate::new).collect();
        let mut rng = SmallRng::seed_from_u64(2024);
        let mut out = Vec::new();
        SimpleShuffle.rank(&CallContext::default(), &cands, &mut rng, &mut out);
        // three weighted draws, then the rest rotated from a random offset
        assert_eq!(out, [4, 2, 3, 5, 0, 1]);
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
