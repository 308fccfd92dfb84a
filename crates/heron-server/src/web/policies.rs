//! The policies page (`/policies`): the loaded packages and the schemas with an ingest
//! policy, how the last loads went, and a reload button (`POST /policies/reload`).
//!
//! Invariants: it reads the same policy handle as `GET /api/v1/policies`, and a reload goes
//! through the same path as `POST /api/v1/policies/reload` (compile, run the set's own
//! tests, swap only then); a refused set leaves the one in force and its error is shown.
//! Reloading needs the viewer's CSRF token and is logged with the viewer's name.

use super::{
    CsrfForm, PageError, Viewer, bad_request, check_csrf, render, see_other, signed_in, when,
};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    viewer: Viewer,
    packages: Vec<String>,
    schemas: Vec<String>,
    has_triage: bool,
    files: usize,
    reloadable: bool,
    generation: u64,
    loaded_at: String,
    last_attempt_at: String,
    last_trigger: String,
    last_error: Option<String>,
    reloads_ok: u64,
    reloads_failed: u64,
}

pub(super) async fn policies_page(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let handle = &state.inner.policies;
    let info = handle.current().info();
    let status = handle.status();
    let never = || "—".to_owned();
    render(&PoliciesPage {
        viewer,
        packages: info.packages,
        schemas: info.ingest_schemas,
        has_triage: info.has_triage,
        files: info.files,
        reloadable: handle.is_reloadable(),
        generation: status.generation,
        loaded_at: status.loaded_at.map(when).unwrap_or_else(never),
        last_attempt_at: status.last_attempt_at.map(when).unwrap_or_else(never),
        last_trigger: status.last_trigger.unwrap_or_else(never),
        last_error: status.last_error,
        reloads_ok: status.reloads_ok,
        reloads_failed: status.reloads_failed,
    })
}

/// Loads the policy folder again, as the signed-in user; back to the page, which shows how
/// it went (a refused set is not an error of the request: its error is on the page).
pub(super) async fn reload(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let axum::Form(form) = form.map_err(|e| bad_request(e.body_text()))?;
    check_csrf(&viewer, &form.csrf)?;
    let handle = state.inner.policies.clone();
    let outcome = tokio::task::spawn_blocking(move || handle.reload("web"))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the policy reload task failed");
            PageError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                heading: "Internal error",
                message: "The reload did not finish; see the server log.".into(),
                location: None,
            }
        })?;
    match outcome {
        Ok(status) => {
            tracing::info!(user = %viewer.user, generation = status.generation, "policies reloaded from the dashboard");
        }
        Err(heron_app::ReloadError::NotReloadable) => {
            return Err(PageError {
                status: StatusCode::CONFLICT,
                heading: "Not done",
                message:
                    "This process was started without a policy folder; there is nothing to reload."
                        .into(),
                location: None,
            });
        }
        Err(e @ heron_app::ReloadError::Refused(_)) => {
            tracing::warn!(user = %viewer.user, error = %e, "a policy reload from the dashboard was refused");
        }
    }
    Ok(see_other("/policies"))
}
