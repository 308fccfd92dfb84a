//! A store for application tests: the in-memory store, with database failures on demand.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use heron_core::access::AccessStore;
use heron_core::agent::AgentRun;
use heron_core::investigation::*;
use heron_core::ports::*;
use heron_core::slack::*;
use heron_core::testing::InMemoryStore;
use heron_core::testing::conformance::{new_alert, new_event};
use heron_core::tool::{ToolCache, ToolCacheError};
use heron_core::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Delegates to the in-memory store, but fails the next `failures` completions (single or
/// batch) as a database outage would, and refuses U+0000 in alert data as PostgreSQL does
/// (`Invalid`: a batch holding such an alert fails as a whole).
///
/// With `storm` set, an alert attaches to a ticket right before each of its updates is
/// stored, as one would during an alert storm between an analyst's read and write.
pub struct FlakyStore {
    pub inner: InMemoryStore,
    pub failures: AtomicUsize,
    pub storm: AtomicBool,
}

impl FlakyStore {
    pub fn new(failures: usize) -> Self {
        Self {
            inner: InMemoryStore::new(),
            failures: AtomicUsize::new(failures),
            storm: AtomicBool::new(false),
        }
    }

    /// Accepts a new event now and leases it, as a worker would before completing it.
    pub async fn lease_new_event(&self) -> (LeasedEvent, Timestamp) {
        let now = self.inner.now().await.unwrap();
        let id = self
            .inner
            .accept_event(new_event("test", None, now))
            .await
            .unwrap()
            .event_id;
        let mut leased = self
            .inner
            .lease_events(1, now, now + chrono::Duration::seconds(60), 5)
            .await
            .unwrap();
        assert_eq!(leased[0].event.id, id);
        (leased.remove(0), now)
    }

    /// Attaches one more alert to `ticket` (its fingerprint must be `fp-storm`).
    async fn attach_one(&self, ticket: &Ticket) {
        let (leased, now) = self.lease_new_event().await;
        let planned = PlannedAlert {
            alert: new_alert(leased.event.id, "test", "storm", now),
            disposition: Disposition::Attach {
                ticket_id: ticket.id,
                seen_since: now - chrono::Duration::hours(1),
            },
        };
        self.inner
            .complete_event(&leased.lease, vec![planned], now)
            .await
            .unwrap();
    }

    fn outage(&self) -> bool {
        self.failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn holds_nul(alerts: &[PlannedAlert]) -> bool {
    alerts
        .iter()
        .any(|a| a.alert.data.to_string().contains("\\u0000"))
}

fn nul_rejected() -> StoreError {
    StoreError::Invalid("unsupported Unicode escape sequence (SQLSTATE 22P05)".into())
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
        accept_events(events: Vec<NewEvent>) -> StoreResult<Vec<Accepted>>;
        get_event(id: EventId) -> StoreResult<Option<Event>>;
        list_events(query: &EventQuery) -> StoreResult<Page<Event>>;
        retry_event(id: EventId, now: Timestamp) -> StoreResult<Event>;
        retry_failed_events(now: Timestamp) -> StoreResult<u64>;
        queue_stats(now: Timestamp) -> StoreResult<QueueStats>;
});

delegate!(EventHistory {
        scan_events(scan: &EventScan) -> StoreResult<Vec<Event>>;
});

delegate!(EventQueue {
        now() -> StoreResult<Timestamp>;
        lease_events(limit: usize, now: Timestamp, lease_until: Timestamp, max_attempts: u32) -> StoreResult<Vec<LeasedEvent>>;
        extend_lease(lease: &Lease, until: Timestamp) -> StoreResult<()>;
        find_dedup_ticket(fingerprint: &Fingerprint, seen_since: Timestamp) -> StoreResult<Option<TicketId>>;
        fail_event(lease: &Lease, error: &str, retry_at: Option<Timestamp>) -> StoreResult<()>;
        release_event(lease: &Lease) -> StoreResult<()>;
        hold_event(lease: &Lease, note: &str) -> StoreResult<()>;
        resume_waiting_events(now: Timestamp, limit: u64) -> StoreResult<u64>;
    }
    async fn complete_event(&self, lease: &Lease, alerts: Vec<PlannedAlert>, now: Timestamp) -> StoreResult<Vec<AlertBinding>> {
        if self.outage() {
            return Err(StoreError::Unavailable("connection reset".into()));
        }
        if holds_nul(&alerts) {
            return Err(nul_rejected());
        }
        self.inner.complete_event(lease, alerts, now).await
    }
    /// A failing batch fails as a whole: one transaction, nothing stored.
    async fn complete_events(&self, batch: Vec<(Lease, Vec<PlannedAlert>)>, now: Timestamp) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        if self.outage() {
            return Err(StoreError::Unavailable("connection reset".into()));
        }
        if batch.iter().any(|(_, alerts)| holds_nul(alerts)) {
            return Err(nul_rejected());
        }
        self.inner.complete_events(batch, now).await
    }
);

delegate!(TicketRepository {
        get_ticket(id: TicketId) -> StoreResult<Option<Ticket>>;
        list_tickets(query: &TicketQuery) -> StoreResult<Page<Ticket>>;
        count_tickets_by_status() -> StoreResult<Vec<(TicketStatus, u64)>>;
        dashboard_metrics(since: Timestamp, until: Timestamp) -> StoreResult<heron_core::dashboard::DashboardMetrics>;
        add_comment(comment: Comment) -> StoreResult<Comment>;
        list_comments(ticket: TicketId) -> StoreResult<Vec<Comment>>;
    }
    async fn update_ticket(&self, ticket: &Ticket) -> StoreResult<Ticket> {
        if self.storm.load(Ordering::SeqCst) {
            self.attach_one(ticket).await;
        }
        self.inner.update_ticket(ticket).await
    }
);

delegate!(AlertRepository {
        get_alert(id: AlertId) -> StoreResult<Option<Alert>>;
        list_alerts(query: &AlertQuery) -> StoreResult<Page<Alert>>;
        tickets_of_events(events: &[EventId]) -> StoreResult<Vec<TicketId>>;
        bind_alert(alert: AlertId, ticket: TicketId) -> StoreResult<Alert>;
});

delegate!(NoticeRepository {
        get_notice(id: NoticeId) -> StoreResult<Option<Notice>>;
        list_notices(query: &NoticeQuery) -> StoreResult<Page<Notice>>;
        escalate_notice(id: NoticeId, ticket: ticket::NewTicket) -> StoreResult<Ticket>;
});

delegate!(AgentStore {
        lease_triage(limit: usize, now: Timestamp, lease_until: Timestamp, max_attempts: u32) -> StoreResult<Vec<TriageLease>>;
        extend_triage_lease(lease: &TriageLease, until: Timestamp) -> StoreResult<()>;
        finish_triage(lease: &TriageLease, outcome: TriageOutcome, now: Timestamp) -> StoreResult<()>;
        fail_triage(lease: &TriageLease, error: &str, retry_at: Option<Timestamp>) -> StoreResult<()>;
        release_triage(lease: &TriageLease) -> StoreResult<()>;
        requeue_triage(ticket: TicketId, now: Timestamp) -> StoreResult<TriageJob>;
        get_triage_job(ticket: TicketId) -> StoreResult<Option<TriageJob>>;
        triage_stats(now: Timestamp) -> StoreResult<TriageStats>;
        save_agent_run(run: &AgentRun) -> StoreResult<()>;
        list_agent_runs(ticket: TicketId) -> StoreResult<Vec<AgentRun>>;
        tokens_spent_since(since: Timestamp) -> StoreResult<u64>;
});

delegate!(EmbeddingStore {
        put_ticket_embedding(ticket: TicketId, model: &str, vector: &[f32]) -> StoreResult<()>;
        get_ticket_embedding(ticket: TicketId, model: &str) -> StoreResult<Option<Vec<f32>>>;
        similar_tickets(model: &str, vector: &[f32], limit: usize, exclude: Option<TicketId>) -> StoreResult<Vec<SimilarTicket>>;
        alerts_to_embed(limit: usize) -> StoreResult<Vec<Alert>>;
        put_alert_embeddings(model: &str, vectors: &[(AlertId, Vec<f32>)]) -> StoreResult<()>;
        skip_alert_embeddings(alerts: &[AlertId]) -> StoreResult<()>;
        get_alert_embedding(alert: AlertId, model: &str) -> StoreResult<Option<Vec<f32>>>;
});

delegate!(SlackStore {
        discover_slack_subjects(since: Timestamp, now: Timestamp) -> StoreResult<u64>;
        request_slack_sync(subject: SlackSubject, now: Timestamp) -> StoreResult<()>;
        open_thread_ticket(ticket: ticket::NewTicket, thread: &MessageRef, now: Timestamp) -> StoreResult<Ticket>;
        lease_slack_syncs(limit: usize, now: Timestamp, lease_until: Timestamp) -> StoreResult<Vec<SlackSyncLease>>;
        finish_slack_sync(lease: &SlackSyncLease, posted: Option<&Posted>, next_due: Timestamp, now: Timestamp) -> StoreResult<()>;
        fail_slack_sync(lease: &SlackSyncLease, posted: Option<&Posted>, error: &str, retry_at: Option<Timestamp>, now: Timestamp) -> StoreResult<()>;
        get_slack_thread(subject: SlackSubject) -> StoreResult<Option<SlackThread>>;
        find_slack_thread(thread: &MessageRef) -> StoreResult<Option<SlackThread>>;
        link_slack_message(link: &SlackMessageLink) -> StoreResult<bool>;
        find_slack_message(message: &MessageRef) -> StoreResult<Option<SlackMessageLink>>;
        slack_linked_comments(ticket: TicketId) -> StoreResult<Vec<CommentId>>;
        edit_comment(id: CommentId, text: &str) -> StoreResult<Comment>;
        delete_comment(id: CommentId) -> StoreResult<()>;
        accept_slack_delivery(delivery: &NewSlackDelivery) -> StoreResult<bool>;
        lease_slack_deliveries(limit: usize, now: Timestamp, lease_until: Timestamp) -> StoreResult<Vec<SlackDelivery>>;
        finish_slack_delivery(delivery: &SlackDelivery, error: Option<&str>, retry_at: Option<Timestamp>, now: Timestamp) -> StoreResult<()>;
        claim_slack_chat(thread: &MessageRef, holder: uuid::Uuid, now: Timestamp, stale_before: Timestamp) -> StoreResult<bool>;
        renew_slack_chat(thread: &MessageRef, holder: uuid::Uuid, now: Timestamp) -> StoreResult<bool>;
        abort_slack_chat(thread: &MessageRef) -> StoreResult<bool>;
        release_slack_chat(thread: &MessageRef, holder: uuid::Uuid) -> StoreResult<()>;
});

delegate!(AccessStore {
        create_api_token(token: access::NewApiToken, audit: access::AuditEntry) -> StoreResult<access::ApiToken>;
        find_api_token(hash: &str) -> StoreResult<Option<access::ApiToken>>;
        list_api_tokens() -> StoreResult<Vec<access::ApiToken>>;
        revoke_api_token(token: &access::TokenRef, at: Timestamp, audit: access::AuditEntry) -> StoreResult<access::ApiToken>;
        touch_api_tokens(used: &[(TokenId, Timestamp)]) -> StoreResult<()>;
        record_audit(entry: access::AuditEntry) -> StoreResult<()>;
        list_audit(query: &access::AuditQuery) -> StoreResult<Page<access::AuditEntry>>;
});

delegate!(ToolCache {
        get(key: &str, now: Timestamp) -> Result<Option<String>, ToolCacheError>;
        put(key: &str, value: &str, expires_at: Timestamp) -> Result<(), ToolCacheError>;
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
