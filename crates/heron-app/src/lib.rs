//! Heron's use cases, written against the ports of `heron-core` only: accepting deliveries,
//! the event-processing worker (ingest → fingerprint → dedup → metadata → enrich → triage →
//! ticket), and the ticket, comment, notice and event operations behind the API and CLI.
//! The model-facing stages go through the [`Enricher`] port; [`AgentEnricher`] implements it
//! over `heron-agent`, which itself only speaks `heron-core` ports.
//!
//! Invariants:
//! - intake never evaluates policies or calls out: it stores and acknowledges;
//! - the worker plans an event's alerts from a snapshot of the policies, then commits them
//!   with the event's completion in one store call, so a crash anywhere repeats the plan but
//!   never half-applies it;
//! - policy errors fail an event at once (retrying the same policy cannot help); storage
//!   errors are retried with backoff until `max_attempts`, and so is an unavailable model
//!   during enrichment, except on the last attempt, where triage goes on with the tasks'
//!   errors as their results (ADR 0006): enrichment never loses an alert.

pub mod agent_tools;
pub mod audit;
pub mod backlog;
mod chat;
pub mod embedding;
mod enrich;
mod error;
mod intake;
pub mod metrics;
pub mod pipeline;
mod policies;
pub mod replay;
pub mod slack;
mod tickets;
pub mod triage;
pub mod tuning;
mod worker;

pub use backlog::{BacklogBreaker, BacklogLimits};
pub use chat::{AGENT_AUTHOR, ChatReply, ChatService, MAX_QUESTION_BYTES};
pub use embedding::{AlertEmbeddingSettings, AlertEmbeddingWorker, SimilarityEmbedder};
pub use enrich::{AgentEnricher, AlertText, EnrichError, Enricher, TaskRun};
pub use error::{AppError, AppResult};
pub use intake::Intake;
pub use policies::{PolicyHandle, ReloadError, ReloadStatus};
pub use slack::{SlackAccess, SlackService, SlackSettings, SlackWorker};
pub use tickets::{Actor, TicketService};
pub use triage::{
    StoreDailyTokens, TriageAgent, TriageProgress, TriageSettings, TriageWatch, TriageWorker,
    ticket_context,
};
pub use worker::{Worker, WorkerSettings};
