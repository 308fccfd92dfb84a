//! The event worker: leases due events and runs the pipeline on each.
//!
//! A leased batch is planned event by event (policies: CPU), then completed with one
//! `complete_events` call: one transaction and one commit for the batch, one update per
//! touched ticket. An event whose plan went stale meanwhile is re-planned and completed on
//! its own.
//!
//! Per alert: fingerprint → if an active ticket with that fingerprint was seen within the
//! dedup window, attach (no triage: a storm of one fingerprint costs one triage) → otherwise
//! `data.triage` decides alert (open a ticket), notice or discard.

use crate::PolicyHandle;
use crate::metrics::{
    ALERTS, EVENTS_FAILED, EVENTS_IGNORED, EVENTS_PROCESSED, EVENTS_RETRIED, STAGE_SECONDS,
    TICKETS_OPENED,
};
use crate::pipeline;
use chrono::Utc;
use heron_core::policy::{PolicyEngine, PolicyError};
use heron_core::ports::{AlertBinding, Disposition, LeasedEvent, PlannedAlert, Store, StoreError};
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
        }
    }
}

#[derive(Clone)]
pub struct Worker {
    store: Arc<dyn Store>,
    policies: PolicyHandle,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.settings)
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
}

/// Re-plans allowed when the store reports that the world changed under the plan (a ticket
/// was resolved between lookup and commit).
const MAX_REPLANS: usize = 3;

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        policies: PolicyHandle,
        settings: WorkerSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            policies,
            settings,
            wake,
        }
    }

    /// Runs `concurrency` loops until `shutdown` turns true; in-flight events finish, leased
    /// but unstarted ones are released.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
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
        let now = Utc::now();
        let lease_until = now + to_chrono(self.settings.lease);
        let leased = self
            .store
            .lease_events(self.settings.batch_size, now, lease_until)
            .await?;
        let count = leased.len();
        if shutdown.is_some_and(|s| *s.borrow()) {
            for item in &leased {
                self.release(item).await;
            }
            return Ok(count);
        }
        if !leased.is_empty() {
            self.process_batch(leased).await;
        }
        Ok(count)
    }

    async fn release(&self, item: &LeasedEvent) {
        if let Err(e) = self.store.release_event(&item.lease).await {
            tracing::warn!(event_id = %item.event.id, error = %e, "could not release lease; it will expire");
        }
    }

    /// Plans every event of the batch (one dedup lookup per fingerprint), then completes the
    /// planned ones with one `complete_events` call: one transaction, one commit, and one
    /// update per touched ticket, however many alerts of a storm the batch holds.
    async fn process_batch(&self, leased: Vec<LeasedEvent>) {
        let started = Instant::now();
        let policies = self.policies.current();
        let now = Utc::now();
        let mut lookups = DedupLookups::default();
        let mut items = Vec::with_capacity(leased.len());
        let mut batch = Vec::with_capacity(leased.len());
        for item in leased {
            match self
                .plan(policies.as_ref(), &item.event, now, &mut lookups)
                .await
            {
                Ok(plan) => {
                    batch.push((item.lease.clone(), plan));
                    items.push(item);
                }
                Err(e) => self.fail(&item, e).await,
            }
        }
        if items.is_empty() {
            return;
        }
        let store_started = Instant::now();
        let result = self.store.complete_events(batch, now).await;
        metrics::histogram!(STAGE_SECONDS, "stage" => "commit").record(store_started.elapsed());
        let results = match result {
            Ok(results) if results.len() == items.len() => results,
            Ok(results) => {
                let e = StoreError::Backend(format!(
                    "the store answered {} results for a batch of {}",
                    results.len(),
                    items.len()
                ));
                return self.fail_all(&items, e).await;
            }
            Err(e) => return self.fail_all(&items, e).await,
        };
        for (item, result) in items.into_iter().zip(results) {
            match result {
                Ok(bindings) => {
                    self.record_completion(&item.event, &bindings);
                    metrics::histogram!(STAGE_SECONDS, "stage" => "process")
                        .record(started.elapsed());
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(event_id = %item.event.id, %why, "plan went stale; planning again");
                    self.process(item, 1, started).await;
                }
                Err(StoreError::LeaseLost(_)) => {
                    tracing::warn!(event_id = %item.event.id, "lease lost mid-processing; another worker owns the event now");
                }
                Err(e) => self.fail(&item, PlanError::Store(e)).await,
            }
        }
    }

    /// The whole batch failed (nothing was stored): each event fails as it would alone, and
    /// a transient error is retried with backoff.
    async fn fail_all(&self, items: &[LeasedEvent], error: StoreError) {
        tracing::warn!(events = items.len(), error = %error, "completing a batch failed");
        for item in items {
            self.fail(item, PlanError::Store(error.clone())).await;
        }
    }

    /// Plans and completes one event on its own, re-planning while the store reports a stale
    /// plan (`replans` of the allowed [`MAX_REPLANS`] are already spent).
    async fn process(&self, item: LeasedEvent, mut replans: usize, started: Instant) {
        let event = &item.event;
        let policies = self.policies.current();
        loop {
            let now = Utc::now();
            // No shared lookups: a re-plan must see the store as it is now.
            let plan = match self
                .plan(policies.as_ref(), event, now, &mut DedupLookups::default())
                .await
            {
                Ok(plan) => plan,
                Err(e) => return self.fail(&item, e).await,
            };
            let store_started = Instant::now();
            let result = self.store.complete_event(&item.lease, plan, now).await;
            metrics::histogram!(STAGE_SECONDS, "stage" => "commit").record(store_started.elapsed());
            match result {
                Ok(bindings) => {
                    self.record_completion(event, &bindings);
                    metrics::histogram!(STAGE_SECONDS, "stage" => "process")
                        .record(started.elapsed());
                    return;
                }
                Err(StoreError::Conflict(why)) if replans < MAX_REPLANS => {
                    replans += 1;
                    tracing::debug!(event_id = %event.id, %why, "plan went stale; planning again");
                }
                Err(StoreError::LeaseLost(_)) => {
                    tracing::warn!(event_id = %event.id, "lease lost mid-processing; another worker owns the event now");
                    return;
                }
                Err(e) => return self.fail(&item, PlanError::Store(e)).await,
            }
        }
    }

    fn record_completion(&self, event: &Event, bindings: &[AlertBinding]) {
        let schema = event.schema.to_string();
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

    async fn fail(&self, item: &LeasedEvent, error: PlanError) {
        let event = &item.event;
        let permanent = matches!(error, PlanError::Policy(_) | PlanError::Body(_));
        let retry_at = (!permanent && event.attempts < self.settings.max_attempts)
            .then(|| Utc::now() + to_chrono(self.backoff(event.attempts)));
        let message = error.to_string();
        match retry_at {
            Some(at) => {
                tracing::warn!(event_id = %event.id, attempt = event.attempts, retry_at = %at, error = %message, "event failed; will retry");
                metrics::counter!(EVENTS_RETRIED).increment(1);
            }
            None => {
                tracing::error!(event_id = %event.id, schema = %event.schema, error = %message, "event failed");
                metrics::counter!(EVENTS_FAILED, "schema" => event.schema.to_string()).increment(1);
            }
        }
        if let Err(e) = self.store.fail_event(&item.lease, &message, retry_at).await {
            tracing::error!(event_id = %event.id, error = %e, "could not record the failure; the lease will expire and the event will run again");
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }

    /// Plans one event's alerts at `now`. `lookups` carries what earlier events of the same
    /// batch learnt about fingerprints; the store re-checks every `Attach` when completing,
    /// so a stale answer costs a re-plan, never a wrong binding.
    async fn plan(
        &self,
        policies: &dyn PolicyEngine,
        event: &Event,
        now: Timestamp,
        lookups: &mut DedupLookups,
    ) -> Result<Vec<PlannedAlert>, PlanError> {
        let body: serde_json::Value =
            serde_json::from_str(&event.body).map_err(|e| PlanError::Body(e.to_string()))?;
        if !body.is_object() {
            return Err(PlanError::Body("not an object".into()));
        }
        let ingest_started = Instant::now();
        let output = policies.ingest(&event.schema, &body)?;
        metrics::histogram!(STAGE_SECONDS, "stage" => "ingest").record(ingest_started.elapsed());

        let seen_since = now - to_chrono(self.settings.dedup_window);
        let mut planned = Vec::with_capacity(output.alerts.len());
        for mut alert in
            pipeline::alerts_from_drafts(event.id, &event.schema, output.alerts, &body, now)
        {
            let known = match lookups.0.get(&alert.fingerprint) {
                Some(known) => known.clone(),
                None => {
                    let target = self
                        .store
                        .find_dedup_ticket(&alert.fingerprint, seen_since)
                        .await?;
                    lookups
                        .0
                        .insert(alert.fingerprint.clone(), Known::Target(target));
                    Known::Target(target)
                }
            };
            let disposition = match known {
                Known::Target(Some(ticket_id)) => Disposition::Attach {
                    ticket_id,
                    seen_since,
                },
                // An earlier alert of this batch opens the fingerprint's ticket: this one
                // joins it (a second `Open` attaches to the first) without a triage of its
                // own, as it would had that ticket been committed already.
                Known::Opening(ticket) => Disposition::Open {
                    ticket: NewTicket {
                        id: TicketId::new(),
                        created_at: alert.created_at,
                        ..ticket
                    },
                    seen_since,
                },
                Known::Target(None) => {
                    let triage_started = Instant::now();
                    let disposition = pipeline::triage_alert(policies, &mut alert, seen_since)?;
                    metrics::histogram!(STAGE_SECONDS, "stage" => "triage")
                        .record(triage_started.elapsed());
                    if let Disposition::Open { ticket, .. } = &disposition {
                        lookups
                            .0
                            .insert(alert.fingerprint.clone(), Known::Opening(ticket.clone()));
                    }
                    disposition
                }
            };
            planned.push(PlannedAlert { alert, disposition });
        }
        Ok(planned)
    }
}

/// What planning learnt about fingerprints, shared by the events of one batch: a storm batch
/// costs one dedup query and at most one triage per fingerprint.
#[derive(Debug, Default)]
struct DedupLookups(HashMap<Fingerprint, Known>);

#[derive(Debug, Clone)]
enum Known {
    /// The store's answer to `find_dedup_ticket`.
    Target(Option<TicketId>),
    /// No target in the store, and an earlier alert of the batch plans to open this ticket.
    Opening(NewTicket),
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
