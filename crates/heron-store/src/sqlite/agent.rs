//! The agent's ports on SQLite: the triage queue, agent runs, ticket embeddings and the tool
//! cache (see `migrations/sqlite`).
//!
//! - the triage queue is leased exactly as the events queue is (a read first, so idle
//!   workers do not take the write lock, then one `BEGIN IMMEDIATE` transaction);
//! - similar-ticket search is exact: the vectors of one (model, dims) are streamed and scored
//!   in Rust ([`cosine_similarity`]), keeping only the best `limit` in a heap, so memory stays
//!   at `limit` candidates whatever the number of tickets.

use super::{SqliteStore, id_text};
use crate::error::map;
use crate::rows::{
    AgentRunRow, AlertRow, DbUuid, MAX_SIMILAR, SimilarRow, TriageJobRow, TriageLeasedRow,
    alert_columns, budget_text, convert, dims, json_text, leased_triage, micros, run_columns,
    similar_columns, triage_columns,
};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use heron_core::agent::AgentRun;
use heron_core::alert::Alert;
use heron_core::investigation::{
    AgentStore, EmbeddingStore, SimilarTicket, TriageJob, TriageJobState, TriageLease,
    TriageOutcome, TriageStats, cosine_similarity,
};
use heron_core::ports::{LEASE_EXPIRED_ERROR, StoreError, StoreResult};
use heron_core::tool::{ToolCache, ToolCacheError};
use heron_core::{AlertId, TicketId, Timestamp};
use sqlx::{Row, SqliteConnection};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use uuid::Uuid;

/// Queues the triage of tickets just opened, due at `now`; runs in the transaction that
/// inserts them (see `heron_core::investigation`).
pub(super) async fn enqueue_triage(
    conn: &mut SqliteConnection,
    ticket: TicketId,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO triage_jobs (ticket_id, state, attempts, last_error, next_attempt_at, \
         lease_token, lease_expires_at, created_at, updated_at) \
         VALUES ($1, 'pending', 0, NULL, $2, NULL, NULL, $2, $2)",
    )
    .bind(id_text(ticket))
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

fn lease_lost(lease: &TriageLease) -> StoreError {
    StoreError::TriageLeaseLost(lease.ticket_id)
}

/// The host's clock, which is the store's (one host).
fn clock() -> i64 {
    micros(chrono::Utc::now())
}

/// Inserts or replaces `run` whole; 0 rows when its ticket does not exist.
async fn upsert_run(conn: &mut SqliteConnection, run: &AgentRun) -> StoreResult<u64> {
    let done = sqlx::query(
        "INSERT INTO agent_runs (id, ticket_id, purpose, status, model, started_at, \
         finished_at, prompt_tokens, completion_tokens, total_tokens, finding, answer, budget, \
         error, steps) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 \
         WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $2) \
         ON CONFLICT (id) DO UPDATE SET ticket_id = excluded.ticket_id, \
             purpose = excluded.purpose, status = excluded.status, model = excluded.model, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             prompt_tokens = excluded.prompt_tokens, \
             completion_tokens = excluded.completion_tokens, \
             total_tokens = excluded.total_tokens, finding = excluded.finding, \
             answer = excluded.answer, budget = excluded.budget, error = excluded.error, \
             steps = excluded.steps",
    )
    .bind(id_text(run.id))
    .bind(id_text(run.ticket_id))
    .bind(run.purpose.as_str())
    .bind(run.status.as_str())
    .bind(&run.model)
    .bind(micros(run.started_at))
    .bind(run.finished_at.map(micros))
    .bind(i64::from(run.usage.prompt_tokens))
    .bind(i64::from(run.usage.completion_tokens))
    .bind(i64::from(run.usage.total_tokens))
    .bind(run.finding.as_ref().map(json_text).transpose()?)
    .bind(run.answer.as_deref())
    .bind(run.budget.map(budget_text).transpose()?)
    .bind(run.error.as_deref())
    .bind(json_text(&run.steps)?)
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(done.rows_affected())
}

