//! Storage ports of the agent's work: the durable triage queue (one job per opened ticket),
//! recorded agent runs, and ticket and alert embeddings for similarity search.
//!
//! Invariants every implementation keeps (checked by `testing::conformance`):
//! - opening a ticket — by an event's completion or by escalating a notice — enqueues exactly
//!   one triage job for it in the same transaction, so no ticket is ever left without its
//!   triage because a process died between the two; attaching alerts enqueues nothing, which
//!   is what makes a storm of one fingerprint cost one triage;
//! - a triage job is leased like an event: a token and an expiry; only the current holder can
//!   finish, fail or release it, and a job whose lease expired `max_attempts` times is failed
//!   rather than leased again;
//! - finishing a job stores its [`AgentRun`] and, when the run produced a finding, the ticket's
//!   `finding`, atomically. Writing the finding leaves the ticket's `version` alone, as
//!   attaching alerts does, so the agent never makes an analyst's edit conflict;
//! - an agent run is stored whole (with its steps) and replaced whole when saved again;
//! - embeddings are kept per ticket and per model; a search only compares vectors of the same
//!   model and dimensions, and answers at most `limit` tickets, best first, scores in [-1, 1]
//!   (cosine similarity);
//! - every alert stored after the embedding migration waits to be embedded until
//!   `put_alert_embeddings` or `skip_alert_embeddings` covers it (alerts stored before it are
//!   never embedded in bulk: turning embeddings on must not cost the whole history at once).

use crate::agent::AgentRun;
use crate::alert::Alert;
use crate::ports::StoreResult;
use crate::{AlertId, Conclusion, TicketId, TicketStatus, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A leased triage job: proof of holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageLease {
    pub ticket_id: TicketId,
    pub token: uuid::Uuid,
    /// Including this one.
    pub attempts: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriageJobState {
    Pending,
    Processing,
    Done,
    Failed,
    /// Not run on purpose (the agent was disabled, or the job was too old when the agent came
    /// up); `last_error` says why.
    Skipped,
}

crate::event::str_enum!(TriageJobState {
    Pending => "pending",
    Processing => "processing",
    Done => "done",
    Failed => "failed",
    Skipped => "skipped",
});

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageJob {
    pub ticket_id: TicketId,
    pub state: TriageJobState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TriageStats {
    pub pending: u64,
    pub processing: u64,
    pub failed: u64,
}

/// How a triage job ended without a run worth storing as done.
#[derive(Debug, Clone, PartialEq)]
pub enum TriageOutcome {
    /// The run is stored; its finding (if any) is written to the ticket.
    Ran(Box<AgentRun>),
    /// Not run on purpose, for the reason given.
    Skipped(String),
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Leases up to `limit` due triage jobs, oldest first, as [`EventQueue::lease_events`]
    /// does for events (fresh token, `processing`, `attempts + 1`; an expired lease past
    /// `max_attempts` becomes `failed` instead).
    ///
    /// [`EventQueue::lease_events`]: crate::ports::EventQueue::lease_events
    async fn lease_triage(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Vec<TriageLease>>;
    /// Heartbeat: `LeaseLost` if the lease is not the current one.
    async fn extend_triage_lease(&self, lease: &TriageLease, until: Timestamp) -> StoreResult<()>;
    /// Ends the job at `now`: `done` with the run stored (and the run's finding, if it has
    /// one, written to the ticket), or `skipped` with the reason. `LeaseLost` if the lease is
    /// not the current one; then nothing is stored.
    async fn finish_triage(
        &self,
        lease: &TriageLease,
        outcome: TriageOutcome,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Records a failed attempt: with `retry_at`, back to `pending` due then; without,
    /// `failed`. `LeaseLost` as for finishing.
    async fn fail_triage(
        &self,
        lease: &TriageLease,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// Gives the lease back unfinished (shutdown): `pending`, due at once, attempt not counted.
    async fn release_triage(&self, lease: &TriageLease) -> StoreResult<()>;
    /// Queues the ticket's triage again (an analyst asked for a new run): whatever state its
    /// job is in, it becomes `pending`, due at `now`, with no attempts and no error, unless it
    /// is `processing` (`Conflict`). Unknown ticket: `NotFound`.
    async fn requeue_triage(&self, ticket: TicketId, now: Timestamp) -> StoreResult<TriageJob>;
    async fn get_triage_job(&self, ticket: TicketId) -> StoreResult<Option<TriageJob>>;
    async fn triage_stats(&self, now: Timestamp) -> StoreResult<TriageStats>;

    /// Stores a run (a chat or an enrichment task, or a triage run outside the queue),
    /// replacing a stored run with the same id.
    async fn save_agent_run(&self, run: &AgentRun) -> StoreResult<()>;
    /// The ticket's runs, oldest first, with their steps.
    async fn list_agent_runs(&self, ticket: TicketId) -> StoreResult<Vec<AgentRun>>;
    /// Tokens (prompt + completion) of every run started at or after `since`, for the
    /// service-wide daily budget shared by every process.
    async fn tokens_spent_since(&self, since: Timestamp) -> StoreResult<u64>;
}

/// A past ticket close to the one searched for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimilarTicket {
    pub ticket_id: TicketId,
    pub title: String,
    pub status: TicketStatus,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    /// The agent's verdict and summary, when it wrote a finding.
    pub finding: Option<serde_json::Value>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Cosine similarity, 1 = same direction.
    pub score: f64,
}

#[async_trait]
pub trait EmbeddingStore: Send + Sync {
    /// Stores (or replaces) the ticket's embedding under `model`. `NotFound` if the ticket
    /// does not exist.
    async fn put_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
        vector: &[f32],
    ) -> StoreResult<()>;
    async fn get_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
    ) -> StoreResult<Option<Vec<f32>>>;
    /// The `limit` tickets whose `model` embeddings are closest to `vector` (same dimensions
    /// only), best first, leaving out `exclude`. PostgreSQL may answer from an approximate
    /// (HNSW) index; SQLite and the in-memory store search exactly.
    async fn similar_tickets(
        &self,
        model: &str,
        vector: &[f32],
        limit: usize,
        exclude: Option<TicketId>,
    ) -> StoreResult<Vec<SimilarTicket>>;

    /// Alerts still waiting for an embedding, oldest first, at most `limit`.
    async fn alerts_to_embed(&self, limit: usize) -> StoreResult<Vec<Alert>>;
    /// Stores (or replaces) the alerts' vectors under `model`, all or nothing, and takes them
    /// off the waiting list. `NotFound` if one of the alerts does not exist.
    async fn put_alert_embeddings(
        &self,
        model: &str,
        vectors: &[(AlertId, Vec<f32>)],
    ) -> StoreResult<()>;
    /// Takes alerts off the waiting list without a vector (the embedder refuses them for
    /// good). Unknown ids are ignored.
    async fn skip_alert_embeddings(&self, alerts: &[AlertId]) -> StoreResult<()>;
    async fn get_alert_embedding(
        &self,
        alert: AlertId,
        model: &str,
    ) -> StoreResult<Option<Vec<f32>>>;
}

/// Exact search's measure: the cosine similarity of two vectors of equal length, 0 when
/// either is all zeros.
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}
