//! The event worker: leases due events and runs the pipeline on each.
//!
//! A leased batch is planned event by event (policies: CPU), then completed with one
//! `complete_events` call: one transaction and one commit for the batch, one update per
//! touched ticket. An event whose plan went stale meanwhile is re-planned and completed on
//! its own.
//!
//! Per alert: fingerprint → if an active ticket with that fingerprint was seen within the
//! dedup window, attach (no triage: a storm of one fingerprint costs one triage, and no model
//! call) → otherwise the metadata and enrich stages ([`crate::enrich`]) and `data.triage`
//! decides alert (open a ticket), notice or discard.
//!
//! Without an [`Enricher`] and without a `data.enrich` package, an alert goes straight to
//! triage: no await, no allocation more than before those stages existed. With them, model
//! work can take minutes; the lease heartbeat below covers it, as it covers the whole batch.
//! The runs of enrich tasks are stored after the event is committed, under the ticket the
//! alert opened or joined (an alert published as a notice or discarded has no ticket, and its
//! runs are only logged).
//!
//! Invariants:
//! - every time handed to the queue comes from the store's clock ([`EventQueue::now`], read
//!   once per batch and carried forward on this process's monotonic clock), never from the
//!   host's wall clock, so workers on hosts whose clocks disagree agree on leases;
//! - alerts are dated by their event's arrival (`received_at`), and the dedup window is
//!   measured from it: a backlog processed late groups alerts as they arrived;
//! - a lease is extended (every third of its length) for as long as its batch is being
//!   worked on, so a slow batch is not taken over while it is still making progress;
//! - a failed batch (nothing stored) is never blamed on all its events: unless the database
//!   is unavailable, its events are completed one by one so that only an event whose data
//!   the database rejects fails, and that failure is permanent (`Invalid`).
//!
//! [`EventQueue::now`]: heron_core::ports::EventQueue::now

use crate::PolicyHandle;
use crate::enrich::{Enricher, EnrichmentFlights, StageError};
use crate::metrics::{
    ALERTS, EVENTS_FAILED, EVENTS_IGNORED, EVENTS_PROCESSED, EVENTS_RETRIED, STAGE_SECONDS,
    TICKETS_OPENED,
};
use crate::pipeline;
use heron_core::agent::AgentRun;
use heron_core::policy::{PolicyEngine, PolicyError};
use heron_core::ports::{
    AlertBinding, Disposition, Lease, LeasedEvent, PlannedAlert, Store, StoreError,
};
use heron_core::ticket::NewTicket;
use heron_core::{Event, Fingerprint, TicketId, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Concurrent processing loops in this process.
    pub concurrency: usize,
    /// Events leased per round trip.
    pub batch_size: usize,
    /// How long a lease holds before another worker may take the event over.
    pub lease: Duration,
    /// How long an idle loop waits before polling again (in-process intake wakes it sooner).
    pub poll_interval: Duration,
    /// Attempts (including the first) before an event is marked `failed`.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Alerts join an active ticket with their fingerprint seen within this window.
    pub dedup_window: Duration,
    /// Pause model work while the queue is deep ([`crate::backlog`]); `None`: never.
    pub backlog: Option<crate::BacklogLimits>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            batch_size: 64,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(250),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            dedup_window: Duration::from_secs(24 * 3600),
            backlog: None,
        }
    }
}

#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Store>,
    policies: PolicyHandle,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    /// The model side of the metadata and enrich stages; `None` when no model is configured.
    enricher: Option<Arc<dyn Enricher>>,
    /// Shared by every loop of this worker: one enrichment per fingerprint at a time.
    flights: Arc<EnrichmentFlights>,
    /// Pauses model work while the queue is deep.
    breaker: Option<Arc<crate::BacklogBreaker>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.settings)
            .field("enricher", &self.enricher.is_some())
            .finish()
    }
}

/// Why planning an event failed.
#[derive(Debug, thiserror::Error)]
enum PlanError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("stored body is not a JSON object: {0}")]
    Body(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model was unavailable for an enrich task; worth retrying later.
    #[error("{0}")]
    Enrich(String),
    /// An alert would open a ticket with the model's help while the backlog breaker is
    /// tripped: the event waits (see [`crate::backlog`]).
    #[error("{WAITING_NOTE}")]
    Waiting,
}

