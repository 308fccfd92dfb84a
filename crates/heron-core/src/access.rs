//! Who may call Heron and what they did: stored API tokens ([`ApiToken`]) and the audit log
//! ([`AuditEntry`]), kept by an [`AccessStore`].
//!
//! Invariants every [`AccessStore`] keeps:
//! - a token's secret is never stored: only its SHA-256 (`hash`, lowercase hex), by which it
//!   is found; the secret is shown once, when it is created;
//! - at most one token that is not revoked carries a name (a revoked token's name may be
//!   reused), so "revoke NAME" names one token;
//! - creating and revoking a token write their audit entry in the same transaction as the
//!   change: either both are stored or neither;
//! - `last_used_at` only moves forward (batched updates may arrive out of order);
//! - audit entries are never changed or deleted through the port.

use crate::Timestamp;
use crate::event::str_enum;
use crate::ids::{AuditId, TicketId, TokenId};
use crate::ports::{Page, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a token may do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Post to the alert webhooks.
    Ingest,
    /// Read the API (`GET`) and the dashboard.
    Read,
    /// Change things through the API (every other method, and the agent chat).
    Write,
}

str_enum!(Scope {
    Ingest => "ingest",
    Read => "read",
    Write => "write",
});

/// Parses `ingest,read` (any order, spaces allowed) into a sorted list without duplicates.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, crate::ports::UnknownVariant> {
    let mut scopes = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Scope::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// A stored API token as listed: everything but its secret and hash.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: TokenId,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a stored token does not open a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Revoked,
    Expired,
}

impl ApiToken {
    /// Whether the token may be used at `now`: not revoked and not expired.
    pub fn usable_at(&self, now: Timestamp) -> Result<(), TokenRefusal> {
        if self.revoked_at.is_some() {
            return Err(TokenRefusal::Revoked);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(TokenRefusal::Expired);
        }
        Ok(())
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A token to store: its row and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiToken {
    pub id: TokenId,
    pub name: String,
    /// Lowercase hex SHA-256 of the secret.
    pub hash: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// The SHA-256 of a token's secret as stores keep it (lowercase hex).
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Where a change came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSource {
    Api,
    Web,
    Slack,
    Cli,
    System,
}

str_enum!(AuditSource {
    Api => "api",
    Web => "web",
    Slack => "slack",
    Cli => "cli",
    System => "system",
});

impl From<crate::CommentSource> for AuditSource {
    fn from(source: crate::CommentSource) -> Self {
        match source {
            crate::CommentSource::Api => AuditSource::Api,
            crate::CommentSource::Web => AuditSource::Web,
            crate::CommentSource::Slack => AuditSource::Slack,
            crate::CommentSource::Agent | crate::CommentSource::System => AuditSource::System,
        }
    }
}

/// One recorded change: who (`actor`, and the stored token they used, if any), what
/// (`action`, the ticket or other `target` it touched, `details`), when, and from where
/// (`source`, and the client address when there was one).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: AuditSource,
    /// The client address (`ip` or `ip:port`), for changes that came over the network.
    pub remote: Option<String>,
    /// `ticket.update`, `ticket.comment`, `notice.escalate`, `event.retry`, `policy.reload`,
    /// `token.create`, `token.revoke`, `agent.run`…
    pub action: String,
    pub ticket_id: Option<TicketId>,
    /// What else the change was about (a token's name, an event id…).
    pub target: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub ticket: Option<TicketId>,
    /// At or after.
    pub since: Option<Timestamp>,
    /// Strictly before.
    pub until: Option<Timestamp>,
    /// Only entries older than this one (the previous page's `next_cursor`).
    pub before: Option<AuditId>,
    pub limit: usize,
}

/// How a token to revoke is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    Id(TokenId),
    /// The token of this name that is not revoked.
    Name(String),
}

impl fmt::Display for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRef::Id(id) => write!(f, "token {id}"),
            TokenRef::Name(name) => write!(f, "token {name:?}"),
        }
    }
}

impl TokenRef {
    /// A UUID is an id; anything else a name.
    pub fn parse(text: &str) -> Self {
        match TokenId::from_str(text) {
            Ok(id) => TokenRef::Id(id),
            Err(_) => TokenRef::Name(text.to_owned()),
        }
    }
}

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores the token and `audit` in one transaction. A token that is not revoked already
    /// carries the name: `Conflict`, nothing stored.
    async fn create_api_token(
        &self,
        token: NewApiToken,
        audit: AuditEntry,
    ) -> StoreResult<ApiToken>;
    /// The token whose secret hashes to `hash`, revoked and expired ones included (the
    /// caller decides), or `None`.
    async fn find_api_token(&self, hash: &str) -> StoreResult<Option<ApiToken>>;
    /// Every token, revoked ones included, oldest first.
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    /// Marks the token revoked at `at` and stores `audit`, in one transaction. Unknown (or,
    /// by name, no token of that name that is not revoked): `NotFound`. Already revoked (by
    /// id): `Conflict`.
    async fn revoke_api_token(
        &self,
        token: &TokenRef,
        at: Timestamp,
        audit: AuditEntry,
    ) -> StoreResult<ApiToken>;
    /// Records uses: each token's `last_used_at` becomes the given time unless it already is
    /// later. Unknown ids are ignored.
    async fn touch_api_tokens(&self, used: &[(TokenId, Timestamp)]) -> StoreResult<()>;
    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()>;
    /// Newest first (by id), filtered; `limit` as other listings.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Page<AuditEntry>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_in_any_order_without_duplicates_and_refuse_unknown_ones() {
        assert_eq!(
            parse_scopes("write, ingest,read,ingest").unwrap(),
            vec![Scope::Ingest, Scope::Read, Scope::Write]
        );
        assert!(parse_scopes("read,admin").is_err());
        assert!(parse_scopes("").unwrap().is_empty());
    }

    #[test]
    fn a_token_is_unusable_once_revoked_or_at_its_expiry() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut token = ApiToken {
            id: TokenId::new(),
            name: "siem".into(),
            scopes: vec![Scope::Ingest],
            created_at: now,
            expires_at: Some(now + chrono::Duration::seconds(10)),
            last_used_at: None,
            revoked_at: None,
        };
        assert_eq!(token.usable_at(now), Ok(()));
        assert_eq!(
            token.usable_at(now + chrono::Duration::seconds(10)),
            Err(TokenRefusal::Expired)
        );
        token.revoked_at = Some(now);
        assert_eq!(token.usable_at(now), Err(TokenRefusal::Revoked));
        assert!(token.allows(Scope::Ingest) && !token.allows(Scope::Read));
    }

    #[test]
    fn a_token_reference_is_an_id_when_it_parses_as_one() {
        let id = TokenId::new();
        assert_eq!(TokenRef::parse(&id.to_string()), TokenRef::Id(id));
        assert_eq!(TokenRef::parse("siem"), TokenRef::Name("siem".into()));
        assert_eq!(token_hash("abc").len(), 64);
    }
}
