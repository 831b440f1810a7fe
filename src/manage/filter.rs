//! AWX-style field lookups (`name__icontains=ci`, `expires__lt=…`) and `order_by`, turned
//! into a [`ListQuery`]. Shared by the admin router's query string and the CLI's
//! `--filter FIELD__OP=VALUE`.
//!
//! ```
//! use tower_pat::manage::{apply_filter, parse_order};
//! use tower_pat::store::ListQuery;
//!
//! let mut q = ListQuery::new();
//! apply_filter(&mut q, "name__icontains", "terraform").unwrap();
//! apply_filter(&mut q, "last_used__isnull", "true").unwrap();
//! q.order = parse_order("-created").unwrap();
//! assert_eq!(q.name_contains.as_deref(), Some("terraform"));
//! assert!(apply_filter(&mut q, "secret_hash", "x").is_err());
//! ```

use std::time::Duration;

use time::OffsetDateTime;

use super::error::ManageError;
use super::request::parse_time;
use crate::clock;
use crate::expiry::parse_duration;
use crate::store::{EventQuery, ListQuery, Order, SortField};

/// The filter keys [`apply_filter`] knows.
pub(crate) const FILTER_FIELDS: &[&str] = &[
    "owner",
    "name__icontains",
    "description__icontains",
    "scope",
    "expires__lt",
    "expires__lte",
    "expires__gt",
    "expires__gte",
    "last_used__lt",
    "last_used__lte",
    "last_used__isnull",
    "last_used_ip",
    "expires_within",
    "active",
    "search",
];

/// The fields [`parse_order`] knows (each may start with `-` for descending).
pub(crate) const ORDER_FIELDS: &[&str] = &["created", "last_used", "expires", "name"];

const SECOND: Duration = Duration::from_secs(1);

/// Adds the lookup `key=value` to `query`. An unknown key, or a value of the wrong kind,
/// is a [`ManageError::BadInput`] naming the key. `expires_within=7d` (a token that
/// expires in the next 7 days, and has not yet) counts from the system clock's now.
pub fn apply_filter(query: &mut ListQuery, key: &str, value: &str) -> Result<(), ManageError> {
    apply_filter_at(query, key, value, OffsetDateTime::now_utc())
}

/// [`apply_filter`] with `now` for the relative filters (`expires_within`).
pub(crate) fn apply_filter_at(
    query: &mut ListQuery,
    key: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<(), ManageError> {
    let time = || parse_time(key, value);
    match key {
        "last_used_ip" => {
            query.last_used_ip = Some(value.trim().parse().map_err(|_| {
                ManageError::bad_input(key, "expected an IP address, e.g. 192.0.2.7 or 2001:db8::1")
            })?);
        }
        "expires_within" => {
            let within =
                parse_duration(value).map_err(|e| ManageError::bad_input(key, e.to_string()))?;
            query.expires_after = Some(now);
            query.expires_before = Some(clock::add(clock::add(now, within), SECOND));
        }
        "owner" => query.owner = Some(value.to_owned()),
        "name__icontains" | "description__icontains" => {
            query.name_contains = Some(value.to_owned());
        }
        "scope" => {
            query.has_scope = Some(value.parse().map_err(|e: crate::scope::ScopeError| {
                ManageError::bad_input(key, e.to_string())
            })?);
        }
        "expires__lt" => query.expires_before = Some(time()?),
        // Timestamps are whole seconds: `<= t` is `< t + 1 s`.
        "expires__lte" => query.expires_before = Some(clock::add(time()?, SECOND)),
        "expires__gt" => query.expires_after = Some(time()?),
        "expires__gte" => query.expires_after = Some(time()? - SECOND),
        "last_used__lt" => query.last_used_before = Some(time()?),
        "last_used__lte" => query.last_used_before = Some(clock::add(time()?, SECOND)),
        "last_used__isnull" => query.never_used = Some(boolean(key, value)?),
        "active" => query.active = Some(boolean(key, value)?),
        "search" => query.search = Some(value.to_owned()),
        _ => {
            return Err(ManageError::bad_input(
                key.chars().take(64).collect::<String>(),
                format!("unknown filter field; known: {}", FILTER_FIELDS.join(", ")),
            ))
        }
    }
    Ok(())
}

/// Parses `order_by`: `created`, `last_used`, `expires` or `name`, with `-` for
/// descending (e.g. `-created`, newest first).
pub fn parse_order(s: &str) -> Result<Order, ManageError> {
    let (descending, field) = match s.strip_prefix('-') {
        Some(f) => (true, f),
        None => (false, s),
    };
    let field = match field {
        "created" => SortField::Created,
        "last_used" => SortField::LastUsed,
        "expires" | "expires_at" => SortField::Expires,
        "name" => SortField::Name,
        _ => {
            return Err(ManageError::bad_input(
                "order_by",
                format!(
                    "unknown order field {:?}; known: {} (prefix '-' for descending)",
                    s.chars().take(64).collect::<String>(),
                    ORDER_FIELDS.join(", ")
                ),
            ))
        }
    };
    Ok(Order { field, descending })
}

/// Parses `true` or `false`.
pub(crate) fn boolean(key: &str, value: &str) -> Result<bool, ManageError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ManageError::bad_input(key, "expected true or false")),
    }
}

