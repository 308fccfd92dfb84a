//! The analysts' dashboard: server-rendered pages (askama templates from `web/templates`,
//! the stylesheet from `web/static`, both compiled into the binary).
//!
//! Invariants:
//! - every value from an alert, a comment or the agent is escaped by the templates (askama
//!   escapes HTML by default, and no template marks such a value `safe`); the script inserts
//!   text as text;
//! - a viewer is an OpenID Connect session ([`crate::oidc`]), an API token over HTTP Basic
//!   (read only: browsers attach Basic credentials to any site's form), or anyone on a
//!   loopback `--no-auth` server;
//! - every state-changing request carries the viewer's CSRF token, and changes go through
//!   the same `heron-app` use cases as the API, recorded under the viewer's name;
//! - pages work without JavaScript; the script only adds live notices and streamed chat.

use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use heron_core::agent::{AgentRun, Finding};
use heron_core::ports::{AlertQuery, TicketQuery};
use heron_core::{Severity, Ticket, TicketId, TicketStatus};
use serde::{Deserialize, Serialize};

const STYLESHEET: &str = include_str!("../../../web/static/heron.css");
const PAGE_SIZE: usize = 50;
/// Alerts shown on a ticket page (the API pages through the rest).
const ALERTS_SHOWN: usize = 20;
/// Characters of a tool result shown before it is expanded.
const PREVIEW_CHARS: usize = 120;

pub(crate) fn routes() -> axum::Router<ServerState> {
    axum::Router::new()
        .route("/", get(queue))
        .route("/tickets/{id}", get(ticket))
        .route("/tickets/{id}/actions", axum::routing::post(ticket_action))
        .route("/tickets/{id}/chat", get(chat_page).post(chat_ask))
        .route("/tickets/{id}/chat/stream", get(chat_stream))
        .route("/alerts", get(alerts_page))
        .route("/events", get(events_page))
        .route("/live/tickets", get(live_tickets))
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", axum::routing::post(logout))
        .route("/static/heron.css", get(stylesheet))
        .route("/static/heron.js", get(script))
}

const SCRIPT: &str = include_str!("../../../web/static/heron.js");
/// How often a live page's stream looks for new tickets.
const LIVE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct LiveParams {
    /// The newest ticket the page shows; absent when it shows none.
    after: Option<String>,
}

