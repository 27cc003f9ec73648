//! The in-process backend of [`CounterStore`] and [`ConcurrencyStore`].

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use lb_core::{
    ConcurrencyStore, CounterKey, CounterStore, Denied, Reservation, Reserve, ReserveError,
    Reserved, StoreError, Window,
};

/// Shards of each map (at most 64: a reservation keeps a bit mask of them).
const SHARDS: usize = 16;

/// Every this many reservations a shard drops counters whose window ended.
const SWEEP_EVERY: u32 = 1_024;

/// Reservations of up to this many items need no heap buffers.
const INLINE: usize = 8;

/// Counters and in-flight counts in this process's memory.
///
/// Correct under any concurrency: each shard is a [`std::sync::Mutex`]
/// (never held across an `.await`), and a reservation locks the shards of
/// all its counters, in ascending shard order, for its whole check-and-add.
/// Counters of ended windows are swept, and in-flight entries are removed at
/// zero, so memory stays bounded by the live keys. Never reads a clock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    counters: [Mutex<CounterShard>; SHARDS],
    in_flight: [Mutex<FxMap<CounterKey, u32>>; SHARDS],
}

/// Keys are deployment and provider names from the configuration, not
/// client input, so a fast non-keyed hash is fine.
type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// rustc's Fx hash: one multiply per word.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// The shard of a key: the high bits of its hash (the map uses the low ones).
fn shard_of(key: &CounterKey) -> usize {
    let hash = BuildHasherDefault::<FxHasher>::default().hash_one(key);
    (hash >> 58) as usize % SHARDS
}

#[derive(Debug, Default)]
struct CounterShard {
    /// Per key, its counters by window (usually one).
    keys: FxMap<CounterKey, Vec<(Window, Slot)>>,
    ops: u32,
    scratch: Slot,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    index: u64,
    value: u64,
}

impl CounterShard {
    /// The slot of (`key`, `window`) normalized to window `index`: a newer
    /// index starts the counter again from zero; an older index than the
    /// slot's (a caller whose `now` lags) counts in the slot's newer window.
    fn slot(&mut self, key: &CounterKey, window: Window, index: u64) -> &mut Slot {
        if !self.keys.contains_key(key) {
            self.keys.insert(key.clone(), Vec::with_capacity(1));
        }
        let Some(windows) = self.keys.get_mut(key) else {
            // Unreachable: the key was inserted above.
            return &mut self.scratch;
        };
        let pos = match windows.iter().position(|(w, _)| *w == window) {
            Some(pos) => pos,
            None => {
                windows.push((window, Slot { index, value: 0 }));
                windows.len() - 1
            }
        };
        let slot = &mut windows[pos].1;
        if index > slot.index {
            *slot = Slot { index, value: 0 };
        }
        slot
    }

    fn existing(&mut self, key: &CounterKey, window: Window) -> Option<&mut Slot> {
        self.keys
            .get_mut(key)?
            .iter_mut()
            .find(|(w, _)| *w == window)
            .map(|(_, slot)| slot)
    }

    fn value_at(&self, key: &CounterKey, window: Window, index: u64) -> u64 {
        self.keys
            .get(key)
            .and_then(|ws| ws.iter().find(|(w, _)| *w == window))
            .filter(|(_, slot)| slot.index >= index)
            .map_or(0, |(_, slot)| slot.value)
    }

    fn sweep(&mut self, now: SystemTime) {
        self.keys.retain(|_, windows| {
            windows.retain(|(window, slot)| slot.index >= window.index(now));
            !windows.is_empty()
        });
    }

    fn maybe_sweep(&mut self, now: SystemTime) {
        self.ops = self.ops.wrapping_add(1);
        if self.ops % SWEEP_EVERY == 0 {
            self.sweep(now);
        }
    }

