//! The cache of found tokens, in front of the store: what it holds, how it is read on
//! every request, how invalidations win against loads in flight, and how uses are
//! written back.
//!
//! - [`entry`]: [`CachedToken`], one cached token, and the scope interner entries share.
//! - [`hot`]: [`HotTable`], the lock-free front read on every request (moka, in the
//!   authenticator, stays the cache of record).
//! - [`epochs`]: [`Epochs`], the invalidation epochs.
//! - [`write_behind`]: [`WriteBehind`], the tokens whose use is not yet written.
//!
//! The decision (is this token accepted?) is not made here but in the authenticator,
//! which composes these parts; nothing here depends on the authenticator or on
//! `Principal` (which holds an `Arc<CachedToken>`).

mod entry;
mod epochs;
mod hot;
mod write_behind;

pub(crate) use entry::PrincipalData;
pub(crate) use entry::{CachedToken, ScopeInterner};
pub(crate) use epochs::Epochs;
pub(crate) use hot::HotTable;
pub(crate) use write_behind::WriteBehind;
