//! The one source of time: every cooldown, window and latency average reads it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A source of monotonic and wall-clock time.
///
/// Production code uses [`SystemClock`]; tests use [`ManualClock`], whose
/// clones share one time that only moves when the test says so.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Monotonic now, for durations, deadlines and latencies.
    fn now(&self) -> Instant;
    /// Wall-clock now, for calendar windows and HTTP dates.
    fn wall(&self) -> SystemTime;
    /// Waits `duration` of this clock's time (backoff, Retry-After).
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// A pending [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A clock shared by every component of one router.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The real clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place real time is read
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[allow(clippy::disallowed_methods)] // the one place real time is read
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to (or when something sleeps on it);
/// clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    base_wall: SystemTime,
    offset_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock starting at the real current time.
    pub fn new() -> Self {
        let real = SystemClock;
        Self {
            base: real.now(),
            base_wall: real.wall(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A manual clock whose wall time starts at `wall`.
    pub fn at(wall: SystemTime) -> Self {
        Self {
            base_wall: wall,
            ..Self::new()
        }
    }

    /// Moves time forward by `by` for this clock and all its clones.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How far the clock has been advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }

    /// This clock as a [`SharedClock`] (sharing time with `self`).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.base_wall + self.elapsed()
    }

    /// Moves the clock forward by `duration` and returns at once: a test's
    /// backoff and Retry-After waits cost no real time, and what was waited
    /// shows in [`ManualClock::elapsed`].
    fn sleep(&self, duration: Duration) -> Sleep {
        self.advance(duration);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::new();
        let other = clock.clone();
        let start = clock.now();
        let wall = clock.wall();
        other.advance(Duration::from_secs(5));
        assert_eq!(clock.now() - start, Duration::from_secs(5));
        assert_eq!(
            clock.wall().duration_since(wall).unwrap(),
            Duration::from_secs(5)
        );
        let shared = clock.shared();
        clock.advance(Duration::from_millis(1));
        assert_eq!(shared.now() - start, Duration::from_millis(5001));
    }

    #[test]
    fn manual_clock_at_sets_wall_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::at(t);
        assert_eq!(clock.wall(), t);
    }
}
