//! Google-signed OpenID Connect ID tokens on the Pub/Sub push webhook.
//!
//! A push subscription with authentication sends `Authorization: Bearer <JWT>`, an RS256 ID
//! token signed by Google. When `pubsub_audience` is configured, `/hooks/alert/pubsub/*`
//! accepts only such a token, checked here with `ring`:
//! - the header names `RS256` and a `kid`; the signature verifies with that key of the JWKS
//!   (Google's `https://www.googleapis.com/oauth2/v3/certs` unless overridden), which is
//!   cached and fetched again when a token names a key it does not hold (at most every
//!   [`MIN_REFRESH`]) or when it is older than [`MAX_AGE`];
//! - `iss` is `https://accounts.google.com` (or `accounts.google.com`), `aud` is the
//!   configured audience, `exp` is in the future and `iat` not in it (60 s of leeway);
//! - `email_verified` is true and, when `pubsub_service_account` is set, `email` is it.
//!
//! Every refusal is `401`; a JWKS that cannot be fetched is `503` (Pub/Sub retries).

use crate::ApiError;
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Unknown key ids fetch the JWKS again at most this often.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// A cached JWKS older than this is fetched again.
pub const MAX_AGE: Duration = Duration::from_secs(6 * 3600);
const LEEWAY_SECS: i64 = 60;

/// What the operator configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubOidcSettings {
    pub audience: String,
    pub service_account: Option<String>,
    pub jwks_url: String,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Default)]
struct Keys {
    /// kid → (modulus, exponent), big-endian.
    keys: HashMap<String, (Vec<u8>, Vec<u8>)>,
    fetched: Option<Instant>,
}

pub struct PubsubOidc {
    settings: PubsubOidcSettings,
    http: reqwest::Client,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for PubsubOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubsubOidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unauthorized(why: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(format!("Pub/Sub ID token refused: {}", why.into()))
}

impl PubsubOidc {
    pub fn new(settings: PubsubOidcSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            settings,
            http,
            keys: RwLock::new(Keys::default()),
        })
    }

    /// Verifies the bearer ID token of a request; its claims when valid.
    pub async fn verify_request(&self, headers: &HeaderMap) -> Result<Value, ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("an Authorization: Bearer ID token is required"))?;
        self.verify(token, chrono::Utc::now().timestamp()).await
    }

    /// Verifies `token` at unix time `now`; see the module documentation.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Value, ApiError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauthorized("not a JWT"));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| unauthorized(format!("the {what} is not base64url")))
        };
        let header: Header = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|_| unauthorized("the header is not a JWT header"))?;
        if header.alg != "RS256" {
            return Err(unauthorized(format!(
                "algorithm {:?} is not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the header names no key"))?;
        let (n, e) = self.key(&kid).await?;
        let signed = &token[..token.len() - signature.len() - 1];
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &decode(signature, "signature")?,
            )
            .map_err(|_| unauthorized("bad signature"))?;
        let claims: Value = serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|_| unauthorized("the payload is not JSON"))?;
        self.check_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<(), ApiError> {
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !GOOGLE_ISSUERS.contains(&iss) {
            return Err(unauthorized(format!("issuer {iss:?} is not Google")));
        }
        let audience = &self.settings.audience;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(unauthorized("wrong audience"));
        }
        let exp = claims.get("exp").and_then(Value::as_i64);
        if exp.is_none_or(|exp| exp + LEEWAY_SECS <= now) {
            return Err(unauthorized("expired"));
        }
        if claims
            .get("iat")
            .and_then(Value::as_i64)
            .is_some_and(|iat| iat > now + LEEWAY_SECS)
        {
            return Err(unauthorized("issued in the future"));
        }
        if claims.get("email_verified").and_then(Value::as_bool) != Some(true) {
            return Err(unauthorized("the e-mail is not verified"));
        }
        if let Some(account) = &self.settings.service_account {
            let email = claims
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !email.eq_ignore_ascii_case(account) {
                return Err(unauthorized(format!(
                    "{email:?} is not the configured service account"
                )));
            }
        }
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.fetched.is_some_and(|at| at.elapsed() < MAX_AGE);
            if fresh && let Some(key) = keys.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        let mut keys = self.keys.write().await;
        let recent = keys.fetched.is_some_and(|at| at.elapsed() < MIN_REFRESH);
        if !recent {
            match self.fetch().await {
                Ok(fetched) => {
                    keys.keys = fetched;
                    keys.fetched = Some(Instant::now());
                }
                Err(e) if keys.keys.contains_key(kid) => {
                    tracing::warn!(error = %e, "could not refresh the Pub/Sub JWKS; using the cached keys");
                }
                Err(e) => {
                    tracing::error!(error = %e, url = %self.settings.jwks_url, "could not fetch the Pub/Sub JWKS");
                    return Err(ApiError::Unavailable(
                        "the keys to verify Pub/Sub ID tokens could not be fetched".into(),
                    ));
                }
            }
        }
        keys.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized(format!("unknown key id {kid:?}")))
    }

    async fn fetch(&self) -> Result<HashMap<String, (Vec<u8>, Vec<u8>)>, String> {
        let response = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let jwks: Jwks = response.json().await.map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for key in jwks.keys {
            if key.kty != "RSA" {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (key.kid, key.n, key.e) else {
                continue;
            };
            if let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) {
                keys.insert(kid, (n, e));
            }
        }
        Ok(keys)
    }
}
