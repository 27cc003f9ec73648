//! Routing strategies: rank the candidate deployments of one call.
//!
//! A [`Strategy`] is pure and synchronous: given the candidates (deployments
//! that passed health, limit and tag filters, with a snapshot of their stats)
//! and a random number generator, it writes their indices in preference
//! order. The router tries the first and, on retry, the next. No I/O, no
//! clock reads, no locks; the same RNG seed gives the same ranking.
//!
//! ```
//! use lb_core::Deployment;
//! use lb_strategies::{CallContext, Candidate, SimpleShuffle, Strategy};
//! use rand::{SeedableRng, rngs::SmallRng};
//!
//! let a = Deployment::new("a", "g", "openai", "m").with_weight(3.0);
//! let b = Deployment::new("b", "g", "openai", "m").with_weight(1.0);
//! let candidates = [Candidate::new(&a), Candidate::new(&b)];
//! let mut rng = SmallRng::seed_from_u64(7);
//! let mut order = Vec::new();
//! SimpleShuffle.rank(&CallContext::default(), &candidates, &mut rng, &mut order);
//! assert_eq!(order.len(), 2); // every candidate exactly once
//! ```
//!
//! Why rank instead of pick: a retry takes the next candidate of the same
//! ranking instead of drawing a new lottery that may return the deployment
//! that just failed.
//!
//! # The strategies
//!
//! By their `router_settings.routing_strategy` names ([`StrategyKind::from_name`]):
//!
//! - `simple-shuffle` ([`SimpleShuffle`], the default): weighted random by
//!   `weight`, else `rpm`, else `tpm`, else uniform. A weight set on *any*
//!   deployment turns weighting on (LiteLLM looks only at the first), a
//!   deployment without one weighs [`DEFAULT_WEIGHT`], fractional weights
//!   work. The first [`WEIGHTED_PICKS`] positions are weighted draws without
//!   replacement; the rest follow in a rotated order, weight 0 last.
//! - `least-busy` ([`LeastBusy`]): fewest calls in flight first, random among
//!   equals.
//! - `latency-based-routing` ([`LatencyBased`]): deployments without latency
//!   samples first (random among them), then those within
//!   `lowest_latency_buffer` of the best (random among them), then the rest
//!   fastest first. Latency is seconds per output token for completions and
//!   time to first token for streams, the mean of a sliding window
//!   (`lb_health::LatencyWindow`).
//! - `cost-based-routing` ([`CostBased`]): cheapest price per token (input plus
//!   output) first, random among equal prices, unknown prices last.
//! - `usage-based-routing-v2`, alias `usage-based-routing` ([`UsageBased`]):
//!   fewest tokens used this minute first, random among equals; deployments
//!   the call would push over their `tpm` or `rpm` are left out, at the limit
//!   and not one before it ([`fits_limits`]).
//! - `latency-p2c` ([`LatencyP2C`], not in LiteLLM): power of two random
//!   choices by peak-EWMA latency times calls in flight, as tower's balancer.
//!
//! Every strategy ranks each usable candidate exactly once (only
//! `usage-based-routing-v2` leaves any out) and costs at most O(n log n)
//! with no allocation besides `out`; `simple-shuffle` is O(n) and
//! `latency-p2c` O(1) plus plain stores to fill `out`. Equal candidates
//! (same calls in flight, same price...) are in random order: within the
//! first [`RANDOM_PLACES`] places of a ranking as a uniform random draw,
//! further down rotated by a random offset, so each is equally likely at
//! every place while a group of ten thousand equals costs a few random
//! draws, not ten thousand. LiteLLM's
//! selection grows with the square of the pool; `docs/benchmarks.md` has the
//! measured cost per call at 10 to 10,000 candidates.
//!
//! # When to prefer `latency-p2c`
//!
//! - Large pools: its choice reads two candidates, whatever the pool size;
//!   the sorting strategies read and order them all.
//! - Many gateway instances: each instance decides from its own view of
//!   latency and in-flight calls, and the random pair keeps instances from
//!   herding onto the one deployment that looks best to all of them at once
//!   (the failure of "always the fastest" and "always the least busy" with
//!   stale or partial views). No shared state (Redis) is needed.
//! - It reacts to load, not latency alone: a fast deployment that piles up
//!   calls in flight costs more, and the peak EWMA jumps on a slow answer at
//!   once and forgets it within seconds, so traffic moves away from a
//!   degrading deployment before its mean latency shows it.
//!
//! Prefer `latency-based-routing` for LiteLLM-compatible behaviour with
//! per-token latency, `least-busy` for long streams where calls in flight are
//! the load, `usage-based-routing-v2` to stay under provider TPM/RPM quotas.

