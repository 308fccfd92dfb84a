#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The backlog breaker: past its threshold every event is still stored and processed, model
//! work pauses, one notice says so, and model work resumes under the lower threshold.

mod common;

use async_trait::async_trait;
use common::FlakyStore;
use heron_app::{
    AlertText, BacklogLimits, EnrichError, Enricher, Intake, PolicyHandle, TaskRun, Worker,
    WorkerSettings,
};
use heron_core::policy::{
    EnrichFormat, IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::*;
use heron_core::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// One alert per event, titled by its `rule`, without a description (so the metadata stage
/// asks the model for one).
struct OneAlert;

impl PolicyEngine for OneAlert {
    fn ingest(
        &self,
        _: &SchemaName,
        event: &serde_json::Value,
    ) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput {
            alerts: vec![AlertDraft {
                title: Some(event["rule"].as_str().unwrap_or("x").to_owned()),
                severity: Some(Severity::High),
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

/// Counts model calls.
#[derive(Default)]
struct CountingModel {
    calls: AtomicUsize,
}

#[async_trait]
impl Enricher for CountingModel {
    async fn describe(
        &self,
        _: &serde_json::Value,
        _: bool,
        _: bool,
    ) -> Result<AlertText, EnrichError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(AlertText {
            title: None,
            description: Some("written by the model".into()),
        })
    }
    async fn run_task(
        &self,
        _: TicketId,
        _: &str,
        _: EnrichFormat,
        _: &serde_json::Value,
        _: Timestamp,
    ) -> TaskRun {
        self.calls.fetch_add(1, Ordering::SeqCst);
        TaskRun {
            result: Ok(serde_json::json!("ok")),
            run: None,
        }
    }
}

async fn send(intake: &Intake, rule: &str) {
    intake
        .accept(NewEvent {
            id: EventId::new(),
            schema: SchemaName::parse("test").unwrap(),
            source: EventSource::Raw,
            body: serde_json::json!({ "rule": rule }).to_string(),
            metadata: serde_json::json!({}),
            idempotency_key: None,
            received_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
}

async fn drain(store: &Arc<dyn Store>, worker: &Worker) {
    for _ in 0..1_000 {
        worker.run_once().await.unwrap();
        let stats = store.queue_stats(store.now().await.unwrap()).await.unwrap();
        if stats.pending == 0 && stats.processing == 0 {
            return;
        }
    }
    panic!("the queue did not drain");
}

async fn notices(store: &Arc<dyn Store>) -> Vec<Notice> {
    store
        .list_notices(&NoticeQuery {
            limit: 100,
            ..NoticeQuery::default()
        })
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn past_the_threshold_every_event_is_processed_without_the_model_and_one_notice_says_so() {
    let store: Arc<dyn Store> = Arc::new(FlakyStore::new(0));
    let model = Arc::new(CountingModel::default());
    let wake = Arc::new(Notify::new());
    let worker = Worker::new(
        store.clone(),
        PolicyHandle::new(Arc::new(OneAlert)),
        WorkerSettings {
            batch_size: 4,
            backlog: Some(BacklogLimits {
                pause_above: 10,
                resume_below: 3,
            }),
            ..WorkerSettings::default()
        },
        wake.clone(),
        Some(model.clone()),
    );
    let intake = Intake::new(store.clone(), wake);
    for i in 0..40 {
        send(&intake, &format!("rule-{i}")).await;
    }

    drain(&store, &worker).await;

    let events = store
        .list_events(&EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(
        events.len(),
        41,
        "40 deliveries and the breaker's own notice event"
    );
    assert!(
        events.iter().all(|e| e.state == EventState::Processed),
        "every event was processed: {:?}",
        events
            .iter()
            .map(|e| (e.state, e.last_error.clone()))
            .collect::<Vec<_>>()
    );
    let tickets = store
        .list_tickets(&TicketQuery {
            limit: 100,
            ..TicketQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(tickets.len(), 40, "every alert opened its ticket");
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        0,
        "no model work while the breaker was tripped"
    );
    let published = notices(&store).await;
    assert_eq!(published.len(), 1, "exactly one notice: {published:?}");
    assert!(
        published[0].title.starts_with("Backlog:"),
        "{}",
        published[0].title
    );
    let breaker = worker.breaker().unwrap();
    assert_eq!(breaker.trips(), 1);

    // Under the lower threshold (read again after the check interval), the model is back.
    tokio::time::sleep(heron_app::backlog::CHECK_EVERY + Duration::from_millis(100)).await;
    assert!(
        !breaker.model_paused().await,
        "recovered once the queue drained"
    );
    send(&intake, "after").await;
    drain(&store, &worker).await;
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        1,
        "the next new alert's description is written by the model again"
    );
    assert_eq!(
        notices(&store).await.len(),
        1,
        "recovering publishes nothing"
    );
    assert_eq!(breaker.trips(), 1);
}
