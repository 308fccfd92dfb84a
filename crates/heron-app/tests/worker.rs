#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The worker against the in-memory store and a scripted policy engine: retries, failure,
//! deduplication before triage.

use async_trait::async_trait;
use chrono::Utc;
use heron_app::{Intake, PolicyHandle, Worker, WorkerSettings};
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::*;
use heron_core::testing::InMemoryStore;
use heron_core::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// One alert per event titled by the event's `rule`; counts triage calls.
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

/// Delegates to the in-memory store, but fails the next `failures` completions (single or
/// batch) as a database outage would.
struct FlakyStore {
    inner: InMemoryStore,
    failures: AtomicUsize,
}

/// An impl of `$port` whose methods forward to the in-memory store.
macro_rules! delegate {
    ($port:ident { $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* } $($extra:item)*) => {
        #[async_trait]
        impl $port for FlakyStore {
            $(async fn $name(&self, $($arg: $ty),*) -> $ret { self.inner.$name($($arg),*).await })*
            $($extra)*
        }
    };
}

delegate!(EventLog {
        accept_event(event: NewEvent) -> StoreResult<Accepted>;
        get_event(id: EventId) -> StoreResult<Option<Event>>;
        list_events(query: &EventQuery) -> StoreResult<Page<Event>>;
        retry_event(id: EventId, now: Timestamp) -> StoreResult<Event>;
        retry_failed_events(now: Timestamp) -> StoreResult<u64>;
        queue_stats(now: Timestamp) -> StoreResult<QueueStats>;
});

delegate!(EventQueue {
        lease_events(limit: usize, now: Timestamp, lease_until: Timestamp) -> StoreResult<Vec<LeasedEvent>>;
        find_dedup_ticket(fingerprint: &Fingerprint, seen_since: Timestamp) -> StoreResult<Option<TicketId>>;
        fail_event(lease: &Lease, error: &str, retry_at: Option<Timestamp>) -> StoreResult<()>;
        release_event(lease: &Lease) -> StoreResult<()>;
    }
    async fn complete_event(&self, lease: &Lease, alerts: Vec<PlannedAlert>, now: Timestamp) -> StoreResult<Vec<AlertBinding>> {
        let failing = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing {
            return Err(StoreError::Unavailable("connection reset".into()));
        }
        self.inner.complete_event(lease, alerts, now).await
    }
    /// A failing batch fails as a whole: one transaction, nothing stored.
    async fn complete_events(&self, batch: Vec<(Lease, Vec<PlannedAlert>)>, now: Timestamp) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        let failing = self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing {
            return Err(StoreError::Unavailable("connection reset".into()));
        }
        self.inner.complete_events(batch, now).await
    }
);

delegate!(TicketRepository {
        get_ticket(id: TicketId) -> StoreResult<Option<Ticket>>;
        list_tickets(query: &TicketQuery) -> StoreResult<Page<Ticket>>;
        update_ticket(ticket: &Ticket) -> StoreResult<Ticket>;
        count_tickets_by_status() -> StoreResult<Vec<(TicketStatus, u64)>>;
        add_comment(comment: Comment) -> StoreResult<Comment>;
        list_comments(ticket: TicketId) -> StoreResult<Vec<Comment>>;
});

delegate!(AlertRepository {
        get_alert(id: AlertId) -> StoreResult<Option<Alert>>;
        list_alerts(query: &AlertQuery) -> StoreResult<Page<Alert>>;
});

delegate!(NoticeRepository {
        get_notice(id: NoticeId) -> StoreResult<Option<Notice>>;
        list_notices(query: &NoticeQuery) -> StoreResult<Page<Notice>>;
        escalate_notice(id: NoticeId, ticket: ticket::NewTicket) -> StoreResult<Ticket>;
});

#[async_trait]
impl Store for FlakyStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "flaky-memory"
    }
}

struct Setup {
    store: Arc<dyn Store>,
    policy: Arc<CountingPolicy>,
    worker: Worker,
    intake: Intake,
}

fn setup(failures: usize, max_attempts: u32) -> Setup {
    let store: Arc<dyn Store> = Arc::new(FlakyStore {
        inner: InMemoryStore::new(),
        failures: AtomicUsize::new(failures),
    });
    let policy = Arc::new(CountingPolicy::default());
    let settings = WorkerSettings {
        max_attempts,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..WorkerSettings::default()
    };
    let wake = Arc::new(Notify::new());
    let worker = Worker::new(
        store.clone(),
        PolicyHandle::new(policy.clone()),
        settings,
        wake.clone(),
    );
    Setup {
        intake: Intake::new(store.clone(), wake),
        store,
        policy,
        worker,
    }
}

async fn send(intake: &Intake, rule: &str) -> EventId {
    let event = NewEvent {
        id: EventId::new(),
        schema: SchemaName::parse("test").unwrap(),
        source: EventSource::Raw,
        body: serde_json::json!({ "rule": rule }).to_string(),
        metadata: serde_json::json!({}),
        idempotency_key: None,
        received_at: Utc::now(),
    };
    intake.accept(event).await.unwrap().event_id
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
