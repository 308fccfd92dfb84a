//! [`SqliteStore`]: the embedded default, one database file in the data directory.
//!
//! Invariants and why they hold here:
//! - an accepted event is on disk when `accept_event` returns: WAL journal with
//!   `synchronous=FULL` fsyncs the log at every commit;
//! - SQLite has one writer at a time. Every multi-statement write runs in a `BEGIN IMMEDIATE`
//!   transaction, which takes the write lock up front: a deferred transaction that reads and
//!   then writes could fail with `SQLITE_BUSY` on the lock upgrade instead of waiting for
//!   `busy_timeout`. Being single-writer, select-then-insert is race-free inside such a
//!   transaction (leasing, dedup). Leasing first asks, with a plain read beside the writer
//!   (WAL), whether anything is due at all: idle workers polling every few hundred
//!   milliseconds do not take the write lock from intake;
//! - single completions run the batch path with a batch of one (`heron_core::completion`), so both
//!   forms share one implementation of the dispositions;
//! - time: one host, so the host's clock is the store's clock (`EventQueue::now`);
//! - the `dedup_key` unique index still enforces one dedup target per fingerprint;
//! - timestamps are `INTEGER` unix microseconds, ids lowercase hyphenated `TEXT` (so text
//!   order is id order), JSON `TEXT`; see `migrations/sqlite`.
//!
//! Text search (`TicketQuery::text`) folds case with SQLite's `lower()`, which folds ASCII only.

use crate::batch;
use crate::error::{map, map_migrate};
use crate::rows::{
    AlertRow, CommentRow, DbTime, DbUuid, EventRow, LeasedRow, NoticeRow, TicketRow, alert_columns,
    comment_columns, convert, event_columns, json_text, leased_events, micros, notice_columns,
    page, page_limit, ticket_columns,
};
use async_trait::async_trait;
use heron_core::dashboard::{
    DashboardMetrics, MAX_TICKET_TIMES, SortDirection, TicketCursor, TicketSortKey, TicketTimes,
    severity_rank,
};
use heron_core::ports::{
    AlertBinding, AlertQuery, AlertRepository, EventHistory, EventLog, EventQuery, EventQueue,
    EventScan, LEASE_EXPIRED_ERROR, Lease, LeasedEvent, NewAlert, NoticeQuery, NoticeRepository,
    Page, PlannedAlert, QueueStats, Store, StoreError, StoreResult, TicketQuery, TicketRepository,
    scan_limit,
};
use heron_core::ticket::NewTicket;
use heron_core::{
    Accepted, Alert, AlertId, Comment, Event, EventId, EventState, Fingerprint, NewEvent, Notice,
    NoticeId, Ticket, TicketId, TicketStatus, Timestamp,
};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

mod agent;
mod slack;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Connections in the pool: WAL lets readers run beside the one writer.
const POOL_SIZE: u32 = 8;
/// How long a writer waits for the write lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of the database file each connection maps (see `open`).
const MMAP_SIZE: u64 = 256 * 1024 * 1024;
/// Rows a query runs ahead of its reader (see `open`).
const ROW_CHANNEL_SIZE: usize = 1_024;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating it and its parent folders if needed) and migrates the database file.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // An exact similar-ticket search reads every vector of a model (10 MB for 10,000
            // tickets of 256 dimensions): mapped, the pages are read in place from the OS's
            // cache instead of copied by a `read()` per page into each connection's cache.
            .pragma("mmap_size", MMAP_SIZE.to_string())
            // Rows cross from SQLite's thread to the caller through a bounded channel; the
            // default of 50 makes a scan of thousands of rows wait on a thread switch every
            // few rows.
            .row_buffer_size(ROW_CHANNEL_SIZE);
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await
            .map_err(map)?;
        MIGRATOR.run(&pool).await.map_err(map_migrate)?;
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection (checkpointing the WAL); the store is unusable afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map)
    }

    async fn access_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.write().await
    }
}

crate::access::access_store!(SqliteStore, sqlx::Sqlite);

fn id_text(id: impl std::fmt::Display) -> String {
    id.to_string()
}

fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost(lease.event_id)
}

