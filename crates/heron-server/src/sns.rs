//! AWS SNS message signature verification.
//!
//! The signing certificate is fetched only from a URL whose host matches an allowed pattern
//! (`sns.<region>.amazonaws.com` by default) and whose path is an SNS certificate path; its
//! RSA key then checks the signature over the canonical string AWS documents for each message
//! type (SignatureVersion 1: SHA1, 2: SHA256). Subscription URLs are held to the same hosts.

use crate::ApiError;
use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsSettings {
    /// Host patterns for `SigningCertURL` and `SubscribeURL`; `*` matches one DNS label.
    pub allowed_hosts: Vec<String>,
    /// Follow `SubscribeURL` of verified subscription confirmations.
    pub confirm_subscriptions: bool,
    /// Accept only these topics (empty: any topic).
    pub allowed_topic_arns: Vec<String>,
    /// Allow plain-HTTP certificate and subscription URLs (local tests only).
    pub allow_insecure_urls: bool,
}

impl Default for SnsSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: vec![
                "sns.*.amazonaws.com".into(),
                "sns.*.amazonaws.com.cn".into(),
            ],
            confirm_subscriptions: false,
            allowed_topic_arns: Vec::new(),
            allow_insecure_urls: false,
        }
    }
}

/// An SNS HTTP(S) message, as AWS posts it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SnsEnvelope {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
}

/// At most this many signing certificates are kept (AWS rotates them rarely).
const CERT_CACHE_ENTRIES: usize = 64;
const MAX_CERT_BYTES: usize = 64 * 1024;

pub(crate) struct SnsVerifier {
    settings: SnsSettings,
    http: reqwest::Client,
    /// Certificate URL → the RSA public key in it.
    keys: Mutex<HashMap<String, Arc<SigningKey>>>,
}

/// A verified certificate's public key, cached until the certificate expires.
struct SigningKey {
    der: Vec<u8>,
    not_after: std::time::SystemTime,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("settings", &self.settings)
            .finish()
    }
}

impl SnsVerifier {
    /// Fails when no TLS provider is installed for the HTTP client.
    pub fn new(settings: SnsSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            settings,
            http,
            keys: Mutex::new(HashMap::new()),
        })
    }

    pub async fn verify(&self, envelope: &SnsEnvelope) -> Result<(), ApiError> {
        if !self.settings.allowed_topic_arns.is_empty()
            && !self
                .settings
                .allowed_topic_arns
                .contains(&envelope.topic_arn)
        {
            return Err(ApiError::Forbidden(format!(
                "SNS topic {} is not allowed",
                envelope.topic_arn
            )));
        }
        let algorithm: &'static dyn signature::VerificationAlgorithm =
            match envelope.signature_version.as_str() {
                "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
                other => {
                    return Err(ApiError::Unauthorized(format!(
                        "unsupported SNS SignatureVersion {other:?}"
                    )));
                }
            };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(envelope.signature.trim())
            .map_err(|_| ApiError::Unauthorized("the SNS Signature is not base64".into()))?;
        let key = self.public_key(&envelope.signing_cert_url).await?;
        let message = string_to_sign(envelope)?;
        UnparsedPublicKey::new(algorithm, key.der.as_slice())
            .verify(message.as_bytes(), &signature)
            .map_err(|_| ApiError::Unauthorized("the SNS signature does not verify".into()))
    }

    pub async fn confirm(&self, envelope: &SnsEnvelope) -> Result<(), ApiError> {
        if !self.settings.confirm_subscriptions {
            tracing::warn!(topic_arn = %envelope.topic_arn, "SNS subscription confirmation received but sns.confirm_subscriptions is off");
            return Err(ApiError::Forbidden(
                "SNS subscription confirmation is disabled; enable sns.confirm_subscriptions"
                    .into(),
            ));
        }
        let url = envelope
            .subscribe_url
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("SubscribeURL is missing".into()))?;
        let url = self.allowed_url(url, false)?;
        let response = self.http.get(url).send().await.map_err(|e| {
            ApiError::BadGateway(format!("confirming the SNS subscription failed: {e}"))
        })?;
        if !response.status().is_success() {
            return Err(ApiError::BadGateway(format!(
                "confirming the SNS subscription failed with HTTP {}",
                response.status()
            )));
        }
        tracing::info!(topic_arn = %envelope.topic_arn, "SNS subscription confirmed");
        Ok(())
    }

    fn allowed_url(&self, raw: &str, certificate: bool) -> Result<reqwest::Url, ApiError> {
        let refuse = |why: &str| ApiError::Unauthorized(format!("SNS URL {raw:?} refused: {why}"));
        let url = reqwest::Url::parse(raw).map_err(|_| refuse("not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.settings.allow_insecure_urls => {}
            _ => return Err(refuse("not https")),
        }
        let host = url.host_str().ok_or_else(|| refuse("no host"))?;
        if !self
            .settings
            .allowed_hosts
            .iter()
            .any(|p| host_matches(p, host))
        {
            return Err(refuse("host is not an allowed SNS host"));
        }
        if certificate
            && !(url.path().starts_with("/SimpleNotificationService-")
                && url.path().ends_with(".pem"))
        {
            return Err(refuse("not an SNS certificate path"));
        }
        Ok(url)
    }

    async fn public_key(&self, cert_url: &str) -> Result<Arc<SigningKey>, ApiError> {
        if let Some(key) = self.cached(cert_url) {
            return Ok(key);
        }
        let url = self.allowed_url(cert_url, true)?;
        let response = self.http.get(url).send().await.map_err(|e| {
            ApiError::BadGateway(format!("fetching the SNS signing certificate failed: {e}"))
        })?;
        if !response.status().is_success() {
            return Err(ApiError::BadGateway(format!(
                "fetching the SNS signing certificate failed with HTTP {}",
                response.status()
            )));
        }
        let too_large = || ApiError::BadGateway("the SNS signing certificate is too large".into());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_CERT_BYTES as u64)
        {
            return Err(too_large());
        }
        // Read in chunks so a hostile or broken host cannot make us buffer without bound.
        let mut response = response;
        let mut pem = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            ApiError::BadGateway(format!("reading the SNS signing certificate failed: {e}"))
        })? {
            if pem.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(too_large());
            }
            pem.extend_from_slice(&chunk);
        }
        let key = Arc::new(rsa_key_from_pem(&pem)?);
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= CERT_CACHE_ENTRIES {
                keys.clear();
            }
            keys.insert(cert_url.to_owned(), key.clone());
        }
        Ok(key)
    }

    fn cached(&self, cert_url: &str) -> Option<Arc<SigningKey>> {
        let mut keys = self.keys.lock().ok()?;
        let key = keys.get(cert_url)?;
        // A cached certificate that has since expired is fetched (and checked) again.
        if key.not_after <= std::time::SystemTime::now() {
            keys.remove(cert_url);
            return None;
        }
        Some(key.clone())
    }
}

