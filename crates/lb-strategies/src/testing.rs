//! Helpers of the unit tests.

use lb_core::Deployment;
use rand::{SeedableRng, rngs::SmallRng};

use crate::{CallContext, Candidate, Strategy};

/// `n` deployments of one group, ids `0..n`, no settings.
pub(crate) fn deps(n: usize) -> Vec<Deployment> {
    (0..n)
        .map(|i| Deployment::new(i.to_string().as_str(), "g", "openai", "m"))
        .collect()
}

/// The ranking `s` gives with an RNG seeded with `seed`.
pub(crate) fn rank_with(s: &dyn Strategy, c: &[Candidate<'_>], seed: u64) -> Vec<usize> {
    rank_with_call(s, &CallContext::default(), c, seed)
}

/// The ranking `s` gives for `call` with an RNG seeded with `seed`.
pub(crate) fn rank_with_call(
    s: &dyn Strategy,
    call: &CallContext,
    c: &[Candidate<'_>],
    seed: u64,
) -> Vec<usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    s.rank(call, c, &mut rng, &mut out);
    out
}
