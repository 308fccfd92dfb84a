#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The backlog breaker: past its threshold every event is still stored, events that need no
//! model are processed, those that would open a ticket with the model's help wait without
//! spending attempts, one notice says so (however many processes trip), and under the lower
//! threshold the waiting events come back a roomful at a time and get the model's help.

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

/// A worker whose breaker trips above 10 pending events and recovers at 3, with `model` (or
/// without one).
fn worker(
    store: &Arc<dyn Store>,
    model: Option<&Arc<CountingModel>>,
    wake: &Arc<Notify>,
) -> Worker {
    Worker::new(
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
        model.map(|m| m.clone() as Arc<dyn Enricher>),
    )
}

async fn stats(store: &Arc<dyn Store>) -> QueueStats {
    store.queue_stats(store.now().await.unwrap()).await.unwrap()
}

/// Runs the workers in turn until nothing is due.
async fn run_until_idle(workers: &[&Worker]) {
    for _ in 0..1_000 {
        let mut leased = 0;
        for worker in workers {
            leased += worker.run_once().await.unwrap();
        }
        if leased == 0 {
            return;
        }
    }
    panic!("the workers never went idle");
}

/// Runs the worker until nothing is pending, processing or waiting; waiting events come back
/// only when the breaker reads the depth again, at most every `CHECK_EVERY`.
async fn drain_everything(store: &Arc<dyn Store>, worker: &Worker) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        run_until_idle(&[worker]).await;
        let s = stats(store).await;
        if s.pending == 0 && s.processing == 0 && s.waiting == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the queue did not drain: {:?}", stats(store).await);
}

async fn events(store: &Arc<dyn Store>) -> Vec<Event> {
    store
        .list_events(&EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .items
}

async fn tickets(store: &Arc<dyn Store>) -> Vec<Ticket> {
    store
        .list_tickets(&TicketQuery {
            limit: 100,
            ..TicketQuery::default()
        })
        .await
        .unwrap()
        .items
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
async fn past_the_threshold_new_tickets_wait_for_the_model_and_known_ones_still_grow() {
    let store: Arc<dyn Store> = Arc::new(FlakyStore::new(0));
    let model = Arc::new(CountingModel::default());
    let wake = Arc::new(Notify::new());
    let worker = worker(&store, Some(&model), &wake);
    let intake = Intake::new(store.clone(), wake);
    send(&intake, "known").await;
    drain_everything(&store, &worker).await;
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        1,
        "the model described it"
    );
    let known = tickets(&store).await.remove(0);

    for i in 0..24 {
        send(&intake, &format!("rule-{i}")).await;
    }
    send(&intake, "known").await;
    // The breaker reads the depth again only after its check interval.
    tokio::time::sleep(heron_app::backlog::CHECK_EVERY + Duration::from_millis(100)).await;
    run_until_idle(&[&worker]).await;

    let breaker = worker.breaker().unwrap();
    assert_eq!(breaker.trips(), 1);
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        1,
        "no model work while the breaker is tripped"
    );
    let waiting: Vec<Event> = events(&store)
        .await
        .into_iter()
        .filter(|e| e.state == EventState::Waiting)
        .collect();
    assert_eq!(waiting.len(), 24, "every new rule waits for the model");
    assert!(waiting.iter().all(|e| {
        e.attempts == 0
            && e.last_error
                .as_deref()
                .is_some_and(|n| n.contains("backlog"))
    }));
    let grown = store.get_ticket(known.id).await.unwrap().unwrap();
    assert_eq!(
        grown.alert_count, 2,
        "an alert joining an open ticket needs no model and is processed at once"
    );
    assert_eq!(
        tickets(&store).await.len(),
        1,
        "no ticket opened without the model"
    );
    let published = notices(&store).await;
    assert_eq!(published.len(), 1, "exactly one notice: {published:?}");
    assert!(
        published[0].title.starts_with("Backlog:"),
        "{}",
        published[0].title
    );

    // Under the lower threshold (read again after the check interval), the waiting events
    // come back, at most as many as keep the queue under the upper one.
    tokio::time::sleep(heron_app::backlog::CHECK_EVERY + Duration::from_millis(100)).await;
    assert!(
        !breaker.model_paused().await,
        "recovered: nothing is pending"
    );
    let s = stats(&store).await;
    assert_eq!((s.pending, s.waiting), (10, 14), "a roomful came back");

    drain_everything(&store, &worker).await;
    assert!(
        events(&store)
            .await
            .iter()
            .all(|e| e.state == EventState::Processed),
        "every event was processed in the end"
    );
    assert_eq!(
        tickets(&store).await.len(),
        25,
        "every rule opened its ticket"
    );
    assert_eq!(
        model.calls.load(Ordering::SeqCst),
        25,
        "each new ticket got the model's description, late but not skipped"
    );
    assert_eq!(
        breaker.trips(),
        1,
        "the returning events did not trip it again"
    );
    assert_eq!(
        notices(&store).await.len(),
        1,
        "recovering publishes nothing"
    );
}

#[tokio::test]
async fn two_processes_tripping_on_one_database_publish_one_notice() {
    let store: Arc<dyn Store> = Arc::new(FlakyStore::new(0));
    let model = Arc::new(CountingModel::default());
    let wake = Arc::new(Notify::new());
    let first = worker(&store, Some(&model), &wake);
    let second = worker(&store, Some(&model), &wake);
    let intake = Intake::new(store.clone(), wake);
    for i in 0..30 {
        send(&intake, &format!("rule-{i}")).await;
    }

    run_until_idle(&[&first, &second]).await;

    assert_eq!(first.breaker().unwrap().trips(), 1);
    assert_eq!(second.breaker().unwrap().trips(), 1);
    assert_eq!(notices(&store).await.len(), 1);
    assert_eq!(stats(&store).await.waiting, 30);
}

#[tokio::test]
async fn without_a_model_nothing_waits_past_the_threshold() {
    let store: Arc<dyn Store> = Arc::new(FlakyStore::new(0));
    let wake = Arc::new(Notify::new());
    let worker = worker(&store, None, &wake);
    let intake = Intake::new(store.clone(), wake);
    for i in 0..30 {
        send(&intake, &format!("rule-{i}")).await;
    }

    run_until_idle(&[&worker]).await;

    assert_eq!(stats(&store).await, QueueStats::default());
    assert_eq!(tickets(&store).await.len(), 30);
    assert_eq!(notices(&store).await.len(), 1, "the notice still says so");
}

#[tokio::test]
async fn waiting_events_come_back_when_the_breaker_is_turned_off() {
    let store: Arc<dyn Store> = Arc::new(FlakyStore::new(0));
    let model = Arc::new(CountingModel::default());
    let wake = Arc::new(Notify::new());
    let intake = Intake::new(store.clone(), wake.clone());
    for i in 0..20 {
        send(&intake, &format!("rule-{i}")).await;
    }
    run_until_idle(&[&worker(&store, Some(&model), &wake)]).await;
    assert_eq!(stats(&store).await.waiting, 20);

    // Restarted without a breaker: nothing would ever resume them, so the worker does.
    let unguarded = Worker::new(
        store.clone(),
        PolicyHandle::new(Arc::new(OneAlert)),
        WorkerSettings::default(),
        wake.clone(),
        Some(model.clone()),
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { unguarded.run(shutdown).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tickets(&store).await.len() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            stats(&store).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(model.calls.load(Ordering::SeqCst), 20);
}
