//! The axum extractor for [`Principal`] (feature `axum`).

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::principal::Principal;
use crate::rejection::{Challenge, Rejection, RejectionKind};

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            let challenge = parts
                .extensions
                .get::<Challenge>()
                .cloned()
                .unwrap_or_default();
            Rejection::new(RejectionKind::MissingPrincipal, challenge)
        })
    }
}
