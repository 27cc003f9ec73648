//! Building blocks the strategies share: cheap index orders, keyed sorts with
//! random ties, and sort keys for floats.

use rand::RngCore;

/// Pushes `lo..hi` onto `out`, leaving out the indices in `skip` (sorted
/// ascending).
fn extend_range_skipping(out: &mut Vec<usize>, mut lo: usize, hi: usize, skip: &[usize]) {
    for &s in skip {
        if s >= lo && s < hi {
            out.extend(lo..s);
            lo = s + 1;
        }
    }
    if lo < hi {
        out.extend(lo..hi);
    }
}

/// Pushes every index of `0..n` except those in `skip`, starting at `offset`
/// and wrapping around: `offset..n` then `0..offset`. O(n) plain stores, no
/// reads of the candidates. `skip` is sorted in place (it holds a few indices).
pub(crate) fn extend_rotated(out: &mut Vec<usize>, n: usize, offset: usize, skip: &mut [usize]) {
    skip.sort_unstable();
    let offset = offset.min(n);
    extend_range_skipping(out, offset, n, skip);
    extend_range_skipping(out, 0, offset, skip);
}

/// Pushes the indices of `0..n` that are not in `skip` and satisfy `keep`,
/// starting at `offset` and wrapping around.
pub(crate) fn extend_rotated_filtered(
    out: &mut Vec<usize>,
    n: usize,
    offset: usize,
    skip: &[usize],
    keep: impl Fn(usize) -> bool,
) {
    let offset = offset.min(n);
    out.extend(
        (offset..n)
            .chain(0..offset)
            .filter(|i| !skip.contains(i) && keep(*i)),
    );
}

/// A uniform index of `0..bound` (`bound > 0`): Lemire's multiply-shift with
/// rejection, one `next_u64` per draw (almost always), exact.
pub(crate) fn below(rng: &mut dyn RngCore, bound: usize) -> usize {
    let s = bound as u64;
    let mut m = u128::from(rng.next_u64()) * u128::from(s);
    if (m as u64) < s {
        let threshold = s.wrapping_neg() % s;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(s);
        }
    }
    (m >> 64) as usize
}

