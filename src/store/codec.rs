//! The flat, portable form of a [`TokenRecord`] that the SQL and Redis stores keep:
//! timestamps as unix seconds, scopes space-separated, expiry as JSON, the secret as the
//! hex of its SHA-256 only.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::events::Origin;
use crate::expiry::Expiry;
use crate::record::{PreviousSecret, TokenRecord};
use crate::store::StoreError;
use crate::token::{SecretHash, TokenId};

/// One token as columns (or Redis hash fields).
#[derive(Debug, Clone)]
pub(crate) struct Flat {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) scopes: String,
    pub(crate) expiry: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) active: bool,
    pub(crate) created: i64,
    pub(crate) modified: i64,
    pub(crate) last_used: Option<i64>,
    pub(crate) secret_hash: String,
    pub(crate) previous_hash: Option<String>,
    pub(crate) previous_valid_until: Option<i64>,
    pub(crate) version: i64,
    pub(crate) created_ip: Option<String>,
    pub(crate) created_user_agent: Option<String>,
    pub(crate) last_used_ip: Option<String>,
    pub(crate) last_used_user_agent: Option<String>,
    /// Space-separated, newest first.
    pub(crate) recent_ips: Option<String>,
}

/// The text form of a client address (IPv4-mapped IPv6 as IPv4), as stored and filtered.
pub(crate) fn ip_text(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// Space-separated addresses, or `None` for none.
pub(crate) fn ips_text(ips: &[IpAddr]) -> Option<String> {
    (!ips.is_empty()).then(|| {
        ips.iter()
            .map(|ip| ip_text(*ip))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Derived values kept only so the store can filter without decoding: lower-cased
/// owner and name (Rust's Unicode lower-casing, the same as [`ListQuery::matches`]) and
/// whether the expiry slides.
///
/// [`ListQuery::matches`]: crate::store::ListQuery::matches
pub(crate) struct Derived {
    pub(crate) owner_lc: String,
    pub(crate) name_lc: String,
    pub(crate) sliding: bool,
}

impl Flat {
    pub(crate) fn from_record(r: &TokenRecord) -> Result<Self, StoreError> {
        let expiry = serde_json::to_string(&r.expiry)
            .map_err(|e| StoreError::Invalid(format!("cannot encode expiry: {e}")))?;
        Ok(Self {
            id: r.id.to_string(),
            owner: r.owner.clone(),
            name: r.name.clone(),
            scopes: r.scopes.to_string(),
            expiry,
            expires_at: r.expires_at.map(OffsetDateTime::unix_timestamp),
            active: r.active,
            created: r.created.unix_timestamp(),
            modified: r.modified.unix_timestamp(),
            last_used: r.last_used.map(OffsetDateTime::unix_timestamp),
            secret_hash: r.secret_hash.to_hex(),
            previous_hash: r.previous_secret.map(|p| p.hash.to_hex()),
            previous_valid_until: r.previous_secret.map(|p| p.valid_until.unix_timestamp()),
            version: i64::try_from(r.version)
                .map_err(|_| StoreError::Invalid(format!("token {}: version too large", r.id)))?,
            created_ip: r.created_from.client.map(ip_text),
            created_user_agent: r.created_from.user_agent.clone(),
            last_used_ip: r.last_used_from.client.map(ip_text),
            last_used_user_agent: r.last_used_from.user_agent.clone(),
            recent_ips: ips_text(&r.recent_clients),
        })
    }

    pub(crate) fn derived(r: &TokenRecord) -> Derived {
        Derived {
            owner_lc: r.owner.to_lowercase(),
            name_lc: r.name.to_lowercase(),
            sliding: r.expiry.is_sliding(),
        }
    }

    pub(crate) fn into_record(self) -> Result<TokenRecord, StoreError> {
        let bad = |what: &str| StoreError::Invalid(format!("token {}: bad {what}", self.id));
        let id: TokenId = self.id.parse().map_err(|_| bad("id"))?;
        let ts = |s: i64, what: &str| OffsetDateTime::from_unix_timestamp(s).map_err(|_| bad(what));
        let opt_ts = |s: Option<i64>, what: &str| s.map(|s| ts(s, what)).transpose();
        let previous_secret = match (&self.previous_hash, self.previous_valid_until) {
            (Some(h), Some(until)) => Some(PreviousSecret {
                hash: SecretHash::from_hex(h).ok_or_else(|| bad("previous secret hash"))?,
                valid_until: ts(until, "previous secret expiry")?,
            }),
            (None, None) => None,
            _ => return Err(bad("previous secret")),
        };
        let ip = |s: &Option<String>, what: &str| {
            s.as_deref()
                .map(|s| s.parse::<IpAddr>().map_err(|_| bad(what)))
                .transpose()
        };
        let created_from = Origin::new(
            ip(&self.created_ip, "created_ip")?,
            self.created_user_agent.as_deref(),
        );
        let last_used_from = Origin::new(
            ip(&self.last_used_ip, "last_used_ip")?,
            self.last_used_user_agent.as_deref(),
        );
        let recent_clients = self
            .recent_ips
            .as_deref()
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(|s| s.parse::<IpAddr>().map_err(|_| bad("recent_ips")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TokenRecord {
            id,
            created_from,
            last_used_from,
            recent_clients,
            scopes: self.scopes.parse().map_err(|_| bad("scopes"))?,
            expiry: serde_json::from_str::<Expiry>(&self.expiry).map_err(|_| bad("expiry"))?,
            expires_at: opt_ts(self.expires_at, "expires_at")?,
            active: self.active,
            created: ts(self.created, "created")?,
            modified: ts(self.modified, "modified")?,
            last_used: opt_ts(self.last_used, "last_used")?,
            secret_hash: SecretHash::from_hex(&self.secret_hash)
                .ok_or_else(|| bad("secret hash"))?,
            previous_secret,
            version: u64::try_from(self.version).map_err(|_| bad("version"))?,
            owner: self.owner,
            name: self.name,
        })
    }
}

/// An event of the audit log from its stored JSON.
pub(crate) fn event(json: &str) -> Result<crate::events::Event, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Invalid(format!("audit log holds an event it cannot read: {e}")))
}

/// A fresh random id for one store instance, so it can recognise its own change messages.
pub(crate) fn instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `"<instance>:<token id>"`, the payload of a change message.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn change_payload(instance: &str, id: &TokenId) -> String {
    format!("{instance}:{id}")
}

/// The token id of a change message sent by another instance; `None` for our own
/// messages and for garbage.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn foreign_change(instance: &str, payload: &str) -> Option<TokenId> {
    let (from, id) = payload.split_once(':')?;
    if from == instance {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_messages() {
        let id = TokenId::generate();
        let p = change_payload("me", &id);
        assert_eq!(foreign_change("me", &p), None);
        assert_eq!(foreign_change("other", &p), Some(id));
        assert_eq!(foreign_change("other", "garbage"), None);
        assert_eq!(foreign_change("other", "x:not-an-id"), None);
    }
}