/// The RSAPublicKey DER inside a PEM certificate that is currently valid.
fn rsa_key_from_pem(pem: &[u8]) -> Result<SigningKey, ApiError> {
    let bad = |why: String| ApiError::BadGateway(format!("bad SNS signing certificate: {why}"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    if !cert.validity().is_valid() {
        return Err(ApiError::Unauthorized(
            "the SNS signing certificate is expired or not yet valid".into(),
        ));
    }
    let not_after = u64::try_from(cert.validity().not_after.timestamp())
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap_or(std::time::UNIX_EPOCH);
    Ok(SigningKey {
        der: cert.public_key().subject_public_key.data.to_vec(),
        not_after,
    })
}

/// `*` in a pattern matches exactly one DNS label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern.len() == host.len()
        && pattern.iter().zip(&host).all(|(p, h)| {
            if *p == "*" {
                !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            } else {
                p.eq_ignore_ascii_case(h)
            }
        })
}

/// The canonical string AWS signs, per message type.
pub(crate) fn string_to_sign(e: &SnsEnvelope) -> Result<String, ApiError> {
    let mut fields: Vec<(&str, &str)> = vec![("Message", &e.message), ("MessageId", &e.message_id)];
    match e.kind.as_str() {
        "Notification" => {
            if let Some(subject) = &e.subject {
                fields.push(("Subject", subject));
            }
            fields.extend([
                ("Timestamp", e.timestamp.as_str()),
                ("TopicArn", &e.topic_arn),
                ("Type", &e.kind),
            ]);
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            let missing =
                |f: &str| ApiError::BadRequest(format!("{f} is missing from the SNS message"));
            let subscribe = e
                .subscribe_url
                .as_deref()
                .ok_or_else(|| missing("SubscribeURL"))?;
            let token = e.token.as_deref().ok_or_else(|| missing("Token"))?;
            fields.extend([
                ("SubscribeURL", subscribe),
                ("Timestamp", e.timestamp.as_str()),
                ("Token", token),
                ("TopicArn", &e.topic_arn),
                ("Type", &e.kind),
            ]);
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown SNS message type {other:?}"
            )));
        }
    }
    Ok(fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_one_label_per_star() {
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-1.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.evil.com.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.us-east-1.amazonaws.com.evil.com"
        ));
        assert!(!host_matches("sns.*.amazonaws.com", "evil.com"));
        assert!(host_matches("127.0.0.1", "127.0.0.1"));
    }

    #[test]
    fn certificate_urls_off_the_allowed_hosts_are_refused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let verifier = SnsVerifier::new(SnsSettings::default()).unwrap();
        let ok = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem";
        assert!(verifier.allowed_url(ok, true).is_ok());
        for bad in [
            "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://attacker.example/SimpleNotificationService-abc.pem",
            "https://sns.eu-west-1.amazonaws.com/other.pem",
            "not a url",
        ] {
            assert!(verifier.allowed_url(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn notification_string_to_sign_includes_subject_only_when_present() {
        let mut e = SnsEnvelope {
            kind: "Notification".into(),
            message_id: "m".into(),
            topic_arn: "arn".into(),
            subject: None,
            message: "{}".into(),
            timestamp: "t".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: None,
            token: None,
        };
        assert_eq!(
            string_to_sign(&e).unwrap(),
            "Message\n{}\nMessageId\nm\nTimestamp\nt\nTopicArn\narn\nType\nNotification\n"
        );
        e.subject = Some("s".into());
        assert!(
            string_to_sign(&e)
                .unwrap()
                .contains("Subject\ns\nTimestamp")
        );
    }
}