/// Server-Sent Events for an open queue page: a `tickets` event with the number of tickets
/// newer than the page's newest, whenever that number changes. Ticket ids are time-ordered
/// (UUIDv7), so "newer" is "greater id".
async fn live_tickets(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<LiveParams>, QueryRejection>,
) -> Result<Response, PageError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let after = match blank_to_none(&params.after) {
        None => None,
        Some(s) => Some(
            s.parse::<TicketId>()
                .map_err(|_| bad_request(format!("bad ticket id {s:?}")))?,
        ),
    };
    let store = state.inner.store.clone();
    let stream = futures_util::stream::unfold(0usize, move |announced| {
        let store = store.clone();
        async move {
            loop {
                tokio::time::sleep(LIVE_POLL).await;
                let newer = match store
                    .list_tickets(&TicketQuery {
                        limit: PAGE_SIZE,
                        ..TicketQuery::default()
                    })
                    .await
                {
                    Ok(page) => page
                        .items
                        .iter()
                        .filter(|t| after.is_none_or(|after| t.id > after))
                        .count(),
                    // The stream ends; the browser reconnects on its own.
                    Err(_) => return None,
                };
                if newer != announced {
                    let event = Event::default().event("tickets").data(newer.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(event), newer));
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A page that could not be shown, as HTML.
struct PageError {
    status: StatusCode,
    heading: &'static str,
    message: String,
    /// Set for a redirect (303), e.g. to sign in.
    location: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    heading: &'a str,
    message: &'a str,
    viewer: Viewer,
}

/// The CSRF token of pages served without auth (loopback `--no-auth`): a page on another
/// site can still post to 127.0.0.1, so forms there need a token too. Random per process.
static LOCAL_CSRF: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    format!(
        "local-{}-{}",
        hex_encode(&bytes),
        uuid::Uuid::new_v4().simple()
    )
});

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is looking at a page; `csrf` is set when the viewer may act from the pages (an
/// OpenID Connect session, or no auth on loopback), empty for an API token over Basic
/// (a browser sends Basic credentials with any site's form, so those viewers only read).
#[derive(Debug, Clone, Default)]
struct Viewer {
    user: String,
    csrf: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Some(location) = &self.location
            && let Ok(value) = HeaderValue::from_str(location)
        {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response();
        }
        let body = ErrorPage {
            heading: self.heading,
            message: &self.message,
            viewer: Viewer::default(),
        }
        .render()
        .unwrap_or_else(|_| self.message.clone());
        let mut response = (self.status, Html(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Heron\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

impl From<heron_core::ports::StoreError> for PageError {
    fn from(e: heron_core::ports::StoreError) -> Self {
        tracing::error!(error = %e, "a dashboard page could not read the store");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            heading: "Temporarily unavailable",
            message: "The database could not be read; try again shortly.".into(),
            location: None,
        }
    }
}

fn bad_request(message: String) -> PageError {
    PageError {
        status: StatusCode::BAD_REQUEST,
        heading: "Bad request",
        message,
        location: None,
    }
}

/// The viewer of a page: an OpenID Connect session, else an API token (HTTP Basic password
/// or bearer), else — with OpenID Connect configured — a redirect to sign in, or a Basic
/// challenge without it. Without auth (loopback `--no-auth`) everyone is `local`.
fn signed_in(
    state: &ServerState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Viewer, PageError> {
    let settings = &state.inner.settings;
    if matches!(settings.auth, crate::AuthMode::Disabled) {
        return Ok(Viewer {
            user: "local".into(),
            csrf: LOCAL_CSRF.clone(),
        });
    }
    if let Some(oidc) = &settings.oidc
        && let Some(session) =
            crate::oidc::cookie(headers, crate::oidc::SESSION_COOKIE).and_then(|c| oidc.session(c))
    {
        return Ok(Viewer {
            user: session.user,
            csrf: session.csrf,
        });
    }
    if settings.auth.check_api(headers).is_ok() {
        return Ok(Viewer {
            user: "api token".into(),
            csrf: String::new(),
        });
    }
    // A stored token with the read scope (checked by the access middleware): read only, as
    // any token over Basic.
    if let Some(token) = ctx.stored_token() {
        return Ok(Viewer {
            user: token.name.clone(),
            csrf: String::new(),
        });
    }
    if settings.oidc.is_some() {
        let next = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("next", next);
        return Err(PageError {
            status: StatusCode::SEE_OTHER,
            heading: "Sign in",
            message: "Sign in to continue.".into(),
            location: Some(format!("/auth/login?{}", query.finish())),
        });
    }
    Err(PageError {
        status: StatusCode::UNAUTHORIZED,
        heading: "Sign in",
        message: "Sign in with any user name and an API token as the password.".into(),
        location: None,
    })
}

fn render(page: &impl Template) -> Result<Response, PageError> {
    page.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| {
            tracing::error!(error = %e, "a dashboard template failed to render");
            PageError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                heading: "Internal error",
                message: "The page could not be rendered; see the server log.".into(),
                location: None,
            }
        })
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A unit enum's wire name (`true_positive`), for labels.
fn label(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("—").to_owned()
}

#[derive(Debug, Deserialize)]
struct QueueParams {
    status: Option<String>,
    severity: Option<String>,
    assignee: Option<String>,
    tag: Option<String>,
    q: Option<String>,
    before: Option<String>,
}

/// The filters as typed, for the form's values and the next page's link.
#[derive(Debug, Default, Serialize)]
struct Filters {
    status: String,
    severity: String,
    assignee: String,
    tag: String,
    q: String,
}

struct CountView {
    status: &'static str,
    count: u64,
    selected: bool,
}

struct OptionView {
    value: &'static str,
    selected: bool,
}

struct TicketRow {
    id: TicketId,
    title: String,
    schema: String,
    severity: String,
    status: String,
    assignee: String,
    alert_count: u64,
    verdict: String,
    last_seen: String,
    last_seen_iso: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    viewer: Viewer,
    counts: Vec<CountView>,
    status_options: Vec<OptionView>,
    severity_options: Vec<OptionView>,
    filters: Filters,
    tickets: Vec<TicketRow>,
    next_page: Option<String>,
    /// The newest ticket shown (live updates count from it); empty when none is.
    newest: String,
    /// Live updates run on the first page only.
    live: bool,
}

const STATUSES: [TicketStatus; 4] = [
    TicketStatus::Open,
    TicketStatus::Acknowledged,
    TicketStatus::Resolved,
    TicketStatus::Archived,
];
const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

fn blank_to_none(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn verdict_of(ticket: &Ticket) -> String {
    ticket
        .finding
        .as_ref()
        .and_then(|f| serde_json::from_value::<Finding>(f.clone()).ok())
        .map(|f| label(&f.verdict))
        .unwrap_or_else(|| "—".into())
}

async fn queue(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<QueueParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let status = match blank_to_none(&params.status) {
        None => None,
        Some(s) => Some(
            s.parse::<TicketStatus>()
                .map_err(|_| bad_request(format!("unknown status {s:?}")))?,
        ),
    };
    let severity = match blank_to_none(&params.severity) {
        None => None,
        Some(s) => Some(
            s.parse::<Severity>()
                .map_err(|_| bad_request(format!("unknown severity {s:?}")))?,
        ),
    };
    let before = match blank_to_none(&params.before) {
        None => None,
        Some(s) => Some(
            s.parse::<TicketId>()
                .map_err(|_| bad_request(format!("bad page cursor {s:?}")))?,
        ),
    };
    let filters = Filters {
        status: status.map(|s| s.to_string()).unwrap_or_default(),
        severity: severity.map(|s| s.to_string()).unwrap_or_default(),
        assignee: blank_to_none(&params.assignee).unwrap_or_default(),
        tag: blank_to_none(&params.tag).unwrap_or_default(),
        q: blank_to_none(&params.q).unwrap_or_default(),
    };
    let store = &state.inner.store;
    let page = store
        .list_tickets(&TicketQuery {
            status,
            severity,
            assignee: blank_to_none(&params.assignee),
            tag: blank_to_none(&params.tag),
            text: blank_to_none(&params.q),
            before,
            limit: PAGE_SIZE,
        })
        .await?;
    let counted = store.count_tickets_by_status().await?;
    let counts = STATUSES
        .iter()
        .map(|s| CountView {
            status: s.as_str(),
            count: counted
                .iter()
                .find(|(status, _)| status == s)
                .map_or(0, |(_, n)| *n),
            selected: status == Some(*s),
        })
        .collect();
    let next_page = page.next_cursor.as_ref().map(|cursor| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("status", &filters.status),
            ("severity", &filters.severity),
            ("assignee", &filters.assignee),
            ("tag", &filters.tag),
            ("q", &filters.q),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        query.append_pair("before", cursor);
        format!("/?{}", query.finish())
    });
    let tickets = page
        .items
        .iter()
        .map(|t| TicketRow {
            id: t.id,
            title: t.title.clone(),
            schema: t.schema.to_string(),
            severity: t.severity.to_string(),
            status: t.status.to_string(),
            assignee: or_dash(t.assignee.as_deref()),
            alert_count: t.alert_count,
            verdict: verdict_of(t),
            last_seen: when(t.last_seen),
            last_seen_iso: t.last_seen.to_rfc3339(),
        })
        .collect();
    render(&QueuePage {
        viewer,
        counts,
        status_options: STATUSES
            .iter()
            .map(|s| OptionView {
                value: s.as_str(),
                selected: status == Some(*s),
            })
            .collect(),
        severity_options: SEVERITIES
            .iter()
            .map(|s| OptionView {
                value: s.as_str(),
                selected: severity == Some(*s),
            })
            .collect(),
        filters,
        live: before.is_none(),
        newest: if before.is_none() {
            page.items
                .first()
                .map(|t| t.id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        },
        tickets,
        next_page,
    })
}

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

struct CommentView {
    author: String,
    source: String,
    text: String,
    created_at: String,
    created_at_iso: String,
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

async fn ticket(
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
        comments: comments
            .iter()
            .map(|c| CommentView {
                author: c.author.clone(),
                source: c.source.to_string(),
                text: c.text.clone(),
                created_at: when(c.created_at),
                created_at_iso: c.created_at.to_rfc3339(),
            })
            .collect(),
        runs: runs.iter().map(run_view).collect(),
    })
}

struct NoticeView {
    title: String,
    schema: String,
    severity: String,
    channel: String,
    ticket: Option<TicketId>,
    created_at: String,
    created_at_iso: String,
}

struct UnboundAlertView {
    title: String,
    schema: String,
    severity: String,
    status: String,
    created_at: String,
    created_at_iso: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    viewer: Viewer,
    notices: Vec<NoticeView>,
    alerts: Vec<UnboundAlertView>,
}

async fn alerts_page(
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
    render(&AlertsPage {
        viewer,
        notices: notices
            .iter()
            .map(|n| NoticeView {
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
struct EventsParams {
    state: Option<String>,
}

struct EventView {
    id: String,
    schema: String,
    source: String,
    attempts: u32,
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

async fn events_page(
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
        states: ["failed", "ignored", "pending", "processing", "processed"]
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
struct LoginParams {
    next: Option<String>,
}

fn oidc_of(state: &ServerState) -> Result<&std::sync::Arc<crate::Oidc>, PageError> {
    state.inner.settings.oidc.as_ref().ok_or_else(|| PageError {
        status: StatusCode::NOT_FOUND,
        heading: "Not found",
        message: "OpenID Connect sign-in is not configured.".into(),
        location: None,
    })
}

fn provider_error(e: crate::OidcError) -> PageError {
    tracing::warn!(error = %e, "OpenID Connect sign-in failed");
    let (status, message) = match &e {
        crate::OidcError::Refused(_) => (StatusCode::FORBIDDEN, e.to_string()),
        _ => (
            StatusCode::BAD_GATEWAY,
            "The identity provider could not be reached; try again shortly.".to_owned(),
        ),
    };
    PageError {
        status,
        heading: "Sign-in failed",
        message,
        location: None,
    }
}

/// Starts a sign-in: a login cookie and a redirect to the identity provider.
async fn login(
    State(state): State<ServerState>,
    params: Result<Query<LoginParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let oidc = oidc_of(&state)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let (url, cookie) = oidc
        .start(params.next.as_deref().unwrap_or("/"))
        .await
        .map_err(provider_error)?;
    let set = crate::oidc::set_cookie(
        crate::oidc::LOGIN_COOKIE,
        &cookie,
        crate::oidc::LOGIN_MAX_AGE,
        oidc.secure_cookies(),
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let (Ok(location), Ok(set)) = (HeaderValue::from_str(&url), HeaderValue::from_str(&set)) {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, set);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The identity provider's redirect back: a session cookie, then where the user was going.
async fn callback(
    State(state): State<ServerState>,
    headers: HeaderMap,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let oidc = oidc_of(&state)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    if let Some(error) = params.error {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            heading: "Sign-in failed",
            message: format!(
                "The identity provider said: {error} {}",
                params.error_description.unwrap_or_default()
            ),
            location: None,
        });
    }
    let (Some(code), Some(returned_state)) = (params.code, params.state) else {
        return Err(bad_request("the callback needs code and state".into()));
    };
    let (session, cookie, next) = oidc
        .finish(
            crate::oidc::cookie(&headers, crate::oidc::LOGIN_COOKIE),
            &code,
            &returned_state,
        )
        .await
        .map_err(provider_error)?;
    tracing::info!(user = %session.user, "signed in to the dashboard");
    let secure = oidc.secure_cookies();
    let session_cookie = crate::oidc::set_cookie(
        crate::oidc::SESSION_COOKIE,
        &cookie,
        crate::oidc::SESSION_MAX_AGE,
        secure,
    );
    let clear_login = crate::oidc::set_cookie(crate::oidc::LOGIN_COOKIE, "", 0, secure);
    let mut response = StatusCode::SEE_OTHER.into_response();
    let out = response.headers_mut();
    if let (Ok(location), Ok(session_cookie), Ok(clear_login)) = (
        HeaderValue::from_str(&next),
        HeaderValue::from_str(&session_cookie),
        HeaderValue::from_str(&clear_login),
    ) {
        out.insert(header::LOCATION, location);
        out.append(header::SET_COOKIE, session_cookie);
        out.append(header::SET_COOKIE, clear_login);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// Ends the session; the form must carry the session's CSRF token.
async fn logout(
    State(state): State<ServerState>,
    headers: HeaderMap,
    form: Result<axum::Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let oidc = oidc_of(&state)?;
    let session =
        crate::oidc::cookie(&headers, crate::oidc::SESSION_COOKIE).and_then(|c| oidc.session(c));
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    match session {
        Some(session) if session.csrf == form.csrf => {
            let clear =
                crate::oidc::set_cookie(crate::oidc::SESSION_COOKIE, "", 0, oidc.secure_cookies());
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(clear) = HeaderValue::from_str(&clear) {
                response.headers_mut().insert(header::SET_COOKIE, clear);
            }
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
            Ok(response)
        }
        _ => Err(PageError {
            status: StatusCode::FORBIDDEN,
            heading: "Forbidden",
            message: "The form is stale or not from this site; reload the page.".into(),
            location: None,
        }),
    }
}

#[derive(Debug, Deserialize)]
struct ActionForm {
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

fn app_error(e: heron_app::AppError) -> PageError {
    use heron_app::AppError;
    let (status, heading) = match &e {
        AppError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        AppError::Conflict(_) | AppError::Lifecycle(_) => (StatusCode::CONFLICT, "Not done"),
        AppError::Invalid(_) => (StatusCode::BAD_REQUEST, "Not done"),
        AppError::Unavailable(_) | AppError::Internal(_) => {
            tracing::error!(error = %e, "a dashboard action failed");
            return PageError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                heading: "Temporarily unavailable",
                message: "The change could not be stored; try again shortly.".into(),
                location: None,
            };
        }
    };
    PageError {
        status,
        heading,
        message: e.to_string(),
        location: None,
    }
}

/// One change to a ticket from its page, as the signed-in user; back to the page after.
async fn ticket_action(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    Path(raw): Path<String>,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    use heron_core::{CommentSource, Conclusion, TicketChange};
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    if viewer.csrf.is_empty()
        || !crate::oidc::constant_eq(viewer.csrf.as_bytes(), form.csrf.as_bytes())
    {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            heading: "Forbidden",
            message: if viewer.csrf.is_empty() {
                "Sign in through the identity provider to change tickets from the pages (an API token over Basic only reads).".into()
            } else {
                "The form is stale or not from this site; reload the page.".into()
            },
            location: None,
        });
    }
    let id: TicketId = raw
        .parse()
        .map_err(|_| bad_request(format!("{raw:?} is not a ticket id")))?;
    let actor = heron_app::Actor {
        name: viewer.user.clone(),
        source: CommentSource::Web,
        remote: ctx.remote.clone(),
    };
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
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/tickets/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "chat.html")]
struct ChatPage {
    viewer: Viewer,
    id: TicketId,
    title: String,
    enabled: bool,
    comments: Vec<CommentView>,
}

fn comment_view(c: &heron_core::Comment) -> CommentView {
    CommentView {
        author: c.author.clone(),
        source: c.source.to_string(),
        text: c.text.clone(),
        created_at: when(c.created_at),
        created_at_iso: c.created_at.to_rfc3339(),
    }
}

async fn existing(state: &ServerState, raw: &str) -> Result<Ticket, PageError> {
    let id: TicketId = raw
        .parse()
        .map_err(|_| bad_request(format!("{raw:?} is not a ticket id")))?;
    state
        .inner
        .store
        .get_ticket(id)
        .await?
        .ok_or_else(|| PageError {
            status: StatusCode::NOT_FOUND,
            heading: "Not found",
            message: format!("There is no ticket {id}."),
            location: None,
        })
}

/// The conversation with the agent about a ticket, and a question form.
async fn chat_page(
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
struct ChatForm {
    csrf: String,
    question: String,
}

fn check_csrf(viewer: &Viewer, presented: &str) -> Result<(), PageError> {
    if viewer.csrf.is_empty()
        || !crate::oidc::constant_eq(viewer.csrf.as_bytes(), presented.as_bytes())
    {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            heading: "Forbidden",
            message: "The form is stale or not from this site, or this sign-in only reads; reload the page.".into(),
            location: None,
        });
    }
    Ok(())
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
async fn chat_ask(
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
    let actor = heron_app::Actor {
        name: viewer.user,
        source: heron_core::CommentSource::Web,
        remote: ctx.remote.clone(),
    };
    service
        .ask(t.id, &actor, &form.question, &|_| {})
        .await
        .map_err(app_error)?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/tickets/{}/chat", t.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct ChatStreamParams {
    csrf: String,
    question: String,
}

/// With JavaScript: the same question, answered as Server-Sent Events (the API's events).
/// It is a GET because `EventSource` only sends GETs; the CSRF token rides in the query.
async fn chat_stream(
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
    let actor = heron_app::Actor {
        name: viewer.user,
        source: heron_core::CommentSource::Web,
        remote: ctx.remote.clone(),
    };
    Ok(crate::agent::chat_events(service, t.id, actor, params.question).into_response())
}
