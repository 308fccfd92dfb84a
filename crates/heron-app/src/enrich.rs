//! The metadata and enrich stages (DESIGN §1, steps 3 and 4) and the [`Enricher`] port through
//! which they reach a language model.
//!
//! Both stages run only for an alert that will be triaged: the first of its fingerprint with
//! no active ticket. An alert that attaches to a ticket costs no model call, and alerts of a
//! new fingerprint in concurrent batches share one enrichment ([`EnrichmentFlights`]).
//!
//! - Metadata: an alert whose title is the default (`Alert from <schema>`) or whose
//!   description is empty gets them from one plain model call; the source becomes `llm`. A
//!   failure keeps the defaults and is logged: it never fails the event.
//! - Enrich: `data.enrich.prompts` gives tasks; each runs as an agent task with the agent's
//!   tools, concurrently up to the enricher's bound; the results reach `data.triage` as
//!   `enrich: [{id, prompt, result}]`. Without a configured model the tasks are skipped
//!   (logged, counted as `skipped`) and triage gets an empty `enrich`.
//!
//! Failures (ADR 0006): a task whose model endpoint is unavailable (a transient error that
//! outlasted the adapter's own retries) fails the event's attempt, which the queue retries
//! with backoff, while attempts remain. On the last attempt, and for every other failure (a
//! budget, an answer that is not JSON, an unknown template), the task's result is
//! `{"error": "<why>"}` and triage goes on: an alert is never lost, nor held back for good,
//! because enrichment failed.

use crate::metrics::{ALERT_METADATA, ENRICH_TASKS};
use async_trait::async_trait;
use heron_agent::{Agent, Budgets, DailyTokens};
use heron_core::Fingerprint;
use heron_core::agent::{AgentRun, Tool};
use heron_core::alert::MetadataSource;
use heron_core::llm::ChatModel;
use heron_core::policy::{EnrichFormat, EnrichPrompt, EnrichResult, PolicyEngine, PolicyError};
use heron_core::ports::NewAlert;
use heron_core::{TicketId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// A title and description the model wrote; `None` where it wrote nothing usable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertText {
    pub title: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EnrichError {
    pub message: String,
    /// The model endpoint was unavailable: the same call may succeed later.
    pub transient: bool,
}

/// One task's answer and, when an agent ran, its run (recorded under the ticket the alert
/// opens or joins, once the event is committed).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    pub result: Result<serde_json::Value, EnrichError>,
    pub run: Option<AgentRun>,
}

/// The language-model side of the metadata and enrich stages.
#[async_trait]
pub trait Enricher: Send + Sync {
    /// A title and/or a description (as asked) for `alert`, the alert as the enrich policy
    /// sees it (untrusted data).
    async fn describe(
        &self,
        alert: &serde_json::Value,
        title: bool,
        description: bool,
    ) -> Result<AlertText, EnrichError>;

    /// Runs one task: `prompt` (the policy's instruction) over `alert` (untrusted data).
    /// `ticket_id` is the ticket the run is recorded under.
    async fn run_task(
        &self,
        ticket_id: TicketId,
        prompt: &str,
        format: EnrichFormat,
        alert: &serde_json::Value,
        now: Timestamp,
    ) -> TaskRun;
}

/// [`Enricher`] over [`heron_agent::Agent`]: the same model, tools and budgets as the triage
/// agent, and the same service-wide daily token allowance.
pub struct AgentEnricher {
    agent: Agent,
    /// Model work in flight in this process (tasks and descriptions, across all workers).
    permits: Semaphore,
}

impl std::fmt::Debug for AgentEnricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEnricher")
            .field("agent", &self.agent)
            .finish()
    }
}

impl AgentEnricher {
    /// What the binary must pass: the configured chat model, the read-only tools offered to
    /// the triage agent, the per-run budgets, the process's [`DailyTokens`] allowance (the
    /// same instance the triage agent charges, so enrichment counts against the day), and how
    /// many model calls of this stage may run at once in the process (at least 1).
    pub fn new(
        model: Arc<dyn ChatModel>,
        tools: Vec<Arc<dyn Tool>>,
        budgets: Budgets,
        daily: Arc<dyn DailyTokens>,
        max_concurrent: usize,
    ) -> Self {
        Self {
            agent: Agent::new(model, tools, budgets, daily),
            permits: Semaphore::new(max_concurrent.max(1)),
        }
    }
}