/// Why a `waiting` event waits, shown where its error would be.
const WAITING_NOTE: &str = "waiting: the backlog breaker is tripped and this event would open a ticket with the model's help";

impl From<StageError> for PlanError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Policy(e) => PlanError::Policy(e),
            StageError::Unavailable(why) => PlanError::Enrich(why),
        }
    }
}

/// An event's plan: its alerts, and the agent runs of their enrich tasks (by alert index),
/// stored once the alerts are.
#[derive(Debug, Default)]
struct Plan {
    alerts: Vec<PlannedAlert>,
    runs: Vec<(usize, AgentRun)>,
}

/// Re-plans allowed when the store reports that the world changed under the plan (a ticket
/// was resolved between lookup and commit).
const MAX_REPLANS: usize = 3;

impl Worker {
    /// `enricher` is the model side of the metadata and enrich stages (`None`: no model is
    /// configured; enrich tasks are then skipped, see [`crate::enrich`]).
    pub fn new(
        store: Arc<dyn Store>,
        policies: PolicyHandle,
        settings: WorkerSettings,
        wake: Arc<Notify>,
        enricher: Option<Arc<dyn Enricher>>,
    ) -> Self {
        let breaker = settings
            .backlog
            .map(|limits| Arc::new(crate::BacklogBreaker::new(limits, store.clone())));
        Self {
            store,
            policies,
            settings,
            wake,
            enricher,
            flights: Arc::default(),
            breaker,
        }
    }

    /// The backlog breaker, to share with the triage worker of the same process.
    pub fn breaker(&self) -> Option<Arc<crate::BacklogBreaker>> {
        self.breaker.clone()
    }

    async fn model_paused(&self) -> bool {
        match &self.breaker {
            Some(breaker) => breaker.model_paused().await,
            None => false,
        }
    }

