//! A ticket's page (`/tickets/{id}`) and the actions taken from it
//! (`POST /tickets/{id}/actions`).
//!
//! Invariants: an action needs the viewer's CSRF token and goes through the ticket service
//! (the lifecycle, a system comment naming the viewer), then sends the browser back to the
//! ticket; the sections an action changes are marked `data-swap` in the template, so the
//! script can swap them in from that page.

use super::{
    CommentView, PageError, SEVERITIES, Viewer, actor_of, app_error, bad_request, check_csrf,
    comment_view, existing, label, or_dash, parse_id, render, see_other, signed_in, when,
};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use heron_core::agent::{AgentRun, Finding};
use heron_core::ports::AlertQuery;
use heron_core::{Severity, Ticket, TicketId, TicketStatus};
use serde::Deserialize;

/// Alerts shown on a ticket page (the API pages through the rest).
const ALERTS_SHOWN: usize = 20;
/// Characters of a tool result shown before it is expanded.
const PREVIEW_CHARS: usize = 120;

struct FindingView {
    verdict: String,
    severity: String,
    confidence: String,
    summary: String,
    reason: String,
    recommendation: String,
    evidence: Vec<String>,
}

struct AttributeView {
    key: String,
    value: String,
}

struct AlertView {
    title: String,
    schema: String,
    severity: String,
    created_at: String,
    created_at_iso: String,
    attributes: Vec<AttributeView>,
    raw: String,
}

struct StepView {
    index: u32,
    tool: String,
    arguments: String,
    result: String,
    result_preview: String,
    error: Option<String>,
    latency_ms: u64,
    tokens: u32,
    bytes_processed: String,
}

struct RunView {
    purpose: String,
    status: String,
    model: String,
    tokens: u32,
    started_at: String,
    error: Option<String>,
    steps: Vec<StepView>,
}

struct TicketView {
    id: TicketId,
    /// The assignee for the form (empty when none).
    assignee_value: String,
    title: String,
    description: String,
    status: String,
    conclusion: Option<String>,
    severity: String,
    assignee: String,
    schema: String,
    alert_count: u64,
    first_seen: String,
    last_seen: String,
}

struct SimilarView {
    id: TicketId,
    title: String,
    status: String,
    conclusion: String,
    verdict: String,
    score: String,
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    severities: Vec<&'static str>,
    conclusions: Vec<&'static str>,
    similar: Vec<SimilarView>,
    viewer: Viewer,
    ticket: TicketView,
    finding: Option<FindingView>,
    alerts: Vec<AlertView>,
    comments: Vec<CommentView>,
    runs: Vec<RunView>,
}

