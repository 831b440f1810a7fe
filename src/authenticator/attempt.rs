//! The failed-attempt limiter's part in a check: an [`Attempt`] starts before the
//! decision (the clock, a lockout) and counts its result after it, for the limiter and
//! in the metrics.

use std::net::IpAddr;

use super::Inner;
use crate::error::AuthError;
use crate::limit::Keys;
use crate::metrics::CheckTimer;
use crate::principal::Principal;

/// One check's time, and whom its result counts against (no one without a client).
#[derive(Clone, Copy)]
pub(super) struct Attempt<'a> {
    keys: Option<Keys<'a>>,
    pub(super) now: i64,
    timer: CheckTimer,
}

impl<'a> Attempt<'a> {
    /// The attempt that [`Inner::attempt`] started for `client` and `username` at `now`,
    /// resumed after an await (the limiter has already let it in).
    pub(super) fn resumed(client: Option<IpAddr>, username: Option<&'a str>, now: i64) -> Self {
        Self {
            keys: client.map(|client| Keys { client, username }),
            now,
            timer: CheckTimer::cold(),
        }
    }
}

impl Inner {
    /// Starts an attempt: reads the clock and, for a known `client`, refuses it while the
    /// limiter locks it out. The clock comes first in every check: a precise read
    /// (`SystemTime`, where the coarse clock is not used) waits for earlier loads, so it
    /// must not follow the request for the hot-table line.
    pub(super) fn attempt<'a>(
        &self,
        client: Option<IpAddr>,
        username: Option<&'a str>,
    ) -> Result<Attempt<'a>, AuthError> {
        let timer = CheckTimer::cached();
        let now = self.clock.unix_now();
        let keys = client.map(|client| Keys { client, username });
        if let Some(keys) = keys {
            self.limiter.check(keys, now).map_err(|retry_after| {
                tracing::debug!(retry_after = ?retry_after, "client locked out after failed attempts");
                self.metrics.rate_limited();
                AuthError::TooManyAttempts { retry_after }
            })?;
        }
        Ok(Attempt { keys, now, timer })
    }

    /// Counts an attempt's result in the metrics, and for its client. Store failures
    /// count for nobody: the client did nothing wrong.
    pub(super) fn count_attempt(
        &self,
        attempt: Attempt<'_>,
        result: &Result<Principal, AuthError>,
    ) {
        self.metrics.checked(result, attempt.timer);
        let Some(keys) = attempt.keys else { return };
        match result {
            Ok(_) => self.limiter.success(keys),
            Err(AuthError::Invalid(_) | AuthError::Malformed(_)) => {
                self.limiter.failure(keys, attempt.now)
            }
            Err(_) => {}
        }
    }
}
