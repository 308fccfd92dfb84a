#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Dashboard sign-in with OpenID Connect against a local fake identity provider that serves
//! real discovery, JWKS and token answers, its ID tokens signed with ES256.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use heron_app::{Intake, PolicyHandle};
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::testing::InMemoryStore;
use heron_core::*;
use heron_server::{AuthConfig, AuthMode, Oidc, OidcSettings, ServerSettings, ServerState};
use http_body_util::BodyExt;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tower::ServiceExt;

struct NoPolicies;

impl PolicyEngine for NoPolicies {
    fn ingest(&self, _: &SchemaName, _: &serde_json::Value) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput::default())
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo::default()
    }
}

/// The identity provider: the nonce its next ID token carries is set by the test.
#[derive(Clone)]
struct FakeIdp {
    issuer: String,
    key: Arc<EcdsaKeyPair>,
    nonce: Arc<Mutex<String>>,
    token_requests: Arc<Mutex<Vec<String>>>,
}

impl FakeIdp {
    async fn start() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let idp = Self {
            issuer,
            key: Arc::new(key),
            nonce: Arc::default(),
            token_requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get({
                    let idp = idp.clone();
                    move || async move { axum::Json(idp.discovery()) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get({
                    let idp = idp.clone();
                    move || async move { axum::Json(idp.jwks()) }
                }),
            )
            .route(
                "/token",
                axum::routing::post({
                    let idp = idp.clone();
                    move |body: String| async move {
                        idp.token_requests.lock().unwrap().push(body);
                        axum::Json(json!({
                            "access_token": "at-1",
                            "token_type": "Bearer",
                            "expires_in": 3600,
                            "id_token": idp.id_token(&idp.nonce.lock().unwrap().clone()),
                        }))
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        idp
    }

    fn discovery(&self) -> serde_json::Value {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": format!("{}/authorize", self.issuer),
            "token_endpoint": format!("{}/token", self.issuer),
            "jwks_uri": format!("{}/jwks", self.issuer),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })
    }

    fn jwks(&self) -> serde_json::Value {
        let public = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
        }]})
    }

