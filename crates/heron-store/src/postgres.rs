//! [`PgStore`]: PostgreSQL (≥ 15, with pgvector), for any number of Heron processes sharing
//! one database.
//!
//! Invariants and why they hold under concurrency (READ COMMITTED everywhere):
//! - leasing is one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)` statement: rows being
//!   leased by another transaction are skipped, not waited for, and a row that changed since
//!   the snapshot is re-checked against the due condition before it is taken. Due pending
//!   events and expired leases are two branches, each read in order from its own partial
//!   index (`events_due`, `events_leased`) and merged: one `OR` over both would scan and sort
//!   the whole backlog on every lease (≈ 25 ms at 20,000 pending events). The same statement
//!   fails, instead of leasing, an expired lease whose event had all its attempts;
//! - every completion, single or batch, runs the batch path: it locks its events, then (only
//!   when it opens tickets) per-fingerprint advisory locks in key order, then its ticket rows
//!   in id order. All completions take their locks in that one order, so they wait for each
//!   other on a storm's ticket but never deadlock (a single completion used to lock tickets
//!   in the order of its alerts, which deadlocked against batches);
//! - completion, failure, release and lease extension act only on the row whose
//!   `lease_token` matches and `state = 'processing'`; that row lock is held to commit, so a
//!   concurrent takeover either happens before (0 rows: `LeaseLost`, nothing stored) or waits
//!   and then finds the event no longer due;
//! - opening a ticket is an insert arbitrated by the unique `dedup_key` index: of two batches
//!   racing to open a ticket for one fingerprint, the second waits for the first's commit and
//!   then counts its alerts on that ticket; a second active target cannot exist;
//! - time: workers take every queue time from [`PgStore`]'s `now()`, the database server's
//!   clock, so hosts whose clocks disagree still agree on lease expiry. Due times handed in
//!   by other hosts (an event's arrival, a retry) are capped at `now()` when stored: an
//!   intake host whose clock runs ahead cannot hold its events back;
//! - `accept_event` is one `INSERT … ON CONFLICT DO NOTHING RETURNING id` (a second round trip
//!   only for a duplicate), committed before it returns; `accept_events` runs the same
//!   statements in one transaction;
//! - a value PostgreSQL cannot hold (U+0000 in `text` or `jsonb`: SQLSTATE class 22) is
//!   `Invalid`, which fails a whole batch; the worker then completes its events one by one.

