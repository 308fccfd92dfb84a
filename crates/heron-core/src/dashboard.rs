//! Figures for the dashboard's metrics page and the order of its ticket queue.
//!
//! A store answers [`DashboardMetrics`] for a window `[since, until)` in one call
//! ([`crate::ports::TicketRepository::dashboard_metrics`]); the response-time percentiles are
//! computed here, in Rust, from the per-ticket times the store returns, so every store (and
//! every database) agrees on them to the second.
//!
//! Definitions (the same words are in `docs/dashboard.md`):
//! - a *day* is a UTC calendar day; a *week* starts on Monday 00:00 UTC;
//! - alerts per day count alerts by their `created_at` (their event's arrival);
//! - tickets by status, by severity and by conclusion count the tickets *created* in the
//!   window, as they are now;
//! - time to acknowledge (TTA) of a ticket is `acked_at − created_at`: `acked_at` is set the
//!   first time the ticket leaves `open` (acknowledged, or resolved directly) and never
//!   moves afterwards; assigning alone does not acknowledge;
//! - time to resolve (TTR) is `resolved_at − created_at` for a ticket that is resolved or
//!   archived now (a reopened ticket has none until it is resolved again, and then the
//!   latest resolution counts);
//! - MTTA and MTTR per week are the 50th and 90th percentiles (nearest rank: the smallest
//!   value with at least p % of the values at or below it) of the TTA and TTR of the
//!   tickets created that week;
//! - LLM tokens per day sum `usage.total_tokens` of the agent runs *started* that day, of
//!   every purpose; BigQuery bytes per day sum the steps' `bytes_processed` of those runs.

use crate::{Conclusion, Severity, TicketId, TicketStatus, Timestamp};
use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// At most this many tickets' times are returned by one
/// [`dashboard_metrics`](crate::ports::TicketRepository::dashboard_metrics) call (the newest
/// ones); callers bound the window so that this is not reached in practice.
pub const MAX_TICKET_TIMES: usize = 100_000;

/// A value for one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayValue {
    pub day: NaiveDate,
    pub value: u64,
}

/// When a ticket was created, first acknowledged and (last) resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTimes {
    pub created_at: Timestamp,
    pub acked_at: Option<Timestamp>,
    /// Set while the ticket is resolved or archived.
    pub resolved_at: Option<Timestamp>,
}

/// Everything the metrics page shows, for the window `[since, until)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DashboardMetrics {
    pub since: Timestamp,
    pub until: Timestamp,
    /// Alerts created per day; days without alerts are left out; oldest first.
    pub alerts_per_day: Vec<DayValue>,
    /// Tickets created in the window by their status now: every status, zeros included, in
    /// lifecycle order.
    pub tickets_by_status: Vec<(TicketStatus, u64)>,
    /// The same tickets by severity: every severity, zeros included, most severe first.
    pub tickets_by_severity: Vec<(Severity, u64)>,
    /// The same tickets by conclusion (those with one): every conclusion, zeros included.
    pub conclusions: Vec<(Conclusion, u64)>,
    /// LLM tokens of the agent runs started per day; days without runs are left out.
    pub tokens_per_day: Vec<DayValue>,
    /// BigQuery bytes processed by the steps of the runs started per day; days without such
    /// steps are left out.
    pub bigquery_bytes_per_day: Vec<DayValue>,
    /// The times of the tickets created in the window (at most [`MAX_TICKET_TIMES`], the
    /// newest), oldest first.
    pub ticket_times: Vec<TicketTimes>,
}

/// Response times of the tickets created in one week, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyTimes {
    /// The week's Monday.
    pub week: NaiveDate,
    /// Tickets created that week.
    pub created: u64,
    /// Of those, acknowledged (they have a TTA).
    pub acknowledged: u64,
    pub tta_p50: Option<i64>,
    pub tta_p90: Option<i64>,
    /// Of those, resolved now (they have a TTR).
    pub resolved: u64,
    pub ttr_p50: Option<i64>,
    pub ttr_p90: Option<i64>,
}

/// The Monday starting `day`'s week.
pub fn week_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending): the smallest
/// value with at least `p` % of the values at or below it. `None` when there are none.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p/100 · n), at least 1.
    let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).max(1);
    sorted.get(rank.min(n) - 1).copied()
}

