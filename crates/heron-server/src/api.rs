//! The REST API under `/api/v1`. Handlers parse, authenticate and delegate.

use crate::ApiError;
use crate::access::RequestContext;
use crate::error::ErrorBody;
use crate::state::ServerState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use heron_app::Actor;
use heron_core::ports::{AlertQuery, EventQuery, NoticeQuery, Page, TicketQuery};
use heron_core::{
    Alert, AlertId, Comment, CommentSource, Conclusion, Event, EventId, EventState, Notice,
    NoticeId, SchemaName, Severity, Ticket, TicketChange, TicketId, TicketStatus,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::str::FromStr;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(crate) fn routes() -> OpenApiRouter<ServerState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(retry_event))
        .routes(routes!(retry_failed_events))
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(bind_alert))
        .routes(routes!(list_tickets))
        .routes(routes!(get_ticket, patch_ticket))
        .routes(routes!(list_comments, add_comment))
        .routes(routes!(list_notices))
        .routes(routes!(escalate_notice))
        .routes(routes!(policies))
        .routes(routes!(reload_policies))
        .routes(routes!(ticket_tuning))
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub(crate) fn limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_LIMIT}, got {n}"
        ))),
    }
}

fn parse<T: FromStr>(value: Option<&str>, what: &str) -> Result<Option<T>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| T::from_str(v).map_err(|_| ApiError::BadRequest(format!("invalid {what} {v:?}"))))
        .transpose()
}

pub(crate) fn id<T: FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    T::from_str(raw).map_err(|_| ApiError::BadRequest(format!("invalid {what} id {raw:?}")))
}

