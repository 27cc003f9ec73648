//! Routing strategies: rank the candidate deployments of one call.
//!
//! A [`Strategy`] is pure and synchronous: given the candidates (deployments
//! that passed health, limit and tag filters) and a random number generator,
//! it writes their indices in preference order. The router tries the first
//! and, on retry, the next. No I/O, no clock reads, no locks.
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

#![forbid(unsafe_code)]

mod shuffle;

pub use shuffle::SimpleShuffle;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Estimated tokens of the call (prompt plus expected output).
    pub estimated_tokens: u64,
    /// Whether the call is a stream.
    pub stream: bool,
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

/// The strategies known by name, as LiteLLM's `routing_strategy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// `simple-shuffle`: weighted random.
    SimpleShuffle,
}

impl StrategyKind {
    /// Parses a `routing_strategy` value; `None` for names not implemented.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "simple-shuffle" => Some(Self::SimpleShuffle),
            _ => None,
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

    /// A boxed strategy of this kind.
    pub fn build(self) -> Box<dyn Strategy> {
        match self {
            Self::SimpleShuffle => Box::new(SimpleShuffle),
        }
    }
}