impl DashboardMetrics {
    /// Every UTC day of the window, oldest first.
    pub fn days(&self) -> Vec<NaiveDate> {
        let first = self.since.date_naive();
        // `until` is excluded: a window ending at midnight ends the day before.
        let last = (self.until - Duration::microseconds(1)).date_naive();
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .collect::<Vec<_>>()
    }

    /// `values` with a zero for every day of the window they leave out, oldest first.
    pub fn every_day(&self, values: &[DayValue]) -> Vec<DayValue> {
        self.days()
            .into_iter()
            .map(|day| DayValue {
                day,
                value: values
                    .iter()
                    .filter(|v| v.day == day)
                    .map(|v| v.value)
                    .sum(),
            })
            .collect()
    }

    /// TTA and TTR percentiles of every week the window touches, oldest first (weeks without
    /// tickets included, with no percentiles).
    pub fn weekly_times(&self) -> Vec<WeeklyTimes> {
        let mut weeks: Vec<NaiveDate> = Vec::new();
        for day in self.days() {
            let week = week_of(day);
            if weeks.last() != Some(&week) {
                weeks.push(week);
            }
        }
        weeks
            .into_iter()
            .map(|week| {
                let of_week: Vec<&TicketTimes> = self
                    .ticket_times
                    .iter()
                    .filter(|t| week_of(t.created_at.date_naive()) == week)
                    .collect();
                let mut tta: Vec<i64> = of_week
                    .iter()
                    .filter_map(|t| t.acked_at.map(|a| (a - t.created_at).num_seconds()))
                    .collect();
                let mut ttr: Vec<i64> = of_week
                    .iter()
                    .filter_map(|t| t.resolved_at.map(|r| (r - t.created_at).num_seconds()))
                    .collect();
                tta.sort_unstable();
                ttr.sort_unstable();
                WeeklyTimes {
                    week,
                    created: of_week.len() as u64,
                    acknowledged: tta.len() as u64,
                    tta_p50: percentile(&tta, 50),
                    tta_p90: percentile(&tta, 90),
                    resolved: ttr.len() as u64,
                    ttr_p50: percentile(&ttr, 50),
                    ttr_p90: percentile(&ttr, 90),
                }
            })
            .collect()
    }
}

/// Every key of `all`, in that order, with the sum of its counts in `rows` (zero when none).
pub fn counts_by<T: Copy + PartialEq>(all: &[T], rows: &[(T, u64)]) -> Vec<(T, u64)> {
    all.iter()
        .map(|k| {
            (
                *k,
                rows.iter().filter(|(r, _)| r == k).map(|(_, n)| *n).sum(),
            )
        })
        .collect()
}

/// Severities most severe first, as the metrics list them.
pub const SEVERITIES_DESC: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

/// What a ticket listing is ordered by. Ties are broken by id, in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketSortKey {
    /// Creation (the id: ids are UUID v7).
    #[default]
    Created,
    /// `updated_at`, the last edit.
    Updated,
    /// Severity, `info` lowest.
    Severity,
}

crate::event::str_enum!(TicketSortKey {
    Created => "created",
    Updated => "updated",
    Severity => "severity",
});

/// A listing's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortDirection {
    /// Newest, latest or most severe first.
    #[default]
    Desc,
    Asc,
}

crate::event::str_enum!(SortDirection {
    Desc => "desc",
    Asc => "asc",
});

/// A ticket listing's order; the default is newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TicketSort {
    pub key: TicketSortKey,
    pub direction: SortDirection,
}

/// Where the next page of a sorted ticket listing starts: the sort value and id of the last
/// ticket of the page before. Written as the bare id for [`TicketSortKey::Created`] (the
/// cursor the API has always given), `updated:<unix µs>:<id>` and `severity:<name>:<id>`
/// otherwise, so a cursor does not move when its ticket is edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketCursor {
    Created(TicketId),
    Updated(Timestamp, TicketId),
    Severity(Severity, TicketId),
}

