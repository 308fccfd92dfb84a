//! Liveness, readiness and Prometheus metrics.

use crate::state::ServerState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use heron_app::metrics::{QUEUE_DEPTH, TRIAGE_QUEUE_DEPTH};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<ServerState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// How long a readiness or metrics probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Unauthenticated, so it says only what a load balancer needs: details (database errors,
/// policy packages) go to the log and to the authenticated API.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    ready: bool,
    database: DatabaseStatus,
    policies: PolicyStatus,
    agent: AgentStatus,
}

/// Whether new tickets are investigated. A disabled agent does not make Heron unready.
#[derive(Debug, Serialize, ToSchema)]
struct AgentStatus {
    enabled: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct DatabaseStatus {
    backend: &'static str,
    reachable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct PolicyStatus {
    loaded: bool,
    files: usize,
    ingest_schemas: usize,
    /// The last reload was refused and an older set is in force (details: the log and
    /// `GET /api/v1/policies`). Not a reason to be unready: the old set still works.
    reload_failing: bool,
}

/// Ready to take traffic: the database answers and policies are loaded.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<ServerState>) -> (StatusCode, Json<Readiness>) {
    let store = &state.inner.store;
    let reachable = match tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            false
        }
        Err(_) => {
            tracing::warn!(timeout = ?PROBE_TIMEOUT, "readiness: the database ping timed out");
            false
        }
    };
    let info = state.inner.policies.current().info();
    let loaded = info.files > 0;
    let ready = reachable && loaded;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready,
        database: DatabaseStatus {
            backend: store.backend(),
            reachable,
        },
        policies: PolicyStatus {
            loaded,
            files: info.files,
            ingest_schemas: info.ingest_schemas.len(),
            reload_failing: state.inner.policies.status().last_error.is_some(),
        },
        agent: AgentStatus {
            enabled: state.inner.agent.as_ref().is_some_and(|a| a.enabled),
        },
    };
    (status, Json(body))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<ServerState>) -> Response {
    let Some(handle) = &state.inner.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    if gauges_are_fresh(&state) {
        return render(handle);
    }
    if let Ok(Ok(stats)) =
        tokio::time::timeout(PROBE_TIMEOUT, state.inner.store.queue_stats(Utc::now())).await
    {
        metrics::gauge!(QUEUE_DEPTH, "state" => "pending").set(stats.pending as f64);
        metrics::gauge!(QUEUE_DEPTH, "state" => "processing").set(stats.processing as f64);
        metrics::gauge!(QUEUE_DEPTH, "state" => "failed").set(stats.failed as f64);
        metrics::gauge!(QUEUE_DEPTH, "state" => "waiting").set(stats.waiting as f64);
    }
    if let Ok(Ok(stats)) =
        tokio::time::timeout(PROBE_TIMEOUT, state.inner.store.triage_stats(Utc::now())).await
    {
        metrics::gauge!(TRIAGE_QUEUE_DEPTH, "state" => "pending").set(stats.pending as f64);
        metrics::gauge!(TRIAGE_QUEUE_DEPTH, "state" => "processing").set(stats.processing as f64);
        metrics::gauge!(TRIAGE_QUEUE_DEPTH, "state" => "failed").set(stats.failed as f64);
    }
    if let Ok(Ok(counts)) =
        tokio::time::timeout(PROBE_TIMEOUT, state.inner.store.count_tickets_by_status()).await
    {
        for (status, count) in counts {
            metrics::gauge!("heron_tickets", "status" => status.as_str()).set(count as f64);
        }
    }
    render(handle)
}

fn render(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// The queue and ticket gauges cost COUNT queries; scrapes closer together than this reuse
/// the last values, so a busy scraper cannot load the database.
const GAUGE_REFRESH: Duration = Duration::from_secs(5);

fn gauges_are_fresh(state: &ServerState) -> bool {
    let mut last = match state.inner.gauges_refreshed.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let now = std::time::Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < GAUGE_REFRESH) {
        return true;
    }
    *last = Some(now);
    false
}