#![forbid(unsafe_code)]

mod cost;
mod latency;
mod least_busy;
mod p2c;
mod shuffle;
#[cfg(test)]
mod testing;
mod usage;
mod util;

pub use cost::CostBased;
pub use latency::LatencyBased;
pub use least_busy::LeastBusy;
pub use p2c::LatencyP2C;
pub use shuffle::{DEFAULT_WEIGHT, SimpleShuffle, WEIGHTED_PICKS, WeightIndex};
pub use usage::{UsageBased, fits_limits};
pub use util::RANDOM_PLACES;

use std::fmt;

use lb_core::Deployment;
use rand::RngCore;

/// One deployment a call may go to, with a snapshot of what the strategy may
/// read of it. The router fills the snapshot from `lb-health` and `lb-budget`;
/// a strategy reads only the fields it needs.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The deployment (weight, rpm/tpm limits, tags, order...).
    pub deployment: &'a Deployment,
    /// Calls in flight to it now.
    pub in_flight: u64,
    /// Mean of its recent latency samples for this kind of call, in seconds:
    /// seconds per output token for completions, time to first token for
    /// streams. `None` when it has no samples yet.
    pub latency: Option<f64>,
    /// Its peak-EWMA latency in seconds (for `latency-p2c`); `None` without samples.
    pub peak_ewma: Option<f64>,
    /// Its price in USD per token (input plus output), when known.
    pub cost_per_token: Option<f64>,
    /// Tokens it used in the current minute window.
    pub tpm_used: u64,
    /// Requests it got in the current minute window.
    pub rpm_used: u64,
}

impl<'a> Candidate<'a> {
    /// A candidate with no recorded stats.
    pub fn new(deployment: &'a Deployment) -> Self {
        Self {
            deployment,
            in_flight: 0,
            latency: None,
            peak_ewma: None,
            cost_per_token: None,
            tpm_used: 0,
            rpm_used: 0,
        }
    }
}

/// What a strategy may know of the call being routed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallContext {
    /// Estimated tokens of the call (prompt plus expected output).
    pub estimated_tokens: u64,
    /// Whether the call is a stream.
    pub stream: bool,
    /// The candidates' `simple-shuffle` weights, summed ahead of the call
    /// (the router keeps one per model group, built from its config), when
    /// the candidates are exactly the ones it was built from, in order.
    pub weights: Option<std::sync::Arc<WeightIndex>>,
}

/// Ranks the candidates of one call.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// The strategy's config name (`simple-shuffle`, ...).
    fn name(&self) -> &'static str;

    /// Clears `out` and fills it with the indices of `candidates` in
    /// preference order, each index at most once. A strategy may leave out
    /// candidates it must not use (e.g. over a limit); the router never tries
    /// those.
    fn rank(
        &self,
        call: &CallContext,
        candidates: &[Candidate<'_>],
        rng: &mut dyn RngCore,
        out: &mut Vec<usize>,
    );
}

/// Settings of the strategies (`router_settings.routing_strategy_args`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrategyArgs {
    /// `lowest_latency_buffer` of `latency-based-routing`: candidates within
    /// `best × (1 + buffer)` count as equally fast. LiteLLM's default is 0.
    pub lowest_latency_buffer: f64,
}

impl Default for StrategyArgs {
    fn default() -> Self {
        Self {
            lowest_latency_buffer: 0.0,
        }
    }
}

