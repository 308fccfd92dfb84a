//! [`InMemoryToolCache`]: a [`ToolCache`] in process memory that counts its hits and misses,
//! so tool tests can assert that a second lookup was served from the cache.

use crate::Timestamp;
use crate::tool::{ToolCache, ToolCacheError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub struct InMemoryToolCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, (String, Timestamp)>,
    hits: u64,
    misses: u64,
}

impl InMemoryToolCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn hits(&self) -> u64 {
        self.lock().hits
    }

    pub fn misses(&self) -> u64 {
        self.lock().misses
    }

    /// Every stored key, expired or not, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().entries.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each operation is one map access; a panic elsewhere cannot leave it half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ToolCache for InMemoryToolCache {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<String>, ToolCacheError> {
        let mut state = self.lock();
        let found = state
            .entries
            .get(key)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(value, _)| value.clone());
        if found.is_some() {
            state.hits += 1;
        } else {
            state.misses += 1;
        }
        Ok(found)
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), ToolCacheError> {
        self.lock()
            .entries
            .insert(key.to_owned(), (value.to_owned(), expires_at));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    #[tokio::test]
    async fn an_entry_is_served_until_it_expires() {
        let cache = InMemoryToolCache::new();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        cache
            .put("otx:ipv4:203.0.113.9", "clean", t0 + Duration::hours(1))
            .await
            .unwrap();
        let at = |minutes| t0 + Duration::minutes(minutes);
        assert_eq!(
            cache.get("otx:ipv4:203.0.113.9", at(59)).await,
            Ok(Some("clean".into()))
        );
        assert_eq!(cache.get("otx:ipv4:203.0.113.9", at(60)).await, Ok(None));
        assert_eq!(cache.get("other", at(0)).await, Ok(None));
        assert_eq!((cache.hits(), cache.misses()), (1, 2));
    }
}