#[async_trait]
impl Enricher for AgentEnricher {
    async fn describe(
        &self,
        alert: &serde_json::Value,
        title: bool,
        description: bool,
    ) -> Result<AlertText, EnrichError> {
        let _permit = self.permits.acquire().await.map_err(|e| EnrichError {
            message: e.to_string(),
            transient: false,
        })?;
        let text = self
            .agent
            .describe_alert(alert, title, description)
            .await
            .map_err(|e| EnrichError {
                transient: e.is_transient(),
                message: e.to_string(),
            })?;
        Ok(AlertText {
            title: text.title,
            description: text.description,
        })
    }

    async fn run_task(
        &self,
        ticket_id: TicketId,
        prompt: &str,
        format: EnrichFormat,
        alert: &serde_json::Value,
        now: Timestamp,
    ) -> TaskRun {
        let _permit = match self.permits.acquire().await {
            Ok(permit) => permit,
            Err(e) => {
                return TaskRun {
                    result: Err(EnrichError {
                        message: e.to_string(),
                        transient: false,
                    }),
                    run: None,
                };
            }
        };
        let outcome = self
            .agent
            .run_task(ticket_id, prompt, format, alert, now)
            .await;
        TaskRun {
            result: outcome.answer.map_err(|e| EnrichError {
                transient: e.is_transient(),
                message: e.to_string(),
            }),
            run: Some(outcome.run),
        }
    }
}

/// What the stages made for one alert.
#[derive(Debug, Default)]
pub(crate) struct Enrichment {
    pub(crate) results: Vec<EnrichResult>,
    pub(crate) runs: Vec<AgentRun>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StageError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The model endpoint was unavailable and the event has attempts left.
    #[error("enrichment: {0}")]
    Unavailable(String),
}

/// Whether the metadata stage has anything to fill.
pub(crate) fn needs_metadata(alert: &NewAlert) -> bool {
    alert.title_source == MetadataSource::Default || alert.description.trim().is_empty()
}

/// Runs the metadata stage, then the enrich policy and its tasks, for an alert about to be
/// triaged. `ticket_id` is the ticket the alert would open (runs are recorded under it);
/// `may_retry` is false on the event's last attempt, when an unavailable model gives error
/// results instead of failing the attempt.
pub(crate) async fn enrich_alert(
    enricher: Option<&Arc<dyn Enricher>>,
    policies: &dyn PolicyEngine,
    alert: &mut NewAlert,
    ticket_id: TicketId,
    now: Timestamp,
    may_retry: bool,
) -> Result<Enrichment, StageError> {
    if let Some(enricher) = enricher
        && needs_metadata(alert)
    {
        fill_metadata(enricher.as_ref(), alert).await;
    }
    if !policies.has_enrich() {
        return Ok(Enrichment::default());
    }
    let input = crate::pipeline::enrich_input(alert);
    let tasks = policies.enrich(&input)?;
    if tasks.is_empty() {
        return Ok(Enrichment::default());
    }
    let Some(enricher) = enricher else {
        // Once per process at warning level: every alert of a storm would say the same.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(alert_id = %alert.id, tasks = tasks.len(), "enrich tasks skipped: no language model is configured");
        } else {
            tracing::warn!(alert_id = %alert.id, tasks = tasks.len(), "no language model is configured: enrich tasks are skipped and triage gets an empty `enrich` (counted as skipped in heron_enrich_tasks_total; said once)");
        }
        metrics::counter!(ENRICH_TASKS, "outcome" => "skipped").increment(tasks.len() as u64);
        return Ok(Enrichment::default());
    };

    let input = Arc::new(input);
    let mut prompts = Vec::with_capacity(tasks.len());
    let mut running = tokio::task::JoinSet::new();
    for (i, task) in tasks.iter().enumerate() {
        match policies.render_prompt(task, &input) {
            Ok(prompt) => {
                let enricher = Arc::clone(enricher);
                let input = Arc::clone(&input);
                let (text, format) = (prompt.clone(), task.format);
                running.spawn(async move {
                    let run = enricher
                        .run_task(ticket_id, &text, format, &input, now)
                        .await;
                    (i, run)
                });
                prompts.push((prompt, None));
            }
            // An unknown template fails its task, not the event (the name was computed at
            // evaluation time, so the load-time check could not see it).
            Err(e) => prompts.push((
                match &task.prompt {
                    EnrichPrompt::Template { name, .. } => format!("template {name}"),
                    EnrichPrompt::Inline(text) => text.clone(),
                },
                Some(TaskRun {
                    result: Err(EnrichError {
                        message: e.to_string(),
                        transient: false,
                    }),
                    run: None,
                }),
            )),
        }
    }
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((i, run)) => {
                if let Some(slot) = prompts.get_mut(i) {
                    slot.1 = Some(run);
                }
            }
            Err(e) => tracing::error!(alert_id = %alert.id, error = %e, "an enrich task panicked"),
        }
    }

    let unavailable = prompts.iter().find_map(|(_, run)| match run {
        Some(TaskRun { result: Err(e), .. }) if e.transient => Some(e.message.clone()),
        _ => None,
    });
    if let Some(why) = unavailable
        && may_retry
    {
        metrics::counter!(ENRICH_TASKS, "outcome" => "retry").increment(tasks.len() as u64);
        return Err(StageError::Unavailable(why));
    }

    let mut enrichment = Enrichment {
        results: Vec::with_capacity(tasks.len()),
        runs: Vec::new(),
    };
    for (task, (prompt, run)) in tasks.into_iter().zip(prompts) {
        let run = run.unwrap_or_else(|| TaskRun {
            result: Err(EnrichError {
                message: "the task did not finish".into(),
                transient: false,
            }),
            run: None,
        });
        let result = match run.result {
            Ok(value) => {
                metrics::counter!(ENRICH_TASKS, "outcome" => "ok").increment(1);
                value
            }
            Err(e) => {
                tracing::warn!(alert_id = %alert.id, task = %task.id, error = %e, "an enrich task failed; triage gets its error as the result");
                metrics::counter!(ENRICH_TASKS, "outcome" => "error").increment(1);
                serde_json::json!({ "error": e.message })
            }
        };
        enrichment.runs.extend(run.run);
        enrichment.results.push(EnrichResult {
            id: task.id,
            prompt,
            result,
        });
    }
    Ok(enrichment)
}

