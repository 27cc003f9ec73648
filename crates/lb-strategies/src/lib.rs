//! Routing strategies: rank the candidate deployments of one call.
//!
//! A [`Strategy`] is pure and synchronous: given the candidates (deployments
//! that passed health, limit and tag filters) and a random number generator,
//! it writes their indices in preference order. The router tries the first
//! and, on retry, the next. No I/O, no clock reads, no locks.
//!
//! ```
//! use lb_core::Deployment;
//! use lb_strategies::{Candidate, SimpleShuffle, Strategy};
//! use rand::{SeedableRng, rngs::SmallRng};
//!
//! let a = Deployment::new("a", "g", "openai", "m").with_weight(3.0);
//! let b = Deployment::new("b", "g", "openai", "m").with_weight(1.0);
//! let candidates = [Candidate::new(&a), Candidate::new(&b)];
//! let mut rng = SmallRng::seed_from_u64(7);
//! let mut order = Vec::new();
//! SimpleShuffle.rank(&candidates, &mut rng, &mut order);
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

/// One deployment a call may go to, with what the strategy may read of it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The deployment.
    pub deployment: &'a Deployment,
    /// Calls currently in flight to it.
    pub in_flight: u64,
}

impl<'a> Candidate<'a> {
    /// A candidate with no recorded stats.
    pub fn new(deployment: &'a Deployment) -> Self {
        Self {
            deployment,
            in_flight: 0,
        }
    }
}

/// Ranks the candidates of one call.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// The strategy's config name (`simple-shuffle`, ...).
    fn name(&self) -> &'static str;

    /// Clears `out` and fills it with the indices of `candidates` in
    /// preference order, each index exactly once.
    fn rank(&self, candidates: &[Candidate<'_>], rng: &mut dyn RngCore, out: &mut Vec<usize>);
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
