//! The analysts' dashboard: server-rendered pages (askama templates from `web/templates`,
//! the stylesheet and the script from `web/static`, all compiled into the binary), one
//! module a page: [`queue`] (`/`, `/live/tickets`), [`ticket`] (`/tickets/{id}` and its
//! actions), [`chat`], [`alerts`] (notices and unbound alerts, binding and escalating),
//! [`events`] (stored events, retrying), [`metrics`] (`/stats`, with [`charts`]),
//! [`policies`] and [`auth`] (OpenID Connect sign-in). This module holds what they share:
//! who the viewer is, CSRF checks, page errors and the assets.
//!
//! Invariants:
//! - every value from an alert, a comment, a policy or the agent is escaped by the templates
//!   (askama escapes HTML by default, and no template marks such a value `safe`; the SVG
//!   charts are templates too); the script inserts text as text, and only swaps in elements
//!   of pages this server rendered;
//! - a viewer is an OpenID Connect session ([`crate::oidc`]), an API token over HTTP Basic
//!   (read only: browsers attach Basic credentials to any site's form), or anyone on a
//!   loopback `--no-auth` server;
//! - every state-changing request is a POST carrying the viewer's CSRF token
//!   ([`check_csrf`]), and changes go through the same `heron-app` use cases as the API,
//!   recorded under the viewer's name; after a change the browser is sent back to a page
//!   (303), so a reload never repeats it;
//! - pages work without JavaScript; the script only adds live updates, actions without a
//!   full reload (it posts the same forms and swaps in the page sections marked
//!   `data-swap` from the page it is sent back to), and streamed chat.

mod alerts;
mod auth;
mod charts;
mod chat;
mod events;
mod metrics;
mod policies;
mod queue;
mod ticket;

use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use heron_core::agent::Finding;
use heron_core::{Severity, Ticket, TicketId, TicketStatus};
use serde::Serialize;

pub(crate) fn routes() -> axum::Router<ServerState> {
    axum::Router::new()
        .route("/", get(queue::queue))
        .route("/tickets/{id}", get(ticket::ticket))
        .route("/tickets/{id}/actions", post(ticket::ticket_action))
        .route(
            "/tickets/{id}/chat",
            get(chat::chat_page).post(chat::chat_ask),
        )
        .route("/tickets/{id}/chat/stream", get(chat::chat_stream))
        .route("/alerts", get(alerts::alerts_page))
        .route("/alerts/{id}/bind", post(alerts::bind))
        .route("/notices/{id}/escalate", post(alerts::escalate))
        .route("/events", get(events::events_page))
        .route("/events/{id}/retry", post(events::retry))
        .route("/stats", get(metrics::metrics_page))
        .route("/policies", get(policies::policies_page))
        .route("/policies/reload", post(policies::reload))
        .route("/live/tickets", get(queue::live_tickets))
        .route("/auth/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/logout", post(auth::logout))
        .route("/static/heron.css", get(stylesheet))
        .route("/static/heron.js", get(script))
}

const STYLESHEET: &str = include_str!("../../../../web/static/heron.css");
const PAGE_SIZE: usize = 50;

const SCRIPT: &str = include_str!("../../../../web/static/heron.js");

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

struct OptionView {
    value: &'static str,
    selected: bool,
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

struct CommentView {
    author: String,
    source: String,
    text: String,
    created_at: String,
    created_at_iso: String,
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

/// Refuses a state-changing request whose form does not carry the viewer's CSRF token, and
/// any from a viewer who only reads (an API token over Basic).
fn check_csrf(viewer: &Viewer, presented: &str) -> Result<(), PageError> {
    if viewer.csrf.is_empty() {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            heading: "Forbidden",
            message: "Sign in through the identity provider to change anything from the pages (an API token over Basic only reads).".into(),
            location: None,
        });
    }
    if !crate::oidc::constant_eq(viewer.csrf.as_bytes(), presented.as_bytes()) {
        return Err(PageError {
            status: StatusCode::FORBIDDEN,
            heading: "Forbidden",
            message: "The form is stale or not from this site; reload the page.".into(),
            location: None,
        });
    }
    Ok(())
}

/// The viewer as the actor of a change made from the pages.
fn actor_of(viewer: &Viewer, ctx: &RequestContext) -> heron_app::Actor {
    heron_app::Actor {
        name: viewer.user.clone(),
        source: heron_core::CommentSource::Web,
        remote: ctx.remote.clone(),
    }
}

/// Back to a page after a change (303: a reload does not post again).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The form of a one-button action: only its CSRF token.
#[derive(Debug, serde::Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// `raw` as an id, or a page error naming `what` it should have been.
fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, PageError> {
    raw.parse()
        .map_err(|_| bad_request(format!("{raw:?} is not {what} id")))
}