/// Asks the model for what the alert lacks; on failure the defaults stay.
async fn fill_metadata(enricher: &dyn Enricher, alert: &mut NewAlert) {
    let want_title = alert.title_source == MetadataSource::Default;
    let want_description = alert.description.trim().is_empty();
    let input = crate::pipeline::enrich_input(alert);
    match enricher
        .describe(&input, want_title, want_description)
        .await
    {
        Ok(text) => {
            if let Some(title) = text.title.filter(|_| want_title) {
                alert.title = title;
                alert.title_source = MetadataSource::Llm;
            }
            if let Some(description) = text.description.filter(|_| want_description) {
                alert.description = description;
                alert.description_source = MetadataSource::Llm;
            }
            metrics::counter!(ALERT_METADATA, "outcome" => "llm").increment(1);
        }
        Err(e) => {
            tracing::warn!(alert_id = %alert.id, error = %e, "the model could not describe the alert; keeping the default title and description");
            metrics::counter!(ALERT_METADATA, "outcome" => "failed").increment(1);
        }
    }
}

/// How long a finished enrichment is reused for later alerts of its fingerprint: long enough
/// for the first alert's event to commit its ticket (after which alerts attach and need no
/// enrichment), short enough that a recurring fingerprint is looked at afresh.
pub(crate) const SHARED_ENRICHMENT_TTL: Duration = Duration::from_secs(600);

/// Finished flights kept before expired ones are swept.
const MAX_FLIGHTS: usize = 4_096;

/// What one alert's enrichment gives the other alerts of its fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct SharedEnrichment {
    title: Option<String>,
    description: Option<String>,
    results: Vec<EnrichResult>,
}

impl SharedEnrichment {
    fn of(alert: &NewAlert, enrichment: &Enrichment) -> Self {
        Self {
            title: (alert.title_source == MetadataSource::Llm).then(|| alert.title.clone()),
            description: (alert.description_source == MetadataSource::Llm)
                .then(|| alert.description.clone()),
            results: enrichment.results.clone(),
        }
    }

    /// The first alert's model-written title and description where this one lacks them,
    /// and its tasks' results; no runs (they are the first alert's).
    fn apply(&self, alert: &mut NewAlert) -> Enrichment {
        if alert.title_source == MetadataSource::Default
            && let Some(title) = &self.title
        {
            alert.title = title.clone();
            alert.title_source = MetadataSource::Llm;
        }
        if alert.description.trim().is_empty()
            && let Some(description) = &self.description
        {
            alert.description = description.clone();
            alert.description_source = MetadataSource::Llm;
        }
        Enrichment {
            results: self.results.clone(),
            runs: Vec::new(),
        }
    }
}

