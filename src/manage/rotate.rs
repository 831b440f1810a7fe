//! Rotation: a new secret for the same id, or a new linked token, with an optional grace
//! period for the old secret; the token keeps its end.

use std::time::Duration;

use time::OffsetDateTime;

use super::error::ManageError;
use super::manager::{busy, Fields, Manager, MAX_TRIES};
use super::request::RotateRequest;
use super::rights::{Actor, Right};
use super::view::{IssuedToken, TokenView};
use crate::clock;
use crate::events::EventKind;
use crate::expiry::{parse_duration, Expiry};
use crate::metrics::StoreOp;
use crate::record::{PreviousSecret, TokenRecord};
use crate::store::Update;
use crate::token::MintedToken;

impl Manager {
    /// Rotates a token: a new secret for the same id, or a new linked token (see
    /// [`RotateRequest`]). The old secret works until the grace period ends, or not at
    /// all without one. The token keeps its expiry: rotation never extends its end.
    /// Replacing by a new id is one atomic store step: afterwards the old token is
    /// gone (or ends with the grace period) and the new one exists, or neither changed.
    pub async fn rotate(
        &self,
        actor: &Actor,
        id: &str,
        req: RotateRequest,
    ) -> Result<IssuedToken, ManageError> {
        self.scopes.require(actor, Right::Write)?;
        let grace = req
            .grace
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| ManageError::bad_input("grace", e.to_string()))?;
        let mut record = self.visible(actor, id).await?;
        Self::expect(&record, req.if_version)?;
        let first = record.clone();
        let format = self.auth.format();
        let minted = if req.new_id {
            format.mint()
        } else {
            format.mint_with_id(record.id)
        };
        for _ in 0..MAX_TRIES {
            let now = self.auth.clock().now();
            let done = if req.new_id {
                self.rotate_to_new_id(&record, &minted, grace, now).await?
            } else {
                let mut r = record.clone();
                r.previous_secret = grace.map(|g| PreviousSecret {
                    hash: record.secret_hash,
                    valid_until: clock::add(now, g),
                });
                r.secret_hash = minted.secret_hash;
                r.modified = now;
                match self
                    .io(StoreOp::Update, self.auth.store().update(&r))
                    .await?
                {
                    Update::Written => {
                        r.version = record.version.wrapping_add(1);
                        Some(r)
                    }
                    Update::Stale => None,
                    _ => return Err(ManageError::not_found(id)),
                }
            };
            let Some(view) = done else {
                record = self
                    .reread(actor, id, req.if_version, Fields::SECRET, &first)
                    .await?;
                continue;
            };
            // The event first: a client that hangs up during the invalidation below must
            // not leave a rotation without its event.
            let new_id = req.new_id.then_some(view.id);
            self.emit(actor, &record, EventKind::Rotated { new_id });
            self.invalidate(&record.id).await;
            let replaces = if req.new_id {
                self.invalidate(&view.id).await;
                Some(record.id)
            } else {
                None
            };
            return Ok(IssuedToken {
                view: TokenView::from(&view),
                token: minted.token,
                replaces,
            });
        }
        Err(busy())
    }

    /// One try of a rotation to a new id: the new record, or `None` when the old one
    /// changed since it was read.
    async fn rotate_to_new_id(
        &self,
        record: &TokenRecord,
        minted: &MintedToken,
        grace: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<Option<TokenRecord>, ManageError> {
        let mut new = TokenRecord::new(
            minted.id,
            record.owner.clone(),
            record.name.clone(),
            record.scopes.clone(),
            record.expiry,
            minted.secret_hash,
            now,
        );
        // The same expiry model, so the same end: rotation never extends it.
        new.active = record.active;
        let old = grace.map(|g| {
            let end = clock::add(now, g);
            let end = record.expires_at.map_or(end, |e| e.min(end));
            let mut old = record.clone();
            old.expiry = Expiry::HardLimit { expires_at: end };
            old.expires_at = Some(end);
            old.modified = now;
            old
        });
        let done = self
            .io(
                StoreOp::Replace,
                self.auth
                    .store()
                    .replace(old.as_ref().unwrap_or(record), old.is_none(), &new),
            )
            .await?;
        match done {
            Update::Written => Ok(Some(new)),
            Update::Stale => Ok(None),
            _ => Err(ManageError::not_found(record.id.as_str())),
        }
    }
}
