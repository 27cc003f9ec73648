//! Shared-state traits: rate-limit, budget and concurrency counters.
//!
//! The router keeps every limit that must hold across concurrent calls (and,
//! with a shared backend, across router instances) in two small stores:
//!
//! - [`CounterStore`]: windowed counters with all-or-nothing reservations.
//!   A call reserves its estimate on every counter it touches (requests per
//!   minute, tokens per minute, spend per budget period) in one atomic step,
//!   and settles the actual amounts after the call.
//! - [`ConcurrencyStore`]: in-flight counts with a cap, held by a
//!   [`ConcurrencyPermit`] that gives its slot back when dropped.
//!
//! Each operation is one atomic step over all the counters it names, so a
//! remote backend (Redis) implements it in one round trip (a Lua script).
//! No method reads a clock: `now` is always an argument, and windows are pure
//! functions of it ([`Window::index`], [`Window::reset_at`]).
//!
//! # Window semantics
//!
//! Windows are *fixed* and aligned to the Unix epoch in UTC:
//! [`Window::MINUTE`] is the wall-clock minute (`hh:mm:00` to `hh:mm:59`,
//! as LiteLLM's `%H-%M` keys), `Seconds(n)` is `[k·n, (k+1)·n)` seconds since
//! the epoch (so `1d` is the UTC day), and `Months(n)` is a run of `n`
//! calendar months counted from January 1970 (so `1mo` is the UTC calendar
//! month). A counter's value belongs to one window index; when `now` enters
//! the next window the value starts again from zero.
//!
//! # The guarantee
//!
//! A store admits a reservation only if, for every item,
//! `value + amount <= limit` in the item's current window, and then adds all
//! amounts at once; otherwise it changes nothing. Settling adds
//! `actual - reserved` to the window the reservation was admitted in.
//! Consequently, for any counter and any window:
//!
//! - with amounts that are never settled above the reservation (requests:
//!   reserve 1, settle 1 or release), admitted amounts never exceed `limit`:
//!   *admitted requests never exceed rpm*;
//! - in general, the settled total never exceeds
//!   `limit + Σ max(0, actual − reserved)` over the calls admitted in that
//!   window: *admitted tokens never exceed tpm plus the sum of
//!   (actual − estimate) of the calls that overran their estimate*, and a
//!   budget's spend never exceeds its limit by more than the overruns of the
//!   calls in flight when it was crossed.
//!
//! This holds under any interleaving of concurrent calls, because the check
//! and the increment are one atomic step.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The name of one counter, e.g. `deployment:azure-eu:tpm`.
///
/// Keys are plain strings so every backend can store them as they are (a
/// Redis backend prefixes them and appends the window). Clones share the
/// string, and comparing two clones of one key is a pointer comparison, so
/// build keys once per deployment and clone them per call.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct CounterKey(Arc<str>);

impl PartialEq for CounterKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for CounterKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl CounterKey {
    /// Wraps a key.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CounterKey {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for CounterKey {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// A fixed window, aligned to the Unix epoch in UTC.
///
/// See the [module docs](self) for the exact semantics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Window {
    /// Windows of `n` seconds: `[k·n, (k+1)·n)` seconds since the epoch.
    Seconds(NonZeroU64),
    /// Runs of `n` calendar months (UTC), counted from January 1970.
    Months(NonZeroU32),
}

const SECS_PER_MINUTE: u64 = 60;
const SECS_PER_HOUR: u64 = 3_600;
const SECS_PER_DAY: u64 = 86_400;
const SECS_PER_WEEK: u64 = 7 * SECS_PER_DAY;

impl Window {
    /// The UTC wall-clock minute, the window of `rpm` and `tpm` limits.
    pub const MINUTE: Window = Window::Seconds(NonZeroU64::MIN.saturating_add(SECS_PER_MINUTE - 1));

    /// The UTC day.
    pub const DAY: Window = Window::Seconds(NonZeroU64::MIN.saturating_add(SECS_PER_DAY - 1));

    /// The calendar month (UTC).
    pub const MONTH: Window = Window::Months(NonZeroU32::MIN);

    /// Windows of `secs` seconds; `None` for zero.
    pub fn seconds(secs: u64) -> Option<Window> {
        NonZeroU64::new(secs).map(Window::Seconds)
    }

    /// Runs of `months` calendar months; `None` for zero.
    pub fn months(months: u32) -> Option<Window> {
        NonZeroU32::new(months).map(Window::Months)
    }

