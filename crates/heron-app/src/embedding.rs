//! Embeddings for similarity search: the embedder tickets and alerts are compared with, and
//! the loop that embeds new alerts in batches.
//!
//! Tickets are embedded by the triage worker when they open; alerts by
//! [`AlertEmbeddingWorker`], off the intake path, so a storm costs one embedding request per
//! batch of alerts and never slows the queue. Alerts and tickets are embedded from the same
//! kind of text (title, description, schema, attributes) with the same model, so an alert's
//! vector can be searched against tickets ("which ticket does this alert belong to?").
//!
//! Invariants:
//! - an alert leaves the waiting list only with its vector stored, or when the embedder
//!   rejects a request holding that alert alone (a bad request), which is logged and
//!   counted; any other failure (unreachable, credentials, a garbled answer) leaves every
//!   alert waiting and backs off;
//! - the text sent is bounded ([`MAX_TEXT_CHARS`]), so one huge alert cannot make a batch
//!   fail for size.

use crate::metrics::ALERT_EMBEDDINGS;
use heron_core::alert::Alert;
use heron_core::llm::{Embedder, LlmError};
use heron_core::ports::{Store, StoreError};
use heron_core::{AlertId, Attribute, Ticket};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Characters of an alert's or ticket's text sent to the embedder.
pub const MAX_TEXT_CHARS: usize = 8_000;

/// The embedder tickets' and alerts' vectors come from (the configured model or the local
/// hashing one), and the text each is embedded from.
#[derive(Clone)]
pub struct SimilarityEmbedder {
    embedder: Arc<dyn Embedder>,
}

impl SimilarityEmbedder {
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self { embedder }
    }

    /// The name vectors are stored and searched under.
    pub fn model(&self) -> &str {
        self.embedder.name()
    }

    /// What a ticket is compared by: its title, description, schema and attributes.
    pub fn text_of(ticket: &Ticket) -> String {
        text(
            &ticket.title,
            &ticket.description,
            ticket.schema.as_str(),
            &ticket.attributes,
        )
    }

    /// The same shape of text for an alert, so that alerts and tickets compare.
    pub fn alert_text_of(alert: &Alert) -> String {
        text(
            &alert.title,
            &alert.description,
            alert.schema.as_str(),
            &alert.attributes,
        )
    }

    pub async fn embed(&self, ticket: &Ticket) -> Result<Vec<f32>, LlmError> {
        self.embed_one(Self::text_of(ticket)).await
    }

    pub async fn embed_alert(&self, alert: &Alert) -> Result<Vec<f32>, LlmError> {
        self.embed_one(Self::alert_text_of(alert)).await
    }

    async fn embed_one(&self, text: String) -> Result<Vec<f32>, LlmError> {
        let mut embeddings = self.embedder.embed(&[text]).await?;
        embeddings
            .vectors
            .pop()
            .ok_or_else(|| LlmError::Protocol("the embedder returned no vector".into()))
    }

    /// One request for every alert; a vector per alert, in order.
    async fn embed_alerts(&self, alerts: &[Alert]) -> Result<Vec<Vec<f32>>, LlmError> {
        let texts: Vec<String> = alerts.iter().map(Self::alert_text_of).collect();
        let embeddings = self.embedder.embed(&texts).await?;
        if embeddings.vectors.len() != alerts.len() {
            return Err(LlmError::Protocol(format!(
                "the embedder returned {} vectors for {} inputs",
                embeddings.vectors.len(),
                alerts.len()
            )));
        }
        Ok(embeddings.vectors)
    }
}

fn text(title: &str, description: &str, schema: &str, attributes: &[Attribute]) -> String {
    let mut text = format!("{title}\n{description}\nschema: {schema}\n");
    for attribute in attributes {
        text.push_str(&format!("{}: {}\n", attribute.key, attribute.value));
    }
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

#[derive(Debug, Clone)]
pub struct AlertEmbeddingSettings {
    /// Alerts per embedding request.
    pub batch: usize,
    /// Wait when no alert is waiting.
    pub poll_interval: Duration,
    /// First wait after the embedder or the store failed; doubled up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl Default for AlertEmbeddingSettings {
    fn default() -> Self {
        Self {
            batch: 64,
            poll_interval: Duration::from_secs(1),
            backoff: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Why a batch could not be handled; the alerts stay waiting.
#[derive(Debug, thiserror::Error)]
pub enum AlertEmbeddingError {
    #[error("the embedding model is unavailable: {0}")]
    Embedder(LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Embeds alerts waiting for a vector, a batch at a time.
#[derive(Clone)]
pub struct AlertEmbeddingWorker {
    store: Arc<dyn Store>,
    embedder: SimilarityEmbedder,
    settings: AlertEmbeddingSettings,
}

impl AlertEmbeddingWorker {
    pub fn new(
        store: Arc<dyn Store>,
        embedder: SimilarityEmbedder,
        settings: AlertEmbeddingSettings,
    ) -> Self {
        Self {
            store,
            embedder,
            settings,
        }
    }

    /// Embeds until `shutdown` turns true: at once while full batches keep coming, every
    /// `poll_interval` when idle, with backoff after a failure.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = self.settings.backoff;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.run_once().await {
                Ok(n) if n >= self.settings.batch.max(1) => {
                    backoff = self.settings.backoff;
                    continue;
                }
                Ok(_) => {
                    backoff = self.settings.backoff;
                    self.settings.poll_interval
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "alerts could not be embedded; they stay waiting");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.settings.backoff_max);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Embeds one batch of waiting alerts; how many it took off the waiting list.
    pub async fn run_once(&self) -> Result<usize, AlertEmbeddingError> {
        let alerts = self
            .store
            .alerts_to_embed(self.settings.batch.max(1))
            .await?;
        if alerts.is_empty() {
            return Ok(0);
        }
        let model = self.embedder.model().to_owned();
        match self.embedder.embed_alerts(&alerts).await {
            Ok(vectors) => {
                let pairs: Vec<(AlertId, Vec<f32>)> =
                    alerts.iter().map(|a| a.id).zip(vectors).collect();
                self.store.put_alert_embeddings(&model, &pairs).await?;
                record(pairs.len(), "embedded");
                Ok(pairs.len())
            }
            // Only a rejected request can be about the alerts themselves; anything else
            // (unreachable, bad credentials, a garbled answer) is the embedder's state.
            Err(e) if !matches!(e, LlmError::BadRequest(_)) => {
                Err(AlertEmbeddingError::Embedder(e))
            }
            // Refused as a whole: find the alerts refused on their own, keep the others.
            Err(batch_error) => {
                tracing::warn!(error = %batch_error, alerts = alerts.len(), "the embedder refused a batch of alerts; embedding them one by one");
                let mut done = 0;
                for alert in &alerts {
                    match self.embedder.embed_alert(alert).await {
                        Ok(vector) => {
                            self.store
                                .put_alert_embeddings(&model, &[(alert.id, vector)])
                                .await?;
                            record(1, "embedded");
                        }
                        Err(e) if !matches!(e, LlmError::BadRequest(_)) => {
                            return Err(AlertEmbeddingError::Embedder(e));
                        }
                        Err(e) => {
                            tracing::warn!(alert_id = %alert.id, error = %e, "the embedder refused this alert; it will be missing from similarity search");
                            self.store.skip_alert_embeddings(&[alert.id]).await?;
                            record(1, "skipped");
                        }
                    }
                    done += 1;
                }
                Ok(done)
            }
        }
    }
}

fn record(n: usize, outcome: &'static str) {
    metrics::counter!(ALERT_EMBEDDINGS, "outcome" => outcome).increment(n as u64);
}