/// `None` while the first alert is being enriched; then its outcome, or `Err(why)` when the
/// model was unavailable.
type FlightOutcome = Option<Result<SharedEnrichment, String>>;

struct Flight {
    started: Instant,
    outcome: watch::Receiver<FlightOutcome>,
}

impl Flight {
    /// Still running with its first alert's worker alive, or finished well and fresh.
    fn usable(&self) -> bool {
        match &*self.outcome.borrow() {
            Some(Ok(_)) => self.started.elapsed() < SHARED_ENRICHMENT_TTL,
            Some(Err(_)) => false,
            None => self.outcome.has_changed().is_ok(),
        }
    }
}

/// One enrichment per fingerprint at a time in this process.
///
/// Concurrent batches each see a new fingerprint as having no ticket until the first of them
/// commits one; without this, every batch of a storm leased in that window would pay for the
/// same model calls. The first alert of a fingerprint enriches; the others wait for it and
/// take its results (and its model-written title and description), and so does any alert of
/// the fingerprint for [`SHARED_ENRICHMENT_TTL`] after. Waiting cannot deadlock: an
/// enrichment never waits on another fingerprint. An unavailable model fails the waiters'
/// attempts too (the queue retries them); a policy error, or a first alert that stopped
/// without an outcome, lets each waiter enrich on its own.
#[derive(Default)]
pub(crate) struct EnrichmentFlights {
    flights: Mutex<HashMap<Fingerprint, Flight>>,
}

impl std::fmt::Debug for EnrichmentFlights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrichmentFlights").finish_non_exhaustive()
    }
}

enum Role {
    Leader(watch::Sender<FlightOutcome>),
    Follower(watch::Receiver<FlightOutcome>),
}

impl EnrichmentFlights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Fingerprint, Flight>> {
        // Inserts and removals cannot be left half done.
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn join(&self, fingerprint: &Fingerprint) -> Role {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(fingerprint)
            && flight.usable()
        {
            return Role::Follower(flight.outcome.clone());
        }
        if flights.len() >= MAX_FLIGHTS {
            flights.retain(|_, flight| flight.usable());
        }
        let (sender, outcome) = watch::channel(None);
        flights.insert(
            fingerprint.clone(),
            Flight {
                started: Instant::now(),
                outcome,
            },
        );
        Role::Leader(sender)
    }

    fn forget(&self, fingerprint: &Fingerprint) {
        self.lock().remove(fingerprint);
    }

    /// [`enrich_alert`], once per fingerprint at a time (see the type's documentation). An
    /// event on its last attempt enriches on its own: it must not fail for an outage.
    pub(crate) async fn enrich(
        &self,
        enricher: Option<&Arc<dyn Enricher>>,
        policies: &dyn PolicyEngine,
        alert: &mut NewAlert,
        ticket_id: TicketId,
        now: Timestamp,
        may_retry: bool,
    ) -> Result<Enrichment, StageError> {
        if !may_retry {
            return enrich_alert(enricher, policies, alert, ticket_id, now, may_retry).await;
        }
        let fingerprint = alert.fingerprint.clone();
        match self.join(&fingerprint) {
            Role::Leader(sender) => {
                let outcome =
                    enrich_alert(enricher, policies, alert, ticket_id, now, may_retry).await;
                match &outcome {
                    Ok(enrichment) => {
                        let _ = sender.send(Some(Ok(SharedEnrichment::of(alert, enrichment))));
                    }
                    Err(StageError::Unavailable(why)) => {
                        let _ = sender.send(Some(Err(why.clone())));
                        self.forget(&fingerprint);
                    }
                    // Dropping the sender lets the waiters enrich on their own.
                    Err(StageError::Policy(_)) => self.forget(&fingerprint),
                }
                outcome
            }
            Role::Follower(mut outcome) => {
                let shared = outcome
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|o| o.clone());
                match shared {
                    Some(Ok(shared)) => {
                        metrics::counter!(ENRICH_TASKS, "outcome" => "shared")
                            .increment(shared.results.len() as u64);
                        Ok(shared.apply(alert))
                    }
                    Some(Err(why)) => Err(StageError::Unavailable(why)),
                    None => {
                        enrich_alert(enricher, policies, alert, ticket_id, now, may_retry).await
                    }
                }
            }
        }
    }
}
