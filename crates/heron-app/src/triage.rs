//! The triage worker: for every opened ticket, embed it (for similar-ticket search) and, when
//! an agent is configured, investigate it and write the finding.
//!
//! Jobs come from the store's durable triage queue (`heron_core::investigation`), which the
//! store fills in the same transaction that opens a ticket; attaching alerts adds nothing, so
//! a storm of one fingerprint costs one investigation.
//!
//! Invariants:
//! - every job ends recorded: `done` with its run (completed, budget exhausted, or failed after
//!   the last attempt), `skipped` with why (agent disabled, ticket too old or gone), or
//!   `failed` — never dropped; a run that failed because the model was unreachable is stored
//!   and the job retried with backoff until `max_attempts`;
//! - a job's lease is extended while its run goes on, so a long investigation is not taken
//!   over; on shutdown a leased job that has not started is released;
//! - the service-wide daily token budget is shared by every process through the stored runs
//!   ([`StoreDailyTokens`]);
//! - an embedding failure never fails the triage: the ticket is only missing from similarity
//!   search, and a warning says so.

use crate::embedding::SimilarityEmbedder;
use heron_agent::{Agent, DailyTokens};
use heron_core::agent::{AgentRun, AgentStep, RunStatus};
use heron_core::investigation::{TriageLease, TriageOutcome};
use heron_core::ports::{AlertQuery, Store, StoreError};
use heron_core::{Ticket, TicketId, Timestamp};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Alerts copied into the first prompt; the agent pages through the rest with `get_alerts`.
const CONTEXT_ALERTS: usize = 3;
/// Bytes of one alert's raw data in the first prompt.
const CONTEXT_ALERT_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone)]
pub struct TriageSettings {
    /// Investigations run at once by this process.
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Attempts (including the first) before a job whose model was unreachable is given up.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A ticket older than this when its job comes up is not investigated (the agent was off
    /// for a while: a backlog of stale tickets would spend the budget on history).
    pub max_age: Duration,
}

impl Default for TriageSettings {
    fn default() -> Self {
        Self {
            concurrency: 2,
            lease: Duration::from_secs(120),
            poll_interval: Duration::from_secs(1),
            max_attempts: 3,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// The daily token allowance, shared across processes through the stored runs: the count
/// is re-read from the store before each run, and tokens spent since are added locally.
/// Tokens of runs still going on in other processes are not seen until those runs are
/// stored, so the budget can be overshot by at most what the runs in flight spend.
pub struct StoreDailyTokens {
    limit: u64,
    spent: AtomicU64,
}

impl StoreDailyTokens {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            spent: AtomicU64::new(0),
        }
    }

    /// Reads what today's stored runs spent (UTC day).
    pub async fn refresh(&self, store: &dyn Store, now: Timestamp) -> Result<(), StoreError> {
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(now);
        let stored = store.tokens_spent_since(midnight).await?;
        self.spent.store(stored, Ordering::Relaxed);
        Ok(())
    }
}

impl DailyTokens for StoreDailyTokens {
    fn remaining(&self) -> u64 {
        self.limit
            .saturating_sub(self.spent.load(Ordering::Relaxed))
    }

    fn spend(&self, tokens: u64) {
        self.spent.fetch_add(tokens, Ordering::Relaxed);
    }
}

/// The agent side of triage, when an LLM is configured.
#[derive(Clone)]
pub struct TriageAgent {
    pub agent: Arc<Agent>,
    pub daily: Arc<StoreDailyTokens>,
}

/// Sees triage runs while they work: Slack shows a run's steps in the ticket's thread as
/// they happen. Watching must never hold a run up for long nor fail it.
pub trait TriageProgress: Send + Sync {
    /// A run on `ticket` begins.
    fn started(&self, ticket: TicketId) -> Box<dyn TriageWatch>;
}

/// The watcher of one run.
#[async_trait::async_trait]
pub trait TriageWatch: Send + Sync {
    /// A step was recorded (each once, in order).
    fn step(&self, step: &AgentStep);
    /// The run ended; it is stored after this returns.
    async fn finished(self: Box<Self>, run: &AgentRun);
}

#[derive(Clone)]
pub struct TriageWorker {
    store: Arc<dyn Store>,
    embedder: SimilarityEmbedder,
    agent: Option<TriageAgent>,
    settings: TriageSettings,
    wake: Arc<Notify>,
    progress: Option<Arc<dyn TriageProgress>>,
    /// Investigations wait while it is tripped ([`crate::backlog`]).
    breaker: Option<Arc<crate::BacklogBreaker>>,
}

impl TriageWorker {
    /// Makes investigations wait while `breaker` is tripped.
    pub fn with_breaker(mut self, breaker: Option<Arc<crate::BacklogBreaker>>) -> Self {
        self.breaker = breaker;
        self
    }

