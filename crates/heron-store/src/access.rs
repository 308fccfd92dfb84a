//! [`heron_core::access::AccessStore`] on both databases. The tables keep ids as TEXT and
//! times as unix microseconds on both backends (like the Slack tables), so one set of queries
//! (this macro) serves both. Creating and revoking a token write the token and its audit
//! entry in one transaction (`access_tx`: `BEGIN IMMEDIATE` on SQLite).

use heron_core::access::{ApiToken, AuditEntry, AuditSource, Scope};
use heron_core::ports::{StoreError, StoreResult};
use heron_core::{AuditId, TicketId, TokenId};
use std::str::FromStr;

pub(crate) type TokenRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

macro_rules! token_columns {
    () => {
        "id, name, scopes, created_at, expires_at, last_used_at, revoked_at"
    };
}
pub(crate) use token_columns;

macro_rules! audit_columns {
    () => {
        "id, at, actor, source, remote, action, ticket_id, target, details"
    };
}
pub(crate) use audit_columns;

pub(crate) type AuditRow = (
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt row: {what}"))
}

pub(crate) fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn token(row: TokenRow) -> StoreResult<ApiToken> {
    let (id, name, scopes, created, expires, used, revoked) = row;
    let time = crate::slack::time;
    Ok(ApiToken {
        id: TokenId::from_str(&id).map_err(|e| corrupt(format!("token id {id:?}: {e}")))?,
        name,
        scopes: heron_core::access::parse_scopes(&scopes).map_err(corrupt)?,
        created_at: time(created)?,
        expires_at: expires.map(time).transpose()?,
        last_used_at: used.map(time).transpose()?,
        revoked_at: revoked.map(time).transpose()?,
    })
}

pub(crate) fn audit(row: AuditRow) -> StoreResult<AuditEntry> {
    let (id, at, actor, source, remote, action, ticket, target, details) = row;
    Ok(AuditEntry {
        id: AuditId::from_str(&id).map_err(|e| corrupt(format!("audit id {id:?}: {e}")))?,
        at: crate::slack::time(at)?,
        actor,
        source: AuditSource::from_str(&source).map_err(corrupt)?,
        remote,
        action,
        ticket_id: ticket
            .map(|t| TicketId::from_str(&t).map_err(|e| corrupt(format!("ticket id {t:?}: {e}"))))
            .transpose()?,
        target,
        details: serde_json::from_str(&details).map_err(corrupt)?,
    })
}

