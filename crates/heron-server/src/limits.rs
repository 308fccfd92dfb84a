//! Request rate limits: per bearer token and per source address, answered `429` with
//! `Retry-After` (GCRA, from the `governor` crate).
//!
//! Invariants:
//! - a refused request is refused before any handler runs: nothing of it is stored, and the
//!   sender is told when to come back;
//! - tokens are keyed by their SHA-256, never kept in memory as given;
//! - health, readiness and metrics are never limited (probes must not fail under load);
//! - limiter state is in-process: with N servers behind a balancer the effective limit is up
//!   to N times the configured one.

use crate::ApiError;
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A sustained rate with a burst on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Per bearer token (requests without one are limited by source only).
    pub per_token: Option<RateLimit>,
    /// Per client address.
    pub per_source: Option<RateLimit>,
    /// Take the client address from the first `X-Forwarded-For` entry (behind a trusted
    /// proxy or load balancer); otherwise the peer address is the source.
    pub trust_forwarded_for: bool,
}

/// How often (in checked requests) idle keys are dropped.
const RETAIN_EVERY: u64 = 4096;

pub(crate) struct RateLimiters {
    per_token: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    per_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trust_forwarded_for: bool,
    checked: AtomicU64,
}

fn quota(limit: RateLimit) -> Quota {
    Quota::per_second(limit.per_second).allow_burst(limit.burst)
}

impl RateLimiters {
    pub(crate) fn new(settings: &RateLimitSettings) -> Option<Arc<Self>> {
        if settings.per_token.is_none() && settings.per_source.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            per_token: settings
                .per_token
                .map(|l| DefaultKeyedRateLimiter::keyed(quota(l))),
            per_source: settings
                .per_source
                .map(|l| DefaultKeyedRateLimiter::keyed(quota(l))),
            trust_forwarded_for: settings.trust_forwarded_for,
            checked: AtomicU64::new(0),
        }))
    }

    /// `Err(seconds to wait)` when a limit refuses the request.
    fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), u64> {
        if self.checked.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            if let Some(l) = &self.per_token {
                l.retain_recent();
            }
            if let Some(l) = &self.per_source {
                l.retain_recent();
            }
        }
        let clock = DefaultClock::default();
        if let Some(limiter) = &self.per_source
            && let Some(source) = self.source(headers, peer)
        {
            limiter
                .check_key(&source)
                .map_err(|no| no.wait_time_from(clock.now()).as_secs() + 1)?;
        }
        if let Some(limiter) = &self.per_token
            && let Some(token) = bearer(headers)
        {
            let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
                .as_ref()
                .try_into()
                .unwrap_or([0; 32]);
            limiter
                .check_key(&key)
                .map_err(|no| no.wait_time_from(clock.now()).as_secs() + 1)?;
        }
        Ok(())
    }

    fn source(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        if self.trust_forwarded_for
            && let Some(first) = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Some(first);
        }
        peer
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

pub(crate) async fn enforce(limiters: Arc<RateLimiters>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match limiters.check(request.headers(), peer) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            metrics::counter!("heron_requests_rate_limited_total").increment(1);
            let mut response =
                ApiError::TooManyRequests(format!("rate limit exceeded; retry in {wait} s"))
                    .into_response();
            if let Ok(value) = wait.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
            response
        }
    }
}
