//! Stored events by state (`/events`) and retrying a failed or ignored one
//! (`POST /events/{id}/retry`).
//!
//! Invariants: a retry needs the viewer's CSRF token and goes through the same use case as
//! the API (the event is pending again with a fresh count of attempts); events have no
//! comments, so who retried is written to the server log. The browser is sent back to the
//! list it came from.

use super::{
    OptionView, PAGE_SIZE, PageError, Viewer, actor_of, app_error, bad_request, blank_to_none,
    check_csrf, parse_id, render, see_other, signed_in, when,
};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use heron_core::EventId;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct EventsParams {
    state: Option<String>,
}

struct EventView {
    id: String,
    schema: String,
    source: String,
    attempts: u32,
    /// Failed and ignored events can be retried.
    retryable: bool,
    error: Option<String>,
    body: String,
    received_at: String,
    received_at_iso: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    viewer: Viewer,
    state: String,
    states: Vec<OptionView>,
    events: Vec<EventView>,
}

/// Event bodies shown in full up to this many characters.
const BODY_CHARS: usize = 8_192;

pub(super) async fn events_page(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, PageError> {
    use heron_core::EventState;
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let wanted = blank_to_none(&params.state).unwrap_or_else(|| "failed".into());
    let event_state: EventState = wanted
        .parse()
        .map_err(|_| bad_request(format!("unknown event state {wanted:?}")))?;
    let events = state
        .inner
        .store
        .list_events(&heron_core::ports::EventQuery {
            state: Some(event_state),
            limit: PAGE_SIZE,
            ..Default::default()
        })
        .await?
        .items;
    render(&EventsPage {
        viewer,
        states: [
            "failed",
            "waiting",
            "ignored",
            "pending",
            "processing",
            "processed",
        ]
        .into_iter()
        .map(|value| OptionView {
            value,
            selected: value == event_state.as_str(),
        })
        .collect(),
        state: event_state.to_string(),
        events: events
            .iter()
            .map(|e| {
                let mut body: String = e.body.chars().take(BODY_CHARS).collect();
                if body.len() < e.body.len() {
                    body.push_str("\n… (cut; the API has the whole body)");
                }
                EventView {
                    id: e.id.to_string(),
                    schema: e.schema.to_string(),
                    source: e.source.to_string(),
                    attempts: e.attempts,
                    retryable: matches!(e.state, EventState::Failed | EventState::Ignored),
                    error: e.last_error.clone(),
                    body,
                    received_at: when(e.received_at),
                    received_at_iso: e.received_at.to_rfc3339(),
                }
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct RetryForm {
    csrf: String,
    /// The list to go back to (`failed` or `ignored`).
    #[serde(default)]
    state: String,
}

/// Puts a failed or ignored event back in the queue, as the signed-in user.
pub(super) async fn retry(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    form: Result<axum::Form<RetryForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &form.csrf)?;
    let id: EventId = parse_id(&raw, "an event")?;
    state
        .inner
        .tickets
        .retry_event(id, &actor_of(&viewer, &ctx))
        .await
        .map_err(app_error)?;
    tracing::info!(event_id = %id, user = %viewer.user, "event retried from the dashboard");
    let back = match form.state.as_str() {
        "ignored" => "/events?state=ignored",
        _ => "/events?state=failed",
    };
    Ok(see_other(back))
}
