//! Heron's storage adapters: [`SqliteStore`] (the embedded default, one file in the data
//! directory) and [`PgStore`] (PostgreSQL with pgvector, for any number of processes sharing
//! one database). Both implement [`heron_core::ports::Store`] and pass
//! `heron_core::testing::conformance`.
//!
//! Invariants kept by both (see `heron_core::ports` for the full contract):
//! - the schema comes only from the embedded, forward-only migrations in `migrations/sqlite`
//!   and `migrations/postgres`, applied when a store is opened;
//! - the `events` table is the work queue: a lease is a token and an expiry on the row, and
//!   completion checks and clears the token in the same transaction as the alerts and ticket
//!   changes it commits; single and batch completions share one implementation
//!   (`heron_core::completion::plan`, which the in-memory store uses too), the single form
//!   being a batch of one;
//! - the unique `tickets.dedup_key` column holds a fingerprint while its ticket is the
//!   deduplication target, so the database itself forbids two targets for one fingerprint;
//! - timestamps are stored to the microsecond; ids are UUID v7 and order listings (newest
//!   first, by id);
//! - every ticket insert (a completion opening it, or an escalated notice) inserts its
//!   `triage_jobs` row in the same transaction; the triage queue is leased as the events
//!   queue is, and finishing a job writes its run and the ticket's finding (not its version)
//!   in the transaction that checks and clears the lease;
//! - similar-ticket search: PostgreSQL answers from a per-dimension HNSW partial index
//!   (approximate, recall ≥ 0.95 at limit 10 as measured by `heron-bench similar`); SQLite
//!   scores every vector of the model and dimension exactly, streaming them through a top-k
//!   heap.
//!
//! Database errors are mapped in one place (`error`): unreachable or busy → `Unavailable`,
//! unique violations → `Conflict`, values the database cannot hold → `Invalid`, anything else
//! (including corrupt rows) → `Backend`.

mod access;
mod error;
mod postgres;
mod rows;
mod slack;
mod sqlite;

pub use postgres::{EF_SEARCH, MAX_HNSW_DIMS, PgStore, hnsw_index_sql, similar_sql};
pub use sqlite::SqliteStore;

/// The replay of completions, shared with the in-memory store.
use heron_core::completion as batch;
pub(crate) use heron_core::truncate_to_micros;

