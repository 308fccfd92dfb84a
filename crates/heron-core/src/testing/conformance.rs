//! The conformance suite: what every [`Store`] must do, one case per documented behaviour of
//! the ports in [`crate::ports`]. Each case takes a fresh, empty store; run them all with
//! [`crate::conformance_tests!`].
//!
//! Cases pass time explicitly (no sleeping): a fixed fake clock (`at(seconds)`) drives leases,
//! retries and dedup windows. Stored timestamps are compared truncated to the microsecond,
//! the precision both databases keep.

// This is test code: a failed expectation must panic with its message, and a panic is the
// report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::agent::{
    AgentRun, AgentStep, BudgetKind, Finding, FindingSeverity, RunPurpose, RunStatus, StepKind,
    Verdict,
};
use crate::alert::{AlertStatus, MetadataSource};
use crate::dashboard::{
    DayValue, SortDirection, TicketCursor, TicketSort, TicketSortKey, TicketTimes, WeeklyTimes,
};
use crate::investigation::{TriageJob, TriageJobState, TriageLease, TriageOutcome, TriageStats};
use crate::llm::TokenUsage;
use crate::ports::{
    AlertBinding, AlertQuery, Disposition, EventQuery, EventScan, Lease, LeasedEvent, NewAlert,
    NoticeQuery, PlannedAlert, QueueStats, Store, StoreError, TicketQuery,
};
use crate::ticket::NewTicket;
use crate::{
    AlertId, Attribute, Comment, CommentId, CommentSource, Conclusion, EventId, EventSource,
    EventState, Fingerprint, NewEvent, NoticeId, SchemaName, Severity, Ticket, TicketChange,
    TicketId, TicketStatus, Timestamp,
};
use chrono::{DateTime, Duration, Timelike};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub use super::access_conformance::*;

type Shared = Arc<dyn Store>;

type TicketSpec = (
    &'static str,
    Severity,
    Option<&'static str>,
    &'static [&'static str],
    &'static str,
    &'static str,
);

/// The fake clock: `secs` seconds after 2023-11-14T22:13:20Z.
pub fn at(secs: i64) -> Timestamp {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("in range")
}

/// What a store keeps of `t`: microsecond precision.
pub fn us(t: Timestamp) -> Timestamp {
    t.with_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("valid")
}

fn schema(name: &str) -> SchemaName {
    SchemaName::parse(name).expect("valid schema name")
}

fn fp(key: &str) -> Fingerprint {
    Fingerprint::from_stored(format!("fp-{key}"))
}

/// Window used by dedup cases: one hour.
const WINDOW: i64 = 3_600;

/// `max_attempts` for leasing, in cases that do not exhaust it.
const MAX_ATTEMPTS: u32 = 5;

pub fn new_event(schema_name: &str, key: Option<&str>, received_at: Timestamp) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        schema: schema(schema_name),
        source: EventSource::Raw,
        body: r#"{"detail": {"type": "Recon:EC2/PortProbe"}}"#.to_owned(),
        metadata: json!({"topic": "alerts"}),
        idempotency_key: key.map(str::to_owned),
        received_at,
    }
}

async fn accept(store: &Shared, schema_name: &str, received_at: Timestamp) -> EventId {
    let accepted = store
        .accept_event(new_event(schema_name, None, received_at))
        .await
        .unwrap();
    assert!(!accepted.duplicate);
    accepted.event_id
}

async fn event(store: &Shared, id: EventId) -> crate::Event {
    store.get_event(id).await.unwrap().expect("event exists")
}

async fn ticket(store: &Shared, id: TicketId) -> Ticket {
    store.get_ticket(id).await.unwrap().expect("ticket exists")
}

/// Leases exactly the one due event the case expects.
async fn lease_only(store: &Shared, id: EventId, now: Timestamp) -> LeasedEvent {
    let mut leased = store
        .lease_events(10, now, now + Duration::seconds(300), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1, "exactly one due event");
    let leased = leased.remove(0);
    assert_eq!(leased.event.id, id);
    leased
}

pub fn new_alert(
    event_id: EventId,
    schema_name: &str,
    key: &str,
    created_at: Timestamp,
) -> NewAlert {
    NewAlert {
        id: AlertId::new(),
        event_id,
        schema: schema(schema_name),
        title: format!("Port probe {key}"),
        description: "Unprotected port probed".to_owned(),
        // Not the defaults, so that a store dropping them fails the round trips.
        title_source: MetadataSource::Llm,
        description_source: MetadataSource::Default,
        attributes: vec![Attribute {
            key: "ip".to_owned(),
            value: "192.0.2.1".to_owned(),
            link: Some("https://example.test/ip/192.0.2.1".to_owned()),
        }],
        tags: vec!["recon".to_owned()],
        severity: Severity::High,
        fingerprint: fp(key),
        channel: Some("#alerts".to_owned()),
        data: json!({"detail": {"type": "Recon:EC2/PortProbe"}, "n": 1.5}),
        created_at,
    }
}

pub fn new_ticket_for(alert: &NewAlert) -> NewTicket {
    NewTicket {
        id: TicketId::new(),
        title: alert.title.clone(),
        description: alert.description.clone(),
        schema: alert.schema.clone(),
        severity: alert.severity,
        assignee: Some("alice".to_owned()),
        tags: vec!["recon".to_owned(), "ec2".to_owned()],
        attributes: alert.attributes.clone(),
        channel: alert.channel.clone(),
        fingerprint: alert.fingerprint.clone(),
        created_at: alert.created_at + Duration::milliseconds(5),
    }
}

fn open(alert: NewAlert, now: Timestamp) -> PlannedAlert {
    let ticket = new_ticket_for(&alert);
    PlannedAlert {
        alert,
        disposition: Disposition::Open {
            ticket,
            seen_since: now - Duration::seconds(WINDOW),
        },
    }
}

fn attach(alert: NewAlert, ticket_id: TicketId, now: Timestamp) -> PlannedAlert {
    PlannedAlert {
        alert,
        disposition: Disposition::Attach {
            ticket_id,
            seen_since: now - Duration::seconds(WINDOW),
        },
    }
}

fn discard(alert: NewAlert) -> PlannedAlert {
    PlannedAlert {
        alert,
        disposition: Disposition::Discard,
    }
}

/// Accepts an event at `now`, leases it and completes it with what `plan` makes of it.
async fn ingest(
    store: &Shared,
    now: Timestamp,
    plan: impl FnOnce(EventId) -> Vec<PlannedAlert>,
) -> Vec<AlertBinding> {
    let id = accept(store, "guardduty", now).await;
    let leased = lease_only(store, id, now).await;
    store
        .complete_event(&leased.lease, plan(id), now)
        .await
        .unwrap()
}

/// Opens a ticket for fingerprint `key` with one alert seen at `now`.
async fn open_ticket(store: &Shared, key: &str, now: Timestamp) -> TicketId {
    let bindings = ingest(store, now, |id| {
        vec![open(new_alert(id, "guardduty", key, now), now)]
    })
    .await;
    match bindings.as_slice() {
        [AlertBinding::Opened(id)] => *id,
        other => panic!("expected one opened ticket, got {other:?}"),
    }
}

fn resolve_change() -> TicketChange {
    TicketChange {
        status: Some(TicketStatus::Resolved),
        conclusion: Some(Conclusion::FalsePositive),
        reason: Some("scanner".to_owned()),
        ..TicketChange::default()
    }
}

async fn change(store: &Shared, id: TicketId, change: TicketChange, now: Timestamp) -> Ticket {
    let mut t = ticket(store, id).await;
    t.apply(&change, now).unwrap();
    store.update_ticket(&t).await.unwrap()
}

fn cursor<T: std::str::FromStr>(next: &Option<String>) -> Option<T>
where
    T::Err: std::fmt::Debug,
{
    next.as_ref().map(|c| c.parse().expect("cursor is an id"))
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Conflict(_))),
        "{what}: expected Conflict, got {result:?}"
    );
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::NotFound(_))),
        "{what}: expected NotFound, got {result:?}"
    );
}

fn assert_lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>, id: EventId, what: &str) {
    assert!(
        matches!(result, Err(StoreError::LeaseLost(lost)) if lost == id),
        "{what}: expected LeaseLost({id}), got {result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Event log
// ---------------------------------------------------------------------------------------------

pub async fn accepted_event_is_stored_verbatim_as_pending_and_due(store: Shared) {
    let received = at(0) + Duration::microseconds(123_456);
    let body = "{ \"b\" : 1,\n  \"a\": [1, 2.50, \"é\\u00e9\"] }  ";
    let new = NewEvent {
        body: body.to_owned(),
        metadata: json!({"attributes": {"k": "v"}, "n": 3}),
        source: EventSource::Pubsub,
        ..new_event("guardduty", Some("delivery-1"), received)
    };
    let accepted = store.accept_event(new.clone()).await.unwrap();
    assert_eq!(accepted.event_id, new.id);
    assert!(!accepted.duplicate);

    let stored = event(&store, new.id).await;
    assert_eq!(stored.body, body, "the body is kept byte for byte");
    assert_eq!(stored.schema, new.schema);
    assert_eq!(stored.source, EventSource::Pubsub);
    assert_eq!(stored.metadata, new.metadata);
    assert_eq!(stored.idempotency_key.as_deref(), Some("delivery-1"));
    assert_eq!(stored.state, EventState::Pending);
    assert_eq!(stored.attempts, 0);
    assert_eq!(stored.last_error, None);
    assert_eq!(stored.received_at, received);
    assert_eq!(stored.processed_at, None);
    assert_eq!(stored.next_attempt_at, Some(received), "due at once");

    let leased = lease_only(&store, new.id, received).await;
    assert_eq!(leased.event.body, body);
}

pub async fn duplicate_idempotency_key_returns_the_first_event(store: Shared) {
    let first = new_event("guardduty", Some("k-1"), at(0));
    store.accept_event(first.clone()).await.unwrap();
    let again = NewEvent {
        body: "{\"other\": true}".to_owned(),
        ..new_event("guardduty", Some("k-1"), at(5))
    };
    let accepted = store.accept_event(again.clone()).await.unwrap();
    assert_eq!(accepted.event_id, first.id);
    assert!(accepted.duplicate);
    assert_eq!(store.get_event(again.id).await.unwrap(), None);
    assert_eq!(event(&store, first.id).await.body, first.body);

    // Even after the first event was processed, the key still maps to it.
    let leased = lease_only(&store, first.id, at(10)).await;
    store
        .complete_event(&leased.lease, vec![], at(10))
        .await
        .unwrap();
    let third = store
        .accept_event(new_event("guardduty", Some("k-1"), at(20)))
        .await
        .unwrap();
    assert_eq!((third.event_id, third.duplicate), (first.id, true));
    let all = store
        .list_events(&EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
}

pub async fn idempotency_keys_are_per_schema_and_optional(store: Shared) {
    let a = store
        .accept_event(new_event("guardduty", Some("same"), at(0)))
        .await
        .unwrap();
    let b = store
        .accept_event(new_event("falco", Some("same"), at(0)))
        .await
        .unwrap();
    assert!(!a.duplicate && !b.duplicate);
    assert_ne!(a.event_id, b.event_id);

    let c = store
        .accept_event(new_event("falco", None, at(0)))
        .await
        .unwrap();
    let d = store
        .accept_event(new_event("falco", None, at(0)))
        .await
        .unwrap();
    assert!(!c.duplicate && !d.duplicate);
    assert_ne!(c.event_id, d.event_id);
}

pub async fn accepting_an_existing_event_id_conflicts(store: Shared) {
    let new = new_event("guardduty", None, at(0));
    store.accept_event(new.clone()).await.unwrap();
    assert_conflict(store.accept_event(new).await, "same event id twice");
}

pub async fn unknown_ids_read_as_none(store: Shared) {
    assert_eq!(store.get_event(EventId::new()).await.unwrap(), None);
    assert_eq!(store.get_alert(AlertId::new()).await.unwrap(), None);
    assert_eq!(store.get_ticket(TicketId::new()).await.unwrap(), None);
    assert_eq!(store.get_notice(NoticeId::new()).await.unwrap(), None);
    assert_eq!(store.list_comments(TicketId::new()).await.unwrap(), vec![]);
    assert_eq!(
        store.find_dedup_ticket(&fp("none"), at(0)).await.unwrap(),
        None
    );
}

pub async fn listing_paginates_newest_first_with_filters(store: Shared) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let schema_name = if i % 3 == 2 { "falco" } else { "guardduty" };
        ids.push(accept(&store, schema_name, at(i)).await);
    }
    // The two oldest become ignored.
    let leased = store
        .lease_events(2, at(100), at(200), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        ids[..2].to_vec()
    );
    for l in &leased {
        store
            .complete_event(&l.lease, vec![], at(100))
            .await
            .unwrap();
    }

    let newest_first: Vec<EventId> = ids.iter().rev().copied().collect();
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_events(&EventQuery {
                before,
                limit: 3,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|e| e.id));
        match cursor::<EventId>(&page.next_cursor) {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "the cursor is the last item's id");
                before = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);

    // A page that ends exactly at the last item has no cursor.
    let exact = store
        .list_events(&EventQuery {
            limit: 7,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(exact.items.len(), 7);
    assert_eq!(exact.next_cursor, None);

    let falco = store
        .list_events(&EventQuery {
            schema: Some(schema("falco")),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        falco.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[5], ids[2]]
    );

    let ignored = store
        .list_events(&EventQuery {
            state: Some(EventState::Ignored),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ignored.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]]
    );

    let pending_guardduty = store
        .list_events(&EventQuery {
            state: Some(EventState::Pending),
            schema: Some(schema("guardduty")),
            before: Some(ids[6]),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        pending_guardduty
            .items
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![ids[4]]
    );
    assert_eq!(
        cursor::<EventId>(&pending_guardduty.next_cursor),
        Some(ids[4])
    );
    let rest = store
        .list_events(&EventQuery {
            state: Some(EventState::Pending),
            schema: Some(schema("guardduty")),
            before: Some(ids[4]),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[3]]
    );
    assert_eq!(rest.next_cursor, None);
}

/// Ten events over three schemas and two states, read back in pages of three.
pub async fn scanning_events_reads_oldest_first_in_pages_with_filters(store: Shared) {
    let mut ids = Vec::new();
    for i in 0..10 {
        let schema_name = if i % 3 == 2 { "falco" } else { "guardduty" };
        ids.push(accept(&store, schema_name, at(i * 10)).await);
    }
    // The three oldest become ignored; the rest stay pending.
    let leased = store
        .lease_events(3, at(200), at(300), MAX_ATTEMPTS)
        .await
        .unwrap();
    for l in &leased {
        store
            .complete_event(&l.lease, vec![], at(200))
            .await
            .unwrap();
    }
    let stats_before = store.queue_stats(at(200)).await.unwrap();

    let scan_all = |scan: EventScan| {
        let store = store.clone();
        async move {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .scan_events(&EventScan {
                        after,
                        limit: 3,
                        ..scan.clone()
                    })
                    .await
                    .unwrap();
                assert!(page.len() <= 3);
                let done = page.len() < 3;
                after = page.last().map(|e| e.id);
                seen.extend(page);
                if done {
                    break;
                }
            }
            seen
        }
    };

    let all = scan_all(EventScan::default()).await;
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        all[4].body, r#"{"detail": {"type": "Recon:EC2/PortProbe"}}"#,
        "events come back whole"
    );

    let since = scan_all(EventScan {
        since: Some(at(50)),
        ..EventScan::default()
    })
    .await;
    assert_eq!(
        since.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[5..].to_vec(),
        "since is inclusive"
    );

    let falco = scan_all(EventScan {
        schema: Some(schema("falco")),
        ..EventScan::default()
    })
    .await;
    assert_eq!(
        falco.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2], ids[5], ids[8]]
    );

    let ignored = scan_all(EventScan {
        states: vec![EventState::Ignored, EventState::Failed],
        ..EventScan::default()
    })
    .await;
    assert_eq!(
        ignored.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );

    let one = store
        .scan_events(&EventScan {
            after: Some(ids[8]),
            limit: 0,
            ..EventScan::default()
        })
        .await
        .unwrap();
    assert_eq!(one.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[9]]);
    let none = store
        .scan_events(&EventScan {
            after: Some(ids[9]),
            limit: 5,
            ..EventScan::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());

    assert_eq!(
        store.queue_stats(at(200)).await.unwrap(),
        stats_before,
        "scanning changes nothing"
    );
}

pub async fn retrying_a_processed_event_conflicts(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    assert_conflict(
        store.retry_event(id, at(1)).await,
        "retrying a pending event",
    );
    let leased = lease_only(&store, id, at(1)).await;
    assert_conflict(
        store.retry_event(id, at(1)).await,
        "retrying a processing event",
    );
    store
        .complete_event(
            &leased.lease,
            vec![discard(new_alert(id, "guardduty", "x", at(1)))],
            at(2),
        )
        .await
        .unwrap();
    assert_conflict(
        store.retry_event(id, at(3)).await,
        "retrying a processed event",
    );
    assert_eq!(event(&store, id).await.state, EventState::Processed);
    assert_not_found(
        store.retry_event(EventId::new(), at(3)).await,
        "retrying an unknown event",
    );
}

pub async fn retrying_a_failed_event_makes_it_due_again_without_its_error(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only(&store, id, at(1)).await;
    store
        .fail_event(&leased.lease, "policy error", None)
        .await
        .unwrap();
    assert_eq!(event(&store, id).await.state, EventState::Failed);

    let retried = store.retry_event(id, at(50)).await.unwrap();
    assert_eq!(retried.state, EventState::Pending);
    assert_eq!(retried.last_error, None);
    assert_eq!(retried.next_attempt_at, Some(at(50)));
    assert_eq!(
        retried.attempts, 0,
        "a manual retry gets the full number of attempts again"
    );
    assert_eq!(event(&store, id).await, retried);

    assert!(
        store
            .lease_events(10, at(49), at(100), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );
    let again = lease_only(&store, id, at(50)).await;
    assert_eq!(again.event.attempts, 1);
}

pub async fn retrying_an_ignored_event_makes_it_pending_again(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only(&store, id, at(1)).await;
    store
        .complete_event(&leased.lease, vec![], at(2))
        .await
        .unwrap();
    let retried = store.retry_event(id, at(3)).await.unwrap();
    assert_eq!(retried.state, EventState::Pending);
    assert_eq!(retried.processed_at, None);
    assert_eq!(retried.next_attempt_at, Some(at(3)));
    lease_only(&store, id, at(3)).await;
}

pub async fn retrying_all_failed_events_touches_only_failed_ones(store: Shared) {
    let failed_a = accept(&store, "guardduty", at(0)).await;
    let failed_b = accept(&store, "guardduty", at(1)).await;
    let ignored = accept(&store, "guardduty", at(2)).await;
    let leased = store
        .lease_events(3, at(10), at(20), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(leased.len(), 3);
    for l in &leased {
        if l.event.id == ignored {
            store
                .complete_event(&l.lease, vec![], at(10))
                .await
                .unwrap();
        } else {
            store.fail_event(&l.lease, "boom", None).await.unwrap();
        }
    }
    let pending = accept(&store, "guardduty", at(11)).await;

    assert_eq!(store.retry_failed_events(at(30)).await.unwrap(), 2);
    for id in [failed_a, failed_b] {
        let e = event(&store, id).await;
        assert_eq!(
            (e.state, e.last_error, e.next_attempt_at, e.attempts),
            (EventState::Pending, None, Some(at(30)), 0)
        );
    }
    assert_eq!(event(&store, ignored).await.state, EventState::Ignored);
    assert_eq!(event(&store, pending).await.next_attempt_at, Some(at(11)));
    assert_eq!(store.retry_failed_events(at(31)).await.unwrap(), 0);
}

pub async fn queue_stats_count_pending_processing_and_failed_events(store: Shared) {
    assert_eq!(
        store.queue_stats(at(0)).await.unwrap(),
        QueueStats::default()
    );
    let ids: Vec<EventId> = {
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(accept(&store, "guardduty", at(i)).await);
        }
        ids
    };
    // ids[0] processed, ids[1] failed, ids[2] pending with a future retry, ids[3] processing
    // with an expired lease, ids[4] processing; ids[5] stays pending.
    let leased = store
        .lease_events(5, at(10), at(20), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        ids[..5].to_vec()
    );
    store
        .complete_event(
            &leased[0].lease,
            vec![discard(new_alert(ids[0], "guardduty", "a", at(10)))],
            at(10),
        )
        .await
        .unwrap();
    store
        .fail_event(&leased[1].lease, "boom", None)
        .await
        .unwrap();
    store
        .fail_event(&leased[2].lease, "later", Some(at(1_000)))
        .await
        .unwrap();
    store.release_event(&leased[4].lease).await.unwrap();
    let again = store
        .lease_events(1, at(15), at(100), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(again[0].event.id, ids[4]);

    let stats = store.queue_stats(at(50)).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            pending: 2,
            processing: 2,
            failed: 1,
            waiting: 0,
        }
    );
}

