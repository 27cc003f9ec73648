//! Cooldowns shared through Redis pub/sub.

use std::time::Duration;

use futures_util::StreamExt;
use lb_core::{CooldownBus, SharedCooldown, StoreError};
use redis::AsyncCommands;
use tokio::sync::mpsc;

/// KEYS[1]: a trial claim; ARGV[1]: this instance. Deletes it if it is ours.
static RELEASE_CLAIM: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// Longest a trial claim waits for Redis on the request path; after that
/// the instance decides alone.
pub const CLAIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a lost subscription waits before subscribing again.
pub const RESUBSCRIBE_INTERVAL: Duration = Duration::from_secs(1);

/// Shares cooldowns between instances through Redis: a cooldown is
/// published on a channel (seen by the others within one round trip) and
/// kept as a key that expires with it, so an instance that starts or
/// reconnects later learns the current ones.
///
/// Durations travel, not deadlines: each instance applies the remaining
/// time to its own clock, so instances' clocks need not agree.
pub struct RedisCooldownBus {
    conn: crate::LazyConn,
    prefix: String,
    instance: String,
}

impl std::fmt::Debug for RedisCooldownBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the prefix is shown.
        f.debug_struct("RedisCooldownBus")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(what: &str, e: &redis::RedisError) -> StoreError {
    StoreError::new(format!("redis {what} failed: {:?}", e.kind()))
}

impl RedisCooldownBus {
    /// A bus on `url` for keys under `key_prefix`; connects on first use.
    pub fn new(url: &str, key_prefix: &str) -> Self {
        Self {
            conn: crate::LazyConn::new(url),
            prefix: key_prefix.to_owned(),
            // So an instance ignores its own messages.
            instance: crate::instance_id(),
        }
    }

    fn channel(&self) -> String {
        format!("{}:cooldowns", self.prefix)
    }

    fn key(&self, deployment: &str) -> String {
        format!("{}:cooldown:{deployment}", self.prefix)
    }

    fn trial_key(&self, deployment: &str) -> String {
        format!("{}:trial:{deployment}", self.prefix)
    }

    /// The publishing connection, made on first use.
    async fn conn(&self) -> Result<redis::aio::ConnectionManager, StoreError> {
        self.conn.get().await
    }

    /// A handle on the same connection, for a spawned task.
    fn handle(&self) -> Self {
        Self {
            conn: self.conn.clone(),
            prefix: self.prefix.clone(),
            instance: self.instance.clone(),
        }
    }

