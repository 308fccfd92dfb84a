#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Google ID tokens on the Pub/Sub webhook, against a local JWKS server and tokens signed
//! here with a test-only key (`tests/fixtures/pubsub`): nothing reaches Google.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use heron_app::{Intake, PolicyHandle};
use heron_core::SchemaName;
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::{EventQuery, Store};
use heron_core::testing::InMemoryStore;
use heron_server::{AuthConfig, AuthMode, PubsubOidcSettings, ServerSettings, ServerState};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;
use tower::ServiceExt;

const AUDIENCE: &str = "https://heron.example.com/hooks/alert/pubsub/falco";
const ACCOUNT: &str = "pusher@project.iam.gserviceaccount.com";

struct NoPolicies;

impl PolicyEngine for NoPolicies {
    fn ingest(&self, _: &SchemaName, _: &Value) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput::default())
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo::default()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pubsub")
            .join(name),
    )
    .unwrap()
}

/// An RS256 JWT over `claims`, signed with the fixture key `key` and naming `kid`.
fn sign(key: &str, kid: &str, claims: &Value) -> String {
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&fixture(key)).expect("a PKCS#8 RSA key");
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid, "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let message = format!("{header}.{payload}");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "email": ACCOUNT,
        "email_verified": true,
        "sub": "1234567890",
    })
}

/// Serves the fixture JWKS at `/certs`, counting fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/certs"), fetches)
}

async fn app(jwks_url: String) -> (axum::Router, Arc<dyn Store>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let settings = ServerSettings {
        auth: AuthMode::Tokens(AuthConfig {
            tokens: vec!["configured-token".into()],
            ..AuthConfig::default()
        }),
        pubsub_oidc: Some(PubsubOidcSettings {
            audience: AUDIENCE.into(),
            service_account: Some(ACCOUNT.into()),
            jwks_url,
        }),
        ..ServerSettings::default()
    };
    let state = ServerState::new(
        store.clone(),
        Intake::new(store.clone(), Arc::new(Notify::new())),
        PolicyHandle::new(Arc::new(NoPolicies)),
        settings,
        None,
    )
    .unwrap();
    (heron_server::router(state), store)
}

fn push(id: &str) -> String {
    json!({
        "message": {"data": STANDARD.encode(br#"{"rule":"r"}"#), "messageId": id},
        "subscription": "projects/p/subscriptions/s",
    })
    .to_string()
}

async fn post(
    app: &axum::Router,
    path: &str,
    bearer: Option<&str>,
    body: String,
) -> (StatusCode, String) {
    let mut request = Request::post(path).header("content-type", "application/json");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_push_signed_by_the_service_account_is_stored_and_every_forgery_is_refused() {
    let (jwks_url, fetches) = jwks_server().await;
    let (app, store) = app(jwks_url).await;
    let path = "/hooks/alert/pubsub/falco";

    let valid = sign("key.pk8.der", "test-key-1", &claims());
    let (status, body) = post(&app, path, Some(&valid), push("m1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        sign("key.pk8.der", "test-key-1", &c)
    };
    let now = chrono::Utc::now().timestamp();
    let refused = [
        ("no token", None),
        (
            "a configured Heron token instead",
            Some("configured-token".to_owned()),
        ),
        (
            "signed by another key",
            Some(sign("other.pk8.der", "test-key-1", &claims())),
        ),
        (
            "an unknown key id",
            Some(sign("key.pk8.der", "test-key-2", &claims())),
        ),
        (
            "another audience",
            Some(with(&|c| c["aud"] = json!("https://elsewhere.example.com"))),
        ),
        (
            "another issuer",
            Some(with(&|c| c["iss"] = json!("https://evil.example.com"))),
        ),
        ("expired", Some(with(&|c| c["exp"] = json!(now - 3600)))),
        (
            "an unverified e-mail",
            Some(with(&|c| c["email_verified"] = json!(false))),
        ),
        (
            "another account",
            Some(with(&|c| {
                c["email"] = json!("someone@project.iam.gserviceaccount.com")
            })),
        ),
        (
            "a tampered payload",
            Some({
                let other = with(&|c| c["sub"] = json!("other"));
                let parts: Vec<&str> = valid.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    other.split('.').nth(1).unwrap(),
                    parts[2]
                )
            }),
        ),
        ("not a JWT", Some("a.b".to_owned())),
    ];
    for (i, (what, token)) in refused.iter().enumerate() {
        let (status, body) = post(&app, path, token.as_deref(), push(&format!("bad-{i}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    let stored = store
        .list_events(&EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(stored.len(), 1, "only the valid push was stored");

    // The JWKS is cached: the valid token again fetches nothing new.
    let before = fetches.load(Ordering::SeqCst);
    let (status, _) = post(&app, path, Some(&valid), push("m2")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before,
        "served from the cache"
    );
    assert!(before >= 1);

    // Other webhooks still take Heron tokens.
    let (status, body) = post(
        &app,
        "/hooks/alert/raw/falco",
        Some("configured-token"),
        json!({"rule": "r"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_so_pubsub_retries() {
    let (app, _) = app("http://127.0.0.1:9/certs".into()).await;
    let token = sign("key.pk8.der", "test-key-1", &claims());
    let (status, body) = post(&app, "/hooks/alert/pubsub/falco", Some(&token), push("m")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