/// Stores `event` as a `pending` event due at once (one `INSERT … ON CONFLICT DO NOTHING`),
/// or answers the first event with its idempotency key; `Conflict` when its id exists.
async fn accept(conn: &mut SqliteConnection, event: &NewEvent) -> StoreResult<Accepted> {
    let digest = hex::encode(Sha256::digest(event.body.as_bytes()));
    let inserted: Option<DbUuid> = sqlx::query_scalar(
        "INSERT INTO events (id, schema, source, body, body_sha256, metadata, \
         idempotency_key, state, attempts, received_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(id_text(event.id))
    .bind(event.schema.as_str())
    .bind(event.source.as_str())
    .bind(&event.body)
    .bind(digest)
    .bind(json_text(&event.metadata)?)
    .bind(event.idempotency_key.as_deref())
    .bind(micros(event.received_at))
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    if inserted.is_some() {
        return Ok(Accepted {
            event_id: event.id,
            duplicate: false,
        });
    }
    if let Some(key) = &event.idempotency_key {
        let first: Option<DbUuid> =
            sqlx::query_scalar("SELECT id FROM events WHERE schema = $1 AND idempotency_key = $2")
                .bind(event.schema.as_str())
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map)?;
        if let Some(first) = first {
            return Ok(Accepted {
                event_id: EventId::from_uuid(first.0),
                duplicate: true,
            });
        }
    }
    Err(StoreError::Conflict(format!(
        "event {} already exists",
        event.id
    )))
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn accept_event(&self, event: NewEvent) -> StoreResult<Accepted> {
        let mut conn = self.pool.acquire().await.map_err(map)?;
        accept(&mut conn, &event).await
    }

    /// One transaction, an item at a time: a key stored by an earlier item of the batch is
    /// seen by the later ones (the transaction sees its own inserts). An error returns before
    /// the commit, and dropping the transaction rolls the batch back.
    async fn accept_events(&self, events: Vec<NewEvent>) -> StoreResult<Vec<Accepted>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let mut answers = Vec::with_capacity(events.len());
        for event in &events {
            answers.push(accept(&mut tx, event).await?);
        }
        tx.commit().await.map_err(map)?;
        Ok(answers)
    }

    async fn get_event(&self, id: EventId) -> StoreResult<Option<Event>> {
        let row: Option<EventRow> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE id = $1"
        ))
        .bind(id_text(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Event::try_from).transpose()
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<Page<Event>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE 1 = 1"
        ));
        if let Some(state) = query.state {
            sql.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(schema) = &query.schema {
            sql.push(" AND schema = ")
                .push_bind(schema.as_str().to_owned());
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(id_text(before));
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit as i64 + 1);
        let rows: Vec<EventRow> = sql
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        Ok(page(convert(rows)?, limit, |e: &Event| e.id.to_string()))
    }

    async fn retry_event(&self, id: EventId, now: Timestamp) -> StoreResult<Event> {
        let row: Option<EventRow> = sqlx::query_as(concat!(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = $2, last_error = NULL, \
             processed_at = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND state IN ('failed', 'ignored') RETURNING ",
            event_columns!()
        ))
        .bind(id_text(id))
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        match row {
            Some(row) => Event::try_from(row),
            None => match self.get_event(id).await? {
                Some(event) => Err(StoreError::Conflict(format!(
                    "event {id} is {}; only failed or ignored events can be retried",
                    event.state
                ))),
                None => Err(StoreError::NotFound(format!("event {id}"))),
            },
        }
    }

    async fn retry_failed_events(&self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL, \
             processed_at = NULL WHERE state = 'failed'",
        )
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected())
    }

    async fn queue_stats(&self, _now: Timestamp) -> StoreResult<QueueStats> {
        // Four counts, each answered from its partial index.
        let (pending, processing, failed, waiting): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM events WHERE state = 'processing'), \
                    (SELECT COUNT(*) FROM events WHERE state = 'failed'), \
                    (SELECT COUNT(*) FROM events WHERE state = 'waiting')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(QueueStats {
            pending: pending.max(0) as u64,
            processing: processing.max(0) as u64,
            failed: failed.max(0) as u64,
            waiting: waiting.max(0) as u64,
        })
    }
}

#[async_trait]
impl EventQueue for SqliteStore {
    /// Single host: the host's clock.
    async fn now(&self) -> StoreResult<Timestamp> {
        Ok(crate::truncate_to_micros(chrono::Utc::now()))
    }

