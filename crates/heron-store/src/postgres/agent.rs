//! The agent's ports on PostgreSQL: the triage queue, agent runs, ticket embeddings and the
//! tool cache (see `migrations/postgres`).
//!
//! - the triage queue is leased as the events queue is: one `UPDATE … FROM (SELECT … FOR
//!   UPDATE SKIP LOCKED)` over the two partial indexes, times handed in from the database's
//!   clock, due times handed in by other hosts capped at `now()` (ADR 0004);
//! - finishing, failing, releasing and extending act only on the row whose token matches and
//!   `state = 'processing'`, whose lock is then held to commit;
//! - embeddings live in one `vector` column of no fixed dimension, beside `dims`. HNSW needs a
//!   fixed dimension, so each dimension met gets its own partial expression index
//!   ([`hnsw_index_sql`]), created when the store opens or on the first put of a new
//!   dimension, and a search is written with the same expression and predicate
//!   ([`similar_sql`]) so that the planner can use it. The dimension is spliced into both as
//!   an integer the store computed, never as text from a caller.

use super::PgStore;
use crate::error::map;
use crate::rows::{
    AgentRunRow, AlertRow, MAX_SIMILAR, SimilarRow, TriageJobRow, TriageLeasedRow, alert_columns,
    budget_text, convert, dims, leased_triage, run_columns, similar_columns, triage_columns,
};
use async_trait::async_trait;
use heron_core::agent::AgentRun;
use heron_core::alert::Alert;
use heron_core::investigation::{
    AgentStore, EmbeddingStore, SimilarTicket, TriageJob, TriageJobState, TriageLease,
    TriageOutcome, TriageStats,
};
use heron_core::ports::{LEASE_EXPIRED_ERROR, StoreError, StoreResult};
use heron_core::tool::{ToolCache, ToolCacheError};
use heron_core::{AlertId, TicketId, Timestamp};
use pgvector::Vector;
use sqlx::postgres::PgConnection;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgPool};