    fn len(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many counters are held (live windows plus ended ones not yet
    /// swept); for tests of bounded memory.
    pub fn counter_len(&self) -> usize {
        self.counters.iter().map(|s| lock(s).len()).sum()
    }

    /// How many keys have slots held.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.iter().map(|s| lock(s).len()).sum()
    }

    /// Drops every counter whose window ended before `now`.
    pub fn sweep(&self, now: SystemTime) {
        for shard in &self.counters {
            lock(shard).sweep(now);
        }
    }

    /// The synchronous core of [`CounterStore::reserve`].
    pub fn reserve_now(&self, items: &[Reserve], now: SystemTime) -> Result<Reservation, Denied> {
        let n = items.len();
        if n == 0 {
            return Ok(Reservation::default());
        }
        if n <= INLINE {
            let mut shards = [0usize; INLINE];
            let mut indices = [0u64; INLINE];
            self.reserve_in(items, now, &mut shards[..n], &mut indices[..n])
        } else {
            self.reserve_in(items, now, &mut vec![0; n], &mut vec![0; n])
        }
    }

    fn reserve_in(
        &self,
        items: &[Reserve],
        now: SystemTime,
        shards: &mut [usize],
        indices: &mut [u64],
    ) -> Result<Reservation, Denied> {
        let mut mask = 0u64;
        for (shard, item) in shards.iter_mut().zip(items) {
            *shard = shard_of(&item.key);
            mask |= 1 << *shard;
        }
        // Lock in ascending shard order, so concurrent reservations over
        // overlapping shards cannot deadlock.
        let mut guards: [Option<MutexGuard<'_, CounterShard>>; SHARDS] =
            std::array::from_fn(|_| None);
        for (i, guard) in guards.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *guard = Some(lock(&self.counters[i]));
            }
        }

        // One pass: add each item while all fit; after the first that does
        // not, only check the rest (to report the one that resets last),
        // then take back what was added.
        let mut applied = 0;
        let mut worst: Option<Denied> = None;
        for (i, item) in items.iter().enumerate() {
            let Some(g) = guards[shards[i]].as_mut() else {
                continue;
            };
            let slot = g.slot(&item.key, item.window, item.window.index(now));
            indices[i] = slot.index;
            if worst.is_none() && slot.value.saturating_add(item.amount) <= item.limit {
                slot.value += item.amount;
                applied = i + 1;
                continue;
            }
            // Earlier items on the same counter that were not added count too.
            let pending = items[applied..i]
                .iter()
                .filter(|e| e.window == item.window && e.key == item.key)
                .fold(0u64, |sum, e| sum.saturating_add(e.amount));
            let current = slot.value.saturating_add(pending);
            if current.saturating_add(item.amount) > item.limit {
                let reset_at = item.window.end_of(slot.index);
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
        }
        if let Some(denied) = worst {
            for (i, item) in items[..applied].iter().enumerate() {
                if let Some(slot) = guards[shards[i]]
                    .as_mut()
                    .and_then(|g| g.existing(&item.key, item.window))
                {
                    slot.value = slot.value.saturating_sub(item.amount);
                }
            }
            return Err(denied);
        }

        let mut reserved = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            reserved.push(Reserved {
                key: item.key.clone(),
                window: item.window,
                index: indices[i],
                amount: item.amount,
            });
        }
        for g in guards.iter_mut().flatten() {
            g.maybe_sweep(now);
        }
        Ok(Reservation::new(reserved))
    }

    /// The synchronous core of [`CounterStore::settle`].
    pub fn settle_now(&self, reservation: &Reservation, actual: &[u64]) {
        for (i, item) in reservation.items().iter().enumerate() {
            let actual = actual.get(i).copied().unwrap_or(item.amount);
            if actual == item.amount {
                continue;
            }
            let mut shard = lock(&self.counters[shard_of(&item.key)]);
            let Some(slot) = shard.existing(&item.key, item.window) else {
                continue;
            };
            if slot.index == item.index {
                slot.value = if actual > item.amount {
                    slot.value.saturating_add(actual - item.amount)
                } else {
                    slot.value.saturating_sub(item.amount - actual)
                };
            }
        }
    }

    /// The synchronous core of [`CounterStore::get_many`].
    pub fn get_now(&self, counters: &[(CounterKey, Window)], now: SystemTime) -> Vec<u64> {
        counters
            .iter()
            .map(|(key, window)| {
                lock(&self.counters[shard_of(key)]).value_at(key, *window, window.index(now))
            })
            .collect()
    }

