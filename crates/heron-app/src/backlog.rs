//! The backlog breaker: model work pauses while the queue is deep.
//!
//! When more than `pause_above` events are pending, the breaker trips: intake goes on storing
//! every event (it never looks at the breaker), the event worker goes on processing them with
//! the policies alone (the metadata and enrich stages run as without a model: enrich tasks
//! are skipped and triage gets an empty `enrich`), and the agent's investigations of new
//! tickets wait in their durable queue. Once pending events are at or below
//! `resume_below` (hysteresis: a queue hovering around one threshold does not flap), model
//! work resumes and the waiting investigations run.
//!
//! Tripping publishes exactly one notice per trip and process (a system event, processed by
//! the worker into a notice like any other; its idempotency key names the trip), and logs a
//! warning; recovering logs once. The depth is a `COUNT` read at most every
//! [`CHECK_EVERY`], shared by every loop of the process.

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
        let depth = match self.depth().await {
            Ok(depth) => depth,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the queue depth for the backlog breaker");
                return self.paused.load(Ordering::Relaxed);
            }
        };
        let paused = self.paused.load(Ordering::Relaxed);
        if !paused && depth > self.limits.pause_above {
            self.paused.store(true, Ordering::Relaxed);
            let trip = self.trips.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::gauge!("heron_backlog_paused").set(1.0);
            tracing::warn!(
                pending = depth,
                pause_above = self.limits.pause_above,
                resume_below = self.limits.resume_below,
                "backlog: model work (enrichment, agent triage) paused; events are still stored and processed"
            );
            self.publish_notice(depth, trip).await;
        } else if paused && depth <= self.limits.resume_below {
            self.paused.store(false, Ordering::Relaxed);
            metrics::gauge!("heron_backlog_paused").set(0.0);
            tracing::info!(
                pending = depth,
                resume_below = self.limits.resume_below,
                "backlog cleared: model work resumes"
            );
        }
        self.paused.load(Ordering::Relaxed)
    }

    async fn depth(&self) -> Result<u64, heron_core::ports::StoreError> {
        let now = self.store.now().await?;
        Ok(self.store.queue_stats(now).await?.pending)
    }

    async fn publish_notice(&self, depth: u64, trip: u64) {
        let Ok(schema) = SchemaName::parse(SYSTEM_SCHEMA) else {
            return;
        };
        let started = chrono::Utc::now();
        let body = serde_json::json!({
            "kind": "backlog",
            "title": format!("Backlog: {depth} events pending; model work paused"),
            "description": format!(
                "More than {} events were pending. Events are still stored and processed by the \
                 policies, but enrich tasks are skipped and agent investigations wait until \
                 {} or fewer are pending.",
                self.limits.pause_above, self.limits.resume_below
            ),
            "pending": depth,
        });
        let event = NewEvent {
            id: EventId::new(),
            schema,
            source: EventSource::System,
            body: body.to_string(),
            metadata: serde_json::json!({}),
            idempotency_key: Some(format!(
                "system:backlog:{}:{trip}",
                started.timestamp_micros()
            )),
            received_at: started,
        };
        if let Err(e) = self.store.accept_event(event).await {
            tracing::error!(error = %e, "could not publish the backlog notice");
        }
    }
}