    /// Runs `concurrency` loops until `shutdown` turns true; in-flight events finish, leased
    /// but unstarted ones are released.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        if self.breaker.is_none() {
            // Held back by a breaker this process no longer has: nothing else resumes them.
            crate::backlog::resume_waiting(self.store.as_ref(), u64::MAX).await;
        }
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.settings.concurrency.max(1) {
            let worker = self.clone();
            let shutdown = shutdown.clone();
            loops.spawn(async move { worker.run_loop(shutdown).await });
        }
        while loops.join_next().await.is_some() {}
    }

    async fn run_loop(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let handled = match self.run_batch(Some(&shutdown)).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "leasing events failed; retrying");
                    0
                }
            };
            if handled < self.settings.batch_size {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Leases one batch and processes it; returns how many events were leased. Tests drive
    /// the worker with this.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        self.run_batch(None).await
    }

    async fn run_batch(
        &self,
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> Result<usize, StoreError> {
        // Read here too, not only when an alert needs the model: an idle queue is when the
        // breaker recovers and lets waiting events back in (a reading is cached, so cheap).
        self.model_paused().await;
        let clock = StoreClock::read(self.store.as_ref()).await?;
        let now = clock.now();
        let leased = self
            .store
            .lease_events(
                self.settings.batch_size,
                now,
                now + to_chrono(self.settings.lease),
                self.settings.max_attempts,
            )
            .await?;
        let count = leased.len();
        if shutdown.is_some_and(|s| *s.borrow()) {
            for item in &leased {
                self.release(item).await;
            }
            return Ok(count);
        }
        if !leased.is_empty() {
            let _heartbeat = self.heartbeat(&leased, clock).await;
            let report = self.process_batch(leased, clock).await;
            tracing::debug!(
                leased = count,
                processed = report.processed,
                ignored = report.ignored,
                replanned = report.replanned,
                retrying = report.retrying,
                failed = report.failed,
                lost = report.lost,
                waiting = report.waiting,
                elapsed_ms = clock.read_at.elapsed().as_millis() as u64,
                "batch done"
            );
        }
        Ok(count)
    }

    async fn release(&self, item: &LeasedEvent) {
        if let Err(e) = self.store.release_event(&item.lease).await {
            tracing::warn!(event_id = %item.event.id, error = %e, "could not release lease; it will expire");
        }
    }

    /// Keeps the batch's leases from expiring while it is worked on: every third of the lease
    /// length, each lease is extended to a full lease from then. Stops when dropped.
    ///
    /// Returns once the task has started: a task spawned from a runtime thread waits in that
    /// thread's own slot, which other threads do not steal from, and planning is about to
    /// keep this thread busy evaluating policies. Once started, its timer wakes it on
    /// whichever thread is free.
    async fn heartbeat(&self, leased: &[LeasedEvent], clock: StoreClock) -> Heartbeat {
        let store = Arc::clone(&self.store);
        let leases: Vec<Lease> = leased.iter().map(|l| l.lease.clone()).collect();
        let lease = self.settings.lease;
        let every = (lease / 3).max(Duration::from_millis(10));
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = started.send(());
            let mut next = tokio::time::Instant::now() + every;
            loop {
                tokio::time::sleep_until(next).await;
                next += every;
                let until = clock.now() + to_chrono(lease);
                for l in &leases {
                    match store.extend_lease(l, until).await {
                        Ok(()) => {}
                        // Completed, failed, or taken over: nothing left to keep alive.
                        Err(StoreError::LeaseLost(_)) => {}
                        Err(e) => {
                            tracing::warn!(event_id = %l.event_id, error = %e, "could not extend a lease; it may expire and the event run again");
                        }
                    }
                }
            }
        });
        // An error means the task is gone already (the runtime is shutting down).
        let _ = running.await;
        Heartbeat(task)
    }

    /// Plans every event of the batch (one dedup lookup per fingerprint), then completes the
    /// planned ones with one `complete_events` call: one transaction, one commit, and one
    /// update per touched ticket, however many alerts of a storm the batch holds.
    async fn process_batch(&self, leased: Vec<LeasedEvent>, clock: StoreClock) -> BatchReport {
        let started = Instant::now();
        let mut report = BatchReport::default();
        let policies = self.policies.current();
        let mut lookups = DedupLookups::default();
        let mut items = Vec::with_capacity(leased.len());
        let mut batch = Vec::with_capacity(leased.len());
        let mut runs = Vec::with_capacity(leased.len());
        for item in leased {
            match self
                .plan(policies.as_ref(), &item.event, clock, &mut lookups)
                .await
            {
                Ok(plan) => {
                    batch.push((item.lease.clone(), plan.alerts));
                    runs.push(plan.runs);
                    items.push(item);
                }
                Err(e) => report.count(self.fail(&item, e, clock).await),
            }
        }
        if items.is_empty() {
            return report;
        }
        let store_started = Instant::now();
        let result = self.store.complete_events(batch, clock.now()).await;
        metrics::histogram!(STAGE_SECONDS, "stage" => "commit").record(store_started.elapsed());
        let results = match result {
            Ok(results) if results.len() == items.len() => results,
            Ok(results) => {
                let e = StoreError::Backend(format!(
                    "the store answered {} results for a batch of {}",
                    results.len(),
                    items.len()
                ));
                return self.one_by_one(items, e, clock, started, report).await;
            }
            Err(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(events = %ids(&items), error = %e, "completing a batch failed; its events will be retried");
                for item in &items {
                    report.count(self.fail(item, PlanError::Store(e.clone()), clock).await);
                }
                return report;
            }
            Err(e) => return self.one_by_one(items, e, clock, started, report).await,
        };
        let mut attached = std::collections::BTreeSet::new();
        for ((item, result), runs) in items.into_iter().zip(results).zip(runs) {
            let outcome = match result {
                Ok(bindings) => {
                    self.record_completion(&item.event, &bindings);
                    attached.extend(attached_tickets(&bindings));
                    if !runs.is_empty() {
                        self.store_runs(&item.event, runs, &bindings).await;
                    }
                    metrics::histogram!(STAGE_SECONDS, "stage" => "process")
                        .record(started.elapsed());
                    Outcome::Completed(bindings.is_empty())
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(event_id = %item.event.id, %why, "plan went stale; planning again");
                    report.replanned += 1;
                    self.process(item, 1, clock, started).await
                }
                Err(StoreError::LeaseLost(_)) => lease_lost(&item.event),
                Err(e) => self.fail(&item, PlanError::Store(e), clock).await,
            };
            report.count(outcome);
        }
        self.sync_slack(attached).await;
        report
    }

    /// The batch failed as a whole (nothing was stored) for a reason that may be one event's
    /// own (a value the database cannot hold): each event is planned and completed on its
    /// own, so that only such an event fails.
    async fn one_by_one(
        &self,
        items: Vec<LeasedEvent>,
        error: StoreError,
        clock: StoreClock,
        started: Instant,
        mut report: BatchReport,
    ) -> BatchReport {
        tracing::warn!(events = %ids(&items), error = %error, "completing a batch failed; completing its events one by one");
        for item in items {
            report.count(self.process(item, 0, clock, started).await);
        }
        report
    }

    /// Plans and completes one event on its own, re-planning while the store reports a stale
    /// plan (`replans` of the allowed [`MAX_REPLANS`] are already spent).
    async fn process(
        &self,
        item: LeasedEvent,
        mut replans: usize,
        clock: StoreClock,
        started: Instant,
    ) -> Outcome {
        let event = &item.event;
        let policies = self.policies.current();
        loop {
            // No shared lookups: a re-plan must see the store as it is now.
            let plan = match self
                .plan(
                    policies.as_ref(),
                    event,
                    clock,
                    &mut DedupLookups::default(),
                )
                .await
            {
                Ok(plan) => plan,
                Err(e) => return self.fail(&item, e, clock).await,
            };
            let store_started = Instant::now();
            let result = self
                .store
                .complete_event(&item.lease, plan.alerts, clock.now())
                .await;
            metrics::histogram!(STAGE_SECONDS, "stage" => "commit").record(store_started.elapsed());
            match result {
                Ok(bindings) => {
                    self.record_completion(event, &bindings);
                    self.sync_slack(attached_tickets(&bindings).collect()).await;
                    if !plan.runs.is_empty() {
                        self.store_runs(event, plan.runs, &bindings).await;
                    }
                    metrics::histogram!(STAGE_SECONDS, "stage" => "process")
                        .record(started.elapsed());
                    return Outcome::Completed(bindings.is_empty());
                }
                Err(StoreError::Conflict(why)) if replans < MAX_REPLANS => {
                    replans += 1;
                    tracing::debug!(event_id = %event.id, %why, "plan went stale; planning again");
                }
                Err(StoreError::LeaseLost(_)) => return lease_lost(event),
                Err(e) => return self.fail(&item, PlanError::Store(e), clock).await,
            }
        }
    }

    /// Stores enrich runs under the ticket their alert was bound to. The event is committed
    /// already: a run that cannot be stored is logged, never a reason to run the event again.
    async fn store_runs(
        &self,
        event: &Event,
        runs: Vec<(usize, AgentRun)>,
        bindings: &[AlertBinding],
    ) {
        for (index, mut run) in runs {
            match bindings.get(index) {
                Some(AlertBinding::Opened(ticket_id) | AlertBinding::Attached(ticket_id)) => {
                    run.ticket_id = *ticket_id;
                    if let Err(e) = self.store.save_agent_run(&run).await {
                        tracing::warn!(event_id = %event.id, run_id = %run.id, error = %e, "could not store an enrich run");
                    }
                }
                _ => {
                    tracing::info!(event_id = %event.id, run_id = %run.id, status = %run.status, tokens = run.usage.total_tokens, "enrich run not stored: its alert opened no ticket");
                }
            }
        }
    }

    /// Alerts attached to a ticket change its alert count: its Slack message catches up (one
    /// request per ticket per batch; a no-op without Slack).
    async fn sync_slack(&self, tickets: std::collections::BTreeSet<heron_core::TicketId>) {
        let Ok(now) = self.store.now().await else {
            return;
        };
        for ticket in tickets {
            if let Err(e) = self
                .store
                .request_slack_sync(heron_core::slack::SlackSubject::Ticket(ticket), now)
                .await
            {
                tracing::debug!(ticket_id = %ticket, error = %e, "could not request a Slack sync");
            }
        }
    }

    fn record_completion(&self, event: &Event, bindings: &[AlertBinding]) {
        let schema = crate::metrics::schema_label(&event.schema);
        if bindings.is_empty() {
            metrics::counter!(EVENTS_IGNORED, "schema" => schema).increment(1);
            return;
        }
        metrics::counter!(EVENTS_PROCESSED, "schema" => schema.clone()).increment(1);
        for binding in bindings {
            let disposition = match binding {
                AlertBinding::Attached(_) => "attached",
                AlertBinding::Opened(_) => {
                    metrics::counter!(TICKETS_OPENED, "schema" => schema.clone()).increment(1);
                    "opened"
                }
                AlertBinding::Noticed(_) => "notice",
                AlertBinding::Discarded => "discarded",
            };
            metrics::counter!(ALERTS, "schema" => schema.clone(), "disposition" => disposition)
                .increment(1);
        }
    }

    /// Records a failed attempt: retried with backoff unless the error is permanent (a policy
    /// error, a body that is not an object, data the database rejects) or the attempts are
    /// spent.
    async fn fail(&self, item: &LeasedEvent, error: PlanError, clock: StoreClock) -> Outcome {
        let event = &item.event;
        if matches!(error, PlanError::Waiting) {
            return match self.store.hold_event(&item.lease, WAITING_NOTE).await {
                Ok(()) => {
                    tracing::debug!(event_id = %event.id, "event waits for the backlog to clear");
                    Outcome::Waiting
                }
                Err(StoreError::LeaseLost(_)) => lease_lost(event),
                Err(e) => {
                    tracing::warn!(event_id = %event.id, error = %e, "could not hold the event back; its lease will expire and it will run again");
                    Outcome::Retrying
                }
            };
        }
        // `Enrich` is transient by construction: it is only raised while attempts remain.
        let permanent = matches!(
            error,
            PlanError::Policy(_) | PlanError::Body(_) | PlanError::Store(StoreError::Invalid(_))
        );
        let retry_at = (!permanent && event.attempts < self.settings.max_attempts)
            .then(|| clock.now() + to_chrono(self.backoff(event.attempts)));
        // The message is stored as text: a U+0000 quoted from the data must not poison it too.
        let message = error.to_string().replace('\0', "\\u0000");
        match retry_at {
            Some(at) => {
                tracing::warn!(event_id = %event.id, attempt = event.attempts, retry_at = %at, error = %message, "event failed; will retry");
                metrics::counter!(EVENTS_RETRIED).increment(1);
            }
            None => {
                tracing::error!(event_id = %event.id, schema = %event.schema, attempt = event.attempts, error = %message, "event failed");
                metrics::counter!(EVENTS_FAILED, "schema" => crate::metrics::schema_label(&event.schema)).increment(1);
            }
        }
        if let Err(e) = self.store.fail_event(&item.lease, &message, retry_at).await {
            tracing::error!(event_id = %event.id, error = %e, "could not record the failure; the lease will expire and the event will run again");
        }
        if retry_at.is_some() {
            Outcome::Retrying
        } else {
            Outcome::Failed
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }

    /// Plans one event's alerts. They are dated by the event's arrival, and the dedup window
    /// reaches back from it. `lookups` carries what earlier events of the same batch learnt
    /// about fingerprints; the store re-checks every `Attach` when completing, so a stale
    /// answer costs a re-plan, never a wrong binding.
    async fn plan(
        &self,
        policies: &dyn PolicyEngine,
        event: &Event,
        clock: StoreClock,
        lookups: &mut DedupLookups,
    ) -> Result<Plan, PlanError> {
        let body: serde_json::Value =
            serde_json::from_str(&event.body).map_err(|e| PlanError::Body(e.to_string()))?;
        if !body.is_object() {
            return Err(PlanError::Body("not an object".into()));
        }
        if event.source == heron_core::EventSource::System {
            return Ok(system_notice(event, &body));
        }
        let enricher = self.enricher.as_ref();
        let ingest_started = Instant::now();
        let output = policies.ingest(&event.schema, &body)?;
        metrics::histogram!(STAGE_SECONDS, "stage" => "ingest").record(ingest_started.elapsed());

        let seen = event.received_at;
        let seen_since = seen - to_chrono(self.settings.dedup_window);
        let mut planned = Vec::with_capacity(output.alerts.len());
        let mut runs = Vec::new();
        for mut alert in
            pipeline::alerts_from_drafts(event.id, &event.schema, output.alerts, &body, seen)
        {
            let cached = lookups.get(&alert.fingerprint, seen_since, seen);
            let known = match cached {
                Some(known) => known,
                None => {
                    let target = self
                        .store
                        .find_dedup_ticket(&alert.fingerprint, seen_since)
                        .await?;
                    let known = match target {
                        Some(ticket_id) => Known::Target {
                            ticket_id,
                            seen: seen_since.max(seen),
                        },
                        None => Known::NoTarget { since: seen_since },
                    };
                    lookups.0.insert(alert.fingerprint.clone(), known.clone());
                    known
                }
            };
            let disposition = match known {
                Known::Target { ticket_id, .. } => Disposition::Attach {
                    ticket_id,
                    seen_since,
                },
                // An earlier alert of this batch opens the fingerprint's ticket: this one
                // joins it (a second `Open` attaches to the first) without a triage of its
                // own, as it would had that ticket been committed already.
                Known::Opening { ticket, .. } => Disposition::Open {
                    ticket: NewTicket {
                        id: TicketId::new(),
                        ..ticket
                    },
                    seen_since,
                },
                Known::NoTarget { .. } => {
                    // The model's work waits while the backlog is deep; so does the event.
                    if enricher.is_some() && self.model_paused().await {
                        return Err(PlanError::Waiting);
                    }
                    // The fast path (no model, no enrich package) takes no await at all.
                    let (enrich, ticket_id) = if enricher.is_none() && !policies.has_enrich() {
                        (Vec::new(), None)
                    } else {
                        let ticket_id = TicketId::new();
                        let enrich_started = Instant::now();
                        let may_retry = event.attempts < self.settings.max_attempts;
                        let enrichment = self
                            .flights
                            .enrich(
                                enricher,
                                policies,
                                &mut alert,
                                ticket_id,
                                clock.now(),
                                may_retry,
                            )
                            .await?;
                        metrics::histogram!(STAGE_SECONDS, "stage" => "enrich")
                            .record(enrich_started.elapsed());
                        let index = planned.len();
                        runs.extend(enrichment.runs.into_iter().map(|r| (index, r)));
                        (enrichment.results, Some(ticket_id))
                    };
                    let triage_started = Instant::now();
                    let mut disposition =
                        pipeline::triage_alert(policies, &mut alert, seen_since, enrich)?;
                    metrics::histogram!(STAGE_SECONDS, "stage" => "triage")
                        .record(triage_started.elapsed());
                    if let Disposition::Open { ticket, .. } = &mut disposition {
                        // The enrich runs were recorded under this id.
                        if let Some(id) = ticket_id {
                            ticket.id = id;
                        }
                        // The ticket is opened now, whenever its first alert arrived.
                        ticket.created_at = clock.now();
                        lookups.0.insert(
                            alert.fingerprint.clone(),
                            Known::Opening {
                                ticket: ticket.clone(),
                                seen,
                            },
                        );
                    }
                    disposition
                }
            };
            planned.push(PlannedAlert { alert, disposition });
        }
        Ok(Plan {
            alerts: planned,
            runs,
        })
    }
}

