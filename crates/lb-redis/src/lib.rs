//! Redis backend of lb-core's shared-state traits.
//!
//! [`RedisStore`] implements [`CounterStore`] (rpm/tpm reservations and
//! budget spend) and [`ConcurrencyStore`] (`max_parallel_requests` caps) on
//! one Redis server, so several router instances behind a load balancer
//! enforce *one* set of limits instead of one per instance. It has the same
//! semantics as the in-process `lb_budget::MemoryStore`; the two pass one
//! conformance suite (`tests/conformance.rs`).
//!
//! # Consistency model
//!
//! Counters and concurrency caps are **exact across instances**: every
//! reservation is one Lua script that reads every counter it names, checks
//! `value + amount <= limit` for all of them, and adds all amounts only if
//! all fit. Redis runs a script atomically, so N instances together never
//! admit more than a limit, under any interleaving (the guarantee stated in
//! [`lb_core::state`]). Windows are the fixed, epoch-aligned windows of
//! [`Window`]; the window index is computed by the caller from the `now` it
//! passes in, never from Redis's clock or this crate's.
//!
//! Instances whose clocks disagree disagree on the current window only
//! around a boundary, by their skew: each counts in the window its own
//! `now` names. (`MemoryStore` instead folds a lagging `now` into the newer
//! window it has already seen; one process has one clock, so this differs
//! only for callers passing a `now` from the past.)
//!
//! Amounts and limits are compared inside the script as Lua numbers
//! (doubles), exact up to 2^53 (about 9·10^15: nine billion dollars in
//! micro-dollars); counters are Redis integers, so one amount above
//! `i64::MAX` is refused with a [`StoreError`].
//!
//! # Round trips
//!
//! | operation | round trips |
//! |---|---|
//! | [`reserve`](CounterStore::reserve) | 1 (`EVALSHA`); 0 for no items |
//! | [`settle`](CounterStore::settle) | 0 on the caller's path: queued, sent with the instance's next `reserve`, or after [`SETTLE_DELAY`] in one `EVALSHA` for every pending counter |
//! | [`release`](CounterStore::release) | as `settle` |
//! | [`get_many`](CounterStore::get_many) | 1 (`MGET`), plus 1 first when settlements are pending; 0 for no counters |
//! | [`try_increment`](ConcurrencyStore::try_increment) | 1 (`EVALSHA`) |
//! | [`decrement`](ConcurrencyStore::decrement) | 1, in a spawned task |
//! | [`in_flight`](ConcurrencyStore::in_flight) | 1 (`GET`) |
//!
//! The first call of each script on a connection that has not loaded it
//! costs one more (`NOSCRIPT`, then `SCRIPT LOAD` and retry, done by
//! [`redis::Script`]).
//!
//! # Key layout
//!
//! Every key starts with the prefix given to [`RedisStore::connect`] and a
//! colon, so several routers (or environments) can share one Redis:
//!
//! - counter: `{prefix}:{counter key}:{window}:{window index}`, e.g.
//!   `lb:deployment:azure-eu:tpm:60s:28433017`. The window (`60s`, `1mo`, as
//!   [`Window`]'s `Display`) is part of the key because one counter key may
//!   be limited over several windows. A counter key expires
//!   [`EXPIRY_MARGIN`] after its window ends (set relative to the caller's
//!   `now`, so it does not depend on Redis's clock).
//! - in-flight count: `{prefix}:{counter key}:inflight`, with a lease of
//!   [`CONCURRENCY_LEASE`] renewed by every increment.
//!
//! All keys of one reservation are passed to one script; on Redis Cluster
//! they must hash to one slot, which this version does not arrange (use a
//! single Redis or a primary with replicas).
//!
//! # When Redis is down
//!
//! Every async call returns [`StoreError`] (connection refused, timed out
//! after [`RESPONSE_TIMEOUT`], or the error Redis returned); nothing blocks
//! longer than that. The [`redis::aio::ConnectionManager`] reconnects by
//! itself with backoff, so calls succeed again once Redis is back. Whether
//! a call then goes through is the router's decision: in its default
//! fail-open mode it lets calls through on local state. The background
//! updates of [`release`](CounterStore::release) and
//! [`decrement`](ConcurrencyStore::decrement) are dropped with a warning
//! when they fail; counters then stay too high until their window ends and
//! in-flight counts until their lease expires: the safe direction.
//!
//! The Redis URL may hold a password, so it is never logged or put in an
//! error message.