#[async_trait]
impl AgentStore for SqliteStore {
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
        // As for events: an idle worker's poll is a read beside the writer.
        let any_due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM triage_jobs \
                        WHERE state = 'pending' AND next_attempt_at <= $1) \
                 OR EXISTS (SELECT 1 FROM triage_jobs \
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
        let due: Vec<(String, bool)> = sqlx::query_as(
            "SELECT ticket_id, exhausted FROM ( \
                 SELECT * FROM (SELECT ticket_id, next_attempt_at, 0 AS exhausted \
                     FROM triage_jobs WHERE state = 'pending' AND next_attempt_at <= $1 \
                     ORDER BY next_attempt_at, ticket_id LIMIT $2) \
                 UNION ALL \
                 SELECT * FROM (SELECT ticket_id, next_attempt_at, attempts >= $3 AS exhausted \
                     FROM triage_jobs WHERE state = 'processing' AND lease_expires_at < $1 \
                     ORDER BY next_attempt_at, ticket_id LIMIT $2)) \
             ORDER BY next_attempt_at, ticket_id LIMIT $2",
        )
        .bind(micros(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::from(max_attempts))
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        let mut rows = Vec::with_capacity(due.len());
        for (id, exhausted) in due {
            let row: TriageLeasedRow = if exhausted {
                sqlx::query_as(
                    "UPDATE triage_jobs SET state = 'failed', \
                     last_error = replace($2, '{n}', CAST(attempts AS TEXT)), \
                     next_attempt_at = NULL, lease_token = NULL, lease_expires_at = NULL, \
                     updated_at = $3 \
                     WHERE ticket_id = $1 \
                     RETURNING ticket_id, attempts, next_attempt_at, lease_token",
                )
                .bind(id)
                .bind(LEASE_EXPIRED_ERROR)
                .bind(micros(now))
            } else {
                sqlx::query_as(
                    "UPDATE triage_jobs SET state = 'processing', attempts = attempts + 1, \
                     lease_token = $2, lease_expires_at = $3, updated_at = $4 \
                     WHERE ticket_id = $1 \
                     RETURNING ticket_id, attempts, next_attempt_at, lease_token",
                )
                .bind(id)
                .bind(id_text(Uuid::new_v4()))
                .bind(micros(lease_until))
                .bind(micros(now))
            }
            .fetch_one(&mut *tx)
            .await
            .map_err(map)?;
            rows.push(row);
        }
        tx.commit().await.map_err(map)?;
        leased_triage(rows)
    }

    async fn extend_triage_lease(&self, lease: &TriageLease, until: Timestamp) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE triage_jobs SET lease_expires_at = $3 \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.ticket_id))
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
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE triage_jobs SET state = $3, last_error = $4, updated_at = $5, \
             next_attempt_at = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.ticket_id))
        .bind(id_text(lease.token))
        .bind(state.as_str())
        .bind(error)
        .bind(micros(now))
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
                    .bind(id_text(lease.ticket_id))
                    .bind(json_text(finding)?)
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
             lease_token = NULL, lease_expires_at = NULL, updated_at = $6 \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.ticket_id))
        .bind(id_text(lease.token))
        .bind(state.as_str())
        .bind(retry_at.map(micros))
        .bind(error)
        .bind(clock())
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
            "UPDATE triage_jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), \
             lease_token = NULL, lease_expires_at = NULL, updated_at = $3 \
             WHERE ticket_id = $1 AND lease_token = $2 AND state = 'processing'",
        )
        .bind(id_text(lease.ticket_id))
        .bind(id_text(lease.token))
        .bind(clock())
        .execute(&self.pool)
        .await
        .map_err(map)?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn requeue_triage(&self, ticket: TicketId, now: Timestamp) -> StoreResult<TriageJob> {
        let row: Option<TriageJobRow> = sqlx::query_as(concat!(
            "INSERT INTO triage_jobs (ticket_id, state, attempts, last_error, next_attempt_at, \
             lease_token, lease_expires_at, created_at, updated_at) \
             SELECT $1, 'pending', 0, NULL, $2, NULL, NULL, $2, $2 \
             WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $1) \
             ON CONFLICT (ticket_id) DO UPDATE SET state = 'pending', attempts = 0, \
                 last_error = NULL, next_attempt_at = excluded.next_attempt_at, \
                 lease_token = NULL, lease_expires_at = NULL, updated_at = excluded.updated_at \
             WHERE triage_jobs.state <> 'processing' RETURNING ",
            triage_columns!()
        ))
        .bind(id_text(ticket))
        .bind(micros(now))
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
        .bind(id_text(ticket))
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
        .bind(id_text(ticket))
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        convert(rows)
    }

    async fn tokens_spent_since(&self, since: Timestamp) -> StoreResult<u64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(total_tokens), 0) FROM agent_runs WHERE started_at >= $1",
        )
        .bind(micros(since))
        .fetch_one(&self.pool)
        .await
        .map_err(map)?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}