    async fn lease_events(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Vec<LeasedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // An idle worker polls often: a read (beside the writer, under WAL) answers "nothing
        // due" without taking the write lock from intake.
        let any_due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
                        WHERE state = 'pending' AND next_attempt_at <= $1) \
                 OR EXISTS (SELECT 1 FROM events \
                        WHERE state = 'processing' AND lease_expires_at < $1)",
        )
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        if !any_due {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        // Two branches, each read in order from its partial index (as on PostgreSQL).
        let due: Vec<(String, bool)> = sqlx::query_as(
            "SELECT id, exhausted FROM ( \
                 SELECT * FROM (SELECT id, next_attempt_at, 0 AS exhausted FROM events \
                     WHERE state = 'pending' AND next_attempt_at <= $1 \
                     ORDER BY next_attempt_at, id LIMIT $2) \
                 UNION ALL \
                 SELECT * FROM (SELECT id, next_attempt_at, attempts >= $3 AS exhausted \
                     FROM events WHERE state = 'processing' AND lease_expires_at < $1 \
                     ORDER BY next_attempt_at, id LIMIT $2)) \
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(micros(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::from(max_attempts))
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        let mut rows = Vec::with_capacity(due.len());
        for (id, exhausted) in due {
            let row: LeasedRow = if exhausted {
                sqlx::query_as(concat!(
                    "UPDATE events SET state = 'failed', \
                     last_error = replace($2, '{n}', CAST(attempts AS TEXT)), \
                     next_attempt_at = NULL, lease_token = NULL, lease_expires_at = NULL \
                     WHERE id = $1 RETURNING ",
                    event_columns!(),
                    ", lease_token"
                ))
                .bind(id)
                .bind(LEASE_EXPIRED_ERROR)
            } else {
                sqlx::query_as(concat!(
                    "UPDATE events SET state = 'processing', attempts = attempts + 1, \
                     lease_token = $2, lease_expires_at = $3 WHERE id = $1 RETURNING ",
                    event_columns!(),
                    ", lease_token"
                ))
                .bind(id)
                .bind(id_text(Uuid::new_v4()))
                .bind(micros(lease_until))
            }
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            rows.push(row);
        }
        tx.commit().await.map_err(map)?;
        leased_events(rows)
    }

    async fn extend_lease(&self, lease: &Lease, until: Timestamp) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE events SET lease_expires_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.event_id))
        .bind(id_text(lease.token))
        .bind(micros(until))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn find_dedup_ticket(
        &self,
        fingerprint: &Fingerprint,
        seen_since: Timestamp,
    ) -> StoreResult<Option<TicketId>> {
        let id: Option<DbUuid> =
            sqlx::query_scalar("SELECT id FROM tickets WHERE dedup_key = $1 AND last_seen >= $2")
                .bind(fingerprint.as_str())
                .bind(micros(seen_since))
                .fetch_optional(&self.pool)
                .await
                .map_err(map)?;
        Ok(id.map(|id| TicketId::from_uuid(id.0)))
    }

    /// The batch path with a batch of one (one code path for both forms).
    async fn complete_event(
        &self,
        lease: &Lease,
        alerts: Vec<PlannedAlert>,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertBinding>> {
        batch::single(
            self.complete_events(vec![(lease.clone(), alerts)], now)
                .await,
        )
    }

    /// One `BEGIN IMMEDIATE` transaction (the single writer: what it reads cannot change
    /// under it): read the held leases and the ticket rows, replay the batch on them
    /// ([`heron_core::completion::plan`]), write the result, commit once.
    async fn complete_events(
        &self,
        batch: Vec<(Lease, Vec<PlannedAlert>)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let ids: Vec<String> = batch.iter().map(|(l, _)| id_text(l.event_id)).collect();
        let leases: Vec<(DbUuid, Option<DbUuid>)> = sqlx::query_as(
            "SELECT id, lease_token FROM events \
             WHERE id IN (SELECT value FROM json_each($1)) AND state = 'processing'",
        )
        .bind(json_text(&ids)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        let tokens: HashMap<EventId, Uuid> = leases
            .into_iter()
            .filter_map(|(id, token)| token.map(|t| (EventId::from_uuid(id.0), t.0)))
            .collect();
        let held: HashSet<EventId> = batch
            .iter()
            .filter(|(l, _)| tokens.get(&l.event_id) == Some(&l.token))
            .map(|(l, _)| l.event_id)
            .collect();

        let (ticket_ids, fingerprints) = batch::lock_set(&batch, &held);
        let locked = if ticket_ids.is_empty() && fingerprints.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<String> = ticket_ids.iter().map(|id| id_text(*id)).collect();
            let keys: Vec<&str> = fingerprints.iter().map(Fingerprint::as_str).collect();
            let rows: Vec<(DbUuid, Option<String>, bool, DbTime)> = sqlx::query_as(
                "SELECT id, dedup_key, status IN ('open', 'acknowledged'), last_seen \
                 FROM tickets WHERE id IN (SELECT value FROM json_each($1)) \
                    OR dedup_key IN (SELECT value FROM json_each($2))",
            )
            .bind(json_text(&ids)?)
            .bind(json_text(&keys)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(map)?;
            rows.into_iter()
                .map(|(id, dedup_key, active, last_seen)| batch::LockedTicket {
                    id: TicketId::from_uuid(id.0),
                    dedup_key: dedup_key.map(Fingerprint::from_stored),
                    active,
                    last_seen: last_seen.0,
                })
                .collect()
        };

        let write = batch::plan(batch, &held, locked);
        // Releases first: a new ticket may take over a released fingerprint.
        for update in &write.updates {
            sqlx::query(
                "UPDATE tickets SET alert_count = alert_count + $2, \
                 last_seen = MAX(last_seen, $3), \
                 dedup_key = CASE WHEN $4 THEN NULL ELSE dedup_key END WHERE id = $1",
            )
            .bind(id_text(update.id))
            .bind(update.added)
            .bind(micros(update.last_seen))
            .bind(update.release)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        for opened in &write.opened {
            insert_counted_ticket(&mut tx, opened).await?;
            // The single writer read every target: each ticket of `opened` is a new one.
            agent::enqueue_triage(&mut tx, opened.ticket.id, now).await?;
        }
        for (alert, binding) in &write.alerts {
            insert_alert(&mut tx, alert, *binding).await?;
        }
        for notice in &write.notices {
            let Some((alert, _)) = write.alerts.get(notice.alert) else {
                continue;
            };
            insert_notice(
                &mut tx,
                notice.id,
                alert,
                &notice.title,
                notice.channel.as_deref(),
                now,
            )
            .await?;
        }
        for (id, state) in &write.events {
            sqlx::query(
                "UPDATE events SET state = $2, processed_at = $3, next_attempt_at = NULL, \
                 last_error = NULL, lease_token = NULL, lease_expires_at = NULL WHERE id = $1",
            )
            .bind(id_text(*id))
            .bind(state.as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(write.results)
    }

    async fn fail_event(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        let state = if retry_at.is_some() {
            EventState::Pending
        } else {
            EventState::Failed
        };
        let done = sqlx::query(
            "UPDATE events SET state = $3, next_attempt_at = $4, last_error = $5, \
             lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.event_id))
        .bind(id_text(lease.token))
        .bind(state.as_str())
        .bind(retry_at.map(micros))
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn release_event(&self, lease: &Lease) -> StoreResult<()> {
        // `next_attempt_at` keeps the due time the event was leased at: due at once, and it
        // keeps its place at the head of the queue.
        let done = sqlx::query(
            "UPDATE events SET state = 'pending', attempts = MAX(attempts - 1, 0), \
             lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.event_id))
        .bind(id_text(lease.token))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn hold_event(&self, lease: &Lease, note: &str) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE events SET state = 'waiting', attempts = MAX(attempts - 1, 0), \
             last_error = $3, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.event_id))
        .bind(id_text(lease.token))
        .bind(note)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn resume_waiting_events(&self, now: Timestamp, limit: u64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE events SET state = 'pending', next_attempt_at = $1, last_error = NULL \
             WHERE id IN (SELECT id FROM events WHERE state = 'waiting' ORDER BY id LIMIT $2)",
        )
        .bind(micros(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected())
    }
}

/// Inserts `ticket` for one alert seen at `seen`, as no fingerprint's dedup target.
async fn insert_ticket(
    conn: &mut SqliteConnection,
    ticket: &NewTicket,
    seen: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tickets (id, title, description, schema, status, severity, conclusion, \
         reason, assignee, tags, attributes, channel, fingerprint, finding, alert_count, \
         first_seen, last_seen, acked_at, resolved_at, created_at, updated_at, version, \
         dedup_key) \
         VALUES ($1, $2, $3, $4, 'open', $5, NULL, NULL, $6, $7, $8, $9, $10, NULL, 1, \
         $11, $11, NULL, NULL, $12, $12, 1, NULL)",
    )
    .bind(id_text(ticket.id))
    .bind(&ticket.title)
    .bind(&ticket.description)
    .bind(ticket.schema.as_str())
    .bind(ticket.severity.as_str())
    .bind(ticket.assignee.as_deref())
    .bind(json_text(&ticket.tags)?)
    .bind(json_text(&ticket.attributes)?)
    .bind(ticket.channel.as_deref())
    .bind(ticket.fingerprint.as_str())
    .bind(micros(seen))
    .bind(micros(ticket.created_at))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

async fn insert_alert(
    conn: &mut SqliteConnection,
    alert: &NewAlert,
    binding: AlertBinding,
) -> StoreResult<()> {
    let (ticket_id, notice_id) = match binding {
        AlertBinding::Attached(id) | AlertBinding::Opened(id) => (Some(id_text(id)), None),
        AlertBinding::Noticed(id) => (None, Some(id_text(id))),
        AlertBinding::Discarded => (None, None),
    };
    sqlx::query(
        "INSERT INTO alerts (id, event_id, schema, title, description, attributes, tags, \
         severity, fingerprint, channel, data, status, ticket_id, notice_id, created_at, \
         title_source, description_source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(id_text(alert.id))
    .bind(id_text(alert.event_id))
    .bind(alert.schema.as_str())
    .bind(&alert.title)
    .bind(&alert.description)
    .bind(json_text(&alert.attributes)?)
    .bind(json_text(&alert.tags)?)
    .bind(alert.severity.as_str())
    .bind(alert.fingerprint.as_str())
    .bind(alert.channel.as_deref())
    .bind(json_text(&alert.data)?)
    .bind(binding.status().as_str())
    .bind(ticket_id)
    .bind(notice_id)
    .bind(micros(alert.created_at))
    .bind(alert.title_source.as_str())
    .bind(alert.description_source.as_str())
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

async fn insert_notice(
    conn: &mut SqliteConnection,
    id: NoticeId,
    alert: &NewAlert,
    title: &str,
    channel: Option<&str>,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO notices (id, alert_id, schema, title, severity, channel, created_at, \
         ticket_id) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
    )
    .bind(id_text(id))
    .bind(id_text(alert.id))
    .bind(alert.schema.as_str())
    .bind(title)
    .bind(alert.severity.as_str())
    .bind(channel)
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

/// Inserts a ticket a batch opened, with everything the batch counted on it (the single
/// writer read every target: no other can appear meanwhile).
async fn insert_counted_ticket(
    conn: &mut SqliteConnection,
    opened: &batch::NewTicketWrite,
) -> StoreResult<()> {
    let ticket = &opened.ticket;
    sqlx::query(
        "INSERT INTO tickets (id, title, description, schema, status, severity, conclusion, \
         reason, assignee, tags, attributes, channel, fingerprint, finding, alert_count, \
         first_seen, last_seen, acked_at, resolved_at, created_at, updated_at, version, \
         dedup_key) \
         VALUES ($1, $2, $3, $4, 'open', $5, NULL, NULL, $6, $7, $8, $9, $10, NULL, $11, \
         $12, $13, NULL, NULL, $14, $14, 1, $15)",
    )
    .bind(id_text(ticket.id))
    .bind(&ticket.title)
    .bind(&ticket.description)
    .bind(ticket.schema.as_str())
    .bind(ticket.severity.as_str())
    .bind(ticket.assignee.as_deref())
    .bind(json_text(&ticket.tags)?)
    .bind(json_text(&ticket.attributes)?)
    .bind(ticket.channel.as_deref())
    .bind(ticket.fingerprint.as_str())
    .bind(opened.count)
    .bind(micros(opened.first_seen))
    .bind(micros(opened.last_seen))
    .bind(micros(ticket.created_at))
    .bind(opened.dedup_key.as_ref().map(Fingerprint::as_str))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl TicketRepository for SqliteStore {
    async fn get_ticket(&self, id: TicketId) -> StoreResult<Option<Ticket>> {
        let row: Option<TicketRow> = sqlx::query_as(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE id = $1"
        ))
        .bind(id_text(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Ticket::try_from).transpose()
    }

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Page<Ticket>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE 1 = 1"
        ));
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(severity) = query.severity {
            sql.push(" AND severity = ").push_bind(severity.as_str());
        }
        if let Some(assignee) = &query.assignee {
            sql.push(" AND assignee = ").push_bind(assignee.clone());
        }
        if let Some(tag) = &query.tag {
            sql.push(" AND EXISTS (SELECT 1 FROM json_each(tickets.tags) WHERE json_each.value = ")
                .push_bind(tag.clone())
                .push(")");
        }
        if let Some(text) = &query.text {
            // instr, not LIKE: the text is literal, `%` and `_` included.
            let needle = text.to_lowercase();
            sql.push(" AND (instr(lower(title), ")
                .push_bind(needle.clone())
                .push(") > 0 OR instr(lower(description), ")
                .push_bind(needle)
                .push(") > 0)");
        }
        let key = query.sort.key;
        let (older, order) = match query.sort.direction {
            SortDirection::Desc => ("<", "DESC"),
            SortDirection::Asc => (">", "ASC"),
        };
        let column = match key {
            TicketSortKey::Created => "id",
            TicketSortKey::Updated => "updated_at",
            TicketSortKey::Severity => crate::SEVERITY_RANK_SQL,
        };
        // Keyset paging: after (value, id) in the listing's order.
        match query.checked_cursor()? {
            None => {}
            Some(TicketCursor::Created(id)) => {
                sql.push(format!(" AND id {older} ")).push_bind(id_text(id));
            }
            Some(cursor) => {
                let value = match cursor {
                    TicketCursor::Updated(at, _) => micros(at),
                    TicketCursor::Severity(severity, _) => severity_rank(severity),
                    TicketCursor::Created(_) => 0,
                };
                sql.push(format!(" AND ({column} {older} "))
                    .push_bind(value)
                    .push(format!(" OR ({column} = "))
                    .push_bind(value)
                    .push(format!(" AND id {older} "))
                    .push_bind(id_text(cursor.id()))
                    .push("))");
            }
        }
        if key == TicketSortKey::Created {
            sql.push(format!(" ORDER BY id {order} LIMIT "));
        } else {
            sql.push(format!(" ORDER BY {column} {order}, id {order} LIMIT "));
        }
        sql.push_bind(limit as i64 + 1);
        let rows: Vec<TicketRow> = sql
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        Ok(page(convert(rows)?, limit, |t: &Ticket| {
            TicketCursor::after(t, key).to_string()
        }))
    }

    async fn update_ticket(&self, ticket: &Ticket) -> StoreResult<Ticket> {
        let row: Option<TicketRow> = sqlx::query_as(concat!(
            "UPDATE tickets SET status = $3, severity = $4, conclusion = $5, reason = $6, ",
            "assignee = $7, tags = $8, title = $9, description = $10, finding = $11, ",
            "acked_at = $12, resolved_at = $13, updated_at = $14, version = version + 1, ",
            // A ticket that is no longer active stops being its fingerprint's target.
            "dedup_key = CASE WHEN $3 IN ('open', 'acknowledged') THEN dedup_key ELSE NULL END ",
            "WHERE id = $1 AND version = $2 RETURNING ",
            ticket_columns!()
        ))
        .bind(id_text(ticket.id))
        .bind(ticket.version)
        .bind(ticket.status.as_str())
        .bind(ticket.severity.as_str())
        .bind(ticket.conclusion.map(|c| c.as_str()))
        .bind(ticket.reason.as_deref())
        .bind(ticket.assignee.as_deref())
        .bind(json_text(&ticket.tags)?)
        .bind(&ticket.title)
        .bind(&ticket.description)
        .bind(ticket.finding.as_ref().map(json_text).transpose()?)
        .bind(ticket.acked_at.map(micros))
        .bind(ticket.resolved_at.map(micros))
        .bind(micros(ticket.updated_at))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        match row {
            Some(row) => Ticket::try_from(row),
            None => match self.get_ticket(ticket.id).await? {
                Some(stored) => Err(StoreError::Conflict(format!(
                    "ticket {} is at version {}, not {}",
                    ticket.id, stored.version, ticket.version
                ))),
                None => Err(StoreError::NotFound(format!("ticket {}", ticket.id))),
            },
        }
    }

    async fn count_tickets_by_status(&self) -> StoreResult<Vec<(TicketStatus, u64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM tickets GROUP BY status")
                .fetch_all(&self.pool)
                .await
                .map_err(map)?;
        crate::count_by_status(rows)
    }

    async fn dashboard_metrics(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<DashboardMetrics> {
        // Timestamps are unix microseconds, never negative here: integer division is the
        // UTC day. The five reads run at once, on separate connections (WAL readers).
        const DAY: &str = "86400000000";
        let (from, to) = (micros(since), micros(until));
        let per_day = |sql: String| {
            let pool = self.pool.clone();
            async move {
                // Audited: built from this function's literals only.
                sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(sql))
                    .bind(from)
                    .bind(to)
                    .fetch_all(&pool)
                    .await
                    .map_err(map)
            }
        };
        let alerts = per_day(format!(
            "SELECT created_at / {DAY} AS day, COUNT(*) FROM alerts \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY day ORDER BY day"
        ));
        let tokens = per_day(format!(
            "SELECT started_at / {DAY} AS day, SUM(total_tokens) FROM agent_runs \
             WHERE started_at >= $1 AND started_at < $2 GROUP BY day ORDER BY day"
        ));
        let bytes = per_day(format!(
            "SELECT r.started_at / {DAY} AS day, \
             SUM(json_extract(s.value, '$.bytes_processed')) \
             FROM agent_runs r, json_each(r.steps) s \
             WHERE r.started_at >= $1 AND r.started_at < $2 \
             AND json_extract(s.value, '$.bytes_processed') IS NOT NULL \
             GROUP BY day ORDER BY day"
        ));
        let tickets = async {
            sqlx::query_as::<_, (String, String, Option<String>, i64)>(
                "SELECT status, severity, conclusion, COUNT(*) FROM tickets \
                 WHERE created_at >= $1 AND created_at < $2 \
                 GROUP BY status, severity, conclusion",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(map)
        };
        let times = async {
            sqlx::query_as::<_, (DbTime, Option<DbTime>, Option<DbTime>)>(
                "SELECT created_at, acked_at, resolved_at FROM ( \
                 SELECT id, created_at, acked_at, resolved_at FROM tickets \
                 WHERE created_at >= $1 AND created_at < $2 ORDER BY id DESC LIMIT $3) \
                 ORDER BY created_at, id",
            )
            .bind(from)
            .bind(to)
            .bind(MAX_TICKET_TIMES as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(map)
        };
        let (alerts, tokens, bytes, tickets, times) =
            futures_util::future::try_join5(alerts, tokens, bytes, tickets, times).await?;
        crate::dashboard_metrics(
            since,
            until,
            crate::MetricRows {
                alerts,
                tickets,
                tokens,
                bytes,
                times: times
                    .into_iter()
                    .map(|(created, acked, resolved)| TicketTimes {
                        created_at: created.0,
                        acked_at: acked.map(|t| t.0),
                        resolved_at: resolved.map(|t| t.0),
                    })
                    .collect(),
            },
        )
    }

    async fn add_comment(&self, comment: Comment) -> StoreResult<Comment> {
        // One statement: the ticket check and the insert cannot be separated by a delete.
        let done = sqlx::query(
            "INSERT INTO comments (id, ticket_id, source, author, text, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $2)",
        )
        .bind(id_text(comment.id))
        .bind(id_text(comment.ticket_id))
        .bind(comment.source.as_str())
        .bind(&comment.author)
        .bind(&comment.text)
        .bind(micros(comment.created_at))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "ticket {}",
                comment.ticket_id
            )));
        }
        Ok(Comment {
            created_at: crate::truncate_to_micros(comment.created_at),
            ..comment
        })
    }

    async fn list_comments(&self, ticket: TicketId) -> StoreResult<Vec<Comment>> {
        let rows: Vec<CommentRow> = sqlx::query_as(concat!(
            "SELECT ",
            comment_columns!(),
            " FROM comments WHERE ticket_id = $1 ORDER BY created_at, id"
        ))
        .bind(id_text(ticket))
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        convert(rows)
    }
}

#[async_trait]
impl AlertRepository for SqliteStore {
    async fn get_alert(&self, id: AlertId) -> StoreResult<Option<Alert>> {
        let row: Option<AlertRow> = sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = $1"
        ))
        .bind(id_text(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Alert::try_from).transpose()
    }

    async fn tickets_of_events(&self, events: &[EventId]) -> StoreResult<Vec<TicketId>> {
        let mut tickets = std::collections::BTreeSet::new();
        // Within SQLite's limit on bound variables.
        for chunk in events.chunks(500) {
            let mut sql = QueryBuilder::<Sqlite>::new(
                "SELECT DISTINCT ticket_id FROM alerts WHERE ticket_id IS NOT NULL AND event_id IN (",
            );
            let mut ids = sql.separated(", ");
            for id in chunk {
                ids.push_bind(id_text(id));
            }
            sql.push(")");
            let rows: Vec<DbUuid> = sql
                .build_query_scalar()
                .fetch_all(&self.pool)
                .await
                .map_err(map)?;
            tickets.extend(rows.into_iter().map(|id| TicketId::from_uuid(id.0)));
        }
        Ok(tickets.into_iter().collect())
    }

    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Page<Alert>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE 1 = 1"
        ));
        if let Some(schema) = &query.schema {
            sql.push(" AND schema = ")
                .push_bind(schema.as_str().to_owned());
        }
        if let Some(ticket) = query.ticket {
            sql.push(" AND ticket_id = ").push_bind(id_text(ticket));
        }
        if query.unbound {
            sql.push(" AND ticket_id IS NULL");
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(id_text(before));
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit as i64 + 1);
        let rows: Vec<AlertRow> = sql
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        Ok(page(convert(rows)?, limit, |a: &Alert| a.id.to_string()))
    }

    async fn bind_alert(&self, alert: AlertId, ticket: TicketId) -> StoreResult<Alert> {
        let mut tx = self.write().await?;
        let found: Option<(Option<DbUuid>, DbTime)> =
            sqlx::query_as("SELECT ticket_id, created_at FROM alerts WHERE id = $1")
                .bind(id_text(alert))
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?;
        let Some((bound, created_at)) = found else {
            return Err(StoreError::NotFound(format!("alert {alert}")));
        };
        if let Some(bound) = bound {
            return Err(StoreError::Conflict(format!(
                "alert {alert} is already on ticket {}",
                bound.0
            )));
        }
        // Like attaching: the count and last_seen move, the version (edits only) does not.
        let updated = sqlx::query(
            "UPDATE tickets SET alert_count = alert_count + 1, \
             last_seen = max(last_seen, $2) WHERE id = $1",
        )
        .bind(id_text(ticket))
        .bind(micros(created_at.0))
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("ticket {ticket}")));
        }
        sqlx::query("UPDATE notices SET ticket_id = $2 WHERE alert_id = $1 AND ticket_id IS NULL")
            .bind(id_text(alert))
            .bind(id_text(ticket))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let row: AlertRow = sqlx::query_as(concat!(
            "UPDATE alerts SET status = 'ticketed', ticket_id = $2 WHERE id = $1 RETURNING ",
            alert_columns!()
        ))
        .bind(id_text(alert))
        .bind(id_text(ticket))
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Alert::try_from(row)
    }
}

