//! The checks every part of management shares, with no dependency on the rest of it:
//! names, owners and RFC 3339 times.

/// Longest token name, in characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest owner (login name), in characters.
pub const MAX_OWNER_LEN: usize = 255;

/// Checks a token name: at most 255 characters, no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("name is longer than {MAX_NAME_LEN} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("name holds a control character".to_owned());
    }
    Ok(())
}

/// Checks an owner: 1 to 255 characters, no control characters, no ':' (Basic auth).
pub(crate) fn check_owner(owner: &str) -> Result<(), String> {
    if owner.is_empty() {
        return Err("owner is empty".into());
    }
    if owner.chars().count() > MAX_OWNER_LEN {
        return Err(format!("owner is longer than {MAX_OWNER_LEN} characters"));
    }
    if owner.chars().any(|c| c.is_control() || c == ':') {
        return Err("owner holds a control character or ':'".into());
    }
    Ok(())
}

/// `t` as RFC 3339 (`2030-01-01T00:00:00Z`), for messages.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 timestamp as the OpenAPI document's `date-time` says: `T` (or `t`)
/// between date and time, where the `time` crate would also take a space.
pub(crate) fn parse_rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}