pub async fn a_held_event_waits_unleased_until_resumed_oldest_first_without_spending_an_attempt(
    store: Shared,
) {
    let ids: Vec<EventId> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(accept(&store, "guardduty", at(i)).await);
        }
        ids
    };
    let leased = store
        .lease_events(3, at(10), at(20), MAX_ATTEMPTS)
        .await
        .unwrap();
    for item in &leased {
        store
            .hold_event(&item.lease, "waits for the backlog")
            .await
            .unwrap();
    }
    assert!(
        matches!(
            store.hold_event(&leased[0].lease, "again").await,
            Err(StoreError::LeaseLost(_))
        ),
        "a held event's lease is gone"
    );
    let held = event(&store, ids[0]).await;
    assert_eq!(
        (held.state, held.attempts, held.last_error.as_deref()),
        (EventState::Waiting, 0, Some("waits for the backlog"))
    );
    let stats = store.queue_stats(at(30)).await.unwrap();
    assert_eq!((stats.pending, stats.processing, stats.waiting), (1, 0, 3));
    // Waiting events are not leased, however late it is and however expired their old lease.
    let due = store
        .lease_events(10, at(1_000), at(1_010), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![ids[3]]
    );
    store.fail_event(&due[0].lease, "boom", None).await.unwrap();

    assert_eq!(store.resume_waiting_events(at(2_000), 2).await.unwrap(), 2);
    for id in &ids[..2] {
        let e = event(&store, *id).await;
        assert_eq!(
            (e.state, e.next_attempt_at, e.last_error, e.attempts),
            (EventState::Pending, Some(at(2_000)), None, 0),
            "the oldest come back first, due at once, without the note"
        );
    }
    assert_eq!(event(&store, ids[2]).await.state, EventState::Waiting);
    let again = store
        .lease_events(10, at(2_000), at(2_010), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .map(|l| (l.event.id, l.event.attempts))
            .collect::<Vec<_>>(),
        vec![(ids[0], 1), (ids[1], 1)],
        "a resumed event is leased as a first attempt"
    );
    assert_eq!(store.resume_waiting_events(at(2_000), 10).await.unwrap(), 1);
    assert_eq!(store.resume_waiting_events(at(2_000), 10).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

pub async fn leasing_takes_due_events_oldest_first_and_counts_the_attempt(store: Shared) {
    let second = accept(&store, "guardduty", at(10)).await;
    let first = accept(&store, "falco", at(5)).await;
    let third = accept(&store, "guardduty", at(20)).await;
    let not_due = accept(&store, "guardduty", at(100)).await;

    assert!(
        store
            .lease_events(0, at(50), at(110), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );

    let leased = store
        .lease_events(2, at(50), at(110), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert_ne!(leased[0].lease.token, leased[1].lease.token);
    for l in &leased {
        assert_eq!(l.lease.event_id, l.event.id);
        assert_eq!(l.event.state, EventState::Processing);
        assert_eq!(l.event.attempts, 1);
        let stored = event(&store, l.event.id).await;
        assert_eq!((stored.state, stored.attempts), (EventState::Processing, 1));
    }

    let rest = store
        .lease_events(10, at(50), at(110), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![third]
    );
    assert_eq!(event(&store, not_due).await.state, EventState::Pending);
    let last = store
        .lease_events(10, at(100), at(110), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        last.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![not_due]
    );
}

pub async fn leased_event_is_not_leased_again_while_its_lease_holds(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let first = store
        .lease_events(5, at(0), at(60), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store
            .lease_events(5, at(30), at(90), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .lease_events(5, at(60), at(120), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty(),
        "a lease holds up to and including its expiry"
    );
    let taken = store
        .lease_events(5, at(61), at(120), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].event.id, id);
}

pub async fn expired_lease_is_taken_over_and_the_old_holder_cannot_complete(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let old = store
        .lease_events(1, at(0), at(60), MAX_ATTEMPTS)
        .await
        .unwrap()
        .remove(0);
    let new = store
        .lease_events(1, at(61), at(120), MAX_ATTEMPTS)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(new.event.id, id);
    assert_ne!(new.lease.token, old.lease.token);
    assert_eq!(new.event.attempts, 2);

    let lost_alert = new_alert(id, "guardduty", "lost", at(62));
    let lost_alert_id = lost_alert.id;
    assert_lease_lost(
        store
            .complete_event(&old.lease, vec![open(lost_alert, at(62))], at(62))
            .await,
        id,
        "completing with the old lease",
    );
    assert_lease_lost(
        store.fail_event(&old.lease, "late", None).await,
        id,
        "failing with the old lease",
    );
    assert_lease_lost(
        store.release_event(&old.lease).await,
        id,
        "releasing with the old lease",
    );
    assert_eq!(
        store.get_alert(lost_alert_id).await.unwrap(),
        None,
        "nothing stored"
    );
    assert_eq!(
        store.find_dedup_ticket(&fp("lost"), at(0)).await.unwrap(),
        None
    );
    assert_eq!(event(&store, id).await.state, EventState::Processing);

    let bindings = store
        .complete_event(
            &new.lease,
            vec![discard(new_alert(id, "guardduty", "ok", at(63)))],
            at(63),
        )
        .await
        .unwrap();
    assert_eq!(bindings, vec![AlertBinding::Discarded]);
    let done = event(&store, id).await;
    assert_eq!(
        (done.state, done.attempts, done.processed_at),
        (EventState::Processed, 2, Some(at(63)))
    );
}

pub async fn an_expired_lease_not_yet_taken_over_can_still_complete(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = store
        .lease_events(1, at(0), at(60), MAX_ATTEMPTS)
        .await
        .unwrap()
        .remove(0);
    store
        .complete_event(&leased.lease, vec![], at(100))
        .await
        .unwrap();
    assert_eq!(event(&store, id).await.state, EventState::Ignored);
    assert!(
        store
            .lease_events(5, at(200), at(300), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn failed_event_with_retry_at_is_not_leased_before_it_is_due(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only(&store, id, at(1)).await;
    store
        .fail_event(&leased.lease, "llm timeout", Some(at(100)))
        .await
        .unwrap();
    let e = event(&store, id).await;
    assert_eq!(e.state, EventState::Pending);
    assert_eq!(e.last_error.as_deref(), Some("llm timeout"));
    assert_eq!(e.next_attempt_at, Some(at(100)));
    assert_eq!(e.attempts, 1);

    assert!(
        store
            .lease_events(5, at(99), at(200), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );
    let again = lease_only(&store, id, at(100)).await;
    assert_eq!(again.event.attempts, 2);
    assert_eq!(again.event.last_error.as_deref(), Some("llm timeout"));
    store
        .complete_event(&again.lease, vec![], at(101))
        .await
        .unwrap();
    assert_eq!(
        event(&store, id).await.last_error,
        None,
        "success clears the last error"
    );
}

pub async fn failing_without_retry_at_marks_the_event_failed_with_its_error(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only(&store, id, at(1)).await;
    store
        .fail_event(&leased.lease, "rego: undefined ref", None)
        .await
        .unwrap();
    let e = event(&store, id).await;
    assert_eq!(e.state, EventState::Failed);
    assert_eq!(e.last_error.as_deref(), Some("rego: undefined ref"));
    assert_eq!(e.next_attempt_at, None);
    assert!(
        store
            .lease_events(5, at(1_000_000), at(1_000_100), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty()
    );
    assert_lease_lost(
        store.complete_event(&leased.lease, vec![], at(2)).await,
        id,
        "completing a failed event",
    );
}

pub async fn released_event_is_due_at_once_and_the_attempt_is_not_counted(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let later = accept(&store, "guardduty", at(5)).await;
    let leased = lease_only_first(&store, at(10)).await;
    assert_eq!((leased.event.id, leased.event.attempts), (id, 1));
    store.release_event(&leased.lease).await.unwrap();
    let e = event(&store, id).await;
    assert_eq!((e.state, e.attempts), (EventState::Pending, 0));

    let again = lease_only_first(&store, at(10)).await;
    assert_eq!(
        again.event.id, id,
        "a released event keeps its place in the queue"
    );
    assert_eq!(again.event.attempts, 1);
    assert_lease_lost(
        store.release_event(&leased.lease).await,
        id,
        "releasing twice",
    );
    assert_eq!(event(&store, later).await.state, EventState::Pending);
}

async fn lease_only_first(store: &Shared, now: Timestamp) -> LeasedEvent {
    let mut leased = store
        .lease_events(1, now, now + Duration::seconds(60), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    leased.remove(0)
}

pub async fn wrong_or_finished_leases_are_lost_for_every_queue_operation(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only(&store, id, at(1)).await;
    let forged = Lease {
        event_id: id,
        token: uuid::Uuid::new_v4(),
    };
    assert_lease_lost(
        store.complete_event(&forged, vec![], at(2)).await,
        id,
        "forged token: complete",
    );
    assert_lease_lost(
        store.fail_event(&forged, "x", None).await,
        id,
        "forged token: fail",
    );
    assert_lease_lost(
        store.release_event(&forged).await,
        id,
        "forged token: release",
    );
    let unknown = Lease {
        event_id: EventId::new(),
        token: leased.lease.token,
    };
    assert_lease_lost(
        store.complete_event(&unknown, vec![], at(2)).await,
        unknown.event_id,
        "unknown event",
    );
    assert_eq!(event(&store, id).await.state, EventState::Processing);

    store
        .complete_event(&leased.lease, vec![], at(2))
        .await
        .unwrap();
    assert_lease_lost(
        store.complete_event(&leased.lease, vec![], at(3)).await,
        id,
        "completing twice",
    );
    assert_lease_lost(
        store.fail_event(&leased.lease, "x", Some(at(9))).await,
        id,
        "failing after completion",
    );
    assert_lease_lost(
        store.release_event(&leased.lease).await,
        id,
        "releasing after completion",
    );
    assert_eq!(event(&store, id).await.state, EventState::Ignored);
}

pub async fn empty_completion_marks_the_event_ignored(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only(&store, id, at(1)).await;
    let bindings = store
        .complete_event(&leased.lease, vec![], at(2))
        .await
        .unwrap();
    assert!(bindings.is_empty());
    let e = event(&store, id).await;
    assert_eq!(e.state, EventState::Ignored);
    assert_eq!(e.processed_at, Some(at(2)));
    assert_eq!(e.next_attempt_at, None);
    let alerts = store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert!(alerts.items.is_empty());
}

/// The spec's queue test: 4 concurrent workers, each leasing small batches in a loop, process
/// 2,000 events exactly once.
pub async fn four_workers_process_two_thousand_events_exactly_once(store: Shared) {
    const EVENTS: usize = 2_000;
    const WORKERS: usize = 4;
    let started = std::time::Instant::now();

    let mut ids = Vec::with_capacity(EVENTS);
    // Accept from a few tasks at once, as intake does under load.
    let mut intake = Vec::new();
    for chunk in 0..4 {
        let store = Arc::clone(&store);
        intake.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EVENTS / 4 {
                let received = at(((chunk * EVENTS / 4) + i) as i64 / 100);
                let accepted = store
                    .accept_event(new_event("guardduty", None, received))
                    .await
                    .unwrap();
                ids.push(accepted.event_id);
            }
            ids
        }));
    }
    for task in intake {
        ids.extend(task.await.unwrap());
    }
    let accepted_in = started.elapsed();

    let now = at(10_000);
    let until = now + Duration::days(1);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let store = Arc::clone(&store);
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let batch = store
                    .lease_events(8, now, until, MAX_ATTEMPTS)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return done;
                }
                for leased in batch {
                    let id = leased.event.id;
                    let alert = new_alert(id, "guardduty", "storm", now);
                    let bindings = match store
                        .complete_event(&leased.lease, vec![discard(alert)], now)
                        .await
                    {
                        Ok(bindings) => bindings,
                        Err(e) => panic!("a healthy worker lost event {id}: {e}"),
                    };
                    assert_eq!(bindings, vec![AlertBinding::Discarded]);
                    done.push(id);
                }
            }
        }));
    }
    let mut completions: HashMap<EventId, usize> = HashMap::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            *completions.entry(id).or_default() += 1;
        }
    }
    let processed_in = started.elapsed() - accepted_in;

    assert_eq!(completions.len(), EVENTS, "every event completed");
    assert!(
        completions.values().all(|n| *n == 1),
        "no event completed twice"
    );
    for id in &ids {
        assert_eq!(completions.get(id), Some(&1));
    }
    let stats = store.queue_stats(now).await.unwrap();
    assert_eq!(stats, QueueStats::default());
    let mut processed = 0;
    let mut before = None;
    loop {
        let page = store
            .list_events(&EventQuery {
                state: Some(EventState::Processed),
                before,
                limit: 500,
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert!(
            page.items.iter().all(|e| e.attempts == 1),
            "leased once each"
        );
        processed += page.items.len();
        before = cursor(&page.next_cursor);
        if before.is_none() {
            break;
        }
    }
    assert_eq!(processed, EVENTS, "every event ends processed");
    println!(
        "[{}] {EVENTS} events: accepted in {accepted_in:?}, processed by {WORKERS} workers in {processed_in:?}",
        store.backend()
    );
}

/// Accepts `n` events at `now` and leases them all, oldest first.
async fn lease_n(store: &Shared, n: usize, now: Timestamp) -> Vec<LeasedEvent> {
    for _ in 0..n {
        accept(store, "guardduty", now).await;
    }
    let leased = store
        .lease_events(n, now, now + Duration::seconds(300), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(leased.len(), n);
    leased
}

/// Every ticket, any status.
async fn all_tickets(store: &Shared) -> Vec<Ticket> {
    store
        .list_tickets(&TicketQuery {
            limit: 1_000,
            ..TicketQuery::default()
        })
        .await
        .unwrap()
        .items
}

pub async fn batch_completion_commits_every_event_in_order(store: Shared) {
    let now = at(100);
    let leased = lease_n(&store, 4, now).await;
    let notice_id = NoticeId::new();
    let first = new_alert(leased[0].event.id, "guardduty", "probe", at(90));
    let second = new_alert(leased[1].event.id, "guardduty", "probe", at(95));
    let noticed = new_alert(leased[2].event.id, "guardduty", "n", at(95));
    let discarded = new_alert(leased[2].event.id, "guardduty", "d", at(95));
    let made = [&first, &second, &noticed, &discarded].map(|a| a.id);
    let batch = vec![
        (leased[0].lease.clone(), vec![open(first, now)]),
        (leased[1].lease.clone(), vec![open(second, now)]),
        (
            leased[2].lease.clone(),
            vec![
                PlannedAlert {
                    alert: noticed,
                    disposition: Disposition::Notice {
                        notice_id,
                        title: "Port probe (notice)".to_owned(),
                        channel: None,
                    },
                },
                discard(discarded),
            ],
        ),
        (leased[3].lease.clone(), vec![]),
    ];
    let results = store.complete_events(batch, now).await.unwrap();
    assert_eq!(results.len(), 4, "one result per event");
    let tid = match results[0].as_deref() {
        Ok([AlertBinding::Opened(tid)]) => *tid,
        other => panic!("the first event opens a ticket: {other:?}"),
    };
    assert_eq!(
        results[1].as_deref(),
        Ok(&[AlertBinding::Attached(tid)][..]),
        "the second sees the first's ticket"
    );
    assert_eq!(
        results[2].as_deref(),
        Ok(&[AlertBinding::Noticed(notice_id), AlertBinding::Discarded][..])
    );
    assert_eq!(results[3].as_deref(), Ok(&[][..]));

    let states: Vec<EventState> = {
        let mut states = Vec::new();
        for l in &leased {
            states.push(event(&store, l.event.id).await.state);
        }
        states
    };
    assert_eq!(
        states,
        [
            EventState::Processed,
            EventState::Processed,
            EventState::Processed,
            EventState::Ignored
        ]
    );
    for l in &leased {
        let e = event(&store, l.event.id).await;
        assert_eq!((e.processed_at, e.next_attempt_at), (Some(now), None));
    }
    let t = ticket(&store, tid).await;
    assert_eq!(
        (t.alert_count, t.version, t.first_seen, t.last_seen),
        (2, 1, at(90), at(95))
    );
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        Some(tid)
    );
    let expected = [
        (AlertStatus::Ticketed, Some(tid), None),
        (AlertStatus::Ticketed, Some(tid), None),
        (AlertStatus::Noticed, None, Some(notice_id)),
        (AlertStatus::Discarded, None, None),
    ];
    for (id, want) in made.iter().zip(expected) {
        let a = store.get_alert(*id).await.unwrap().expect("alert stored");
        assert_eq!((a.status, a.ticket_id, a.notice_id), want);
    }
    let notice = store.get_notice(notice_id).await.unwrap().unwrap();
    assert_eq!((notice.alert_id, notice.created_at), (made[2], now));
    assert_eq!(all_tickets(&store).await.len(), 1);
    assert_eq!(store.queue_stats(now).await.unwrap(), QueueStats::default());
    assert!(
        store.complete_events(vec![], now).await.unwrap().is_empty(),
        "an empty batch is a no-op"
    );
}

pub async fn batch_with_a_lost_lease_skips_only_that_event(store: Shared) {
    let now = at(100);
    let leased = lease_n(&store, 3, now).await;
    let lost = Lease {
        event_id: leased[1].event.id,
        token: uuid::Uuid::new_v4(),
    };
    let lost_alert = new_alert(leased[1].event.id, "guardduty", "x", now);
    let lost_alert_id = lost_alert.id;
    let batch = vec![
        (
            leased[0].lease.clone(),
            vec![discard(new_alert(
                leased[0].event.id,
                "guardduty",
                "x",
                now,
            ))],
        ),
        (lost, vec![open(lost_alert, now)]),
        (
            leased[2].lease.clone(),
            vec![discard(new_alert(
                leased[2].event.id,
                "guardduty",
                "x",
                now,
            ))],
        ),
        // The same lease again: spent by its first completion above.
        (
            leased[0].lease.clone(),
            vec![discard(new_alert(
                leased[0].event.id,
                "guardduty",
                "x",
                now,
            ))],
        ),
    ];
    let results = store.complete_events(batch, now).await.unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_deref(), Ok(&[AlertBinding::Discarded][..]));
    assert_lease_lost(results[1].clone(), leased[1].event.id, "a wrong token");
    assert_eq!(results[2].as_deref(), Ok(&[AlertBinding::Discarded][..]));
    assert_lease_lost(
        results[3].clone(),
        leased[0].event.id,
        "a lease named twice",
    );

    assert_eq!(
        event(&store, leased[0].event.id).await.state,
        EventState::Processed
    );
    assert_eq!(
        event(&store, leased[2].event.id).await.state,
        EventState::Processed
    );
    assert_eq!(
        event(&store, leased[1].event.id).await.state,
        EventState::Processing,
        "the real holder still has it"
    );
    assert_eq!(store.get_alert(lost_alert_id).await.unwrap(), None);
    assert!(
        all_tickets(&store).await.is_empty(),
        "the lost event opened nothing"
    );
    let alerts = store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.items.len(), 2);

    // The real holder completes it afterwards.
    store
        .complete_event(&leased[1].lease, vec![], now)
        .await
        .unwrap();
    assert_eq!(
        event(&store, leased[1].event.id).await.state,
        EventState::Ignored
    );
}

