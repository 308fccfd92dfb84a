//! Asking the agent about a ticket (`/tickets/{id}/chat`): a plain form that waits for the
//! whole answer, or with JavaScript the same question answered as Server-Sent Events.
//!
//! Invariants: questions and answers are ticket comments, the question under the viewer's
//! name; both forms need the viewer's CSRF token (the stream's rides in its query, as
//! `EventSource` only sends GETs).

use super::{
    CommentView, PageError, Viewer, actor_of, app_error, bad_request, check_csrf, comment_view,
    existing, render, see_other, signed_in,
};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use heron_core::TicketId;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "chat.html")]
struct ChatPage {
    viewer: Viewer,
    id: TicketId,
    title: String,
    enabled: bool,
    comments: Vec<CommentView>,
}

/// The conversation with the agent about a ticket, and a question form.
pub(super) async fn chat_page(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let t = existing(&state, &raw).await?;
    let comments = state.inner.store.list_comments(t.id).await?;
    render(&ChatPage {
        viewer,
        id: t.id,
        title: t.title,
        enabled: crate::agent::chat_service_of(&state).is_some(),
        comments: comments
            .iter()
            .filter(|c| c.source != heron_core::CommentSource::System)
            .map(comment_view)
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct ChatForm {
    csrf: String,
    question: String,
}

fn chat_disabled() -> PageError {
    PageError {
        status: StatusCode::CONFLICT,
        heading: "Agent disabled",
        message: "The agent is disabled: no language model is configured.".into(),
        location: None,
    }
}

/// Without JavaScript: ask, wait for the whole answer (bounded by the agent's wall time),
/// then back to the conversation.
pub(super) async fn chat_ask(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    form: Result<axum::Form<ChatForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &form.csrf)?;
    let t = existing(&state, &raw).await?;
    let service = crate::agent::chat_service_of(&state).ok_or_else(chat_disabled)?;
    service
        .ask(t.id, &actor_of(&viewer, &ctx), &form.question, &|_| {})
        .await
        .map_err(app_error)?;
    Ok(see_other(&format!("/tickets/{}/chat", t.id)))
}

#[derive(Debug, Deserialize)]
pub(super) struct ChatStreamParams {
    csrf: String,
    question: String,
}

/// With JavaScript: the same question, answered as Server-Sent Events (the API's events).
/// It is a GET because `EventSource` only sends GETs; the CSRF token rides in the query.
pub(super) async fn chat_stream(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    params: Result<Query<ChatStreamParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &params.csrf)?;
    let t = existing(&state, &raw).await?;
    if params.question.trim().is_empty() {
        return Err(bad_request("the question is empty".into()));
    }
    let service = crate::agent::chat_service_of(&state)
        .ok_or_else(chat_disabled)?
        .clone();
    Ok(
        crate::agent::chat_events(service, t.id, actor_of(&viewer, &ctx), params.question)
            .into_response(),
    )
}
