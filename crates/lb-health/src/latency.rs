//! Latency statistics of one deployment: the sliding window that
//! `latency-based-routing` reads, and the peak EWMA that `latency-p2c` reads.
//!
//! Both are plain values: time comes in as `now`, they read no clock, and
//! they take no lock (the router keeps them behind its own).

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// The last samples of one kind of latency (seconds per output token, or
/// time to first token), LiteLLM's latency list: at most `max_size` samples
/// (`routing_strategy_args.max_latency_list_size`), the oldest dropped first,
/// and samples older than `ttl` (`routing_strategy_args.ttl`) ignored.
///
/// Unlike LiteLLM, whose list kept its nine *oldest* samples once full and
/// whose in-memory map forgot every sample an hour after it was created,
/// this is a true sliding window and each sample expires on its own.
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    samples: VecDeque<(Instant, f64)>,
    max_size: NonZeroUsize,
    ttl: Duration,
}

impl LatencyWindow {
    /// LiteLLM's default `max_latency_list_size`.
    pub const DEFAULT_MAX_SIZE: NonZeroUsize = NonZeroUsize::MIN.saturating_add(9);
    /// LiteLLM's default `ttl` of latency samples: one hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
    /// The sample a timed-out call records, in seconds, as LiteLLM's penalty.
    pub const TIMEOUT_PENALTY_SECS: f64 = 1000.0;

    /// A window of at most `max_size` samples, each kept for `ttl`.
    pub fn new(max_size: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            samples: VecDeque::with_capacity(max_size.get()),
            max_size,
            ttl,
        }
    }

    /// Records a sample of `sample_secs` seconds taken at `now`; the oldest
    /// sample makes room when the window is full. Negative, NaN and infinite
    /// samples are dropped.
    pub fn record(&mut self, sample_secs: f64, now: Instant) {
        if !(sample_secs >= 0.0 && sample_secs.is_finite()) {
            return;
        }
        while self.samples.len() >= self.max_size.get() {
            self.samples.pop_front();
        }
        self.samples.push_back((now, sample_secs));
    }

    /// Records LiteLLM's timeout penalty ([`Self::TIMEOUT_PENALTY_SECS`]).
    pub fn record_timeout(&mut self, now: Instant) {
        self.record(Self::TIMEOUT_PENALTY_SECS, now);
    }

    /// The mean of the samples not older than `ttl` at `now`; `None` when
    /// there are none.
    pub fn mean(&self, now: Instant) -> Option<f64> {
        let (sum, count) = self
            .live(now)
            .fold((0.0, 0usize), |(sum, count), s| (sum + s, count + 1));
        (count > 0).then(|| sum / count as f64)
    }

    /// How many samples are not older than `ttl` at `now`.
    pub fn len(&self, now: Instant) -> usize {
        self.live(now).count()
    }

    /// Whether no sample is live at `now`.
    pub fn is_empty(&self, now: Instant) -> bool {
        self.live(now).next().is_none()
    }

    /// The samples not older than `ttl` at `now`, oldest first.
    fn live(&self, now: Instant) -> impl Iterator<Item = f64> + '_ {
        self.samples
            .iter()
            .filter(move |(at, _)| now.saturating_duration_since(*at) <= self.ttl)
            .map(|&(_, s)| s)
    }
}

impl Default for LatencyWindow {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_SIZE, Self::DEFAULT_TTL)
    }
}

/// A peak-sensitive exponentially weighted moving average of latency, as
/// tower's `PeakEwma` load (from Finagle):
///
/// - a sample above the estimate replaces it at once (the peak), so a
///   deployment turning slow is avoided from its first slow answer;
/// - a sample at or below it pulls the estimate toward it with weight
///   `1 - exp(-elapsed / decay)`, `elapsed` being the time since the
///   previous sample;
/// - read at `now`, the estimate has decayed toward zero by
///   `exp(-(now - last sample) / decay)`, so a deployment that got no calls
///   for a while looks cheap again and gets tried.
///
/// Unlike tower, reading does not move the estimate: it is a function of the
/// samples and `now` only, however often it is read.
#[derive(Debug, Clone)]
pub struct PeakEwma {
    decay: Duration,
    estimate: Option<(f64, Instant)>,
}

impl PeakEwma {
    /// The default time constant of the decay, tower's: 10 seconds.
    pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

    /// An estimate with no samples, decaying with time constant `decay`.
    pub fn new(decay: Duration) -> Self {
        Self {
            decay,
            estimate: None,
        }
    }

    /// `exp(-elapsed / decay)`: 1 when no time passed, 0 with a zero decay.
    fn weight(&self, elapsed: Duration) -> f64 {
        if elapsed.is_zero() {
            1.0
        } else if self.decay.is_zero() {
            0.0
        } else {
            (-elapsed.as_secs_f64() / self.decay.as_secs_f64()).exp()
        }
    }

    /// Records a round trip of `rtt_secs` seconds that ended at `now`.
    /// Negative, NaN and infinite samples are dropped.
    pub fn record(&mut self, rtt_secs: f64, now: Instant) {
        if !(rtt_secs >= 0.0 && rtt_secs.is_finite()) {
            return;
        }
        let next = match self.estimate {
            None => rtt_secs,
            Some((prev, _)) if rtt_secs > prev => rtt_secs,
            Some((prev, at)) => {
                let w = self.weight(now.saturating_duration_since(at));
                prev * w + rtt_secs * (1.0 - w)
            }
        };
        self.estimate = Some((next, now));
    }