pub async fn batch_with_a_stale_attach_skips_only_that_event(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    change(&store, tid, resolve_change(), at(150)).await;
    let resolved = ticket(&store, tid).await;

    let now = at(200);
    let leased = lease_n(&store, 3, now).await;
    let kept = new_alert(leased[1].event.id, "guardduty", "other", now);
    let kept_id = kept.id;
    let batch = vec![
        (
            leased[0].lease.clone(),
            vec![open(
                new_alert(leased[0].event.id, "guardduty", "a", now),
                now,
            )],
        ),
        (
            leased[1].lease.clone(),
            vec![
                discard(kept),
                attach(
                    new_alert(leased[1].event.id, "guardduty", "probe", now),
                    tid,
                    now,
                ),
            ],
        ),
        (
            leased[2].lease.clone(),
            vec![open(
                new_alert(leased[2].event.id, "guardduty", "a", now),
                now,
            )],
        ),
    ];
    let results = store.complete_events(batch, now).await.unwrap();
    let opened = match results[0].as_deref() {
        Ok([AlertBinding::Opened(id)]) => *id,
        other => panic!("the first event opens a ticket: {other:?}"),
    };
    assert_conflict(
        results[1].clone(),
        "attaching to a resolved ticket in a batch",
    );
    assert_eq!(
        results[2].as_deref(),
        Ok(&[AlertBinding::Attached(opened)][..])
    );
    assert_eq!(
        store.get_alert(kept_id).await.unwrap(),
        None,
        "the conflicting event's earlier alert was rolled back"
    );
    assert_eq!(ticket(&store, tid).await, resolved);
    assert_eq!(ticket(&store, opened).await.alert_count, 2);
    assert_eq!(
        event(&store, leased[0].event.id).await.state,
        EventState::Processed
    );
    assert_eq!(
        event(&store, leased[2].event.id).await.state,
        EventState::Processed
    );
    assert_eq!(
        event(&store, leased[1].event.id).await.state,
        EventState::Processing,
        "the lease is still held"
    );

    // Also a stale attach (target not seen since `seen_since`) in a batch of one.
    let stale = PlannedAlert {
        alert: new_alert(leased[1].event.id, "guardduty", "a", now),
        disposition: Disposition::Attach {
            ticket_id: opened,
            seen_since: now + Duration::seconds(1),
        },
    };
    let results = store
        .complete_events(vec![(leased[1].lease.clone(), vec![stale])], now)
        .await
        .unwrap();
    assert_conflict(results[0].clone(), "attaching to a stale ticket in a batch");
    assert_eq!(ticket(&store, opened).await.alert_count, 2);

    // The worker re-plans it and completes it with the same lease.
    let again = store
        .complete_event(
            &leased[1].lease,
            vec![open(
                new_alert(leased[1].event.id, "guardduty", "probe", now),
                now,
            )],
            now,
        )
        .await
        .unwrap();
    assert!(matches!(again.as_slice(), [AlertBinding::Opened(new)] if *new != tid));
}

pub async fn batch_with_two_opens_of_one_fingerprint_makes_one_ticket(store: Shared) {
    let now = at(100);
    let leased = lease_n(&store, 2, now).await;
    let plans: Vec<PlannedAlert> = leased
        .iter()
        .map(|l| open(new_alert(l.event.id, "guardduty", "storm", now), now))
        .collect();
    let second_ticket = match &plans[1].disposition {
        Disposition::Open { ticket, .. } => ticket.id,
        _ => unreachable!(),
    };
    let batch = leased
        .iter()
        .zip(plans)
        .map(|(l, p)| (l.lease.clone(), vec![p]))
        .collect();
    let results = store.complete_events(batch, now).await.unwrap();
    let tid = match results[0].as_deref() {
        Ok([AlertBinding::Opened(id)]) => *id,
        other => panic!("the first open opens: {other:?}"),
    };
    assert_eq!(
        results[1].as_deref(),
        Ok(&[AlertBinding::Attached(tid)][..]),
        "the second open attaches to the first"
    );
    assert_eq!(store.get_ticket(second_ticket).await.unwrap(), None);
    let tickets = all_tickets(&store).await;
    assert_eq!(tickets.len(), 1);
    assert_eq!((tickets[0].alert_count, tickets[0].version), (2, 1));
    assert_eq!(
        store.find_dedup_ticket(&fp("storm"), at(0)).await.unwrap(),
        Some(tid)
    );
}

pub async fn batch_attach_counts_add_up(store: Shared) {
    const BATCHES: usize = 3;
    const EVENTS: usize = 10;
    let mut tid = None;
    for b in 0..BATCHES {
        let now = at(100 + b as i64 * 10);
        let leased = lease_n(&store, EVENTS, now).await;
        let batch = leased
            .iter()
            .enumerate()
            .map(|(i, l)| {
                // Alerts arrive slightly out of order: last_seen is the latest of them.
                let created = now - Duration::seconds(i as i64 % 3);
                let alert = new_alert(l.event.id, "guardduty", "storm", created);
                let planned = match tid {
                    Some(tid) => attach(alert, tid, now),
                    None => open(alert, now),
                };
                (l.lease.clone(), vec![planned])
            })
            .collect();
        let results = store.complete_events(batch, now).await.unwrap();
        for (i, result) in results.into_iter().enumerate() {
            match (result.unwrap().as_slice(), tid) {
                ([AlertBinding::Opened(id)], None) if i == 0 => tid = Some(*id),
                ([AlertBinding::Attached(id)], Some(t)) if *id == t => {}
                (other, _) => panic!("batch {b}, event {i}: unexpected {other:?}"),
            }
        }
    }
    let t = ticket(&store, tid.unwrap()).await;
    assert_eq!(t.alert_count, (BATCHES * EVENTS) as u64);
    assert_eq!(t.version, 1, "attaching alerts leaves the version alone");
    assert_eq!(t.first_seen, at(100));
    assert_eq!(t.last_seen, at(100 + (BATCHES as i64 - 1) * 10));
    assert_eq!(all_tickets(&store).await.len(), 1);
    let alerts = store
        .list_alerts(&AlertQuery {
            ticket: tid,
            limit: 100,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.items.len(), BATCHES * EVENTS);
}

/// The worker's way, concurrently: 4 workers lease batches of 16, look each fingerprint up
/// once per batch, complete each batch in one call (re-planning conflicts alone), over 2,000
/// events of 3 fingerprints that race to open their tickets.
pub async fn four_workers_completing_batches_make_one_ticket_per_fingerprint(store: Shared) {
    const EVENTS: usize = 2_000;
    const WORKERS: usize = 4;
    const KEYS: [&str; 3] = ["storm-a", "storm-b", "storm-c"];
    // The key depends on the event id, so batches mix the fingerprints.
    fn key_of(id: EventId) -> &'static str {
        KEYS[(id.as_uuid().as_u128() % KEYS.len() as u128) as usize]
    }
    let now = at(10_000);
    for i in 0..EVENTS {
        store
            .accept_event(new_event("guardduty", None, at(i as i64 / 100)))
            .await
            .unwrap();
    }
    let until = now + Duration::days(1);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let store = Arc::clone(&store);
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let leased = store
                    .lease_events(16, now, until, MAX_ATTEMPTS)
                    .await
                    .unwrap();
                if leased.is_empty() {
                    return done;
                }
                let mut found: HashMap<Fingerprint, Option<TicketId>> = HashMap::new();
                let mut batch = Vec::new();
                for l in &leased {
                    let alert = new_alert(l.event.id, "guardduty", key_of(l.event.id), now);
                    let target = match found.get(&alert.fingerprint) {
                        Some(t) => *t,
                        None => {
                            let t = store
                                .find_dedup_ticket(
                                    &alert.fingerprint,
                                    now - Duration::seconds(WINDOW),
                                )
                                .await
                                .unwrap();
                            found.insert(alert.fingerprint.clone(), t);
                            t
                        }
                    };
                    let planned = match target {
                        Some(tid) => attach(alert, tid, now),
                        None => open(alert, now),
                    };
                    batch.push((l.lease.clone(), vec![planned]));
                }
                let results = store.complete_events(batch, now).await.unwrap();
                assert_eq!(results.len(), leased.len());
                for (l, result) in leased.iter().zip(results) {
                    let bindings = match result {
                        Ok(bindings) => bindings,
                        Err(StoreError::Conflict(_)) => {
                            // Re-planned alone, as the worker does.
                            let alert = new_alert(l.event.id, "guardduty", key_of(l.event.id), now);
                            store
                                .complete_event(&l.lease, vec![open(alert, now)], now)
                                .await
                                .unwrap()
                        }
                        Err(e) => panic!("a healthy worker lost event {}: {e}", l.event.id),
                    };
                    assert!(matches!(
                        bindings.as_slice(),
                        [AlertBinding::Opened(_) | AlertBinding::Attached(_)]
                    ));
                    done.push(l.event.id);
                }
            }
        }));
    }
    let mut completions: HashMap<EventId, usize> = HashMap::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            *completions.entry(id).or_default() += 1;
        }
    }
    assert_eq!(completions.len(), EVENTS, "every event completed");
    assert!(
        completions.values().all(|n| *n == 1),
        "no event completed twice"
    );
    assert_eq!(store.queue_stats(now).await.unwrap(), QueueStats::default());

    let tickets = all_tickets(&store).await;
    assert_eq!(tickets.len(), KEYS.len(), "one ticket per fingerprint");
    assert_eq!(
        tickets.iter().map(|t| t.alert_count).sum::<u64>(),
        EVENTS as u64,
        "every alert counted once"
    );
    for t in &tickets {
        assert_eq!(t.version, 1);
        assert_eq!(
            store
                .find_dedup_ticket(&t.fingerprint, at(0))
                .await
                .unwrap(),
            Some(t.id)
        );
        let alerts = store
            .list_alerts(&AlertQuery {
                ticket: Some(t.id),
                limit: 1_000,
                ..AlertQuery::default()
            })
            .await
            .unwrap();
        let mut bound = alerts.items.len();
        let mut before = cursor(&alerts.next_cursor);
        while let Some(b) = before {
            let page = store
                .list_alerts(&AlertQuery {
                    ticket: Some(t.id),
                    before: Some(b),
                    limit: 1_000,
                    ..AlertQuery::default()
                })
                .await
                .unwrap();
            bound += page.items.len();
            before = cursor(&page.next_cursor);
        }
        assert_eq!(
            bound as u64, t.alert_count,
            "the count matches the alerts bound"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Completion and deduplication
// ---------------------------------------------------------------------------------------------

pub async fn opening_a_ticket_makes_it_the_dedup_target(store: Shared) {
    let now = at(100);
    let id = accept(&store, "guardduty", now).await;
    let leased = lease_only(&store, id, now).await;
    let alert = new_alert(id, "guardduty", "probe", at(90) + Duration::microseconds(7));
    let planned = open(alert.clone(), now);
    let Disposition::Open {
        ticket: new_ticket, ..
    } = planned.disposition.clone()
    else {
        unreachable!()
    };
    let bindings = store
        .complete_event(&leased.lease, vec![planned], now)
        .await
        .unwrap();
    assert_eq!(bindings, vec![AlertBinding::Opened(new_ticket.id)]);

    let t = ticket(&store, new_ticket.id).await;
    let expected = Ticket {
        id: new_ticket.id,
        title: new_ticket.title.clone(),
        description: new_ticket.description.clone(),
        schema: new_ticket.schema.clone(),
        status: TicketStatus::Open,
        severity: new_ticket.severity,
        conclusion: None,
        reason: None,
        assignee: new_ticket.assignee.clone(),
        tags: new_ticket.tags.clone(),
        attributes: new_ticket.attributes.clone(),
        channel: new_ticket.channel.clone(),
        fingerprint: fp("probe"),
        finding: None,
        alert_count: 1,
        first_seen: alert.created_at,
        last_seen: alert.created_at,
        acked_at: None,
        resolved_at: None,
        created_at: new_ticket.created_at,
        updated_at: new_ticket.created_at,
        version: 1,
    };
    assert_eq!(t, expected);

    let stored = store
        .get_alert(alert.id)
        .await
        .unwrap()
        .expect("alert stored");
    assert_eq!(stored.status, AlertStatus::Ticketed);
    assert_eq!(stored.ticket_id, Some(new_ticket.id));
    assert_eq!(stored.notice_id, None);
    assert_eq!(
        (stored.title_source, stored.description_source),
        (alert.title_source, alert.description_source),
        "where the title and description came from is kept"
    );
    assert_eq!(
        (
            &stored.title,
            &stored.description,
            &stored.attributes,
            &stored.tags
        ),
        (
            &alert.title,
            &alert.description,
            &alert.attributes,
            &alert.tags
        )
    );
    assert_eq!(
        (
            stored.event_id,
            &stored.schema,
            stored.severity,
            &stored.fingerprint
        ),
        (
            alert.event_id,
            &alert.schema,
            alert.severity,
            &alert.fingerprint
        )
    );
    assert_eq!(
        (&stored.channel, &stored.data, stored.created_at),
        (&alert.channel, &alert.data, alert.created_at)
    );

    assert_eq!(
        store
            .find_dedup_ticket(&fp("probe"), now - Duration::seconds(WINDOW))
            .await
            .unwrap(),
        Some(new_ticket.id)
    );
    assert_eq!(
        store
            .find_dedup_ticket(&fp("probe"), alert.created_at)
            .await
            .unwrap(),
        Some(new_ticket.id)
    );
    assert_eq!(
        store
            .find_dedup_ticket(&fp("probe"), alert.created_at + Duration::microseconds(1))
            .await
            .unwrap(),
        None,
        "outside the window"
    );
    assert_eq!(
        store.find_dedup_ticket(&fp("other"), at(0)).await.unwrap(),
        None
    );
    let e = event(&store, id).await;
    assert_eq!(
        (e.state, e.processed_at),
        (EventState::Processed, Some(now))
    );
}

pub async fn open_with_a_fresh_target_attaches_to_it(store: Shared) {
    let first = open_ticket(&store, "probe", at(100)).await;
    let mut losing_ticket = None;
    let bindings = ingest(&store, at(200), |id| {
        let planned = open(new_alert(id, "guardduty", "probe", at(200)), at(200));
        if let Disposition::Open { ticket, .. } = &planned.disposition {
            losing_ticket = Some(ticket.id);
        }
        vec![planned]
    })
    .await;
    assert_eq!(bindings, vec![AlertBinding::Attached(first)]);
    let t = ticket(&store, first).await;
    assert_eq!((t.alert_count, t.last_seen, t.version), (2, at(200), 1));
    assert_eq!(
        store.get_ticket(losing_ticket.unwrap()).await.unwrap(),
        None
    );
}

pub async fn attaching_bumps_count_and_last_seen_but_not_the_version(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    let before = ticket(&store, tid).await;

    let mut attached_alert = None;
    let bindings = ingest(&store, at(300), |id| {
        let alert = new_alert(id, "guardduty", "probe", at(300));
        attached_alert = Some(alert.id);
        vec![attach(alert, tid, at(300))]
    })
    .await;
    assert_eq!(bindings, vec![AlertBinding::Attached(tid)]);
    let t = ticket(&store, tid).await;
    assert_eq!((t.alert_count, t.last_seen, t.version), (2, at(300), 1));
    assert_eq!(
        (t.first_seen, t.updated_at, t.status),
        (before.first_seen, before.updated_at, TicketStatus::Open)
    );
    let alert = store
        .get_alert(attached_alert.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (alert.status, alert.ticket_id),
        (AlertStatus::Ticketed, Some(tid))
    );

    // A late alert (created before the last one) counts but does not move last_seen back.
    ingest(&store, at(310), |id| {
        vec![attach(
            new_alert(id, "guardduty", "probe", at(250)),
            tid,
            at(310),
        )]
    })
    .await;
    let t = ticket(&store, tid).await;
    assert_eq!((t.alert_count, t.last_seen, t.version), (3, at(300), 1));
}

pub async fn tickets_of_events_are_those_holding_their_alerts_each_once(store: Shared) {
    let first = open_ticket(&store, "probe", at(100)).await;
    let mut events = Vec::new();
    ingest(&store, at(200), |id| {
        events.push(id);
        vec![
            attach(new_alert(id, "guardduty", "probe", at(200)), first, at(200)),
            attach(new_alert(id, "guardduty", "probe", at(200)), first, at(200)),
        ]
    })
    .await;
    let mut second = None;
    let bindings = ingest(&store, at(300), |id| {
        events.push(id);
        vec![
            open(new_alert(id, "guardduty", "scan", at(300)), at(300)),
            discard(new_alert(id, "guardduty", "noise", at(300))),
        ]
    })
    .await;
    if let [AlertBinding::Opened(id), ..] = bindings.as_slice() {
        second = Some(*id);
    }
    let second = second.expect("a second ticket");
    let discarded_only = ingest(&store, at(400), |id| {
        events.push(id);
        vec![discard(new_alert(id, "guardduty", "noise", at(400)))]
    })
    .await;
    assert!(!discarded_only.is_empty());
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(store.tickets_of_events(&events).await.unwrap(), want);
    assert_eq!(
        store.tickets_of_events(&events[2..]).await.unwrap(),
        Vec::<TicketId>::new(),
        "an event whose alerts were discarded holds no ticket"
    );
    assert_eq!(
        store.tickets_of_events(&[]).await.unwrap(),
        Vec::<TicketId>::new()
    );
}

pub async fn attach_to_a_resolved_ticket_conflicts_and_stores_nothing(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    change(&store, tid, resolve_change(), at(150)).await;
    let resolved = ticket(&store, tid).await;

    let id = accept(&store, "guardduty", at(200)).await;
    let leased = lease_only(&store, id, at(200)).await;
    let kept = new_alert(id, "guardduty", "other", at(200));
    let kept_id = kept.id;
    let result = store
        .complete_event(
            &leased.lease,
            vec![
                discard(kept),
                attach(new_alert(id, "guardduty", "probe", at(200)), tid, at(200)),
            ],
            at(200),
        )
        .await;
    assert_conflict(result, "attaching to a resolved ticket");
    assert_eq!(
        store.get_alert(kept_id).await.unwrap(),
        None,
        "the earlier alert was rolled back"
    );
    assert_eq!(ticket(&store, tid).await, resolved);
    assert_eq!(
        event(&store, id).await.state,
        EventState::Processing,
        "the lease is still held"
    );

    // The worker re-plans and completes with the same lease.
    let again = store
        .complete_event(
            &leased.lease,
            vec![open(new_alert(id, "guardduty", "probe", at(200)), at(200))],
            at(200),
        )
        .await
        .unwrap();
    assert!(matches!(again.as_slice(), [AlertBinding::Opened(new)] if *new != tid));
}

pub async fn attach_to_a_stale_ticket_conflicts(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    let id = accept(&store, "guardduty", at(200)).await;
    let leased = lease_only(&store, id, at(200)).await;
    let planned = PlannedAlert {
        alert: new_alert(id, "guardduty", "probe", at(200)),
        disposition: Disposition::Attach {
            ticket_id: tid,
            seen_since: at(101),
        },
    };
    assert_conflict(
        store
            .complete_event(&leased.lease, vec![planned], at(200))
            .await,
        "attaching to a ticket not seen since seen_since",
    );
    assert_eq!(ticket(&store, tid).await.alert_count, 1);
}

pub async fn attach_to_a_ticket_of_another_fingerprint_conflicts(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    let id = accept(&store, "guardduty", at(200)).await;
    let leased = lease_only(&store, id, at(200)).await;
    assert_conflict(
        store
            .complete_event(
                &leased.lease,
                vec![attach(
                    new_alert(id, "guardduty", "other", at(200)),
                    tid,
                    at(200),
                )],
                at(200),
            )
            .await,
        "attaching to another fingerprint's ticket",
    );
    assert_conflict(
        store
            .complete_event(
                &leased.lease,
                vec![attach(
                    new_alert(id, "guardduty", "probe", at(200)),
                    TicketId::new(),
                    at(200),
                )],
                at(200),
            )
            .await,
        "attaching to an unknown ticket",
    );
    assert_eq!(ticket(&store, tid).await.alert_count, 1);
}

pub async fn open_races_resolve_to_one_ticket(store: Shared) {
    const RACERS: usize = 8;
    let now = at(100);
    for _ in 0..RACERS {
        accept(&store, "guardduty", now).await;
    }
    let leased = store
        .lease_events(RACERS, now, now + Duration::seconds(60), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(leased.len(), RACERS);
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for l in leased {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let planned = open(new_alert(l.event.id, "guardduty", "storm", now), now);
            barrier.wait().await;
            store
                .complete_event(&l.lease, vec![planned], now)
                .await
                .unwrap()
        }));
    }
    let mut opened = Vec::new();
    let mut attached = Vec::new();
    for task in tasks {
        match task.await.unwrap().as_slice() {
            [AlertBinding::Opened(id)] => opened.push(*id),
            [AlertBinding::Attached(id)] => attached.push(*id),
            other => panic!("unexpected bindings {other:?}"),
        }
    }
    assert_eq!(opened.len(), 1, "exactly one worker opens the ticket");
    assert!(
        attached.iter().all(|id| *id == opened[0]),
        "the others attach to it"
    );
    let t = ticket(&store, opened[0]).await;
    assert_eq!(t.alert_count, RACERS as u64);
    assert_eq!(t.version, 1);
    let all = store
        .list_tickets(&TicketQuery {
            limit: 100,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    assert_eq!(
        store.find_dedup_ticket(&fp("storm"), at(0)).await.unwrap(),
        Some(opened[0])
    );
}

pub async fn stale_active_ticket_is_replaced_by_a_new_one(store: Shared) {
    let old = open_ticket(&store, "probe", at(0)).await;
    let later = at(10 * WINDOW);
    assert_eq!(
        store
            .find_dedup_ticket(&fp("probe"), later - Duration::seconds(WINDOW))
            .await
            .unwrap(),
        None,
        "the old ticket is outside the window"
    );
    let new = open_ticket(&store, "probe", later).await;
    assert_ne!(new, old);
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        Some(new)
    );
    let old_ticket = ticket(&store, old).await;
    assert_eq!(
        (old_ticket.status, old_ticket.alert_count),
        (TicketStatus::Open, 1)
    );

    // The replaced ticket never becomes the target again, whatever happens to it.
    change(
        &store,
        old,
        TicketChange {
            status: Some(TicketStatus::Acknowledged),
            ..TicketChange::default()
        },
        later,
    )
    .await;
    change(&store, old, resolve_change(), later).await;
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        Some(new)
    );
    let bindings = ingest(&store, later + Duration::seconds(1), |id| {
        vec![open(
            new_alert(id, "guardduty", "probe", later + Duration::seconds(1)),
            later + Duration::seconds(1),
        )]
    })
    .await;
    assert_eq!(bindings, vec![AlertBinding::Attached(new)]);
}

