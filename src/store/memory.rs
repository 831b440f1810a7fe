use std::collections::HashMap;
use std::sync::RwLock;

use crate::record::TokenRecord;
use crate::store::{ListQuery, Page, StoreError, TokenStore, Touch, Update};
use crate::token::TokenId;

/// Tokens in a `HashMap` in this process: for tests and demos; lost on exit.
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
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
            r.last_used = r.last_used.max(Some(touch.last_used));
            if let (Some(new), true) = (touch.expires_at, r.expiry.is_sliding()) {
                r.expires_at = r.expires_at.max(Some(new));
            }
        }
        Ok(())
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
    next.last_used = next.last_used.max(slot.last_used);
    if next.expiry.is_sliding() && next.expiry == slot.expiry {
        next.expires_at = next.expires_at.max(slot.expires_at);
    }
    *slot = next;
    Update::Written
}