mod bus;
mod load;

pub use bus::{RESUBSCRIBE_INTERVAL, RedisCooldownBus};
pub use load::RedisLoadExchange;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use lb_core::{
    ConcurrencyStore, CounterKey, CounterStore, Denied, Reservation, Reserve, ReserveError,
    Reserved, StoreError, Window,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

/// How long a counter key outlives the end of its window. Covers clock skew
/// between router instances: an instance whose clock lags by less than this
/// still reads the window's real value.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long an in-flight count lives after its last increment. A router
/// instance that crashes while holding slots cannot give them back; its
/// slots are freed when the lease runs out. The price: if a key sees no new
/// call for this long while calls are still running (a stream longer than
/// ten minutes on an otherwise idle deployment), its count is dropped and
/// the cap can be overshot by those calls.
pub const CONCURRENCY_LEASE: Duration = Duration::from_secs(600);

/// How long a command may wait for Redis's answer before it fails.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// First applies `n` pending settlements (as [`SETTLE`] does), then
/// reserves. KEYS: the `n` settled counters, then one per item. ARGV: `n`,
/// the `n` signed deltas, then per item amount, limit, ttl in ms.
/// Returns `{1}` when admitted (all added), else `{0, current_1, ...}`
/// where `current_i` is the counter's value plus the amounts of earlier
/// items on the same key (what `MemoryStore` reports).
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[1])
for j = 1, n do
  local k = KEYS[j]
  if redis.call('EXISTS', k) == 1 then
    local v = redis.call('INCRBY', k, ARGV[1 + j])
    if v < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
  end
end
local o = 1 + n
local out = {0}
local over = false
-- Add first (one command per counter), then undo it all if any is over.
for i = 1, #KEYS - n do
  local amount = tonumber(ARGV[o + 3 * i - 2])
  local after = tonumber(redis.call('INCRBY', KEYS[n + i], ARGV[o + 3 * i - 2]))
  -- The window's first write sets its expiry; later ones need not.
  if after == amount then
    redis.call('PEXPIRE', KEYS[n + i], ARGV[o + 3 * i])
  end
  out[i + 1] = after - amount
  if after > tonumber(ARGV[o + 3 * i - 1]) then over = true end
end
if over then
  for i = 1, #KEYS - n do
    redis.call('DECRBY', KEYS[n + i], ARGV[o + 3 * i - 2])
  end
  return out
end
return {1}
",
    )
});

/// KEYS: counters. ARGV: signed delta per key. Keys that no longer exist
/// (their window ended and expired) are left alone; never below zero.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, #KEYS do
  local k = KEYS[i]
  if redis.call('EXISTS', k) == 1 then
    local v = redis.call('INCRBY', k, ARGV[i])
    if v < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
  end
end
return 1
",
    )
});

/// KEYS[1]: in-flight key. ARGV: cap, lease in ms. Returns 1 if taken.
static TRY_INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// KEYS[1]: in-flight key. Takes one, deleting the key at zero.
static DECREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v <= 1 then redis.call('DEL', KEYS[1]) else redis.call('DECR', KEYS[1]) end
return 1
",
    )
});

/// Counters and in-flight counts in Redis, shared by every router instance
/// that connects with the same prefix.
///
/// Cheap to clone: clones share one multiplexed connection
/// ([`ConnectionManager`]), which reconnects by itself after failures.
/// [`release`](CounterStore::release) and
/// [`decrement`](ConcurrencyStore::decrement) spawn their update on the
/// current Tokio runtime; outside a runtime they drop it (see their docs).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// Settlements not yet sent: Redis key -> signed delta.
    pending: Arc<Pending>,
}

/// Settlements waiting for the next round trip to Redis.
#[derive(Default)]
struct Pending {
    deltas: Mutex<HashMap<String, i64>>,
    /// A flush of these is scheduled.
    scheduled: AtomicBool,
}

/// Largest settlement of one counter (about 10^15: a thousand billion
/// tokens, or a billion dollars in micro-dollars).
const MAX_DELTA: i128 = 1_000_000_000_000_000;

/// Longest a settlement waits for a reservation to carry it before it is
/// sent on its own.
pub const SETTLE_DELAY: Duration = Duration::from_millis(10);

