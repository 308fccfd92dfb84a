//! [`AccessStore`] for [`InMemoryStore`].

use super::{InMemoryStore, micros, page};
use crate::Timestamp;
use crate::access::{AccessStore, ApiToken, AuditEntry, AuditQuery, NewApiToken, TokenRef};
use crate::ids::{AuditId, TokenId};
use crate::ports::{Page, StoreError, StoreResult};
use async_trait::async_trait;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct AccessMem {
    /// id → (token, hash).
    tokens: BTreeMap<TokenId, (ApiToken, String)>,
    audit: BTreeMap<AuditId, AuditEntry>,
}

fn stored_audit(mut entry: AuditEntry) -> AuditEntry {
    entry.at = micros(entry.at);
    entry
}

#[async_trait]
impl AccessStore for InMemoryStore {
    async fn create_api_token(
        &self,
        token: NewApiToken,
        audit: AuditEntry,
    ) -> StoreResult<ApiToken> {
        let mut state = self.lock();
        let access = &mut state.access;
        if access
            .tokens
            .values()
            .any(|(t, _)| t.name == token.name && t.revoked_at.is_none())
        {
            return Err(StoreError::Conflict(format!(
                "a token named {:?} exists already",
                token.name
            )));
        }
        if access.tokens.contains_key(&token.id)
            || access.tokens.values().any(|(_, h)| *h == token.hash)
        {
            return Err(StoreError::Conflict(format!(
                "token {} exists already",
                token.id
            )));
        }
        let stored = ApiToken {
            id: token.id,
            name: token.name,
            scopes: token.scopes,
            created_at: micros(token.created_at),
            expires_at: token.expires_at.map(micros),
            last_used_at: None,
            revoked_at: None,
        };
        access
            .tokens
            .insert(stored.id, (stored.clone(), token.hash));
        access.audit.insert(audit.id, stored_audit(audit));
        Ok(stored)
    }

    async fn find_api_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        Ok(self
            .lock()
            .access
            .tokens
            .values()
            .find(|(_, h)| h == hash)
            .map(|(t, _)| t.clone()))
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        Ok(self
            .lock()
            .access
            .tokens
            .values()
            .map(|(t, _)| t.clone())
            .collect())
    }

    async fn revoke_api_token(
        &self,
        token: &TokenRef,
        at: Timestamp,
        audit: AuditEntry,
    ) -> StoreResult<ApiToken> {
        let mut state = self.lock();
        let access = &mut state.access;
        let found = access.tokens.values_mut().find(|(t, _)| match token {
            TokenRef::Id(id) => t.id == *id,
            TokenRef::Name(name) => t.name == *name && t.revoked_at.is_none(),
        });
        let Some((stored, _)) = found else {
            return Err(StoreError::NotFound(token.to_string()));
        };
        if stored.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!("{token} is revoked already")));
        }
        stored.revoked_at = Some(micros(at));
        let revoked = stored.clone();
        access.audit.insert(audit.id, stored_audit(audit));
        Ok(revoked)
    }

    async fn touch_api_tokens(&self, used: &[(TokenId, Timestamp)]) -> StoreResult<()> {
        let mut state = self.lock();
        for (id, at) in used {
            if let Some((token, _)) = state.access.tokens.get_mut(id) {
                let at = micros(*at);
                if token.last_used_at.is_none_or(|last| last < at) {
                    token.last_used_at = Some(at);
                }
            }
        }
        Ok(())
    }

    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()> {
        self.lock()
            .access
            .audit
            .insert(entry.id, stored_audit(entry));
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Page<AuditEntry>> {
        let state = self.lock();
        Ok(page(&state.access.audit, query.before, query.limit, |e| {
            query.actor.as_ref().is_none_or(|a| e.actor == *a)
                && query.action.as_ref().is_none_or(|a| e.action == *a)
                && query.ticket.is_none_or(|t| e.ticket_id == Some(t))
                && query.since.is_none_or(|s| e.at >= s)
                && query.until.is_none_or(|u| e.at < u)
        }))
    }
}