    /// The synchronous core of [`ConcurrencyStore::try_increment`].
    pub fn try_increment_now(&self, key: &CounterKey, cap: u32) -> bool {
        let mut shard = lock(&self.in_flight[shard_of(key)]);
        match shard.get_mut(key) {
            Some(held) if *held >= cap => false,
            Some(held) => {
                *held += 1;
                true
            }
            None if cap == 0 => false,
            None => {
                shard.insert(key.clone(), 1);
                true
            }
        }
    }

    /// The synchronous core of [`ConcurrencyStore::in_flight`].
    pub fn in_flight_now(&self, key: &CounterKey) -> u32 {
        lock(&self.in_flight[shard_of(key)])
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The synchronous core of [`ConcurrencyStore::decrement`].
    pub fn decrement_now(&self, key: &CounterKey) {
        let mut shard = lock(&self.in_flight[shard_of(key)]);
        match shard.get_mut(key) {
            Some(held) if *held > 1 => *held -= 1,
            Some(_) => {
                shard.remove(key);
            }
            None => {}
        }
    }
}

#[async_trait::async_trait]
impl CounterStore for MemoryStore {
    async fn reserve(
        &self,
        items: &[Reserve],
        now: SystemTime,
    ) -> Result<Reservation, ReserveError> {
        Ok(self.reserve_now(items, now)?)
    }

    async fn settle(&self, reservation: Reservation, actual: &[u64]) -> Result<(), StoreError> {
        self.settle_now(&reservation, actual);
        Ok(())
    }

    fn release(&self, reservation: Reservation) {
        self.settle_now(&reservation, &vec![0; reservation.items().len()]);
    }

    async fn get_many(
        &self,
        counters: &[(CounterKey, Window)],
        now: SystemTime,
    ) -> Result<Vec<u64>, StoreError> {
        Ok(self.get_now(counters, now))
    }
}

#[async_trait::async_trait]
impl ConcurrencyStore for MemoryStore {
    async fn try_increment(&self, key: &CounterKey, cap: u32) -> Result<bool, StoreError> {
        Ok(self.try_increment_now(key, cap))
    }

    fn decrement(&self, key: &CounterKey) {
        self.decrement_now(key);
    }