/// Most counters with a pending settlement kept while Redis cannot be
/// reached; beyond it new settlements are dropped with a warning (their
/// amounts then stay counted as reserved until the window ends).
pub const MAX_PENDING_SETTLEMENTS: usize = 10_000;

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.deltas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds deltas; true if the map was empty (a flush must be scheduled).
    fn add(&self, deltas: impl IntoIterator<Item = (String, i64)>) -> bool {
        let mut map = self.lock();
        let was_empty = map.is_empty();
        for (k, d) in deltas {
            if d == 0 {
                continue;
            }
            let len = map.len();
            match map.get_mut(&k) {
                Some(v) => *v = v.saturating_add(d),
                None if len < MAX_PENDING_SETTLEMENTS => {
                    map.insert(k, d);
                }
                None => tracing::warn!(
                    "redis settlement dropped: too many pending (Redis unreachable?)"
                ),
            }
        }
        was_empty && !map.is_empty()
    }

    /// Takes every pending delta, to send. Until [`Taken::sent`] is called,
    /// dropping them (an error, a cancelled call) puts back the ones whose
    /// loss would over-admit (see [`Taken`]).
    fn take(&self) -> Taken<'_> {
        let mut map = self.lock();
        let deltas = if map.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *map).into_iter().collect()
        };
        Taken {
            pending: self,
            deltas,
            sent: false,
        }
    }
}

/// Deltas on their way to Redis. When it is not known whether they were
/// applied (a timeout, a lost connection, a cancelled call), the positive
/// ones are queued again and the negative ones dropped: applying a
/// positive delta twice makes a counter admit less, losing a negative one
/// too, while the reverse would let calls over the limit.
struct Taken<'a> {
    pending: &'a Pending,
    deltas: Vec<(String, i64)>,
    sent: bool,
}

impl Taken<'_> {
    /// They were applied (or must not be retried): nothing is queued again.
    fn sent(mut self) {
        self.sent = true;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.sent {
            let retry = std::mem::take(&mut self.deltas)
                .into_iter()
                .filter(|(_, d)| *d > 0);
            self.pending.add(retry);
        }
    }
}

