//! A small closed-loop HTTP load generator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use reqwest::Client;

/// What one load run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// Requests answered with 2xx and a complete body.
    pub ok: u64,
    /// Requests that failed (status, transport or truncated stream).
    pub failed: u64,
    /// Latency of every request, microseconds.
    pub hist: Histogram<u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadResult {
    /// Requests per second.
    pub fn throughput(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds another run's requests and latencies to this one's.
    pub fn merge(&mut self, other: &LoadResult) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        let _ = self.hist.add(&other.hist);
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One kind of request the generator sends.
#[derive(Debug, Clone)]
pub struct Shot {
    /// Full URL.
    pub url: String,
    /// JSON body.
    pub body: Vec<u8>,
    /// Whether the answer is an SSE stream (complete only with `[DONE]`).
    pub stream: bool,
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests.
    Requests(u64),
    /// After this much time.
    Time(Duration),
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_hist()))
}

fn unreachable_hist() -> Histogram<u64> {
    // Histogram::new(3) cannot fail for 3 significant figures.
    Histogram::new_with_max(1_000_000, 2).unwrap_or_else(|_| std::process::abort())
}

#[allow(clippy::disallowed_methods)] // the load generator measures real time
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Sends `shots` (picked round-robin by `pick`) from `concurrency` tasks until `stop`.
pub async fn run(
    client: &Client,
    shots: Arc<Vec<Shot>>,
    pick: fn(u64) -> usize,
    concurrency: usize,
    stop: Stop,
    progress: Option<ProgressBar>,
) -> LoadResult {
    let issued = Arc::new(AtomicU64::new(0));
    let start = now();
    let deadline = match stop {
        Stop::Time(d) => Some(start + d),
        Stop::Requests(_) => None,
    };
    let limit = match stop {
        Stop::Requests(n) => n,
        Stop::Time(_) => u64::MAX,
    };
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let shots = Arc::clone(&shots);
        let issued = Arc::clone(&issued);
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= limit || deadline.is_some_and(|d| now() >= d) {
                    break;
                }
                let shot = &shots[pick(n) % shots.len()];
                let t0 = now();
                let good = send(&client, shot).await;
                let micros = u64::try_from(t0.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = hist.record(micros.min(60_000_000));
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                }
                if let Some(p) = &progress {
                    p.inc(1);
                }
            }
            (hist, ok, failed)
        }));
    }
    let mut hist = new_hist();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        if let Ok((h, o, f)) = t.await {
            let _ = hist.add(h);
            ok += o;
            failed += f;
        }
    }
    LoadResult {
        ok,
        failed,
        hist,
        elapsed: start.elapsed(),
    }
}

async fn send(client: &Client, shot: &Shot) -> bool {
    let resp = client
        .post(&shot.url)
        .header("content-type", "application/json")
        .body(shot.body.clone())
        .send()
        .await;
    let Ok(resp) = resp else { return false };
    if !resp.status().is_success() {
        let _ = resp.bytes().await;
        return false;
    }
    match resp.bytes().await {
        Ok(body) if shot.stream => body.ends_with(b"data: [DONE]\n\n"),
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Time to first byte and to the end of `n` streamed requests, one at a
/// time, from a task on the runtime (as `run`'s senders are).
pub async fn stream_timings(client: &Client, shot: &Shot, n: u64) -> (LoadResult, LoadResult) {
    let (client, shot) = (client.clone(), shot.clone());
    let task = tokio::spawn(async move { stream_timings_here(&client, &shot, n).await });
    match task.await {
        Ok(results) => results,
        Err(_) => {
            let failed = || LoadResult {
                ok: 0,
                failed: n,
                hist: new_hist(),
                elapsed: std::time::Duration::ZERO,
            };
            (failed(), failed())
        }
    }
}

async fn stream_timings_here(client: &Client, shot: &Shot, n: u64) -> (LoadResult, LoadResult) {
    let mut first = new_hist();
    let mut whole = new_hist();
    let (mut ok, mut failed) = (0u64, 0u64);
    let start = now();
    for _ in 0..n {
        let t0 = now();
        let resp = client
            .post(&shot.url)
            .header("content-type", "application/json")
            .body(shot.body.clone())
            .send()
            .await;
        let Ok(mut resp) = resp else {
            failed += 1;
            continue;
        };
        let mut got_first = false;
        let mut tail = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    if !got_first {
                        got_first = true;
                        let micros = u64::try_from(t0.elapsed().as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1);
                        let _ = first.record(micros);
                    }
                    tail = bytes.to_vec();
                }
                Ok(None) => break,
                Err(_) => {
                    tail.clear();
                    break;
                }
            }
        }
        let micros = u64::try_from(t0.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = whole.record(micros);
        if tail.ends_with(b"data: [DONE]\n\n") {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    let elapsed = start.elapsed();
    (
        LoadResult {
            ok,
            failed,
            hist: first,
            elapsed,
        },
        LoadResult {
            ok,
            failed,
            hist: whole,
            elapsed,
        },
    )
}
