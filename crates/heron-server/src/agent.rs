//! The agent's routes: a ticket's runs (and asking for a new one), similar past tickets, and
//! chat — answered whole, or streamed as Server-Sent Events.
//!
//! Chat routes are exempt from the request deadline (the agent's wall-time budget bounds
//! them); everything else here is a plain read or a queue write.

use crate::ApiError;
use crate::api::{ApiResult, actor, id};
use crate::error::ErrorBody;
use crate::state::{AgentState, ServerState};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use heron_app::ChatService;
use heron_core::agent::{AgentRun, AgentStep, RunStatus};
use heron_core::investigation::{SimilarTicket, TriageJob};
use heron_core::{AlertId, Comment, TicketId};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<ServerState> {
    OpenApiRouter::new()
        .routes(routes!(list_agent_runs, rerun_triage))
        .routes(routes!(similar_tickets))
        .routes(routes!(tickets_like_alert))
        .routes(routes!(chat))
        .routes(routes!(chat_stream))
}

/// `/api/v1/tickets/{id}/chat` and `…/chat/stream`, and the dashboard's `/tickets/{id}/chat…`.
pub(crate) fn is_chat_path(path: &str) -> bool {
    (path.starts_with("/api/v1/tickets/") || path.starts_with("/tickets/"))
        && (path.ends_with("/chat") || path.ends_with("/chat/stream"))
}

pub(crate) fn chat_service_of(state: &ServerState) -> Option<&ChatService> {
    state.inner.agent.as_ref()?.chat.as_ref()
}

fn agent(state: &ServerState) -> Result<&AgentState, ApiError> {
    state
        .inner
        .agent
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the agent is not set up in this process".into()))
}

fn chat_service(state: &ServerState) -> Result<&ChatService, ApiError> {
    agent(state)?.chat.as_ref().ok_or_else(|| {
        ApiError::Conflict("the agent is disabled: no LLM is configured (llm_base_url)".into())
    })
}

async fn existing_ticket(state: &ServerState, raw: &str) -> Result<heron_core::Ticket, ApiError> {
    let ticket_id: TicketId = id(raw, "ticket")?;
    state
        .inner
        .store
        .get_ticket(ticket_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("ticket {ticket_id} not found")))
}

#[derive(Debug, Serialize, ToSchema)]
struct AgentRuns {
    /// Whether new tickets are investigated (a model is configured).
    agent_enabled: bool,
    /// Tools offered to the model.
    tools: Vec<String>,
    /// The ticket's triage job: pending, processing, done, failed or skipped (with why).
    triage: Option<TriageJob>,
    /// Oldest first, every step included.
    runs: Vec<AgentRun>,
}