    /// The estimate in seconds at `now`; `None` before the first sample.
    pub fn get(&self, now: Instant) -> Option<f64> {
        self.estimate
            .map(|(value, at)| value * self.weight(now.saturating_duration_since(at)))
    }
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DECAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_core::Clock;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn window(max: usize, ttl: f64) -> LatencyWindow {
        LatencyWindow::new(NonZeroUsize::new(max).unwrap(), secs(ttl))
    }

    /// The instant tests offset from (`base() + Duration`), from the
    /// manual clock: no test reads real time.
    fn base() -> Instant {
        lb_core::ManualClock::new().now()
    }

    #[test]
    fn defaults_are_litellms() {
        let w = LatencyWindow::default();
        assert_eq!(w.max_size.get(), 10);
        assert_eq!(w.ttl, secs(3600.0));
        assert_eq!(PeakEwma::default().decay, secs(10.0));
    }

    #[test]
    fn empty_window_has_no_mean() {
        let t = base();
        let w = LatencyWindow::default();
        assert_eq!(w.mean(t), None);
        assert!(w.is_empty(t));
    }

    #[test]
    fn mean_of_recorded_samples() {
        let t = base();
        let mut w = LatencyWindow::default();
        w.record(1.0, t);
        w.record(2.0, t + secs(1.0));
        w.record(6.0, t + secs(2.0));
        assert!(close(w.mean(t + secs(3.0)).unwrap(), 3.0));
        assert_eq!(w.len(t + secs(3.0)), 3);
    }

    #[test]
    fn true_sliding_window_drops_the_oldest() {
        let t = base();
        let mut w = window(3, 3600.0);
        for (i, s) in [10.0, 1.0, 2.0, 3.0].into_iter().enumerate() {
            w.record(s, t + secs(i as f64));
        }
        // LiteLLM's classic list would have kept 10.0 and replaced the last.
        assert!(close(w.mean(t + secs(4.0)).unwrap(), 2.0));
        assert_eq!(w.len(t + secs(4.0)), 3);
    }

    #[test]
    fn samples_older_than_ttl_are_ignored() {
        let t = base();
        let mut w = window(10, 60.0);
        w.record(5.0, t);
        w.record(1.0, t + secs(30.0));
        assert!(
            close(w.mean(t + secs(60.0)).unwrap(), 3.0),
            "age == ttl is kept"
        );
        assert!(close(w.mean(t + secs(61.0)).unwrap(), 1.0));
        assert_eq!(w.mean(t + secs(91.0)), None);
        assert!(w.is_empty(t + secs(91.0)));
    }

    #[test]
    fn bad_samples_are_dropped() {
        let t = base();
        let mut w = LatencyWindow::default();
        for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            w.record(bad, t);
        }
        assert_eq!(w.mean(t), None);
        w.record(0.0, t);
        assert_eq!(w.mean(t), Some(0.0));
    }

    #[test]
    fn timeout_records_the_penalty() {
        let t = base();
        let mut w = LatencyWindow::default();
        w.record(0.5, t);
        w.record_timeout(t + secs(1.0));
        assert!(close(w.mean(t + secs(1.0)).unwrap(), 500.25));
    }

    #[test]
    fn ewma_starts_at_first_sample_and_jumps_on_peaks() {
        let t = base();
        let mut e = PeakEwma::default();
        assert_eq!(e.get(t), None);
        e.record(0.2, t);
        assert_eq!(e.get(t), Some(0.2));
        e.record(0.9, t + secs(0.001));
        assert_eq!(e.get(t + secs(0.001)), Some(0.9), "peak replaces at once");
    }

    #[test]
    fn lower_samples_pull_with_the_time_constant() {
        let t = base();
        let mut e = PeakEwma::new(secs(10.0));
        e.record(1.0, t);
        // 10 s later (one time constant), a sample of 0: weight e^-1 on the old.
        e.record(0.0, t + secs(10.0));
        let w = (-1.0f64).exp();
        assert!(close(e.get(t + secs(10.0)).unwrap(), w));
        // a lower sample right after the previous one barely moves it
        let mut e = PeakEwma::new(secs(10.0));
        e.record(1.0, t);
        e.record(0.5, t + secs(0.01));
        let w = (-0.001f64).exp();
        assert!(close(e.get(t + secs(0.01)).unwrap(), w + 0.5 * (1.0 - w)));
    }

    #[test]
    fn reading_decays_toward_zero_without_moving_the_estimate() {
        let t = base();
        let mut e = PeakEwma::new(secs(10.0));
        e.record(2.0, t);
        let later = e.get(t + secs(10.0)).unwrap();
        assert!(close(later, 2.0 * (-1.0f64).exp()));
        // reads change nothing
        assert_eq!(e.get(t + secs(10.0)), Some(later));
        assert!(e.get(t + secs(100.0)).unwrap() < 1e-4);
        // an instant before the sample reads as the sample itself
        assert_eq!(e.get(t), Some(2.0));
    }

    #[test]
    fn ewma_drops_bad_samples_and_handles_zero_decay() {
        let t = base();
        let mut e = PeakEwma::new(Duration::ZERO);
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            e.record(bad, t);
        }
        assert_eq!(e.get(t), None);
        e.record(1.0, t);
        e.record(0.25, t + secs(1.0));
        assert_eq!(
            e.get(t + secs(1.0)),
            Some(0.25),
            "zero decay: the last sample"
        );
        assert_eq!(e.get(t + secs(2.0)), Some(0.0));
    }
}