/// A vector as stored: little-endian f32s.
fn vector_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector, or a corruption error naming `whose` it is.
fn stored_vector(blob: &[u8], whose: &str) -> StoreResult<Vec<f32>> {
    let mut vector = Vec::with_capacity(blob.len() / 4);
    if !read_blob(blob, &mut vector) {
        return Err(crate::error::corrupt(format!(
            "stored embedding of {whose} is {} bytes, not whole f32s",
            blob.len()
        )));
    }
    Ok(vector)
}

/// Decodes a stored vector into `out` (reused across rows); `false` if the blob is not whole
/// f32s.
fn read_blob(blob: &[u8], out: &mut Vec<f32>) -> bool {
    out.clear();
    let chunks = blob.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return false;
    }
    out.extend(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    true
}

/// A scored candidate of an exact search. Greater is better: a higher score, then (to break
/// ties as the in-memory store does) the smaller ticket id.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f64,
    id: Uuid,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

#[async_trait]
impl EmbeddingStore for SqliteStore {
    async fn put_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
        vector: &[f32],
    ) -> StoreResult<()> {
        let dims = dims(vector)?;
        // One statement: the ticket check and the write cannot be separated by a delete.
        let done = sqlx::query(
            "INSERT INTO ticket_embeddings (ticket_id, model, dims, embedding) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tickets WHERE id = $1) \
             ON CONFLICT (ticket_id, model) DO UPDATE SET dims = excluded.dims, \
                 embedding = excluded.embedding",
        )
        .bind(id_text(ticket))
        .bind(model)
        .bind(dims)
        .bind(vector_blob(vector))
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
        let blob: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT embedding FROM ticket_embeddings WHERE ticket_id = $1 AND model = $2",
        )
        .bind(id_text(ticket))
        .bind(model)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        blob.map(|b| stored_vector(&b, &format!("ticket {ticket}")))
            .transpose()
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
        let limit = limit.min(MAX_SIMILAR);
        let exclude = exclude.map(|id| id.as_uuid());
        // A min-heap of the best `limit` so far: its top is the one to beat.
        let mut best: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(limit + 1);
        let mut stored = Vec::with_capacity(vector.len());
        // Columns read from the row itself, not through a row struct: the vector is then
        // decoded from the row's own buffer, not copied into a `Vec<u8>` first (a row struct
        // cannot borrow from a streamed row).
        let mut rows = sqlx::query(
            "SELECT ticket_id, embedding FROM ticket_embeddings WHERE model = $1 AND dims = $2",
        )
        .bind(model)
        .bind(dims)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(map)? {
            let id: DbUuid = row.try_get(0).map_err(map)?;
            if Some(id.0) == exclude {
                continue;
            }
            let blob: &[u8] = row.try_get(1).map_err(map)?;
            if !read_blob(blob, &mut stored) || stored.len() != vector.len() {
                return Err(crate::error::corrupt(format!(
                    "stored embedding of ticket {} does not have {dims} dimensions",
                    id.0
                )));
            }
            let candidate = Candidate {
                score: cosine_similarity(vector, &stored),
                id: id.0,
            };
            if best.len() < limit {
                best.push(Reverse(candidate));
            } else if best.peek().is_some_and(|worst| candidate > worst.0) {
                best.pop();
                best.push(Reverse(candidate));
            }
        }
        drop(rows);
        // `into_sorted_vec` of `Reverse` is best first.
        let best: Vec<Candidate> = best.into_sorted_vec().into_iter().map(|r| r.0).collect();
        if best.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = best.iter().map(|c| id_text(c.id)).collect();
        let rows: Vec<SimilarRow> = sqlx::query_as(concat!(
            "SELECT ",
            similar_columns!(),
            " FROM tickets t WHERE t.id IN (SELECT value FROM json_each($1))"
        ))
        .bind(json_text(&ids)?)
        .fetch_all(&self.pool)
        .await
        .map_err(map)?;
        let mut by_id: HashMap<TicketId, SimilarRow> =
            rows.into_iter().map(|r| (r.ticket_id(), r)).collect();
        best.into_iter()
            .filter_map(|c| {
                by_id
                    .remove(&TicketId::from_uuid(c.id))
                    .map(|row| row.scored(c.score))
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
        let mut tx = self.write().await?;
        for (alert, vector) in vectors {
            let dims = dims(vector)?;
            // The alert check and the write in one statement, as for tickets.
            let done = sqlx::query(
                "INSERT INTO alert_embeddings (alert_id, model, dims, embedding) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM alerts WHERE id = $1) \
                 ON CONFLICT (alert_id, model) DO UPDATE SET dims = excluded.dims, \
                     embedding = excluded.embedding",
            )
            .bind(id_text(alert))
            .bind(model)
            .bind(dims)
            .bind(vector_blob(vector))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("alert {alert}")));
            }
            sqlx::query(
                "UPDATE alerts SET embedding_pending = 0 WHERE id = $1 AND embedding_pending",
            )
            .bind(id_text(alert))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        }
        tx.commit().await.map_err(map)
    }

    async fn skip_alert_embeddings(&self, alerts: &[AlertId]) -> StoreResult<()> {
        let ids: Vec<String> = alerts.iter().map(id_text).collect();
        sqlx::query(
            "UPDATE alerts SET embedding_pending = 0 \
             WHERE id IN (SELECT value FROM json_each($1)) AND embedding_pending",
        )
        .bind(json_text(&ids)?)
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
        let blob: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT embedding FROM alert_embeddings WHERE alert_id = $1 AND model = $2",
        )
        .bind(id_text(alert))
        .bind(model)
        .fetch_optional(&self.pool)
        .await
        .map_err(map)?;
        blob.map(|b| stored_vector(&b, &format!("alert {alert}")))
            .transpose()
    }
}

#[async_trait]
impl ToolCache for SqliteStore {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<String>, ToolCacheError> {
        sqlx::query_scalar("SELECT value FROM tool_cache WHERE key = $1 AND expires_at > $2")
            .bind(key)
            .bind(micros(now))
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
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(value)
        .bind(micros(expires_at))
        .execute(&self.pool)
        .await
        .map_err(|e| ToolCacheError(map(e).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_survives_its_blob_bit_for_bit() {
        let vector = [0.1f32, -2.5, f32::MIN_POSITIVE, 1e30, 0.0, -0.0];
        let mut back = Vec::new();
        assert!(read_blob(&vector_blob(&vector), &mut back));
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            vector.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(!read_blob(&[0, 0, 0], &mut back), "not whole f32s");
    }

    #[test]
    fn candidates_order_by_score_then_smaller_id() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let c = |score, id| Candidate { score, id };
        assert!(c(0.9, b) > c(0.8, a));
        assert!(c(0.5, a) > c(0.5, b), "ties: the smaller id is better");
    }
}