    pub fn new(
        store: Arc<dyn Store>,
        embedder: SimilarityEmbedder,
        agent: Option<TriageAgent>,
        settings: TriageSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            embedder,
            agent,
            settings,
            wake,
            progress: None,
            breaker: None,
        }
    }

    /// Shows each run's progress to `progress` as it works.
    pub fn with_progress(mut self, progress: Arc<dyn TriageProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Runs `concurrency` loops until `shutdown` turns true.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.settings.concurrency.max(1) {
            let worker = self.clone();
            let mut shutdown = shutdown.clone();
            loops.spawn(async move {
                loop {
                    if *shutdown.borrow() {
                        return;
                    }
                    let handled = match worker.run_job(Some(&shutdown)).await {
                        Ok(handled) => handled,
                        Err(e) => {
                            tracing::warn!(error = %e, "leasing triage jobs failed; retrying");
                            false
                        }
                    };
                    if !handled {
                        tokio::select! {
                            _ = worker.wake.notified() => {}
                            _ = tokio::time::sleep(worker.settings.poll_interval) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            });
        }
        while loops.join_next().await.is_some() {}
    }

    /// Leases and handles one job; false when none was due. Tests drive the worker with this.
    pub async fn run_once(&self) -> Result<bool, StoreError> {
        self.run_job(None).await
    }

    async fn run_job(&self, shutdown: Option<&watch::Receiver<bool>>) -> Result<bool, StoreError> {
        if let Some(breaker) = &self.breaker
            && breaker.model_paused().await
        {
            return Ok(false);
        }
        let now = self.store.now().await?;
        let lease_until = now + to_chrono(self.settings.lease);
        let Some(lease) = self
            .store
            .lease_triage(1, now, lease_until, self.settings.max_attempts)
            .await?
            .pop()
        else {
            return Ok(false);
        };
        if shutdown.is_some_and(|s| *s.borrow()) {
            if let Err(e) = self.store.release_triage(&lease).await {
                tracing::warn!(ticket_id = %lease.ticket_id, error = %e, "could not release a triage lease; it will expire");
            }
            return Ok(true);
        }
        let heartbeat = self.heartbeat(&lease);
        let result = self.handle(&lease, now).await;
        heartbeat.abort();
        match result {
            Ok(()) | Err(StoreError::TriageLeaseLost(_)) => {}
            Err(e) => {
                tracing::warn!(ticket_id = %lease.ticket_id, error = %e, "triage job could not be recorded; it will be retried when its lease expires");
            }
        }
        Ok(true)
    }

    fn heartbeat(&self, lease: &TriageLease) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(&self.store);
        let lease = lease.clone();
        let length = self.settings.lease;
        let every = (length / 3).max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let until = match store.now().await {
                    Ok(now) => now + to_chrono(length),
                    Err(_) => continue,
                };
                match store.extend_triage_lease(&lease, until).await {
                    Ok(()) => {}
                    Err(StoreError::TriageLeaseLost(_)) => return,
                    Err(e) => {
                        tracing::warn!(ticket_id = %lease.ticket_id, error = %e, "could not extend a triage lease");
                    }
                }
            }
        })
    }

