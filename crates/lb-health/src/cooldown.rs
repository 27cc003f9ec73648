//! Cooldowns: which deployments may take calls now, decided from what their
//! recent calls ended in.
//!
//! Each deployment is a small circuit breaker:
//! - **closed**: takes calls; failures are counted in a one-minute window;
//! - **open** (cooling down) until a deadline: takes no calls;
//! - **half-open** once the deadline passes: takes one trial call at a time;
//!   a success closes it, a failure opens it again for twice as long (up to
//!   `max_trial_cooldown`, 30 s, so a recovered deployment is back within
//!   seconds).
//!
//! Every function takes `now`; nothing here reads a clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lb_core::ErrorClass;

/// LiteLLM's per-class `allowed_fails_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllowedFailsPolicy {
    /// `RateLimitErrorAllowedFails` (429).
    pub rate_limit: Option<u32>,
    /// `TimeoutErrorAllowedFails` (408, client timeouts).
    pub timeout: Option<u32>,
    /// `AuthenticationErrorAllowedFails` (401, 402, 403).
    pub authentication: Option<u32>,
    /// `InternalServerErrorAllowedFails` (5xx, connection failures).
    pub internal_server: Option<u32>,
    /// `NotFoundErrorAllowedFails` (404).
    pub not_found: Option<u32>,
}

impl AllowedFailsPolicy {
    fn for_class(&self, class: ErrorClass) -> Option<u32> {
        match class {
            ErrorClass::RateLimited => self.rate_limit,
            ErrorClass::Timeout => self.timeout,
            ErrorClass::Auth => self.authentication,
            ErrorClass::ServerError | ErrorClass::Connection => self.internal_server,
            ErrorClass::NotFound => self.not_found,
            ErrorClass::BadRequest
            | ErrorClass::ContextWindowExceeded
            | ErrorClass::ContentPolicy => None,
        }
    }

    /// Whether any class sets a value.
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

/// How the router cools deployments down (`router_settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct CooldownSettings {
    /// Default cooldown when neither the deployment nor the upstream says (5 s).
    pub cooldown_time: Duration,
    /// Longest cooldown, whatever a Retry-After or doubling asks (300 s).
    pub max_cooldown_time: Duration,
    /// Longest cooldown reached by doubling after failed trials (30 s): a
    /// deployment that recovers gets traffic back within this, not minutes.
    pub max_trial_cooldown: Duration,
    /// Never cool anything down.
    pub disable_cooldowns: bool,
    /// Counting mode: cool down after `allowed_fails + 1` failures in the window.
    pub allowed_fails: Option<u32>,
    /// Counting mode, per error class.
    pub allowed_fails_policy: AllowedFailsPolicy,
    /// The window failures are counted in (one minute).
    pub window: Duration,
    /// Default mode: cool down when more than this share of calls failed...
    pub failure_threshold: f64,
    /// ...once the window holds at least this many calls.
    pub min_requests: u32,
}

impl Default for CooldownSettings {
    fn default() -> Self {
        Self {
            cooldown_time: Duration::from_secs(5),
            max_cooldown_time: Duration::from_secs(300),
            max_trial_cooldown: Duration::from_secs(30),
            disable_cooldowns: false,
            allowed_fails: None,
            allowed_fails_policy: AllowedFailsPolicy::default(),
            window: Duration::from_secs(60),
            failure_threshold: 0.5,
            min_requests: 5,
        }
    }
}

/// Why a deployment was cooled down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CooldownReason {
    /// The upstream rate limited it (429).
    RateLimited,
    /// Credentials or permissions failed (401/402/403).
    Auth,
    /// The model is not there (404).
    NotFound,
    /// Too large a share of its calls failed in the window.
    FailureRate {
        /// Failed calls in the window.
        failures: u32,
        /// All calls in the window.
        calls: u32,
    },
    /// More failures of one class than `allowed_fails` allows.
    AllowedFailsExceeded {
        /// The class counted.
        class: ErrorClass,
        /// Failures of it in the window.
        failures: u32,
    },
    /// A half-open trial call failed.
    TrialFailed,
    /// A background health check failed.
    HealthCheck(String),
    /// Another router instance cooled it down (shared through Redis).
    Peer(String),
}