    /// Parses a LiteLLM duration: a positive integer followed by `s`, `m`,
    /// `h`, `d`, `w` (weeks) or `mo` (calendar months), e.g. `30s`, `5m`,
    /// `1h`, `1d`, `1mo`. Surrounding whitespace is ignored.
    pub fn parse(input: &str) -> Result<Window, ParseWindowError> {
        let err = |reason: &'static str| ParseWindowError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = s.split_at(digits);
        if number.is_empty() {
            return Err(err("expected a number followed by s, m, h, d, w or mo"));
        }
        let n: u64 = number.parse().map_err(|_| err("number too large"))?;
        if n == 0 {
            return Err(err("duration must be positive"));
        }
        let per_unit = match unit {
            "s" => 1,
            "m" => SECS_PER_MINUTE,
            "h" => SECS_PER_HOUR,
            "d" => SECS_PER_DAY,
            "w" => SECS_PER_WEEK,
            "mo" => {
                let months = u32::try_from(n).map_err(|_| err("number too large"))?;
                return Window::months(months).ok_or_else(|| err("duration must be positive"));
            }
            "" => return Err(err("missing unit (s, m, h, d, w or mo)")),
            _ => return Err(err("unknown unit (expected s, m, h, d, w or mo)")),
        };
        let secs = n
            .checked_mul(per_unit)
            .ok_or_else(|| err("number too large"))?;
        Window::seconds(secs).ok_or_else(|| err("duration must be positive"))
    }

    /// The index of the window containing `now` (times before the epoch
    /// count as the epoch).
    pub fn index(&self, now: SystemTime) -> u64 {
        let secs = unix_secs(now);
        match *self {
            Window::Seconds(n) => secs / n.get(),
            Window::Months(n) => months_since_epoch(secs) / u64::from(n.get()),
        }
    }

    /// When window `index` starts.
    pub fn start_of(&self, index: u64) -> SystemTime {
        match *self {
            Window::Seconds(n) => UNIX_EPOCH + Duration::from_secs(index.saturating_mul(n.get())),
            Window::Months(n) => {
                let month = index.saturating_mul(u64::from(n.get()));
                UNIX_EPOCH + Duration::from_secs(month_start_secs(month))
            }
        }
    }

    /// When window `index` ends, which is when window `index + 1` starts.
    pub fn end_of(&self, index: u64) -> SystemTime {
        self.start_of(index.saturating_add(1))
    }

    /// When the window containing `now` resets.
    pub fn reset_at(&self, now: SystemTime) -> SystemTime {
        self.end_of(self.index(now))
    }

    /// How long from `now` until the window containing `now` resets.
    pub fn until_reset(&self, now: SystemTime) -> Duration {
        self.reset_at(now)
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

impl fmt::Display for Window {
    /// The canonical LiteLLM spelling: `60s`, `86400s`, `1mo`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Seconds(n) => write!(f, "{n}s"),
            Window::Months(n) => write!(f, "{n}mo"),
        }
    }
}

impl FromStr for Window {
    type Err = ParseWindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Window::parse(s)
    }
}

/// A duration string that is not a valid window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseWindowError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whole calendar months from January 1970 to the month containing `secs`.
fn months_since_epoch(secs: u64) -> u64 {
    let days = i64::try_from(secs / SECS_PER_DAY).unwrap_or(i64::MAX / 2);
    let (year, month, _) = civil_from_days(days);
    let months = (year - 1970) * 12 + i64::from(month) - 1;
    u64::try_from(months).unwrap_or(0)
}

/// Seconds from the epoch to the first instant of month `month` (0 is
/// January 1970).
fn month_start_secs(month: u64) -> u64 {
    let year = 1970 + i64::try_from(month / 12).unwrap_or(i64::MAX / 1024);
    let month_of_year = u32::try_from(month % 12).unwrap_or(0) + 1;
    let days = days_from_civil(year, month_of_year, 1);
    u64::try_from(days)
        .unwrap_or(0)
        .saturating_mul(SECS_PER_DAY)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01, proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// Days since 1970-01-01 of a (year, month 1-12, day) date (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One counter a reservation must fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserve {
    /// The counter.
    pub key: CounterKey,
    /// Its window.
    pub window: Window,
    /// How much to reserve (requests, tokens, or micro-dollars).
    pub amount: u64,
    /// The most the counter may hold in one window.
    pub limit: u64,
}

