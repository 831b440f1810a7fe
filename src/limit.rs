//! Failed-attempt limiting, shared by the HTTP layer and the password adapter.
//! (Its longer documentation is on the public item, where rustdoc shows it.)

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most clients tracked at once by default.
const MAX_TRACKED: usize = 100_000;

/// Fewest entries a table may be bounded to (a password login adds two).
const MIN_TRACKED: usize = 16;

/// Seeded per limiter, so a client cannot pick colliding keys.
type Hasher = foldhash::quality::RandomState;

/// Counts failed attempts per client. Cheap to clone; clones share the counts.
///
/// After `max_failures` failed attempts from one client within `window`, further attempts
/// from that client are refused with [`AuthError::TooManyAttempts`](crate::AuthError)
/// (429 with `Retry-After` over HTTP) without touching the store, until the window that
/// began with its first failure has passed. Clients are keyed by IP address
/// ([`std::net::IpAddr`]; an IPv4-mapped IPv6 address counts as its IPv4 address);
/// password logins count against the IP and against the IP + username pair. Other
/// clients are unaffected, and a success clears the client's count.
///
/// Defaults: 20 failures per 60 s, on, at most 100,000 clients tracked. The HTTP layer
/// needs each request's client address: serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`, or, behind a reverse proxy,
/// take it from the proxy's header with
/// [`PatLayer::with_client_address`](crate::PatLayer::with_client_address) (otherwise
/// every client has the proxy's address), or switch the limiter off with
/// [`AttemptLimiter::disabled`]. A request with no address is not limited, and the layer
/// logs one warning saying so.
///
/// # A bounded table
///
/// The table never holds more than [`with_max_clients`](AttemptLimiter::with_max_clients)
/// entries. When it is full, expired entries go first; then the entries with the fewest
/// failures, oldest first, so a client that is locked out is the last to be forgotten:
/// an attacker who rotates source addresses fills the table with entries of one failure
/// each and does not unlock anybody. Only when the whole table is locked-out clients
/// does the oldest lockout go.
///
/// ```
/// use std::time::Duration;
/// use tower_pat::AttemptLimiter;
///
/// let limiter = AttemptLimiter::new(5, Duration::from_secs(60)).with_max_clients(10_000);
/// let off = AttemptLimiter::disabled();
/// # let _ = (limiter, off);
/// ```
#[derive(Debug, Clone)]
pub struct AttemptLimiter {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    max_failures: u32,
    window_secs: i64,
    max_clients: usize,
    /// Entries in `clients` (read without the lock: 0 is the common case).
    tracked: AtomicUsize,
    hasher: Hasher,
    clients: Mutex<HashMap<Key, Count, Hasher>>,
}

/// One counted key: a client, or a client and a username. The username is kept as a
/// seeded 64-bit hash, so an entry's size does not depend on what the client sends (a
/// username may be kilobytes long); a collision would only let two usernames of one
/// client share a count, which the client's own count caps anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    User(IpAddr, u64),
}

/// Failures counted since `start` (unix seconds), the beginning of the window.
#[derive(Debug, Clone, Copy)]
struct Count {
    start: i64,
    failures: u32,
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
                max_clients: MAX_TRACKED,
                tracked: AtomicUsize::new(0),
                hasher: Hasher::default(),
                clients: Mutex::new(HashMap::with_hasher(Hasher::default())),
            })),
        }
    }

    /// No limiting at all.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Tracks at most `max` keys (clients, and client + username pairs) at once; default
    /// 100,000, at least 16. See [`AttemptLimiter`] for what is forgotten first when
    /// the table is full. Set it before the limiter is shared: a limiter already
    /// cloned keeps its own table and bound, and this returns a new one.
    pub fn with_max_clients(self, max: usize) -> Self {
        match self.inner {
            None => self,
            Some(inner) => Self {
                inner: Some(Arc::new(Inner {
                    max_failures: inner.max_failures,
                    window_secs: inner.window_secs,
                    max_clients: max.max(MIN_TRACKED),
                    tracked: AtomicUsize::new(0),
                    hasher: Hasher::default(),
                    clients: Mutex::new(HashMap::with_hasher(Hasher::default())),
                })),
            },
        }
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
        inner.each(keys, |key| {
            if let Some(count) = clients.get(&key) {
                let left = count
                    .start
                    .saturating_add(inner.window_secs)
                    .saturating_sub(now);
                if left > 0 && count.failures >= inner.max_failures && locked.is_ok() {
                    locked = Err(Duration::from_secs(left.unsigned_abs()));
                }
            }
        });
        locked
    }

    pub(crate) fn failure(&self, keys: Keys<'_>, now: i64) {
        let Some(inner) = &self.inner else { return };
        let mut clients = inner.lock();
        inner.make_room(&mut clients, now);
        inner.each(keys, |key| {
            let count = clients.entry(key).or_insert(Count {
                start: now,
                failures: 0,
            });
            if count.start.saturating_add(inner.window_secs) <= now {
                *count = Count {
                    start: now,
                    failures: 0,
                };
            }
            count.failures = count.failures.saturating_add(1);
        });
        inner.tracked.store(clients.len(), Ordering::Release);
    }

    pub(crate) fn success(&self, keys: Keys<'_>) {
        let Some(inner) = &self.inner else { return };
        if inner.tracked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut clients = inner.lock();
        inner.each(keys, |key| {
            clients.remove(&key);
        });
        inner.tracked.store(clients.len(), Ordering::Release);
    }
}