/// The filter keys [`apply_event_filter`] knows.
pub(crate) const EVENT_FILTER_FIELDS: &[&str] = &["token_id", "owner", "type", "since", "until"];

/// The event types, as [`EventKind::name`](crate::EventKind::name) spells them.
pub(crate) const EVENT_TYPES: &[&str] = &[
    "created",
    "changed",
    "rotated",
    "disabled",
    "enabled",
    "deleted",
    "revoked_as_leaked",
    "first_use",
    "new_client_address",
    "expiring_soon",
    "expired",
];

/// Adds the audit-log filter `key=value` to `query`: `token_id`, `owner`, `type` (an
/// [`EventKind::name`](crate::EventKind::name): `created`, `changed`, `rotated`,
/// `disabled`, `enabled`, `deleted`, `revoked_as_leaked`, `first_use`,
/// `new_client_address`, `expiring_soon`, `expired`), `since` and `until` (an RFC 3339 time, or a duration such as
/// `7d` meaning that long before `now`). An unknown key or a bad value is a
/// [`ManageError::BadInput`] naming the key.
pub fn apply_event_filter(
    query: &mut EventQuery,
    key: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<(), ManageError> {
    let when = || match parse_duration(value) {
        Ok(ago) => Ok(clock::sub(now, ago)),
        Err(_) => parse_time(key, value).map_err(|_| {
            ManageError::bad_input(key, "expected an RFC 3339 time or a duration such as 7d")
        }),
    };
    match key {
        "token_id" => {
            query.token_id = Some(
                value
                    .parse()
                    .map_err(|_| ManageError::bad_input(key, "not a token id"))?,
            );
        }
        "owner" => query.owner = Some(value.to_owned()),
        "type" => {
            if !EVENT_TYPES.contains(&value) {
                return Err(ManageError::bad_input(
                    key,
                    format!("unknown event type; known: {}", EVENT_TYPES.join(", ")),
                ));
            }
            query.kind = Some(value.to_owned());
        }
        "since" => query.since = Some(when()?),
        "until" => query.until = Some(when()?),
        _ => {
            return Err(ManageError::bad_input(
                key.chars().take(64).collect::<String>(),
                format!(
                    "unknown filter field; known: {}",
                    EVENT_FILTER_FIELDS.join(", ")
                ),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn event_types_are_the_kinds_names() {
        let kinds = [
            EventKind::Created,
            EventKind::Changed { fields: vec![] },
            EventKind::Rotated { new_id: None },
            EventKind::Disabled,
            EventKind::Enabled,
            EventKind::Deleted,
            EventKind::RevokedAsLeaked,
            EventKind::FirstUse,
            EventKind::NewClientAddress,
            EventKind::ExpiringSoon {
                lead: Duration::from_secs(1),
            },
            EventKind::Expired,
        ];
        let names: Vec<&str> = kinds.iter().map(EventKind::name).collect();
        assert_eq!(names, EVENT_TYPES);
    }

    #[test]
    fn expires_within_is_a_window_from_now() {
        let now = time::macros::datetime!(2030-01-01 0:00 UTC);
        let mut q = ListQuery::new();
        apply_filter_at(&mut q, "expires_within", "7d", now).unwrap();
        assert_eq!(q.expires_after, Some(now));
        assert_eq!(
            q.expires_before,
            Some(now + Duration::from_secs(7 * 86_400 + 1))
        );
        assert!(apply_filter_at(&mut q, "expires_within", "soon", now).is_err());
        assert!(apply_filter_at(&mut q, "last_used_ip", "999.1.1.1", now).is_err());
        apply_filter_at(&mut q, "last_used_ip", " 2001:db8::1 ", now).unwrap();
        assert_eq!(q.last_used_ip, Some("2001:db8::1".parse().unwrap()));
        // The largest durations saturate instead of overflowing.
        apply_filter_at(&mut q, "expires_within", "999999999999w", now).unwrap();
        let mut e = EventQuery::new();
        apply_event_filter(&mut e, "since", "999999999999w", now).unwrap();
        apply_event_filter(&mut e, "until", "2030-01-01T00:00:00Z", now).unwrap();
        assert_eq!(e.until, Some(now));
        assert!(e.since.unwrap() < now);
        assert!(apply_event_filter(&mut e, "since", "yesterday", now).is_err());
        assert!(apply_event_filter(&mut e, "token_id", "short", now).is_err());
    }
}