#[async_trait]
impl NoticeRepository for SqliteStore {
    async fn get_notice(&self, id: NoticeId) -> StoreResult<Option<Notice>> {
        let row: Option<NoticeRow> = sqlx::query_as(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE id = $1"
        ))
        .bind(id_text(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Notice::try_from).transpose()
    }

    async fn list_notices(&self, query: &NoticeQuery) -> StoreResult<Page<Notice>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE 1 = 1"
        ));
        match query.escalated {
            Some(true) => {
                sql.push(" AND ticket_id IS NOT NULL");
            }
            Some(false) => {
                sql.push(" AND ticket_id IS NULL");
            }
            None => {}
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(id_text(before));
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit as i64 + 1);
        let rows: Vec<NoticeRow> = sql
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        Ok(page(convert(rows)?, limit, |n: &Notice| n.id.to_string()))
    }

    async fn escalate_notice(&self, id: NoticeId, ticket: NewTicket) -> StoreResult<Ticket> {
        let mut tx = self.write().await?;
        let found: Option<(DbUuid, Option<DbUuid>, crate::rows::DbTime)> = sqlx::query_as(
            "SELECT n.alert_id, n.ticket_id, a.created_at FROM notices n \
             JOIN alerts a ON a.id = n.alert_id WHERE n.id = $1",
        )
        .bind(id_text(id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let Some((alert_id, escalated, alert_created)) = found else {
            return Err(StoreError::NotFound(format!("notice {id}")));
        };
        if let Some(existing) = escalated {
            return Err(StoreError::Conflict(format!(
                "notice {id} was already escalated to ticket {}",
                existing.0
            )));
        }
        // Not a dedup target (no dedup_key): escalation is a human's call, not a grouping.
        insert_ticket(&mut tx, &ticket, alert_created.0).await?;
        // No completion time here: the ticket is opened when it says it was.
        agent::enqueue_triage(&mut tx, ticket.id, ticket.created_at).await?;
        sqlx::query("UPDATE alerts SET status = 'ticketed', ticket_id = $2 WHERE id = $1")
            .bind(id_text(alert_id.0))
            .bind(id_text(ticket.id))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        sqlx::query("UPDATE notices SET ticket_id = $2 WHERE id = $1")
            .bind(id_text(id))
            .bind(id_text(ticket.id))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let row: TicketRow = sqlx::query_as(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE id = $1"
        ))
        .bind(id_text(ticket.id))
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ticket::try_from(row)
    }
}

#[async_trait]
impl EventHistory for SqliteStore {
    async fn scan_events(&self, scan: &EventScan) -> StoreResult<Vec<Event>> {
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE 1 = 1"
        ));
        if let Some(after) = scan.after {
            sql.push(" AND id > ").push_bind(id_text(after));
        }
        if let Some(since) = scan.since {
            sql.push(" AND received_at >= ").push_bind(micros(since));
        }
        if let Some(schema) = &scan.schema {
            sql.push(" AND schema = ")
                .push_bind(schema.as_str().to_owned());
        }
        if !scan.states.is_empty() {
            sql.push(" AND state IN (");
            let mut states = sql.separated(", ");
            for state in &scan.states {
                states.push_bind(state.as_str());
            }
            sql.push(")");
        }
        sql.push(" ORDER BY id LIMIT ")
            .push_bind(scan_limit(scan.limit) as i64);
        let rows: Vec<EventRow> = sql
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        convert(rows)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