/// One counter a reservation was admitted on: what to settle, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reserved {
    /// The counter.
    pub key: CounterKey,
    /// Its window.
    pub window: Window,
    /// The window index the amount was added to.
    pub index: u64,
    /// The amount added.
    pub amount: u64,
}

/// An admitted reservation: settle it with the actual amounts, or release it.
///
/// It carries everything a backend needs to settle (keys, window indices,
/// reserved amounts), so backends keep no per-reservation state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "settle or release a reservation, or its amounts stay counted until the window ends"]
pub struct Reservation {
    items: Vec<Reserved>,
}

impl Reservation {
    /// A reservation of these items (for backends).
    pub fn new(items: Vec<Reserved>) -> Self {
        Self { items }
    }

    /// The reserved items, in the order they were requested.
    pub fn items(&self) -> &[Reserved] {
        &self.items
    }

    /// Whether nothing was reserved.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Why a reservation was not admitted: the counter it did not fit in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "limit reached for {key} ({window} window): {current} used + {requested} requested > {limit}, resets in {}s",
    retry_after.as_secs()
)]
pub struct Denied {
    /// The counter.
    pub key: CounterKey,
    /// Its window.
    pub window: Window,
    /// Its value in the current window.
    pub current: u64,
    /// The amount that did not fit.
    pub requested: u64,
    /// Its limit.
    pub limit: u64,
    /// When its window resets.
    pub reset_at: SystemTime,
    /// How long from the request's `now` until then.
    pub retry_after: Duration,
}

impl Denied {
    /// Whether the request can never fit this counter, whatever the wait:
    /// it asks for more than the whole limit.
    pub fn exceeds_limit(&self) -> bool {
        self.requested > self.limit
    }
}

/// A backend that could not be reached or answered nonsense.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state store unavailable: {message}")]
pub struct StoreError {
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Why [`CounterStore::reserve`] admitted nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// A counter is full. When several are, the one that resets last.
    #[error(transparent)]
    Denied(Box<Denied>),
    /// The backend failed; nothing is known about the counters.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Denied> for ReserveError {
    fn from(d: Denied) -> Self {
        ReserveError::Denied(Box::new(d))
    }
}

/// Windowed counters with all-or-nothing reservations.
///
/// Implementations must make [`reserve`](Self::reserve) one atomic step over
/// all its items, and must not read a clock. See the [module docs](self)
/// for the guarantee this gives.
#[async_trait::async_trait]
pub trait CounterStore: Send + Sync + fmt::Debug {
    /// Admits all items or none: if every item fits
    /// (`value + amount <= limit` in its window at `now`), adds every amount
    /// and returns the reservation; otherwise changes nothing and says which
    /// counter is full (the one whose window resets last, if several).
    /// Items naming the same counter are summed.
    async fn reserve(
        &self,
        items: &[Reserve],
        now: SystemTime,
    ) -> Result<Reservation, ReserveError>;

    /// Adds `actual[i] - reserved[i]` to each item's counter, in the window
    /// the reservation was admitted in (nothing, if that window has ended).
    /// A missing `actual[i]` means "as reserved". Never denies; a counter may
    /// end above its limit by the overrun.
    async fn settle(&self, reservation: Reservation, actual: &[u64]) -> Result<(), StoreError>;

    /// Gives a reservation back, for a call that never reached the upstream
    /// (the same as settling with zeros). Must not block: a remote backend
    /// queues the update. Called from `Drop` of admission guards.
    fn release(&self, reservation: Reservation);

    /// The values of these counters in their windows at `now` (zero if
    /// never touched), in order, in one step.
    async fn get_many(
        &self,
        counters: &[(CounterKey, Window)],
        now: SystemTime,
    ) -> Result<Vec<u64>, StoreError>;

    /// The value of one counter in its window at `now`.
    async fn get(
        &self,
        key: &CounterKey,
        window: Window,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let values = self.get_many(&[(key.clone(), window)], now).await?;
        Ok(values.first().copied().unwrap_or(0))
    }
}

/// In-flight counts with a cap (`max_parallel_requests`).
///
/// Use [`ConcurrencyPermit::try_acquire`], which returns a guard that gives
/// the slot back when dropped, rather than calling
/// [`try_increment`](Self::try_increment) by hand.
#[async_trait::async_trait]
pub trait ConcurrencyStore: Send + Sync + fmt::Debug {
    /// Adds one to `key` if it is below `cap`; returns whether it did.
    /// Never waits for a slot.
    async fn try_increment(&self, key: &CounterKey, cap: u32) -> Result<bool, StoreError>;