/// The agent's runs on a ticket (triage and chat), with every step, and its triage job.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/agent-runs", tag = "agent", params(("id" = String, Path)),
    responses((status = 200, body = AgentRuns), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
async fn list_agent_runs(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
) -> ApiResult<AgentRuns> {
    let ticket = existing_ticket(&state, &raw).await?;
    let store = &state.inner.store;
    let agent = state.inner.agent.as_ref();
    Ok(Json(AgentRuns {
        agent_enabled: agent.is_some_and(|a| a.enabled),
        tools: agent.map(|a| a.tools.clone()).unwrap_or_default(),
        triage: store.get_triage_job(ticket.id).await?,
        runs: store.list_agent_runs(ticket.id).await?,
    }))
}

/// Queue a new investigation of the ticket (after its alerts or the tools changed). 409 while
/// one is running or when the agent is disabled.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/agent-runs", tag = "agent", params(("id" = String, Path)),
    responses((status = 202, body = TriageJob), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn rerun_triage(
    State(state): State<ServerState>,
    Extension(ctx): Extension<crate::access::RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<(StatusCode, Json<TriageJob>), ApiError> {
    if !agent(&state)?.enabled {
        return Err(ApiError::Conflict(
            "the agent is disabled: no LLM is configured (llm_base_url)".into(),
        ));
    }
    let ticket = existing_ticket(&state, &raw).await?;
    let store = &state.inner.store;
    let job = store.requeue_triage(ticket.id, store.now().await?).await?;
    state
        .inner
        .tickets
        .audit(
            &actor(&headers, &ctx)?,
            "agent.run",
            Some(ticket.id),
            None,
            serde_json::json!({ "purpose": "triage", "requested": true }),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SimilarParams {
    /// 1 to 50, default 10.
    limit: Option<usize>,
}

/// The past tickets closest to this one (cosine similarity of their embeddings), with how
/// they were concluded.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/similar", tag = "agent", params(("id" = String, Path), SimilarParams),
    responses((status = 200, body = Vec<SimilarTicket>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn similar_tickets(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
    params: Result<Query<SimilarParams>, QueryRejection>,
) -> ApiResult<Vec<SimilarTicket>> {
    let limit = similar_limit(params)?;
    let ticket = existing_ticket(&state, &raw).await?;
    let embedder = &agent(&state)?.embedder;
    let store = &state.inner.store;
    let vector = match store
        .get_ticket_embedding(ticket.id, embedder.model())
        .await?
    {
        Some(vector) => vector,
        // Not embedded yet (its triage job has not run): embed it now, and keep it.
        None => {
            let vector = embedder
                .embed(&ticket)
                .await
                .map_err(|e| ApiError::BadGateway(format!("the embedding model failed: {e}")))?;
            store
                .put_ticket_embedding(ticket.id, embedder.model(), &vector)
                .await?;
            vector
        }
    };
    Ok(Json(
        store
            .similar_tickets(embedder.model(), &vector, limit, Some(ticket.id))
            .await?,
    ))
}

/// The tickets closest to this alert (cosine similarity of the alert's embedding to
/// tickets'), leaving out the ticket it belongs to: where an unbound alert could be bound.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/similar", tag = "agent", params(("id" = String, Path), SimilarParams),
    responses((status = 200, body = Vec<SimilarTicket>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn tickets_like_alert(
    State(state): State<ServerState>,
    Path(raw): Path<String>,
    params: Result<Query<SimilarParams>, QueryRejection>,
) -> ApiResult<Vec<SimilarTicket>> {
    let limit = similar_limit(params)?;
    let alert_id: AlertId = id(&raw, "alert")?;
    let store = &state.inner.store;
    let alert = store
        .get_alert(alert_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("alert {alert_id} not found")))?;
    let embedder = &agent(&state)?.embedder;
    let vector = match store
        .get_alert_embedding(alert.id, embedder.model())
        .await?
    {
        Some(vector) => vector,
        // Not embedded yet (the embedding loop has not reached it): embed it now, and keep it.
        None => {
            let vector = embedder
                .embed_alert(&alert)
                .await
                .map_err(|e| ApiError::BadGateway(format!("the embedding model failed: {e}")))?;
            store
                .put_alert_embeddings(embedder.model(), &[(alert.id, vector.clone())])
                .await?;
            vector
        }
    };
    Ok(Json(
        store
            .similar_tickets(embedder.model(), &vector, limit, alert.ticket_id)
            .await?,
    ))
}

fn similar_limit(params: Result<Query<SimilarParams>, QueryRejection>) -> Result<usize, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    match params.limit {
        None => Ok(10),
        Some(n @ 1..=50) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit must be 1 to 50, got {n}"
        ))),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChatRequestBody {
    question: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct ChatAnswer {
    run: AgentRun,
    question: Comment,
    /// The answer as stored on the ticket; absent when the run did not complete (see
    /// `run.status`, `run.error`, `run.budget`).
    answer: Option<Comment>,
}

/// Ask the agent about the ticket (its alerts, comments and earlier runs). The question and
/// the answer become comments; the run is stored. 409 when the agent is disabled.
#[utoipa::path(post, path = "/api/v1/tickets/{id}/chat", tag = "agent", params(("id" = String, Path)),
    request_body = ChatRequestBody,
    responses((status = 200, body = ChatAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn chat(
    State(state): State<ServerState>,
    Extension(ctx): Extension<crate::access::RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Json<ChatRequestBody>, JsonRejection>,
) -> ApiResult<ChatAnswer> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let service = chat_service(&state)?;
    let ticket_id: TicketId = id(&raw, "ticket")?;
    let reply = service
        .ask(ticket_id, &actor(&headers, &ctx)?, &body.question, &|_| {})
        .await?;
    Ok(Json(ChatAnswer {
        run: reply.run,
        question: reply.question,
        answer: reply.answer,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChatStreamParams {
    question: String,
}

/// What a chat stream carries, one SSE event each: `step` (an [`AgentStep`] as it is
/// recorded), then `answer` (the answer comment) when the run completed, then `done` (run id,
/// status, error or budget) — or `error` if the question could not be asked at all.
#[derive(Debug, Serialize)]
struct Done<'a> {
    run_id: uuid::Uuid,
    status: RunStatus,
    error: Option<&'a str>,
    budget: Option<heron_core::agent::BudgetKind>,
}

/// Ask the agent about the ticket and stream its work as Server-Sent Events: `step` events as
/// tools run, then `answer`, then `done`. Usable from a browser's `EventSource`.
#[utoipa::path(get, path = "/api/v1/tickets/{id}/chat/stream", tag = "agent",
    params(("id" = String, Path), ChatStreamParams),
    responses((status = 200, description = "text/event-stream of step, answer and done events"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn chat_stream(
    State(state): State<ServerState>,
    Extension(ctx): Extension<crate::access::RequestContext>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    params: Result<Query<ChatStreamParams>, QueryRejection>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let service = chat_service(&state)?.clone();
    // Errors that need no model are answered as plain HTTP errors, before the stream starts.
    let ticket = existing_ticket(&state, &raw).await?;
    if params.question.trim().is_empty() {
        return Err(ApiError::BadRequest("the question is empty".into()));
    }
    let who = actor(&headers, &ctx)?;
    Ok(chat_events(service, ticket.id, who, params.question))
}

/// Runs a chat in its own task and streams it: `step` events, then `answer`, then `done`,
/// or `error`. A client that goes away does not cut the run half-way, so the question, the
/// run and the answer are always stored together. Shared by the API and the dashboard.
pub(crate) fn chat_events(
    service: ChatService,
    ticket_id: TicketId,
    who: heron_app::Actor,
    question: String,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<SseEvent>();
    tokio::spawn(async move {
        let steps = tx.clone();
        let on_step = move |step: &AgentStep| {
            let _ = steps.send(json_event("step", step));
        };
        match service.ask(ticket_id, &who, &question, &on_step).await {
            Ok(reply) => {
                if let Some(answer) = &reply.answer {
                    let _ = tx.send(json_event("answer", answer));
                }
                let _ = tx.send(json_event(
                    "done",
                    &Done {
                        run_id: reply.run.id,
                        status: reply.run.status,
                        error: reply.run.error.as_deref(),
                        budget: reply.run.budget,
                    },
                ));
            }
            Err(e) => {
                let e = ApiError::from(e);
                let _ = tx.send(json_event(
                    "error",
                    &serde_json::json!({"message": e.to_string()}),
                ));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn json_event(name: &str, value: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| SseEvent::default().event(name).data("{}"))
}