/// Two distinct indices drawn uniformly from `0..n` (`n >= 2`), in draw order.
pub(crate) fn two_distinct(n: usize, rng: &mut dyn RngCore) -> (usize, usize) {
    let a = below(rng, n);
    let mut b = below(rng, n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// The leading places of a ranking where equal candidates are in uniformly
/// random order: the first attempt and up to seven retries.
pub const RANDOM_PLACES: usize = 8;

/// Puts a run of equal candidates that starts at place `at` of the ranking
/// in random order: its places before [`RANDOM_PLACES`] hold a uniform
/// random draw of the run (a partial Fisher-Yates shuffle), the rest follow
/// rotated by a random offset. So every candidate of the run is equally
/// likely at every place, and the RNG is drawn at most `RANDOM_PLACES + 1`
/// times per run, not once per candidate.
pub(crate) fn shuffle_run(run: &mut [usize], at: usize, rng: &mut dyn RngCore) {
    let len = run.len();
    if len < 2 {
        return;
    }
    let drawn = RANDOM_PLACES.saturating_sub(at).min(len - 1);
    for i in 0..drawn {
        let j = i + below(rng, len - i);
        run.swap(i, j);
    }
    let rest = &mut run[drawn..];
    if rest.len() > 1 {
        let k = below(rng, rest.len());
        rest.rotate_left(k);
    }
}

/// Key ranges up to this wide are sorted by counting, in O(n).
const COUNTING_RANGE: u64 = 64;

/// Sorts the indices in `out` (each below `universe`) by `key`, ascending,
/// and puts every run of equal keys in random order ([`shuffle_run`]); the
/// RNG is drawn only for ties (not at all when every key differs).
///
/// Keys within a range of [`COUNTING_RANGE`] (calls in flight, say) are
/// sorted by counting in O(n), with `out`'s spare capacity as the scatter
/// buffer; wider ones by a comparison sort, O(n log n). No allocation
/// besides `out` itself.
pub(crate) fn sort_random_ties(
    out: &mut Vec<usize>,
    universe: usize,
    key: impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) {
    let Some((min, max)) = out.iter().map(|&i| key(i)).fold(None, widen) else {
        return;
    };
    sort_random_ties_within(out, universe, (min, max), key, rng);
}

/// `range` widened to hold `k`.
pub(crate) fn widen(range: Option<(u64, u64)>, k: u64) -> Option<(u64, u64)> {
    Some(range.map_or((k, k), |(lo, hi)| (lo.min(k), hi.max(k))))
}

/// [`sort_random_ties`] when the caller knows the smallest and largest key.
pub(crate) fn sort_random_ties_within(
    out: &mut Vec<usize>,
    universe: usize,
    (min, max): (u64, u64),
    key: impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) {
    if max - min < COUNTING_RANGE {
        counting_sort_random_ties(out, |i| (key(i) - min) as usize, rng);
    } else if usize::BITS == 64 {
        packed_sort_random_ties(out, universe, max - min, |i| key(i) - min, rng);
    } else {
        out.sort_unstable_by_key(|&i| key(i));
        shuffle_equal_runs(out, 0, &key, rng);
    }
}

/// [`sort_random_ties`] for keys spread over the whole `u64` range (floats
/// as [`float_key`] maps them): no counting sort, and no pass to find the
/// key range; the comparison sort packs the key's top bits with the index.
pub(crate) fn sort_wide_random_ties(
    out: &mut [usize],
    universe: usize,
    key: impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) {
    if usize::BITS == 64 {
        packed_sort_random_ties(out, universe, u64::MAX, key, rng);
    } else {
        out.sort_unstable_by_key(|&i| key(i));
        shuffle_equal_runs(out, 0, &key, rng);
    }
}

/// Counting sort by `bucket(i) < COUNTING_RANGE`: count, scatter into the
/// second half of `out`, move back, then [`shuffle_run`] every bucket. Two
/// sequential passes over the keys, no dependent loads.
fn counting_sort_random_ties(
    out: &mut Vec<usize>,
    bucket: impl Fn(usize) -> usize,
    rng: &mut dyn RngCore,
) {
    const R: usize = COUNTING_RANGE as usize;
    let m = out.len();
    let mut next = [0usize; R];
    for &i in out.iter() {
        next[bucket(i)] += 1;
    }
    let mut sum = m;
    for n in next.iter_mut() {
        let count = *n;
        *n = sum;
        sum += count;
    }
    let starts = next;
    out.resize(2 * m, 0);
    for j in 0..m {
        let i = out[j];
        let b = bucket(i);
        out[next[b]] = i;
        next[b] += 1;
    }
    out.copy_within(m.., 0);
    out.truncate(m);
    for (&s, &e) in starts.iter().zip(next.iter()) {
        if e - s > 1 {
            shuffle_run(&mut out[s - m..e - m], s - m, rng);
        }
    }
}

/// Shuffles every run of equal keys of the sorted `out`, which starts at
/// place `at` of the ranking.
fn shuffle_equal_runs(
    out: &mut [usize],
    at: usize,
    key: &impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) {
    let mut start = 0;
    while start < out.len() {
        let k = key(out[start]);
        let mut end = start + 1;
        while end < out.len() && key(out[end]) == k {
            end += 1;
        }
        shuffle_run(&mut out[start..end], at + start, rng);
        start = end;
    }
}

/// The comparison sort for 64-bit `usize`: each slot of `out` temporarily
/// holds the key's high bits above the index's bits, so the sort compares
/// plain integers instead of calling `key` through the index. Keys too wide
/// to fit beside the index lose their low bits; runs that compare equal that
/// way are checked (and if need be sorted again) by the exact key, so the
/// result is exact.
fn packed_sort_random_ties(
    out: &mut [usize],
    universe: usize,
    max_key: u64,
    key: impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) {
    let max_index = universe.saturating_sub(1) as u64;
    let index_bits = u64::BITS - max_index.leading_zeros();
    let key_bits = u64::BITS - max_key.leading_zeros();
    let shift = (key_bits + index_bits).saturating_sub(u64::BITS);
    for slot in out.iter_mut() {
        let i = *slot;
        *slot = (((key(i) >> shift) << index_bits) | i as u64) as usize;
    }
    out.sort_unstable();
    let mask = (1u64 << index_bits) - 1;
    let mut start = 0;
    while start < out.len() {
        let high = out[start] as u64 >> index_bits;
        let mut end = start + 1;
        while end < out.len() && out[end] as u64 >> index_bits == high {
            end += 1;
        }
        let run = &mut out[start..end];
        for slot in run.iter_mut() {
            *slot = (*slot as u64 & mask) as usize;
        }
        if run.len() > 1 {
            let first = key(run[0]);
            if shift == 0 || run.iter().all(|&i| key(i) == first) {
                shuffle_run(run, start, rng);
            } else {
                run.sort_unstable_by_key(|&i| key(i));
                shuffle_equal_runs(run, start, &key, rng);
            }
        }
        start = end;
    }
}

/// A sort key for a float: `a < b` exactly when `key(a) < key(b)`, for every
/// non-NaN float (negative ones included; `-0.0` and `0.0` are equal).
/// Callers map NaN themselves.
pub(crate) fn float_key(x: f64) -> u64 {
    // +0.0 for -0.0, so the two compare equal.
    let bits = (x + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};

    #[test]
    fn rotated_order_skips_and_wraps() {
        let mut out = Vec::new();
        extend_rotated(&mut out, 6, 4, &mut [5, 1]);
        assert_eq!(out, [4, 0, 2, 3]);
        out.clear();
        extend_rotated(&mut out, 3, 0, &mut []);
        assert_eq!(out, [0, 1, 2]);
        out.clear();
        extend_rotated(&mut out, 3, 7, &mut [0]);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn rotated_filtered_keeps_matching() {
        let mut out = Vec::new();
        extend_rotated_filtered(&mut out, 6, 2, &[3], |i| i % 2 == 1);
        assert_eq!(out, [5, 1]);
    }

    #[test]
    fn two_distinct_never_repeats() {
        let mut rng = SmallRng::seed_from_u64(1);
        for n in 2..20 {
            for _ in 0..200 {
                let (a, b) = two_distinct(n, &mut rng);
                assert!(a != b && a < n && b < n);
            }
        }
    }

    #[test]
    fn below_is_uniform_and_in_range() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[below(&mut rng, 7)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        assert_eq!(below(&mut rng, 1), 0);
    }

    #[test]
    fn packed_sort_is_exact_for_wide_keys() {
        // keys that differ only in their lowest bits, with many indices
        let keys: Vec<u64> = (0..1_000u64)
            .map(|i| u64::MAX - (i * 7919) % 1_000)
            .collect();
        let mut out: Vec<usize> = (0..keys.len()).collect();
        let mut rng = SmallRng::seed_from_u64(3);
        sort_random_ties(&mut out, keys.len(), |i| keys[i], &mut rng);
        for w in out.windows(2) {
            assert!(keys[w[0]] <= keys[w[1]]);
        }
        let mut seen = out.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
    }

    #[test]
    fn counting_sort_for_narrow_keys() {
        let keys = [7u64, 5, 9, 5, 70, 7, 6, 5];
        let mut rng = SmallRng::seed_from_u64(8);
        let mut firsts = [0usize; 8];
        for _ in 0..900 {
            let mut out: Vec<usize> = (0..keys.len()).collect();
            sort_random_ties(&mut out, keys.len(), |i| keys[i] - 5 + 1_000, &mut rng);
            let sorted: Vec<u64> = out.iter().map(|&i| keys[i]).collect();
            assert_eq!(sorted, [5, 5, 5, 6, 7, 7, 9, 70]);
            firsts[out[0]] += 1;
        }
        for i in [1, 3, 7] {
            assert!(firsts[i] > 240, "{firsts:?}");
        }
    }

    #[test]
    fn wide_sort_is_exact_with_ties() {
        let xs = [0.5, f64::INFINITY, 0.25, 0.5, 1e-300, 0.5, 0.0, 0.25];
        let mut rng = SmallRng::seed_from_u64(4);
        let mut firsts = [0usize; 8];
        for _ in 0..300 {
            let mut out: Vec<usize> = (0..xs.len()).collect();
            sort_wide_random_ties(&mut out, xs.len(), |i| float_key(xs[i]), &mut rng);
            let sorted: Vec<f64> = out.iter().map(|&i| xs[i]).collect();
            assert_eq!(
                sorted,
                [0.0, 1e-300, 0.25, 0.25, 0.5, 0.5, 0.5, f64::INFINITY]
            );
            firsts[out[4]] += 1;
        }
        for i in [0, 3, 5] {
            assert!(firsts[i] > 70, "{firsts:?}");
        }
    }

    #[test]
    fn long_runs_have_uniform_places_beyond_the_random_ones() {
        let mut rng = SmallRng::seed_from_u64(6);
        let n = 20;
        let mut at_place = vec![[0usize; 20]; 20];
        for _ in 0..20_000 {
            let mut run: Vec<usize> = (0..n).collect();
            shuffle_run(&mut run, 0, &mut rng);
            let mut seen = run.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            for (place, &i) in run.iter().enumerate() {
                at_place[place][i] += 1;
            }
        }
        // every candidate about 1/20 of the time at every place
        for place in &at_place {
            for &c in place {
                assert!((800..1_200).contains(&c), "{place:?}");
            }
        }
    }

    #[test]
    fn float_keys_order_like_floats() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1e-9,
            1.0,
            1.000_000_000_000_000_2,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(float_key(w[0]) < float_key(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(float_key(-0.0), float_key(0.0));
    }

    #[test]
    fn ties_are_shuffled_runs_stay_sorted() {
        let keys = [300u64, 1, 300, 200, 1, 300];
        let mut rng = SmallRng::seed_from_u64(5);
        let mut seen_first_tie = [0usize; 6];
        for _ in 0..600 {
            let mut out: Vec<usize> = (0..keys.len()).collect();
            sort_random_ties(&mut out, keys.len(), |i| keys[i], &mut rng);
            let sorted: Vec<u64> = out.iter().map(|&i| keys[i]).collect();
            assert_eq!(sorted, [1, 1, 200, 300, 300, 300]);
            seen_first_tie[out[0]] += 1;
        }
        // both candidates with key 1 come first about equally often
        assert!(
            seen_first_tie[1] > 250 && seen_first_tie[4] > 250,
            "{seen_first_tie:?}"
        );
    }
}
