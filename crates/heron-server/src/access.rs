//! Who is calling, and may they: one middleware in front of every route.
//!
//! For the alert webhooks (`/hooks/alert/{kind}/{schema}`) and the API (`/api/v1/…`, except
//! the OpenAPI document) it
//! 1. authenticates: a Google ID token on the Pub/Sub webhook when `pubsub_audience` is
//!    configured ([`crate::pubsub_oidc`]); else a configured token (`auth.tokens`, or
//!    `auth.schema_tokens` for that schema's webhooks), else a stored token
//!    ([`heron_core::access`]), found by the SHA-256 of what was presented. Missing, unknown,
//!    revoked or expired: `401`;
//! 2. checks the scope the route needs: `ingest` for webhooks, `read` for `GET`/`HEAD` API
//!    calls, `write` for every other API call (and the chat stream, which is a `GET` that
//!    changes things). A stored token without it: `403`;
//! 3. asks `data.auth.http` when such a package is loaded, with the request (method, path,
//!    headers, body), the token and the allow-listed environment: anything but
//!    `allow == true` (including an evaluation error, which is logged) is `403`;
//! 4. hands the handler a [`RequestContext`]: the principal and the client address.
//!
//! Other routes (the dashboard) get a [`RequestContext`] too: with a stored token that has
//! the `read` scope presented over Basic or Bearer, its principal; they authenticate
//! themselves otherwise.
//!
//! A stored token's last use is recorded at most once per [`LAST_USED_EVERY`] per token and
//! process ([`UsageRecorder`]): the first use writes at once (in the background), later ones
//! within the interval are remembered and written by a flush when it has passed, so the
//! intake path never waits on, or writes, a row per request.

use crate::ApiError;
use crate::state::ServerState;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use heron_core::TokenId;
use heron_core::access::{Scope, TokenRefusal, token_hash};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often at most a stored token's `last_used_at` is written, per token and process.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The stored token's name, `configured` for a token from the settings, `schema:<name>`
    /// for a schema token, `pubsub:<email>` for a Pub/Sub push, `anonymous` without auth.
    pub name: String,
    pub kind: PrincipalKind,
    pub scopes: Vec<Scope>,
    /// Claims of a verified ID token; `{}` otherwise.
    pub claims: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    Anonymous,
    Configured,
    Schema,
    Stored(TokenId),
    Pubsub,
}

impl PrincipalKind {
    fn as_str(&self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::Configured => "configured",
            PrincipalKind::Schema => "schema",
            PrincipalKind::Stored(_) => "stored",
            PrincipalKind::Pubsub => "pubsub",
        }
    }
}

/// What the middleware hands every handler.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub principal: Option<Principal>,
    /// The client address (`X-Forwarded-For`'s first entry with
    /// `rate_limit.trust_forwarded_for`, else the peer).
    pub remote: Option<String>,
}

impl RequestContext {
    /// A stored token's principal, when the request was made with one.
    pub fn stored_token(&self) -> Option<&Principal> {
        self.principal
            .as_ref()
            .filter(|p| matches!(p.kind, PrincipalKind::Stored(_)))
    }
}

/// What a route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Guard {
    Webhook {
        kind: String,
        schema: String,
    },
    Api(Scope),
    /// Authenticates itself (dashboard, Slack, health…).
    Other,
}

fn guard(method: &Method, path: &str) -> Guard {
    if let Some(rest) = path.strip_prefix("/hooks/alert/") {
        let mut parts = rest.splitn(2, '/');
        if let (Some(kind), Some(schema)) = (parts.next(), parts.next()) {
            return Guard::Webhook {
                kind: kind.to_owned(),
                schema: schema.to_owned(),
            };
        }
        return Guard::Other;
    }
    if path == "/api/v1/openapi.json" {
        return Guard::Other;
    }
    if path.starts_with("/api/") {
        let reads = matches!(*method, Method::GET | Method::HEAD);
        // The chat stream is a GET (for EventSource) that asks the agent and stores comments.
        if reads && !path.ends_with("/chat/stream") {
            return Guard::Api(Scope::Read);
        }
        return Guard::Api(Scope::Write);
    }
    Guard::Other
}

/// Records stored tokens' last use; see the module documentation.
#[derive(Default)]
pub(crate) struct UsageRecorder {
    inner: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    /// When each token's use was last written, and a later use waiting for the next flush.
    tokens: HashMap<TokenId, (Instant, Option<heron_core::Timestamp>)>,
    flusher: bool,
}

