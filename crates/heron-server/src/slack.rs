//! Slack's Events API and interactivity endpoints, and a ticket's Slack state.
//!
//! A request is verified first (the `v0` signature over the raw body and a timestamp within
//! 5 minutes, else 401), then stored as a delivery (deduplicated by Slack's `event_id`, so
//! a retry — `X-Slack-Retry-Num` — acts once) and answered at once; the work happens in
//! `heron_app::SlackWorker`.

use crate::api::{ApiResult, id};
use crate::error::{ApiError, ErrorBody};
use crate::state::ServerState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use heron_core::TicketId;
use heron_core::slack::{DeliveryKind, SlackSubject, SlackThread};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<ServerState> {
    OpenApiRouter::new()
        .routes(routes!(event))
        .routes(routes!(interaction))
        .routes(routes!(ticket_slack))
}

fn slack(state: &ServerState) -> Result<&crate::state::SlackState, ApiError> {
    state
        .inner
        .slack
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("Slack is not configured".into()))
}

fn verify(
    slack: &crate::state::SlackState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    slack
        .verifier
        .verify(
            &header("x-slack-request-timestamp"),
            &header("x-slack-signature"),
            body,
            chrono::Utc::now(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "refused a Slack request");
            ApiError::Unauthorized(format!("not a request from Slack: {e}"))
        })
}

fn retry_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Slack's Events API: `url_verification` is answered with its challenge; an
/// `event_callback` is stored once per `event_id` and acted on in the background.
/// Authenticated by Slack's `v0` signature (`X-Slack-Signature`,
/// `X-Slack-Request-Timestamp` within 5 minutes), not a bearer token.
#[utoipa::path(post, path = "/hooks/slack/event", tag = "webhooks",
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, description = "accepted (or the url_verification challenge)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "Slack is not configured")))]
async fn event(State(state): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle_event(&state, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle_event(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let slack = slack(state)?;
    verify(slack, headers, body)?;
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not JSON: {e}")))?;
    match payload["type"].as_str() {
        Some("url_verification") => {
            let challenge = payload["challenge"].as_str().unwrap_or_default();
            Ok(Json(json!({"challenge": challenge})).into_response())
        }
        Some("event_callback") => {
            let first = slack.service.accept(DeliveryKind::Event, payload).await?;
            if !first {
                tracing::debug!(retry = ?retry_of(headers), "a Slack event was delivered again; acting once");
            }
            Ok(StatusCode::OK.into_response())
        }
        _ => Ok(StatusCode::OK.into_response()),
    }
}

/// Slack's interactivity: button clicks and modal submissions (the `payload` form field),
/// stored and acted on in the background. Authenticated by Slack's `v0` signature.
#[utoipa::path(post, path = "/hooks/slack/interaction", tag = "webhooks",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "accepted"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "Slack is not configured")))]
async fn interaction(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle_interaction(&state, &headers, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle_interaction(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let slack = slack(state)?;
    verify(slack, headers, body)?;
    let raw = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::BadRequest("no payload field".into()))?;
    let payload: Value = serde_json::from_str(&raw)
        .map_err(|e| ApiError::InvalidJson(format!("the payload is not JSON: {e}")))?;
    slack
        .service
        .accept(DeliveryKind::Interaction, payload)
        .await?;
    Ok(())
}

/// A ticket's Slack state: where its message is, and whether Slack is up to date.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/slack", tag = "tickets", params(("id" = String, Path)),
    responses((status = 200, body = SlackThread), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn ticket_slack(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
) -> ApiResult<SlackThread> {
    let ticket: TicketId = id(&raw, "ticket")?;
    state
        .inner
        .store
        .get_slack_thread(SlackSubject::Ticket(ticket))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no Slack message for ticket {ticket}")))
}
