#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The alert embedding loop against the in-memory store: batches of the configured size,
//! an unavailable embedder leaves alerts waiting, an alert the embedder rejects is skipped
//! without holding back the rest of its batch.

use async_trait::async_trait;
use chrono::Utc;
use heron_app::{
    AlertEmbeddingSettings, AlertEmbeddingWorker, Intake, PolicyHandle, SimilarityEmbedder, Worker,
    WorkerSettings,
};
use heron_core::llm::{Embedder, Embeddings, LlmError};
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::*;
use heron_core::testing::{FakeEmbedder, InMemoryStore};
use heron_core::*;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// One alert per event, titled by its `rule`; every alert opens its own ticket.
struct RulePolicy;

impl PolicyEngine for RulePolicy {
    fn ingest(
        &self,
        _: &SchemaName,
        event: &serde_json::Value,
    ) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput {
            alerts: vec![AlertDraft {
                title: Some(event["rule"].as_str().unwrap_or("untitled").to_owned()),
                ..AlertDraft::default()
            }],
            package_found: true,
        })
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo::default()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Working,
    Unavailable,
    /// A request holding a text with "poison" is rejected, as an oversized input would be.
    RejectsPoison,
}

/// The fake embedder, with failures on demand; records the size of every request.
struct ScriptedEmbedder {
    inner: FakeEmbedder,
    mode: Mutex<Mode>,
    requests: Mutex<Vec<usize>>,
}

#[async_trait]
impl Embedder for ScriptedEmbedder {
    fn name(&self) -> &str {
        "scripted"
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        self.requests.lock().unwrap().push(texts.len());
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Unavailable => Err(LlmError::Transient {
                message: "HTTP 503".into(),
                retry_after: None,
            }),
            Mode::RejectsPoison if texts.iter().any(|t| t.contains("poison")) => Err(
                LlmError::BadRequest("this model's maximum context length is 8192".into()),
            ),
            _ => self.inner.embed(texts).await,
        }
    }
}

struct Setup {
    store: Arc<dyn Store>,
    embedder: Arc<ScriptedEmbedder>,
    alerts: AlertEmbeddingWorker,
}

async fn setup_with(rules: &[&str], batch: usize) -> Setup {
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let wake = Arc::new(Notify::new());
    let intake = Intake::new(store.clone(), wake.clone());
    let worker = Worker::new(
        store.clone(),
        PolicyHandle::new(Arc::new(RulePolicy)),
        WorkerSettings::default(),
        wake,
        None,
    );
    for rule in rules {
        intake
            .accept(NewEvent {
                id: EventId::new(),
                schema: SchemaName::parse("test").unwrap(),
                source: EventSource::Raw,
                body: serde_json::json!({"rule": rule}).to_string(),
                metadata: serde_json::json!({}),
                idempotency_key: None,
                received_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    while worker.run_once().await.unwrap() > 0 {}
    let embedder = Arc::new(ScriptedEmbedder {
        inner: FakeEmbedder::new(8),
        mode: Mutex::new(Mode::Working),
        requests: Mutex::default(),
    });
    let alerts = AlertEmbeddingWorker::new(
        store.clone(),
        SimilarityEmbedder::new(embedder.clone()),
        AlertEmbeddingSettings {
            batch,
            ..AlertEmbeddingSettings::default()
        },
    );
    Setup {
        store,
        embedder,
        alerts,
    }
}

impl Setup {
    async fn waiting(&self) -> Vec<String> {
        self.store
            .alerts_to_embed(100)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.title)
            .collect()
    }

    async fn all_alerts(&self) -> Vec<Alert> {
        self.store
            .list_alerts(&AlertQuery {
                limit: 100,
                ..AlertQuery::default()
            })
            .await
            .unwrap()
            .items
    }

    fn requests(&self) -> Vec<usize> {
        self.embedder.requests.lock().unwrap().clone()
    }

    fn set_mode(&self, mode: Mode) {
        *self.embedder.mode.lock().unwrap() = mode;
    }
}

#[tokio::test]
async fn new_alerts_are_embedded_in_batches_of_the_configured_size() {
    let s = setup_with(&["a", "b", "c", "d", "e"], 2).await;
    assert_eq!(s.waiting().await.len(), 5);
    assert_eq!(s.alerts.run_once().await.unwrap(), 2);
    assert_eq!(s.alerts.run_once().await.unwrap(), 2);
    assert_eq!(s.alerts.run_once().await.unwrap(), 1);
    assert_eq!(s.alerts.run_once().await.unwrap(), 0, "nothing left");
    assert_eq!(s.requests(), vec![2, 2, 1], "one request per batch");
    assert!(s.waiting().await.is_empty());
    for alert in s.all_alerts().await {
        let stored = s
            .store
            .get_alert_embedding(alert.id, "scripted")
            .await
            .unwrap()
            .expect("embedded");
        assert_eq!(
            stored,
            s.embedder
                .inner
                .vector(&SimilarityEmbedder::alert_text_of(&alert)),
            "the vector of the alert's own text"
        );
    }
}

#[tokio::test]
async fn an_unavailable_embedder_leaves_every_alert_waiting() {
    let s = setup_with(&["a", "b", "c"], 10).await;
    s.set_mode(Mode::Unavailable);
    assert!(s.alerts.run_once().await.is_err());
    assert_eq!(s.waiting().await.len(), 3, "nothing is taken off the list");
    s.set_mode(Mode::Working);
    assert_eq!(
        s.alerts.run_once().await.unwrap(),
        3,
        "embedded once it is back"
    );
    assert!(s.waiting().await.is_empty());
}

#[tokio::test]
async fn an_alert_the_embedder_rejects_is_skipped_and_the_rest_of_its_batch_embedded() {
    let s = setup_with(&["a", "poison", "c"], 10).await;
    s.set_mode(Mode::RejectsPoison);
    assert_eq!(s.alerts.run_once().await.unwrap(), 3);
    assert!(s.waiting().await.is_empty(), "no alert waits forever");
    assert_eq!(s.requests(), vec![3, 1, 1, 1], "the batch, then one by one");
    for alert in s.all_alerts().await {
        let stored = s
            .store
            .get_alert_embedding(alert.id, "scripted")
            .await
            .unwrap();
        assert_eq!(stored.is_some(), alert.title != "poison", "{}", alert.title);
    }
}

#[tokio::test]
async fn alert_text_is_bounded_whatever_the_alert_carries() {
    let s = setup_with(&[&"x".repeat(50_000)], 10).await;
    let alert = s.all_alerts().await.remove(0);
    let text = SimilarityEmbedder::alert_text_of(&alert);
    assert_eq!(text.chars().count(), heron_app::embedding::MAX_TEXT_CHARS);
}
