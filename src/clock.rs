//! Time: the [`Clock`] the authenticator reads, and a [`ManualClock`] for tests.
//!
//! All timestamps in tower-pat are whole seconds (UTC), so every store keeps them alike.
//!
//! ```
//! use std::time::Duration;
//! use tower_pat::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(time::macros::datetime!(2026-01-01 0:00 UTC));
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(clock.now(), time::macros::datetime!(2026-01-01 0:01:30 UTC));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time, in whole seconds.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, truncated to the second.
    fn now(&self) -> OffsetDateTime;

    /// Now, in unix seconds (the hot path's form).
    fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        from_unix(self.unix_now())
    }

    fn unix_now(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start` (truncated to the second).
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(AtomicI64::new(start.unix_timestamp())))
    }

    /// A clock stopped at the current system time.
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            i64::try_from(by.as_secs()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Sets the clock.
    pub fn set(&self, to: OffsetDateTime) {
        self.0.store(to.unix_timestamp(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        from_unix(self.unix_now())
    }

    fn unix_now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Unix seconds to a UTC timestamp, saturating at the representable range.
pub(crate) fn from_unix(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(if secs < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        time::macros::datetime!(9999-12-31 23:59:59 UTC)
    })
}

/// Adds a std duration, saturating at the far future.
pub(crate) fn add(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    from_unix(t.unix_timestamp().saturating_add(secs))
}
