//! Retry pacing: backoff between attempts on one deployment, and a retry
//! budget that keeps retries a bounded share of traffic.

use std::sync::Mutex;
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

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    epoch: u64,
    calls: u64,
    retries: u64,
}

/// A budget of retries: over any window of `ttl`, retries stay within
/// `percent` of the calls plus `min_per_second × ttl`.
///
/// Why a budget and not only `num_retries`: when a whole provider fails,
/// every call retries, and `num_retries: 2` triples the load on whatever is
/// still standing. A budget caps that amplification at `1 + percent`.
#[derive(Debug)]
pub struct RetryBudget {
    settings: RetryBudgetSettings,
    origin: Instant,
    slots: Mutex<[Slot; SLOTS]>,
}

impl RetryBudget {
    /// A budget anchored at `now`.
    pub fn new(settings: RetryBudgetSettings, now: Instant) -> Self {
        Self {
            settings,
            origin: now,
            slots: Mutex::new([Slot::default(); SLOTS]),
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let slot = (self.settings.ttl / SLOTS as u32).max(Duration::from_millis(1));
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos() / slot.as_nanos())
            .unwrap_or(u64::MAX)
    }

    fn with_slots<T>(&self, now: Instant, f: impl FnOnce(&mut [Slot; SLOTS], u64) -> T) -> T {
        let mut slots = match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let epoch = self.epoch(now);
        let slot = &mut slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                ..Slot::default()
            };
        }
        f(&mut slots, epoch)
    }

    /// Counts one client call.
    pub fn deposit(&self, now: Instant) {
        self.with_slots(now, |slots, epoch| {
            slots[(epoch % SLOTS as u64) as usize].calls += 1;
        });
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let s = self.settings;
        self.with_slots(now, |slots, epoch| {
            let oldest = epoch.saturating_sub(SLOTS as u64 - 1);
            let (calls, retries) = slots
                .iter()
                .filter(|sl| sl.epoch >= oldest && sl.epoch <= epoch)
                .fold((0u64, 0u64), |(c, r), sl| (c + sl.calls, r + sl.retries));
            let allowed =
                calls as f64 * s.percent + f64::from(s.min_per_second) * s.ttl.as_secs_f64();
            if (retries + 1) as f64 <= allowed {
                slots[(epoch % SLOTS as u64) as usize].retries += 1;
                true
            } else {
                false
            }
        })
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