impl TicketCursor {
    /// The cursor after `ticket` in a listing ordered by `key`.
    pub fn after(ticket: &crate::Ticket, key: TicketSortKey) -> Self {
        match key {
            TicketSortKey::Created => Self::Created(ticket.id),
            TicketSortKey::Updated => Self::Updated(ticket.updated_at, ticket.id),
            TicketSortKey::Severity => Self::Severity(ticket.severity, ticket.id),
        }
    }

    /// The key of the order this cursor belongs to.
    pub fn key(&self) -> TicketSortKey {
        match self {
            Self::Created(_) => TicketSortKey::Created,
            Self::Updated(..) => TicketSortKey::Updated,
            Self::Severity(..) => TicketSortKey::Severity,
        }
    }

    pub fn id(&self) -> TicketId {
        match self {
            Self::Created(id) | Self::Updated(_, id) | Self::Severity(_, id) => *id,
        }
    }
}

impl fmt::Display for TicketCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created(id) => write!(f, "{id}"),
            Self::Updated(at, id) => write!(f, "updated:{}:{id}", at.timestamp_micros()),
            Self::Severity(severity, id) => write!(f, "severity:{severity}:{id}"),
        }
    }
}

/// A cursor that is not one [`TicketCursor`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ticket cursor {0:?}")]
pub struct BadCursor(pub String);

impl FromStr for TicketCursor {
    type Err = BadCursor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCursor(s.to_owned());
        let id = |raw: &str| raw.parse::<TicketId>().map_err(|_| bad());
        match s.split(':').collect::<Vec<_>>().as_slice() {
            [raw] => Ok(Self::Created(id(raw)?)),
            ["updated", micros, raw] => {
                let micros: i64 = micros.parse().map_err(|_| bad())?;
                let at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
                Ok(Self::Updated(at, id(raw)?))
            }
            ["severity", severity, raw] => Ok(Self::Severity(
                severity.parse().map_err(|_| bad())?,
                id(raw)?,
            )),
            _ => Err(bad()),
        }
    }
}

/// The rank a store sorts severities by (`info` 0 … `critical` 4).
pub fn severity_rank(severity: Severity) -> i64 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_rank_percentile_is_a_value_of_the_set() {
        let values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&values, 50), Some(5));
        assert_eq!(percentile(&values, 90), Some(9));
        assert_eq!(percentile(&values, 100), Some(10));
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 90), Some(7));
        assert_eq!(percentile(&[1, 100], 50), Some(1));
        assert_eq!(percentile(&[1, 100], 90), Some(100));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn weeks_start_on_monday() {
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let monday = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(week_of(sunday), monday);
        assert_eq!(week_of(monday), monday);
    }

    #[test]
    fn cursors_round_trip_and_a_bare_id_is_a_creation_cursor() {
        let id = TicketId::new();
        let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        for cursor in [
            TicketCursor::Created(id),
            TicketCursor::Updated(at, id),
            TicketCursor::Severity(Severity::High, id),
        ] {
            assert_eq!(cursor.to_string().parse::<TicketCursor>(), Ok(cursor));
        }
        assert_eq!(id.to_string().parse(), Ok(TicketCursor::Created(id)));
        for bad in [
            "",
            "updated:x:y",
            "severity:loud:",
            "other:1:2",
            "not-an-id",
        ] {
            assert!(bad.parse::<TicketCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_ending_at_midnight_ends_the_day_before() {
        let since =
            chrono::DateTime::from_timestamp(1_700_000_000 - 1_700_000_000 % 86_400, 0).unwrap();
        let metrics = DashboardMetrics {
            since,
            until: since + Duration::days(3),
            alerts_per_day: vec![DayValue {
                day: since.date_naive() + Duration::days(1),
                value: 4,
            }],
            tickets_by_status: Vec::new(),
            tickets_by_severity: Vec::new(),
            conclusions: Vec::new(),
            tokens_per_day: Vec::new(),
            bigquery_bytes_per_day: Vec::new(),
            ticket_times: Vec::new(),
        };
        let days = metrics.every_day(&metrics.alerts_per_day);
        assert_eq!(
            days.iter().map(|d| d.value).collect::<Vec<_>>(),
            vec![0, 4, 0]
        );
    }
}