    fn id_token(&self, nonce: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(
            json!({
                "iss": self.issuer, "sub": "user-1", "aud": "heron", "iat": now, "exp": now + 300,
                "nonce": nonce, "email": "alice@example.com", "email_verified": true,
            })
            .to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

async fn app(idp: &FakeIdp) -> axum::Router {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn heron_core::ports::Store> = Arc::new(InMemoryStore::new());
    let oidc = Oidc::new(OidcSettings {
        issuer: idp.issuer.clone(),
        client_id: "heron".into(),
        client_secret: Some("client-secret".into()),
        redirect_url: "http://heron.test/auth/callback".into(),
        session_secret: vec![7; 32],
        secure_cookies: true,
    })
    .unwrap();
    let settings = ServerSettings {
        auth: AuthMode::Tokens(AuthConfig {
            tokens: vec!["api-token".into()],
            ..AuthConfig::default()
        }),
        oidc: Some(oidc),
        ..ServerSettings::default()
    };
    let intake = Intake::new(store.clone(), Arc::new(Notify::new()));
    let state = ServerState::new(
        store,
        intake,
        PolicyHandle::new(Arc::new(NoPolicies)),
        settings,
        None,
    )
    .unwrap();
    heron_server::router(state)
}

async fn send(
    app: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.body(Body::empty()).unwrap()
}

/// `name=value` from the response's Set-Cookie headers, and the whole header.
fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> (String, String) {
    let header = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"));
    (header.split(';').next().unwrap().to_owned(), header)
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// Runs the flow up to the callback; returns the session cookie (`name=value`).
async fn sign_in(app: &axum::Router, idp: &FakeIdp) -> String {
    let (status, headers, _) = send(app, get("/auth/login?next=%2Fevents", None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let authorize = headers["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", idp.issuer)),
        "{authorize}"
    );
    assert_eq!(query_param(&authorize, "response_type"), "code");
    assert_eq!(query_param(&authorize, "code_challenge_method"), "S256");
    assert!(query_param(&authorize, "scope").contains("openid"));
    let (login_cookie, login_header) = set_cookie(&headers, "heron_login");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(login_header.contains(attribute), "{login_header}");
    }
    *idp.nonce.lock().unwrap() = query_param(&authorize, "nonce");
    let state = query_param(&authorize, "state");

    let (status, headers, body) = send(
        app,
        get(
            &format!("/auth/callback?code=code-1&state={state}"),
            Some(&login_cookie),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(
        headers["location"], "/events",
        "back where the user was going"
    );
    let (session, header) = set_cookie(&headers, "heron_session");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=28800"] {
        assert!(header.contains(attribute), "{header}");
    }
    let exchanged = idp.token_requests.lock().unwrap().last().cloned().unwrap();
    assert!(
        exchanged.contains("code=code-1") && exchanged.contains("code_verifier="),
        "{exchanged}"
    );
    session
}

#[tokio::test]
async fn an_analyst_signs_in_through_the_identity_provider_and_sees_the_pages() {
    let idp = FakeIdp::start().await;
    let app = app(&idp).await;

    let (status, headers, _) = send(&app, get("/alerts?x=1", None)).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a page without a session goes to sign in"
    );
    assert_eq!(headers["location"], "/auth/login?next=%2Falerts%3Fx%3D1");

    let session = sign_in(&app, &idp).await;
    let (status, _, html) = send(&app, get("/", Some(&session))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("alice@example.com"),
        "the signed-in user is shown"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a sign-out form with its CSRF token")
        .to_owned();

    // Signing out needs the session's CSRF token.
    let logout = |token: &str| {
        Request::post("/auth/logout")
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={token}")))
            .unwrap()
    };
    let (status, _, _) = send(&app, logout("forged")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = send(&app, logout(&csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (cleared, _) = set_cookie(&headers, "heron_session");
    assert_eq!(cleared, "heron_session=");
}

#[tokio::test]
async fn a_forged_state_token_nonce_or_session_is_refused() {
    let idp = FakeIdp::start().await;
    let app = app(&idp).await;

    // A callback nobody started, or with another state.
    let (status, _, _) = send(&app, get("/auth/callback?code=c&state=s", None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, headers, _) = send(&app, get("/auth/login", None)).await;
    let (login_cookie, _) = set_cookie(&headers, "heron_login");
    let authorize = headers["location"].to_str().unwrap().to_owned();
    let (status, _, _) = send(
        &app,
        get(
            "/auth/callback?code=c&state=not-the-state",
            Some(&login_cookie),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An ID token minted for another sign-in (its nonce differs).
    *idp.nonce.lock().unwrap() = "someone-elses-nonce".into();
    let state = query_param(&authorize, "state");
    let (status, _, body) = send(
        &app,
        get(
            &format!("/auth/callback?code=c&state={state}"),
            Some(&login_cookie),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // A session cookie whose payload was edited.
    let session = sign_in(&app, &idp).await;
    let (name, value) = session.split_once('=').unwrap();
    let (payload, tag) = value.split_once('.').unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["user"] = json!("mallory@example.com");
    let forged = format!(
        "{name}={}.{tag}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let (status, _, _) = send(&app, get("/", Some(&forged))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "back to sign in");

    // Where to go after sign-in is a path on this site only.
    let (_, headers, _) = send(&app, get("/auth/login?next=%2F%2Fevil.example", None)).await;
    let (login_cookie, _) = set_cookie(&headers, "heron_login");
    let authorize = headers["location"].to_str().unwrap().to_owned();
    *idp.nonce.lock().unwrap() = query_param(&authorize, "nonce");
    let state = query_param(&authorize, "state");
    let (_, headers, _) = send(
        &app,
        get(
            &format!("/auth/callback?code=c&state={state}"),
            Some(&login_cookie),
        ),
    )
    .await;
    assert_eq!(headers["location"], "/");

    // API tokens still open the pages (HTTP Basic), for scripts.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bot:api-token")
    );
    let request = Request::get("/")
        .header("authorization", basic)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
}