use heron_core::TicketStatus;
use heron_core::ports::{Store, StoreError, StoreResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The SQLite file's name inside the data directory when no database URL is configured.
pub const DEFAULT_SQLITE_FILE: &str = "heron.db";

/// Which database a URL (or its absence) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseTarget {
    /// `postgres://…` or `postgresql://…` → PostgreSQL; `sqlite://PATH` (or `sqlite:PATH`)
    /// → that SQLite file; no URL → `data_dir/heron.db`.
    pub fn from_url(database_url: Option<&str>, data_dir: &Path) -> StoreResult<Self> {
        let Some(url) = database_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join(DEFAULT_SQLITE_FILE)));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            // Connection options are set by the store, not the URL.
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::Backend(format!(
                    "database URL {url:?} names no SQLite file"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        Err(StoreError::Backend(format!(
            "unsupported database URL {:?}: expected postgres://, postgresql:// or sqlite://",
            redact(url)
        )))
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Opens (and migrates) the store `database_url` names; see [`DatabaseTarget::from_url`].
/// `max_connections` sizes the PostgreSQL pool.
pub async fn open_store(
    database_url: Option<&str>,
    data_dir: &Path,
    max_connections: u32,
) -> StoreResult<Arc<dyn Store>> {
    match DatabaseTarget::from_url(database_url, data_dir)? {
        DatabaseTarget::Sqlite(path) => {
            let store = SqliteStore::open(&path).await?;
            tracing::info!(path = %path.display(), "opened SQLite store");
            Ok(Arc::new(store))
        }
        DatabaseTarget::Postgres(url) => {
            let store = PgStore::connect(&url, max_connections).await?;
            tracing::info!(url = %redact(&url), "connected to PostgreSQL store");
            Ok(Arc::new(store))
        }
    }
}

/// Applies pending migrations to the database `database_url` names (what `heron migrate`
/// does); answers the backend's name. Opening a store migrates too: this is for deploying the
/// schema ahead of the processes.
pub async fn migrate(database_url: Option<&str>, data_dir: &Path) -> StoreResult<&'static str> {
    let store = open_store(database_url, data_dir, 1).await?;
    Ok(store.backend())
}

/// Every status with its count (zero included), in lifecycle order.
pub(crate) fn count_by_status(rows: Vec<(String, i64)>) -> StoreResult<Vec<(TicketStatus, u64)>> {
    let mut counts: Vec<(TicketStatus, u64)> = TicketStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        let status: TicketStatus = status
            .parse()
            .map_err(|e| error::corrupt(format!("stored ticket status: {e}")))?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(counts)
}

/// What both databases answer for the dashboard's figures, before it is typed: counts per
/// day as (days since 1970-01-01, value), tickets counted per (status, severity,
/// conclusion) as stored, and ticket times.
pub(crate) struct MetricRows {
    pub alerts: Vec<(i64, i64)>,
    pub tickets: Vec<(String, String, Option<String>, i64)>,
    pub tokens: Vec<(i64, i64)>,
    pub bytes: Vec<(i64, i64)>,
    pub times: Vec<heron_core::dashboard::TicketTimes>,
}

/// The SQL of a ticket's severity rank (`info` 0 … `critical` 4), as
/// [`heron_core::dashboard::severity_rank`] has it.
pub(crate) const SEVERITY_RANK_SQL: &str = "(CASE severity WHEN 'info' THEN 0 WHEN 'low' THEN 1 \
     WHEN 'medium' THEN 2 WHEN 'high' THEN 3 WHEN 'critical' THEN 4 END)";

/// Types the rows of [`MetricRows`] (a stored name no variant has is a corrupt row).
pub(crate) fn dashboard_metrics(
    since: heron_core::Timestamp,
    until: heron_core::Timestamp,
    rows: MetricRows,
) -> StoreResult<heron_core::dashboard::DashboardMetrics> {
    use heron_core::dashboard::{DashboardMetrics, DayValue, SEVERITIES_DESC, counts_by};
    use heron_core::{Conclusion, Severity};
    fn days(rows: Vec<(i64, i64)>) -> StoreResult<Vec<DayValue>> {
        rows.into_iter()
            .map(|(day, value)| {
                let day = day
                    .checked_mul(86_400)
                    .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                    .ok_or_else(|| error::corrupt(format!("day {day} out of range")))?;
                Ok(DayValue {
                    day: day.date_naive(),
                    value: u64::try_from(value).unwrap_or(0),
                })
            })
            .collect()
    }
    fn parse<T: std::str::FromStr>(name: &str, what: &str) -> StoreResult<T>
    where
        T::Err: std::fmt::Display,
    {
        name.parse::<T>()
            .map_err(|e| error::corrupt(format!("stored {what}: {e}")))
    }
    let mut status = Vec::new();
    let mut severity = Vec::new();
    let mut conclusion = Vec::new();
    for (s, v, c, n) in rows.tickets {
        let n = u64::try_from(n).unwrap_or(0);
        status.push((parse::<TicketStatus>(&s, "ticket status")?, n));
        severity.push((parse::<Severity>(&v, "ticket severity")?, n));
        if let Some(c) = c {
            conclusion.push((parse::<Conclusion>(&c, "ticket conclusion")?, n));
        }
    }
    Ok(DashboardMetrics {
        since,
        until,
        alerts_per_day: days(rows.alerts)?,
        tickets_by_status: counts_by(TicketStatus::ALL, &status),
        tickets_by_severity: counts_by(&SEVERITIES_DESC, &severity),
        conclusions: counts_by(Conclusion::ALL, &conclusion),
        tokens_per_day: days(rows.tokens)?,
        bigquery_bytes_per_day: days(rows.bytes)?,
        ticket_times: rows.times,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        let data = Path::new("/var/lib/heron");
        assert_eq!(
            DatabaseTarget::from_url(None, data).unwrap(),
            DatabaseTarget::Sqlite(data.join("heron.db"))
        );
        assert_eq!(
            DatabaseTarget::from_url(Some("sqlite:///tmp/x.db?mode=rwc"), data).unwrap(),
            DatabaseTarget::Sqlite(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(
            DatabaseTarget::from_url(Some("sqlite://rel/x.db"), data).unwrap(),
            DatabaseTarget::Sqlite(PathBuf::from("rel/x.db"))
        );
        for pg in ["postgres://u:p@h/db", "postgresql://h/db"] {
            assert_eq!(
                DatabaseTarget::from_url(Some(pg), data).unwrap(),
                DatabaseTarget::Postgres(pg.to_owned())
            );
        }
        let err = DatabaseTarget::from_url(Some("mysql://u:secret@h/db"), data).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(DatabaseTarget::from_url(Some("sqlite://"), data).is_err());
    }
}
