//! `usage-based-routing-v2`: fewest tokens used this minute first, within limits.

use rand::RngCore;

use crate::util::{sort_random_ties_within, widen};
use crate::{CallContext, Candidate, Strategy};

/// Ranks by tokens used in the current minute ([`Candidate::tpm_used`]),
/// fewest first, in random order among equals; LiteLLM's
/// `usage-based-routing-v2` (and `usage-based-routing`, an alias here).
///
/// A candidate the call would push over a limit is left out of the ranking:
/// over `tpm` when `tpm_used + estimated_tokens > tpm`, over `rpm` when
/// `rpm_used + 1 > rpm`. So a deployment is left out *at* its limit, not one
/// request before it (LiteLLM's off-by-one `rpm + 1 >= rpm_limit`). A
/// deployment without a limit is never left out. When every candidate is
/// left out, the ranking is empty and the router answers with a rate-limit
/// error. O(n log n); random draws only for equal usage.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageBased;

/// Whether `call` fits within `c`'s `tpm` and `rpm` limits this minute.
pub fn fits_limits(call: &CallContext, c: &Candidate<'_>) -> bool {
    let tpm_ok = c.deployment.tpm.is_none_or(|limit| {
        c.tpm_used
            .checked_add(call.estimated_tokens)
            .is_some_and(|t| t <= limit)
    });
    let rpm_ok = c
        .deployment
        .rpm
        .is_none_or(|limit| c.rpm_used.checked_add(1).is_some_and(|r| r <= limit));
    tpm_ok && rpm_ok
}

impl Strategy for UsageBased {
    fn name(&self) -> &'static str {
        "usage-based-routing-v2"
    }

    fn rank(
        &self,
        call: &CallContext,
        candidates: &[Candidate<'_>],
        rng: &mut dyn RngCore,
        out: &mut Vec<usize>,
    ) {
        out.clear();
        let mut range = None;
        for (i, c) in candidates.iter().enumerate() {
            if fits_limits(call, c) {
                out.push(i);
                range = widen(range, c.tpm_used);
            }
        }
        if let Some(range) = range {
            let used = |i: usize| candidates[i].tpm_used;
            sort_random_ties_within(out, candidates.len(), range, used, rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{deps, rank_with, rank_with_call};

    #[test]
    fn fewest_tokens_first() {
        let d = deps(3);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        for (cand, used) in c.iter_mut().zip([500, 100, 300]) {
            cand.tpm_used = used;
        }
        assert_eq!(rank_with(&UsageBased, &c, 1), [1, 2, 0]);
    }

    #[test]
    fn left_out_at_the_limit_not_before() {
        let mut d = deps(4);
        d[0].tpm = Some(1_000);
        d[1].tpm = Some(1_000);
        d[2].rpm = Some(10);
        d[3].rpm = Some(10);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        c[0].tpm_used = 900; // 900 + 100 = 1000: exactly at the limit, fits
        c[1].tpm_used = 901; // 1001: over
        c[2].rpm_used = 9; // the 10th request: fits
        c[3].rpm_used = 10; // the 11th: over
        let call = CallContext {
            estimated_tokens: 100,
            stream: false,
            weights: None,
        };
        let mut out = rank_with_call(&UsageBased, &call, &c, 2);
        out.sort_unstable();
        assert_eq!(out, [0, 2]);
    }

    #[test]
    fn a_zero_limit_and_overflowing_usage_never_fit() {
        let mut d = deps(2);
        d[0].tpm = Some(0);
        d[1].tpm = Some(u64::MAX);
        let mut c: Vec<_> = d.iter().map(Candidate::new).collect();
        c[1].tpm_used = u64::MAX;
        let call = CallContext {
            estimated_tokens: 1,
            stream: false,
            weights: None,
        };
        assert!(rank_with_call(&UsageBased, &call, &c, 1).is_empty());
    }
}
