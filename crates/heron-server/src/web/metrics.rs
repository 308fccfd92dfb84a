//! The metrics page (`/stats`; `/metrics` is Prometheus'): alerts per day, tickets by status,
//! severity and conclusion, time to acknowledge and to resolve per week, LLM tokens and
//! BigQuery bytes per day, as inline SVG charts with their tables.
//!
//! Invariants: one store call ([`heron_core::ports::TicketRepository::dashboard_metrics`])
//! over a bounded window (1 to [`MAX_WEEKS`] whole weeks, Monday to today, UTC); the figures
//! are defined in [`heron_core::dashboard`] and `docs/dashboard.md`.

use super::charts::{Chart, Unit, bar_chart, line_chart};
use super::{PageError, Viewer, bad_request, blank_to_none, render, signed_in};
use crate::access::RequestContext;
use crate::state::ServerState;
use askama::Template;
use axum::extract::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use chrono::{Duration, NaiveTime, Utc};
use heron_core::dashboard::{DayValue, week_of};
use serde::Deserialize;

/// Weeks shown by default, and at most.
const DEFAULT_WEEKS: i64 = 12;
const MAX_WEEKS: i64 = 26;

#[derive(Debug, Deserialize)]
pub(super) struct MetricsParams {
    weeks: Option<String>,
}

struct Figure {
    name: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage {
    viewer: Viewer,
    weeks: i64,
    since: String,
    until: String,
    figures: Vec<Figure>,
    charts: Vec<Chart>,
}

fn day_label(day: chrono::NaiveDate) -> String {
    day.format("%m-%d").to_string()
}

fn day_bars(values: &[DayValue]) -> Vec<(String, u64)> {
    values
        .iter()
        .map(|v| (v.day.format("%Y-%m-%d").to_string(), v.value))
        .collect()
}

/// Label every n-th day so that about a dozen labels fit (Mondays when weeks are shown).
fn label_every(days: usize) -> usize {
    if days <= 14 {
        1
    } else {
        7 * days.div_ceil(7 * 12)
    }
}

pub(super) async fn metrics_page(
    State(state): State<ServerState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    uri: Uri,
    params: Result<Query<MetricsParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let viewer = signed_in(&state, &ctx, &headers, &uri)?;
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let weeks = match blank_to_none(&params.weeks) {
        None => DEFAULT_WEEKS,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|w| (1..=MAX_WEEKS).contains(w))
            .ok_or_else(|| bad_request(format!("weeks must be 1 to {MAX_WEEKS}, got {raw:?}")))?,
    };
    let today = Utc::now().date_naive();
    let first = week_of(today) - Duration::weeks(weeks - 1);
    let since = first.and_time(NaiveTime::MIN).and_utc();
    let until = (today + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc();
    let metrics = state.inner.store.dashboard_metrics(since, until).await?;

    let alerts = metrics.every_day(&metrics.alerts_per_day);
    let tokens = metrics.every_day(&metrics.tokens_per_day);
    let bytes = metrics.every_day(&metrics.bigquery_bytes_per_day);
    let every = label_every(alerts.len());
    let weekly = metrics.weekly_times();
    let week_labels: Vec<String> = weekly.iter().map(|w| day_label(w.week)).collect();
    let total = |values: &[DayValue]| values.iter().map(|v| v.value).sum::<u64>();
    let created: u64 = metrics.tickets_by_status.iter().map(|(_, n)| n).sum();
    let with_tooltip_dates = |mut chart: Chart| {
        // Axis labels are short (MM-DD); tooltips and tables keep the full date.
        for label in &mut chart.x_labels {
            if label.text.len() == 10 {
                label.text = label.text[5..].to_owned();
            }
        }
        chart
    };
    let charts = vec![
        with_tooltip_dates(bar_chart(
            "alerts-per-day",
            "Alerts per day",
            Unit::Count,
            "alerts",
            &day_bars(&alerts),
            every,
        )),
        bar_chart(
            "tickets-by-status",
            "Tickets by status",
            Unit::Count,
            "tickets",
            &metrics
                .tickets_by_status
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect::<Vec<_>>(),
            1,
        ),
        bar_chart(
            "tickets-by-severity",
            "Tickets by severity",
            Unit::Count,
            "tickets",
            &metrics
                .tickets_by_severity
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect::<Vec<_>>(),
            1,
        ),
        bar_chart(
            "conclusions",
            "Conclusions",
            Unit::Count,
            "resolved tickets",
            &metrics
                .conclusions
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect::<Vec<_>>(),
            1,
        ),
        line_chart(
            "mtta",
            "Time to acknowledge, per week",
            Unit::Seconds,
            "time to acknowledge",
            &week_labels,
            &[
                ("p50", weekly.iter().map(|w| w.tta_p50.map(secs)).collect()),
                ("p90", weekly.iter().map(|w| w.tta_p90.map(secs)).collect()),
            ],
        ),
        line_chart(
            "mttr",
            "Time to resolve, per week",
            Unit::Seconds,
            "time to resolve",
            &week_labels,
            &[
                ("p50", weekly.iter().map(|w| w.ttr_p50.map(secs)).collect()),
                ("p90", weekly.iter().map(|w| w.ttr_p90.map(secs)).collect()),
            ],
        ),
        with_tooltip_dates(bar_chart(
            "tokens-per-day",
            "LLM tokens per day",
            Unit::Count,
            "tokens",
            &day_bars(&tokens),
            every,
        )),
        with_tooltip_dates(bar_chart(
            "bigquery-bytes-per-day",
            "BigQuery bytes per day",
            Unit::Bytes,
            "bytes processed",
            &day_bars(&bytes),
            every,
        )),
    ];
    render(&MetricsPage {
        viewer,
        weeks,
        since: since.format("%Y-%m-%d").to_string(),
        until: today.format("%Y-%m-%d").to_string(),
        figures: vec![
            Figure {
                name: "Alerts",
                value: Unit::Count.format(total(&alerts)),
            },
            Figure {
                name: "Tickets opened",
                value: Unit::Count.format(created),
            },
            Figure {
                name: "LLM tokens",
                value: Unit::Count.format(total(&tokens)),
            },
            Figure {
                name: "BigQuery bytes",
                value: Unit::Bytes.format(total(&bytes)),
            },
        ],
        charts,
    })
}

/// A duration in whole seconds (never negative on a chart).
fn secs(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
