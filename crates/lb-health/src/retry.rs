//! Retry pacing: backoff between attempts on one deployment, and a retry
//! budget that keeps retries a bounded share of traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Backoff between attempts on the same deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay (0.5 s).
    pub initial: Duration,
    /// Largest delay before jitter (8 s).
    pub max: Duration,
    /// Smallest delay (LiteLLM's `retry_after`, default 0).
    pub min: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
            min: Duration::ZERO,
        }
    }
}

impl Backoff {
    /// The wait before the `n`-th retry on one deployment (`n` from 0):
    /// `initial × 2ⁿ` clamped to `[min, max]`, plus up to half of it again as
    /// jitter (`unit` is a uniform draw in `[0, 1)`), and never shorter than
    /// the upstream's `retry_after`.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX))
            .min(self.max)
            .max(self.min);
        let jitter = base.mul_f64(unit.clamp(0.0, 1.0) * 0.5);
        (base + jitter).max(retry_after.unwrap_or(Duration::ZERO))
    }
}

/// How much retrying traffic may add (tower's retry budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetSettings {
    /// Retries allowed as a share of calls in the window (0.2).
    pub percent: f64,
    /// Retries allowed per second regardless of traffic (10).
    pub min_per_second: u32,
    /// The window calls and retries are counted in (10 s).
    pub ttl: Duration,
}

impl Default for RetryBudgetSettings {
    fn default() -> Self {
        Self {
            percent: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

const SLOTS: usize = 10;

/// One tenth of the window: calls and retries counted in it, tagged with
/// the slice of time they belong to.
#[derive(Debug, Default)]
struct Slot {
    epoch: AtomicU64,
    calls: AtomicU64,
    retries: AtomicU64,
}

/// A budget of retries: over any window of `ttl`, retries stay within
/// `percent` of the calls plus `min_per_second × ttl`.
///
/// Why a budget and not only `num_retries`: when a whole provider fails,
/// every call retries, and `num_retries: 2` triples the load on whatever is
/// still standing. A budget caps that amplification at `1 + percent`.
///
/// Lock-free: every call deposits with one atomic add. When two threads
/// race to start a new slice of time, a count may land in the slice being
/// reset and be lost; the budget is a bound on load, and such a loss is one
/// call among thousands.
#[derive(Debug)]
pub struct RetryBudget {
    settings: RetryBudgetSettings,
    origin: Instant,
    slots: [Slot; SLOTS],
}

impl RetryBudget {
    /// A budget anchored at `now`.
    pub fn new(settings: RetryBudgetSettings, now: Instant) -> Self {
        Self {
            settings,
            origin: now,
            slots: Default::default(),
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let slot = (self.settings.ttl / SLOTS as u32).max(Duration::from_millis(1));
        // Epochs start at 1 so that a fresh slot (epoch 0) is never current.
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos() / slot.as_nanos())
            .unwrap_or(u64::MAX - 1)
            + 1
    }

    /// The slot for `epoch`, reset if it still holds an older slice.
    fn slot(&self, epoch: u64) -> &Slot {
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let seen = slot.epoch.load(Ordering::Acquire);
        if seen != epoch
            && seen < epoch
            && slot
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.calls.store(0, Ordering::Release);
            slot.retries.store(0, Ordering::Release);
        }
        slot
    }

    /// Counts one client call.
    pub fn deposit(&self, now: Instant) {
        self.slot(self.epoch(now))
            .calls
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let s = self.settings;
        let epoch = self.epoch(now);
        let current = self.slot(epoch);
        let oldest = epoch.saturating_sub(SLOTS as u64 - 1);
        let (mut calls, mut retries) = (0u64, 0u64);
        for sl in &self.slots {
            let e = sl.epoch.load(Ordering::Acquire);
            if e >= oldest && e <= epoch {
                calls += sl.calls.load(Ordering::Acquire);
                retries += sl.retries.load(Ordering::Acquire);
            }
        }
        let allowed = calls as f64 * s.percent + f64::from(s.min_per_second) * s.ttl.as_secs_f64();
        if (retries + 1) as f64 <= allowed {
            current.retries.fetch_add(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_honours_retry_after() {
        let b = Backoff::default();
        let ms = |n, unit| b.delay(n, None, unit).as_millis();
        assert_eq!(
            (ms(0, 0.0), ms(1, 0.0), ms(2, 0.0), ms(3, 0.0)),
            (500, 1000, 2000, 4000)
        );
        assert_eq!(ms(10, 0.0), 8000, "capped");
        assert_eq!(ms(0, 0.999_999), 749, "jitter adds up to half");
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(3)), 0.0),
            Duration::from_secs(3)
        );
        let floor = Backoff {
            min: Duration::from_secs(2),
            ..b
        };
        assert_eq!(floor.delay(0, None, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn budget_allows_a_share_of_traffic_plus_a_floor() {
        let now = lb_core::Clock::now(&lb_core::ManualClock::new());
        let budget = RetryBudget::new(
            RetryBudgetSettings {
                percent: 0.2,
                min_per_second: 1,
                ttl: Duration::from_secs(10),
            },
            now,
        );
        for _ in 0..100 {
            budget.deposit(now);
        }
        // 100 calls * 0.2 + 1/s * 10 s = 30 retries.
        let granted = (0..100).filter(|_| budget.try_withdraw(now)).count();
        assert_eq!(granted, 30);
        // After the window the old calls and retries are forgotten: only the floor is left.
        let later = now + Duration::from_secs(11);
        let granted = (0..100).filter(|_| budget.try_withdraw(later)).count();
        assert_eq!(granted, 10);
    }
}
