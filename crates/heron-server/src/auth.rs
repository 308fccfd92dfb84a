//! Bearer-token authentication for webhooks and the API.
//!
//! Tokens come from configuration. Comparison hashes both sides with SHA-256 and compares the
//! digests in constant time, so neither content nor length of a configured token leaks
//! through timing. Senders that cannot set headers may use HTTP Basic (the password is the
//! token; AWS SNS supports credentials in the endpoint URL) or a `token` query parameter
//! (Pub/Sub push endpoints).

use crate::ApiError;
use axum::http::HeaderMap;
use base64::Engine as _;
use ring::digest::{SHA256, digest};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Only allowed on a loopback address (checked at start-up).
    Disabled,
    Tokens(AuthConfig),
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Valid for every webhook and for the API.
    pub tokens: Vec<String>,
    /// Valid for the webhooks of one schema only.
    pub schema_tokens: BTreeMap<String, Vec<String>>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("schemas", &self.schema_tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

pub(crate) fn matches_any(presented: &str, candidates: &[String]) -> bool {
    let presented = digest(&SHA256, presented.as_bytes());
    // Check every candidate, so timing doesn't reveal which one matched.
    candidates
        .iter()
        .filter(|c| !c.is_empty())
        .fold(false, |found, candidate| {
            let candidate = digest(&SHA256, candidate.as_bytes());
            found | bool::from(presented.as_ref().ct_eq(candidate.as_ref()))
        })
}

/// The token a request presents, from `Authorization: Bearer`, `Authorization: Basic` or
/// `?token=` (percent-decoded). An empty token is no token: it can never match.
pub(crate) fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    presented_token_raw(headers, query).filter(|t| !t.is_empty())
}

fn presented_token_raw(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(token) = value.strip_prefix("Bearer ") {
            return Some(token.trim().to_owned());
        }
        if let Some(encoded) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text
                .split_once(':')
                .map(|(_, password)| password.to_owned());
        }
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

impl AuthMode {
    pub fn check_webhook(
        &self,
        schema: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), ApiError> {
        let AuthMode::Tokens(config) = self else {
            return Ok(());
        };
        let token = presented_token(headers, query)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let schema_tokens = config
            .schema_tokens
            .get(schema)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Empty configured tokens are refused at start-up; skipping them here as well means
        // no configuration path can ever open a schema to an empty token.
        if matches_any(&token, &config.tokens) | matches_any(&token, schema_tokens) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("invalid token".into()))
        }
    }

    pub fn check_api(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let AuthMode::Tokens(config) = self else {
            return Ok(());
        };
        let token = presented_token(headers, None)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        if matches_any(&token, &config.tokens) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("invalid token".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config() -> AuthMode {
        AuthMode::Tokens(AuthConfig {
            tokens: vec!["global-secret".into()],
            schema_tokens: BTreeMap::from([("okta".into(), vec!["okta-secret".into()])]),
        })
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn schema_token_opens_only_its_own_schema() {
        let auth = config();
        assert!(
            auth.check_webhook("okta", &bearer("okta-secret"), None)
                .is_ok()
        );
        assert!(
            auth.check_webhook("falco", &bearer("okta-secret"), None)
                .is_err()
        );
        assert!(auth.check_api(&bearer("okta-secret")).is_err());
    }

    #[test]
    fn global_token_opens_webhooks_and_api() {
        let auth = config();
        assert!(
            auth.check_webhook("falco", &bearer("global-secret"), None)
                .is_ok()
        );
        assert!(auth.check_api(&bearer("global-secret")).is_ok());
    }

    #[test]
    fn basic_password_and_query_token_are_accepted() {
        let auth = config();
        let mut h = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("sns:global-secret");
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
        assert!(auth.check_webhook("x", &h, None).is_ok());
        assert!(
            auth.check_webhook("x", &HeaderMap::new(), Some("a=1&token=global-secret"))
                .is_ok()
        );
        assert!(
            auth.check_webhook("x", &HeaderMap::new(), Some("token=nope"))
                .is_err()
        );
    }

    #[test]
    fn missing_or_prefix_token_is_refused() {
        let auth = config();
        assert!(auth.check_webhook("x", &HeaderMap::new(), None).is_err());
        assert!(auth.check_webhook("x", &bearer("global"), None).is_err());
        assert!(auth.check_webhook("x", &bearer(""), None).is_err());
    }

    #[test]
    fn empty_tokens_never_match_even_when_one_is_configured() {
        let auth = AuthMode::Tokens(AuthConfig {
            tokens: vec![String::new()],
            schema_tokens: BTreeMap::from([("okta".into(), vec![String::new()])]),
        });
        assert!(auth.check_webhook("okta", &bearer(""), None).is_err());
        assert!(
            auth.check_webhook("okta", &HeaderMap::new(), Some("token="))
                .is_err()
        );
        assert!(auth.check_api(&bearer(" ")).is_err());
    }

    #[test]
    fn query_token_is_percent_decoded() {
        let auth = AuthMode::Tokens(AuthConfig {
            tokens: vec!["a+b/c=d".into()],
            schema_tokens: BTreeMap::new(),
        });
        assert!(
            auth.check_webhook("x", &HeaderMap::new(), Some("token=a%2Bb%2Fc%3Dd"))
                .is_ok()
        );
    }
}