    /// Takes one from `key` (never below zero). Must not block: a remote
    /// backend queues the update. Called from [`ConcurrencyPermit`]'s `Drop`.
    fn decrement(&self, key: &CounterKey);

    /// How many slots of `key` are held.
    async fn in_flight(&self, key: &CounterKey) -> Result<u32, StoreError>;
}

/// One held slot of a [`ConcurrencyStore`] key; gives it back when dropped,
/// so no error, timeout or cancelled future can leak it.
#[must_use = "the slot is given back as soon as the permit is dropped"]
pub struct ConcurrencyPermit {
    store: Arc<dyn ConcurrencyStore>,
    key: CounterKey,
}

impl ConcurrencyPermit {
    /// Takes a slot of `key` if fewer than `cap` are held; `Ok(None)` when
    /// full. Never waits.
    pub async fn try_acquire(
        store: Arc<dyn ConcurrencyStore>,
        key: CounterKey,
        cap: u32,
    ) -> Result<Option<ConcurrencyPermit>, StoreError> {
        if store.try_increment(&key, cap).await? {
            Ok(Some(ConcurrencyPermit { store, key }))
        } else {
            Ok(None)
        }
    }

    /// The key this permit holds a slot of.
    pub fn key(&self) -> &CounterKey {
        &self.key
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.store.decrement(&self.key);
    }
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2024-02-29T12:00:00Z (a leap day).
    const LEAP_DAY_NOON: u64 = 1_709_208_000;

