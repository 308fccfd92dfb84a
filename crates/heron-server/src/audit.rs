//! `GET /api/v1/audit`: the audit log, newest first, filtered and paged.

use crate::ApiError;
use crate::api::{ApiResult, limit};
use crate::error::ErrorBody;
use crate::state::ServerState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use heron_core::access::{AuditEntry, AuditQuery};
use heron_core::ports::Page;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<ServerState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only changes by this actor (exact).
    actor: Option<String>,
    /// Only this action (`ticket.update`, `token.create`…).
    action: Option<String>,
    /// Only changes of this ticket.
    ticket: Option<String>,
    /// RFC 3339; at or after.
    since: Option<String>,
    /// RFC 3339; strictly before.
    until: Option<String>,
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn time(value: Option<&str>, what: &str) -> Result<Option<heron_core::Timestamp>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    ApiError::BadRequest(format!("{what} must be an RFC 3339 time, got {v:?}"))
                })
        })
        .transpose()
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// List audit entries (who changed what, when, from where), newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_audit(
    State(state): State<ServerState>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult<Page<AuditEntry>> {
    let Query(p) =
        query.map_err(|r| ApiError::BadRequest(format!("bad query string: {}", r.body_text())))?;
    let query = AuditQuery {
        actor: nonempty(p.actor),
        action: nonempty(p.action),
        ticket: nonempty(p.ticket)
            .map(|t| crate::api::id(&t, "ticket"))
            .transpose()?,
        since: time(p.since.as_deref(), "since")?,
        until: time(p.until.as_deref(), "until")?,
        before: nonempty(p.cursor)
            .map(|c| {
                c.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid cursor {c:?}")))
            })
            .transpose()?,
        limit: limit(p.limit)?,
    };
    Ok(Json(state.inner.store.list_audit(&query).await?))
}
