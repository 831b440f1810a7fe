//! Expiry models (hard limit, sliding auto-refresh, never) and duration strings like `20d`.
//! (Its longer documentation is on the public item, where rustdoc shows it.)

use std::time::Duration;

use time::OffsetDateTime;

use crate::clock;

/// How a token expires.
///
/// ```
/// use std::time::Duration;
/// use tower_pat::parse_duration;
///
/// assert_eq!(parse_duration("20d").unwrap(), Duration::from_secs(20 * 86_400));
/// assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
/// assert!(parse_duration("20 days").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Expiry {
    /// The token never expires.
    Never,
    /// The token expires at a fixed time (`--expire 20d`, `accessTokenValiditySeconds`).
    HardLimit {
        /// When it stops working.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The token stays valid while it is used at least once per `window`; each use moves
    /// its expiry to `now + window` (rounded up to the next whole second, see
    /// [`Expiry::expires_at_from`]), but never past `not_after`.
    AutoRefresh {
        /// The sliding window, in whole seconds.
        #[serde(with = "secs")]
        window: Duration,
        /// The absolute end of the token's life, which sliding never passes.
        #[serde(default, with = "time::serde::rfc3339::option")]
        not_after: Option<OffsetDateTime>,
    },
}

mod secs {
    use std::time::Duration;
    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_secs)
    }
}

impl Expiry {
    /// A hard limit `d` from `now`.
    pub fn hard(now: OffsetDateTime, d: Duration) -> Self {
        Expiry::HardLimit {
            expires_at: clock::add(now, d),
        }
    }

    /// Auto-refresh with `window`, optionally capped `max_lifetime` after `now`.
    pub fn auto_refresh(
        now: OffsetDateTime,
        window: Duration,
        max_lifetime: Option<Duration>,
    ) -> Self {
        Expiry::AutoRefresh {
            window: Duration::from_secs(window.as_secs()),
            not_after: max_lifetime.map(|m| clock::add(now, m)),
        }
    }

    /// The expiry a token gets when it is created or used at `now` (whole seconds).
    ///
    /// A sliding token's new end is `now + window + 1 s`, capped at `not_after`: `now` is
    /// the second in which the use happened, truncated, so a use late in that second would
    /// otherwise get up to a second less than its window. A token used at least once per
    /// window is never refused; one idle for more than `window + 1 s` always is.
    pub fn expires_at_from(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match *self {
            Expiry::Never => None,
            Expiry::HardLimit { expires_at } => Some(expires_at),
            Expiry::AutoRefresh { window, not_after } => Some(clock::from_unix(sliding_end(
                now.unix_timestamp(),
                i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
                not_after.map_or(i64::MAX, OffsetDateTime::unix_timestamp),
            ))),
        }
    }

    /// True for [`Expiry::AutoRefresh`].
    pub fn is_sliding(&self) -> bool {
        matches!(self, Expiry::AutoRefresh { .. })
    }
}

/// The end of a sliding window that starts in the (truncated) second `now`, in unix
/// seconds: one second past `now + window`, so that the window is never shorter than
/// `window` for a use made late in that second, and never past `cap`.
pub(crate) fn sliding_end(now: i64, window: i64, cap: i64) -> i64 {
    now.saturating_add(window).saturating_add(1).min(cap)
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: use a whole number without leading zeros and a unit, e.g. 20d, 12h, 30m or 90s")]
pub struct DurationError {
    /// The string given (cut to 64 characters).
    pub input: String,
}

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d` or `w` (e.g. `20d`, `12h`, `30m`,
/// `90s`); a bare number is seconds. `n` is 1 to 12 digits without a leading zero
/// (`^[1-9][0-9]{0,11}[smhdw]?$`, exactly). There is no upper bound here: what a long
/// duration means is for the caller to cap (an [`ExpiryPolicy`](crate::manage::ExpiryPolicy)
/// has a maximum lifetime; times past the year 9999 saturate).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: s.chars().take(64).collect(),
    };
    let (digits, unit) = match s.as_bytes().last() {
        Some(b) if b.is_ascii_digit() => (s, 1u64),
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 3_600),
        Some(b'd') => (&s[..s.len() - 1], 86_400),
        Some(b'w') => (&s[..s.len() - 1], 7 * 86_400),
        _ => return Err(err()),
    };
    if digits.is_empty()
        || digits.len() > 12
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(err());
    }
    // At most 12 digits times a week's seconds: no overflow.
    let n: u64 = digits.parse().map_err(|_| err())?;
    Ok(Duration::from_secs(n.saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20d").unwrap().as_secs(), 20 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 43_200);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1_800);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        for bad in [
            "",
            "d",
            "0d",
            "-1d",
            "1.5h",
            "20 d",
            "20D",
            "1y",
            "99999999999999d",
            "+5s",
            "５s",
            "é",
            "020d",
            "0",
            "1234567890123s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("0s")
            .unwrap_err()
            .to_string()
            .contains("20d"));
        // Long ones parse; callers cap them.
        assert_eq!(
            parse_duration("999999999999w").unwrap().as_secs(),
            999_999_999_999 * 604_800
        );
    }

    #[test]
    fn sliding_is_capped() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let e = Expiry::auto_refresh(
            now,
            Duration::from_secs(3600),
            Some(Duration::from_secs(5400)),
        );
        // One second past the window: `now` is truncated to its second.
        assert_eq!(
            e.expires_at_from(now),
            Some(datetime!(2026-01-01 1:00:01 UTC))
        );
        assert_eq!(
            e.expires_at_from(datetime!(2026-01-01 1:00 UTC)),
            Some(datetime!(2026-01-01 1:30 UTC)),
            "never past the cap"
        );
        assert_eq!(
            e.expires_at_from(datetime!(2026-01-01 1:29:59 UTC)),
            Some(datetime!(2026-01-01 1:30 UTC)),
            "never past the cap, even by the extra second"
        );
        assert_eq!(Expiry::Never.expires_at_from(now), None);
        let h = Expiry::hard(now, Duration::from_secs(60));
        assert_eq!(
            h.expires_at_from(datetime!(2027-01-01 0:00 UTC)),
            Some(datetime!(2026-01-01 0:01 UTC))
        );
    }

    #[test]
    fn serde_round_trip() {
        let now = datetime!(2026-01-01 0:00 UTC);
        for e in [
            Expiry::Never,
            Expiry::hard(now, Duration::from_secs(5)),
            Expiry::auto_refresh(now, Duration::from_secs(60), Some(Duration::from_secs(600))),
            Expiry::auto_refresh(now, Duration::from_secs(60), None),
        ] {
            let j = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Expiry>(&j).unwrap(), e, "{j}");
        }
    }
}