fn run_view(run: &AgentRun) -> RunView {
    RunView {
        purpose: label(&run.purpose),
        status: label(&run.status),
        model: run.model.clone(),
        tokens: run.usage.total_tokens,
        started_at: when(run.started_at),
        error: run.error.clone(),
        steps: run
            .steps
            .iter()
            .map(|s| {
                let result = s.result.clone().unwrap_or_default();
                StepView {
                    index: s.index,
                    tool: s.tool.clone().unwrap_or_else(|| "(model)".into()),
                    arguments: s
                        .arguments
                        .as_ref()
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    result_preview: result.chars().take(PREVIEW_CHARS).collect(),
                    result,
                    error: s.error.clone(),
                    latency_ms: s.latency_ms,
                    tokens: s.tokens.total_tokens,
                    bytes_processed: s.bytes_processed.map(|b| b.to_string()).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// Past tickets like this one, when the ticket has been embedded (its triage job embeds it);
/// the page never waits on an embedding model.
async fn similar_to(state: &ServerState, ticket: &Ticket) -> Vec<SimilarView> {
    let Some(agent) = &state.inner.agent else {
        return Vec::new();
    };
    let store = &state.inner.store;
    let model = agent.embedder.model();
    let found = match store.get_ticket_embedding(ticket.id, model).await {
        Ok(Some(vector)) => {
            store
                .similar_tickets(model, &vector, 5, Some(ticket.id))
                .await
        }
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    match found {
        Ok(found) => found
            .into_iter()
            .map(|s| SimilarView {
                id: s.ticket_id,
                title: s.title,
                status: s.status.to_string(),
                conclusion: s.conclusion.map(|c| c.to_string()).unwrap_or_default(),
                verdict: s
                    .finding
                    .and_then(|f| serde_json::from_value::<Finding>(f).ok())
                    .map(|f| label(&f.verdict))
                    .unwrap_or_default(),
                score: format!("{:.2}", s.score),
            })
            .collect(),
        Err(e) => {
            tracing::warn!(ticket_id = %ticket.id, error = %e, "similar tickets could not be read for the ticket page");
            Vec::new()
        }
    }
}

pub(super) async fn ticket(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let t = existing(&state, &raw).await?;
    let id = t.id;
    let store = &state.inner.store;
    let alerts = store
        .list_alerts(&AlertQuery {
            ticket: Some(id),
            limit: ALERTS_SHOWN,
            ..AlertQuery::default()
        })
        .await?
        .items;
    let comments = store.list_comments(id).await?;
    let runs = store.list_agent_runs(id).await?;
    let similar = similar_to(&state, &t).await;
    let finding = t
        .finding
        .as_ref()
        .and_then(|f| serde_json::from_value::<Finding>(f.clone()).ok())
        .map(|f| FindingView {
            verdict: label(&f.verdict),
            severity: label(&f.severity),
            confidence: format!("{:.0} %", f.confidence * 100.0),
            summary: f.summary,
            reason: f.reason,
            recommendation: f.recommendation,
            evidence: f.evidence,
        });
    render(&TicketPage {
        viewer,
        severities: SEVERITIES.iter().map(|s| s.as_str()).collect(),
        conclusions: [
            "intended",
            "unaffected",
            "false_positive",
            "true_positive",
            "escalated",
        ]
        .into(),
        similar,
        ticket: TicketView {
            id: t.id,
            assignee_value: t.assignee.clone().unwrap_or_default(),
            title: t.title.clone(),
            description: t.description.clone(),
            status: t.status.to_string(),
            conclusion: t.conclusion.map(|c| c.to_string()),
            severity: t.severity.to_string(),
            assignee: or_dash(t.assignee.as_deref()),
            schema: t.schema.to_string(),
            alert_count: t.alert_count,
            first_seen: when(t.first_seen),
            last_seen: when(t.last_seen),
        },
        finding,
        alerts: alerts
            .iter()
            .map(|a| AlertView {
                title: a.title.clone(),
                schema: a.schema.to_string(),
                severity: a.severity.to_string(),
                created_at: when(a.created_at),
                created_at_iso: a.created_at.to_rfc3339(),
                attributes: a
                    .attributes
                    .iter()
                    .map(|attr| AttributeView {
                        key: attr.key.clone(),
                        value: attr.value.clone(),
                    })
                    .collect(),
                raw: serde_json::to_string_pretty(&a.data).unwrap_or_default(),
            })
            .collect(),
        comments: comments.iter().map(comment_view).collect(),
        runs: runs.iter().map(run_view).collect(),
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    csrf: String,
    action: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    conclusion: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    text: String,
}

/// One change to a ticket from its page, as the signed-in user; back to the page after.
pub(super) async fn ticket_action(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    use heron_core::{Conclusion, TicketChange};
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &form.csrf)?;
    let id: TicketId = parse_id(&raw, "a ticket")?;
    let actor = actor_of(&viewer, &ctx);
    let tickets = &state.inner.tickets;
    let change = match form.action.as_str() {
        "comment" => {
            tickets
                .add_comment(id, &actor, &form.text)
                .await
                .map_err(app_error)?;
            None
        }
        "acknowledge" => Some(TicketChange {
            status: Some(TicketStatus::Acknowledged),
            ..TicketChange::default()
        }),
        "reopen" => Some(TicketChange {
            status: Some(TicketStatus::Open),
            ..TicketChange::default()
        }),
        "assign" => Some(TicketChange {
            assignee: Some(Some(form.assignee.trim().to_owned()).filter(|a| !a.is_empty())),
            ..TicketChange::default()
        }),
        "severity" => Some(TicketChange {
            severity: Some(
                form.severity
                    .parse::<Severity>()
                    .map_err(|_| bad_request(format!("unknown severity {:?}", form.severity)))?,
            ),
            ..TicketChange::default()
        }),
        "resolve" => Some(TicketChange {
            status: Some(TicketStatus::Resolved),
            conclusion: Some(
                form.conclusion
                    .parse::<Conclusion>()
                    .map_err(|_| bad_request("choose a conclusion".into()))?,
            ),
            reason: Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty()),
            ..TicketChange::default()
        }),
        other => return Err(bad_request(format!("unknown action {other:?}"))),
    };
    if let Some(change) = change {
        tickets
            .update(id, change, &actor)
            .await
            .map_err(app_error)?;
    }
    Ok(see_other(&format!("/tickets/{id}")))
}