/// The store's clock as of one read, carried forward on this process's monotonic clock: one
/// round trip per batch, and no dependence on the host's wall clock.
#[derive(Debug, Clone, Copy)]
struct StoreClock {
    base: Timestamp,
    read_at: Instant,
}

impl StoreClock {
    async fn read(store: &dyn Store) -> Result<Self, StoreError> {
        let base = store.now().await?;
        Ok(Self {
            base,
            read_at: Instant::now(),
        })
    }

    fn now(&self) -> Timestamp {
        self.base + to_chrono(self.read_at.elapsed())
    }
}

/// Aborts its task when dropped, however the batch ends.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Committed; `true` when the ingest policy made no alert (`ignored`).
    Completed(bool),
    Retrying,
    Failed,
    Lost,
    /// Held back by the backlog breaker.
    Waiting,
}

/// Counts of a batch's outcomes, for the log.
#[derive(Debug, Default)]
struct BatchReport {
    processed: usize,
    ignored: usize,
    replanned: usize,
    retrying: usize,
    failed: usize,
    lost: usize,
    waiting: usize,
}

impl BatchReport {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Completed(false) => self.processed += 1,
            Outcome::Completed(true) => self.ignored += 1,
            Outcome::Retrying => self.retrying += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Lost => self.lost += 1,
            Outcome::Waiting => self.waiting += 1,
        }
    }
}

