use std::collections::HashMap;
use std::sync::RwLock;

use crate::record::TokenRecord;
use crate::store::{ListQuery, Page, StoreError, TokenStore, Touch};
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

    async fn update(&self, record: &TokenRecord) -> Result<bool, StoreError> {
        let mut map = self.write();
        match map.get_mut(&record.id) {
            Some(slot) => {
                *slot = record.clone();
                Ok(true)
            }
            None => Ok(false),
        }
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
