//! Failed-attempt limiting, shared by the HTTP layer and the password adapter.
//!
//! After `max_failures` failed attempts from one client within `window`, further attempts
//! from that client are refused with [`AuthError::TooManyAttempts`](crate::AuthError)
//! (429 with `Retry-After` over HTTP) without touching the store, until the window that
//! began with its first failure has passed. Clients are keyed by IP address; password
//! logins count against the IP and against the IP + username pair. Other clients are
//! unaffected, and a success clears the client's count.
//!
//! Defaults: 20 failures per 60 s, on. Behind a reverse proxy every client may share one
//! address: key by the forwarded address there, or switch the limiter off with
//! [`AttemptLimiter::disabled`].
//!
//! ```
//! use std::time::Duration;
//! use tower_pat::limit::AttemptLimiter;
//!
//! let limiter = AttemptLimiter::new(5, Duration::from_secs(60));
//! let off = AttemptLimiter::disabled();
//! # let _ = (limiter, off);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most clients tracked at once; past this, expired entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// Counts failed attempts per client. Cheap to clone; clones share the counts.
#[derive(Debug, Clone)]
pub struct AttemptLimiter {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    max_failures: u32,
    window_secs: i64,
    tracked: AtomicUsize,
    clients: Mutex<HashMap<String, (i64, u32)>>,
}

impl Default for AttemptLimiter {
    /// 20 failures per 60 s.
    fn default() -> Self {
        Self::new(20, Duration::from_secs(60))
    }
}

impl AttemptLimiter {
    /// At most `max_failures` failures per client within `window` (at least 1 s).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                max_failures: max_failures.max(1),
                window_secs: i64::try_from(window.as_secs().max(1)).unwrap_or(i64::MAX),
                tracked: AtomicUsize::new(0),
                clients: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// No limiting at all.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether limiting is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// `Err(retry_after)` when any of `keys` is locked out at `now` (unix seconds).
    pub(crate) fn check(&self, keys: Keys<'_>, now: i64) -> Result<(), Duration> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        // The common case, no recent failures anywhere: no lock, no key built.
        if inner.tracked.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let clients = inner.lock();
        let mut locked = Ok(());
        keys.each(|key| {
            if let Some(&(start, count)) = clients.get(key) {
                let left = start.saturating_add(inner.window_secs).saturating_sub(now);
                if left > 0 && count >= inner.max_failures && locked.is_ok() {
                    locked = Err(Duration::from_secs(left.unsigned_abs()));
                }
            }
        });
        locked
    }

    pub(crate) fn failure(&self, keys: Keys<'_>, now: i64) {
        let Some(inner) = &self.inner else { return };
        let mut clients = inner.lock();
        if clients.len() >= MAX_TRACKED {
            let w = inner.window_secs;
            clients.retain(|_, (start, _)| start.saturating_add(w) > now);
            if clients.len() >= MAX_TRACKED {
                // Still full of live entries: forget them rather than grow without bound.
                clients.clear();
            }
        }
        keys.each(|key| {
            let entry = clients.entry(key.to_owned()).or_insert((now, 0));
            if entry.0.saturating_add(inner.window_secs) <= now {
                *entry = (now, 0);
            }
            entry.1 = entry.1.saturating_add(1);
        });
        inner.tracked.store(clients.len(), Ordering::Release);
    }

    pub(crate) fn success(&self, keys: Keys<'_>) {
        let Some(inner) = &self.inner else { return };
        if inner.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut clients = inner.lock();
        keys.each(|key| {
            clients.remove(key);
        });
        inner.tracked.store(clients.len(), Ordering::Release);
    }
}

/// Whom an attempt counts against: the client, and for password logins also the client
/// and username together (so one user's success does not clear another's failures).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys<'a> {
    pub(crate) client: &'a str,
    pub(crate) username: Option<&'a str>,
}

impl Keys<'_> {
    /// Calls `f` with each key; the pair key is built only here, when a count is touched.
    fn each(&self, mut f: impl FnMut(&str)) {
        f(self.client);
        if let Some(user) = self.username {
            f(&format!("{}\u{0}{user}", self.client));
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, u32)>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Keys<'static> = Keys {
        client: "a",
        username: None,
    };
    const B: Keys<'static> = Keys {
        client: "b",
        username: None,
    };

    #[test]
    fn a_success_for_one_user_keeps_another_users_lockout() {
        let l = AttemptLimiter::new(3, Duration::from_secs(10));
        let (bob, carol) = (
            Keys {
                client: "a",
                username: Some("bob"),
            },
            Keys {
                client: "a",
                username: Some("carol"),
            },
        );
        for _ in 0..3 {
            l.failure(bob, 100);
        }
        assert!(
            l.check(carol, 101).is_err(),
            "the client itself is locked out"
        );
        l.success(carol);
        assert!(l.check(carol, 101).is_ok());
        assert_eq!(l.check(bob, 101), Err(Duration::from_secs(9)));
    }

    #[test]
    fn locks_out_after_max_and_recovers_after_window() {
        let l = AttemptLimiter::new(3, Duration::from_secs(10));
        assert!(l.check(A, 100).is_ok());
        for _ in 0..3 {
            l.failure(A, 100);
        }
        assert_eq!(l.check(A, 105), Err(Duration::from_secs(5)));
        assert!(l.check(B, 105).is_ok());
        assert!(l.check(A, 110).is_ok());
        l.failure(A, 110);
        assert!(l.check(A, 110).is_ok());
        l.success(A);
        assert!(l.check(A, 110).is_ok());
    }

    #[test]
    fn disabled_never_limits() {
        let l = AttemptLimiter::disabled();
        for _ in 0..100 {
            l.failure(A, 1);
        }
        assert!(l.check(A, 1).is_ok());
    }
}
