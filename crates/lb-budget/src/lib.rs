//! Admission control: TPM/RPM limits, concurrency caps, spend budgets, token
//! estimates and the cost of a call.
//!
//! The router asks this crate two questions per attempt: *may this call go
//! to this deployment now?* and, afterwards, *what did it cost?*
//!
//! - Limits and budgets are reserved **before** the call, all in one atomic
//!   step on a [`CounterStore`](lb_core::CounterStore) ([`AdmissionPlan`],
//!   [`Admission`]), and settled with the real usage after it; the router
//!   builds each deployment's [`DeploymentKeys`] once, so a call allocates
//!   no key. The memory
//!   backend is [`MemoryStore`]; a Redis backend implements the same
//!   lb-core traits with the same semantics.
//! - Concurrency caps (`max_parallel_requests`) are held by a
//!   [`ConcurrencyPermit`](lb_core::ConcurrencyPermit) until the response or
//!   stream ends ([`max_parallel_requests`], [`concurrency_key`]).
//! - Costs come from a price table in the schema of LiteLLM's
//!   `model_prices_and_context_window.json` ([`PriceTable`],
//!   [`CostCalculator`]); estimates of a call's tokens from
//!   [`estimate_call_tokens`] and [`estimate_embedding_tokens`].
//!
//! # Window semantics
//!
//! Every window is fixed and aligned to the Unix epoch in UTC (see
//! [`Window`](lb_core::Window)): `rpm` and `tpm` count per wall-clock UTC
//! minute, as LiteLLM's `%H-%M` keys do; a budget of `1d` counts per UTC day,
//! `1mo` per calendar month. A window's count starts again from zero exactly
//! at its boundary, and a call counts in the window it was admitted in (its
//! settlement too, even if it finishes in the next one).
//!
//! # The guarantee
//!
//! A reservation is admitted only if every counter it touches has room:
//! `value + amount <= limit`, checked and added in one atomic step, so it
//! holds under any number of concurrent calls (and, with a shared store,
//! instances). Hence, in any window of any deployment:
//!
//! - admitted requests never exceed `rpm`;
//! - admitted tokens never exceed `tpm` plus the sum of
//!   `actual − estimate` over the calls that overran their estimate (more
//!   precisely, the calls still in flight when the window's last call was
//!   admitted);
//! - a budget's spend never exceeds its limit by more than the overruns of
//!   the calls in flight when it was crossed, and one call at a time, by
//!   more than that one call's estimate error;
//! - in-flight calls never exceed `max_parallel_requests`, and a permit
//!   cannot leak: dropping it (error, timeout, cancelled stream) frees it.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, UNIX_EPOCH};
//! use lb_budget::{Actual, Admission, AdmissionPlan, MemoryStore};
//! use lb_core::{CounterStore, Deployment, ReserveError};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store: Arc<dyn CounterStore> = Arc::new(MemoryStore::new());
//! let mut d = Deployment::new("d1", "gpt-4o", "openai", "gpt-4o");
//! d.rpm = Some(1);
//! let now = UNIX_EPOCH + Duration::from_secs(1_699_999_990);
//!
//! let call = Admission::reserve(store.clone(), AdmissionPlan::for_deployment(&d, 100), now)
//!     .await
//!     .expect("fits");
//! // The minute's only request is taken: the next call waits for the minute to end.
//! let Err(ReserveError::Denied(denied)) =
//!     Admission::reserve(store.clone(), AdmissionPlan::for_deployment(&d, 100), now).await
//! else { unreachable!() };
//! assert_eq!(denied.retry_after, Duration::from_secs(50));
//! call.settle(Actual { tokens: Some(80), cost_usd: None }).await.unwrap();
//! # });
//! ```
//!
//! Why reserve before the call rather than count after it (as LiteLLM
//! does): counting after lets every concurrent call through until the first
//! one finishes, so limits overshoot by the concurrency; a reservation makes
//! the limit hold and bounds the overshoot by the estimate's error, which the
//! settlement then corrects.

#![forbid(unsafe_code)]

pub mod budget;
pub mod cost;
pub mod error;
pub mod estimate;
pub mod limits;
pub mod memory;

pub use budget::{
    BudgetLimit, BudgetStatus, Budgets, ProviderBudgetConfig, ProviderBudgetEntry, micros_to_usd,
    usd_to_micros_ceil, usd_to_micros_floor,
};
pub use cost::{CostCalculator, ModelPrice, Price, PriceTable, SkippedEntry, cached_prompt_tokens};
pub use error::{BudgetConfigError, PriceTableError};
pub use estimate::{
    DEFAULT_COMPLETION_ESTIMATE, TOKENS_PER_MESSAGE, estimate_call_tokens,
    estimate_embedding_tokens, estimate_prompt_tokens,
};
pub use limits::{
    Actual, Admission, AdmissionPlan, DeploymentKeys, Kind, RateLimitStatus, concurrency_key,
    max_parallel_requests, rate_limit_status, rpm_key, total_tokens, tpm_key,
};
pub use memory::MemoryStore;