/// Whether a failed command may have run (a timeout or lost connection),
/// as opposed to an answer from Redis that it did not (a script error,
/// which retrying would only repeat).
fn uncertain(e: &RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped()
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port/db`)
    /// and prefixes every key with `key_prefix` and a colon.
    ///
    /// Fails if the URL does not parse or the first connection cannot be
    /// made within [`CONNECT_TIMEOUT`]; later failures are retried by the
    /// connection manager. Error messages never contain the URL.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, StoreError> {
        tls_provider(url);
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::new(format!(
                "invalid Redis URL (not shown, it may hold a password): {:?}",
                e.kind()
            ))
        })?;
        let conn = ConnectionManager::new_with_config(client, manager_config())
            .await
            .map_err(|e| store_error("connect", &e))?;
        Ok(Self {
            conn,
            prefix: key_prefix.to_owned(),
            pending: Arc::new(Pending::default()),
        })
    }

    /// Queues settlements; they travel with this instance's next
    /// reservation, or on their own after [`SETTLE_DELAY`].
    fn queue(&self, deltas: Vec<(String, i64)>) {
        if deltas.is_empty() {
            return;
        }
        self.pending.add(deltas);
        if self.pending.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let mut delay = SETTLE_DELAY;
                    loop {
                        tokio::time::sleep(delay).await;
                        store.pending.scheduled.store(false, Ordering::Release);
                        let Err(e) = store.flush().await else { break };
                        tracing::warn!(error = %e, "redis settle delayed: retrying in a second");
                        // Try again later, unless another flush is scheduled.
                        if store.pending.lock().is_empty()
                            || store.pending.scheduled.swap(true, Ordering::AcqRel)
                        {
                            break;
                        }
                        delay = Duration::from_secs(1);
                    }
                });
            }
            // No runtime to send from: they go with the next reservation or read.
            Err(_) => store.pending.scheduled.store(false, Ordering::Release),
        }
    }

    /// Sends every pending settlement now (one `EVALSHA`; none if there is nothing).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let taken = self.pending.take();
        if taken.deltas.is_empty() {
            taken.sent();
            return Ok(());
        }
        let mut invocation = SETTLE.prepare_invoke();
        for (k, d) in &taken.deltas {
            invocation.key(k).arg(*d);
        }
        let mut conn = self.conn.clone();
        match invocation.invoke_async::<i64>(&mut conn).await {
            Ok(_) => {
                taken.sent();
                Ok(())
            }
            Err(e) => {
                if !uncertain(&e) {
                    tracing::warn!(error = %e, "redis settlements dropped: Redis refused them");
                    taken.sent();
                }
                Err(store_error("settle", &e))
            }
        }
    }

    /// The key prefix, as given to [`connect`](Self::connect).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of `key`'s counter in window `index` of `window`.
    pub fn counter_key(&self, key: &CounterKey, window: Window, index: u64) -> String {
        format!("{}:{}:{}:{}", self.prefix, key, window, index)
    }

    /// The Redis key of `key`'s in-flight count.
    pub fn in_flight_key(&self, key: &CounterKey) -> String {
        format!("{}:{}:inflight", self.prefix, key)
    }

    /// Each item's `actual - reserved`, by Redis key (zero deltas left out).
    fn deltas(&self, items: &[Reserved], actual: &[u64]) -> Vec<(String, i64)> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let actual = actual.get(i).copied().unwrap_or(item.amount);
                let delta = i128::from(actual) - i128::from(item.amount);
                // Clamped far below i64's range, so sums in Redis cannot overflow.
                let delta = delta.clamp(-MAX_DELTA, MAX_DELTA) as i64;
                (delta != 0).then(|| (self.counter_key(&item.key, item.window, item.index), delta))
            })
            .collect()
    }

    /// Runs `fut` on the current Tokio runtime if there is one; otherwise
    /// drops it with a warning.
    fn spawn_update<F>(what: &'static str, fut: F)
    where
        F: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::warn!(error = %e, "redis {what} dropped");
                    }
                });
            }
            Err(_) => {
                tracing::warn!("redis {what} dropped: no Tokio runtime to send it from");
            }
        }
    }
}

/// Bounded waits for every connection of this crate: a command fails after
/// [`RESPONSE_TIMEOUT`] instead of waiting out a long reconnect.
pub(crate) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

/// A Redis client whose multiplexed connection is made on first use and
/// shared by its clones (for the cooldown bus and the load exchange).
#[derive(Clone)]
pub(crate) struct LazyConn {
    client: Result<redis::Client, String>,
    conn: Arc<tokio::sync::OnceCell<ConnectionManager>>,
}

impl LazyConn {
    /// For `url`; an invalid URL is reported on use, without the URL.
    pub(crate) fn new(url: &str) -> Self {
        tls_provider(url);
        Self {
            client: redis::Client::open(url)
                .map_err(|e| format!("invalid Redis URL: {:?}", e.kind())),
            conn: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The same client with a connection of its own.
    pub(crate) fn fresh(&self) -> Self {
        Self {
            client: self.client.clone(),
            conn: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    pub(crate) fn client(&self) -> Result<&redis::Client, StoreError> {
        self.client.as_ref().map_err(|m| StoreError::new(m.clone()))
    }

    /// The shared connection, made with bounded timeouts on first use.
    pub(crate) async fn get(&self) -> Result<ConnectionManager, StoreError> {
        let client = self.client()?;
        let conn = self
            .conn
            .get_or_try_init(|| async {
                client
                    .get_connection_manager_with_config(manager_config())
                    .await
                    .map_err(|e| store_error("connect", &e))
            })
            .await?;
        Ok(conn.clone())
    }
}

/// A random id for this instance, so it can tell its own records apart.
pub(crate) fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    format!(
        "{:016x}",
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    )
}

/// For a `rediss://` URL, makes sure rustls has its process-wide crypto
/// provider: with none chosen (or two compiled in) a TLS connection would
/// panic. Keeps one an embedder installed before.
pub(crate) fn tls_provider(url: &str) {
    if url.starts_with("rediss://") {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// A [`StoreError`] naming the operation and the kind of failure. Redis's
/// error messages do not contain the connection URL.
pub(crate) fn store_error(op: &str, e: &RedisError) -> StoreError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_io_error() {
        "connection failed"
    } else {
        "command failed"
    };
    StoreError::new(format!("redis {op}: {kind}: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait::async_trait]
impl CounterStore for RedisStore {
    /// One `EVALSHA` of an atomic check-and-add script over all items.
    async fn reserve(
        &self,
        items: &[Reserve],
        now: SystemTime,
    ) -> Result<Reservation, ReserveError> {
        if items.is_empty() {
            return Ok(Reservation::default());
        }
        // Settlements waiting to be sent ride along, applied first.
        let settled = self.pending.take();
        let mut invocation = RESERVE.prepare_invoke();
        invocation.arg(settled.deltas.len());
        for (k, d) in &settled.deltas {
            invocation.key(k).arg(*d);
        }
        let mut indices = Vec::with_capacity(items.len());
        for item in items {
            let index = item.window.index(now);
            indices.push(index);
            let ttl = item
                .window
                .end_of(index)
                .duration_since(now)
                .unwrap_or_default()
                .saturating_add(EXPIRY_MARGIN);
            invocation
                .key(self.counter_key(&item.key, item.window, index))
                .arg(item.amount)
                .arg(item.limit)
                .arg(millis(ttl).max(1));
        }
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = match invocation.invoke_async(&mut conn).await {
            Ok(r) => {
                settled.sent();
                r
            }
            Err(e) => {
                if !uncertain(&e) {
                    if !settled.deltas.is_empty() {
                        tracing::warn!(error = %e, "redis settlements dropped: Redis refused the script");
                    }
                    settled.sent();
                }
                return Err(store_error("reserve", &e).into());
            }
        };
        match reply.first() {
            Some(1) => Ok(Reservation::new(
                items
                    .iter()
                    .zip(indices)
                    .map(|(item, index)| Reserved {
                        key: item.key.clone(),
                        window: item.window,
                        index,
                        amount: item.amount,
                    })
                    .collect(),
            )),
            Some(0) if reply.len() == items.len() + 1 => {
                // The same choice as MemoryStore: of the items that do not
                // fit, the first whose window resets last.
                let mut worst: Option<Denied> = None;
                for ((item, index), &current) in items.iter().zip(&indices).zip(&reply[1..]) {
                    if current.saturating_add(item.amount) <= item.limit {
                        continue;
                    }
                    let reset_at = item.window.end_of(*index);
                    let retry_after = reset_at.duration_since(now).unwrap_or_default();
                    if worst.as_ref().is_none_or(|w| retry_after > w.retry_after) {
                        worst = Some(Denied {
                            key: item.key.clone(),
                            window: item.window,
                            current,
                            requested: item.amount,
                            limit: item.limit,
                            reset_at,
                            retry_after,
                        });
                    }
                }
                match worst {
                    Some(denied) => Err(denied.into()),
                    None => Err(StoreError::new(
                        "redis reserve: script denied but no counter is over its limit",
                    )
                    .into()),
                }
            }
            _ => Err(StoreError::new("redis reserve: unexpected reply from script").into()),
        }
    }

    /// Queues `actual - reserved` for each counter, and returns at once:
    /// the deltas travel with this instance's next reservation, or on
    /// their own after [`SETTLE_DELAY`] (one `EVALSHA` for every pending
    /// counter). They are added only to counters whose key still exists,
    /// never below zero.
    async fn settle(&self, reservation: Reservation, actual: &[u64]) -> Result<(), StoreError> {
        self.queue(self.deltas(reservation.items(), actual));
        Ok(())
    }

    /// Queues the settle-with-zeros and returns at once (as
    /// [`settle`](CounterStore::settle)). While Redis cannot be reached the
    /// deltas wait (up to [`MAX_PENDING_SETTLEMENTS`] counters); amounts
    /// not given back stay counted until their window ends (the counter errs
    /// on the side of admitting less).
    fn release(&self, reservation: Reservation) {
        if reservation.is_empty() {
            return;
        }
        let zeros = vec![0; reservation.items().len()];
        self.queue(self.deltas(reservation.items(), &zeros));
    }

    /// One `MGET` of each counter's key in its window at `now`.
    async fn get_many(
        &self,
        counters: &[(CounterKey, Window)],
        now: SystemTime,
    ) -> Result<Vec<u64>, StoreError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        // This instance's own settlements first: it reads what it wrote.
        self.flush().await?;
        let keys: Vec<String> = counters
            .iter()
            .map(|(key, window)| self.counter_key(key, *window, window.index(now)))
            .collect();
        let mut conn = self.conn.clone();
        let values: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("get_many", &e))?;
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }
}

#[async_trait::async_trait]
impl ConcurrencyStore for RedisStore {
    /// One `EVALSHA`: increments if below `cap` and renews the key's lease
    /// ([`CONCURRENCY_LEASE`]).
    async fn try_increment(&self, key: &CounterKey, cap: u32) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let taken: i64 = TRY_INCREMENT
            .key(self.in_flight_key(key))
            .arg(cap)
            .arg(millis(CONCURRENCY_LEASE))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store_error("try_increment", &e))?;
        Ok(taken == 1)
    }

    /// Spawns the decrement on the current Tokio runtime and returns at
    /// once. Outside a runtime, or if Redis fails, it is dropped with a
    /// warning, and the slot stays held until the key's lease
    /// ([`CONCURRENCY_LEASE`]) runs out.
    fn decrement(&self, key: &CounterKey) {
        let conn = self.conn.clone();
        let redis_key = self.in_flight_key(key);
        Self::spawn_update("decrement", async move {
            let mut conn = conn;
            DECREMENT
                .key(redis_key)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| store_error("decrement", &e))
        });
    }

    /// One `GET`.
    async fn in_flight(&self, key: &CounterKey) -> Result<u32, StoreError> {
        let mut conn = self.conn.clone();
        let value: Option<u32> = redis::cmd("GET")
            .arg(self.in_flight_key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("in_flight", &e))?;
        Ok(value.unwrap_or(0))
    }
}

