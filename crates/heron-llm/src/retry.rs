//! The HTTP transport under async-openai: one request at a time, each with a deadline, retried
//! by one policy.
//!
//! async-openai's own executor retries too (3 times, on 429, 5xx and connection errors, with
//! unjittered backoff, an unbounded `Retry-After`, and no retry of timeouts). It is replaced
//! here through `Client::with_http_service`, so exactly one policy decides, and it counts
//! every kind of transient failure against the same `max_retries`:
//!
//! - retried: 408, 429 (except `insufficient_quota`, which waiting cannot fix), 5xx, timeouts,
//!   connection failures and bodies cut off mid-way;
//! - never retried: any other status (400, 401, 403, 404, 422…), so a bad key or a bad request
//!   costs exactly one request;
//! - the wait before retry `n` (from 0) is `Retry-After` when the server sent one (seconds, or
//!   `retry-after-ms`) plus up to 100 ms of jitter, otherwise a random duration in
//!   `[d/2, d]` with `d = min(base × 2ⁿ, 8 s)`, so clients that failed together do not retry
//!   together;
//! - a `Retry-After` longer than [`MAX_RETRY_AFTER`] is not waited for in-line: the failure is
//!   returned at once with the wait, for the caller's job queue to schedule.
//!
//! Every non-success outcome leaves here as an [`HttpFailure`] (boxed in `OpenAIError::Boxed`),
//! which keeps what async-openai's error type would lose: the status, the server's error
//! message and code, and `Retry-After`. Response bodies are read in full here, under the
//! request's deadline, so a body that stalls is a timeout like any other.

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Longest `Retry-After` waited for inside one call.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Largest response body accepted; a model endpoint has no reason to send more.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const RETRY_AFTER_JITTER_MS: u64 = 100;

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    /// First backoff step.
    pub base_delay: Duration,
    /// Deadline of one attempt (the reqwest client enforces it; kept here for messages).
    pub timeout: Duration,
}

impl RetryPolicy {
    /// The wait before retry `attempt` (0-based) when the server named none.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(MAX_BACKOFF);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=spread))
    }
}

/// Why a model call did not succeed, after the retries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// `error.type` of the body, when it has one.
        kind: Option<String>,
        /// `error.code` of the body, when it has one.
        code: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the endpoint: {0}")]
    Connection(String),
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Other(String),
}

