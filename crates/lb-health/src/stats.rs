//! Per-deployment counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one deployment; lock-free.
#[derive(Debug, Default)]
pub struct DeploymentStats {
    in_flight: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    latency_micros_total: AtomicU64,
}

/// A copy of a deployment's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Calls in flight.
    pub in_flight: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Sum of the latencies of successful calls.
    pub latency_total: Duration,
}

impl StatsSnapshot {
    /// Mean latency of successful calls.
    pub fn mean_latency(&self) -> Option<Duration> {
        u32::try_from(self.successes)
            .ok()
            .filter(|&n| n > 0)
            .map(|n| self.latency_total / n)
    }
}

impl DeploymentStats {
    /// Starts a call: the returned guard holds one in-flight count until dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: Arc::clone(self),
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records a successful call of `latency`.
    pub fn record_success(&self, latency: Duration) {
        self.successes.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros_total
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Records a failed call.
    pub fn record_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            in_flight: self.in_flight(),
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latency_total: Duration::from_micros(self.latency_micros_total.load(Ordering::Relaxed)),
        }
    }
}

/// One in-flight call; releases its count when dropped.
#[derive(Debug)]
pub struct InFlight {
    stats: Arc<DeploymentStats>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_releases_on_drop_and_cancel() {
        let stats = Arc::new(DeploymentStats::default());
        let a = stats.start();
        let b = stats.start();
        assert_eq!(stats.in_flight(), 2);
        drop(a);
        assert_eq!(stats.in_flight(), 1);
        // A guard moved into a future that is dropped before completion.
        let fut = async move {
            let _b = b;
            std::future::pending::<()>().await;
        };
        drop(fut);
        assert_eq!(stats.in_flight(), 0);
    }

    #[test]
    fn snapshot_counts() {
        let stats = DeploymentStats::default();
        stats.record_success(Duration::from_millis(10));
        stats.record_success(Duration::from_millis(30));
        stats.record_failure();
        let s = stats.snapshot();
        assert_eq!((s.successes, s.failures), (2, 1));
        assert_eq!(s.mean_latency(), Some(Duration::from_millis(20)));
    }
}
