#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The worker against the in-memory store and a scripted policy engine: retries, failure,
//! deduplication before triage, poison events, lease heartbeats, arrival-time dedup windows.

mod common;

use chrono::Utc;
use common::FlakyStore;
use heron_app::{Intake, PolicyHandle, Worker, WorkerSettings};
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::*;
use heron_core::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// One alert per event titled by the event's `rule`; counts triage calls. An event with
/// `"sleep_ms"` takes that long to ingest (a slow policy).
#[derive(Default)]
struct CountingPolicy {
    triaged: AtomicUsize,
}

impl PolicyEngine for CountingPolicy {
    fn ingest(
        &self,
        _: &SchemaName,
        event: &serde_json::Value,
    ) -> Result<IngestOutput, PolicyError> {
        if let Some(ms) = event["sleep_ms"].as_u64() {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let title = event["rule"].as_str().unwrap_or("untitled").to_owned();
        Ok(IngestOutput {
            alerts: vec![AlertDraft {
                title: Some(title),
                severity: Some(Severity::High),
                ..AlertDraft::default()
            }],
            package_found: true,
        })
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        self.triaged.fetch_add(1, Ordering::SeqCst);
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo::default()
    }
}

struct Setup {
    store: Arc<dyn Store>,
    flaky: Arc<FlakyStore>,
    policy: Arc<CountingPolicy>,
    worker: Worker,
    intake: Intake,
}

fn setup(failures: usize, max_attempts: u32) -> Setup {
    setup_with(
        failures,
        WorkerSettings {
            max_attempts,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..WorkerSettings::default()
        },
    )
}

fn setup_with(failures: usize, settings: WorkerSettings) -> Setup {
    let flaky = Arc::new(FlakyStore::new(failures));
    let store: Arc<dyn Store> = flaky.clone();
    let policy = Arc::new(CountingPolicy::default());
    let wake = Arc::new(Notify::new());
    let worker = Worker::new(
        store.clone(),
        PolicyHandle::new(policy.clone()),
        settings,
        wake.clone(),
        None,
    );
    Setup {
        intake: Intake::new(store.clone(), wake),
        store,
        flaky,
        policy,
        worker,
    }
}

async fn send(intake: &Intake, rule: &str) -> EventId {
    send_body(intake, serde_json::json!({ "rule": rule }), Utc::now()).await
}

async fn send_body(
    intake: &Intake,
    body: serde_json::Value,
    received_at: chrono::DateTime<Utc>,
) -> EventId {
    let event = NewEvent {
        id: EventId::new(),
        schema: SchemaName::parse("test").unwrap(),
        source: EventSource::Raw,
        body: body.to_string(),
        metadata: serde_json::json!({}),
        idempotency_key: None,
        received_at,
    };
    intake.accept(event).await.unwrap().event_id
}

async fn tickets(store: &Arc<dyn Store>) -> Vec<Ticket> {
    let mut tickets = store
        .list_tickets(&TicketQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    tickets.sort_by_key(|t| t.first_seen);
    tickets
}

/// Runs the worker until nothing is pending (waiting out backoff), at most 2 s.
async fn run_until_idle(s: &Setup) {
    for _ in 0..400 {
        s.worker.run_once().await.unwrap();
        let stats = s.store.queue_stats(Utc::now()).await.unwrap();
        if stats.pending == 0 && stats.processing == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the queue did not drain");
}

#[tokio::test]
async fn transient_storage_failures_are_retried_with_backoff_then_succeed() {
    let s = setup(2, 5);
    let id = send(&s.intake, "r").await;
    run_until_idle(&s).await;
    let event = s.store.get_event(id).await.unwrap().unwrap();
    assert_eq!(event.state, EventState::Processed);
    assert_eq!(event.attempts, 3, "two failed attempts, then success");
    assert_eq!(
        s.store
            .list_tickets(&TicketQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn storage_failures_past_max_attempts_leave_the_event_failed_with_the_error() {
    let s = setup(10, 3);
    let id = send(&s.intake, "r").await;
    run_until_idle(&s).await;
    let event = s.store.get_event(id).await.unwrap().unwrap();
    assert_eq!(event.state, EventState::Failed);
    assert_eq!(event.attempts, 3);
    assert!(event.last_error.unwrap().contains("connection reset"));
    assert!(
        s.store
            .list_alerts(&AlertQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing half-applied"
    );
}

#[tokio::test]
async fn a_storm_of_one_fingerprint_costs_one_triage() {
    let s = setup(0, 5);
    for _ in 0..50 {
        send(&s.intake, "same rule").await;
        s.worker.run_once().await.unwrap();
    }
    run_until_idle(&s).await;
    assert_eq!(s.policy.triaged.load(Ordering::SeqCst), 1);
    let tickets = s
        .store
        .list_tickets(&TicketQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].alert_count, 50);
}

#[tokio::test]
async fn a_storm_leased_in_batches_costs_one_triage_and_one_ticket() {
    let s = setup(0, 5);
    for _ in 0..50 {
        send(&s.intake, "same rule").await;
    }
    send(&s.intake, "another rule").await;
    run_until_idle(&s).await;
    assert_eq!(
        s.policy.triaged.load(Ordering::SeqCst),
        2,
        "one triage per fingerprint, though the first batch opens the ticket"
    );
    let mut tickets = s
        .store
        .list_tickets(&TicketQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    tickets.sort_by_key(|t| t.alert_count);
    let counts: Vec<u64> = tickets.iter().map(|t| t.alert_count).collect();
    assert_eq!(counts, [1, 50]);
    let processed = s
        .store
        .list_events(&EventQuery {
            state: Some(EventState::Processed),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(processed.len(), 51);
}

#[tokio::test]
async fn a_failed_batch_is_retried_event_by_event_and_nothing_is_half_applied() {
    let s = setup(1, 5);
    let ids = [
        send(&s.intake, "a").await,
        send(&s.intake, "b").await,
        send(&s.intake, "a").await,
    ];
    run_until_idle(&s).await;
    for id in ids {
        let event = s.store.get_event(id).await.unwrap().unwrap();
        assert_eq!(event.state, EventState::Processed);
        assert_eq!(
            event.attempts, 2,
            "the failed batch counted one attempt each"
        );
    }
    let mut counts: Vec<u64> = s
        .store
        .list_tickets(&TicketQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .iter()
        .map(|t| t.alert_count)
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2]);
}

#[tokio::test]
async fn an_event_the_database_cannot_store_fails_alone_and_at_once_while_its_batch_completes() {
    let s = setup(0, 5);
    let good_a = send(&s.intake, "r").await;
    let poisoned = send_body(
        &s.intake,
        serde_json::json!({"rule": "r", "payload": "nul \u{0} byte"}),
        Utc::now(),
    )
    .await;
    let good_b = send(&s.intake, "r").await;
    assert_eq!(s.worker.run_once().await.unwrap(), 3, "one batch");
    run_until_idle(&s).await;

    for id in [good_a, good_b] {
        let e = s.store.get_event(id).await.unwrap().unwrap();
        assert_eq!((e.state, e.attempts), (EventState::Processed, 1));
    }
    let e = s.store.get_event(poisoned).await.unwrap().unwrap();
    assert_eq!(e.state, EventState::Failed);
    assert_eq!(e.attempts, 1, "a data error is not retried");
    let error = e.last_error.unwrap();
    assert!(error.contains("rejected the data"), "{error}");
    assert!(error.contains("22P05"), "{error}");
    let tickets = tickets(&s.store).await;
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        tickets[0].alert_count, 2,
        "the good events became one ticket"
    );
}

#[tokio::test]
async fn a_poison_event_whose_lease_keeps_expiring_is_failed_after_max_attempts() {
    let s = setup(0, 3);
    let poison = send(&s.intake, "hangs its worker").await;
    // Three workers in turn lease it and die (or hang) without completing it.
    for attempt in 1..=3 {
        let now = s.store.now().await.unwrap();
        let leased = s
            .store
            .lease_events(1, now, now + chrono::Duration::seconds(60), 3)
            .await
            .unwrap();
        assert_eq!(
            (leased[0].event.id, leased[0].event.attempts),
            (poison, attempt)
        );
        s.flaky.inner.advance_clock(chrono::Duration::seconds(61));
    }
    let healthy = send(&s.intake, "fine").await;
    s.flaky.inner.advance_clock(chrono::Duration::seconds(1));
    assert_eq!(
        s.worker.run_once().await.unwrap(),
        1,
        "only the healthy event is handed out"
    );
    let e = s.store.get_event(poison).await.unwrap().unwrap();
    assert_eq!(e.state, EventState::Failed);
    assert!(e.last_error.unwrap().contains("lease expired"));
    let e = s.store.get_event(healthy).await.unwrap().unwrap();
    assert_eq!(e.state, EventState::Processed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_batch_keeps_its_lease_by_extending_it() {
    let s = setup_with(
        0,
        WorkerSettings {
            lease: Duration::from_millis(600),
            ..WorkerSettings::default()
        },
    );
    let slow = send_body(
        &s.intake,
        serde_json::json!({"rule": "slow", "sleep_ms": 1_500}),
        Utc::now(),
    )
    .await;
    let worker = s.worker.clone();
    let running = tokio::spawn(async move { worker.run_once().await.unwrap() });
    // Another worker keeps trying to take the event over while the policy is busy with it.
    let mut stolen = 0;
    for _ in 0..13 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = s.store.now().await.unwrap();
        stolen += s
            .store
            .lease_events(10, now, now + chrono::Duration::seconds(60), 5)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(running.await.unwrap(), 1);
    assert_eq!(
        stolen, 0,
        "the lease outlived its 600 ms while the batch ran"
    );
    let e = s.store.get_event(slow).await.unwrap().unwrap();
    assert_eq!((e.state, e.attempts), (EventState::Processed, 1));
}

#[tokio::test]
async fn alerts_that_arrived_further_apart_than_the_window_get_two_tickets_though_processed_together()
 {
    let s = setup(0, 5);
    let now = Utc::now();
    send_body(
        &s.intake,
        serde_json::json!({"rule": "same"}),
        now - chrono::Duration::hours(50),
    )
    .await;
    send_body(
        &s.intake,
        serde_json::json!({"rule": "same"}),
        now - chrono::Duration::hours(25),
    )
    .await;
    assert_eq!(
        s.worker.run_once().await.unwrap(),
        2,
        "one batch, 25 h late"
    );
    let tickets = tickets(&s.store).await;
    assert_eq!(
        tickets.len(),
        2,
        "25 h apart with a 24 h window: two groups, as they arrived"
    );
    assert_eq!(
        tickets.iter().map(|t| t.alert_count).collect::<Vec<_>>(),
        [1, 1]
    );
    assert_eq!(tickets[0].last_seen, us(now - chrono::Duration::hours(50)));
    assert_eq!(tickets[1].first_seen, us(now - chrono::Duration::hours(25)));
}

#[tokio::test]
async fn an_alert_processed_30_hours_late_joins_the_ticket_of_one_that_arrived_an_hour_before_it() {
    let s = setup(0, 5);
    let first_arrival = s.store.now().await.unwrap();
    send_body(
        &s.intake,
        serde_json::json!({"rule": "same"}),
        first_arrival,
    )
    .await;
    s.worker.run_once().await.unwrap();

    s.flaky.inner.advance_clock(chrono::Duration::hours(1));
    let second_arrival = s.store.now().await.unwrap();
    send_body(
        &s.intake,
        serde_json::json!({"rule": "same"}),
        second_arrival,
    )
    .await;
    // The worker is down for 30 hours; then it catches up.
    s.flaky.inner.advance_clock(chrono::Duration::hours(30));
    assert_eq!(s.worker.run_once().await.unwrap(), 1);

    let tickets = tickets(&s.store).await;
    assert_eq!(tickets.len(), 1, "1 h apart: one group, however late");
    assert_eq!(tickets[0].alert_count, 2);
    assert_eq!(
        (tickets[0].first_seen, tickets[0].last_seen),
        (first_arrival, second_arrival)
    );
    assert_eq!(s.policy.triaged.load(Ordering::SeqCst), 1);
}

/// What the databases keep of a timestamp.
fn us(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    heron_core::testing::conformance::us(t)
}