impl std::fmt::Display for CooldownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CooldownReason::RateLimited => f.write_str("rate limited by the upstream"),
            CooldownReason::Auth => f.write_str("authentication failed"),
            CooldownReason::NotFound => f.write_str("model not found upstream"),
            CooldownReason::FailureRate { failures, calls } => {
                write!(f, "{failures} of {calls} calls failed in the last window")
            }
            CooldownReason::AllowedFailsExceeded { class, failures } => {
                write!(f, "{failures} {class} failures exceed allowed_fails")
            }
            CooldownReason::TrialFailed => f.write_str("the trial call after a cooldown failed"),
            CooldownReason::HealthCheck(why) => write!(f, "health check failed: {why}"),
            CooldownReason::Peer(why) => write!(f, "cooled down by another instance: {why}"),
        }
    }
}

/// Whether a deployment may take a call now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Closed: takes calls.
    Available,
    /// Half-open: takes one trial call (claim it with [`HealthTracker::try_trial`]).
    Trial,
    /// Open until `until`.
    CoolingDown {
        /// When the cooldown ends.
        until: Instant,
        /// Why it started.
        reason: CooldownReason,
    },
}

/// A deployment's health as shown by `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Its availability now.
    pub availability: Availability,
    /// Why it was last cooled down, if it ever was and is not yet closed again.
    pub last_reason: Option<CooldownReason>,
}

/// What a failure did to a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CooldownEvent {
    /// Why it cools down.
    pub reason: CooldownReason,
    /// Until when.
    pub until: Instant,
}

/// What the caller knows of the deployment that failed.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailureContext {
    /// Deployments in its model group.
    pub group_size: usize,
    /// Its own `cooldown_time` (`Some(0)` disables cooldowns for it).
    pub cooldown_time: Option<Duration>,
    /// The upstream's retry-after hint.
    pub retry_after: Option<Duration>,
    /// The failed call held the deployment's half-open [`Trial`].
    pub trial: bool,
}

/// Whether a failure of `class` can cool a deployment down at all.
///
/// 429, auth (401/402/403), 404, timeouts (408 and client-side), 5xx and
/// connection failures count; bad requests (400, 413, 422), context-window
/// and content-policy errors are the request's fault and never do.
pub fn counts_against_deployment(class: ErrorClass) -> bool {
    match class {
        ErrorClass::RateLimited
        | ErrorClass::Auth
        | ErrorClass::NotFound
        | ErrorClass::Timeout
        | ErrorClass::ServerError
        | ErrorClass::Connection => true,
        ErrorClass::BadRequest | ErrorClass::ContextWindowExceeded | ErrorClass::ContentPolicy => {
            false
        }
    }
}

const CLASSES: usize = 9;

fn class_index(class: ErrorClass) -> usize {
    match class {
        ErrorClass::RateLimited => 0,
        ErrorClass::Timeout => 1,
        ErrorClass::ContextWindowExceeded => 2,
        ErrorClass::ContentPolicy => 3,
        ErrorClass::Auth => 4,
        ErrorClass::BadRequest => 5,
        ErrorClass::NotFound => 6,
        ErrorClass::ServerError => 7,
        ErrorClass::Connection => 8,
    }
}

/// Buckets the window is cut into.
const BUCKETS: usize = 12;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Index of the bucket-sized slice of time this bucket counts.
    epoch: u64,
    successes: u32,
    failures: [u32; CLASSES],
}

#[derive(Debug, Clone)]
enum Circuit {
    Closed,
    Open {
        until: Instant,
        duration: Duration,
        reason: CooldownReason,
    },
    HalfOpen {
        duration: Duration,
        reason: CooldownReason,
        trial_in_flight: bool,
    },
}

#[derive(Debug)]
struct State {
    buckets: [Bucket; BUCKETS],
    circuit: Circuit,
}

