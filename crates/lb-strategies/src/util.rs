//! Building blocks the strategies share: cheap index orders, keyed sorts with
//! random ties, and sort keys for floats.

use rand::{Rng, RngCore};

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

/// Two distinct indices drawn uniformly from `0..n` (`n >= 2`), in draw order.
pub(crate) fn two_distinct(n: usize, rng: &mut dyn RngCore) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// Fisher-Yates shuffle.
pub(crate) fn shuffle(items: &mut [usize], rng: &mut dyn RngCore) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

/// Sorts the indices in `out` by `key`, ascending, then shuffles every run of
/// equal keys: ties come out in uniformly random order, and the RNG is drawn
/// only for tied indices (none when all keys differ). O(n log n), no
/// allocation.
pub(crate) fn sort_random_ties(
    out: &mut [usize],
    key: impl Fn(usize) -> u64,
    rng: &mut dyn RngCore,
) {
    out.sort_unstable_by_key(|&i| key(i));
    let mut start = 0;
    while start < out.len() {
        let k = key(out[start]);
        let mut end = start + 1;
        while end < out.len() && key(out[end]) == k {
            end += 1;
        }
        if end - start > 1 {
            shuffle(&mut out[start..end], rng);
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
        let keys = [3u64, 1, 3, 2, 1, 3];
        let mut rng = SmallRng::seed_from_u64(5);
        let mut seen_first_tie = [0usize; 6];
        for _ in 0..600 {
            let mut out: Vec<usize> = (0..keys.len()).collect();
            sort_random_ties(&mut out, |i| keys[i], &mut rng);
            let sorted: Vec<u64> = out.iter().map(|&i| keys[i]).collect();
            assert_eq!(sorted, [1, 1, 2, 3, 3, 3]);
            seen_first_tie[out[0]] += 1;
        }
        // both candidates with key 1 come first about equally often
        assert!(
            seen_first_tie[1] > 250 && seen_first_tie[4] > 250,
            "{seen_first_tie:?}"
        );
    }
}