    async fn handle(&self, lease: &TriageLease, now: Timestamp) -> Result<(), StoreError> {
        let Some(ticket) = self.store.get_ticket(lease.ticket_id).await? else {
            return self
                .skip(lease, "the ticket no longer exists".into(), now)
                .await;
        };
        self.embed(&ticket).await;
        let Some(triage) = &self.agent else {
            return self
                .skip(
                    lease,
                    "the agent is disabled: no LLM is configured".into(),
                    now,
                )
                .await;
        };
        let age = (now - ticket.created_at).to_std().unwrap_or_default();
        if age > self.settings.max_age {
            return self
                .skip(
                    lease,
                    format!(
                        "the ticket was {} h old when its triage came up (limit {} h)",
                        age.as_secs() / 3600,
                        self.settings.max_age.as_secs() / 3600
                    ),
                    now,
                )
                .await;
        }
        if let Err(e) = triage.daily.refresh(self.store.as_ref(), now).await {
            tracing::warn!(error = %e, "could not read today's token use; using the last known count");
        }
        let context = self.context(&ticket).await?;
        let watch = self.progress.as_ref().map(|p| p.started(ticket.id));
        let on_step = |step: &AgentStep| {
            if let Some(watch) = &watch {
                watch.step(step);
            }
        };
        let run = triage
            .agent
            .investigate_observed(ticket.id, &context, self.store.now().await?, &on_step)
            .await;
        if let Some(watch) = watch {
            watch.finished(&run).await;
        }
        crate::metrics::agent_run(&run);
        let unreachable = run.status == RunStatus::Failed
            && run
                .steps
                .last()
                .is_some_and(|s| s.kind == heron_core::agent::StepKind::Model && s.error.is_some());
        if unreachable && lease.attempts < self.settings.max_attempts {
            // Keep the failed run for the record; the job tries again later.
            self.store.save_agent_run(&run).await?;
            let delay = backoff(&self.settings, lease.attempts);
            let error = run.error.clone().unwrap_or_default();
            tracing::warn!(ticket_id = %ticket.id, attempt = lease.attempts, retry_in_secs = delay.as_secs(), error = %error, "triage run failed; retrying later");
            return self
                .store
                .fail_triage(lease, &error, Some(now + to_chrono(delay)))
                .await;
        }
        tracing::info!(ticket_id = %ticket.id, status = ?run.status, steps = run.steps.len(), tokens = run.usage.total_tokens, "triage run ended");
        let finished = run.finished_at.unwrap_or(now);
        let details = json!({
            "run": run.id,
            "status": run.status,
            "verdict": run.finding.as_ref().map(|f| f.verdict),
            "tokens": run.usage.total_tokens,
        });
        self.store
            .finish_triage(lease, TriageOutcome::Ran(Box::new(run)), finished)
            .await?;
        // The finding changes the ticket: on record, as Heron's own change.
        crate::audit::record(
            self.store.as_ref(),
            &crate::Actor::system("triage agent"),
            "agent.triage",
            Some(ticket.id),
            None,
            details,
        )
        .await;
        // The finding changes the ticket's Slack message (a no-op without Slack).
        if let Err(e) = self
            .store
            .request_slack_sync(heron_core::slack::SlackSubject::Ticket(ticket.id), now)
            .await
        {
            tracing::debug!(ticket_id = %ticket.id, error = %e, "could not request a Slack sync");
        }
        Ok(())
    }

    async fn skip(
        &self,
        lease: &TriageLease,
        why: String,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        tracing::debug!(ticket_id = %lease.ticket_id, reason = %why, "triage skipped");
        self.store
            .finish_triage(lease, TriageOutcome::Skipped(why), now)
            .await
    }

    async fn embed(&self, ticket: &Ticket) {
        let stored = match self.embedder.embed(ticket).await {
            Ok(vector) => self
                .store
                .put_ticket_embedding(ticket.id, self.embedder.model(), &vector)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = stored {
            tracing::warn!(ticket_id = %ticket.id, %error, "the ticket could not be embedded; it will be missing from similar-ticket search");
        }
    }

    /// The ticket and its first alerts, as the agent's untrusted data.
    async fn context(&self, ticket: &Ticket) -> Result<Value, StoreError> {
        ticket_context(self.store.as_ref(), ticket).await
    }
}

/// The ticket, its first alerts (raw data clipped) and its comments, as the agent sees them.
pub async fn ticket_context(store: &dyn Store, ticket: &Ticket) -> Result<Value, StoreError> {
    let alerts = store
        .list_alerts(&AlertQuery {
            ticket: Some(ticket.id),
            limit: CONTEXT_ALERTS,
            ..AlertQuery::default()
        })
        .await?;
    let alerts: Vec<Value> = alerts
        .items
        .iter()
        .map(|a| {
            let data = serde_json::to_string(&a.data).unwrap_or_default();
            let (data, clipped) = heron_core::tool::clip(&data, CONTEXT_ALERT_BYTES);
            json!({
                "id": a.id,
                "schema": a.schema,
                "title": a.title,
                "description": a.description,
                "severity": a.severity,
                "attributes": a.attributes,
                "tags": a.tags,
                "created_at": a.created_at,
                "data": if clipped.is_some() { Value::String(data) } else { a.data.clone() },
            })
        })
        .collect();
    let comments: Vec<Value> = store
        .list_comments(ticket.id)
        .await?
        .iter()
        .map(|c| json!({"author": c.author, "source": c.source, "text": c.text, "created_at": c.created_at}))
        .collect();
    Ok(json!({
        "ticket": {
            "id": ticket.id,
            "title": ticket.title,
            "description": ticket.description,
            "schema": ticket.schema,
            "status": ticket.status,
            "severity": ticket.severity,
            "tags": ticket.tags,
            "attributes": ticket.attributes,
            "alert_count": ticket.alert_count,
            "first_seen": ticket.first_seen,
            "last_seen": ticket.last_seen,
        },
        "alerts": alerts,
        "alerts_shown": alerts.len(),
        "comments": comments,
    }))
}

fn backoff(settings: &TriageSettings, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    settings
        .backoff_base
        .saturating_mul(factor)
        .min(settings.backoff_max)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