pub async fn alerts_of_one_event_with_one_fingerprint_share_one_ticket(store: Shared) {
    let now = at(100);
    let bindings = ingest(&store, now, |id| {
        (0..3)
            .map(|_| open(new_alert(id, "guardduty", "burst", now), now))
            .collect()
    })
    .await;
    let AlertBinding::Opened(tid) = bindings[0] else {
        panic!("first alert opens: {bindings:?}")
    };
    assert_eq!(
        bindings[1..],
        [AlertBinding::Attached(tid), AlertBinding::Attached(tid)]
    );
    let t = ticket(&store, tid).await;
    assert_eq!((t.alert_count, t.version), (3, 1));
    let alerts = store
        .list_alerts(&AlertQuery {
            ticket: Some(tid),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(alerts.items.len(), 3);
}

pub async fn notice_and_discard_dispositions_store_the_alert(store: Shared) {
    let now = at(100);
    let notice_id = NoticeId::new();
    let mut made = Vec::new();
    let bindings = ingest(&store, now, |id| {
        let noticed = new_alert(id, "guardduty", "n", at(90));
        let discarded = new_alert(id, "guardduty", "d", at(90));
        made = vec![noticed.clone(), discarded.clone()];
        vec![
            PlannedAlert {
                alert: noticed,
                disposition: Disposition::Notice {
                    notice_id,
                    title: "Port probe (notice)".to_owned(),
                    channel: Some("#notices".to_owned()),
                },
            },
            discard(discarded),
        ]
    })
    .await;
    assert_eq!(
        bindings,
        vec![AlertBinding::Noticed(notice_id), AlertBinding::Discarded]
    );

    let noticed = store.get_alert(made[0].id).await.unwrap().unwrap();
    assert_eq!(
        (noticed.status, noticed.ticket_id, noticed.notice_id),
        (AlertStatus::Noticed, None, Some(notice_id))
    );
    let discarded = store.get_alert(made[1].id).await.unwrap().unwrap();
    assert_eq!(
        (discarded.status, discarded.ticket_id, discarded.notice_id),
        (AlertStatus::Discarded, None, None)
    );

    let notice = store
        .get_notice(notice_id)
        .await
        .unwrap()
        .expect("notice stored");
    assert_eq!(notice.alert_id, made[0].id);
    assert_eq!(notice.schema, made[0].schema);
    assert_eq!(notice.title, "Port probe (notice)");
    assert_eq!(notice.severity, made[0].severity);
    assert_eq!(notice.channel.as_deref(), Some("#notices"));
    assert_eq!(notice.created_at, now, "published when the event completed");
    assert_eq!(notice.ticket_id, None);
    assert!(
        store
            .list_tickets(&TicketQuery {
                limit: 10,
                ..TicketQuery::default()
            })
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn alerts_list_newest_first_by_schema_ticket_and_binding(store: Shared) {
    let now = at(100);
    let mut a = Vec::new();
    let bindings = ingest(&store, now, |id| {
        let planned = vec![
            open(new_alert(id, "guardduty", "t", now), now),
            open(new_alert(id, "guardduty", "t", now), now),
        ];
        a.extend(planned.iter().map(|p| p.alert.id));
        planned
    })
    .await;
    let AlertBinding::Opened(tid) = bindings[0] else {
        panic!("{bindings:?}")
    };
    ingest(&store, now, |id| {
        let planned = vec![
            discard(new_alert(id, "falco", "d", now)),
            PlannedAlert {
                alert: new_alert(id, "falco", "n", now),
                disposition: Disposition::Notice {
                    notice_id: NoticeId::new(),
                    title: "n".into(),
                    channel: None,
                },
            },
        ];
        a.extend(planned.iter().map(|p| p.alert.id));
        planned
    })
    .await;

    let first = store
        .list_alerts(&AlertQuery {
            limit: 3,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a[3], a[2], a[1]]
    );
    let next = cursor::<AlertId>(&first.next_cursor);
    assert_eq!(next, Some(a[1]));
    let second = store
        .list_alerts(&AlertQuery {
            before: next,
            limit: 3,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a[0]]
    );
    assert_eq!(second.next_cursor, None);

    let ids = |page: crate::ports::Page<crate::Alert>| {
        page.items.iter().map(|x| x.id).collect::<Vec<_>>()
    };
    let by_ticket = store
        .list_alerts(&AlertQuery {
            ticket: Some(tid),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(by_ticket), vec![a[1], a[0]]);
    let unbound = store
        .list_alerts(&AlertQuery {
            unbound: true,
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(unbound), vec![a[3], a[2]]);
    let falco = store
        .list_alerts(&AlertQuery {
            schema: Some(schema("falco")),
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(falco), vec![a[3], a[2]]);
    let none = store
        .list_alerts(&AlertQuery {
            schema: Some(schema("guardduty")),
            unbound: true,
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert!(none.items.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Tickets and comments
// ---------------------------------------------------------------------------------------------

pub async fn ticket_update_stores_the_mutable_fields_and_bumps_the_version(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    let original = ticket(&store, tid).await;
    let mut edited = original.clone();
    edited
        .apply(
            &TicketChange {
                status: Some(TicketStatus::Acknowledged),
                ..TicketChange::default()
            },
            at(200),
        )
        .unwrap();
    edited.severity = Severity::Critical;
    edited.assignee = Some("bob".to_owned());
    edited.tags = vec!["ransomware".to_owned()];
    edited.title = "Ransomware staging".to_owned();
    edited.description = "Updated by the agent".to_owned();
    edited.finding = Some(json!({"verdict": "true_positive", "confidence": 0.9}));
    // Fields the update does not own are ignored.
    edited.alert_count = 99;
    edited.channel = Some("#elsewhere".to_owned());
    edited.last_seen = at(9_999);

    let stored = store.update_ticket(&edited).await.unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.status, TicketStatus::Acknowledged);
    assert_eq!(stored.acked_at, Some(at(200)));
    assert_eq!(stored.updated_at, at(200));
    assert_eq!(stored.severity, Severity::Critical);
    assert_eq!(stored.assignee.as_deref(), Some("bob"));
    assert_eq!(stored.tags, vec!["ransomware".to_owned()]);
    assert_eq!(stored.title, "Ransomware staging");
    assert_eq!(stored.description, "Updated by the agent");
    assert_eq!(stored.finding, edited.finding);
    assert_eq!(stored.alert_count, original.alert_count);
    assert_eq!(stored.channel, original.channel);
    assert_eq!(stored.last_seen, original.last_seen);
    assert_eq!(ticket(&store, tid).await, stored);

    let mut resolved = stored.clone();
    resolved.apply(&resolve_change(), at(300)).unwrap();
    let stored = store.update_ticket(&resolved).await.unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(
        (
            stored.status,
            stored.conclusion,
            stored.reason.as_deref(),
            stored.resolved_at
        ),
        (
            TicketStatus::Resolved,
            Some(Conclusion::FalsePositive),
            Some("scanner"),
            Some(at(300))
        )
    );
    assert_eq!(ticket(&store, tid).await, stored);

    let mut unknown = stored.clone();
    unknown.id = TicketId::new();
    assert_not_found(
        store.update_ticket(&unknown).await,
        "updating an unknown ticket",
    );
}

pub async fn ticket_update_with_stale_version_conflicts(store: Shared) {
    let tid = open_ticket(&store, "probe", at(100)).await;
    let v1 = ticket(&store, tid).await;
    let mut a = v1.clone();
    a.assignee = Some("alice".into());
    let v2 = store.update_ticket(&a).await.unwrap();
    assert_eq!(v2.version, 2);
    let mut b = v1.clone();
    b.assignee = Some("mallory".into());
    assert_conflict(
        store.update_ticket(&b).await,
        "updating from version 1 after version 2",
    );
    assert_eq!(ticket(&store, tid).await, v2);

    // An attached alert is not an edit: a copy read before it is still current, and storing
    // it keeps the alert's count and last_seen (an edit does not write them).
    ingest(&store, at(150), |id| {
        vec![attach(
            new_alert(id, "guardduty", "probe", at(150)),
            tid,
            at(150),
        )]
    })
    .await;
    let mut c = v2.clone();
    c.severity = Severity::Low;
    let v3 = store.update_ticket(&c).await.unwrap();
    assert_eq!(
        (v3.version, v3.severity, v3.alert_count, v3.last_seen),
        (3, Severity::Low, 2, at(150))
    );
    assert_eq!(ticket(&store, tid).await, v3);
}

pub async fn resolving_releases_the_fingerprint(store: Shared) {
    let first = open_ticket(&store, "probe", at(100)).await;
    change(
        &store,
        first,
        TicketChange {
            status: Some(TicketStatus::Acknowledged),
            ..TicketChange::default()
        },
        at(110),
    )
    .await;
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        Some(first),
        "an acknowledged ticket is still the target"
    );
    change(&store, first, resolve_change(), at(120)).await;
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        None
    );

    let second = open_ticket(&store, "probe", at(130)).await;
    assert_ne!(second, first);
    // Reopening the old ticket does not take the fingerprint back.
    change(
        &store,
        first,
        TicketChange {
            status: Some(TicketStatus::Open),
            ..TicketChange::default()
        },
        at(140),
    )
    .await;
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        Some(second)
    );
    // Archiving goes through resolved; an archived ticket is no target either.
    change(&store, second, resolve_change(), at(150)).await;
    change(
        &store,
        second,
        TicketChange {
            status: Some(TicketStatus::Archived),
            ..TicketChange::default()
        },
        at(160),
    )
    .await;
    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        None
    );
    let third = open_ticket(&store, "probe", at(170)).await;
    assert!(third != first && third != second);
}

pub async fn listing_tickets_filters_by_status_severity_assignee_tag_and_text(store: Shared) {
    let now = at(100);
    let mut made = Vec::new();
    // (fingerprint key, severity, assignee, tags, title, description)
    let specs: [TicketSpec; 5] = [
        (
            "a",
            Severity::High,
            Some("alice"),
            &["aws", "recon"],
            "Port probe on web-1",
            "scan",
        ),
        (
            "b",
            Severity::Low,
            Some("bob"),
            &["aws"],
            "Crypto mining",
            "xmrig on build host",
        ),
        (
            "c",
            Severity::High,
            None,
            &["gcp"],
            "Impossible travel",
            "login from two CRYPTO exchanges",
        ),
        (
            "d",
            Severity::Critical,
            Some("alice"),
            &["okta", "aws"],
            "MFA reset",
            "helpdesk",
        ),
        ("e", Severity::High, Some("alice"), &[], "Port scan", "nmap"),
    ];
    for (key, severity, assignee, tags, title, description) in specs {
        let bindings = ingest(&store, now, |id| {
            let alert = new_alert(id, "guardduty", key, now);
            let mut ticket = new_ticket_for(&alert);
            ticket.severity = severity;
            ticket.assignee = assignee.map(str::to_owned);
            ticket.tags = tags.iter().map(|t| (*t).to_owned()).collect();
            ticket.title = title.to_owned();
            ticket.description = description.to_owned();
            vec![PlannedAlert {
                alert,
                disposition: Disposition::Open {
                    ticket,
                    seen_since: now,
                },
            }]
        })
        .await;
        let [AlertBinding::Opened(tid)] = bindings.as_slice() else {
            panic!("{bindings:?}")
        };
        made.push(*tid);
    }
    change(&store, made[0], resolve_change(), at(200)).await;
    change(
        &store,
        made[3],
        TicketChange {
            status: Some(TicketStatus::Acknowledged),
            ..TicketChange::default()
        },
        at(200),
    )
    .await;

    let list = |query: TicketQuery| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_tickets(&TicketQuery { limit: 10, ..query })
                .await
                .unwrap()
                .items
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(TicketQuery::default()).await,
        vec![made[4], made[3], made[2], made[1], made[0]]
    );
    assert_eq!(
        list(TicketQuery {
            status: Some(TicketStatus::Open),
            ..TicketQuery::default()
        })
        .await,
        vec![made[4], made[2], made[1]]
    );
    assert_eq!(
        list(TicketQuery {
            status: Some(TicketStatus::Resolved),
            ..TicketQuery::default()
        })
        .await,
        vec![made[0]]
    );
    assert_eq!(
        list(TicketQuery {
            severity: Some(Severity::High),
            ..TicketQuery::default()
        })
        .await,
        vec![made[4], made[2], made[0]]
    );
    assert_eq!(
        list(TicketQuery {
            assignee: Some("alice".into()),
            ..TicketQuery::default()
        })
        .await,
        vec![made[4], made[3], made[0]]
    );
    assert_eq!(
        list(TicketQuery {
            tag: Some("aws".into()),
            ..TicketQuery::default()
        })
        .await,
        vec![made[3], made[1], made[0]]
    );
    assert_eq!(
        list(TicketQuery {
            tag: Some("aw".into()),
            ..TicketQuery::default()
        })
        .await,
        Vec::<TicketId>::new(),
        "tags match whole"
    );
    assert_eq!(
        list(TicketQuery {
            text: Some("cRyPtO".into()),
            ..TicketQuery::default()
        })
        .await,
        vec![made[2], made[1]]
    );
    assert_eq!(
        list(TicketQuery {
            text: Some("port".into()),
            ..TicketQuery::default()
        })
        .await,
        vec![made[4], made[0]]
    );
    assert_eq!(
        list(TicketQuery {
            text: Some("%".into()),
            ..TicketQuery::default()
        })
        .await,
        Vec::<TicketId>::new(),
        "text is literal"
    );
    assert_eq!(
        list(TicketQuery {
            status: Some(TicketStatus::Open),
            severity: Some(Severity::High),
            assignee: Some("alice".into()),
            text: Some("PORT".into()),
            ..TicketQuery::default()
        })
        .await,
        vec![made[4]]
    );

    let page = store
        .list_tickets(&TicketQuery {
            severity: Some(Severity::High),
            limit: 2,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![made[4], made[2]]
    );
    let before = cursor::<TicketCursor>(&page.next_cursor);
    assert_eq!(before, Some(TicketCursor::Created(made[2])));
    let rest = store
        .list_tickets(&TicketQuery {
            severity: Some(Severity::High),
            cursor: before,
            limit: 2,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![made[0]]
    );
    assert_eq!(rest.next_cursor, None);
}

pub async fn tickets_are_counted_by_status(store: Shared) {
    let count = |counts: &[(TicketStatus, u64)], status: TicketStatus| {
        let matching: Vec<u64> = counts
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, n)| *n)
            .collect();
        assert!(matching.len() <= 1, "{status} listed twice");
        matching.first().copied().unwrap_or(0)
    };
    let empty = store.count_tickets_by_status().await.unwrap();
    for status in TicketStatus::ALL {
        assert_eq!(count(&empty, *status), 0);
    }
    let a = open_ticket(&store, "a", at(100)).await;
    let _b = open_ticket(&store, "b", at(100)).await;
    let c = open_ticket(&store, "c", at(100)).await;
    let _d = open_ticket(&store, "d", at(100)).await;
    change(&store, a, resolve_change(), at(110)).await;
    change(
        &store,
        c,
        TicketChange {
            status: Some(TicketStatus::Acknowledged),
            ..TicketChange::default()
        },
        at(110),
    )
    .await;
    let counts = store.count_tickets_by_status().await.unwrap();
    assert_eq!(count(&counts, TicketStatus::Open), 2);
    assert_eq!(count(&counts, TicketStatus::Acknowledged), 1);
    assert_eq!(count(&counts, TicketStatus::Resolved), 1);
    assert_eq!(count(&counts, TicketStatus::Archived), 0);
}

/// Every page of a listing in `sort`, `limit` at a time: the ids in order.
async fn list_all(store: &Shared, sort: TicketSort, limit: usize) -> Vec<TicketId> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_tickets(&TicketQuery {
                sort,
                cursor: after,
                limit,
                ..TicketQuery::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= limit);
        ids.extend(page.items.iter().map(|t| t.id));
        match cursor::<TicketCursor>(&page.next_cursor) {
            Some(next) => after = Some(next),
            None => return ids,
        }
        assert!(ids.len() < 100, "paging does not end");
    }
}

pub async fn tickets_sort_by_creation_update_or_severity_both_ways_across_pages(store: Shared) {
    use SortDirection::{Asc, Desc};
    use TicketSortKey::{Created, Severity as BySeverity, Updated};
    let a = open_ticket(&store, "a", at(100)).await;
    let b = open_ticket(&store, "b", at(100)).await;
    let c = open_ticket(&store, "c", at(100)).await;
    let d = open_ticket(&store, "d", at(100)).await;
    let severity = |s| TicketChange {
        severity: Some(s),
        ..TicketChange::default()
    };
    change(&store, b, severity(Severity::Critical), at(200)).await;
    change(&store, a, severity(Severity::Low), at(300)).await;
    change(&store, d, severity(Severity::Low), at(400)).await;
    // c stays high, last updated when it was opened.
    let sort = |key, direction| TicketSort { key, direction };
    for (order, expected) in [
        (sort(Created, Desc), vec![d, c, b, a]),
        (sort(Created, Asc), vec![a, b, c, d]),
        (sort(Updated, Desc), vec![d, a, b, c]),
        (sort(Updated, Asc), vec![c, b, a, d]),
        // Equal severities fall back on the id, in the same direction.
        (sort(BySeverity, Desc), vec![b, c, d, a]),
        (sort(BySeverity, Asc), vec![a, d, c, b]),
    ] {
        for limit in [1, 3, 10] {
            assert_eq!(
                list_all(&store, order, limit).await,
                expected,
                "{order:?}, {limit} a page"
            );
        }
    }
    assert_eq!(
        TicketSort::default(),
        sort(Created, Desc),
        "newest first by default"
    );

    // A cursor keeps its place when its ticket is edited meanwhile.
    let first = store
        .list_tickets(&TicketQuery {
            sort: sort(Updated, Desc),
            limit: 2,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first.items.iter().map(|t| t.id).collect::<Vec<_>>(), [d, a]);
    change(&store, a, severity(Severity::Medium), at(500)).await;
    let rest = store
        .list_tickets(&TicketQuery {
            sort: sort(Updated, Desc),
            cursor: cursor::<TicketCursor>(&first.next_cursor),
            limit: 2,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items.iter().map(|t| t.id).collect::<Vec<_>>(), [b, c]);

    let mismatched = store
        .list_tickets(&TicketQuery {
            sort: sort(BySeverity, Desc),
            cursor: Some(TicketCursor::Created(a)),
            limit: 2,
            ..TicketQuery::default()
        })
        .await;
    assert!(
        matches!(mismatched, Err(StoreError::Invalid(_))),
        "a cursor of another order is refused: {mismatched:?}"
    );
}

/// Monday 2023-11-13 00:00 UTC plus `secs`.
fn monday(secs: i64) -> Timestamp {
    DateTime::from_timestamp(1_699_833_600 + secs, 0).expect("in range")
}

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Opens a ticket for `key` whose alert and ticket are both created at `t`.
async fn open_ticket_at(store: &Shared, key: &str, t: Timestamp) -> TicketId {
    let bindings = ingest(store, t, |id| {
        let mut planned = open(new_alert(id, "guardduty", key, t), t);
        if let Disposition::Open { ticket, .. } = &mut planned.disposition {
            ticket.created_at = t;
        }
        vec![planned]
    })
    .await;
    match bindings.as_slice() {
        [AlertBinding::Opened(id)] => *id,
        other => panic!("expected one opened ticket, got {other:?}"),
    }
}

pub async fn dashboard_metrics_count_a_small_fixture_exactly(store: Shared) {
    let to = |status| TicketChange {
        status: Some(status),
        ..TicketChange::default()
    };
    let resolved_as = |conclusion| TicketChange {
        status: Some(TicketStatus::Resolved),
        conclusion: Some(conclusion),
        ..TicketChange::default()
    };
    // Before the window: counted nowhere.
    let early = open_ticket_at(&store, "early", monday(-HOUR)).await;
    store
        .save_agent_run(&agent_run(early, monday(-HOUR), 9_999))
        .await
        .unwrap();
    // Week 1.
    let a = open_ticket_at(&store, "a", monday(10 * HOUR)).await;
    change(
        &store,
        a,
        to(TicketStatus::Acknowledged),
        monday(10 * HOUR + 600),
    )
    .await;
    change(
        &store,
        a,
        resolved_as(Conclusion::FalsePositive),
        monday(11 * HOUR),
    )
    .await;
    let b = open_ticket_at(&store, "b", monday(DAY + 9 * HOUR)).await;
    change(
        &store,
        b,
        to(TicketStatus::Acknowledged),
        monday(DAY + 9 * HOUR + 60),
    )
    .await;
    change(
        &store,
        b,
        TicketChange {
            severity: Some(Severity::Critical),
            assignee: Some(Some("bob".to_owned())),
            ..TicketChange::default()
        },
        monday(DAY + 9 * HOUR + 120),
    )
    .await;
    let second_alert_at = monday(DAY + 9 * HOUR + 1_800);
    ingest(&store, second_alert_at, |id| {
        vec![attach(
            new_alert(id, "guardduty", "b", second_alert_at),
            b,
            second_alert_at,
        )]
    })
    .await;
    let c = open_ticket_at(&store, "c", monday(DAY + 12 * HOUR)).await;
    change(
        &store,
        c,
        resolved_as(Conclusion::TruePositive),
        monday(DAY + 14 * HOUR),
    )
    .await;
    store
        .save_agent_run(&agent_run(a, monday(11 * HOUR), 500))
        .await
        .unwrap();
    let mut second = agent_run(a, monday(12 * HOUR), 300);
    second.steps[1].bytes_processed = Some(1_000);
    store.save_agent_run(&second).await.unwrap();
    // Week 2.
    let d = open_ticket_at(&store, "d", monday(9 * DAY + 8 * HOUR)).await;
    let mut third = agent_run(d, monday(9 * DAY + 9 * HOUR), 50);
    third.steps[1].bytes_processed = None;
    store.save_agent_run(&third).await.unwrap();
    let discarded_at = monday(10 * DAY + 3 * HOUR);
    ingest(&store, discarded_at, |id| {
        vec![discard(new_alert(id, "guardduty", "noise", discarded_at))]
    })
    .await;
    // At the end of the window: excluded.
    let until = monday(14 * DAY);
    ingest(&store, until, |id| {
        vec![discard(new_alert(id, "guardduty", "late", until))]
    })
    .await;

    let metrics = store.dashboard_metrics(monday(0), until).await.unwrap();
    let day = |n: i64| monday(n * DAY).date_naive();
    let value = |n, value| DayValue { day: day(n), value };
    assert_eq!((metrics.since, metrics.until), (monday(0), until));
    assert_eq!(
        metrics.alerts_per_day,
        vec![value(0, 1), value(1, 3), value(9, 1), value(10, 1)]
    );
    assert_eq!(
        metrics.tickets_by_status,
        vec![
            (TicketStatus::Open, 1),
            (TicketStatus::Acknowledged, 1),
            (TicketStatus::Resolved, 2),
            (TicketStatus::Archived, 0),
        ]
    );
    assert_eq!(
        metrics.tickets_by_severity,
        vec![
            (Severity::Critical, 1),
            (Severity::High, 3),
            (Severity::Medium, 0),
            (Severity::Low, 0),
            (Severity::Info, 0),
        ]
    );
    assert_eq!(
        metrics.conclusions,
        vec![
            (Conclusion::Intended, 0),
            (Conclusion::Unaffected, 0),
            (Conclusion::FalsePositive, 1),
            (Conclusion::TruePositive, 1),
            (Conclusion::Escalated, 0),
        ]
    );
    assert_eq!(metrics.tokens_per_day, vec![value(0, 800), value(9, 50)]);
    assert_eq!(
        metrics.bigquery_bytes_per_day,
        vec![value(0, 1_234_567_890_123 + 1_000)]
    );
    let times = |created: i64, acked: Option<i64>, resolved: Option<i64>| TicketTimes {
        created_at: monday(created),
        acked_at: acked.map(monday),
        resolved_at: resolved.map(monday),
    };
    assert_eq!(
        metrics.ticket_times,
        vec![
            times(10 * HOUR, Some(10 * HOUR + 600), Some(11 * HOUR)),
            times(DAY + 9 * HOUR, Some(DAY + 9 * HOUR + 60), None),
            times(
                DAY + 12 * HOUR,
                Some(DAY + 14 * HOUR),
                Some(DAY + 14 * HOUR)
            ),
            times(9 * DAY + 8 * HOUR, None, None),
        ]
    );
    assert_eq!(
        metrics.weekly_times(),
        vec![
            WeeklyTimes {
                week: day(0),
                created: 3,
                acknowledged: 3,
                tta_p50: Some(600),
                tta_p90: Some(2 * HOUR),
                resolved: 2,
                ttr_p50: Some(HOUR),
                ttr_p90: Some(2 * HOUR),
            },
            WeeklyTimes {
                week: day(7),
                created: 1,
                acknowledged: 0,
                tta_p50: None,
                tta_p90: None,
                resolved: 0,
                ttr_p50: None,
                ttr_p90: None,
            },
        ]
    );

    let empty = store
        .dashboard_metrics(monday(-30 * DAY), monday(-20 * DAY))
        .await
        .unwrap();
    assert!(empty.alerts_per_day.is_empty() && empty.ticket_times.is_empty());
    assert!(empty.tickets_by_status.iter().all(|(_, n)| *n == 0));
    assert_eq!(empty.tickets_by_status.len(), TicketStatus::ALL.len());
}

pub async fn binding_an_unbound_alert_puts_it_on_the_ticket_once(store: Shared) {
    let tid = open_ticket(&store, "a", at(100)).await;
    let before = ticket(&store, tid).await;
    let (notice_id, noticed) = make_notice(&store, "probe", at(200)).await;
    let mut discarded = Vec::new();
    for secs in [50, 60] {
        ingest(&store, at(secs), |id| {
            let alert = new_alert(id, "guardduty", "noise", at(secs));
            discarded.push(alert.id);
            vec![discard(alert)]
        })
        .await;
    }

    let bound = store.bind_alert(noticed, tid).await.unwrap();
    assert_eq!(bound.ticket_id, Some(tid));
    assert_eq!(bound.status, AlertStatus::Ticketed);
    assert_eq!(store.get_alert(noticed).await.unwrap().unwrap(), bound);
    let after = ticket(&store, tid).await;
    assert_eq!(after.alert_count, before.alert_count + 1);
    assert_eq!(after.last_seen, at(200), "a later alert moves last_seen");
    assert_eq!(after.version, before.version, "binding is not an edit");
    assert_eq!(
        store
            .get_notice(notice_id)
            .await
            .unwrap()
            .unwrap()
            .ticket_id,
        Some(tid),
        "the notice records the ticket"
    );

    store.bind_alert(discarded[0], tid).await.unwrap();
    let after = ticket(&store, tid).await;
    assert_eq!(after.alert_count, before.alert_count + 2);
    assert_eq!(after.last_seen, at(200), "an older alert leaves last_seen");
    let unbound = store
        .list_alerts(&AlertQuery {
            unbound: true,
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        unbound.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![discarded[1]]
    );

    assert_conflict(store.bind_alert(noticed, tid).await, "binding twice");
    assert_not_found(
        store.bind_alert(AlertId::new(), tid).await,
        "binding an unknown alert",
    );
    assert_not_found(
        store.bind_alert(discarded[1], TicketId::new()).await,
        "binding to an unknown ticket",
    );
    let still = store.get_alert(discarded[1]).await.unwrap().unwrap();
    assert_eq!(
        (still.ticket_id, still.status),
        (None, AlertStatus::Discarded)
    );
    assert_eq!(
        ticket(&store, tid).await.alert_count,
        before.alert_count + 2
    );
}

pub async fn comments_are_listed_oldest_first_and_need_a_ticket(store: Shared) {
    let tid = open_ticket(&store, "a", at(100)).await;
    let other = open_ticket(&store, "b", at(100)).await;
    let comment = |ticket_id, secs, text: &str| Comment {
        id: CommentId::new(),
        ticket_id,
        source: CommentSource::Slack,
        author: "U123".to_owned(),
        text: text.to_owned(),
        created_at: at(secs),
    };
    let late = comment(tid, 300, "third");
    let early = Comment {
        source: CommentSource::Agent,
        ..comment(tid, 100, "first")
    };
    let middle = comment(tid, 200, "second");
    for c in [&late, &early, &middle] {
        assert_eq!(&store.add_comment(c.clone()).await.unwrap(), c);
    }
    store
        .add_comment(comment(other, 150, "elsewhere"))
        .await
        .unwrap();
    assert_eq!(
        store.list_comments(tid).await.unwrap(),
        vec![early, middle, late]
    );
    assert_eq!(store.list_comments(other).await.unwrap().len(), 1);
    assert_not_found(
        store
            .add_comment(comment(TicketId::new(), 1, "orphan"))
            .await,
        "commenting an unknown ticket",
    );
}

// ---------------------------------------------------------------------------------------------
// Notices
// ---------------------------------------------------------------------------------------------

async fn make_notice(store: &Shared, key: &str, now: Timestamp) -> (NoticeId, AlertId) {
    let notice_id = NoticeId::new();
    let mut alert_id = None;
    ingest(store, now, |id| {
        let alert = new_alert(id, "guardduty", key, now);
        alert_id = Some(alert.id);
        vec![PlannedAlert {
            alert,
            disposition: Disposition::Notice {
                notice_id,
                title: format!("notice {key}"),
                channel: None,
            },
        }]
    })
    .await;
    (notice_id, alert_id.unwrap())
}

pub async fn escalating_a_notice_opens_a_ticket_that_is_not_a_dedup_target(store: Shared) {
    let (notice_id, alert_id) = make_notice(&store, "probe", at(100)).await;
    let alert = store.get_alert(alert_id).await.unwrap().unwrap();
    let new_ticket = NewTicket {
        id: TicketId::new(),
        title: "Escalated probe".to_owned(),
        description: "from a notice".to_owned(),
        schema: alert.schema.clone(),
        severity: Severity::Critical,
        assignee: None,
        tags: vec!["escalated".to_owned()],
        attributes: alert.attributes.clone(),
        channel: None,
        fingerprint: alert.fingerprint.clone(),
        created_at: at(500),
    };
    let t = store
        .escalate_notice(notice_id, new_ticket.clone())
        .await
        .unwrap();
    assert_eq!(t.id, new_ticket.id);
    assert_eq!(
        (t.status, t.alert_count, t.version),
        (TicketStatus::Open, 1, 1)
    );
    assert_eq!(
        (t.title.as_str(), t.severity, t.created_at),
        ("Escalated probe", Severity::Critical, at(500))
    );
    assert_eq!(
        (t.first_seen, t.last_seen),
        (alert.created_at, alert.created_at)
    );
    assert_eq!(t.tags, vec!["escalated".to_owned()]);
    assert_eq!(ticket(&store, t.id).await, t);

    let alert = store.get_alert(alert_id).await.unwrap().unwrap();
    assert_eq!(
        (alert.status, alert.ticket_id),
        (AlertStatus::Ticketed, Some(t.id))
    );
    assert_eq!(
        store
            .get_notice(notice_id)
            .await
            .unwrap()
            .unwrap()
            .ticket_id,
        Some(t.id)
    );

    assert_eq!(
        store.find_dedup_ticket(&fp("probe"), at(0)).await.unwrap(),
        None
    );
    let opened = open_ticket(&store, "probe", at(600)).await;
    assert_ne!(opened, t.id);
}

pub async fn escalating_a_notice_twice_conflicts(store: Shared) {
    let (notice_id, alert_id) = make_notice(&store, "probe", at(100)).await;
    let alert = store.get_alert(alert_id).await.unwrap().unwrap();
    let new_ticket = |id| NewTicket {
        id,
        title: "t".into(),
        description: String::new(),
        schema: alert.schema.clone(),
        severity: Severity::High,
        assignee: None,
        tags: vec![],
        attributes: vec![],
        channel: None,
        fingerprint: alert.fingerprint.clone(),
        created_at: at(200),
    };
    let first = store
        .escalate_notice(notice_id, new_ticket(TicketId::new()))
        .await
        .unwrap();
    let second_id = TicketId::new();
    assert_conflict(
        store
            .escalate_notice(notice_id, new_ticket(second_id))
            .await,
        "escalating twice",
    );
    assert_eq!(
        store.get_ticket(second_id).await.unwrap(),
        None,
        "no second ticket"
    );
    assert_eq!(
        store
            .get_notice(notice_id)
            .await
            .unwrap()
            .unwrap()
            .ticket_id,
        Some(first.id)
    );
    assert_not_found(
        store
            .escalate_notice(NoticeId::new(), new_ticket(TicketId::new()))
            .await,
        "escalating an unknown notice",
    );
}

pub async fn notices_list_newest_first_filtered_by_escalation(store: Shared) {
    let mut notices = Vec::new();
    for key in ["a", "b", "c"] {
        notices.push(make_notice(&store, key, at(100)).await);
    }
    let escalated = notices[1].0;
    let alert = store.get_alert(notices[1].1).await.unwrap().unwrap();
    store
        .escalate_notice(
            escalated,
            NewTicket {
                id: TicketId::new(),
                title: "t".into(),
                description: String::new(),
                schema: alert.schema,
                severity: Severity::High,
                assignee: None,
                tags: vec![],
                attributes: vec![],
                channel: None,
                fingerprint: alert.fingerprint,
                created_at: at(200),
            },
        )
        .await
        .unwrap();
    let ids = |page: crate::ports::Page<crate::Notice>| {
        page.items.iter().map(|n| n.id).collect::<Vec<_>>()
    };
    let first = store
        .list_notices(&NoticeQuery {
            limit: 2,
            ..NoticeQuery::default()
        })
        .await
        .unwrap();
    let before = cursor::<NoticeId>(&first.next_cursor);
    assert_eq!(ids(first), vec![notices[2].0, notices[1].0]);
    assert_eq!(before, Some(notices[1].0));
    let rest = store
        .list_notices(&NoticeQuery {
            before,
            limit: 2,
            ..NoticeQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.next_cursor, None);
    assert_eq!(ids(rest), vec![notices[0].0]);
    let yes = store
        .list_notices(&NoticeQuery {
            escalated: Some(true),
            limit: 10,
            ..NoticeQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(yes), vec![escalated]);
    let no = store
        .list_notices(&NoticeQuery {
            escalated: Some(false),
            limit: 10,
            ..NoticeQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(no), vec![notices[2].0, notices[0].0]);
}

// ---------------------------------------------------------------------------------------------
// Hardening: poison events, lease heartbeats, the store clock, batch intake, data the database
// cannot hold, lock ordering
// ---------------------------------------------------------------------------------------------

pub async fn an_expired_lease_past_max_attempts_fails_the_event_instead_of_handing_it_out(
    store: Shared,
) {
    const MAX: u32 = 2;
    let poison = accept(&store, "guardduty", at(0)).await;
    // Two workers in turn lease it and die without a word.
    let first = store.lease_events(1, at(0), at(60), MAX).await.unwrap();
    assert_eq!(first[0].event.attempts, 1);
    let second = store.lease_events(1, at(61), at(120), MAX).await.unwrap();
    assert_eq!((second[0].event.id, second[0].event.attempts), (poison, 2));
    let healthy = accept(&store, "guardduty", at(100)).await;

    let leased = store.lease_events(10, at(121), at(200), MAX).await.unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![healthy],
        "the poison event is not handed out a third time; the healthy one still is"
    );
    let e = event(&store, poison).await;
    assert_eq!(e.state, EventState::Failed);
    assert_eq!(e.attempts, 2);
    assert_eq!(
        e.last_error.as_deref(),
        Some(crate::ports::lease_expired_error(2).as_str())
    );
    assert!(e.last_error.unwrap().contains("lease expired"));
    assert_eq!(e.next_attempt_at, None);
    assert_lease_lost(
        store
            .complete_event(&second[0].lease, vec![], at(122))
            .await,
        poison,
        "completing a given-up event with its last lease",
    );
    assert_eq!(store.queue_stats(at(122)).await.unwrap().failed, 1);
    assert!(
        store
            .lease_events(10, at(10_000), at(10_100), MAX)
            .await
            .unwrap()
            .iter()
            .all(|l| l.event.id != poison),
        "a given-up event stays failed"
    );

    // A manual retry gives it the full number of attempts again.
    store.retry_event(poison, at(300)).await.unwrap();
    let again = lease_only(&store, poison, at(300)).await;
    assert_eq!(again.event.attempts, 1);
}

pub async fn a_pending_event_is_leased_whatever_its_attempts(store: Shared) {
    // A failure with a retry time keeps counting attempts; only an expired lease past the
    // limit is given up on at lease time (the worker decides about failures it sees).
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = store.lease_events(1, at(0), at(60), 1).await.unwrap();
    store
        .fail_event(&leased[0].lease, "transient", Some(at(10)))
        .await
        .unwrap();
    let again = store.lease_events(1, at(10), at(70), 1).await.unwrap();
    assert_eq!((again[0].event.id, again[0].event.attempts), (id, 2));
}

pub async fn an_extended_lease_outlives_its_first_expiry(store: Shared) {
    let id = accept(&store, "guardduty", at(0)).await;
    let leased = lease_only_first(&store, at(0)).await; // expires at(60)
    store.extend_lease(&leased.lease, at(200)).await.unwrap();
    assert!(
        store
            .lease_events(5, at(100), at(300), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty(),
        "the heartbeat kept the lease"
    );
    assert_eq!(event(&store, id).await.attempts, 1);
    store.extend_lease(&leased.lease, at(250)).await.unwrap();

    let forged = Lease {
        event_id: id,
        token: uuid::Uuid::new_v4(),
    };
    assert_lease_lost(
        store.extend_lease(&forged, at(10_000)).await,
        id,
        "extending a forged lease",
    );
    let taken = store
        .lease_events(5, at(251), at(400), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        taken.len(),
        1,
        "once past the extended expiry it is taken over"
    );
    assert_lease_lost(
        store.extend_lease(&leased.lease, at(10_000)).await,
        id,
        "extending a lease taken over",
    );
    store
        .complete_event(&taken[0].lease, vec![], at(260))
        .await
        .unwrap();
    assert_lease_lost(
        store.extend_lease(&taken[0].lease, at(10_000)).await,
        id,
        "extending a finished lease",
    );
    assert_eq!(event(&store, id).await.state, EventState::Ignored);
}

pub async fn the_store_clock_is_current_and_drives_the_queue(store: Shared) {
    let first = store.now().await.unwrap();
    let host = chrono::Utc::now();
    // The test database runs on this host: its clock agrees with ours to within minutes.
    assert!(
        (first - host).num_seconds().abs() < 300,
        "store clock {first} vs host clock {host}"
    );
    assert_eq!(first, us(first), "to the microsecond, as stored");
    let id = store
        .accept_event(new_event("guardduty", None, first))
        .await
        .unwrap()
        .event_id;
    let now = store.now().await.unwrap();
    assert!(now >= first, "the clock does not go back");
    let leased = store
        .lease_events(5, now, now + Duration::seconds(60), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![id],
        "an event accepted at the store's time is due at the store's time"
    );
}

pub async fn accepting_a_batch_keeps_order_and_deduplicates_within_it_and_against_the_store(
    store: Shared,
) {
    let stored = new_event("guardduty", Some("k-stored"), at(0));
    store.accept_event(stored.clone()).await.unwrap();

    let a = new_event("guardduty", Some("k-1"), at(1));
    let b = new_event("guardduty", None, at(2));
    let a_again = new_event("guardduty", Some("k-1"), at(3));
    let stored_again = new_event("guardduty", Some("k-stored"), at(4));
    let other_schema = new_event("falco", Some("k-1"), at(5));
    let c = new_event("guardduty", None, at(6));
    let answers = store
        .accept_events(vec![
            a.clone(),
            b.clone(),
            a_again.clone(),
            stored_again.clone(),
            other_schema.clone(),
            c.clone(),
        ])
        .await
        .unwrap();
    let got: Vec<(EventId, bool)> = answers.iter().map(|x| (x.event_id, x.duplicate)).collect();
    assert_eq!(
        got,
        vec![
            (a.id, false),
            (b.id, false),
            (a.id, true),
            (stored.id, true),
            (other_schema.id, false),
            (c.id, false),
        ]
    );
    for new in [&a, &b, &other_schema, &c] {
        let e = event(&store, new.id).await;
        assert_eq!(
            (e.state, &e.body, e.received_at, e.next_attempt_at),
            (
                EventState::Pending,
                &new.body,
                new.received_at,
                Some(new.received_at)
            )
        );
    }
    for duplicate in [&a_again, &stored_again] {
        assert_eq!(store.get_event(duplicate.id).await.unwrap(), None);
    }
    // Queued in the order of their due times, like events accepted one by one.
    let leased = store
        .lease_events(10, at(10), at(100), MAX_ATTEMPTS)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![stored.id, a.id, b.id, other_schema.id, c.id]
    );
    // The keys a batch stored deduplicate later deliveries.
    let later = store
        .accept_event(new_event("guardduty", Some("k-1"), at(20)))
        .await
        .unwrap();
    assert_eq!((later.event_id, later.duplicate), (a.id, true));
    assert!(store.accept_events(vec![]).await.unwrap().is_empty());
}

pub async fn a_batch_accept_that_fails_stores_nothing(store: Shared) {
    let existing = new_event("guardduty", None, at(0));
    store.accept_event(existing.clone()).await.unwrap();
    let good = new_event("guardduty", Some("k-good"), at(1));
    assert_conflict(
        store
            .accept_events(vec![good.clone(), existing.clone()])
            .await,
        "a batch naming a stored event id",
    );
    assert_eq!(store.get_event(good.id).await.unwrap(), None, "rolled back");

    let twice = new_event("guardduty", None, at(2));
    assert_conflict(
        store
            .accept_events(vec![good.clone(), twice.clone(), twice.clone()])
            .await,
        "a batch naming one event id twice",
    );
    assert_eq!(store.get_event(good.id).await.unwrap(), None);
    assert_eq!(store.get_event(twice.id).await.unwrap(), None);

    // Its idempotency key was not taken either.
    let accepted = store.accept_event(good.clone()).await.unwrap();
    assert_eq!((accepted.event_id, accepted.duplicate), (good.id, false));
    let all = store
        .list_events(&EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
}

/// PostgreSQL cannot hold U+0000 in `text` or `jsonb`; the other stores can.
fn poisoned_alert(event_id: EventId, now: Timestamp) -> NewAlert {
    NewAlert {
        title: "nul \u{0} in the title".to_owned(),
        data: json!({"payload": "nul \u{0} in the data"}),
        ..new_alert(event_id, "guardduty", "poison", now)
    }
}

pub async fn a_value_the_database_cannot_hold_fails_only_its_own_completion(store: Shared) {
    let postgres = store.backend() == "postgres";
    let now = at(100);
    let leased = lease_n(&store, 3, now).await;
    let poisoned = leased[1].event.id;
    let good = |i: usize| open(new_alert(leased[i].event.id, "guardduty", "good", now), now);
    let batch = vec![
        (leased[0].lease.clone(), vec![good(0)]),
        (
            leased[1].lease.clone(),
            vec![open(poisoned_alert(poisoned, now), now)],
        ),
        (leased[2].lease.clone(), vec![good(2)]),
    ];
    match store.complete_events(batch, now).await {
        Err(StoreError::Invalid(why)) => {
            assert!(!why.is_empty());
            for l in &leased {
                assert_eq!(
                    event(&store, l.event.id).await.state,
                    EventState::Processing,
                    "a failed batch stores nothing and keeps every lease"
                );
            }
            assert!(all_tickets(&store).await.is_empty());
        }
        Ok(results) if !postgres => {
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            return;
        }
        other => panic!("expected the batch to fail with Invalid, got {other:?}"),
    }

    // Completed one by one, only the poisoned event fails, and it says why.
    for i in [0, 2] {
        store
            .complete_event(&leased[i].lease, vec![good(i)], now)
            .await
            .unwrap();
    }
    let result = store
        .complete_event(
            &leased[1].lease,
            vec![open(poisoned_alert(poisoned, now), now)],
            now,
        )
        .await;
    let Err(StoreError::Invalid(why)) = result else {
        panic!("expected Invalid, got {result:?}")
    };
    assert_eq!(event(&store, poisoned).await.state, EventState::Processing);
    let error = StoreError::Invalid(why).to_string();
    store
        .fail_event(&leased[1].lease, &error, None)
        .await
        .unwrap();
    let e = event(&store, poisoned).await;
    assert_eq!(e.state, EventState::Failed);
    assert!(
        e.last_error
            .as_deref()
            .is_some_and(|m| m.contains("rejected the data")),
        "{e:?}"
    );
    let tickets = all_tickets(&store).await;
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        tickets[0].alert_count, 2,
        "the good events share their ticket"
    );
}

/// Single and batch completions of overlapping tickets, all at once: they lock in one order,
/// so none fails with a deadlock (which would surface as `Unavailable`).
pub async fn concurrent_single_and_batch_completions_of_shared_tickets_do_not_deadlock(
    store: Shared,
) {
    const ROUNDS: usize = 4;
    const TASKS: usize = 8;
    let now = at(1_000);
    let keys = ["lock-a", "lock-b", "lock-c"];
    let mut tickets = Vec::new();
    for key in keys {
        tickets.push(open_ticket(&store, key, now).await);
    }
    let mut attached = 0u64;
    for round in 0..ROUNDS {
        let leased = lease_n(&store, TASKS * 2, now).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let mut tasks = Vec::new();
        for (task, pair) in leased.chunks(2).enumerate() {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            let pair = pair.to_vec();
            let tickets = tickets.clone();
            // Every event attaches to all three tickets, each task in another order.
            let order: Vec<usize> = match (task + round) % 3 {
                0 => vec![0, 1, 2],
                1 => vec![2, 1, 0],
                _ => vec![1, 2, 0],
            };
            tasks.push(tokio::spawn(async move {
                let plan = |l: &LeasedEvent| -> Vec<PlannedAlert> {
                    order
                        .iter()
                        .map(|&k| {
                            attach(
                                new_alert(l.event.id, "guardduty", keys[k], now),
                                tickets[k],
                                now,
                            )
                        })
                        .collect()
                };
                barrier.wait().await;
                if task % 2 == 0 {
                    for l in &pair {
                        store
                            .complete_event(&l.lease, plan(l), now)
                            .await
                            .unwrap_or_else(|e| panic!("single completion failed: {e}"));
                    }
                } else {
                    let batch = pair.iter().map(|l| (l.lease.clone(), plan(l))).collect();
                    let results = store
                        .complete_events(batch, now)
                        .await
                        .unwrap_or_else(|e| panic!("batch completion failed: {e}"));
                    for result in results {
                        result.unwrap();
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        attached += (TASKS * 2) as u64;
    }
    for id in tickets {
        assert_eq!(ticket(&store, id).await.alert_count, 1 + attached);
    }
    assert_eq!(store.queue_stats(now).await.unwrap(), QueueStats::default());
}

// ---------------------------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------------------------

pub async fn timestamps_round_trip_to_the_microsecond(store: Shared) {
    let precise = at(1) + Duration::nanoseconds(123_456_789);
    let id = store
        .accept_event(new_event("guardduty", None, precise))
        .await
        .unwrap()
        .event_id;
    let e = event(&store, id).await;
    assert_eq!(e.received_at, us(precise));
    assert_eq!(e.received_at.timestamp_subsec_micros(), 123_456);

    let leased = lease_only(&store, id, precise).await;
    let alert = new_alert(id, "guardduty", "precise", precise);
    let alert_id = alert.id;
    let bindings = store
        .complete_event(&leased.lease, vec![open(alert, precise)], precise)
        .await
        .unwrap();
    let [AlertBinding::Opened(tid)] = bindings.as_slice() else {
        panic!("{bindings:?}")
    };
    assert_eq!(event(&store, id).await.processed_at, Some(us(precise)));
    assert_eq!(
        store.get_alert(alert_id).await.unwrap().unwrap().created_at,
        us(precise)
    );
    let t = ticket(&store, *tid).await;
    assert_eq!((t.first_seen, t.last_seen), (us(precise), us(precise)));
    assert_eq!(
        store
            .find_dedup_ticket(&fp("precise"), us(precise))
            .await
            .unwrap(),
        Some(*tid)
    );
    // Older than 1970 and far in the future survive too.
    let old = DateTime::from_timestamp(-86_400 * 365, 5_000).unwrap();
    let old_id = store
        .accept_event(new_event("guardduty", None, old))
        .await
        .unwrap()
        .event_id;
    assert_eq!(event(&store, old_id).await.received_at, old);
    let future = DateTime::from_timestamp(4_102_444_800, 999_999_000).unwrap();
    let future_id = store
        .accept_event(new_event("guardduty", None, future))
        .await
        .unwrap()
        .event_id;
    assert_eq!(event(&store, future_id).await.received_at, future);
}

pub async fn ping_answers(store: Shared) {
    store.ping().await.unwrap();
    assert!(["memory", "sqlite", "postgres"].contains(&store.backend()));
}

// ---------------------------------------------------------------------------------------------
// Agent storage: the triage queue, agent runs, embeddings, the tool cache
// ---------------------------------------------------------------------------------------------

fn assert_triage_lease_lost<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    id: TicketId,
    what: &str,
) {
    assert!(
        matches!(result, Err(StoreError::TriageLeaseLost(lost)) if lost == id),
        "{what}: expected TriageLeaseLost({id}), got {result:?}"
    );
}

async fn triage_job(store: &Shared, id: TicketId) -> TriageJob {
    store
        .get_triage_job(id)
        .await
        .unwrap()
        .expect("the ticket has a triage job")
}

async fn lease_triage_at(store: &Shared, limit: usize, now: Timestamp) -> Vec<TriageLease> {
    store
        .lease_triage(limit, now, now + Duration::seconds(300), MAX_ATTEMPTS)
        .await
        .unwrap()
}

/// Leases exactly the one due triage job the case expects.
async fn lease_triage_only(store: &Shared, id: TicketId, now: Timestamp) -> TriageLease {
    let mut leased = lease_triage_at(store, 10, now).await;
    assert_eq!(
        leased.iter().map(|l| l.ticket_id).collect::<Vec<_>>(),
        vec![id],
        "exactly this due job"
    );
    leased.remove(0)
}

fn finding() -> Finding {
    Finding {
        severity: FindingSeverity::High,
        verdict: Verdict::TruePositive,
        confidence: 0.85,
        summary: "Port probe from a known scanner".to_owned(),
        reason: "OTX lists 203.0.113.9 as a mass scanner".to_owned(),
        recommendation: "Close the port".to_owned(),
        evidence: vec!["step-2".to_owned()],
    }
}

/// A completed triage run of `ticket` with a finding and two steps, started at `started`
/// (with sub-microsecond digits, which stores drop) and spending `tokens`.
pub fn agent_run(ticket: TicketId, started: Timestamp, tokens: u32) -> AgentRun {
    AgentRun {
        id: uuid::Uuid::now_v7(),
        ticket_id: ticket,
        purpose: RunPurpose::Triage,
        model: "gpt-test".to_owned(),
        status: RunStatus::Completed,
        started_at: started + Duration::nanoseconds(123_456_789),
        finished_at: Some(started + Duration::milliseconds(2_500) + Duration::nanoseconds(999)),
        finding: Some(finding()),
        answer: None,
        budget: None,
        error: None,
        usage: TokenUsage {
            prompt_tokens: tokens - tokens / 4,
            completion_tokens: tokens / 4,
            total_tokens: tokens,
        },
        steps: vec![
            AgentStep {
                index: 1,
                kind: StepKind::Model,
                tool: None,
                arguments: None,
                result: None,
                error: None,
                latency_ms: 800,
                tokens: TokenUsage {
                    prompt_tokens: 90,
                    completion_tokens: 10,
                    total_tokens: 100,
                },
                bytes_processed: None,
            },
            AgentStep {
                index: 2,
                kind: StepKind::Tool,
                tool: Some("otx_lookup".to_owned()),
                arguments: Some(json!({
                    "indicator": "203.0.113.9",
                    "type": "ipv4",
                    "nested": {"b": 1, "a": [1.5, "x", null, true]}
                })),
                result: Some("clean ✓ \"quoted\"\nsecond line".to_owned()),
                error: None,
                latency_ms: 120,
                tokens: TokenUsage::default(),
                bytes_processed: Some(1_234_567_890_123),
            },
        ],
    }
}

/// What a store keeps of `run`: timestamps to the microsecond.
pub fn stored_run(mut run: AgentRun) -> AgentRun {
    run.started_at = us(run.started_at);
    run.finished_at = run.finished_at.map(us);
    run
}

pub async fn opening_a_ticket_enqueues_one_triage_job_and_attaching_enqueues_none(store: Shared) {
    assert_eq!(
        store.triage_stats(at(0)).await.unwrap(),
        TriageStats::default()
    );
    let first = open_ticket(&store, "probe", at(100)).await;
    assert_eq!(
        triage_job(&store, first).await,
        TriageJob {
            ticket_id: first,
            state: TriageJobState::Pending,
            attempts: 0,
            last_error: None,
            created_at: at(100),
            updated_at: at(100),
        },
        "queued at the completion's time"
    );
    // Attaching to it queues nothing: a storm of one fingerprint costs one triage.
    for n in 0..3 {
        let now = at(200 + n);
        ingest(&store, now, |id| {
            vec![attach(new_alert(id, "guardduty", "probe", now), first, now)]
        })
        .await;
    }
    // Three alerts of one fingerprint in one event: one ticket, one job.
    let bindings = ingest(&store, at(300), |id| {
        (0..3)
            .map(|_| open(new_alert(id, "guardduty", "burst", at(300)), at(300)))
            .collect()
    })
    .await;
    let AlertBinding::Opened(second) = bindings[0] else {
        panic!("the first alert opens: {bindings:?}")
    };
    // A notice opens no ticket, so no job either.
    make_notice(&store, "quiet", at(400)).await;
    assert_eq!(
        store.triage_stats(at(500)).await.unwrap(),
        TriageStats {
            pending: 2,
            processing: 0,
            failed: 0
        }
    );
    assert_eq!(triage_job(&store, second).await.created_at, at(300));
    let leased = lease_triage_at(&store, 10, at(500)).await;
    assert_eq!(
        leased.iter().map(|l| l.ticket_id).collect::<Vec<_>>(),
        vec![first, second],
        "oldest first"
    );
    assert_eq!(
        ticket(&store, first).await.version,
        1,
        "queueing touches no ticket"
    );
}

pub async fn escalating_a_notice_enqueues_one_triage_job(store: Shared) {
    let (notice_id, alert_id) = make_notice(&store, "probe", at(100)).await;
    assert_eq!(store.triage_stats(at(100)).await.unwrap().pending, 0);
    let alert = store.get_alert(alert_id).await.unwrap().unwrap();
    let new_ticket = NewTicket {
        id: TicketId::new(),
        title: "Escalated probe".to_owned(),
        description: String::new(),
        schema: alert.schema.clone(),
        severity: Severity::Critical,
        assignee: None,
        tags: Vec::new(),
        attributes: alert.attributes.clone(),
        channel: None,
        fingerprint: alert.fingerprint.clone(),
        created_at: at(500),
    };
    let t = store.escalate_notice(notice_id, new_ticket).await.unwrap();
    let job = triage_job(&store, t.id).await;
    assert_eq!(
        (job.state, job.attempts, job.created_at),
        (TriageJobState::Pending, 0, at(500))
    );
    assert_eq!(store.triage_stats(at(500)).await.unwrap().pending, 1);
    lease_triage_only(&store, t.id, at(500)).await;
}

pub async fn triage_leases_take_due_jobs_oldest_first_and_hold(store: Shared) {
    let a = open_ticket(&store, "a", at(10)).await;
    let b = open_ticket(&store, "b", at(20)).await;
    let c = open_ticket(&store, "c", at(30)).await;
    assert!(
        store
            .lease_triage(0, at(100), at(400), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty(),
        "a limit of 0 leases nothing"
    );
    assert!(
        lease_triage_at(&store, 10, at(5)).await.is_empty(),
        "not due before the ticket opened"
    );
    let first = lease_triage_at(&store, 2, at(100)).await;
    assert_eq!(
        first.iter().map(|l| l.ticket_id).collect::<Vec<_>>(),
        vec![a, b]
    );
    assert!(first.iter().all(|l| l.attempts == 1));
    assert_ne!(first[0].token, first[1].token);
    let job = triage_job(&store, a).await;
    assert_eq!(
        (job.state, job.attempts, job.updated_at),
        (TriageJobState::Processing, 1, at(100))
    );
    lease_triage_only(&store, c, at(100)).await;
    assert!(
        lease_triage_at(&store, 10, at(200)).await.is_empty(),
        "leases hold until they expire"
    );
    assert_eq!(
        store.triage_stats(at(200)).await.unwrap(),
        TriageStats {
            pending: 0,
            processing: 3,
            failed: 0
        }
    );
}

pub async fn an_expired_triage_lease_is_taken_over_and_the_stale_token_is_lost(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let stale = store
        .lease_triage(10, at(10), at(20), MAX_ATTEMPTS)
        .await
        .unwrap()
        .remove(0);
    assert!(
        store
            .lease_triage(10, at(20), at(100), MAX_ATTEMPTS)
            .await
            .unwrap()
            .is_empty(),
        "a lease holds up to its expiry"
    );
    let current = store
        .lease_triage(10, at(30), at(100), MAX_ATTEMPTS)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((current.ticket_id, current.attempts), (id, 2));
    assert_ne!(current.token, stale.token);

    assert_triage_lease_lost(
        store.extend_triage_lease(&stale, at(500)).await,
        id,
        "extending a stale lease",
    );
    let run = agent_run(id, at(40), 100);
    assert_triage_lease_lost(
        store
            .finish_triage(&stale, TriageOutcome::Ran(Box::new(run)), at(40))
            .await,
        id,
        "finishing with a stale lease",
    );
    assert_triage_lease_lost(
        store.fail_triage(&stale, "boom", None).await,
        id,
        "failing with a stale lease",
    );
    assert_triage_lease_lost(
        store.release_triage(&stale).await,
        id,
        "releasing a stale lease",
    );
    let forged = TriageLease {
        token: uuid::Uuid::new_v4(),
        ..current.clone()
    };
    assert_triage_lease_lost(
        store.extend_triage_lease(&forged, at(500)).await,
        id,
        "a token that was never handed out",
    );
    assert!(
        store.list_agent_runs(id).await.unwrap().is_empty(),
        "a lost finish stores no run"
    );
    assert_eq!(ticket(&store, id).await.finding, None);
    let job = triage_job(&store, id).await;
    assert_eq!((job.state, job.attempts), (TriageJobState::Processing, 2));

    // The current holder extends its lease past the first expiry.
    store.extend_triage_lease(&current, at(500)).await.unwrap();
    assert!(lease_triage_at(&store, 10, at(200)).await.is_empty());
    store
        .finish_triage(&current, TriageOutcome::Skipped("test".into()), at(210))
        .await
        .unwrap();
    assert_triage_lease_lost(
        store.extend_triage_lease(&current, at(600)).await,
        id,
        "extending a finished lease",
    );
}

pub async fn an_expired_triage_lease_past_max_attempts_fails_the_job(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    for (n, now) in [(1, 10), (2, 30)] {
        let leased = store
            .lease_triage(10, at(now), at(now + 10), 2)
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].attempts, n);
    }
    assert!(
        store
            .lease_triage(10, at(50), at(60), 2)
            .await
            .unwrap()
            .is_empty(),
        "given up on, not handed out a third time"
    );
    let job = triage_job(&store, id).await;
    assert_eq!(
        (job.state, job.attempts, job.last_error.as_deref()),
        (
            TriageJobState::Failed,
            2,
            Some(crate::ports::lease_expired_error(2).as_str())
        )
    );
    assert_eq!(store.triage_stats(at(50)).await.unwrap().failed, 1);
    assert!(lease_triage_at(&store, 10, at(1_000)).await.is_empty());
}

pub async fn finishing_triage_stores_the_run_and_writes_the_finding_without_bumping_the_version(
    store: Shared,
) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let before = ticket(&store, id).await;
    let lease = lease_triage_only(&store, id, at(10)).await;
    let run = agent_run(id, at(10), 1_000);
    let finished = at(20) + Duration::nanoseconds(7_654_321);
    store
        .finish_triage(&lease, TriageOutcome::Ran(Box::new(run.clone())), finished)
        .await
        .unwrap();

    let job = triage_job(&store, id).await;
    assert_eq!(
        job,
        TriageJob {
            ticket_id: id,
            state: TriageJobState::Done,
            attempts: 1,
            last_error: None,
            created_at: at(0),
            updated_at: us(finished),
        }
    );
    let after = ticket(&store, id).await;
    assert_eq!(
        after.finding,
        Some(serde_json::to_value(finding()).unwrap())
    );
    assert_eq!(
        after,
        Ticket {
            finding: after.finding.clone(),
            ..before
        },
        "only the finding changed: not the version, not updated_at"
    );
    assert_eq!(
        store.list_agent_runs(id).await.unwrap(),
        vec![stored_run(run)],
        "the run round-trips with its steps, to the microsecond"
    );
    assert!(
        lease_triage_at(&store, 10, at(1_000)).await.is_empty(),
        "a done job is not leased again"
    );
    assert_eq!(
        store.triage_stats(at(30)).await.unwrap(),
        TriageStats::default()
    );
    assert_triage_lease_lost(
        store
            .finish_triage(&lease, TriageOutcome::Skipped("again".into()), at(30))
            .await,
        id,
        "finishing twice",
    );
}

pub async fn a_run_without_a_finding_leaves_the_ticket_alone(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let lease = lease_triage_only(&store, id, at(10)).await;
    let run = AgentRun {
        status: RunStatus::BudgetExhausted,
        finding: None,
        budget: Some(BudgetKind::RunTokens),
        ..agent_run(id, at(10), 50)
    };
    store
        .finish_triage(&lease, TriageOutcome::Ran(Box::new(run.clone())), at(20))
        .await
        .unwrap();
    assert_eq!(triage_job(&store, id).await.state, TriageJobState::Done);
    assert_eq!(ticket(&store, id).await.finding, None);
    assert_eq!(
        store.list_agent_runs(id).await.unwrap(),
        vec![stored_run(run)]
    );
}

pub async fn skipping_triage_records_the_reason_and_no_run(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let lease = lease_triage_only(&store, id, at(10)).await;
    store
        .finish_triage(
            &lease,
            TriageOutcome::Skipped("the agent is disabled".into()),
            at(20),
        )
        .await
        .unwrap();
    let job = triage_job(&store, id).await;
    assert_eq!(
        (job.state, job.last_error.as_deref(), job.updated_at),
        (
            TriageJobState::Skipped,
            Some("the agent is disabled"),
            at(20)
        )
    );
    assert!(store.list_agent_runs(id).await.unwrap().is_empty());
    assert_eq!(ticket(&store, id).await.finding, None);
    assert!(lease_triage_at(&store, 10, at(1_000)).await.is_empty());
}

pub async fn failed_triage_is_retried_when_due_or_fails_for_good(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let lease = lease_triage_only(&store, id, at(10)).await;
    store
        .fail_triage(&lease, "model timed out", Some(at(500)))
        .await
        .unwrap();
    let job = triage_job(&store, id).await;
    assert_eq!(
        (job.state, job.attempts, job.last_error.as_deref()),
        (TriageJobState::Pending, 1, Some("model timed out"))
    );
    assert!(
        lease_triage_at(&store, 10, at(499)).await.is_empty(),
        "not before its retry time"
    );
    let again = lease_triage_only(&store, id, at(500)).await;
    assert_eq!(again.attempts, 2);
    store
        .fail_triage(&again, "the model refused", None)
        .await
        .unwrap();
    let job = triage_job(&store, id).await;
    assert_eq!(
        (job.state, job.attempts, job.last_error.as_deref()),
        (TriageJobState::Failed, 2, Some("the model refused"))
    );
    assert_eq!(
        store.triage_stats(at(600)).await.unwrap(),
        TriageStats {
            pending: 0,
            processing: 0,
            failed: 1
        }
    );
    assert!(lease_triage_at(&store, 10, at(10_000)).await.is_empty());
}

pub async fn released_triage_is_due_at_once_and_the_attempt_is_not_counted(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let lease = lease_triage_only(&store, id, at(10)).await;
    store.release_triage(&lease).await.unwrap();
    let job = triage_job(&store, id).await;
    assert_eq!((job.state, job.attempts), (TriageJobState::Pending, 0));
    // Due at the time it was leased at, whatever the releasing process's clock says.
    let again = lease_triage_only(&store, id, at(10)).await;
    assert_eq!(again.attempts, 1);
    assert_triage_lease_lost(store.release_triage(&lease).await, id, "releasing twice");
}

pub async fn requeueing_triage_makes_it_pending_again_unless_it_is_running(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let lease = lease_triage_only(&store, id, at(10)).await;
    assert_conflict(
        store.requeue_triage(id, at(20)).await,
        "requeueing a running triage",
    );
    store.fail_triage(&lease, "boom", None).await.unwrap();
    let job = store.requeue_triage(id, at(900)).await.unwrap();
    assert_eq!(
        job,
        TriageJob {
            ticket_id: id,
            state: TriageJobState::Pending,
            attempts: 0,
            last_error: None,
            created_at: at(0),
            updated_at: at(900),
        }
    );
    assert_eq!(triage_job(&store, id).await, job);
    assert!(lease_triage_at(&store, 10, at(899)).await.is_empty());
    let lease = lease_triage_only(&store, id, at(900)).await;
    assert_eq!(lease.attempts, 1);
    store
        .finish_triage(&lease, TriageOutcome::Skipped("done".into()), at(910))
        .await
        .unwrap();
    // A finished job can be queued again too.
    assert_eq!(
        store.requeue_triage(id, at(950)).await.unwrap().state,
        TriageJobState::Pending
    );
    assert_not_found(
        store.requeue_triage(TicketId::new(), at(950)).await,
        "requeueing the triage of an unknown ticket",
    );
}

pub async fn concurrent_triage_leases_never_hand_out_a_job_twice(store: Shared) {
    let mut opened = Vec::new();
    for n in 0..20 {
        opened.push(open_ticket(&store, &format!("k{n}"), at(n)).await);
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let leased = store
                        .lease_triage(3, at(100), at(400), MAX_ATTEMPTS)
                        .await
                        .unwrap();
                    if leased.is_empty() {
                        return mine;
                    }
                    mine.extend(leased.into_iter().map(|l| l.ticket_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all.sort();
    opened.sort();
    assert_eq!(all, opened, "every job leased exactly once");
}

pub async fn agent_runs_are_replaced_whole_and_listed_oldest_first(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let other = open_ticket(&store, "other", at(0)).await;
    let later = agent_run(id, at(20), 100);
    let earlier = AgentRun {
        purpose: RunPurpose::Chat,
        finding: None,
        answer: Some("It is a scanner.".to_owned()),
        ..agent_run(id, at(10), 30)
    };
    store.save_agent_run(&later).await.unwrap();
    store.save_agent_run(&earlier).await.unwrap();
    store
        .save_agent_run(&agent_run(other, at(5), 1))
        .await
        .unwrap();
    assert_eq!(
        store.list_agent_runs(id).await.unwrap(),
        vec![stored_run(earlier.clone()), stored_run(later.clone())]
    );

    // Saving again replaces the whole run, steps included.
    let mut replaced = later.clone();
    replaced.status = RunStatus::Failed;
    replaced.finding = None;
    replaced.error = Some("the model stopped answering".to_owned());
    replaced.budget = Some(BudgetKind::WallTime);
    replaced.steps.truncate(1);
    replaced.usage.total_tokens = 7;
    store.save_agent_run(&replaced).await.unwrap();
    assert_eq!(
        store.list_agent_runs(id).await.unwrap(),
        vec![stored_run(earlier), stored_run(replaced)]
    );
    assert_eq!(store.list_agent_runs(other).await.unwrap().len(), 1);
    assert!(
        store
            .list_agent_runs(TicketId::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_not_found(
        store
            .save_agent_run(&agent_run(TicketId::new(), at(0), 1))
            .await,
        "a run of an unknown ticket",
    );
}

pub async fn tokens_spent_since_sums_the_runs_started_at_or_after_it(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    assert_eq!(store.tokens_spent_since(at(0)).await.unwrap(), 0);
    for (started, tokens) in [(10, 100), (20, 50), (30, 7)] {
        let run = AgentRun {
            started_at: at(started),
            ..agent_run(id, at(started), tokens)
        };
        store.save_agent_run(&run).await.unwrap();
    }
    // Runs of another purpose count against the same budget.
    let lease = lease_triage_only(&store, id, at(40)).await;
    let triage = AgentRun {
        started_at: at(40),
        ..agent_run(id, at(40), 1_000)
    };
    store
        .finish_triage(&lease, TriageOutcome::Ran(Box::new(triage)), at(41))
        .await
        .unwrap();
    assert_eq!(store.tokens_spent_since(at(0)).await.unwrap(), 1_157);
    assert_eq!(
        store.tokens_spent_since(at(20)).await.unwrap(),
        1_057,
        "a run started exactly then counts"
    );
    assert_eq!(store.tokens_spent_since(at(31)).await.unwrap(), 1_000);
    assert_eq!(store.tokens_spent_since(at(41)).await.unwrap(), 0);
}

pub async fn embeddings_are_stored_per_ticket_and_model_and_replaced(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    let vector = vec![0.1f32, -2.5, 3.75, f32::MIN_POSITIVE, 1e30];
    store
        .put_ticket_embedding(id, "small", &vector)
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket_embedding(id, "small").await.unwrap(),
        Some(vector.clone()),
        "bit for bit"
    );
    assert_eq!(store.get_ticket_embedding(id, "large").await.unwrap(), None);
    store
        .put_ticket_embedding(id, "large", &[1.0, 2.0])
        .await
        .unwrap();
    store
        .put_ticket_embedding(id, "small", &[4.0, 5.0, 6.0])
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket_embedding(id, "small").await.unwrap(),
        Some(vec![4.0, 5.0, 6.0]),
        "replaced, dimensions included"
    );
    assert_eq!(
        store.get_ticket_embedding(id, "large").await.unwrap(),
        Some(vec![1.0, 2.0])
    );
    assert_eq!(
        store
            .get_ticket_embedding(TicketId::new(), "small")
            .await
            .unwrap(),
        None
    );
    assert_not_found(
        store
            .put_ticket_embedding(TicketId::new(), "small", &[1.0])
            .await,
        "the embedding of an unknown ticket",
    );
}

pub async fn new_alerts_wait_for_an_embedding_until_one_is_stored_or_skipped(store: Shared) {
    assert!(store.alerts_to_embed(10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
        let now = at(i64::try_from(n).unwrap() * 10);
        let bindings = ingest(&store, now, |id| {
            let alert = new_alert(id, "guardduty", key, now);
            ids.push(alert.id);
            vec![discard(alert)]
        })
        .await;
        assert_eq!(bindings.len(), 1);
    }
    let waiting = |limit| {
        let store = Arc::clone(&store);
        async move {
            store
                .alerts_to_embed(limit)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(waiting(10).await, ids, "every new alert, oldest first");
    assert_eq!(waiting(2).await, ids[..2], "at most the limit");

    let vector = vec![0.25f32, -1.5, 1e-20];
    store
        .put_alert_embeddings(
            "m",
            &[(ids[0], vector.clone()), (ids[2], vec![1.0, 0.0, 0.0])],
        )
        .await
        .unwrap();
    assert_eq!(waiting(10).await, vec![ids[1]]);
    assert_eq!(
        store.get_alert_embedding(ids[0], "m").await.unwrap(),
        Some(vector),
        "bit for bit"
    );
    assert_eq!(
        store.get_alert_embedding(ids[0], "other").await.unwrap(),
        None
    );
    store
        .put_alert_embeddings("m", &[(ids[0], vec![9.0])])
        .await
        .unwrap();
    assert_eq!(
        store.get_alert_embedding(ids[0], "m").await.unwrap(),
        Some(vec![9.0]),
        "replaced, dimensions included"
    );

    assert_not_found(
        store
            .put_alert_embeddings("m", &[(ids[1], vec![1.0]), (AlertId::new(), vec![1.0])])
            .await,
        "the embedding of an unknown alert",
    );
    assert_eq!(
        store.get_alert_embedding(ids[1], "m").await.unwrap(),
        None,
        "all or nothing"
    );
    assert_eq!(waiting(10).await, vec![ids[1]]);

    store
        .skip_alert_embeddings(&[ids[1], AlertId::new()])
        .await
        .unwrap();
    assert!(waiting(10).await.is_empty(), "skipped alerts wait no more");
    assert_eq!(store.get_alert_embedding(ids[1], "m").await.unwrap(), None);
}

pub async fn similar_tickets_are_the_closest_of_one_model_and_dimension_best_first(store: Shared) {
    let mut ids = HashMap::new();
    for (n, key) in [
        "same",
        "close",
        "orthogonal",
        "opposite",
        "wide",
        "other_model",
    ]
    .into_iter()
    .enumerate()
    {
        let n = i64::try_from(n).unwrap();
        ids.insert(key, open_ticket(&store, key, at(n * 10)).await);
    }
    let put = |key: &'static str, model: &'static str, vector: Vec<f32>| {
        let store = Arc::clone(&store);
        let id = ids[key];
        async move {
            store
                .put_ticket_embedding(id, model, &vector)
                .await
                .unwrap()
        }
    };
    put("same", "m", vec![1.0, 0.0, 0.0]).await;
    put("close", "m", vec![0.9, 0.1, 0.0]).await;
    put("orthogonal", "m", vec![0.0, 1.0, 0.0]).await;
    put("opposite", "m", vec![-1.0, 0.0, 0.0]).await;
    put("wide", "m", vec![1.0, 0.0, 0.0, 0.0]).await;
    put("other_model", "n", vec![1.0, 0.0, 0.0]).await;
    let resolved = change(&store, ids["orthogonal"], resolve_change(), at(100)).await;
    let query = [2.0f32, 0.0, 0.0];

    let found = store.similar_tickets("m", &query, 10, None).await.unwrap();
    assert_eq!(
        found.iter().map(|s| s.ticket_id).collect::<Vec<_>>(),
        vec![
            ids["same"],
            ids["close"],
            ids["orthogonal"],
            ids["opposite"]
        ],
        "best first; other dimensions and other models left out"
    );
    for (hit, expected) in found.iter().zip([
        1.0,
        crate::investigation::cosine_similarity(&query, &[0.9, 0.1, 0.0]),
        0.0,
        -1.0,
    ]) {
        assert!(
            (hit.score - expected).abs() < 1e-5,
            "score {} vs {expected}",
            hit.score
        );
    }
    let orthogonal = &found[2];
    assert_eq!(
        (
            orthogonal.title.as_str(),
            orthogonal.status,
            orthogonal.conclusion,
            orthogonal.reason.as_deref(),
            orthogonal.created_at,
            orthogonal.finding.as_ref(),
        ),
        (
            resolved.title.as_str(),
            TicketStatus::Resolved,
            Some(Conclusion::FalsePositive),
            Some("scanner"),
            resolved.created_at,
            None,
        )
    );

    let top = store
        .similar_tickets("m", &query, 2, Some(ids["same"]))
        .await
        .unwrap();
    assert_eq!(
        top.iter().map(|s| s.ticket_id).collect::<Vec<_>>(),
        vec![ids["close"], ids["orthogonal"]],
        "at most `limit`, leaving out `exclude`"
    );
    let wide = store
        .similar_tickets("m", &[0.0, 0.0, 0.0, 1.0], 10, None)
        .await
        .unwrap();
    assert_eq!(
        wide.iter().map(|s| s.ticket_id).collect::<Vec<_>>(),
        vec![ids["wide"]]
    );
    assert!(
        store
            .similar_tickets("unknown", &query, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .similar_tickets("m", &query, 0, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_similar_ticket_carries_the_finding_the_agent_wrote(store: Shared) {
    let id = open_ticket(&store, "probe", at(0)).await;
    store
        .put_ticket_embedding(id, "m", &[0.5, 0.5])
        .await
        .unwrap();
    let lease = lease_triage_only(&store, id, at(10)).await;
    store
        .finish_triage(
            &lease,
            TriageOutcome::Ran(Box::new(agent_run(id, at(10), 10))),
            at(20),
        )
        .await
        .unwrap();
    let found = store
        .similar_tickets("m", &[1.0, 1.0], 5, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].finding,
        Some(serde_json::to_value(finding()).unwrap())
    );
}

pub async fn the_tool_cache_serves_an_entry_until_it_expires_and_replaces_it(store: Shared) {
    let key = "otx:ipv4:203.0.113.9";
    assert_eq!(store.get(key, at(0)).await.unwrap(), None);
    store.put(key, "clean", at(100)).await.unwrap();
    store.put("other", "malicious", at(1_000)).await.unwrap();
    assert_eq!(
        store.get(key, at(99)).await.unwrap().as_deref(),
        Some("clean")
    );
    assert_eq!(
        store.get(key, at(100)).await.unwrap(),
        None,
        "expired at its expiry"
    );
    store.put(key, "listed ✓", at(200)).await.unwrap();
    assert_eq!(
        store.get(key, at(150)).await.unwrap().as_deref(),
        Some("listed ✓"),
        "replaced, with its new expiry"
    );
    assert_eq!(
        store.get("other", at(150)).await.unwrap().as_deref(),
        Some("malicious")
    );
}

// --- Slack ------------------------------------------------------------------------------

use crate::slack::{
    DeliveryKind, MessageRef, NewSlackDelivery, Posted, SlackMessageLink, SlackSubject,
    SlackSyncState,
};

fn delivery(id: &str, now: Timestamp) -> NewSlackDelivery {
    NewSlackDelivery {
        id: id.to_owned(),
        kind: DeliveryKind::Event,
        payload: json!({"event_id": id, "event": {"type": "message", "text": "hi"}}),
        received_at: now,
    }
}

fn msg(channel: &str, ts: &str) -> MessageRef {
    MessageRef {
        channel: channel.to_owned(),
        ts: ts.to_owned(),
    }
}

pub async fn a_slack_delivery_is_accepted_once_and_leased_until_done(store: Shared) {
    assert!(
        store
            .accept_slack_delivery(&delivery("Ev1", at(0)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .accept_slack_delivery(&delivery("Ev1", at(5)))
            .await
            .unwrap(),
        "a retried delivery stores nothing"
    );
    assert!(
        store
            .accept_slack_delivery(&delivery("Ev2", at(1)))
            .await
            .unwrap()
    );
    let leased = store
        .lease_slack_deliveries(10, at(10), at(70))
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["Ev1", "Ev2"],
        "oldest first"
    );
    assert_eq!(leased[0].payload["event"]["text"], "hi");
    assert_eq!(leased[0].attempts, 1);
    assert!(
        store
            .lease_slack_deliveries(10, at(20), at(80))
            .await
            .unwrap()
            .is_empty(),
        "held while the lease holds"
    );
    store
        .finish_slack_delivery(&leased[0], None, None, at(20))
        .await
        .unwrap();
    store
        .finish_slack_delivery(&leased[1], Some("slack down"), Some(at(30)), at(20))
        .await
        .unwrap();
    assert!(
        store
            .finish_slack_delivery(&leased[0], None, None, at(21))
            .await
            .is_err(),
        "a finished delivery's lease is gone"
    );
    assert!(
        store
            .lease_slack_deliveries(10, at(25), at(85))
            .await
            .unwrap()
            .is_empty(),
        "not before its retry is due"
    );
    let again = store
        .lease_slack_deliveries(10, at(30), at(90))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("Ev2", 2));
    // An expired lease is taken over, and the old holder cannot finish it.
    let taken = store
        .lease_slack_deliveries(10, at(91), at(150))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        store
            .finish_slack_delivery(&again[0], None, None, at(92))
            .await
            .is_err()
    );
    store
        .finish_slack_delivery(&taken[0], Some("bad payload"), None, at(92))
        .await
        .unwrap();
    assert!(
        store
            .lease_slack_deliveries(10, at(1000), at(1100))
            .await
            .unwrap()
            .is_empty(),
        "a failed delivery is not handed out again"
    );
}

pub async fn discovering_gives_new_tickets_and_notices_one_pending_thread(store: Shared) {
    let old = open_ticket(&store, "old", at(10)).await;
    let new = open_ticket(&store, "new", at(100)).await;
    let (notice, _) = make_notice(&store, "quiet", at(110)).await;
    // Without a thread, a sync request is a no-op: Slack is not in use for it.
    store
        .request_slack_sync(SlackSubject::Ticket(new), at(100))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_slack_thread(SlackSubject::Ticket(new))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .discover_slack_subjects(at(50), at(120))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .discover_slack_subjects(at(50), at(121))
            .await
            .unwrap(),
        0,
        "once"
    );
    assert_eq!(
        store
            .get_slack_thread(SlackSubject::Ticket(old))
            .await
            .unwrap(),
        None,
        "older than the horizon"
    );
    let thread = store
        .get_slack_thread(SlackSubject::Ticket(new))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(thread.state, SlackSyncState::Pending);
    assert_eq!(thread.next_attempt_at, Some(at(120)));
    assert_eq!((thread.channel, thread.ts), (None, None));
    let leased = store.lease_slack_syncs(10, at(130), at(190)).await.unwrap();
    let subjects: Vec<SlackSubject> = leased.iter().map(|l| l.thread.subject).collect();
    assert_eq!(subjects.len(), 2);
    assert!(subjects.contains(&SlackSubject::Ticket(new)));
    assert!(subjects.contains(&SlackSubject::Notice(notice)));
}

pub async fn a_sync_requested_while_syncing_keeps_the_thread_due(store: Shared) {
    let id = open_ticket(&store, "probe", at(100)).await;
    let subject = SlackSubject::Ticket(id);
    store.discover_slack_subjects(at(0), at(100)).await.unwrap();
    let first = store.lease_slack_syncs(10, at(100), at(160)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].thread.state, SlackSyncState::Syncing);
    store.request_slack_sync(subject, at(101)).await.unwrap();
    let posted = Posted {
        channel: "C1".into(),
        ts: "1.0001".into(),
        thread_ts: "1.0001".into(),
    };
    store
        .finish_slack_sync(&first[0], Some(&posted), at(103), at(102))
        .await
        .unwrap();
    let thread = store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(thread.state, SlackSyncState::Pending, "the request is kept");
    assert_eq!(thread.next_attempt_at, Some(at(103)));
    assert_eq!(thread.channel.as_deref(), Some("C1"));
    assert_eq!(thread.ts.as_deref(), Some("1.0001"));
    assert!(
        store
            .lease_slack_syncs(10, at(102), at(160))
            .await
            .unwrap()
            .is_empty(),
        "updates are spaced"
    );
    let second = store.lease_slack_syncs(10, at(103), at(160)).await.unwrap();
    assert_eq!(second.len(), 1);
    store
        .finish_slack_sync(&second[0], None, at(105), at(104))
        .await
        .unwrap();
    let thread = store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(
        (thread.state, thread.ts.as_deref(), thread.attempts),
        (SlackSyncState::Synced, Some("1.0001"), 0),
        "the post is kept"
    );
    assert_eq!(
        store
            .find_slack_thread(&msg("C1", "1.0001"))
            .await
            .unwrap()
            .map(|t| t.subject),
        Some(subject)
    );
    assert_eq!(
        store.find_slack_thread(&msg("C2", "1.0001")).await.unwrap(),
        None
    );
}

pub async fn a_failed_sync_backs_off_then_fails_for_good_and_a_stale_lease_is_refused(
    store: Shared,
) {
    let id = open_ticket(&store, "probe", at(100)).await;
    let subject = SlackSubject::Ticket(id);
    store.discover_slack_subjects(at(0), at(100)).await.unwrap();
    let first = store.lease_slack_syncs(10, at(100), at(160)).await.unwrap();
    store
        .fail_slack_sync(&first[0], None, "ratelimited", Some(at(130)), at(101))
        .await
        .unwrap();
    // A request while backing off does not cut the backoff short.
    store.request_slack_sync(subject, at(102)).await.unwrap();
    let thread = store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(
        (
            thread.state,
            thread.attempts,
            thread.last_error.as_deref(),
            thread.next_attempt_at
        ),
        (
            SlackSyncState::Pending,
            1,
            Some("ratelimited"),
            Some(at(130))
        )
    );
    assert!(
        store
            .lease_slack_syncs(10, at(129), at(190))
            .await
            .unwrap()
            .is_empty()
    );
    let second = store.lease_slack_syncs(10, at(130), at(190)).await.unwrap();
    assert_eq!(second[0].thread.attempts, 2);
    assert!(
        store
            .finish_slack_sync(&first[0], None, at(131), at(131))
            .await
            .is_err(),
        "a stale lease is refused"
    );
    // An expired lease is taken over.
    let third = store.lease_slack_syncs(10, at(191), at(250)).await.unwrap();
    assert_eq!(third.len(), 1);
    store
        .fail_slack_sync(
            &third[0],
            Some(&Posted {
                channel: "C1".into(),
                ts: "1.0001".into(),
                thread_ts: "1.0001".into(),
            }),
            "channel_not_found",
            None,
            at(192),
        )
        .await
        .unwrap();
    let thread = store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(thread.state, SlackSyncState::Failed);
    assert_eq!(
        thread.ts.as_deref(),
        Some("1.0001"),
        "a post made before the failure is kept"
    );
    assert_eq!(thread.last_error.as_deref(), Some("channel_not_found"));
    assert!(
        store
            .lease_slack_syncs(10, at(1000), at(1100))
            .await
            .unwrap()
            .is_empty()
    );
    // The next change tries again.
    store.request_slack_sync(subject, at(1001)).await.unwrap();
    assert_eq!(
        store
            .lease_slack_syncs(10, at(1001), at(1100))
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn messages_link_to_comments_once_and_edits_and_deletions_follow(store: Shared) {
    let id = open_ticket(&store, "probe", at(100)).await;
    let comment = store
        .add_comment(Comment {
            id: CommentId::new(),
            ticket_id: id,
            source: CommentSource::Slack,
            author: "alice".into(),
            text: "looks like our scanner".into(),
            created_at: at(110),
        })
        .await
        .unwrap();
    let link = SlackMessageLink {
        channel: "C1".into(),
        ts: "2.0001".into(),
        ticket_id: id,
        comment_id: comment.id,
    };
    assert!(store.link_slack_message(&link).await.unwrap());
    assert!(
        !store.link_slack_message(&link).await.unwrap(),
        "a message links once"
    );
    let other_message = SlackMessageLink {
        ts: "2.0002".into(),
        ..link.clone()
    };
    assert!(
        !store.link_slack_message(&other_message).await.unwrap(),
        "a comment links once"
    );
    assert_eq!(
        store
            .find_slack_message(&msg("C1", "2.0001"))
            .await
            .unwrap(),
        Some(link.clone())
    );
    assert_eq!(
        store.slack_linked_comments(id).await.unwrap(),
        vec![comment.id]
    );
    let edited = store
        .edit_comment(comment.id, "not our scanner after all")
        .await
        .unwrap();
    assert_eq!(edited.text, "not our scanner after all");
    assert_eq!(
        store.list_comments(id).await.unwrap()[0].text,
        "not our scanner after all"
    );
    store.delete_comment(comment.id).await.unwrap();
    assert!(store.list_comments(id).await.unwrap().is_empty());
    assert_eq!(
        store
            .find_slack_message(&msg("C1", "2.0001"))
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.edit_comment(comment.id, "x").await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_comment(comment.id).await.unwrap();
}

pub async fn a_ticket_opened_from_a_thread_is_found_by_that_thread_and_has_a_triage_job(
    store: Shared,
) {
    let thread = msg("C9", "3.0001");
    let new = NewTicket {
        id: TicketId::new(),
        title: "phishing report".into(),
        description: "alice: got a weird mail".into(),
        schema: schema("slack"),
        severity: Severity::Medium,
        assignee: None,
        tags: vec![],
        attributes: vec![],
        channel: Some("C9".into()),
        fingerprint: fp("slack:C9:3.0001"),
        created_at: at(100),
    };
    let opened = store
        .open_thread_ticket(new.clone(), &thread, at(100))
        .await
        .unwrap();
    assert_eq!(opened.alert_count, 0);
    assert_eq!(opened.status, TicketStatus::Open);
    assert_eq!(ticket(&store, opened.id).await, opened);
    assert_eq!(
        triage_job(&store, opened.id).await.state,
        TriageJobState::Pending
    );
    let found = store.find_slack_thread(&thread).await.unwrap().unwrap();
    assert_eq!(found.subject, SlackSubject::Ticket(opened.id));
    assert_eq!(found.state, SlackSyncState::Pending);
    assert_eq!(found.ts, None, "its message is not posted yet");
    let again = NewTicket {
        id: TicketId::new(),
        ..new
    };
    assert!(matches!(
        store.open_thread_ticket(again, &thread, at(101)).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn one_agent_chat_holds_a_thread_until_released_aborted_or_stale(store: Shared) {
    let thread = msg("C1", "1700000000.000100");
    let other_thread = msg("C1", "1700000000.000200");
    let (first, second) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    assert!(
        store
            .claim_slack_chat(&thread, first, at(100), at(70))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_slack_chat(&thread, second, at(101), at(71))
            .await
            .unwrap(),
        "a second chat in the same thread is refused"
    );
    assert!(
        store
            .claim_slack_chat(&other_thread, second, at(101), at(71))
            .await
            .unwrap(),
        "another thread is free"
    );
    assert!(
        store
            .renew_slack_chat(&thread, first, at(110))
            .await
            .unwrap()
    );
    assert!(
        !store
            .renew_slack_chat(&thread, second, at(110))
            .await
            .unwrap(),
        "only the holder renews"
    );
    // A claim renewed at 110 is not stale at 130 (stale before 100); it is at 200.
    assert!(
        !store
            .claim_slack_chat(&thread, second, at(130), at(100))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_slack_chat(&thread, second, at(200), at(170))
            .await
            .unwrap(),
        "a claim its process stopped renewing is taken over"
    );
    assert!(
        !store
            .renew_slack_chat(&thread, first, at(201))
            .await
            .unwrap(),
        "the old holder learns it lost the thread"
    );
    store.release_slack_chat(&thread, first).await.unwrap();
    assert!(
        store
            .renew_slack_chat(&thread, second, at(202))
            .await
            .unwrap(),
        "a stale holder's release leaves the new claim alone"
    );
    // Abort: the holder's next renewal says stop.
    assert!(store.abort_slack_chat(&thread).await.unwrap());
    assert!(
        !store
            .renew_slack_chat(&thread, second, at(203))
            .await
            .unwrap()
    );
    store.release_slack_chat(&thread, second).await.unwrap();
    assert!(
        !store.abort_slack_chat(&thread).await.unwrap(),
        "nothing runs after the release"
    );
    assert!(
        store
            .claim_slack_chat(&thread, first, at(204), at(174))
            .await
            .unwrap(),
        "a released thread is free, and a new claim is not aborted"
    );
    assert!(
        store
            .renew_slack_chat(&thread, first, at(205))
            .await
            .unwrap()
    );
}