use crate::batch;
use crate::error::{map, map_migrate};
use crate::rows::{
    AlertRow, CommentRow, DbTime, DbUuid, EventRow, LeasedRow, NoticeRow, TicketRow, alert_columns,
    comment_columns, convert, event_columns, leased_events, notice_columns, page, page_limit,
    ticket_columns,
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
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod agent;
mod slack;

crate::access::access_store!(PgStore, sqlx::Postgres);

pub use agent::{EF_SEARCH, MAX_HNSW_DIMS, hnsw_index_sql, similar_sql};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long a request waits for a pooled connection before answering `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Dimensions whose HNSW index this process knows exists (see `agent`).
    hnsw: Arc<Mutex<HashSet<i32>>>,
}

impl PgStore {
    async fn access_tx(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map)
    }

    /// Connects with a pool of up to `max_connections` and applies pending migrations (under
    /// sqlx's advisory lock, so processes starting together migrate once).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| match map(e) {
                // Whatever went wrong while connecting, the database is not usable yet.
                StoreError::Backend(message) => StoreError::Unavailable(message),
                other => other,
            })?;
        MIGRATOR.run(&pool).await.map_err(map_migrate)?;
        let store = PgStore {
            pool,
            hnsw: Arc::default(),
        };
        store.ensure_hnsw_indexes().await?;
        Ok(store)
    }

    /// Closes every connection; the store is unusable afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost(lease.event_id)
}

/// Stores `event` as a `pending` event due at once (one `INSERT … ON CONFLICT DO NOTHING`),
/// or answers the first event with its idempotency key; `Conflict` when its id exists.
async fn accept(conn: &mut PgConnection, event: &NewEvent) -> StoreResult<Accepted> {
    let digest = hex::encode(Sha256::digest(event.body.as_bytes()));
    let inserted: Option<DbUuid> = sqlx::query_scalar(
        "INSERT INTO events (id, schema, source, body, body_sha256, metadata, \
         idempotency_key, state, attempts, received_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, LEAST($8, now())) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(event.id.as_uuid())
    .bind(event.schema.as_str())
    .bind(event.source.as_str())
    .bind(&event.body)
    .bind(digest)
    .bind(Json(&event.metadata))
    .bind(event.idempotency_key.as_deref())
    .bind(event.received_at)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    if inserted.is_some() {
        return Ok(Accepted {
            event_id: event.id,
            duplicate: false,
        });
    }
    // ON CONFLICT DO NOTHING waited for any concurrent insert of the same key to commit, so
    // the first event is visible to the next statement.
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
impl EventLog for PgStore {
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
        let mut tx = self.pool.begin().await.map_err(map)?;
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
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Event::try_from).transpose()
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<Page<Event>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE TRUE"
        ));
        if let Some(state) = query.state {
            sql.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(schema) = &query.schema {
            sql.push(" AND schema = ")
                .push_bind(schema.as_str().to_owned());
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(before.as_uuid());
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
            "UPDATE events SET state = 'pending', attempts = 0, \
             next_attempt_at = LEAST($2, now()), last_error = NULL, \
             processed_at = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND state IN ('failed', 'ignored') RETURNING ",
            event_columns!()
        ))
        .bind(id.as_uuid())
        .bind(now)
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
            "UPDATE events SET state = 'pending', attempts = 0, \
             next_attempt_at = LEAST($1, now()), last_error = NULL, processed_at = NULL \
             WHERE state = 'failed'",
        )
        .bind(now)
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
impl EventQueue for PgStore {
    async fn now(&self) -> StoreResult<Timestamp> {
        let now: DbTime = sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await
            .map_err(map)?;
        Ok(now.0)
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
        // `exhausted`: an expired lease on an event that had all its attempts. It is failed in
        // the same statement (no token: `leased_events` leaves it out). (A branch may lock a
        // few rows the final LIMIT drops; they are skipped by others until this statement
        // commits, and stay as they were.)
        let rows: Vec<LeasedRow> = sqlx::query_as(
            "UPDATE events e SET \
                 state = CASE WHEN due.exhausted THEN 'failed' ELSE 'processing' END, \
                 attempts = CASE WHEN due.exhausted THEN e.attempts ELSE e.attempts + 1 END, \
                 last_error = CASE WHEN due.exhausted \
                     THEN replace($5, '{n}', e.attempts::text) ELSE e.last_error END, \
                 next_attempt_at = CASE WHEN due.exhausted THEN NULL ELSE e.next_attempt_at END, \
                 lease_token = CASE WHEN due.exhausted THEN NULL ELSE gen_random_uuid() END, \
                 lease_expires_at = CASE WHEN due.exhausted THEN NULL ELSE $3 END \
             FROM (SELECT id, exhausted FROM ( \
                       SELECT * FROM (SELECT id, next_attempt_at, false AS exhausted \
                           FROM events WHERE state = 'pending' AND next_attempt_at <= $1 \
                           ORDER BY next_attempt_at, id LIMIT $2 \
                           FOR UPDATE SKIP LOCKED) pending \
                       UNION ALL \
                       SELECT * FROM (SELECT id, next_attempt_at, attempts >= $4 AS exhausted \
                           FROM events WHERE state = 'processing' AND lease_expires_at < $1 \
                           ORDER BY next_attempt_at, id LIMIT $2 \
                           FOR UPDATE SKIP LOCKED) expired \
                   ) candidates ORDER BY next_attempt_at, id LIMIT $2) due \
             WHERE e.id = due.id \
             RETURNING e.id, e.schema, e.source, e.body, e.metadata, e.idempotency_key, \
                 e.state, e.attempts, e.last_error, e.received_at, e.processed_at, \
                 e.next_attempt_at, e.lease_token",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(lease_until)
        .bind(i64::from(max_attempts))
        .bind(LEASE_EXPIRED_ERROR)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        leased_events(rows)
    }

    async fn extend_lease(&self, lease: &Lease, until: Timestamp) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE events SET lease_expires_at = $3 \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.event_id.as_uuid())
        .bind(lease.token)
        .bind(until)
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
                .bind(seen_since)
                .fetch_optional(&self.pool)
                .await
                .map_err(map)?;
        Ok(id.map(|id| TicketId::from_uuid(id.0)))
    }

    /// The batch path with a batch of one: completions then take their locks in one order
    /// (events, fingerprints, tickets by id) whichever way they come, so a single completion
    /// and a batch touching the same tickets cannot deadlock.
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

    /// One transaction: lock the held events, take the fingerprints' advisory locks (only
    /// when the batch opens tickets), lock the ticket rows in id order, replay the batch on
    /// them ([`heron_core::completion::plan`]), then write it in a few set-based statements.
    async fn complete_events(
        &self,
        batch: Vec<(Lease, Vec<PlannedAlert>)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(map)?;
        // The leases: rows whose token still matches, locked (in id order) to commit, so a
        // concurrent takeover waits and then finds the event no longer due.
        let (ids, tokens): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) = batch
            .iter()
            .map(|(lease, _)| (lease.event_id.as_uuid(), lease.token))
            .unzip();
        let held: Vec<DbUuid> = sqlx::query_scalar(
            "SELECT e.id FROM events e \
             JOIN UNNEST($1::uuid[], $2::uuid[]) AS l(id, token) \
               ON e.id = l.id AND e.lease_token = l.token \
             WHERE e.state = 'processing' ORDER BY e.id FOR UPDATE OF e",
        )
        .bind(&ids)
        .bind(&tokens)
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        let held: HashSet<EventId> = held
            .into_iter()
            .map(|id| EventId::from_uuid(id.0))
            .collect();

        let (ticket_ids, fingerprints) = batch::lock_set(&batch, &held);
        if !fingerprints.is_empty() {
            // Opening is serialized per fingerprint across batches: a batch that reads no
            // target for a fingerprint then cannot meet one committed by another batch
            // meanwhile, whose ticket row it did not lock in order (a deadlock otherwise).
            // Keys in ascending order, one statement; unnest yields them in array order.
            let mut keys: Vec<i64> = fingerprints.iter().map(advisory_key).collect();
            keys.sort_unstable();
            keys.dedup();
            sqlx::query("SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::int8[]) AS k")
                .bind(&keys)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
        }
        let locked = if ticket_ids.is_empty() && fingerprints.is_empty() {
            Vec::new()
        } else {
            let keys: Vec<&str> = fingerprints.iter().map(Fingerprint::as_str).collect();
            let ids: Vec<uuid::Uuid> = ticket_ids.iter().map(|id| id.as_uuid()).collect();
            // In id order, like every batch: two batches wait for each other's rows, never
            // in a cycle.
            let rows: Vec<(DbUuid, Option<String>, bool, DbTime)> = sqlx::query_as(
                "SELECT id, dedup_key, status IN ('open', 'acknowledged'), last_seen \
                 FROM tickets WHERE id = ANY($1) OR dedup_key = ANY($2) \
                 ORDER BY id FOR UPDATE",
            )
            .bind(&ids)
            .bind(&keys)
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

        let mut write = batch::plan(batch, &held, locked);

        if !write.updates.is_empty() {
            let ids: Vec<uuid::Uuid> = write.updates.iter().map(|u| u.id.as_uuid()).collect();
            let added: Vec<i64> = write.updates.iter().map(|u| u.added).collect();
            let seen: Vec<Timestamp> = write.updates.iter().map(|u| u.last_seen).collect();
            let release: Vec<bool> = write.updates.iter().map(|u| u.release).collect();
            sqlx::query(
                "UPDATE tickets t SET alert_count = t.alert_count + u.added, \
                     last_seen = GREATEST(t.last_seen, u.seen), \
                     dedup_key = CASE WHEN u.release THEN NULL ELSE t.dedup_key END \
                 FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::bool[]) \
                     AS u(id, added, seen, release) \
                 WHERE t.id = u.id",
            )
            .bind(&ids)
            .bind(&added)
            .bind(&seen)
            .bind(&release)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        let mut new_tickets = Vec::with_capacity(write.opened.len());
        for opened in std::mem::take(&mut write.opened) {
            let planned = opened.ticket.id;
            match insert_counted_ticket(&mut tx, &opened).await? {
                Some(actual) if actual == planned => new_tickets.push(actual),
                Some(actual) => write.rebind(planned, actual),
                None => {
                    return Err(StoreError::Conflict(format!(
                        "the dedup target for fingerprint {} went stale meanwhile",
                        opened.ticket.fingerprint
                    )));
                }
            }
        }
        // Only tickets this batch inserted: one rebound to a target committed meanwhile had
        // its triage queued by the batch that opened it.
        agent::enqueue_triage(&mut tx, &new_tickets, now).await?;
        insert_alerts(&mut tx, &write.alerts).await?;
        for notice in &write.notices {
            let Some((alert, _)) = write.alerts.get(notice.alert) else {
                continue;
            };
            sqlx::query(
                "INSERT INTO notices (id, alert_id, schema, title, severity, channel, \
                 created_at, ticket_id) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
            )
            .bind(notice.id.as_uuid())
            .bind(alert.id.as_uuid())
            .bind(alert.schema.as_str())
            .bind(&notice.title)
            .bind(alert.severity.as_str())
            .bind(notice.channel.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        if !write.events.is_empty() {
            let (ids, states): (Vec<uuid::Uuid>, Vec<&str>) = write
                .events
                .iter()
                .map(|(id, state)| (id.as_uuid(), state.as_str()))
                .unzip();
            sqlx::query(
                "UPDATE events e SET state = u.state, processed_at = $3, \
                     next_attempt_at = NULL, last_error = NULL, lease_token = NULL, \
                     lease_expires_at = NULL \
                 FROM UNNEST($1::uuid[], $2::text[]) AS u(id, state) WHERE e.id = u.id",
            )
            .bind(&ids)
            .bind(&states)
            .bind(now)
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
        .bind(lease.event_id.as_uuid())
        .bind(lease.token)
        .bind(state.as_str())
        .bind(retry_at)
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
            "UPDATE events SET state = 'pending', attempts = GREATEST(attempts - 1, 0), \
             lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.event_id.as_uuid())
        .bind(lease.token)
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
            "UPDATE events SET state = 'waiting', attempts = GREATEST(attempts - 1, 0), \
             last_error = $3, lease_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.event_id.as_uuid())
        .bind(lease.token)
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
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(done.rows_affected())
    }
}

/// Inserts `ticket` for one alert seen at `seen`, as no fingerprint's dedup target.
async fn insert_ticket(
    conn: &mut PgConnection,
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
    .bind(ticket.id.as_uuid())
    .bind(&ticket.title)
    .bind(&ticket.description)
    .bind(ticket.schema.as_str())
    .bind(ticket.severity.as_str())
    .bind(ticket.assignee.as_deref())
    .bind(Json(&ticket.tags))
    .bind(Json(&ticket.attributes))
    .bind(ticket.channel.as_deref())
    .bind(ticket.fingerprint.as_str())
    .bind(seen)
    .bind(ticket.created_at)
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

/// The advisory lock key that serializes opening tickets for `fingerprint` across batches.
fn advisory_key(fingerprint: &Fingerprint) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"heron-dedup\0")
        .chain_update(fingerprint.as_str().as_bytes())
        .finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

/// Inserts a ticket a batch opened, with everything the batch counted on it; see
/// [`batch::NewTicketWrite`]. Answers the ticket that holds the alerts, or `None` when a
/// target committed meanwhile is stale.
async fn insert_counted_ticket(
    conn: &mut PgConnection,
    opened: &batch::NewTicketWrite,
) -> StoreResult<Option<TicketId>> {
    let ticket = &opened.ticket;
    let id: Option<DbUuid> = sqlx::query_scalar(
        "INSERT INTO tickets (id, title, description, schema, status, severity, conclusion, \
         reason, assignee, tags, attributes, channel, fingerprint, finding, alert_count, \
         first_seen, last_seen, acked_at, resolved_at, created_at, updated_at, version, \
         dedup_key) \
         VALUES ($1, $2, $3, $4, 'open', $5, NULL, NULL, $6, $7, $8, $9, $10, NULL, $11, \
         $12, $13, NULL, NULL, $14, $14, 1, $15) \
         ON CONFLICT (dedup_key) DO UPDATE SET \
             alert_count = tickets.alert_count + EXCLUDED.alert_count, \
             last_seen = GREATEST(tickets.last_seen, EXCLUDED.last_seen) \
         WHERE tickets.last_seen >= $16 \
         RETURNING id",
    )
    .bind(ticket.id.as_uuid())
    .bind(&ticket.title)
    .bind(&ticket.description)
    .bind(ticket.schema.as_str())
    .bind(ticket.severity.as_str())
    .bind(ticket.assignee.as_deref())
    .bind(Json(&ticket.tags))
    .bind(Json(&ticket.attributes))
    .bind(ticket.channel.as_deref())
    .bind(ticket.fingerprint.as_str())
    .bind(opened.count)
    .bind(opened.first_seen)
    .bind(opened.last_seen)
    .bind(ticket.created_at)
    .bind(opened.dedup_key.as_ref().map(Fingerprint::as_str))
    .bind(opened.seen_since)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    Ok(id.map(|id| TicketId::from_uuid(id.0)))
}

/// Rows per multi-row alert INSERT (17 parameters each, under PostgreSQL's 65,535).
const ALERT_ROWS_PER_INSERT: usize = 1_000;

/// Inserts a batch's alerts, a thousand rows per statement.
async fn insert_alerts(
    conn: &mut PgConnection,
    alerts: &[(NewAlert, AlertBinding)],
) -> StoreResult<()> {
    for chunk in alerts.chunks(ALERT_ROWS_PER_INSERT) {
        let mut sql = QueryBuilder::<Postgres>::new(
            "INSERT INTO alerts (id, event_id, schema, title, description, attributes, tags, \
             severity, fingerprint, channel, data, status, ticket_id, notice_id, created_at, \
             title_source, description_source) ",
        );
        sql.push_values(chunk, |mut row, (alert, binding)| {
            let (ticket_id, notice_id) = match binding {
                AlertBinding::Attached(id) | AlertBinding::Opened(id) => (Some(id.as_uuid()), None),
                AlertBinding::Noticed(id) => (None, Some(id.as_uuid())),
                AlertBinding::Discarded => (None, None),
            };
            row.push_bind(alert.id.as_uuid())
                .push_bind(alert.event_id.as_uuid())
                .push_bind(alert.schema.as_str())
                .push_bind(alert.title.as_str())
                .push_bind(alert.description.as_str())
                .push_bind(Json(&alert.attributes))
                .push_bind(Json(&alert.tags))
                .push_bind(alert.severity.as_str())
                .push_bind(alert.fingerprint.as_str())
                .push_bind(alert.channel.as_deref())
                .push_bind(Json(&alert.data))
                .push_bind(binding.status().as_str())
                .push_bind(ticket_id)
                .push_bind(notice_id)
                .push_bind(alert.created_at)
                .push_bind(alert.title_source.as_str())
                .push_bind(alert.description_source.as_str());
        });
        sql.build().execute(&mut *conn).await.map_err(map)?;
    }
    Ok(())
}

#[async_trait]
impl TicketRepository for PgStore {
    async fn get_ticket(&self, id: TicketId) -> StoreResult<Option<Ticket>> {
        let row: Option<TicketRow> = sqlx::query_as(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Ticket::try_from).transpose()
    }

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Page<Ticket>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE TRUE"
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
            sql.push(" AND tags @> jsonb_build_array(")
                .push_bind(tag.clone())
                .push("::text)");
        }
        if let Some(text) = &query.text {
            // strpos, not ILIKE: the text is literal, `%` and `_` included.
            let needle = text.to_lowercase();
            sql.push(" AND (strpos(lower(title), ")
                .push_bind(needle.clone())
                .push(") > 0 OR strpos(lower(description), ")
                .push_bind(needle)
                .push(") > 0)");
        }
        let key = query.sort.key;
        let (older, order) = match query.sort.direction {
            SortDirection::Desc => ("<", "DESC"),
            SortDirection::Asc => (">", "ASC"),
        };
        // Keyset paging: after (value, id) in the listing's order.
        match query.checked_cursor()? {
            None => {}
            Some(TicketCursor::Created(id)) => {
                sql.push(format!(" AND id {older} "))
                    .push_bind(id.as_uuid());
            }
            Some(TicketCursor::Updated(at, id)) => {
                sql.push(format!(" AND (updated_at {older} "))
                    .push_bind(at)
                    .push(" OR (updated_at = ")
                    .push_bind(at)
                    .push(format!(" AND id {older} "))
                    .push_bind(id.as_uuid())
                    .push("))");
            }
            Some(TicketCursor::Severity(severity, id)) => {
                let rank = crate::SEVERITY_RANK_SQL;
                sql.push(format!(" AND ({rank} {older} "))
                    .push_bind(severity_rank(severity) as i32)
                    .push(format!(" OR ({rank} = "))
                    .push_bind(severity_rank(severity) as i32)
                    .push(format!(" AND id {older} "))
                    .push_bind(id.as_uuid())
                    .push("))");
            }
        }
        match key {
            TicketSortKey::Created => sql.push(format!(" ORDER BY id {order} LIMIT ")),
            TicketSortKey::Updated => {
                sql.push(format!(" ORDER BY updated_at {order}, id {order} LIMIT "))
            }
            TicketSortKey::Severity => sql.push(format!(
                " ORDER BY {} {order}, id {order} LIMIT ",
                crate::SEVERITY_RANK_SQL
            )),
        };
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
        .bind(ticket.id.as_uuid())
        .bind(ticket.version)
        .bind(ticket.status.as_str())
        .bind(ticket.severity.as_str())
        .bind(ticket.conclusion.map(|c| c.as_str()))
        .bind(ticket.reason.as_deref())
        .bind(ticket.assignee.as_deref())
        .bind(Json(&ticket.tags))
        .bind(&ticket.title)
        .bind(&ticket.description)
        .bind(ticket.finding.as_ref().map(Json))
        .bind(ticket.acked_at)
        .bind(ticket.resolved_at)
        .bind(ticket.updated_at)
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
        // The five reads run at once, on separate connections of the pool.
        let day = |column: &str| format!("floor(extract(epoch FROM {column}) / 86400)::bigint");
        let per_day = |sql: String| {
            let pool = self.pool.clone();
            async move {
                // Audited: built from this function's literals only.
                sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(sql))
                    .bind(since)
                    .bind(until)
                    .fetch_all(&pool)
                    .await
                    .map_err(map)
            }
        };
        let alerts = per_day(format!(
            "SELECT {} AS day, COUNT(*) FROM alerts \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY day ORDER BY day",
            day("created_at")
        ));
        let tokens = per_day(format!(
            "SELECT {} AS day, SUM(total_tokens)::bigint FROM agent_runs \
             WHERE started_at >= $1 AND started_at < $2 GROUP BY day ORDER BY day",
            day("started_at")
        ));
        let bytes = per_day(format!(
            "SELECT {} AS day, SUM((s.value ->> 'bytes_processed')::bigint)::bigint \
             FROM agent_runs r CROSS JOIN LATERAL jsonb_array_elements(r.steps) AS s(value) \
             WHERE r.started_at >= $1 AND r.started_at < $2 \
             AND s.value ->> 'bytes_processed' IS NOT NULL \
             GROUP BY day ORDER BY day",
            day("r.started_at")
        ));
        let tickets = async {
            sqlx::query_as::<_, (String, String, Option<String>, i64)>(
                "SELECT status, severity, conclusion, COUNT(*) FROM tickets \
                 WHERE created_at >= $1 AND created_at < $2 \
                 GROUP BY status, severity, conclusion",
            )
            .bind(since)
            .bind(until)
            .fetch_all(&self.pool)
            .await
            .map_err(map)
        };
        let times = async {
            sqlx::query_as::<_, (DbTime, Option<DbTime>, Option<DbTime>)>(
                "SELECT created_at, acked_at, resolved_at FROM ( \
                 SELECT id, created_at, acked_at, resolved_at FROM tickets \
                 WHERE created_at >= $1 AND created_at < $2 ORDER BY id DESC LIMIT $3) newest \
                 ORDER BY created_at, id",
            )
            .bind(since)
            .bind(until)
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
        // One statement; the foreign key still guards against a concurrent delete.
        let done = sqlx::query(
            "INSERT INTO comments (id, ticket_id, source, author, text, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $2)",
        )
        .bind(comment.id.as_uuid())
        .bind(comment.ticket_id.as_uuid())
        .bind(comment.source.as_str())
        .bind(&comment.author)
        .bind(&comment.text)
        .bind(comment.created_at)
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
        .bind(ticket.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        convert(rows)
    }
}

#[async_trait]
impl AlertRepository for PgStore {
    async fn get_alert(&self, id: AlertId) -> StoreResult<Option<Alert>> {
        let row: Option<AlertRow> = sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Alert::try_from).transpose()
    }

    async fn tickets_of_events(&self, events: &[EventId]) -> StoreResult<Vec<TicketId>> {
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.as_uuid()).collect();
        let rows: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT ticket_id FROM alerts \
             WHERE ticket_id IS NOT NULL AND event_id = ANY($1) ORDER BY ticket_id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        Ok(rows.into_iter().map(TicketId::from_uuid).collect())
    }

    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Page<Alert>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE TRUE"
        ));
        if let Some(schema) = &query.schema {
            sql.push(" AND schema = ")
                .push_bind(schema.as_str().to_owned());
        }
        if let Some(ticket) = query.ticket {
            sql.push(" AND ticket_id = ").push_bind(ticket.as_uuid());
        }
        if query.unbound {
            sql.push(" AND ticket_id IS NULL");
        }
        if let Some(before) = query.before {
            sql.push(" AND id < ").push_bind(before.as_uuid());
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
        let mut tx = self.pool.begin().await.map_err(map)?;
        // The alert's notice first, as an escalation locks it (one lock order, no deadlock);
        // then the alert: a concurrent binding or escalation waits, then sees this one.
        sqlx::query("SELECT 1 FROM notices WHERE alert_id = $1 FOR UPDATE")
            .bind(alert.as_uuid())
            .fetch_all(&mut *tx)
            .await
            .map_err(map)?;
        let found: Option<(Option<DbUuid>, DbTime)> =
            sqlx::query_as("SELECT ticket_id, created_at FROM alerts WHERE id = $1 FOR UPDATE")
                .bind(alert.as_uuid())
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
             last_seen = GREATEST(last_seen, $2) WHERE id = $1",
        )
        .bind(ticket.as_uuid())
        .bind(created_at.0)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("ticket {ticket}")));
        }
        sqlx::query("UPDATE notices SET ticket_id = $2 WHERE alert_id = $1 AND ticket_id IS NULL")
            .bind(alert.as_uuid())
            .bind(ticket.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let row: AlertRow = sqlx::query_as(concat!(
            "UPDATE alerts SET status = 'ticketed', ticket_id = $2 WHERE id = $1 RETURNING ",
            alert_columns!()
        ))
        .bind(alert.as_uuid())
        .bind(ticket.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Alert::try_from(row)
    }
}

#[async_trait]
impl NoticeRepository for PgStore {
    async fn get_notice(&self, id: NoticeId) -> StoreResult<Option<Notice>> {
        let row: Option<NoticeRow> = sqlx::query_as(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(Notice::try_from).transpose()
    }

    async fn list_notices(&self, query: &NoticeQuery) -> StoreResult<Page<Notice>> {
        let limit = page_limit(query.limit);
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE TRUE"
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
            sql.push(" AND id < ").push_bind(before.as_uuid());
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
        let mut tx = self.pool.begin().await.map_err(map)?;
        // FOR UPDATE: a concurrent escalation waits here, then sees this one's ticket.
        let found: Option<(DbUuid, Option<DbUuid>, DbTime)> = sqlx::query_as(
            "SELECT n.alert_id, n.ticket_id, a.created_at FROM notices n \
             JOIN alerts a ON a.id = n.alert_id WHERE n.id = $1 FOR UPDATE OF n",
        )
        .bind(id.as_uuid())
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
        agent::enqueue_triage(&mut tx, &[ticket.id], ticket.created_at).await?;
        sqlx::query("UPDATE alerts SET status = 'ticketed', ticket_id = $2 WHERE id = $1")
            .bind(alert_id.0)
            .bind(ticket.id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        sqlx::query("UPDATE notices SET ticket_id = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(ticket.id.as_uuid())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let row: TicketRow = sqlx::query_as(concat!(
            "SELECT ",
            ticket_columns!(),
            " FROM tickets WHERE id = $1"
        ))
        .bind(ticket.id.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ticket::try_from(row)
    }
}

#[async_trait]
impl EventHistory for PgStore {
    async fn scan_events(&self, scan: &EventScan) -> StoreResult<Vec<Event>> {
        let mut sql = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE TRUE"
        ));
        if let Some(after) = scan.after {
            sql.push(" AND id > ").push_bind(after.as_uuid());
        }
        if let Some(since) = scan.since {
            sql.push(" AND received_at >= ").push_bind(since);
        }
        if let Some(schema) = &scan.schema {
            sql.push(" AND schema = ")
                .push_bind(schema.as_str().to_owned());
        }
        if !scan.states.is_empty() {
            let states: Vec<String> = scan.states.iter().map(|s| s.as_str().to_owned()).collect();
            sql.push(" AND state = ANY(").push_bind(states).push(")");
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
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map)?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
