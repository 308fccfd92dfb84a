//! The backlog breaker: model work waits while the queue is deep.
//!
//! When more than `pause_above` events are pending, the breaker trips. Intake goes on storing
//! every event (it never looks at the breaker). The event worker goes on processing events
//! whose alerts need no model work (alerts that join an open ticket, or any alert when no
//! model is configured); an event that would open a ticket with the model's help (metadata,
//! enrich tasks) is held back as `waiting` instead, without spending an attempt, and the
//! agent's investigations of new tickets wait in their durable queue. Once pending events are
//! at or below `resume_below` (hysteresis: a queue hovering around one threshold does not
//! flap), model work resumes: waiting events go back to `pending`, oldest first, only as many
//! as keep the queue under `pause_above` (so that they cannot trip the breaker again by
//! themselves), and the waiting investigations run. Nothing is skipped, only delayed.
//!
//! Tripping publishes one notice per hour across every process sharing the database (a
//! system event whose idempotency key names the hour, processed by the worker into a notice
//! like any other) and logs a warning; recovering logs once. The depth is a `COUNT` read at
//! most every [`CHECK_EVERY`], shared by every loop of the process.

use heron_core::ports::Store;
use heron_core::{EventId, EventSource, NewEvent, SchemaName};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the queue depth is read, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The schema of the events Heron makes itself (the notice of a tripped breaker).
pub const SYSTEM_SCHEMA: &str = "heron.system";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Trip above this many pending events.
    pub pause_above: u64,
    /// Recover at or below this many (≤ `pause_above`).
    pub resume_below: u64,
}

pub struct BacklogBreaker {
    limits: BacklogLimits,
    store: Arc<dyn Store>,
    paused: AtomicBool,
    trips: AtomicU64,
    checked: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for BacklogBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BacklogBreaker")
            .field("limits", &self.limits)
            .field("paused", &self.paused.load(Ordering::Relaxed))
            .finish()
    }
}

impl BacklogBreaker {
    pub fn new(limits: BacklogLimits, store: Arc<dyn Store>) -> Self {
        Self {
            limits,
            store,
            paused: AtomicBool::new(false),
            trips: AtomicU64::new(0),
            checked: tokio::sync::Mutex::new(None),
        }
    }

    /// How many times it tripped in this process.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Whether model work should wait now; reads the depth when the last reading is older
    /// than [`CHECK_EVERY`]. A failed reading keeps the state it had.
    pub async fn model_paused(&self) -> bool {
        let mut checked = self.checked.lock().await;
        if checked.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
            return self.paused.load(Ordering::Relaxed);
        }
        *checked = Some(Instant::now());
        let stats = match self.store.queue_stats(store_now(&*self.store).await).await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the queue depth for the backlog breaker");
                return self.paused.load(Ordering::Relaxed);
            }
        };
        let depth = stats.pending;
        let paused = self.paused.load(Ordering::Relaxed);
        if !paused && depth > self.limits.pause_above {
            self.paused.store(true, Ordering::Relaxed);
            self.trips.fetch_add(1, Ordering::Relaxed);
            metrics::gauge!("heron_backlog_paused").set(1.0);
            tracing::warn!(
                pending = depth,
                pause_above = self.limits.pause_above,
                resume_below = self.limits.resume_below,
                "backlog: model work (enrichment, agent triage) waits; every event is still stored, and those that need no model are processed"
            );
            self.publish_notice(depth).await;
        } else if paused && depth <= self.limits.resume_below {
            self.paused.store(false, Ordering::Relaxed);
            metrics::gauge!("heron_backlog_paused").set(0.0);
            tracing::info!(
                pending = depth,
                resume_below = self.limits.resume_below,
                waiting = stats.waiting,
                "backlog cleared: model work resumes"
            );
        }
        let paused = self.paused.load(Ordering::Relaxed);
        if !paused && stats.waiting > 0 {
            resume_waiting(&*self.store, self.limits.pause_above.saturating_sub(depth)).await;
        }
        paused
    }

    async fn publish_notice(&self, depth: u64) {
        let Ok(schema) = SchemaName::parse(SYSTEM_SCHEMA) else {
            return;
        };
        let started = store_now(&*self.store).await;
        let body = serde_json::json!({
            "kind": "backlog",
            "title": format!("Backlog: {depth} events pending; model work waits"),
            "description": format!(
                "More than {} events were pending. Every event is still stored, and alerts that \
                 join open tickets are processed as usual; events that would open a ticket \
                 with the model's help wait (state `waiting`), and so do agent \
                 investigations, until {} or fewer are pending.",
                self.limits.pause_above, self.limits.resume_below
            ),
            "pending": depth,
        });
        // One notice an hour, whichever process trips first: the key names the hour.
        let hour = started.timestamp().div_euclid(3_600);
        let event = NewEvent {
            id: EventId::new(),
            schema,
            source: EventSource::System,
            body: body.to_string(),
            metadata: serde_json::json!({}),
            idempotency_key: Some(format!("system:backlog:{hour}")),
            received_at: started,
        };
        if let Err(e) = self.store.accept_event(event).await {
            tracing::error!(error = %e, "could not publish the backlog notice");
        }
    }
}

/// The store's clock (shared by every process on PostgreSQL), or the host's when it cannot
/// be read.
async fn store_now(store: &dyn Store) -> heron_core::Timestamp {
    match store.now().await {
        Ok(now) => now,
        Err(_) => chrono::Utc::now(),
    }
}

/// Lets up to `room` waiting events back into the queue; a failure is logged (the next
/// reading tries again).
pub(crate) async fn resume_waiting(store: &dyn Store, room: u64) {
    if room == 0 {
        return;
    }
    let resumed = match store.now().await {
        Ok(now) => store.resume_waiting_events(now, room).await,
        Err(e) => Err(e),
    };
    match resumed {
        Ok(0) => {}
        Ok(resumed) => {
            tracing::info!(
                resumed,
                "events held by the backlog breaker are back in the queue"
            )
        }
        Err(e) => tracing::warn!(error = %e, "could not resume waiting events"),
    }
}