    #[test]
    fn parse_durations() {
        let cases: &[(&str, Window)] = &[
            ("30s", Window::Seconds(NonZeroU64::new(30).unwrap())),
            ("1m", Window::MINUTE),
            ("5m", Window::Seconds(NonZeroU64::new(300).unwrap())),
            ("1h", Window::Seconds(NonZeroU64::new(3_600).unwrap())),
            ("1d", Window::DAY),
            (" 7d ", Window::Seconds(NonZeroU64::new(604_800).unwrap())),
            ("2w", Window::Seconds(NonZeroU64::new(1_209_600).unwrap())),
            ("1mo", Window::MONTH),
            ("3mo", Window::Months(NonZeroU32::new(3).unwrap())),
        ];
        for (input, want) in cases {
            assert_eq!(Window::parse(input).as_ref(), Ok(want), "{input}");
        }
        for bad in [
            "",
            "d",
            "0s",
            "0mo",
            "10",
            "1x",
            "1.5h",
            "-1d",
            "1 d",
            "99999999999999999999s",
            "5000000000mo",
        ] {
            let err = Window::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!("1d".parse::<Window>(), Ok(Window::DAY));
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(Window::MINUTE.to_string(), "60s");
        assert_eq!(Window::DAY.to_string(), "86400s");
        assert_eq!(Window::parse("2mo").unwrap().to_string(), "2mo");
    }

    #[test]
    fn minute_windows_reset_exactly_at_the_boundary() {
        let w = Window::MINUTE;
        assert_eq!(w.index(at(119)), 1);
        assert_eq!(w.index(at(120)), 2);
        assert_eq!(w.reset_at(at(119)), at(120));
        assert_eq!(w.reset_at(at(120)), at(180));
        let just_before = at(120) - Duration::from_nanos(1);
        assert_eq!(w.index(just_before), 1);
        assert_eq!(w.until_reset(just_before), Duration::from_nanos(1));
        assert_eq!(w.until_reset(at(120)), Duration::from_secs(60));
        // Before the epoch counts as the epoch.
        assert_eq!(w.index(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn day_windows_are_utc_days() {
        let w = Window::DAY;
        assert_eq!(
            w.start_of(w.index(at(LEAP_DAY_NOON))),
            at(LEAP_DAY_NOON - 12 * 3_600)
        );
        assert_eq!(
            w.reset_at(at(LEAP_DAY_NOON)),
            at(LEAP_DAY_NOON + 12 * 3_600)
        );
    }

    #[test]
    fn month_windows_follow_the_calendar() {
        let w = Window::MONTH;
        // 2024-02-29 12:00 → window Feb 2024, resets 2024-03-01T00:00Z.
        let mar_1 = 1_709_251_200;
        let feb_1 = 1_706_745_600;
        assert_eq!(w.reset_at(at(LEAP_DAY_NOON)), at(mar_1));
        assert_eq!(w.start_of(w.index(at(LEAP_DAY_NOON))), at(feb_1));
        assert_eq!(w.index(at(mar_1)), w.index(at(LEAP_DAY_NOON)) + 1);
        assert_eq!(w.index(at(mar_1 - 1)), w.index(at(LEAP_DAY_NOON)));
        // Month index counts from January 1970.
        assert_eq!(w.index(at(0)), 0);
        assert_eq!(w.index(at(LEAP_DAY_NOON)), (2024 - 1970) * 12 + 1);
        // December rolls over into the next year: 2023-12-31T23:59:59Z.
        let dec_31 = 1_704_067_199;
        assert_eq!(w.reset_at(at(dec_31)), at(dec_31 + 1));
        // Quarter windows: Jan-Mar 2024 resets on Apr 1st.
        let q = Window::parse("3mo").unwrap();
        let apr_1 = 1_711_929_600;
        assert_eq!(q.reset_at(at(LEAP_DAY_NOON)), at(apr_1));
        assert_eq!(q.start_of(q.index(at(LEAP_DAY_NOON))), at(1_704_067_200));
    }

    #[test]
    fn civil_round_trips() {
        for days in [-1_000_000i64, -1, 0, 1, 59, 365, 10_957, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn denied_reports_whether_it_can_ever_fit() {
        let d = Denied {
            key: "k".into(),
            window: Window::MINUTE,
            current: 0,
            requested: 11,
            limit: 10,
            reset_at: at(60),
            retry_after: Duration::from_secs(60),
        };
        assert!(d.exceeds_limit());
        assert_eq!(
            d.to_string(),
            "limit reached for k (60s window): 0 used + 11 requested > 10, resets in 60s"
        );
    }
}

/// A cooldown one router instance announces to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCooldown {
    /// The deployment's id.
    pub deployment: String,
    /// How long it still cools down, as the announcing instance saw it
    /// (a duration, not a deadline: instances' clocks need not agree).
    pub remaining: Duration,
    /// Why, in words.
    pub reason: String,
}

/// Cooldowns shared between router instances: what one instance learns
/// (a 429, a dead key) every instance honours.
#[async_trait::async_trait]
pub trait CooldownBus: Send + Sync + fmt::Debug {
    /// Announces a cooldown to the other instances (never waits: called on
    /// the request path).
    fn publish(&self, cooldown: SharedCooldown);

    /// The cooldowns other instances announce, current ones first; the
    /// channel closes when the bus does. A `remaining` of zero announces
    /// that the deployment recovered (another instance's trial call passed).
    async fn subscribe(&self) -> Result<tokio::sync::mpsc::Receiver<SharedCooldown>, StoreError>;

    /// Claims the one trial call of a half-open deployment among all
    /// instances, for at most `lease`: true if this instance may send it.
    /// The default (one instance) always may.
    async fn claim_trial(&self, _deployment: &str, _lease: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Ends this instance's trial of `deployment` (never waits): frees the
    /// claim, and when it `passed`, tells the other instances to take the
    /// deployment back at once.
    fn trial_over(&self, _deployment: &str, _passed: bool) {}
}

/// One instance's load on one deployment, shared approximately between
/// instances for the routing strategies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentLoad {
    /// The deployment's id.
    pub deployment: String,
    /// Calls in flight.
    pub in_flight: u64,
    /// Mean seconds per output token of recent completions (latency window).
    pub latency: Option<f64>,
    /// Mean time to first token of recent streams, in seconds.
    pub ttft: Option<f64>,
    /// Peak-EWMA latency in seconds (for `latency-p2c`).
    pub peak_ewma: Option<f64>,
}

/// Strategy statistics exchanged between router instances: each sends its
/// own loads once per interval and gets the others' back, in one round
/// trip off the request path.
#[async_trait::async_trait]
pub trait LoadExchange: Send + Sync + fmt::Debug {
    /// Publishes `mine` (kept for `ttl`) and returns the other live
    /// instances' loads, per deployment: in-flight counts summed, latencies
    /// averaged over the instances that have them.
    async fn exchange(
        &self,
        mine: Vec<DeploymentLoad>,
        ttl: Duration,
    ) -> Result<Vec<DeploymentLoad>, StoreError>;
}
