use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, RwLock};

use time::OffsetDateTime;

use crate::events::Event;
use crate::record::TokenRecord;
use crate::store::{EventQuery, ListQuery, Page, StoreError, TokenStore, Touch, Update};
use crate::token::TokenId;

/// Tokens in a `HashMap` in this process: for tests and demos; lost on exit. Its audit
/// log is a ring of the last [`MemoryStore::AUDIT_CAPACITY`] events.
///
/// ```
/// use std::sync::Arc;
/// use tower_pat::store::{MemoryStore, TokenStore};
///
/// let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    tokens: RwLock<HashMap<TokenId, TokenRecord>>,
    audit: Mutex<Audit>,
}

#[derive(Debug, Default)]
struct Audit {
    /// Oldest first.
    events: VecDeque<Event>,
    /// Claimed reminders: token, lead, expiry.
    reminders: HashSet<(TokenId, u64, i64)>,
}

impl MemoryStore {
    /// Most events the audit log keeps; the oldest go first.
    pub const AUDIT_CAPACITY: usize = 100_000;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn audit(&self) -> MutexGuard<'_, Audit> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TokenId, TokenRecord>> {
        // A panic while holding the lock cannot leave a record half-written (each write
        // is one insert or remove), so a poisoned lock is still consistent.
        self.tokens.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TokenId, TokenRecord>> {
        self.tokens.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryStore {
    async fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.read().get(id).cloned())
    }

    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let mut map = self.write();
        if map.contains_key(&record.id) {
            return Err(StoreError::Conflict(record.id));
        }
        map.insert(record.id, record.clone());
        Ok(())
    }

    async fn update(&self, record: &TokenRecord) -> Result<Update, StoreError> {
        Ok(swap(&mut self.write(), record))
    }

    async fn replace(
        &self,
        old: &TokenRecord,
        delete_old: bool,
        new: &TokenRecord,
    ) -> Result<Update, StoreError> {
        let mut map = self.write();
        if map.contains_key(&new.id) {
            return Err(StoreError::Conflict(new.id));
        }
        let done = match map.get(&old.id) {
            None => Update::NotFound,
            Some(stored) if stored.version != old.version => Update::Stale,
            Some(_) if delete_old => {
                map.remove(&old.id);
                Update::Written
            }
            Some(_) => swap(&mut map, old),
        };
        if done.is_written() {
            map.insert(new.id, new.clone());
        }
        Ok(done)
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        Ok(self.write().remove(id).is_some())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page<TokenRecord>, StoreError> {
        let map = self.read();
        let mut hits: Vec<&TokenRecord> = map.values().filter(|r| query.matches(r)).collect();
        hits.sort_by(|a, b| query.compare(a, b));
        let total = hits.len() as u64;
        let items = hits
            .into_iter()
            .skip(usize::try_from(query.offset()).unwrap_or(usize::MAX))
            .take(query.limit() as usize)
            .cloned()
            .collect();
        Ok(Page { total, items })
    }

    async fn touch(&self, id: &TokenId, touch: &Touch) -> Result<(), StoreError> {
        if let Some(r) = self.write().get_mut(id) {
            if r.last_used.map_or(true, |u| u < touch.last_used) {
                r.last_used = Some(touch.last_used);
                if !touch.from.is_empty() {
                    r.last_used_from = touch.from.clone();
                }
                if !touch.recent_clients.is_empty() {
                    r.recent_clients = touch.recent_clients.clone();
                }
            }
            if let (Some(new), true) = (touch.expires_at, r.expiry.is_sliding()) {
                r.expires_at = r.expires_at.max(Some(new));
            }
        }
        Ok(())
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let mut audit = self.audit();
        for event in events {
            if audit.events.len() >= Self::AUDIT_CAPACITY {
                audit.events.pop_front();
            }
            audit.events.push_back(event.clone());
        }
        Ok(())
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        let audit = self.audit();
        let hits: Vec<&Event> = audit
            .events
            .iter()
            .rev()
            .filter(|e| query.matches(e))
            .collect();
        Ok(Page {
            total: hits.len() as u64,
            items: hits
                .into_iter()
                .skip(usize::try_from(query.offset()).unwrap_or(usize::MAX))
                .take(query.limit() as usize)
                .cloned()
                .collect(),
        })
    }

    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut audit = self.audit();
        let n = audit.events.len();
        let cut = before.unix_timestamp();
        audit.events.retain(|e| e.at.unix_timestamp() >= cut);
        audit.reminders.retain(|(_, _, exp)| *exp >= cut);
        Ok((n - audit.events.len()) as u64)
    }

    async fn claim_reminder(
        &self,
        id: &TokenId,
        lead: u64,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        Ok(self
            .audit()
            .reminders
            .insert((*id, lead, expires_at.unix_timestamp())))
    }
}

/// The compare-and-swap of [`TokenStore::update`], under the map's write lock.
fn swap(map: &mut HashMap<TokenId, TokenRecord>, record: &TokenRecord) -> Update {
    let Some(slot) = map.get_mut(&record.id) else {
        return Update::NotFound;
    };
    if slot.version != record.version {
        return Update::Stale;
    }
    let mut next = record.clone();
    next.version = record.version.wrapping_add(1);
    // A use written since the read stays, with where it came from.
    if slot.last_used > next.last_used {
        next.last_used = slot.last_used;
        next.last_used_from = slot.last_used_from.clone();
        next.recent_clients = slot.recent_clients.clone();
    }
    if next.expiry.is_sliding() && next.expiry == slot.expiry {
        next.expires_at = next.expires_at.max(slot.expires_at);
    }
    *slot = next;
    Update::Written
}
