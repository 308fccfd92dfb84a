#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A Pub/Sub push subscription with authentication, as configured in production: `heron serve`
//! runs with `HERON_PUBSUB_AUDIENCE`, `HERON_PUBSUB_SERVICE_ACCOUNT` and a JWKS address (a
//! local server with a test-only key, the one heron-server's own tests use), a Falco event
//! pushed with a Google-style ID token becomes a ticket, and a push with anything else is
//! refused and stores nothing.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AUDIENCE: &str = "https://heron.example.com/hooks/alert/pubsub/falco";
const ACCOUNT: &str = "pusher@project.iam.gserviceaccount.com";
const API_TOKEN: &str = "api-token-for-reading";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn key_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        repo_root()
            .join("crates/heron-server/tests/fixtures/pubsub")
            .join(name),
    )
    .unwrap()
}

/// An RS256 JWT over `claims`, signed with the fixture key `key`.
fn sign(key: &str, claims: &Value) -> String {
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&key_fixture(key)).unwrap();
    let header = URL_SAFE_NO_PAD
        .encode(json!({"alg": "RS256", "kid": "test-key-1", "typ": "JWT"}).to_string());
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
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

fn claims(email: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": "https://accounts.google.com", "aud": AUDIENCE,
        "exp": now + 3600, "iat": now,
        "email": email, "email_verified": true, "sub": "1234567890",
    })
}

async fn jwks_server() -> String {
    let jwks: Value = serde_json::from_slice(&key_fixture("jwks.json")).unwrap();
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/certs")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_pubsub_push_becomes_a_ticket_and_an_unsigned_one_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let jwks_url = jwks_server().await;
    let port = free_port();
    let _server = Running(
        Command::new(env!("CARGO_BIN_EXE_heron"))
            .env_remove("HERON_CONFIG")
            .env_remove("HERON_DATABASE_URL")
            .env("HERON_DATA_DIR", dir.path().join("data"))
            .env(
                "HERON_POLICIES",
                format!("[\"{}\"]", repo_root().join("policies").display()),
            )
            .env("HERON_AUTH__TOKENS", format!(r#"["{API_TOKEN}"]"#))
            .env("HERON_PUBSUB_AUDIENCE", AUDIENCE)
            .env("HERON_PUBSUB_SERVICE_ACCOUNT", ACCOUNT)
            .env("HERON_PUBSUB_JWKS_URL", &jwks_url)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let falco = std::fs::read(
        repo_root().join("policies/testdata/detect/falco/reverse_shell_in_container.json"),
    )
    .unwrap();
    let push = |id: &str| {
        json!({
            "message": {"data": STANDARD.encode(&falco), "messageId": id,
                        "attributes": {"source": "falco"}},
            "subscription": "projects/p/subscriptions/falco-push",
        })
    };
    let post = |bearer: Option<String>, id: &str| {
        let mut request = http
            .post(format!("{base}/hooks/alert/pubsub/falco"))
            .json(&push(id));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };

    for (why, bearer) in [
        ("no token", None),
        ("the API token instead", Some(API_TOKEN.to_owned())),
        (
            "another account",
            Some(sign("key.pk8.der", &claims("x@evil.example.com"))),
        ),
        ("another key", Some(sign("other.pk8.der", &claims(ACCOUNT)))),
    ] {
        let refused = post(bearer, "refused").await.unwrap();
        assert_eq!(refused.status().as_u16(), 401, "{why}");
    }
    let accepted = post(Some(sign("key.pk8.der", &claims(ACCOUNT))), "m-1")
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    let event_id = accepted.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let api = |path: &str| {
        http.get(format!("{base}/api/v1/{path}"))
            .bearer_auth(API_TOKEN)
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let tickets = loop {
        let tickets: Value = api("tickets").await.unwrap().json().await.unwrap();
        if tickets["items"].as_array().is_some_and(|t| !t.is_empty()) {
            break tickets;
        }
        assert!(Instant::now() < deadline, "no ticket: {tickets}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ticket = &tickets["items"][0];
    assert!(
        ticket["title"]
            .as_str()
            .unwrap()
            .starts_with("Falco: Redirect STDOUT/STDIN to Network Connection"),
        "{ticket}"
    );
    let events: Value = api("events").await.unwrap().json().await.unwrap();
    let stored = events["items"].as_array().unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the refused pushes stored nothing: {events}"
    );
    assert_eq!(stored[0]["id"], event_id.as_str());
}
