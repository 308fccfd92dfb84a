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
            ("schema", event.schema.to_string()),
            ("source", event.source.as_str().to_owned()),
        ];
        let accepted = self.store.accept_event(event).await?;
        if accepted.duplicate {
            metrics::counter!(EVENTS_DUPLICATE, &labels).increment(1);
        } else {
            metrics::counter!(EVENTS_RECEIVED, &labels).increment(1);
            self.wake.notify_one();
        }
        metrics::histogram!(STAGE_SECONDS, "stage" => "intake").record(started.elapsed());
        Ok(accepted)
    }

    /// Stores a batch in one transaction (all or nothing); returns only after the commit,
    /// with one answer per event, in order.
    pub async fn accept_batch(&self, events: Vec<NewEvent>) -> AppResult<Vec<Accepted>> {
        let started = Instant::now();
        let labels: Vec<[(&str, String); 2]> = events
            .iter()
            .map(|e| {
                [
                    ("schema", e.schema.to_string()),
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
