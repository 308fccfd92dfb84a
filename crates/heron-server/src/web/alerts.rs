//! Notices and alerts bound to no ticket (`/alerts`), escalating a notice
//! (`POST /notices/{id}/escalate`) and binding an alert to a ticket
//! (`POST /alerts/{id}/bind`).
//!
//! Invariants: both changes need the viewer's CSRF token and go through the ticket service,
//! which records the viewer on the ticket; the browser is sent back to `/alerts`.

use super::{
    CsrfForm, PAGE_SIZE, PageError, Viewer, actor_of, app_error, bad_request, check_csrf, label,
    or_dash, parse_id, render, see_other, signed_in, when,
};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use heron_core::ports::{AlertQuery, TicketQuery};
use heron_core::{AlertId, NoticeId, TicketId, TicketStatus};
use serde::Deserialize;

struct NoticeView {
    id: NoticeId,
    title: String,
    schema: String,
    severity: String,
    channel: String,
    ticket: Option<TicketId>,
    created_at: String,
    created_at_iso: String,
}

struct UnboundAlertView {
    id: AlertId,
    title: String,
    schema: String,
    severity: String,
    status: String,
    created_at: String,
    created_at_iso: String,
}

/// An active ticket offered for binding.
struct TicketChoice {
    id: TicketId,
    title: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    viewer: Viewer,
    notices: Vec<NoticeView>,
    alerts: Vec<UnboundAlertView>,
    /// The newest active tickets, suggested when binding (any ticket id is accepted).
    choices: Vec<TicketChoice>,
}

pub(super) async fn alerts_page(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let store = &state.inner.store;
    let notices = store
        .list_notices(&heron_core::ports::NoticeQuery {
            limit: PAGE_SIZE,
            ..Default::default()
        })
        .await?
        .items;
    let alerts = store
        .list_alerts(&AlertQuery {
            unbound: true,
            limit: PAGE_SIZE,
            ..AlertQuery::default()
        })
        .await?
        .items;
    let mut choices = Vec::new();
    if !alerts.is_empty() && !viewer.csrf.is_empty() {
        for status in [TicketStatus::Open, TicketStatus::Acknowledged] {
            let page = store
                .list_tickets(&TicketQuery {
                    status: Some(status),
                    limit: PAGE_SIZE,
                    ..TicketQuery::default()
                })
                .await?;
            choices.extend(page.items.into_iter().map(|t| TicketChoice {
                id: t.id,
                title: t.title,
            }));
        }
    }
    render(&AlertsPage {
        viewer,
        choices,
        notices: notices
            .iter()
            .map(|n| NoticeView {
                id: n.id,
                title: n.title.clone(),
                schema: n.schema.to_string(),
                severity: n.severity.to_string(),
                channel: or_dash(n.channel.as_deref()),
                ticket: n.ticket_id,
                created_at: when(n.created_at),
                created_at_iso: n.created_at.to_rfc3339(),
            })
            .collect(),
        alerts: alerts
            .iter()
            .map(|a| UnboundAlertView {
                id: a.id,
                title: a.title.clone(),
                schema: a.schema.to_string(),
                severity: a.severity.to_string(),
                status: label(&a.status),
                created_at: when(a.created_at),
                created_at_iso: a.created_at.to_rfc3339(),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct BindForm {
    csrf: String,
    ticket: String,
}

/// Binds an unbound alert to the ticket the form names, as the signed-in user.
pub(super) async fn bind(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    form: Result<axum::Form<BindForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &form.csrf)?;
    let alert: AlertId = parse_id(&raw, "an alert")?;
    let ticket: TicketId = parse_id(form.ticket.trim(), "a ticket")?;
    state
        .inner
        .tickets
        .bind_alert(alert, ticket, &actor_of(&viewer, &ctx))
        .await
        .map_err(app_error)?;
    Ok(see_other("/alerts"))
}

/// Opens a ticket from a notice, as the signed-in user.
pub(super) async fn escalate(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &form.csrf)?;
    let notice: NoticeId = parse_id(&raw, "a notice")?;
    state
        .inner
        .tickets
        .escalate_notice(notice, &actor_of(&viewer, &ctx))
        .await
        .map_err(app_error)?;
    Ok(see_other("/alerts"))
}