/// Queues the triage of tickets just opened, due at `now` (capped at the database's clock,
/// as every due time handed in is); runs in the transaction that inserts them (see
/// `heron_core::investigation`).
pub(super) async fn enqueue_triage(
    conn: &mut PgConnection,
    tickets: &[TicketId],
    now: Timestamp,
) -> StoreResult<()> {
    if tickets.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = tickets.iter().map(|id| id.as_uuid()).collect();
    sqlx::query(
        "INSERT INTO triage_jobs (ticket_id, state, attempts, last_error, next_attempt_at, \
         lease_token, lease_expires_at, created_at, updated_at) \
         SELECT id, 'pending', 0, NULL, LEAST($2, now()), NULL, NULL, $2, $2 \
         FROM UNNEST($1::uuid[]) AS id",
    )
    .bind(&ids)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

fn lease_lost(lease: &TriageLease) -> StoreError {
    StoreError::TriageLeaseLost(lease.ticket_id)
}

/// Inserts or replaces `run` whole; 0 rows when its ticket does not exist.
async fn upsert_run(conn: &mut PgConnection, run: &AgentRun) -> StoreResult<u64> {
    let done = sqlx::query(
        "INSERT INTO agent_runs (id, ticket_id, purpose, status, model, started_at, \
         finished_at, prompt_tokens, completion_tokens, total_tokens, finding, answer, budget, \
         error, steps) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 \
         WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $2) \
         ON CONFLICT (id) DO UPDATE SET ticket_id = EXCLUDED.ticket_id, \
             purpose = EXCLUDED.purpose, status = EXCLUDED.status, model = EXCLUDED.model, \
             started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, \
             prompt_tokens = EXCLUDED.prompt_tokens, \
             completion_tokens = EXCLUDED.completion_tokens, \
             total_tokens = EXCLUDED.total_tokens, finding = EXCLUDED.finding, \
             answer = EXCLUDED.answer, budget = EXCLUDED.budget, error = EXCLUDED.error, \
             steps = EXCLUDED.steps",
    )
    .bind(run.id)
    .bind(run.ticket_id.as_uuid())
    .bind(run.purpose.as_str())
    .bind(run.status.as_str())
    .bind(&run.model)
    .bind(run.started_at)
    .bind(run.finished_at)
    .bind(i64::from(run.usage.prompt_tokens))
    .bind(i64::from(run.usage.completion_tokens))
    .bind(i64::from(run.usage.total_tokens))
    .bind(run.finding.as_ref().map(Json))
    .bind(run.answer.as_deref())
    .bind(run.budget.map(budget_text).transpose()?)
    .bind(run.error.as_deref())
    .bind(Json(&run.steps))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(done.rows_affected())
}

#[async_trait]
impl AgentStore for PgStore {
    async fn lease_triage(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Vec<TriageLease>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The events queue's statement (see `lease_events`), on triage jobs.
        let rows: Vec<TriageLeasedRow> = sqlx::query_as(
            "UPDATE triage_jobs j SET \
                 state = CASE WHEN due.exhausted THEN 'failed' ELSE 'processing' END, \
                 attempts = CASE WHEN due.exhausted THEN j.attempts ELSE j.attempts + 1 END, \
                 last_error = CASE WHEN due.exhausted \
                     THEN replace($5, '{n}', j.attempts::text) ELSE j.last_error END, \
                 next_attempt_at = CASE WHEN due.exhausted THEN NULL ELSE j.next_attempt_at END, \
                 lease_token = CASE WHEN due.exhausted THEN NULL ELSE gen_random_uuid() END, \
                 lease_expires_at = CASE WHEN due.exhausted THEN NULL ELSE $3 END, \
                 updated_at = $1 \
             FROM (SELECT ticket_id, exhausted FROM ( \
                       SELECT * FROM (SELECT ticket_id, next_attempt_at, false AS exhausted \
                           FROM triage_jobs WHERE state = 'pending' AND next_attempt_at <= $1 \
                           ORDER BY next_attempt_at, ticket_id LIMIT $2 \
                           FOR UPDATE SKIP LOCKED) pending \
                       UNION ALL \
                       SELECT * FROM (SELECT ticket_id, next_attempt_at, \
                               attempts >= $4 AS exhausted \
                           FROM triage_jobs \
                           WHERE state = 'processing' AND lease_expires_at < $1 \
                           ORDER BY next_attempt_at, ticket_id LIMIT $2 \
                           FOR UPDATE SKIP LOCKED) expired \
                   ) candidates ORDER BY next_attempt_at, ticket_id LIMIT $2) due \
             WHERE j.ticket_id = due.ticket_id \
             RETURNING j.ticket_id, j.attempts, j.next_attempt_at, j.lease_token",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(lease_until)
        .bind(i64::from(max_attempts))
        .bind(LEASE_EXPIRED_ERROR)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        leased_triage(rows)
    }

    async fn extend_triage_lease(&self, lease: &TriageLease, until: Timestamp) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE triage_jobs SET lease_expires_at = $3 \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.ticket_id.as_uuid())
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

    async fn finish_triage(
        &self,
        lease: &TriageLease,
        outcome: TriageOutcome,
        now: Timestamp,
    ) -> StoreResult<()> {
        let (state, error) = match &outcome {
            TriageOutcome::Ran(_) => (TriageJobState::Done, None),
            TriageOutcome::Skipped(reason) => (TriageJobState::Skipped, Some(reason.as_str())),
        };
        let mut tx = self.pool.begin().await.map_err(map)?;
        // Locks the job row to commit: a takeover waits, then finds the job no longer due.
        let done = sqlx::query(
            "UPDATE triage_jobs SET state = $3, last_error = $4, updated_at = $5, \
             next_attempt_at = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.ticket_id.as_uuid())
        .bind(lease.token)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            // Dropping the transaction rolls it back: nothing is stored.
            return Err(lease_lost(lease));
        }
        if let TriageOutcome::Ran(run) = &outcome {
            if upsert_run(&mut tx, run).await? == 0 {
                return Err(StoreError::NotFound(format!("ticket {}", run.ticket_id)));
            }
            if let Some(finding) = &run.finding {
                // Not `version`: the agent's finding must never make an analyst's edit
                // conflict (ADR 0005).
                sqlx::query("UPDATE tickets SET finding = $2 WHERE id = $1")
                    .bind(lease.ticket_id.as_uuid())
                    .bind(Json(finding))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
            }
        }
        tx.commit().await.map_err(map)?;
        Ok(())
    }

    async fn fail_triage(
        &self,
        lease: &TriageLease,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        let state = if retry_at.is_some() {
            TriageJobState::Pending
        } else {
            TriageJobState::Failed
        };
        let done = sqlx::query(
            "UPDATE triage_jobs SET state = $3, next_attempt_at = $4, last_error = $5, \
             lease_token = NULL, lease_expires_at = NULL, updated_at = now() \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.ticket_id.as_uuid())
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

    async fn release_triage(&self, lease: &TriageLease) -> StoreResult<()> {
        // `next_attempt_at` keeps the due time the job was leased at: due at once, at the
        // head of the queue.
        let done = sqlx::query(
            "UPDATE triage_jobs SET state = 'pending', attempts = GREATEST(attempts - 1, 0), \
             lease_token = NULL, lease_expires_at = NULL, updated_at = now() \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(lease.ticket_id.as_uuid())
        .bind(lease.token)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn requeue_triage(&self, ticket: TicketId, now: Timestamp) -> StoreResult<TriageJob> {
        // The upsert's conflict path locks the job row: a concurrent lease either committed
        // before (`processing`: Conflict) or skips the row until this commits.
        let row: Option<TriageJobRow> = sqlx::query_as(concat!(
            "INSERT INTO triage_jobs (ticket_id, state, attempts, last_error, next_attempt_at, \
             lease_token, lease_expires_at, created_at, updated_at) \
             SELECT $1, 'pending', 0, NULL, LEAST($2, now()), NULL, NULL, $2, $2 \
             WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $1) \
             ON CONFLICT (ticket_id) DO UPDATE SET state = 'pending', attempts = 0, \
                 last_error = NULL, next_attempt_at = EXCLUDED.next_attempt_at, \
                 lease_token = NULL, lease_expires_at = NULL, updated_at = EXCLUDED.updated_at \
             WHERE triage_jobs.state <> 'processing' RETURNING ",
            triage_columns!()
        ))
        .bind(ticket.as_uuid())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        match row {
            Some(row) => TriageJob::try_from(row),
            None => match self.get_triage_job(ticket).await? {
                Some(_) => Err(StoreError::Conflict(format!(
                    "the triage of ticket {ticket} is running"
                ))),
                None => Err(StoreError::NotFound(format!("ticket {ticket}"))),
            },
        }
    }

    async fn get_triage_job(&self, ticket: TicketId) -> StoreResult<Option<TriageJob>> {
        let row: Option<TriageJobRow> = sqlx::query_as(concat!(
            "SELECT ",
            triage_columns!(),
            " FROM triage_jobs WHERE ticket_id = $1"
        ))
        .bind(ticket.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        row.map(TriageJob::try_from).transpose()
    }

    async fn triage_stats(&self, _now: Timestamp) -> StoreResult<TriageStats> {
        // Three counts, each answered from its partial index.
        let (pending, processing, failed): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM triage_jobs WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM triage_jobs WHERE state = 'processing'), \
                    (SELECT COUNT(*) FROM triage_jobs WHERE state = 'failed')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(TriageStats {
            pending: pending.max(0) as u64,
            processing: processing.max(0) as u64,
            failed: failed.max(0) as u64,
        })
    }

    async fn save_agent_run(&self, run: &AgentRun) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(map)?;
        if upsert_run(&mut conn, run).await? == 0 {
            return Err(StoreError::NotFound(format!("ticket {}", run.ticket_id)));
        }
        Ok(())
    }

    async fn list_agent_runs(&self, ticket: TicketId) -> StoreResult<Vec<AgentRun>> {
        let rows: Vec<AgentRunRow> = sqlx::query_as(concat!(
            "SELECT ",
            run_columns!(),
            " FROM agent_runs WHERE ticket_id = $1 ORDER BY started_at, id"
        ))
        .bind(ticket.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        convert(rows)
    }

    async fn tokens_spent_since(&self, since: Timestamp) -> StoreResult<u64> {
        // SUM of bigint is numeric: cast back.
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(total_tokens), 0)::bigint FROM agent_runs \
             WHERE started_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}

/// The most dimensions pgvector's HNSW indexes `vector` with; larger embeddings are searched
/// without an index (exactly, and slowly).
pub const MAX_HNSW_DIMS: i32 = 2_000;

/// Candidates an HNSW search keeps (pgvector's default is 40). Measured by `heron-bench
/// similar` (docs/performance.md): 100 gives recall@10 ≥ 0.95 on 100,000 clustered vectors
/// of 256 dimensions, well inside the latency target.
pub const EF_SEARCH: u32 = 100;

/// The name of the HNSW index of `dims`-dimensional embeddings.
fn hnsw_index_name(dims: i32) -> String {
    format!("ticket_embeddings_hnsw_{dims}")
}

/// The statement creating the HNSW index of `dims`-dimensional embeddings: a partial index on
/// the embedding cast to its fixed dimension. `dims` is an integer, so the text is safe.
pub fn hnsw_index_sql(dims: i32) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON ticket_embeddings \
         USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dims = {dims}",
        hnsw_index_name(dims)
    )
}

/// The search statement for `dims` dimensions and `limit` results: `$1` the model, `$2` the
/// query vector, `$3` the ticket to leave out (or NULL). The cast and the `dims = <dims>`
/// predicate are those of [`hnsw_index_sql`], and both numbers are literals, so that every
/// plan (custom or generic) can use the index and knows how many rows it stops at.
pub fn similar_sql(dims: i32, limit: usize) -> String {
    format!(
        concat!(
            "SELECT ",
            similar_columns!(),
            ", 1 - n.distance AS score FROM ( \
                 SELECT ticket_id, embedding::vector({dims}) <=> $2::vector({dims}) AS distance \
                 FROM ticket_embeddings \
                 WHERE dims = {dims} AND model = $1 \
                     AND ($3::uuid IS NULL OR ticket_id <> $3::uuid) \
                 ORDER BY embedding::vector({dims}) <=> $2::vector({dims}) \
                 LIMIT {limit}) n \
             JOIN tickets t ON t.id = n.ticket_id \
             ORDER BY n.distance, t.id"
        ),
        dims = dims,
        limit = limit
    )
}

/// The session settings of a search, for its transaction: enough HNSW candidates for the
/// recall target, and iterative scans so that filtering by model (and leaving a ticket out)
/// still yields `limit` results in exact distance order.
async fn search_settings(conn: &mut PgConnection) -> StoreResult<()> {
    // `set_config(…, true)` is `SET LOCAL`, both in one round trip.
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), \
                set_config('hnsw.iterative_scan', 'strict_order', true)",
    )
    .bind(EF_SEARCH.to_string())
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct ScoredRow {
    #[sqlx(flatten)]
    ticket: SimilarRow,
    score: f64,
}

impl PgStore {
    /// Creates the HNSW index of every dimension stored but not indexed yet (at open: after a
    /// restore, or if an index was dropped), and remembers which exist.
    pub(super) async fn ensure_hnsw_indexes(&self) -> StoreResult<()> {
        let stored: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT dims FROM ticket_embeddings")
            .fetch_all(&self.pool)
            .await
            .map_err(map)?;
        for dims in stored {
            self.ensure_hnsw_index(dims).await?;
        }
        Ok(())
    }

    /// Creates the HNSW index of `dims` unless this process knows it exists.
    async fn ensure_hnsw_index(&self, dims: i32) -> StoreResult<()> {
        if dims > MAX_HNSW_DIMS || self.known_hnsw(dims) {
            return Ok(());
        }
        create_hnsw_index(&self.pool, dims).await?;
        self.hnsw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dims);
        Ok(())
    }

    fn known_hnsw(&self, dims: i32) -> bool {
        self.hnsw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&dims)
    }

    /// The plan PostgreSQL makes for a search (`EXPLAIN`), under the settings a search runs
    /// with: to check that it uses the HNSW index (tests, `heron-bench similar`).
    pub async fn explain_similar(
        &self,
        model: &str,
        vector: &[f32],
        limit: usize,
    ) -> StoreResult<String> {
        let dims = dims(vector)?;
        let mut tx = self.pool.begin().await.map_err(map)?;
        search_settings(&mut tx).await?;
        let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "EXPLAIN {}",
            similar_sql(dims, limit.clamp(1, MAX_SIMILAR))
        )))
        .bind(model)
        .bind(Vector::from(vector.to_vec()))
        .bind(None::<uuid::Uuid>)
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(lines.join("\n"))
    }
}