/// The acting user: the `X-Heron-User` header if given, else "api". A display name, not an
/// identity (docs/api.md); a value that is too long or holds control characters is refused
/// rather than silently replaced.
///
/// A request made with a stored token acts as that token (its name), whatever the header
/// says: the token is the identity.
pub(crate) fn actor(headers: &HeaderMap, ctx: &RequestContext) -> Result<Actor, ApiError> {
    if let Some(token) = ctx.stored_token() {
        return Ok(Actor {
            name: token.name.clone(),
            source: CommentSource::Api,
            remote: ctx.remote.clone(),
        });
    }
    let bad = || {
        ApiError::BadRequest(
            "X-Heron-User must be 1 to 128 printable characters without control characters".into(),
        )
    };
    let name = match headers.get("x-heron-user") {
        None => "api",
        Some(value) => {
            let text = value.to_str().map_err(|_| bad())?.trim();
            if text.is_empty() || text.len() > 128 || text.chars().any(char::is_control) {
                return Err(bad());
            }
            text
        }
    };
    Ok(Actor {
        name: name.to_owned(),
        source: CommentSource::Api,
        remote: ctx.remote.clone(),
    })
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

/// Query-string errors in the API's JSON error shape (axum's own answer is plain text).
fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest(format!("bad query string: {}", rejection.body_text()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventListParams {
    /// pending, processing, processed, ignored or failed
    state: Option<String>,
    schema: Option<String>,
    /// Cursor: the `next_cursor` of the previous page.
    before: Option<String>,
    limit: Option<usize>,
}

/// List events, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventListParams),
    responses((status = 200, body = Page<Event>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_events(
    State(state): State<ServerState>,
    query: Result<Query<EventListParams>, QueryRejection>,
) -> ApiResult<Page<Event>> {
    let Query(p) = query.map_err(bad_query)?;
    let query = EventQuery {
        state: parse::<EventState>(p.state.as_deref(), "state")?,
        schema: p
            .schema
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(SchemaName::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        before: parse(p.before.as_deref(), "cursor")?,
        limit: limit(p.limit)?,
    };
    Ok(Json(state.inner.store.list_events(&query).await?))
}

/// Get one event with its body, state and last error.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", params(("id" = String, Path)),
    responses((status = 200, body = Event), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_event(State(state): State<ServerState>, Path(raw): Path<String>) -> ApiResult<Event> {
    let event_id: EventId = id(&raw, "event")?;
    let event = state.inner.store.get_event(event_id).await?;
    event
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("event {event_id} not found")))
}

/// Re-run a failed or ignored event with the current policies.
#[utoipa::path(post, path = "/api/v1/events/{id}/retry", tag = "events", params(("id" = String, Path)),
    responses((status = 200, body = Event), (status = 404, body = ErrorBody), (status = 409, description = "Not failed or ignored", body = ErrorBody)),
    security(("bearer" = [])))]
async fn retry_event(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> ApiResult<Event> {
    let who = actor(&headers, &ctx)?;
    let event = state
        .inner
        .tickets
        .retry_event(id(&raw, "event")?, &who)
        .await?;
    Ok(Json(event))
}

#[derive(Debug, Serialize, ToSchema)]
struct RetriedBody {
    retried: u64,
}

/// Re-run every failed event.
#[utoipa::path(post, path = "/api/v1/events/retry-failed", tag = "events",
    responses((status = 200, body = RetriedBody)), security(("bearer" = [])))]
async fn retry_failed_events(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> ApiResult<RetriedBody> {
    let retried = state
        .inner
        .tickets
        .retry_failed_events(&actor(&headers, &ctx)?)
        .await?;
    Ok(Json(RetriedBody { retried }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AlertListParams {
    schema: Option<String>,
    /// Only alerts of this ticket.
    ticket: Option<String>,
    /// Only alerts bound to no ticket.
    unbound: Option<bool>,
    before: Option<String>,
    limit: Option<usize>,
}

/// List alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertListParams),
    responses((status = 200, body = Page<Alert>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn list_alerts(
    State(state): State<ServerState>,
    query: Result<Query<AlertListParams>, QueryRejection>,
) -> ApiResult<Page<Alert>> {
    let Query(p) = query.map_err(bad_query)?;
    let query = AlertQuery {
        schema: p
            .schema
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(SchemaName::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        ticket: parse(p.ticket.as_deref(), "ticket id")?,
        unbound: p.unbound.unwrap_or(false),
        before: parse(p.before.as_deref(), "cursor")?,
        limit: limit(p.limit)?,
    };
    Ok(Json(state.inner.store.list_alerts(&query).await?))
}

/// Get one alert with its raw data.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = Alert), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_alert(State(state): State<ServerState>, Path(raw): Path<String>) -> ApiResult<Alert> {
    let alert_id: AlertId = id(&raw, "alert")?;
    let alert = state.inner.store.get_alert(alert_id).await?;
    alert
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("alert {alert_id} not found")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BindAlertBody {
    ticket_id: String,
}

/// Bind an alert that is on no ticket (a notice's or a discarded one) to a ticket; the
/// ticket records who did it (`X-Heron-User` or "api"). 409 when the alert is on a ticket.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/bind", tag = "alerts", params(("id" = String, Path)),
    request_body = BindAlertBody,
    responses((status = 200, body = Alert), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already on a ticket", body = ErrorBody)),
    security(("bearer" = [])))]
async fn bind_alert(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Json<BindAlertBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Alert> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let alert = state
        .inner
        .tickets
        .bind_alert(
            id(&raw, "alert")?,
            id(&body.ticket_id, "ticket")?,
            &actor(&headers, &ctx)?,
        )
        .await?;
    Ok(Json(alert))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TicketListParams {
    /// open, acknowledged, resolved or archived
    status: Option<String>,
    /// info, low, medium, high or critical
    severity: Option<String>,
    assignee: Option<String>,
    tag: Option<String>,
    /// Case-insensitive text in the title or description.
    q: Option<String>,
    /// created (default), updated or severity
    sort: Option<String>,
    /// desc (default: newest, latest or most severe first) or asc
    order: Option<String>,
    /// Cursor: the `next_cursor` of the previous page (of the same order).
    before: Option<String>,
    limit: Option<usize>,
}

/// List tickets, newest first unless `sort` and `order` say otherwise, with filters and
/// cursor pagination.
#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", params(TicketListParams),
    responses((status = 200, body = Page<Ticket>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
async fn list_tickets(
    State(state): State<ServerState>,
    query: Result<Query<TicketListParams>, QueryRejection>,
) -> ApiResult<Page<Ticket>> {
    let Query(p) = query.map_err(bad_query)?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let query = TicketQuery {
        status: parse::<TicketStatus>(p.status.as_deref(), "status")?,
        severity: parse::<Severity>(p.severity.as_deref(), "severity")?,
        assignee: non_empty(p.assignee),
        tag: non_empty(p.tag),
        text: non_empty(p.q),
        sort: heron_core::dashboard::TicketSort {
            key: parse(p.sort.as_deref(), "sort")?.unwrap_or_default(),
            direction: parse(p.order.as_deref(), "order")?.unwrap_or_default(),
        },
        cursor: parse(p.before.as_deref(), "cursor")?,
        limit: limit(p.limit)?,
    };
    query
        .checked_cursor()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(state.inner.store.list_tickets(&query).await?))
}

/// Get one ticket.
#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets", params(("id" = String, Path)),
    responses((status = 200, body = Ticket), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn get_ticket(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
) -> ApiResult<Ticket> {
    let ticket_id: TicketId = id(&raw, "ticket")?;
    let ticket = state.inner.store.get_ticket(ticket_id).await?;
    ticket
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("ticket {ticket_id} not found")))
}

/// A change to a ticket; absent fields stay as they are, `"assignee": null` unassigns.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TicketPatch {
    status: Option<TicketStatus>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    assignee: Option<Option<String>>,
    severity: Option<Severity>,
    conclusion: Option<Conclusion>,
    reason: Option<String>,
}

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Change status, assignee, severity, or resolve with a conclusion and reason. An invalid
/// lifecycle transition is 409.
#[utoipa::path(patch, path = "/api/v1/tickets/{id}", tag = "tickets", params(("id" = String, Path)),
    request_body = TicketPatch,
    responses((status = 200, body = Ticket), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Invalid lifecycle transition", body = ErrorBody)),
    security(("bearer" = [])))]
async fn patch_ticket(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Json<TicketPatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Ticket> {
    let Json(patch) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let change = TicketChange {
        status: patch.status,
        assignee: patch.assignee.map(|a| a.filter(|s| !s.trim().is_empty())),
        severity: patch.severity,
        conclusion: patch.conclusion,
        reason: patch.reason,
    };
    let ticket = state
        .inner
        .tickets
        .update(id(&raw, "ticket")?, change, &actor(&headers, &ctx)?)
        .await?;
    Ok(Json(ticket))
}

/// A ticket's comments, oldest first.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/comments", tag = "tickets", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Comment>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn list_comments(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
) -> ApiResult<Vec<Comment>> {
    let ticket_id: TicketId = id(&raw, "ticket")?;
    if state.inner.store.get_ticket(ticket_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("ticket {ticket_id} not found")));
    }
    Ok(Json(state.inner.store.list_comments(ticket_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCommentBody {
    text: String,
}

/// Add a comment; the author is the `X-Heron-User` header or "api".
#[utoipa::path(post, path = "/api/v1/tickets/{id}/comments", tag = "tickets", params(("id" = String, Path)),
    request_body = NewCommentBody,
    responses((status = 201, body = Comment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn add_comment(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Json<NewCommentBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let comment = state
        .inner
        .tickets
        .add_comment(id(&raw, "ticket")?, &actor(&headers, &ctx)?, &body.text)
        .await?;
    Ok((StatusCode::CREATED, Json(comment)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NoticeListParams {
    escalated: Option<bool>,
    before: Option<String>,
    limit: Option<usize>,
}

/// List notices, newest first.
#[utoipa::path(get, path = "/api/v1/notices", tag = "notices", params(NoticeListParams),
    responses((status = 200, body = Page<Notice>)), security(("bearer" = [])))]
async fn list_notices(
    State(state): State<ServerState>,
    query: Result<Query<NoticeListParams>, QueryRejection>,
) -> ApiResult<Page<Notice>> {
    let Query(p) = query.map_err(bad_query)?;
    let query = NoticeQuery {
        escalated: p.escalated,
        before: parse(p.before.as_deref(), "cursor")?,
        limit: limit(p.limit)?,
    };
    Ok(Json(state.inner.store.list_notices(&query).await?))
}

/// Escalate a notice to a ticket.
#[utoipa::path(post, path = "/api/v1/notices/{id}/escalate", tag = "notices", params(("id" = String, Path)),
    responses((status = 201, body = Ticket), (status = 404, body = ErrorBody), (status = 409, description = "Already escalated", body = ErrorBody)),
    security(("bearer" = [])))]
async fn escalate_notice(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<Ticket>), ApiError> {
    let notice_id: NoticeId = id(&raw, "notice")?;
    let ticket = state
        .inner
        .tickets
        .escalate_notice(notice_id, &actor(&headers, &ctx)?)
        .await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// The policy set in force and how its reloads went.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PoliciesView {
    #[serde(flatten)]
    info: heron_core::policy::PolicyInfo,
    reload: ReloadView,
}

/// What the last reloads did. `last_error` is set while the newest policies on disk are
/// refused (they do not compile or their own tests fail) and an older set is in force.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReloadView {
    /// Whether this process can reload (it was started from a policy folder).
    reloadable: bool,
    /// Sets loaded so far, the first one included.
    generation: u64,
    loaded_at: Option<chrono::DateTime<chrono::Utc>>,
    last_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `watch`, `api` or `sighup`.
    last_trigger: Option<String>,
    last_error: Option<String>,
    reloads_ok: u64,
    reloads_failed: u64,
}

fn policies_view(handle: &heron_app::PolicyHandle) -> PoliciesView {
    let status = handle.status();
    PoliciesView {
        info: handle.current().info(),
        reload: ReloadView {
            reloadable: handle.is_reloadable(),
            generation: status.generation,
            loaded_at: status.loaded_at,
            last_attempt_at: status.last_attempt_at,
            last_trigger: status.last_trigger,
            last_error: status.last_error,
            reloads_ok: status.reloads_ok,
            reloads_failed: status.reloads_failed,
        },
    }
}

/// The loaded policy set (packages, the schemas with an ingest policy) and its reload status.
#[utoipa::path(get, path = "/api/v1/policies", tag = "ops",
    responses((status = 200, body = PoliciesView)), security(("bearer" = [])))]
async fn policies(State(state): State<ServerState>) -> ApiResult<PoliciesView> {
    Ok(Json(policies_view(&state.inner.policies)))
}

/// Loads the policy folder again: the new set is compiled and its own `test_*` rules run,
/// and only then is it swapped in. A refused set leaves the one in force (422 with the
/// error, also kept in `GET /api/v1/policies`).
#[utoipa::path(post, path = "/api/v1/policies/reload", tag = "ops",
    responses((status = 200, body = PoliciesView),
        (status = 409, body = ErrorBody, description = "started without a policy folder"),
        (status = 422, body = ErrorBody, description = "the new set was refused")),
    security(("bearer" = [])))]
async fn reload_policies(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> ApiResult<PoliciesView> {
    let who = actor(&headers, &ctx)?;
    let handle = state.inner.policies.clone();
    let outcome = tokio::task::spawn_blocking(move || handle.reload("api"))
        .await
        .map_err(|e| ApiError::Internal(format!("policy reload task: {e}")))?;
    let details = match &outcome {
        Ok(status) => serde_json::json!({ "ok": true, "generation": status.generation }),
        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
    };
    if !matches!(outcome, Err(heron_app::ReloadError::NotReloadable)) {
        state
            .inner
            .tickets
            .audit(&who, "policy.reload", None, Some("api".into()), details)
            .await;
    }
    match outcome {
        Ok(_) => Ok(Json(policies_view(&state.inner.policies))),
        Err(e @ heron_app::ReloadError::NotReloadable) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ heron_app::ReloadError::Refused(_)) => Err(ApiError::Unprocessable(e.to_string())),
    }
}

/// A tuning draft for a ticket resolved as `false_positive` or `intended`: a narrow
/// `suppress` rule for `package triage` matched on the attributes its alerts share, a test
/// from one of them, and a replay of the schema's stored events saying what it would change;
/// computed on request and shown only when it compiles and every test passes. 409 for other
/// tickets (or without a policy folder), 422 when the draft is not valid.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/tuning", tag = "tickets",
    params(("id" = String, Path)),
    responses((status = 200, body = Object, description = "{ticket_id, schema, author, matched_on, rule_path, rule, test_path, test, patch, validation: {compiled, tests_passed, tests_total, events_changed, tickets_changed, replay}}"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
async fn ticket_tuning(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
) -> ApiResult<serde_json::Value> {
    use heron_app::tuning::{TuningError, TuningSettings, draft};
    let ticket_id: TicketId = id(&raw, "ticket")?;
    let Some(tuning) = state.inner.tuning.clone() else {
        return Err(ApiError::Conflict(
            "tuning drafts need the policy folder; this process has none".into(),
        ));
    };
    let since = chrono::Duration::from_std(tuning.replay_window)
        .ok()
        .and_then(|w| chrono::Utc::now().checked_sub_signed(w));
    let result = draft(
        state.inner.store.clone(),
        state.inner.policies.current(),
        tuning.workbench,
        tuning.model,
        ticket_id,
        &TuningSettings {
            since,
            dedup_window: tuning.dedup_window,
        },
    )
    .await;
    match result {
        Ok(draft) => serde_json::to_value(&draft)
            .map(Json)
            .map_err(|e| ApiError::Internal(e.to_string())),
        Err(e @ TuningError::NotFound(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ (TuningError::NotTunable(_) | TuningError::NoAlerts(_))) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(e @ TuningError::Invalid(_)) => Err(ApiError::Unprocessable(e.to_string())),
        Err(TuningError::Store(e)) => Err(heron_app::AppError::from(e).into()),
    }
}