    async fn trial_over_now(&self, deployment: &str, passed: bool) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        // Only our own claim: after a lease ran out it may be another's.
        let ours: i64 = RELEASE_CLAIM
            .key(self.trial_key(deployment))
            .arg(&self.instance)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| err("release claim", &e))?;
        if passed && ours == 1 {
            let _: i64 = conn
                .del(self.key(deployment))
                .await
                .map_err(|e| err("DEL", &e))?;
            let recovered = SharedCooldown {
                deployment: deployment.to_owned(),
                remaining: Duration::ZERO,
                reason: "recovered".to_owned(),
            };
            let _: i64 = conn
                .publish(self.channel(), self.encode(&recovered))
                .await
                .map_err(|e| err("PUBLISH", &e))?;
        }
        Ok(())
    }

    fn client(&self) -> Result<&redis::Client, StoreError> {
        self.conn.client()
    }

    /// `instance \t deployment \t remaining ms \t reason`.
    fn encode(&self, c: &SharedCooldown) -> String {
        format!(
            "{}\t{}\t{}\t{}",
            self.instance,
            c.deployment,
            c.remaining.as_millis(),
            c.reason.replace('\t', " ")
        )
    }

    fn decode(&self, text: &str) -> Option<SharedCooldown> {
        let mut parts = text.splitn(4, '\t');
        let (instance, deployment, ms, reason) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if instance == self.instance {
            return None;
        }
        Some(SharedCooldown {
            deployment: deployment.to_owned(),
            remaining: Duration::from_millis(ms.parse().ok()?),
            reason: reason.to_owned(),
        })
    }

    /// The cooldowns stored now (for a new or returning subscriber).
    async fn current(
        &self,
        conn: &mut redis::aio::ConnectionManager,
    ) -> Result<Vec<SharedCooldown>, StoreError> {
        let pattern = format!("{}:cooldown:*", self.prefix);
        let keys: Vec<String> = conn.keys(&pattern).await.map_err(|e| err("KEYS", &e))?;
        let mut out = Vec::new();
        for key in keys {
            let value: Option<String> = conn.get(&key).await.map_err(|e| err("GET", &e))?;
            let ttl: i64 = conn.pttl(&key).await.map_err(|e| err("PTTL", &e))?;
            if let (Some(v), true) = (value, ttl > 0) {
                let mut parts = v.splitn(2, '\t');
                if let (Some(deployment), Some(reason)) = (parts.next(), parts.next()) {
                    out.push(SharedCooldown {
                        deployment: deployment.to_owned(),
                        remaining: Duration::from_millis(u64::try_from(ttl).unwrap_or(0)),
                        reason: reason.to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn publish_now(&self, c: SharedCooldown) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let ms = u64::try_from(c.remaining.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let _: () = conn
            .pset_ex(
                self.key(&c.deployment),
                format!("{}\t{}", c.deployment, c.reason),
                ms,
            )
            .await
            .map_err(|e| err("SET", &e))?;
        let _: i64 = conn
            .publish(self.channel(), self.encode(&c))
            .await
            .map_err(|e| err("PUBLISH", &e))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl CooldownBus for RedisCooldownBus {
    fn publish(&self, cooldown: SharedCooldown) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The bus is shared behind an Arc by its owner; publishing needs
        // only the connection, which is cloned into the task.
        let bus = self.handle();
        rt.spawn(async move {
            if let Err(e) = bus.publish_now(cooldown).await {
                tracing::warn!(error = %e.message, "sharing a cooldown through redis failed");
            }
        });
    }

    /// `SET {prefix}:trial:{id} {instance} NX PX lease`: one round trip,
    /// only when a deployment is half-open.
    async fn claim_trial(&self, deployment: &str, lease: Duration) -> Result<bool, StoreError> {
        let claim = async {
            let mut conn = self.conn().await?;
            let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
            let reply: Option<String> = redis::cmd("SET")
                .arg(self.trial_key(deployment))
                .arg(&self.instance)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut conn)
                .await
                .map_err(|e| err("SET NX", &e))?;
            Ok(reply.is_some())
        };
        tokio::time::timeout(CLAIM_TIMEOUT, claim)
            .await
            .unwrap_or_else(|_| Err(StoreError::new("redis trial claim timed out")))
    }

    fn trial_over(&self, deployment: &str, passed: bool) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let bus = self.handle();
        let deployment = deployment.to_owned();
        rt.spawn(async move {
            if let Err(e) = bus.trial_over_now(&deployment, passed).await {
                tracing::warn!(error = %e.message, "sharing a trial's outcome through redis failed");
            }
        });
    }

    async fn subscribe(&self) -> Result<mpsc::Receiver<SharedCooldown>, StoreError> {
        let client = self.client()?.clone();
        let (tx, rx) = mpsc::channel(1024);
        let bus = Self {
            conn: self.conn.fresh(),
            prefix: self.prefix.clone(),
            instance: self.instance.clone(),
        };
        tokio::spawn(async move {
            // Subscribe, send the current cooldowns, forward new ones; on a
            // lost connection, start again (so a returning Redis resyncs).
            loop {
                if tx.is_closed() {
                    return;
                }
                let session = async {
                    let mut pubsub = client
                        .get_async_pubsub()
                        .await
                        .map_err(|e| err("connect", &e))?;
                    pubsub
                        .subscribe(bus.channel())
                        .await
                        .map_err(|e| err("SUBSCRIBE", &e))?;
                    let mut conn = client
                        .get_connection_manager()
                        .await
                        .map_err(|e| err("connect", &e))?;
                    for c in bus.current(&mut conn).await? {
                        let _ = tx.send(c).await;
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        if let Some(c) = msg
                            .get_payload::<String>()
                            .ok()
                            .and_then(|t| bus.decode(&t))
                        {
                            if tx.send(c).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    Err::<(), StoreError>(StoreError::new("redis subscription ended"))
                };
                // The listener gone (its router dropped): unsubscribe now,
                // not at the next message.
                let result = tokio::select! {
                    r = session => r,
                    () = tx.closed() => return,
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e.message, "cooldown subscription lost; resubscribing");
                }
                tokio::select! {
                    () = tokio::time::sleep(RESUBSCRIBE_INTERVAL) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}