impl UsageRecorder {
    /// Notes a use at `at`: `Some` when it should be written now (and the flusher started).
    fn note(&self, id: TokenId, at: heron_core::Timestamp) -> (bool, bool) {
        let mut usage = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let start_flusher = !std::mem::replace(&mut usage.flusher, true);
        let write = match usage.tokens.get_mut(&id) {
            Some((written, pending)) if now.duration_since(*written) < LAST_USED_EVERY => {
                *pending = Some(at);
                false
            }
            Some(entry) => {
                *entry = (now, None);
                true
            }
            None => {
                usage.tokens.insert(id, (now, None));
                true
            }
        };
        (write, start_flusher)
    }

    /// The waiting uses whose interval has passed; they count as written now.
    fn due(&self) -> Vec<(TokenId, heron_core::Timestamp)> {
        let mut usage = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, (written, pending)) in usage.tokens.iter_mut() {
            if now.duration_since(*written) >= LAST_USED_EVERY
                && let Some(at) = pending.take()
            {
                *written = now;
                due.push((*id, at));
            }
        }
        due
    }
}

fn record_use(state: &ServerState, id: TokenId, at: heron_core::Timestamp) {
    let (write, start_flusher) = state.inner.usage.note(id, at);
    if write {
        let store = state.inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_tokens(&[(id, at)]).await {
                tracing::warn!(error = %e, "could not record a token's last use");
            }
        });
    }
    if start_flusher {
        let weak = Arc::downgrade(&state.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LAST_USED_EVERY / 6);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let due = inner.usage.due();
                if !due.is_empty()
                    && let Err(e) = inner.store.touch_api_tokens(&due).await
                {
                    tracing::warn!(error = %e, "could not record tokens' last use");
                }
            }
        });
    }
}