/// A [`RedisStore`] that connects on first use, so a router can be built
/// (synchronously) before Redis answers, and keeps working when it does not.
///
/// While Redis cannot be reached, every operation fails fast with a
/// [`StoreError`] (the router then applies its fail mode); a new connection
/// is attempted at most once per [`RECONNECT_INTERVAL`]. Once connected, the
/// connection manager reconnects by itself.
pub struct LazyRedisStore {
    url: String,
    prefix: String,
    store: tokio::sync::OnceCell<RedisStore>,
    /// When the last failed connection attempt was made.
    last_failure: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The least time between two attempts to connect to an unreachable Redis.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for LazyRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the prefix is shown.
        f.debug_struct("LazyRedisStore")
            .field("prefix", &self.prefix)
            .field("connected", &self.store.initialized())
            .finish_non_exhaustive()
    }
}

impl LazyRedisStore {
    /// A store for `url` (`redis://` or `rediss://`), keys under `key_prefix`;
    /// nothing is connected yet.
    pub fn new(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: key_prefix.into(),
            store: tokio::sync::OnceCell::new(),
            last_failure: std::sync::Mutex::new(None),
        }
    }

    #[allow(clippy::disallowed_methods)] // pacing reconnects is not routing policy
    fn now() -> std::time::Instant {
        std::time::Instant::now()
    }

    async fn store(&self) -> Result<&RedisStore, StoreError> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        {
            let last = match self.last_failure.lock() {
                Ok(g) => *g,
                Err(p) => *p.into_inner(),
            };
            if last.is_some_and(|t| Self::now().saturating_duration_since(t) < RECONNECT_INTERVAL) {
                return Err(StoreError {
                    message: "redis unavailable (waiting before reconnecting)".to_owned(),
                });
            }
        }
        match self
            .store
            .get_or_try_init(|| RedisStore::connect(&self.url, &self.prefix))
            .await
        {
            Ok(s) => Ok(s),
            Err(e) => {
                let mut last = match self.last_failure.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                *last = Some(Self::now());
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl CounterStore for LazyRedisStore {
    async fn reserve(
        &self,
        items: &[Reserve],
        now: SystemTime,
    ) -> Result<Reservation, ReserveError> {
        self.store()
            .await
            .map_err(ReserveError::Store)?
            .reserve(items, now)
            .await
    }

    /// Never connects (a reservation to settle means the store is
    /// connected): queues the settlement, as [`RedisStore`] does.
    async fn settle(&self, reservation: Reservation, actual: &[u64]) -> Result<(), StoreError> {
        match self.store.get() {
            Some(s) => s.settle(reservation, actual).await,
            None => Ok(()),
        }
    }

    fn release(&self, reservation: Reservation) {
        if let Some(s) = self.store.get() {
            s.release(reservation);
        }
    }

    async fn get_many(
        &self,
        counters: &[(CounterKey, Window)],
        now: SystemTime,
    ) -> Result<Vec<u64>, StoreError> {
        self.store().await?.get_many(counters, now).await
    }
}

#[async_trait::async_trait]
impl ConcurrencyStore for LazyRedisStore {
    async fn try_increment(&self, key: &CounterKey, cap: u32) -> Result<bool, StoreError> {
        self.store().await?.try_increment(key, cap).await
    }

    fn decrement(&self, key: &CounterKey) {
        if let Some(s) = self.store.get() {
            s.decrement(key);
        }
    }

    async fn in_flight(&self, key: &CounterKey) -> Result<u32, StoreError> {
        self.store().await?.in_flight(key).await
    }
}