/// Implements `AccessStore` for `$store`, which provides `access_tx` (a write transaction).
macro_rules! access_store {
    ($store:ty, $db:ty) => {
        const INSERT_AUDIT: &str = concat!(
            "INSERT INTO audit_log (",
            $crate::access::audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );

        async fn insert_audit<'e, E>(
            executor: E,
            entry: &heron_core::access::AuditEntry,
        ) -> heron_core::ports::StoreResult<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            sqlx::query(INSERT_AUDIT)
                .bind(entry.id.to_string())
                .bind(crate::rows::micros(entry.at))
                .bind(entry.actor.clone())
                .bind(entry.source.as_str())
                .bind(entry.remote.clone())
                .bind(entry.action.clone())
                .bind(entry.ticket_id.map(|t| t.to_string()))
                .bind(entry.target.clone())
                .bind(crate::rows::json_text(&entry.details)?)
                .execute(executor)
                .await
                .map_err(crate::error::map)?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl heron_core::access::AccessStore for $store {
            async fn create_api_token(
                &self,
                token: heron_core::access::NewApiToken,
                audit: heron_core::access::AuditEntry,
            ) -> heron_core::ports::StoreResult<heron_core::access::ApiToken> {
                let mut tx = self.access_tx().await?;
                let row: $crate::access::TokenRow = sqlx::query_as(concat!(
                    "INSERT INTO api_tokens (id, name, hash, scopes, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                    $crate::access::token_columns!()
                ))
                .bind(token.id.to_string())
                .bind(token.name.clone())
                .bind(token.hash.clone())
                .bind($crate::access::scopes_text(&token.scopes))
                .bind(crate::rows::micros(token.created_at))
                .bind(token.expires_at.map(crate::rows::micros))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match crate::error::map(e) {
                    heron_core::ports::StoreError::Conflict(_) => {
                        heron_core::ports::StoreError::Conflict(format!(
                            "a token named {:?} exists already",
                            token.name
                        ))
                    }
                    other => other,
                })?;
                insert_audit(&mut *tx, &audit).await?;
                tx.commit().await.map_err(crate::error::map)?;
                $crate::access::token(row)
            }

            async fn find_api_token(
                &self,
                hash: &str,
            ) -> heron_core::ports::StoreResult<Option<heron_core::access::ApiToken>> {
                let row: Option<$crate::access::TokenRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::access::token_columns!(),
                    " FROM api_tokens WHERE hash = $1"
                ))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::map)?;
                row.map($crate::access::token).transpose()
            }

            async fn list_api_tokens(
                &self,
            ) -> heron_core::ports::StoreResult<Vec<heron_core::access::ApiToken>> {
                let rows: Vec<$crate::access::TokenRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::access::token_columns!(),
                    " FROM api_tokens ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::map)?;
                rows.into_iter().map($crate::access::token).collect()
            }

            async fn revoke_api_token(
                &self,
                token: &heron_core::access::TokenRef,
                at: heron_core::Timestamp,
                audit: heron_core::access::AuditEntry,
            ) -> heron_core::ports::StoreResult<heron_core::access::ApiToken> {
                use heron_core::access::TokenRef;
                use heron_core::ports::StoreError;
                let mut tx = self.access_tx().await?;
                let (sql, key) = match token {
                    TokenRef::Id(id) => (
                        concat!(
                            "SELECT ",
                            $crate::access::token_columns!(),
                            " FROM api_tokens WHERE id = $1"
                        ),
                        id.to_string(),
                    ),
                    TokenRef::Name(name) => (
                        concat!(
                            "SELECT ",
                            $crate::access::token_columns!(),
                            " FROM api_tokens WHERE name = $1 AND revoked_at IS NULL"
                        ),
                        name.clone(),
                    ),
                };
                let row: Option<$crate::access::TokenRow> = sqlx::query_as(sql)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(crate::error::map)?;
                let mut found = match row {
                    Some(row) => $crate::access::token(row)?,
                    None => return Err(StoreError::NotFound(token.to_string())),
                };
                if found.revoked_at.is_some() {
                    return Err(StoreError::Conflict(format!("{token} is revoked already")));
                }
                sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1")
                    .bind(found.id.to_string())
                    .bind(crate::rows::micros(at))
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::error::map)?;
                insert_audit(&mut *tx, &audit).await?;
                tx.commit().await.map_err(crate::error::map)?;
                found.revoked_at = Some(heron_core::truncate_to_micros(at));
                Ok(found)
            }

            async fn touch_api_tokens(
                &self,
                used: &[(heron_core::TokenId, heron_core::Timestamp)],
            ) -> heron_core::ports::StoreResult<()> {
                for (id, at) in used {
                    sqlx::query(
                        "UPDATE api_tokens SET last_used_at = $2 \
                         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                    )
                    .bind(id.to_string())
                    .bind(crate::rows::micros(*at))
                    .execute(&self.pool)
                    .await
                    .map_err(crate::error::map)?;
                }
                Ok(())
            }

            async fn record_audit(
                &self,
                entry: heron_core::access::AuditEntry,
            ) -> heron_core::ports::StoreResult<()> {
                insert_audit(&self.pool, &entry).await
            }

            async fn list_audit(
                &self,
                query: &heron_core::access::AuditQuery,
            ) -> heron_core::ports::StoreResult<
                heron_core::ports::Page<heron_core::access::AuditEntry>,
            > {
                let limit = crate::rows::page_limit(query.limit);
                let rows: Vec<$crate::access::AuditRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::access::audit_columns!(),
                    " FROM audit_log WHERE ($1 IS NULL OR actor = $1) \
                     AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR ticket_id = $3) \
                     AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) \
                     AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
                ))
                .bind(query.actor.clone())
                .bind(query.action.clone())
                .bind(query.ticket.map(|t| t.to_string()))
                .bind(query.since.map(crate::rows::micros))
                .bind(query.until.map(crate::rows::micros))
                .bind(query.before.map(|b| b.to_string()))
                .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::error::map)?;
                let entries = rows
                    .into_iter()
                    .map($crate::access::audit)
                    .collect::<heron_core::ports::StoreResult<Vec<_>>>()?;
                Ok(crate::rows::page(entries, limit, |e| e.id.to_string()))
            }
        }
    };
}
pub(crate) use access_store;