/// The strategies known by name, as LiteLLM's `routing_strategy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// `simple-shuffle`: weighted random.
    SimpleShuffle,
    /// `least-busy`: fewest calls in flight.
    LeastBusy,
    /// `latency-based-routing`: lowest recent latency, with a buffer.
    LatencyBased,
    /// `cost-based-routing`: cheapest price per token.
    CostBased,
    /// `usage-based-routing-v2` (and `usage-based-routing`): fewest tokens
    /// used this minute, within TPM/RPM limits.
    UsageBased,
    /// `latency-p2c`: power of two random choices by peak-EWMA load.
    LatencyP2C,
}

impl StrategyKind {
    /// Every kind.
    pub const ALL: &'static [StrategyKind] = &[
        Self::SimpleShuffle,
        Self::LeastBusy,
        Self::LatencyBased,
        Self::CostBased,
        Self::UsageBased,
        Self::LatencyP2C,
    ];

    /// Parses a `routing_strategy` value; `None` for unknown names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "simple-shuffle" => Some(Self::SimpleShuffle),
            "least-busy" => Some(Self::LeastBusy),
            "latency-based-routing" => Some(Self::LatencyBased),
            "cost-based-routing" => Some(Self::CostBased),
            "usage-based-routing-v2" | "usage-based-routing" => Some(Self::UsageBased),
            "latency-p2c" => Some(Self::LatencyP2C),
            _ => None,
        }
    }

    /// The config name (for `UsageBased`, `usage-based-routing-v2`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SimpleShuffle => "simple-shuffle",
            Self::LeastBusy => "least-busy",
            Self::LatencyBased => "latency-based-routing",
            Self::CostBased => "cost-based-routing",
            Self::UsageBased => "usage-based-routing-v2",
            Self::LatencyP2C => "latency-p2c",
        }
    }

    /// Every name LiteLLM accepts for `routing_strategy`.
    pub const LITELLM_NAMES: &'static [&'static str] = &[
        "simple-shuffle",
        "least-busy",
        "usage-based-routing",
        "usage-based-routing-v2",
        "latency-based-routing",
        "cost-based-routing",
    ];

    /// Every name [`from_name`](Self::from_name) accepts: LiteLLM's and ours.
    pub const NAMES: &'static [&'static str] = &[
        "simple-shuffle",
        "least-busy",
        "usage-based-routing",
        "usage-based-routing-v2",
        "latency-based-routing",
        "cost-based-routing",
        "latency-p2c",
    ];

    /// A boxed strategy of this kind, with default settings.
    pub fn build(self) -> Box<dyn Strategy> {
        self.build_with(&StrategyArgs::default())
    }

    /// A boxed strategy of this kind, with `args`.
    pub fn build_with(self, args: &StrategyArgs) -> Box<dyn Strategy> {
        match self {
            Self::SimpleShuffle => Box::new(SimpleShuffle),
            Self::LeastBusy => Box::new(LeastBusy),
            Self::LatencyBased => Box::new(LatencyBased::new(args.lowest_latency_buffer)),
            Self::CostBased => Box::new(CostBased),
            Self::UsageBased => Box::new(UsageBased),
            Self::LatencyP2C => Box::new(LatencyP2C),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &kind in StrategyKind::ALL {
            assert_eq!(StrategyKind::from_name(kind.name()), Some(kind));
            assert_eq!(kind.build().name(), kind.name());
            assert!(StrategyKind::NAMES.contains(&kind.name()));
        }
        for name in StrategyKind::NAMES {
            assert!(StrategyKind::from_name(name).is_some(), "{name}");
        }
        for name in StrategyKind::LITELLM_NAMES {
            assert!(StrategyKind::NAMES.contains(name));
        }
        assert_eq!(
            StrategyKind::from_name("usage-based-routing"),
            Some(StrategyKind::UsageBased)
        );
        assert_eq!(StrategyKind::from_name("round-robin"), None);
    }

    #[test]
    fn build_with_passes_the_buffer() {
        let s = StrategyKind::LatencyBased.build_with(&StrategyArgs {
            lowest_latency_buffer: 0.25,
        });
        assert_eq!(format!("{s:?}"), "LatencyBased { buffer: 0.25 }");
    }
}
