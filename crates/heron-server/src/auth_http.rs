//! `data.auth.http`: an operator's Rego policy guarding the webhooks and the API.
//!
//! When a package `auth.http` is loaded, every authenticated webhook and API request is
//! evaluated against `data.auth.http.allow` with the input (warren's shape)
//!
//! ```json
//! {"req": {"method": "POST", "path": "/hooks/alert/raw/okta", "query": "…",
//!          "header": {"content-type": ["application/json"], …}, "body": "…"},
//!  "token": {"name": "siem", "kind": "stored", "scopes": ["ingest"], "claims": {}},
//!  "env": {"HERON_ENV": "prod"}, "remote": "192.0.2.7"}
//! ```
//!
//! Only `allow == true` lets the request through; `false`, undefined, an evaluation error or
//! a panic in the engine is `403` (errors are logged, never shown to the caller). The body
//! is read (up to `max_body_bytes`, else `413`) to build the input and handed on unchanged.
//! Evaluation runs on a blocking thread and within the request's deadline.

use crate::ApiError;
use crate::access::{Principal, header_input, principal_input};
use crate::state::ServerState;
use axum::body::Body;
use axum::extract::Request;
use serde_json::json;

/// Lets `request` through when no `auth.http` package is loaded or when it allows it.
pub(crate) async fn check(
    state: &ServerState,
    principal: &Principal,
    remote: Option<&str>,
    request: Request,
) -> Result<Request, ApiError> {
    let engine = state.inner.policies.current();
    if !engine.has_auth_http() {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let limit = state.inner.settings.max_body_bytes;
    let bytes =
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the body is larger than the {limit}-byte limit"
                )));
            }
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "could not read the body: {e}"
                )));
            }
        };
    let input = json!({
        "req": {
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query().unwrap_or_default(),
            "header": header_input(&parts.headers),
            "body": String::from_utf8_lossy(&bytes),
        },
        "token": principal_input(principal),
        "env": state.inner.settings.auth_policy_env,
        "remote": remote,
    });
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let decision = tokio::task::spawn_blocking(move || engine.authorize_http(&input)).await;
    match decision {
        Ok(Ok(Some(true) | None)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Ok(Some(false))) => {
            tracing::info!(%method, %path, token = %principal.name, "data.auth.http denied the request");
            Err(ApiError::Forbidden("denied by the auth.http policy".into()))
        }
        Ok(Err(e)) => {
            tracing::error!(%method, %path, error = %e, "data.auth.http failed: denying");
            Err(ApiError::Forbidden("denied by the auth.http policy".into()))
        }
        Err(e) => {
            tracing::error!(%method, %path, error = %e, "data.auth.http panicked: denying");
            Err(ApiError::Forbidden("denied by the auth.http policy".into()))
        }
    }
}
