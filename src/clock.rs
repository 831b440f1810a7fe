//! Time: the [`Clock`] the authenticator reads, and a [`ManualClock`] for tests.
//! (Its longer documentation is on the public item, where rustdoc shows it.)

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time, in whole seconds.
///
/// All timestamps in tower-pat are whole seconds (UTC), so every store keeps them alike.
///
/// ```
/// use std::time::Duration;
/// use tower_pat::{Clock, ManualClock};
///
/// let clock = ManualClock::new(time::macros::datetime!(2026-01-01 0:00 UTC));
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), time::macros::datetime!(2026-01-01 0:01:30 UTC));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, truncated to the second.
    fn now(&self) -> OffsetDateTime;

    /// Now, in unix seconds (the hot path's form).
    fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The system clock.
///
/// On Linux (x86_64, aarch64) it reads `CLOCK_REALTIME_COARSE`, the time of the kernel's
/// last tick, from the vDSO: a few nanoseconds instead of the ~20 of a precise read, on
/// every validation. It trails the precise clock by at most one tick (1–10 ms), so a
/// token is refused at most that long after the second its expiry names begins. Elsewhere
/// it reads [`std::time::SystemTime`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        from_unix(self.unix_now())
    }

    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn unix_now(&self) -> i64 {
        rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec
    }

    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
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

/// Subtracts a std duration, saturating (at the Unix epoch for what no date can hold).
pub(crate) fn sub(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    from_unix(t.unix_timestamp().saturating_sub(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let precise = |at: std::time::SystemTime| {
            let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            i64::try_from(secs).unwrap()
        };
        let before = precise(std::time::SystemTime::now());
        let now = SystemClock.unix_now();
        let after = precise(std::time::SystemTime::now());
        // The coarse clock trails by at most a tick: never ahead, never a second behind.
        assert!(
            (before - 1..=after).contains(&now),
            "{before} {now} {after}"
        );
        assert_eq!(SystemClock.now().unix_timestamp(), SystemClock.unix_now());
    }
}
