//! Dashboard sign-in with OpenID Connect (authorization code flow with PKCE and a nonce),
//! and the signed session cookie that follows it.
//!
//! Invariants:
//! - the login attempt (state, nonce, PKCE verifier, where to go back) travels in a signed,
//!   HttpOnly cookie that lives ten minutes; a callback whose `state` does not match it is
//!   refused, so a sign-in cannot be started by someone else (login CSRF);
//! - the ID token is verified by the `openidconnect` crate against the issuer's discovery
//!   document and JWKS: signature, issuer, audience, expiry and nonce;
//! - sessions are `payload.signature` (HMAC-SHA256 over the JSON payload), HttpOnly,
//!   SameSite=Lax, Secure unless Heron is on loopback, and expire after eight hours; each
//!   carries a CSRF token that state-changing forms must echo;
//! - where to go after sign-in is only ever a path on this site.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub const SESSION_COOKIE: &str = "heron_session";
pub const LOGIN_COOKIE: &str = "heron_login";
const SESSION_SECS: i64 = 8 * 3600;
const LOGIN_SECS: i64 = 600;

/// What the operator configures.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// This server's `/auth/callback` as registered with the IdP.
    pub redirect_url: String,
    /// Signs session cookies; at least 32 bytes. Share it between instances behind one
    /// address, or sessions only work on the instance that made them.
    pub session_secret: Vec<u8>,
    /// Set the cookies' `Secure` attribute (off only for loopback).
    pub secure_cookies: bool,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OpenID Connect set-up: {0}")]
    Setup(String),
    #[error("the identity provider could not be used: {0}")]
    Provider(String),
    #[error("sign-in refused: {0}")]
    Refused(String),
}

/// A signed-in analyst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Email when the IdP gives one, else the preferred user name, else the subject.
    pub user: String,
    /// Echoed by state-changing forms.
    pub csrf: String,
    /// Unix seconds.
    pub expires: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoginAttempt {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    expires: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    metadata: OnceCell<CoreProviderMetadata>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The openidconnect crate's HTTP requests, sent with reqwest (no redirects: SSRF).
async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let request = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
    let response = http
        .execute(request)
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    builder
        .body(body.to_vec())
        .map_err(|e| HttpError(e.to_string()))
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Arc<Self>, OidcError> {
        if settings.session_secret.len() < 32 {
            return Err(OidcError::Setup(
                "the session secret must be at least 32 bytes".into(),
            ));
        }
        IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| OidcError::Setup(format!("issuer: {e}")))?;
        RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|e| OidcError::Setup(format!("redirect URL: {e}")))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Setup(e.to_string()))?;
        Ok(Arc::new(Self {
            settings,
            http,
            metadata: OnceCell::new(),
        }))
    }

    pub fn secure_cookies(&self) -> bool {
        self.settings.secure_cookies
    }

    /// The discovery document, fetched once (retried on the next sign-in if it failed).
    async fn metadata(&self) -> Result<&CoreProviderMetadata, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let issuer = IssuerUrl::new(self.settings.issuer.clone())
                    .map_err(|e| OidcError::Setup(e.to_string()))?;
                let http = self.http.clone();
                CoreProviderMetadata::discover_async(issuer, &move |r| send(http.clone(), r))
                    .await
                    .map_err(|e| OidcError::Provider(format!("discovery: {e}")))
            })
            .await
    }

    /// Where to send the browser, and the login cookie's value.
    pub async fn start(&self, next: &str) -> Result<(String, String), OidcError> {
        let metadata = self.metadata().await?.clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.settings.redirect_url.clone())
                .map_err(|e| OidcError::Setup(e.to_string()))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let attempt = LoginAttempt {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: safe_next(next),
            expires: now() + LOGIN_SECS,
        };
        Ok((url.to_string(), self.seal(&attempt)?))
    }

    /// Completes a sign-in: the session, its cookie value, and where to go.
    pub async fn finish(
        &self,
        login_cookie: Option<&str>,
        code: &str,
        state: &str,
    ) -> Result<(Session, String, String), OidcError> {
        let attempt: LoginAttempt = login_cookie
            .and_then(|c| self.open(c))
            .ok_or_else(|| OidcError::Refused("no sign-in in progress (or it expired)".into()))?;
        if attempt.expires < now() {
            return Err(OidcError::Refused("the sign-in took too long".into()));
        }
        if !constant_eq(attempt.state.as_bytes(), state.as_bytes()) {
            return Err(OidcError::Refused("the state does not match".into()));
        }
        let metadata = self.metadata().await?.clone();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.settings.redirect_url.clone())
                .map_err(|e| OidcError::Setup(e.to_string()))?,
        );
        let http = self.http.clone();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.verifier.clone()))
            .request_async(&move |r| send(http.clone(), r))
            .await
            .map_err(|e| OidcError::Provider(format!("token exchange: {e}")))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::Provider("the token answer has no ID token".into()))?;
        let claims = id_token
            .claims(
                &client.id_token_verifier(),
                &Nonce::new(attempt.nonce.clone()),
            )
            .map_err(|e| OidcError::Refused(format!("ID token: {e}")))?;
        let user = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()))
            .unwrap_or_else(|| claims.subject().as_str().to_owned());
        let session = Session {
            user,
            csrf: random_token(),
            expires: now() + SESSION_SECS,
        };
        let cookie = self.seal(&session)?;
        Ok((session, cookie, attempt.next))
    }

    /// The session a cookie value carries, if it is genuine and current.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        self.open::<Session>(cookie).filter(|s| s.expires > now())
    }

    fn key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.settings.session_secret)
    }

    fn seal<T: Serialize>(&self, value: &T) -> Result<String, OidcError> {
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(value).map_err(|e| OidcError::Setup(e.to_string()))?);
        let tag = ring::hmac::sign(&self.key(), payload.as_bytes());
        Ok(format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        ))
    }

    fn open<T: for<'de> Deserialize<'de>>(&self, sealed: &str) -> Option<T> {
        let (payload, tag) = sealed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        ring::hmac::verify(&self.key(), payload.as_bytes(), &tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

pub(crate) fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // The system RNG does not fail on supported platforms; if it ever did, two v4 UUIDs
    // (from the OS RNG too) still carry 244 random bits.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Only a path on this site: `/…` but not `//host` or `/\host`.
pub fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

/// `name=value` of a cookie from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, Secure when asked.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub const SESSION_MAX_AGE: i64 = SESSION_SECS;
pub const LOGIN_MAX_AGE: i64 = LOGIN_SECS;