/// `CREATE INDEX IF NOT EXISTS` alone is not safe against a concurrent creation of the same
/// index (the second fails on the catalog's unique name): processes take an advisory lock
/// first, so the second waits and then finds the index.
async fn create_hnsw_index(pool: &PgPool, dims: i32) -> StoreResult<()> {
    let mut tx = pool.begin().await.map_err(map)?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes \
         WHERE schemaname = current_schema() AND indexname = $1)",
    )
    .bind(hnsw_index_name(dims))
    .fetch_one(&mut *tx)
    .await
    .map_err(map)?;
    if exists {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('heron-hnsw-index', $1))")
        .bind(i64::from(dims))
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    sqlx::query(AssertSqlSafe(hnsw_index_sql(dims)))
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    tx.commit().await.map_err(map)?;
    tracing::info!(dims, "created the HNSW index of ticket embeddings");
    Ok(())
}

#[async_trait]
impl EmbeddingStore for PgStore {
    async fn put_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
        vector: &[f32],
    ) -> StoreResult<()> {
        let dims = dims(vector)?;
        self.ensure_hnsw_index(dims).await?;
        // One statement: the ticket check and the write cannot be separated by a delete.
        let done = sqlx::query(
            "INSERT INTO ticket_embeddings (ticket_id, model, dims, embedding) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $1) \
             ON CONFLICT (ticket_id, model) DO UPDATE SET dims = EXCLUDED.dims, \
                 embedding = EXCLUDED.embedding",
        )
        .bind(ticket.as_uuid())
        .bind(model)
        .bind(dims)
        .bind(Vector::from(vector.to_vec()))
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("ticket {ticket}")));
        }
        Ok(())
    }

    async fn get_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
    ) -> StoreResult<Option<Vec<f32>>> {
        let vector: Option<Vector> = sqlx::query_scalar(
            "SELECT embedding FROM ticket_embeddings WHERE ticket_id = $1 AND model = $2",
        )
        .bind(ticket.as_uuid())
        .bind(model)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        Ok(vector.map(|v| v.to_vec()))
    }

    async fn similar_tickets(
        &self,
        model: &str,
        vector: &[f32],
        limit: usize,
        exclude: Option<TicketId>,
    ) -> StoreResult<Vec<SimilarTicket>> {
        if limit == 0 || vector.is_empty() {
            return Ok(Vec::new());
        }
        let dims = dims(vector)?;
        let mut tx = self.pool.begin().await.map_err(map)?;
        search_settings(&mut tx).await?;
        let rows: Vec<ScoredRow> =
            sqlx::query_as(AssertSqlSafe(similar_sql(dims, limit.min(MAX_SIMILAR))))
                .bind(model)
                .bind(Vector::from(vector.to_vec()))
                .bind(exclude.map(|id| id.as_uuid()))
                .fetch_all(&mut *tx)
                .await
                .map_err(map)?;
        tx.commit().await.map_err(map)?;
        rows.into_iter()
            .map(|row| {
                // pgvector answers NaN for a zero vector; exact search calls that 0.
                let score = if row.score.is_nan() { 0.0 } else { row.score };
                row.ticket.scored(score)
            })
            .collect()
    }

    async fn alerts_to_embed(&self, limit: usize) -> StoreResult<Vec<Alert>> {
        let rows: Vec<AlertRow> = sqlx::query_as(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE embedding_pending ORDER BY created_at, id LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        convert(rows)
    }

    async fn put_alert_embeddings(
        &self,
        model: &str,
        vectors: &[(AlertId, Vec<f32>)],
    ) -> StoreResult<()> {
        if vectors.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(vectors.len());
        let mut sizes = Vec::with_capacity(vectors.len());
        let mut embeddings = Vec::with_capacity(vectors.len());
        for (id, vector) in vectors {
            ids.push(id.as_uuid());
            sizes.push(dims(vector)?);
            embeddings.push(Vector::from(vector.clone()));
        }
        let mut tx = self.pool.begin().await.map_err(map)?;
        let known: i64 =
            sqlx::query_scalar("SELECT count(*) FROM alerts WHERE id = ANY($1::uuid[])")
                .bind(&ids)
                .fetch_one(&mut *tx)
                .await
                .map_err(map)?;
        if usize::try_from(known).unwrap_or(0) != vectors.len() {
            let found: Vec<uuid::Uuid> =
                sqlx::query_scalar("SELECT id FROM alerts WHERE id = ANY($1::uuid[])")
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map)?;
            let missing = vectors
                .iter()
                .map(|(id, _)| *id)
                .find(|id| !found.contains(&id.as_uuid()));
            return Err(StoreError::NotFound(match missing {
                Some(id) => format!("alert {id}"),
                None => "an alert given twice".to_owned(),
            }));
        }
        sqlx::query(
            "INSERT INTO alert_embeddings (alert_id, model, dims, embedding) \
             SELECT id, $2, d, e FROM UNNEST($1::uuid[], $3::integer[], $4::vector[]) AS u(id, d, e) \
             ON CONFLICT (alert_id, model) DO UPDATE SET dims = EXCLUDED.dims, \
                 embedding = EXCLUDED.embedding",
        )
        .bind(&ids)
        .bind(model)
        .bind(&sizes)
        .bind(&embeddings)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        sqlx::query(
            "UPDATE alerts SET embedding_pending = false \
             WHERE id = ANY($1::uuid[]) AND embedding_pending",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)
    }

    async fn skip_alert_embeddings(&self, alerts: &[AlertId]) -> StoreResult<()> {
        let ids: Vec<uuid::Uuid> = alerts.iter().map(|id| id.as_uuid()).collect();
        sqlx::query(
            "UPDATE alerts SET embedding_pending = false \
             WHERE id = ANY($1::uuid[]) AND embedding_pending",
        )
        .bind(&ids)
        .execute(&self.pool)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn get_alert_embedding(
        &self,
        alert: AlertId,
        model: &str,
    ) -> StoreResult<Option<Vec<f32>>> {
        let vector: Option<Vector> = sqlx::query_scalar(
            "SELECT embedding FROM alert_embeddings WHERE alert_id = $1 AND model = $2",
        )
        .bind(alert.as_uuid())
        .bind(model)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        Ok(vector.map(|v| v.to_vec()))
    }
}

#[async_trait]
impl ToolCache for PgStore {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<String>, ToolCacheError> {
        sqlx::query_scalar("SELECT value FROM tool_cache WHERE key = $1 AND expires_at > $2")
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| ToolCacheError(map(e).to_string()))
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), ToolCacheError> {
        sqlx::query(
            "INSERT INTO tool_cache (key, value, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 expires_at = EXCLUDED.expires_at",
        )
        .bind(key)
        .bind(value)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| ToolCacheError(map(e).to_string()))?;
        Ok(())
    }
}