    async fn in_flight(&self, key: &CounterKey) -> Result<u32, StoreError> {
        Ok(self.in_flight_now(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use lb_core::ConcurrencyPermit;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn item(key: &str, amount: u64, limit: u64) -> Reserve {
        Reserve {
            key: key.into(),
            window: Window::MINUTE,
            amount,
            limit,
        }
    }

    fn value(store: &MemoryStore, key: &str, now: SystemTime) -> u64 {
        store.get_now(&[(key.into(), Window::MINUTE)], now)[0]
    }

    #[test]
    fn reserve_is_all_or_nothing() {
        let store = MemoryStore::new();
        let now = at(600);
        let _ = store
            .reserve_now(&[item("rpm", 1, 2), item("tpm", 90, 100)], now)
            .unwrap();
        // tpm does not fit: rpm must not move either.
        let denied = store
            .reserve_now(&[item("rpm", 1, 2), item("tpm", 20, 100)], now)
            .unwrap_err();
        assert_eq!(denied.key.as_str(), "tpm");
        assert_eq!(
            (denied.current, denied.requested, denied.limit),
            (90, 20, 100)
        );
        assert_eq!(denied.retry_after, Duration::from_secs(60));
        assert_eq!(value(&store, "rpm", now), 1);
        assert_eq!(value(&store, "tpm", now), 90);
        // Exactly at the limit fits.
        let _ = store
            .reserve_now(&[item("rpm", 1, 2), item("tpm", 10, 100)], now)
            .unwrap();
        assert_eq!(value(&store, "rpm", now), 2);
        assert_eq!(value(&store, "tpm", now), 100);
    }

    #[test]
    fn windows_reset_exactly_at_the_boundary() {
        let store = MemoryStore::new();
        let start = at(120);
        let _ = store.reserve_now(&[item("rpm", 1, 1)], start).unwrap();
        let last_nano = at(180) - Duration::from_nanos(1);
        let denied = store
            .reserve_now(&[item("rpm", 1, 1)], last_nano)
            .unwrap_err();
        assert_eq!(denied.retry_after, Duration::from_nanos(1));
        assert_eq!(denied.reset_at, at(180));
        let _ = store.reserve_now(&[item("rpm", 1, 1)], at(180)).unwrap();
        assert_eq!(value(&store, "rpm", at(180)), 1);
        assert_eq!(value(&store, "rpm", at(240)), 0);
    }

    #[test]
    fn settle_moves_the_estimate_to_the_actual() {
        let store = MemoryStore::new();
        let now = at(60);
        let r = store
            .reserve_now(&[item("rpm", 1, 10), item("tpm", 100, 1_000)], now)
            .unwrap();
        store.settle_now(&r, &[1, 250]);
        assert_eq!(value(&store, "tpm", now), 250);
        let r = store.reserve_now(&[item("tpm", 500, 1_000)], now).unwrap();
        store.settle_now(&r, &[20]);
        assert_eq!(value(&store, "tpm", now), 270);
        // A missing actual means "as reserved".
        let r = store
            .reserve_now(&[item("tpm", 5, 1_000), item("x", 7, 10)], now)
            .unwrap();
        store.settle_now(&r, &[5]);
        assert_eq!(value(&store, "x", now), 7);
    }

    #[test]
    fn overruns_are_counted_and_block_later_calls() {
        let store = MemoryStore::new();
        let now = at(60);
        let r = store.reserve_now(&[item("tpm", 100, 100)], now).unwrap();
        store.settle_now(&r, &[150]);
        assert_eq!(value(&store, "tpm", now), 150);
        // Even a zero-sized request waits while the counter is over.
        assert!(store.reserve_now(&[item("tpm", 0, 100)], now).is_err());
    }

    #[test]
    fn settle_after_the_window_ended_changes_nothing() {
        let store = MemoryStore::new();
        let r = store
            .reserve_now(&[item("tpm", 100, 1_000)], at(59))
            .unwrap();
        let _ = store
            .reserve_now(&[item("tpm", 10, 1_000)], at(60))
            .unwrap();
        store.settle_now(&r, &[900]);
        assert_eq!(value(&store, "tpm", at(60)), 10);
    }

    #[test]
    fn release_gives_everything_back() {
        let store = MemoryStore::new();
        let now = at(60);
        let r = store
            .reserve_now(&[item("rpm", 1, 1), item("tpm", 40, 100)], now)
            .unwrap();
        CounterStore::release(&store, r);
        assert_eq!(value(&store, "rpm", now), 0);
        assert_eq!(value(&store, "tpm", now), 0);
    }

    #[test]
    fn items_on_the_same_counter_are_summed() {
        let store = MemoryStore::new();
        let now = at(60);
        assert!(
            store
                .reserve_now(&[item("k", 6, 10), item("k", 6, 10)], now)
                .is_err()
        );
        assert_eq!(value(&store, "k", now), 0);
        let _ = store
            .reserve_now(&[item("k", 5, 10), item("k", 5, 10)], now)
            .unwrap();
        assert_eq!(value(&store, "k", now), 10);
    }

    #[test]
    fn denial_names_the_counter_that_resets_last() {
        let store = MemoryStore::new();
        let now = at(30);
        let day = Reserve {
            key: "spend".into(),
            window: Window::DAY,
            amount: 5,
            limit: 1,
        };
        let denied = store
            .reserve_now(&[item("rpm", 2, 1), day], now)
            .unwrap_err();
        assert_eq!(denied.key.as_str(), "spend");
        assert_eq!(denied.reset_at, at(86_400));
        assert!(denied.exceeds_limit());
    }

    #[test]
    fn months_reset_on_the_first_of_the_month() {
        let store = MemoryStore::new();
        let feb_29_noon = at(1_709_208_000);
        let mar_1 = at(1_709_251_200);
        let budget = |amount| Reserve {
            key: "budget".into(),
            window: Window::MONTH,
            amount,
            limit: 100,
        };
        let _ = store.reserve_now(&[budget(100)], feb_29_noon).unwrap();
        let denied = store.reserve_now(&[budget(1)], feb_29_noon).unwrap_err();
        assert_eq!(denied.reset_at, mar_1);
        assert_eq!(denied.retry_after, Duration::from_secs(12 * 3_600));
        let _ = store.reserve_now(&[budget(100)], mar_1).unwrap();
    }

    #[test]
    fn ended_windows_are_swept() {
        let store = MemoryStore::new();
        for minute in 0..3u64 {
            for k in 0..200 {
                let key = format!("d{k}:{minute}");
                let _ = store
                    .reserve_now(&[item(&key, 1, 10)], at(minute * 60))
                    .unwrap();
            }
        }
        assert_eq!(store.counter_len(), 600);
        store.sweep(at(180));
        assert_eq!(store.counter_len(), 0);
        // Automatic sweeps keep memory bounded under steady traffic.
        for minute in 0..50u64 {
            for k in 0..100 {
                let _ = store
                    .reserve_now(&[item(&format!("d{k}"), 1, 10)], at(1_000 + minute * 60))
                    .unwrap();
            }
        }
        assert!(store.counter_len() <= 100, "{}", store.counter_len());
        // Keys that are never used again are dropped by the periodic sweep.
        let store = MemoryStore::new();
        let per_minute = 500u64;
        for minute in 0..60u64 {
            for k in 0..per_minute {
                let key = format!("once:{minute}:{k}");
                let _ = store
                    .reserve_now(&[item(&key, 1, 10)], at(minute * 60))
                    .unwrap();
            }
        }
        let bound = per_minute as usize + SHARDS * SWEEP_EVERY as usize;
        assert!(
            store.counter_len() <= bound,
            "{} > {bound}",
            store.counter_len()
        );
    }

    #[test]
    fn concurrency_permits_cap_and_release() {
        let store = Arc::new(MemoryStore::new());
        let dyn_store: Arc<dyn ConcurrencyStore> = store.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let key = CounterKey::from("d1");
            let a = ConcurrencyPermit::try_acquire(dyn_store.clone(), key.clone(), 2)
                .await
                .unwrap();
            let b = ConcurrencyPermit::try_acquire(dyn_store.clone(), key.clone(), 2)
                .await
                .unwrap();
            assert!(a.is_some() && b.is_some());
            let c = ConcurrencyPermit::try_acquire(dyn_store.clone(), key.clone(), 2)
                .await
                .unwrap();
            assert!(c.is_none());
            assert_eq!(dyn_store.in_flight(&key).await.unwrap(), 2);
            drop(a);
            assert_eq!(dyn_store.in_flight(&key).await.unwrap(), 1);
            let d = ConcurrencyPermit::try_acquire(dyn_store.clone(), key.clone(), 2)
                .await
                .unwrap();
            assert!(d.is_some());
            drop((b, d));
            assert_eq!(dyn_store.in_flight(&key).await.unwrap(), 0);
            // A cap of zero never admits.
            let z = ConcurrencyPermit::try_acquire(dyn_store.clone(), key.clone(), 0)
                .await
                .unwrap();
            assert!(z.is_none());
        });
        assert_eq!(store.in_flight_len(), 0);
    }

    #[test]
    fn a_permit_held_by_a_cancelled_future_is_released() {
        let store: Arc<dyn ConcurrencyStore> = Arc::new(MemoryStore::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let key = CounterKey::from("d1");
            let held = {
                let store = store.clone();
                let key = key.clone();
                async move {
                    let _permit = ConcurrencyPermit::try_acquire(store, key, 1).await;
                    std::future::pending::<()>().await;
                }
            };
            let timed_out = tokio::time::timeout(Duration::from_secs(1), held).await;
            assert!(timed_out.is_err());
            assert_eq!(store.in_flight(&key).await.unwrap(), 0);
        });
    }
}