/// Health of every deployment of a router, indexed by deployment position.
#[derive(Debug)]
pub struct HealthTracker {
    settings: CooldownSettings,
    origin: Instant,
    states: Vec<Mutex<State>>,
    /// Per deployment: its circuit is closed. Read without the lock, so the
    /// common case (a healthy deployment) costs no lock on the call path;
    /// written under the lock whenever the circuit changes.
    closed: Vec<AtomicBool>,
}

/// A claimed half-open trial; dropping it without an outcome lets another
/// call try.
#[derive(Debug)]
pub struct Trial {
    tracker: Arc<HealthTracker>,
    index: usize,
}

impl Drop for Trial {
    fn drop(&mut self) {
        let mut st = self.tracker.lock(self.index);
        if let Circuit::HalfOpen {
            trial_in_flight, ..
        } = &mut st.circuit
        {
            *trial_in_flight = false;
        }
    }
}

impl HealthTracker {
    /// A tracker for `deployments` deployments, all closed; `now` anchors
    /// its time buckets.
    pub fn new(deployments: usize, settings: CooldownSettings, now: Instant) -> Self {
        Self {
            settings,
            origin: now,
            closed: (0..deployments).map(|_| AtomicBool::new(true)).collect(),
            states: (0..deployments)
                .map(|_| {
                    Mutex::new(State {
                        buckets: [Bucket::default(); BUCKETS],
                        circuit: Circuit::Closed,
                    })
                })
                .collect(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &CooldownSettings {
        &self.settings
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain counters; the data is still usable.
        match self.states[i].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn bucket_len(&self) -> Duration {
        (self.settings.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / self.bucket_len().as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    fn bucket<'s>(&self, st: &'s mut State, now: Instant) -> &'s mut Bucket {
        let epoch = self.epoch(now);
        let slot = &mut st.buckets[(epoch % BUCKETS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Bucket {
                epoch,
                ..Bucket::default()
            };
        }
        slot
    }

    /// Successes and failures (of classes that count) in the window ending at `now`.
    fn window_counts(&self, st: &State, now: Instant) -> (u32, [u32; CLASSES]) {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(BUCKETS as u64 - 1);
        let mut successes = 0;
        let mut failures = [0; CLASSES];
        for b in st
            .buckets
            .iter()
            .filter(|b| b.epoch >= oldest && b.epoch <= epoch)
        {
            successes += b.successes;
            for (total, n) in failures.iter_mut().zip(b.failures) {
                *total += n;
            }
        }
        (successes, failures)
    }

    /// Whether deployment `i` may take a call at `now`.
    pub fn check(&self, i: usize, now: Instant) -> Availability {
        if self.closed[i].load(Ordering::Acquire) {
            return Availability::Available;
        }
        let mut st = self.lock(i);
        Self::advance(&mut st, now);
        match &st.circuit {
            Circuit::Closed => Availability::Available,
            Circuit::Open { until, reason, .. } => Availability::CoolingDown {
                until: *until,
                reason: reason.clone(),
            },
            Circuit::HalfOpen {
                trial_in_flight: false,
                ..
            } => Availability::Trial,
            Circuit::HalfOpen { reason, .. } => Availability::CoolingDown {
                // Another call holds the trial; a second from now is an
                // honest hint (the trial's outcome decides the rest).
                until: now + Duration::from_secs(1),
                reason: reason.clone(),
            },
        }
    }

    /// Open circuits whose deadline passed become half-open.
    fn advance(st: &mut State, now: Instant) {
        if let Circuit::Open {
            until,
            duration,
            reason,
        } = &st.circuit
        {
            if now >= *until {
                st.circuit = Circuit::HalfOpen {
                    duration: *duration,
                    reason: reason.clone(),
                    trial_in_flight: false,
                };
            }
        }
    }

    /// Claims the one trial call of a half-open deployment; `None` when it is
    /// not half-open or another call holds the trial.
    pub fn try_trial(self: &Arc<Self>, i: usize, now: Instant) -> Option<Trial> {
        let mut st = self.lock(i);
        Self::advance(&mut st, now);
        match &mut st.circuit {
            Circuit::HalfOpen {
                trial_in_flight, ..
            } if !*trial_in_flight => {
                *trial_in_flight = true;
                Some(Trial {
                    tracker: Arc::clone(self),
                    index: i,
                })
            }
            _ => None,
        }
    }

    /// Records a successful call: a half-open deployment closes.
    pub fn record_success(&self, i: usize, now: Instant) {
        let mut st = self.lock(i);
        let b = self.bucket(&mut st, now);
        b.successes = b.successes.saturating_add(1);
        if matches!(st.circuit, Circuit::HalfOpen { .. }) {
            st.circuit = Circuit::Closed;
            self.closed[i].store(true, Ordering::Release);
            // A recovered deployment starts with a clean record: its old
            // failures must not trip the failure-rate rule again at once.
            st.buckets = [Bucket::default(); BUCKETS];
        }
    }

    /// Records a failed call and decides whether it cools the deployment
    /// down; returns the cooldown it started or extended.
    pub fn record_failure(
        &self,
        i: usize,
        class: ErrorClass,
        ctx: FailureContext,
        now: Instant,
    ) -> Option<CooldownEvent> {
        if !counts_against_deployment(class) {
            return None;
        }
        let s = &self.settings;
        let mut st = self.lock(i);
        let b = self.bucket(&mut st, now);
        let idx = class_index(class);
        b.failures[idx] = b.failures[idx].saturating_add(1);
        if s.disable_cooldowns || ctx.cooldown_time == Some(Duration::ZERO) {
            return None;
        }
        Self::advance(&mut st, now);
        let duration = ctx
            .cooldown_time
            .or_else(|| ctx.retry_after.filter(|d| !d.is_zero()))
            .unwrap_or(s.cooldown_time)
            .min(s.max_cooldown_time);
        let single = ctx.group_size <= 1;
        let rate_reason = matches!(
            class,
            ErrorClass::RateLimited
                | ErrorClass::Timeout
                | ErrorClass::ServerError
                | ErrorClass::Connection
        );
        if matches!(st.circuit, Circuit::HalfOpen { .. }) && !ctx.trial {
            // Only the call holding the trial decides a half-open circuit (a
            // stream from before the cooldown failing now says nothing new).
            return None;
        }
        if single && rate_reason && matches!(st.circuit, Circuit::HalfOpen { .. }) {
            // A lone deployment is not cooled down for rate reasons.
            return None;
        }
        // A failed trial re-opens for twice as long.
        if let Circuit::HalfOpen { duration: last, .. } = &st.circuit {
            let doubled = last
                .saturating_mul(2)
                .min(s.max_trial_cooldown)
                .max(duration)
                .min(s.max_cooldown_time);
            self.closed[i].store(false, Ordering::Release);
            return Some(Self::open(
                &mut st,
                CooldownReason::TrialFailed,
                doubled,
                now,
            ));
        }

        let (successes, failures) = self.window_counts(&st, now);
        let reason = if s.allowed_fails.is_some() || s.allowed_fails_policy.is_set() {
            // Counting mode.
            let allowed = s
                .allowed_fails_policy
                .for_class(class)
                .or(s.allowed_fails)
                .unwrap_or(0);
            let n = failures[idx];
            let rate_reason = matches!(
                class,
                ErrorClass::RateLimited
                    | ErrorClass::Timeout
                    | ErrorClass::ServerError
                    | ErrorClass::Connection
            );
            (n > allowed && !(single && rate_reason))
                .then_some(CooldownReason::AllowedFailsExceeded { class, failures: n })
        } else {
            let total_failures: u32 = failures.iter().sum();
            let calls = total_failures + successes;
            match class {
                ErrorClass::Auth => Some(CooldownReason::Auth),
                ErrorClass::NotFound => Some(CooldownReason::NotFound),
                ErrorClass::RateLimited if !single => Some(CooldownReason::RateLimited),
                _ if !single
                    && calls >= s.min_requests
                    && f64::from(total_failures) > s.failure_threshold * f64::from(calls) =>
                {
                    Some(CooldownReason::FailureRate {
                        failures: total_failures,
                        calls,
                    })
                }
                _ => None,
            }
        };
        reason.map(|r| {
            self.closed[i].store(false, Ordering::Release);
            Self::open(&mut st, r, duration, now)
        })
    }

    /// Opens (or extends) a cooldown; a deadline is never moved earlier.
    fn open(
        st: &mut State,
        reason: CooldownReason,
        duration: Duration,
        now: Instant,
    ) -> CooldownEvent {
        let until = now + duration;
        let (until, duration) = match &st.circuit {
            Circuit::Open {
                until: old,
                duration: old_d,
                ..
            } if *old > until => (*old, *old_d),
            _ => (until, duration),
        };
        st.circuit = Circuit::Open {
            until,
            duration,
            reason: reason.clone(),
        };
        CooldownEvent { reason, until }
    }

    /// Cools deployment `i` down for `duration` (a failed health check).
    pub fn force_cooldown(
        &self,
        i: usize,
        reason: CooldownReason,
        duration: Duration,
        now: Instant,
    ) -> CooldownEvent {
        let mut st = self.lock(i);
        let duration = duration.min(self.settings.max_cooldown_time);
        self.closed[i].store(false, Ordering::Release);
        Self::open(&mut st, reason, duration, now)
    }

    /// Closes deployment `i` (a passed health check).
    pub fn force_healthy(&self, i: usize) {
        let mut st = self.lock(i);
        st.circuit = Circuit::Closed;
        self.closed[i].store(true, Ordering::Release);
    }

    /// A health check of deployment `i` passed: it takes calls again, unless
    /// it is waiting out an upstream rate limit (the upstream said when).
    pub fn probe_passed(&self, i: usize) {
        let mut st = self.lock(i);
        let rate_limited = matches!(
            &st.circuit,
            Circuit::Open {
                reason: CooldownReason::RateLimited,
                ..
            }
        );
        if !rate_limited {
            st.circuit = Circuit::Closed;
            self.closed[i].store(true, Ordering::Release);
        }
    }

    /// Deployment `i`'s health now.
    pub fn snapshot(&self, i: usize, now: Instant) -> HealthSnapshot {
        let availability = self.check(i, now);
        let st = self.lock(i);
        let last_reason = match &st.circuit {
            Circuit::Closed => None,
            Circuit::Open { reason, .. } | Circuit::HalfOpen { reason, .. } => Some(reason.clone()),
        };
        HealthSnapshot {
            availability,
            last_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn tracker(settings: CooldownSettings) -> (Arc<HealthTracker>, Instant) {
        // Any instant works as an origin; tests move it by adding durations.
        let t0 = lb_core::ManualClock::new();
        let now = lb_core::Clock::now(&t0);
        (Arc::new(HealthTracker::new(3, settings, now)), now)
    }

    fn ctx(group_size: usize) -> FailureContext {
        FailureContext {
            group_size,
            ..FailureContext::default()
        }
    }

    fn cooling(a: &Availability) -> bool {
        matches!(a, Availability::CoolingDown { .. })
    }

    #[test]
    fn a_429_cools_down_at_once_for_the_default_time() {
        let (t, now) = tracker(CooldownSettings::default());
        let ev = t
            .record_failure(0, ErrorClass::RateLimited, ctx(2), now)
            .unwrap();
        assert_eq!(ev.reason, CooldownReason::RateLimited);
        assert_eq!(ev.until, now + 5 * S);
        assert!(cooling(&t.check(0, now + 4 * S)));
        assert_eq!(
            t.check(0, now + 5 * S),
            Availability::Trial,
            "ends exactly at the deadline"
        );
    }

    #[test]
    fn retry_after_sets_the_duration_capped_and_deployment_time_wins() {
        let (t, now) = tracker(CooldownSettings::default());
        let with = |retry_after, cooldown_time| FailureContext {
            group_size: 2,
            retry_after,
            cooldown_time,
            trial: false,
        };
        let ev = t
            .record_failure(0, ErrorClass::RateLimited, with(Some(30 * S), None), now)
            .unwrap();
        assert_eq!(ev.until, now + 30 * S);
        let ev = t
            .record_failure(1, ErrorClass::RateLimited, with(Some(9999 * S), None), now)
            .unwrap();
        assert_eq!(ev.until, now + 300 * S, "capped by max_cooldown_time");
        let ev = t
            .record_failure(
                2,
                ErrorClass::RateLimited,
                with(Some(30 * S), Some(7 * S)),
                now,
            )
            .unwrap();
        assert_eq!(ev.until, now + 7 * S, "the deployment's cooldown_time wins");
    }

    #[test]
    fn cooldown_time_zero_and_disable_cooldowns_disable() {
        let (t, now) = tracker(CooldownSettings::default());
        let zero = FailureContext {
            group_size: 2,
            cooldown_time: Some(Duration::ZERO),
            retry_after: None,
            trial: false,
        };
        assert!(
            t.record_failure(0, ErrorClass::RateLimited, zero, now)
                .is_none()
        );
        let (t, now) = tracker(CooldownSettings {
            disable_cooldowns: true,
            ..CooldownSettings::default()
        });
        assert!(t.record_failure(0, ErrorClass::Auth, ctx(2), now).is_none());
        assert_eq!(t.check(0, now), Availability::Available);
    }

    #[test]
    fn request_faults_never_cool_down() {
        let (t, now) = tracker(CooldownSettings::default());
        for _ in 0..20 {
            for class in [
                ErrorClass::BadRequest,
                ErrorClass::ContextWindowExceeded,
                ErrorClass::ContentPolicy,
            ] {
                assert!(t.record_failure(0, class, ctx(2), now).is_none());
            }
        }
        assert_eq!(t.check(0, now), Availability::Available);
    }

    #[test]
    fn failure_rate_needs_five_calls_and_more_than_half() {
        let (t, now) = tracker(CooldownSettings::default());
        // LiteLLM's bug: the first failure (1/1 = 100%) cooled down. Not here.
        assert!(
            t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                .is_none()
        );
        t.record_success(0, now);
        t.record_success(0, now);
        assert!(
            t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                .is_none(),
            "2/4"
        );
        // 3 of 5 > 50%
        let ev = t
            .record_failure(0, ErrorClass::Connection, ctx(2), now)
            .unwrap();
        assert_eq!(
            ev.reason,
            CooldownReason::FailureRate {
                failures: 3,
                calls: 5
            }
        );
    }

    #[test]
    fn exactly_half_does_not_cool_down() {
        let (t, now) = tracker(CooldownSettings::default());
        for _ in 0..3 {
            t.record_success(0, now);
        }
        for _ in 0..2 {
            assert!(
                t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                    .is_none()
            );
        }
        t.record_success(0, now);
        assert!(
            t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                .is_none(),
            "3/7"
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let (t, now) = tracker(CooldownSettings::default());
        for _ in 0..4 {
            assert!(
                t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                    .is_none()
            );
        }
        // A minute later those four are gone: one failure alone is not enough.
        let later = now + 61 * S;
        assert!(
            t.record_failure(0, ErrorClass::ServerError, ctx(2), later)
                .is_none()
        );
        assert_eq!(t.check(0, later), Availability::Available);
    }

    #[test]
    fn single_deployment_groups_are_not_cooled_for_rate_reasons() {
        let (t, now) = tracker(CooldownSettings::default());
        for _ in 0..10 {
            assert!(
                t.record_failure(0, ErrorClass::RateLimited, ctx(1), now)
                    .is_none()
            );
            assert!(
                t.record_failure(0, ErrorClass::ServerError, ctx(1), now)
                    .is_none()
            );
        }
        // ...but a wrong key still cools it down.
        assert_eq!(
            t.record_failure(0, ErrorClass::Auth, ctx(1), now)
                .map(|e| e.reason),
            Some(CooldownReason::Auth)
        );
    }

    #[test]
    fn counting_mode_cools_after_allowed_plus_one() {
        let (t, now) = tracker(CooldownSettings {
            allowed_fails: Some(2),
            allowed_fails_policy: AllowedFailsPolicy {
                rate_limit: Some(0),
                ..AllowedFailsPolicy::default()
            },
            ..CooldownSettings::default()
        });
        assert!(
            t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                .is_none()
        );
        assert!(
            t.record_failure(0, ErrorClass::ServerError, ctx(2), now)
                .is_none()
        );
        let ev = t
            .record_failure(0, ErrorClass::ServerError, ctx(2), now)
            .unwrap();
        assert_eq!(
            ev.reason,
            CooldownReason::AllowedFailsExceeded {
                class: ErrorClass::ServerError,
                failures: 3
            }
        );
        // RateLimitErrorAllowedFails: 0 -> the first 429 cools down.
        assert!(
            t.record_failure(1, ErrorClass::RateLimited, ctx(2), now)
                .is_some()
        );
    }

    #[test]
    fn a_second_cooldown_extends_never_shortens() {
        let (t, now) = tracker(CooldownSettings::default());
        let long = FailureContext {
            group_size: 2,
            retry_after: Some(60 * S),
            cooldown_time: None,
            trial: false,
        };
        let ev = t
            .record_failure(0, ErrorClass::RateLimited, long, now)
            .unwrap();
        assert_eq!(ev.until, now + 60 * S);
        let ev = t
            .record_failure(0, ErrorClass::RateLimited, ctx(2), now + S)
            .unwrap();
        assert_eq!(
            ev.until,
            now + 60 * S,
            "a later 5 s cooldown does not shorten a 60 s one"
        );
        let ev = t
            .record_failure(
                0,
                ErrorClass::RateLimited,
                FailureContext {
                    retry_after: Some(120 * S),
                    ..long
                },
                now + 2 * S,
            )
            .unwrap();
        assert_eq!(ev.until, now + 122 * S, "a longer one extends");
    }

    #[test]
    fn half_open_allows_one_trial_success_closes() {
        let (t, now) = tracker(CooldownSettings::default());
        t.record_failure(0, ErrorClass::RateLimited, ctx(2), now);
        let later = now + 5 * S;
        let trial = t.try_trial(0, later).expect("first trial");
        assert!(t.try_trial(0, later).is_none(), "only one trial at a time");
        assert!(cooling(&t.check(0, later)));
        t.record_success(0, later);
        drop(trial);
        assert_eq!(t.check(0, later), Availability::Available);
    }

    #[test]
    fn failed_trial_doubles_up_to_the_cap() {
        let (t, now) = tracker(CooldownSettings {
            max_cooldown_time: 30 * S,
            ..CooldownSettings::default()
        });
        let mut at = now;
        t.record_failure(0, ErrorClass::RateLimited, ctx(2), at);
        let mut expected = 5 * S;
        for want in [10, 20, 30, 30] {
            at += expected;
            let trial = t.try_trial(0, at).expect("half-open");
            let ev = t
                .record_failure(
                    0,
                    ErrorClass::ServerError,
                    FailureContext {
                        trial: true,
                        ..ctx(2)
                    },
                    at,
                )
                .unwrap();
            drop(trial);
            assert_eq!(ev.reason, CooldownReason::TrialFailed);
            expected = want * S;
            assert_eq!(ev.until, at + expected);
        }
    }

    #[test]
    fn an_abandoned_trial_frees_the_slot() {
        let (t, now) = tracker(CooldownSettings::default());
        t.record_failure(0, ErrorClass::RateLimited, ctx(2), now);
        let at = now + 5 * S;
        drop(t.try_trial(0, at).unwrap());
        assert_eq!(t.check(0, at), Availability::Trial);
    }

    #[test]
    fn health_checks_force_state() {
        let (t, now) = tracker(CooldownSettings::default());
        t.force_cooldown(0, CooldownReason::HealthCheck("500".into()), 10 * S, now);
        assert!(cooling(&t.check(0, now)));
        let snap = t.snapshot(0, now);
        assert_eq!(
            snap.last_reason,
            Some(CooldownReason::HealthCheck("500".into()))
        );
        t.force_healthy(0);
        assert_eq!(t.check(0, now), Availability::Available);
        t.record_failure(0, ErrorClass::RateLimited, ctx(2), now);
        t.probe_passed(0);
        assert!(
            cooling(&t.check(0, now)),
            "a passing probe does not cut a rate-limit cooldown short"
        );
        t.force_cooldown(1, CooldownReason::HealthCheck("down".into()), 60 * S, now);
        t.probe_passed(1);
        assert_eq!(t.check(1, now), Availability::Available);
    }
}
