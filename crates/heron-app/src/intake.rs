//! Accepting deliveries: store durably, then wake the worker.

use crate::AppResult;
use crate::metrics::{EVENTS_DUPLICATE, EVENTS_RECEIVED, STAGE_SECONDS};
use heron_core::ports::Store;
use heron_core::{Accepted, NewEvent};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct Intake {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("store", &self.store.backend())
            .finish()
    }
}

impl Intake {
    /// `wake` is shared with in-process workers so they start at once instead of polling.
    pub fn new(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Returns only after the event is committed.
    pub async fn accept(&self, event: NewEvent) -> AppResult<Accepted> {
        let started = Instant::now();
        let labels = [
            ("schema", crate::metrics::schema_label(&event.schema)),
            ("source", event.source.as_str().to_owned()),
        ];
        let body = event.body.clone();
        let accepted = self.store.accept_event(event).await?;
        if accepted.duplicate {
            metrics::counter!(EVENTS_DUPLICATE, &labels).increment(1);
            self.warn_if_body_differs(&accepted, &body).await;
        } else {
            metrics::counter!(EVENTS_RECEIVED, &labels).increment(1);
            self.wake.notify_one();
        }
        metrics::histogram!(STAGE_SECONDS, "stage" => "intake").record(started.elapsed());
        Ok(accepted)
    }

    /// Senders re-deliver identical bodies; the same key with a different body is a sender bug
    /// (or two senders sharing keys) that would otherwise drop an alert without a trace.
    async fn warn_if_body_differs(&self, accepted: &Accepted, body: &str) {
        match self.store.get_event(accepted.event_id).await {
            Ok(Some(first)) if first.body != body => tracing::warn!(
                event_id = %accepted.event_id,
                schema = %first.schema,
                "a re-delivery reused an idempotency key with a different body; the first body was kept"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "could not compare a duplicate's body"),
        }
    }

    /// Stores a batch in one transaction (all or nothing); returns only after the commit,
    /// with one answer per event, in order.
    pub async fn accept_batch(&self, events: Vec<NewEvent>) -> AppResult<Vec<Accepted>> {
        let started = Instant::now();
        let labels: Vec<[(&str, String); 2]> = events
            .iter()
            .map(|e| {
                [
                    ("schema", crate::metrics::schema_label(&e.schema)),
                    ("source", e.source.as_str().to_owned()),
                ]
            })
            .collect();
        let accepted = self.store.accept_events(events).await?;
        let mut fresh = false;
        for (answer, labels) in accepted.iter().zip(&labels) {
            if answer.duplicate {
                metrics::counter!(EVENTS_DUPLICATE, labels).increment(1);
            } else {
                metrics::counter!(EVENTS_RECEIVED, labels).increment(1);
                fresh = true;
            }
        }
        if fresh {
            self.wake.notify_one();
        }
        metrics::histogram!(STAGE_SECONDS, "stage" => "intake").record(started.elapsed());
        Ok(accepted)
    }
}