impl AttemptLimiter {
    /// Forgets the clients whose window has passed at `now` (run by the authenticator's
    /// background task): with none left, checks take no lock. Returns how many went.
    pub(crate) fn sweep(&self, now: i64) -> usize {
        let Some(inner) = &self.inner else { return 0 };
        if inner.tracked.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut clients = inner.lock();
        let before = clients.len();
        let w = inner.window_secs;
        clients.retain(|_, c| c.start.saturating_add(w) > now);
        inner.tracked.store(clients.len(), Ordering::Release);
        before - clients.len()
    }

    /// How often [`sweep`](Self::sweep) is worth running: once a window.
    pub(crate) fn sweep_period(&self) -> Option<Duration> {
        let inner = self.inner.as_ref()?;
        Some(Duration::from_secs(inner.window_secs.max(1).unsigned_abs()))
    }
}

/// Whom an attempt counts against: the client, and for password logins also the client
/// and username together (so one user's success does not clear another's failures).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys<'a> {
    pub(crate) client: IpAddr,
    pub(crate) username: Option<&'a str>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Count, Hasher>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `f` with each key of `keys`; the username is hashed only here, when a count
    /// is touched.
    fn each(&self, keys: Keys<'_>, mut f: impl FnMut(Key)) {
        // One client whether it comes as IPv4 or as IPv4-mapped IPv6 (a dual-stack socket).
        let client = keys.client.to_canonical();
        f(Key::Client(client));
        if let Some(user) = keys.username {
            f(Key::User(client, self.hasher.hash_one(user)));
        }
    }

    /// Makes room for the (up to two) keys of one attempt, never by forgetting every
    /// client at once: expired entries first, then the fewest failures, oldest first.
    fn make_room(&self, clients: &mut HashMap<Key, Count, Hasher>, now: i64) {
        if clients.len() + 2 <= self.max_clients {
            return;
        }
        let w = self.window_secs;
        clients.retain(|_, c| c.start.saturating_add(w) > now);
        if clients.len() + 2 <= self.max_clients {
            return;
        }
        // Still full of live entries: drop a sixteenth, so this scan (O(n)) is rare.
        let excess = clients.len() + 2 - self.max_clients;
        let evict = excess.max(self.max_clients / 16).min(clients.len());
        let mut order: Vec<(u32, i64, Key)> = clients
            .iter()
            .map(|(k, c)| (c.failures, c.start, *k))
            .collect();
        if evict < order.len() {
            order.select_nth_unstable_by_key(evict, |&(failures, start, _)| (failures, start));
        }
        for (_, _, key) in &order[..evict] {
            clients.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(s: &str) -> Keys<'static> {
        Keys {
            client: ip(s),
            username: None,
        }
    }

    #[test]
    fn a_success_for_one_user_keeps_another_users_lockout() {
        let l = AttemptLimiter::new(3, Duration::from_secs(10));
        let (bob, carol) = (
            Keys {
                client: ip("10.0.0.1"),
                username: Some("bob"),
            },
            Keys {
                client: ip("10.0.0.1"),
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
    fn a_sweep_forgets_only_clients_whose_window_passed() {
        let l = AttemptLimiter::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            l.failure(client("10.0.0.1"), 100);
        }
        l.failure(client("10.0.0.2"), 105);
        assert_eq!(l.sweep(109), 0, "both windows are open");
        assert!(l.check(client("10.0.0.1"), 109).is_err());
        assert_eq!(l.sweep(110), 1, "the first window closed at 110");
        assert!(l.check(client("10.0.0.1"), 110).is_ok());
        assert_eq!(l.sweep(115), 1);
        let inner = l.inner.as_ref().unwrap();
        assert_eq!(
            inner.tracked.load(Ordering::Acquire),
            0,
            "checks are lock-free again"
        );
        assert_eq!(AttemptLimiter::disabled().sweep(0), 0);
    }

    #[test]
    fn locks_out_after_max_and_recovers_after_window() {
        let (a, b) = (client("10.0.0.1"), client("10.0.0.2"));
        let l = AttemptLimiter::new(3, Duration::from_secs(10));
        assert!(l.check(a, 100).is_ok());
        for _ in 0..3 {
            l.failure(a, 100);
        }
        assert_eq!(l.check(a, 105), Err(Duration::from_secs(5)));
        assert!(l.check(b, 105).is_ok());
        assert!(l.check(a, 110).is_ok());
        l.failure(a, 110);
        assert!(l.check(a, 110).is_ok());
        l.success(a);
        assert!(l.check(a, 110).is_ok());
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_client() {
        let l = AttemptLimiter::new(2, Duration::from_secs(10));
        l.failure(client("192.0.2.7"), 100);
        l.failure(client("::ffff:192.0.2.7"), 100);
        assert!(l.check(client("192.0.2.7"), 100).is_err());
        assert!(l.check(client("::ffff:192.0.2.7"), 100).is_err());
        assert!(l.check(client("192.0.2.8"), 100).is_ok());
    }

    #[test]
    fn filling_the_table_does_not_unlock_a_locked_out_client() {
        let max = 1_000;
        let l = AttemptLimiter::new(3, Duration::from_secs(60)).with_max_clients(max);
        let victim = Keys {
            client: ip("198.51.100.1"),
            username: Some("alice"),
        };
        for _ in 0..3 {
            l.failure(victim, 100);
        }
        // An attacker rotating source addresses: ten times the bound in other clients, one
        // failed password login each, all inside the window.
        for i in 0..10 * max as u32 {
            let other = Keys {
                client: IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + 1)),
                username: Some("alice"),
            };
            l.failure(other, 100 + i64::from(i % 50));
        }
        let inner = l.inner.as_ref().unwrap();
        assert!(inner.lock().len() <= max, "the table stays bounded");
        assert!(
            inner.tracked.load(Ordering::Acquire) > max / 2,
            "it was not emptied"
        );
        assert!(l.check(victim, 150).is_err(), "the lockout survives");
        assert!(l.check(client("198.51.100.1"), 150).is_err());
        // The newest of the others are still counted.
        let newest = Keys {
            client: IpAddr::from(std::net::Ipv6Addr::from(u128::from(10 * max as u32))),
            username: Some("alice"),
        };
        l.failure(newest, 150);
        l.failure(newest, 150);
        assert!(l.check(newest, 150).is_err());
    }

    #[test]
    fn a_table_of_lockouts_forgets_the_oldest_first() {
        let l = AttemptLimiter::new(1, Duration::from_secs(60)).with_max_clients(16);
        let at = |i: u32| client(&format!("10.0.0.{i}"));
        for i in 0..40u32 {
            l.failure(at(i), 100 + i64::from(i));
        }
        assert!(l.inner.as_ref().unwrap().lock().len() <= 16);
        assert!(l.check(at(39), 140).is_err(), "the newest lockout is kept");
        assert!(l.check(at(0), 140).is_ok(), "the oldest went first");
    }

    #[test]
    fn disabled_never_limits() {
        let a = client("10.0.0.1");
        let l = AttemptLimiter::disabled();
        for _ in 0..100 {
            l.failure(a, 1);
        }
        assert!(l.check(a, 1).is_ok());
    }
}
