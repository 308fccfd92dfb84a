//! Signing in with OpenID Connect (`/auth/login`, `/auth/callback`) and out
//! (`POST /auth/logout`).
//!
//! Invariants: the login state (PKCE verifier, nonce, state, where to go next) lives in a
//! signed ten-minute cookie; the session is a signed cookie set only after the ID token was
//! verified ([`crate::oidc`]); signing out needs the session's CSRF token.

use super::{PageError, bad_request};
use crate::state::ServerState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct LoginParams {
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
pub(super) async fn login(
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
pub(super) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The identity provider's redirect back: a session cookie, then where the user was going.
pub(super) async fn callback(
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
pub(super) struct LogoutForm {
    csrf: String,
}

/// Ends the session; the form must carry the session's CSRF token.
pub(super) async fn logout(
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
