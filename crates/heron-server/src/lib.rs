//! Heron's HTTP surface (axum): alert webhooks, the REST API under `/api/v1` with its OpenAPI
//! document, and health, readiness and metrics endpoints.
//!
//! Invariants:
//! - handlers are thin: they parse and authenticate, then call `heron-app` use cases;
//! - a webhook is answered `202` only after its event is committed; any other answer means
//!   nothing was stored;
//! - every error body is `{"error": {"code", "message"}}`, and 5xx bodies never carry
//!   internal details (those go to the log).

mod access;
mod agent;
mod api;
mod audit;
mod auth;
mod auth_http;
mod error;
mod limits;
mod oidc;
mod ops;
mod pubsub_oidc;
mod slack;
mod sns;
mod state;
mod web;
mod webhooks;

pub use access::{LAST_USED_EVERY, Principal, PrincipalKind, RequestContext};
pub use auth::{AuthConfig, AuthMode};
pub use error::ApiError;
pub use limits::{RateLimit, RateLimitSettings};
pub use oidc::{Oidc, OidcError, OidcSettings};
pub use pubsub_oidc::{GOOGLE_ISSUERS, GOOGLE_JWKS_URL, PubsubOidc, PubsubOidcSettings};
pub use sns::SnsSettings;
pub use state::{AgentState, ServerSettings, ServerState, SlackState, StateError, TuningState};

use api::BearerAuth;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Heron",
        description = "Agentic security-alert triage: webhooks in, tickets out.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "webhooks", description = "Alert intake"),
        (name = "events", description = "Stored deliveries and their processing state"),
        (name = "alerts", description = "Alerts made by ingest policies"),
        (name = "tickets", description = "Tickets, their lifecycle and comments"),
        (name = "notices", description = "Low-key alerts and their escalation"),
        (name = "agent", description = "The triage agent: runs, similar tickets, chat"),
        (name = "audit", description = "Who changed what, when and from where"),
        (name = "ops", description = "Health, readiness, metrics, policies")
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Every route, with the OpenAPI document built from the same registrations.
pub fn router(state: ServerState) -> Router {
    let timeout = state.inner.settings.request_timeout;
    let concurrency = state.inner.settings.max_concurrent_requests.max(1);
    let limiters = limits::RateLimiters::new(&state.inner.settings.rate_limits);
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(webhooks::routes(&state))
        .merge(api::routes())
        .merge(audit::routes())
        .merge(agent::routes())
        .merge(ops::routes())
        .merge(slack::routes())
        .split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(web::routes())
        // Only on routes that exist, with a method they take: an unknown route stays 404 and
        // a wrong method 405, token or not.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::enforce,
        ))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not take that method".into())
        })
        .layer(
            tower::ServiceBuilder::new()
                .layer(
                    tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                        axum::http::header::AUTHORIZATION,
                    ]),
                )
                // The span names the path only: query strings may carry `?token=`.
                .layer(
                    tower_http::trace::TraceLayer::new_for_http().make_span_with(
                        |request: &axum::http::Request<axum::body::Body>| {
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                path = %request.uri().path(),
                            )
                        },
                    ),
                )
                .layer(axum::middleware::from_fn(move |request, next| {
                    within_deadline(timeout, request, next)
                }))
                .layer(tower::limit::ConcurrencyLimitLayer::new(concurrency)),
        )
        .layer(tower::util::option_layer(limiters.map(|limiters| {
            axum::middleware::from_fn(move |request, next| {
                limits::enforce(limiters.clone(), request, next)
            })
        })))
        .with_state(state)
}

/// Answers 408 in the JSON error shape when a request outlives `timeout`; the handler's
/// future is dropped, and a webhook that had not committed stored nothing.
async fn within_deadline(
    timeout: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if agent::is_chat_path(request.uri().path()) {
        // A chat lasts as long as the agent's wall-time budget, which bounds it instead.
        return next.run(request).await;
    }
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request took longer than {} s",
            timeout.as_secs_f64()
        ))
        .into_response(),
    }
}
