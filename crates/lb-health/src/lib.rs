//! Health of deployments: what happened to their calls, and what a failure means.
//!
//! [`DeploymentStats`] counts calls, successes, failures and in-flight calls of
//! one deployment with atomics; an [`InFlight`] guard holds one in-flight
//! count for the life of a call (a stream included) and cannot leak it on an
//! error, a timeout or a dropped future. [`after_failure`] is the one place
//! that decides what a failure's [`ErrorClass`] means for the call.
//!
//! ```
//! use std::sync::Arc;
//! use lb_health::DeploymentStats;
//!
//! let stats = Arc::new(DeploymentStats::default());
//! {
//!     let _call = stats.start();
//!     assert_eq!(stats.in_flight(), 1);
//! } // dropped: on success, error or cancellation alike
//! assert_eq!(stats.in_flight(), 0);
//! ```
//!
//! Why a guard and not counters bumped by hand: a future cancelled between the
//! increment and the decrement would leave a deployment looking busy forever.

#![forbid(unsafe_code)]

mod cooldown;
mod latency;
mod policy;
mod retry;
mod stats;

pub use cooldown::{
    AllowedFailsPolicy, Availability, CooldownEvent, CooldownReason, CooldownSettings,
    FailureContext, HealthSnapshot, HealthTracker, Trial, counts_against_deployment,
};
pub use latency::{LatencyWindow, PeakEwma};
pub use lb_core::ErrorClass;
pub use policy::{FailureAction, RetryPolicy, after_failure};
pub use retry::{Backoff, RetryBudget, RetryBudgetSettings};
pub use stats::{DeploymentStats, InFlight, StatsSnapshot};