fn remote_address(state: &ServerState, request: &Request) -> Option<String> {
    if state.inner.settings.rate_limits.trust_forwarded_for
        && let Some(first) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    {
        return Some(first.to_owned());
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The middleware; see the module documentation.
pub(crate) async fn enforce(
    axum::extract::State(state): axum::extract::State<ServerState>,
    mut request: Request,
    next: Next,
) -> Response {
    let remote = remote_address(&state, &request);
    let guard = guard(request.method(), request.uri().path());
    let principal = match &guard {
        Guard::Other => dashboard_principal(&state, request.headers()).await,
        Guard::Webhook { kind, schema } => {
            let query = request.uri().query().map(str::to_owned);
            match authenticate_webhook(&state, kind, schema, request.headers(), query.as_deref())
                .await
            {
                Ok(p) => Some(p),
                Err(e) => return e.into_response(),
            }
        }
        Guard::Api(scope) => match authenticate_api(&state, *scope, request.headers()).await {
            Ok(p) => Some(p),
            Err(e) => return e.into_response(),
        },
    };
    if guard != Guard::Other
        && let Some(principal) = &principal
    {
        match crate::auth_http::check(&state, principal, remote.as_deref(), request).await {
            Ok(allowed) => request = allowed,
            Err(e) => return e.into_response(),
        }
    }
    request
        .extensions_mut()
        .insert(RequestContext { principal, remote });
    next.run(request).await
}

fn all_scopes() -> Vec<Scope> {
    Scope::ALL.to_vec()
}

async fn authenticate_webhook(
    state: &ServerState,
    kind: &str,
    schema: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, ApiError> {
    if kind == "pubsub"
        && let Some(verifier) = &state.inner.pubsub_oidc
    {
        let claims = verifier.verify_request(headers).await?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        return Ok(Principal {
            name: format!("pubsub:{email}"),
            kind: PrincipalKind::Pubsub,
            scopes: vec![Scope::Ingest],
            claims,
        });
    }
    let auth = &state.inner.settings.auth;
    let crate::AuthMode::Tokens(config) = auth else {
        return Ok(anonymous());
    };
    let token = crate::auth::presented_token(headers, query)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    if crate::auth::matches_any(&token, &config.tokens) {
        return Ok(configured());
    }
    let schema_tokens = config
        .schema_tokens
        .get(schema)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if crate::auth::matches_any(&token, schema_tokens) {
        return Ok(Principal {
            name: format!("schema:{schema}"),
            kind: PrincipalKind::Schema,
            scopes: vec![Scope::Ingest],
            claims: json!({}),
        });
    }
    stored(state, &token, Scope::Ingest).await
}

async fn authenticate_api(
    state: &ServerState,
    scope: Scope,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let crate::AuthMode::Tokens(config) = &state.inner.settings.auth else {
        return Ok(anonymous());
    };
    let token = crate::auth::presented_token(headers, None)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
    if crate::auth::matches_any(&token, &config.tokens) {
        return Ok(configured());
    }
    stored(state, &token, scope).await
}

/// A stored token presented to a page, if it may read.
async fn dashboard_principal(state: &ServerState, headers: &HeaderMap) -> Option<Principal> {
    let crate::AuthMode::Tokens(config) = &state.inner.settings.auth else {
        return None;
    };
    let token = crate::auth::presented_token(headers, None)?;
    if crate::auth::matches_any(&token, &config.tokens) {
        return None;
    }
    stored(state, &token, Scope::Read).await.ok()
}

fn anonymous() -> Principal {
    Principal {
        name: "anonymous".into(),
        kind: PrincipalKind::Anonymous,
        scopes: all_scopes(),
        claims: json!({}),
    }
}

fn configured() -> Principal {
    Principal {
        name: "configured".into(),
        kind: PrincipalKind::Configured,
        scopes: all_scopes(),
        claims: json!({}),
    }
}

async fn stored(state: &ServerState, token: &str, scope: Scope) -> Result<Principal, ApiError> {
    let found = state
        .inner
        .store
        .find_api_token(&token_hash(token))
        .await
        .map_err(|e| match e {
            heron_core::ports::StoreError::Unavailable(m) => ApiError::Unavailable(m),
            other => ApiError::Internal(other.to_string()),
        })?
        .ok_or_else(|| ApiError::Unauthorized("invalid token".into()))?;
    let now = chrono::Utc::now();
    match found.usable_at(now) {
        Ok(()) => {}
        Err(TokenRefusal::Revoked) => {
            return Err(ApiError::Unauthorized("the token was revoked".into()));
        }
        Err(TokenRefusal::Expired) => {
            return Err(ApiError::Unauthorized("the token has expired".into()));
        }
    }
    if !found.allows(scope) {
        return Err(ApiError::Forbidden(format!(
            "the token {:?} lacks the {scope} scope",
            found.name
        )));
    }
    record_use(state, found.id, now);
    Ok(Principal {
        name: found.name,
        kind: PrincipalKind::Stored(found.id),
        scopes: found.scopes,
        claims: json!({}),
    })
}

/// The token part of `data.auth.http`'s input.
pub(crate) fn principal_input(principal: &Principal) -> Value {
    json!({
        "name": principal.name,
        "kind": principal.kind.as_str(),
        "scopes": principal.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
        "claims": principal.claims,
    })
}

/// Headers as `data.auth.http` sees them: lowercase name → every value, in order.
pub(crate) fn header_input(headers: &HeaderMap) -> Value {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name.as_str().to_owned())
            .or_default()
            .push(Value::String(
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
    }
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, Value::Array(v)))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_ingest_read_or_write_by_path_and_method() {
        assert_eq!(
            guard(&Method::POST, "/hooks/alert/raw/okta"),
            Guard::Webhook {
                kind: "raw".into(),
                schema: "okta".into()
            }
        );
        assert_eq!(
            guard(&Method::GET, "/api/v1/tickets"),
            Guard::Api(Scope::Read)
        );
        assert_eq!(
            guard(&Method::HEAD, "/api/v1/tickets"),
            Guard::Api(Scope::Read)
        );
        assert_eq!(
            guard(&Method::PATCH, "/api/v1/tickets/x"),
            Guard::Api(Scope::Write)
        );
        assert_eq!(
            guard(&Method::GET, "/api/v1/tickets/x/chat/stream"),
            Guard::Api(Scope::Write)
        );
        assert_eq!(guard(&Method::GET, "/api/v1/openapi.json"), Guard::Other);
        assert_eq!(guard(&Method::GET, "/tickets"), Guard::Other);
        assert_eq!(guard(&Method::POST, "/hooks/slack/event"), Guard::Other);
    }

    #[test]
    fn a_token_is_written_once_per_interval_and_later_uses_wait_for_the_flush() {
        let usage = UsageRecorder::default();
        let id = TokenId::new();
        let t = chrono::Utc::now();
        assert_eq!(
            usage.note(id, t),
            (true, true),
            "first use: written, flusher started"
        );
        assert_eq!(
            usage.note(id, t),
            (false, false),
            "within the interval: waits"
        );
        assert!(usage.due().is_empty(), "the interval has not passed");
        assert_eq!(usage.note(TokenId::new(), t), (true, false));
    }

    #[test]
    fn headers_are_lowercase_names_with_every_value() {
        let mut h = HeaderMap::new();
        h.append("X-Thing", "a".parse().unwrap());
        h.append("x-thing", "b".parse().unwrap());
        assert_eq!(header_input(&h), json!({"x-thing": ["a", "b"]}));
    }
}