impl HttpFailure {
    fn is_transient(&self) -> bool {
        match self {
            Self::Status {
                status, kind, code, ..
            } => {
                let quota = [kind, code]
                    .iter()
                    .any(|v| v.as_deref() == Some("insufficient_quota"));
                matches!(status, 408 | 500..=599) || (*status == 429 && !quota)
            }
            Self::Timeout(_) | Self::Connection(_) => true,
            Self::Protocol(_) | Self::Other(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A tower service that sends async-openai's requests with reqwest under [`RetryPolicy`].
#[derive(Clone)]
pub(crate) struct RetryingTransport {
    client: reqwest::Client,
    policy: Arc<RetryPolicy>,
}

impl RetryingTransport {
    pub(crate) fn new(client: reqwest::Client, policy: RetryPolicy) -> Self {
        Self {
            client,
            policy: Arc::new(policy),
        }
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for RetryingTransport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let client = self.client.clone();
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let mut attempt = 0u32;
            loop {
                let failure = match send(&client, &request, &policy).await? {
                    Ok(response) => return Ok(response),
                    Err(failure) => failure,
                };
                if !failure.is_transient() || attempt >= policy.max_retries {
                    return Err(OpenAIError::Boxed(Box::new(failure)));
                }
                let wait = match failure.retry_after() {
                    Some(wait) if wait > MAX_RETRY_AFTER => {
                        return Err(OpenAIError::Boxed(Box::new(failure)));
                    }
                    Some(wait) => {
                        wait + Duration::from_millis(fastrand::u64(0..=RETRY_AFTER_JITTER_MS))
                    }
                    None => policy.backoff(attempt),
                };
                tracing::warn!(attempt = attempt + 1, ?wait, error = %failure, "model call failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        })
    }
}

/// One attempt. The outer error is a request that could not even be built (not retried).
async fn send(
    client: &reqwest::Client,
    factory: &HttpRequestFactory,
    policy: &RetryPolicy,
) -> Result<Result<reqwest::Response, HttpFailure>, OpenAIError> {
    let request = factory.build().await?;
    let response = match client.execute(request).await {
        Ok(response) => response,
        Err(e) => return Ok(Err(transport_failure(&e, policy))),
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match read_body(response).await {
        Ok(body) => body,
        Err(failure) => return Ok(Err(failure_with(failure, policy))),
    };
    if status.is_success() {
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.headers_mut() = headers;
        return Ok(Ok(reqwest::Response::from(rebuilt)));
    }
    Ok(Err(status_failure(status.as_u16(), &headers, &body)))
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_body(mut response: reqwest::Response) -> Result<bytes::Bytes, BodyError> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn failure_with(error: BodyError, policy: &RetryPolicy) -> HttpFailure {
    match error {
        BodyError::Transport(e) => transport_failure(&e, policy),
        BodyError::TooLarge => {
            HttpFailure::Protocol(format!("the answer is larger than {MAX_BODY_BYTES} bytes"))
        }
    }
}

fn transport_failure(error: &reqwest::Error, policy: &RetryPolicy) -> HttpFailure {
    if error.is_timeout() {
        HttpFailure::Timeout(policy.timeout)
    } else if error.is_connect() || error.is_request() || error.is_body() {
        // Refused, reset, or cut off mid-way: the next attempt may well get through.
        HttpFailure::Connection(error_chain(error))
    } else {
        HttpFailure::Other(error_chain(error))
    }
}

/// reqwest's top-level message ("error sending request") hides the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn status_failure(status: u16, headers: &http::HeaderMap, body: &[u8]) -> HttpFailure {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let message = field("message").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(no body)".to_owned()
        } else {
            text.chars().take(300).collect()
        }
    });
    HttpFailure::Status {
        status,
        message,
        kind: field("type"),
        code: field("code"),
        retry_after: retry_after(headers),
    }
}

/// `retry-after-ms` (OpenAI sends it) or `Retry-After` in seconds; an HTTP-date is ignored
/// and the backoff applies instead.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    value("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| value("retry-after").map(Duration::from_secs_f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        let p = policy();
        for _ in 0..200 {
            let first = p.backoff(0);
            assert!((100..=200).contains(&first.as_millis()), "{first:?}");
            let third = p.backoff(2);
            assert!((400..=800).contains(&third.as_millis()), "{third:?}");
            let late = p.backoff(30);
            assert!((4000..=8000).contains(&late.as_millis()), "{late:?}");
        }
        let samples: std::collections::HashSet<u128> =
            (0..50).map(|_| p.backoff(3).as_millis()).collect();
        assert!(samples.len() > 5, "no jitter: {samples:?}");
    }

    #[test]
    fn only_rate_limits_server_errors_and_transport_failures_are_transient() {
        let status = |status: u16, code: Option<&str>| HttpFailure::Status {
            status,
            message: String::new(),
            kind: None,
            code: code.map(str::to_owned),
            retry_after: None,
        };
        for transient in [408, 429, 500, 502, 503, 504] {
            assert!(status(transient, None).is_transient(), "{transient}");
        }
        for permanent in [400, 401, 403, 404, 409, 422] {
            assert!(!status(permanent, None).is_transient(), "{permanent}");
        }
        assert!(!status(429, Some("insufficient_quota")).is_transient());
        assert!(HttpFailure::Timeout(Duration::from_secs(1)).is_transient());
        assert!(HttpFailure::Connection("refused".into()).is_transient());
        assert!(!HttpFailure::Protocol("big".into()).is_transient());
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds_and_ignores_dates() {
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", http::HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        let mut dated = http::HeaderMap::new();
        dated.insert(
            "retry-after",
            http::HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&dated), None);
    }

    #[test]
    fn an_error_body_gives_its_message_type_and_code() {
        let body = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let failure = status_failure(429, &http::HeaderMap::new(), body);
        assert_eq!(
            failure,
            HttpFailure::Status {
                status: 429,
                message: "Rate limit reached".into(),
                kind: Some("requests".into()),
                code: Some("rate_limit_exceeded".into()),
                retry_after: None,
            }
        );
        let html = status_failure(502, &http::HeaderMap::new(), b"<html>Bad gateway</html>");
        assert!(html.to_string().contains("Bad gateway"), "{html}");
    }
}