fn lease_lost(event: &Event) -> Outcome {
    tracing::warn!(event_id = %event.id, "lease lost mid-processing; another worker owns the event now");
    Outcome::Lost
}

/// The batch's event ids, for a log line.
fn ids(items: &[LeasedEvent]) -> String {
    items
        .iter()
        .map(|i| i.event.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// What planning learnt about fingerprints, shared by the events of one batch: a storm batch
/// costs one dedup query and at most one triage per fingerprint. Each event looks back from
/// its own arrival, so an answer is reused only while it holds for the event's window.
#[derive(Debug, Default)]
struct DedupLookups(HashMap<Fingerprint, Known>);

#[derive(Debug, Clone)]
enum Known {
    /// The store has no target for the fingerprint seen since `since`.
    NoTarget { since: Timestamp },
    /// `ticket_id` is the target, seen at `seen` or later (the lookup's `seen_since`, or the
    /// arrival of an alert of this batch planned onto it).
    Target {
        ticket_id: TicketId,
        seen: Timestamp,
    },
    /// No target in the store, and an alert of this batch that arrived at `seen` (or a later
    /// one planned onto it) opens `ticket`.
    Opening { ticket: NewTicket, seen: Timestamp },
}

impl DedupLookups {
    /// What is known of `fingerprint` for an alert that arrived at `seen` and looks back to
    /// `seen_since`, counting the alert in; `None` when the store must be asked.
    fn get(
        &mut self,
        fingerprint: &Fingerprint,
        seen_since: Timestamp,
        seen: Timestamp,
    ) -> Option<Known> {
        let known = self.0.get_mut(fingerprint)?;
        match known {
            Known::Target { seen: last, .. } | Known::Opening { seen: last, .. }
                if *last >= seen_since =>
            {
                *last = (*last).max(seen);
                Some(known.clone())
            }
            // No target seen since `since` means none seen since any later time either.
            Known::NoTarget { since } if seen_since >= *since => Some(known.clone()),
            _ => None,
        }
    }
}

/// The plan of an event Heron made itself: one notice with its title and description.
fn system_notice(event: &Event, body: &serde_json::Value) -> Plan {
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let draft = heron_core::AlertDraft {
        title: text("title").or_else(|| Some("Heron".into())),
        description: text("description"),
        attributes: Vec::new(),
        tags: vec!["heron".into()],
        channel: None,
        severity: Some(heron_core::Severity::Medium),
        fingerprint: Some(serde_json::json!(event.id.to_string())),
    };
    let alerts = pipeline::alerts_from_drafts(
        event.id,
        &event.schema,
        vec![draft],
        body,
        event.received_at,
    )
    .into_iter()
    .map(|alert| PlannedAlert {
        disposition: Disposition::Notice {
            notice_id: heron_core::NoticeId::new(),
            title: alert.title.clone(),
            channel: alert.channel.clone(),
        },
        alert,
    })
    .collect();
    Plan {
        alerts,
        runs: Vec::new(),
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn attached_tickets(bindings: &[AlertBinding]) -> impl Iterator<Item = heron_core::TicketId> + '_ {
    bindings.iter().filter_map(|b| match b {
        AlertBinding::Attached(id) => Some(*id),
        _ => None,
    })
}
