//! Deployment health as operators see it, and background health checks.

use std::sync::Arc;
use std::time::Duration;

use lb_core::{ChatCompletionRequest, ChatMessage, DeploymentId, UpstreamError};
use lb_health::{Availability, CooldownReason, counts_against_deployment};

use crate::router::Router;

/// One deployment's health, for `GET /health`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentHealth {
    /// Its id.
    pub id: DeploymentId,
    /// Its model group.
    pub model_group: Arc<str>,
    /// `provider/model`.
    pub model: String,
    /// Its base URL (no credentials, no query).
    pub api_base: String,
    /// Whether it takes calls now (closed, or half-open awaiting a trial).
    pub healthy: bool,
    /// Why it is (or was last) cooled down.
    pub reason: Option<String>,
    /// How long its cooldown still lasts.
    pub cooldown_remaining: Option<Duration>,
}

/// Longest a health-check probe waits for its answer.
const PROBE_TIMEOUT_CAP: Duration = Duration::from_secs(60);

impl Router {
    /// Every deployment's health now, in config order.
    pub fn health(&self) -> Vec<DeploymentHealth> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        inner
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let snap = inner.health.snapshot(i, now);
                let (healthy, remaining) = match &snap.availability {
                    Availability::Available | Availability::Trial => (true, None),
                    Availability::CoolingDown { until, .. } => {
                        (false, Some(until.saturating_duration_since(now)))
                    }
                };
                DeploymentHealth {
                    id: e.deployment.id.clone(),
                    model_group: Arc::clone(&e.deployment.model_group),
                    model: format!("{}/{}", e.deployment.provider, e.deployment.model),
                    api_base: e.provider.api_base().to_owned(),
                    healthy,
                    reason: snap.last_reason.map(|r| r.to_string()),
                    cooldown_remaining: remaining,
                }
            })
            .collect()
    }

    /// Whether a failed probe of deployment `i` may cool it down, by the
    /// same rules as a failed call: not with cooldowns disabled (for all, or
    /// for it with `cooldown_time: 0`), and not for rate reasons when it is
    /// alone in its group.
    fn probe_may_cool(&self, i: usize, class: lb_core::ErrorClass) -> bool {
        use lb_core::ErrorClass as C;
        let inner = &*self.inner;
        let d = &inner.entries[i].deployment;
        if inner.settings.cooldown.disable_cooldowns || d.cooldown_time == Some(Duration::ZERO) {
            return false;
        }
        let alone = inner
            .groups
            .get(&d.model_group)
            .is_none_or(|m| m.len() <= 1);
        let rate = match class {
            C::RateLimited | C::Timeout | C::ServerError | C::Connection => true,
            C::Auth | C::NotFound | C::BadRequest | C::ContextWindowExceeded | C::ContentPolicy => {
                false
            }
        };
        !(alone && rate)
    }

    /// The configured health-check interval, if background checks are on.
    pub fn health_check_interval(&self) -> Option<Duration> {
        self.inner.settings.health_check_interval
    }

    /// Probes every deployment once with a one-token chat completion: a
    /// deployment that fails (with an error that counts against it) cools
    /// down for the check interval; one that answers is brought back,
    /// unless it is waiting out an upstream rate limit.
    pub async fn run_health_checks(&self) -> Vec<(DeploymentId, Result<(), UpstreamError>)> {
        let inner = &*self.inner;
        let interval = inner
            .settings
            .health_check_interval
            .unwrap_or(inner.settings.cooldown.cooldown_time);
        let timeout = inner.settings.timeout.min(PROBE_TIMEOUT_CAP);
        let probes = inner.entries.iter().enumerate().map(|(i, e)| async move {
            let mut req =
                ChatCompletionRequest::new(e.deployment.model.clone(), vec![ChatMessage::user("ping")]);
            req.max_tokens = Some(1);
            let t = e.deployment.timeout.unwrap_or(timeout).min(timeout);
            let result = e.provider.chat(&req, t).await.map(|_| ());
            let now = inner.clock.now();
            match &result {
                Ok(()) => inner.health.probe_passed(i),
                Err(err) if counts_against_deployment(err.class) && self.probe_may_cool(i, err.class) => {
                    let duration = e
                        .deployment
                        .cooldown_time
                        .or(err.retry_after.filter(|d| !d.is_zero()))
                        .unwrap_or(interval);
                    let ev = inner.health.force_cooldown(
                        i,
                        CooldownReason::HealthCheck(err.to_string()),
                        duration,
                        now,
                    );
                    tracing::warn!(deployment = %e.deployment.id, error = %err, until_s = ev.until.saturating_duration_since(now).as_secs_f64(), "health check failed");
                }
                // Cooldowns are off for it, or it is alone in its group and
                // only rate limited or failing: the probe reports, nothing more.
                Err(err) if counts_against_deployment(err.class) => {
                    tracing::warn!(deployment = %e.deployment.id, error = %err, "health check failed");
                }
                // The upstream answered; the probe itself was refused (e.g. a parameter).
                Err(_) => inner.health.probe_passed(i),
            }
            (e.deployment.id.clone(), result)
        });
        futures_util::future::join_all(probes).await
    }

    /// Starts background health checks on the current tokio runtime when
    /// `background_health_checks` is on: a round every interval of real
    /// time (the first one interval after start); the task runs until
    /// aborted, or until every handle to the router is dropped.
    pub fn spawn_health_checks(&self) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self.inner.settings.health_check_interval?;
        let weak = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            loop {
                // A scheduler, not a policy: real time, so a test's manual
                // clock cannot make it spin.
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                Router { inner }.run_health_checks().await;
            }
        }))
    }

    /// Starts sharing strategy statistics with the other instances (when
    /// Redis is configured and the strategy reads in-flight counts or
    /// latencies): every `redis_stats_interval`, one round trip sends this
    /// instance's and fetches theirs, which ranking then adds in. The task
    /// runs until aborted, or until every handle to the router is dropped.
    pub fn spawn_load_exchange(&self) -> Option<tokio::task::JoinHandle<()>> {
        let (exchange, interval) = self.inner.load.clone()?;
        let weak = Arc::downgrade(&self.inner);
        Some(tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(interval).await;
                let Some(strong) = weak.upgrade() else { return };
                let inner = &*strong;
                let now = inner.clock.now();
                let mine = inner
                    .entries
                    .iter()
                    .map(|e| {
                        let l = match e.latency.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        lb_core::DeploymentLoad {
                            deployment: e.deployment.id.to_string(),
                            in_flight: e.stats.in_flight(),
                            latency: l.completion.mean(now),
                            ttft: l.ttft.mean(now),
                            peak_ewma: l.ewma.get(now),
                        }
                    })
                    .collect();
                // Kept for three intervals: an instance that stops stops counting.
                match exchange.exchange(mine, interval.saturating_mul(3)).await {
                    Ok(theirs) => {
                        failing = false;
                        let mut remote =
                            vec![crate::router::RemoteLoad::default(); inner.entries.len()];
                        for t in theirs {
                            if let Some(&i) = inner.by_id.get(t.deployment.as_str()) {
                                remote[i] = crate::router::RemoteLoad {
                                    in_flight: t.in_flight,
                                    latency: t.latency,
                                    ttft: t.ttft,
                                    peak_ewma: t.peak_ewma,
                                };
                            }
                        }
                        inner.remote.store(Arc::new(remote));
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e.message, "sharing strategy statistics through redis failed; ranking on this instance's own");
                        }
                        failing = true;
                        // Stale loads of others would mislead: forget them.
                        inner.remote.store(Arc::new(vec![
                            crate::router::RemoteLoad::default();
                            inner.entries.len()
                        ]));
                    }
                }
            }
        }))
    }

    /// Calls in flight on each deployment, on this instance and (when
    /// strategy statistics are shared through Redis) on the others, as last
    /// exchanged.
    pub fn in_flight_everywhere(&self) -> Vec<(DeploymentId, u64)> {
        let inner = &*self.inner;
        let remote = inner.remote.load();
        inner
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let elsewhere = if inner.load.is_some() {
                    remote.get(i).map_or(0, |r| r.in_flight)
                } else {
                    0
                };
                (
                    e.deployment.id.clone(),
                    e.stats.in_flight().saturating_add(elsewhere),
                )
            })
            .collect()
    }

    /// Starts listening for cooldowns other instances share (when Redis is
    /// configured): each is applied here for the time it still has to run.
    /// The task runs until aborted, or until every handle to the router is
    /// dropped (then its subscription ends too).
    pub fn spawn_cooldown_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        let bus = Arc::clone(self.inner.bus.as_ref()?);
        let weak = Arc::downgrade(&self.inner);
        let mut gone = self.inner.alive.subscribe();
        Some(tokio::spawn(async move {
            let mut rx = loop {
                let attempt = tokio::select! {
                    r = bus.subscribe() => r,
                    _ = gone.changed() => return,
                };
                match attempt {
                    Ok(rx) => break rx,
                    Err(e) => {
                        tracing::warn!(error = %e.message, "cannot listen for shared cooldowns; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = gone.changed() => return,
                        }
                    }
                }
            };
            // `gone` only ever completes when the router is dropped (nothing
            // is sent on it).
            while let Some(c) = tokio::select! {
                c = rx.recv() => c,
                _ = gone.changed() => None,
            } {
                let Some(strong) = weak.upgrade() else { return };
                let inner = &*strong;
                let Some(&i) = inner.by_id.get(c.deployment.as_str()) else {
                    continue;
                };
                if c.remaining.is_zero() && c.reason == "recovered" {
                    // Another instance's trial call passed: take it back now,
                    // unless it has cooled down here since (a newer failure).
                    if matches!(
                        inner.health.check(i, inner.clock.now()),
                        lb_health::Availability::Trial
                    ) {
                        inner.health.force_healthy(i);
                        tracing::info!(deployment = %c.deployment, "deployment recovered (trial passed on another instance)");
                    }
                    continue;
                }
                let ev = inner.health.force_cooldown(
                    i,
                    CooldownReason::Peer(c.reason),
                    c.remaining,
                    inner.clock.now(),
                );
                tracing::info!(deployment = %c.deployment, reason = %ev.reason, "cooldown shared by another instance");
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::Router;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn background_health_checks_end_with_the_router() {
        let router = Router::from_yaml(
            "model_list:\n  - model_name: m\n    litellm_params: {model: openai/m, api_base: \"http://127.0.0.1:9\"}\nrouter_settings:\n  background_health_checks: true\n  health_check_interval: 30\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let task = router
            .spawn_health_checks()
            .unwrap_or_else(|| panic!("health checks are configured"));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!task.is_finished());
        drop(router);
        tokio::time::sleep(Duration::from_secs(25)).await;
        tokio::task::yield_now().await;
        assert!(task.is_finished(), "the task ends once the router is gone");
    }
}
