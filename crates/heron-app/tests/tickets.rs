#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ticket operations against the in-memory store: edits and alert storms do not conflict, and
//! a change that changes nothing is not stored.

mod common;

use common::FlakyStore;
use heron_app::{Actor, TicketService};
use heron_core::ports::*;
use heron_core::testing::conformance::{new_alert, new_ticket_for};
use heron_core::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn analyst() -> Actor {
    Actor {
        name: "alice".into(),
        source: CommentSource::Api,
        remote: None,
    }
}

/// A ticket for fingerprint `fp-storm`, opened by one alert.
async fn storm_ticket(store: &FlakyStore) -> Ticket {
    let (leased, now) = store.lease_new_event().await;
    let alert = new_alert(leased.event.id, "test", "storm", now);
    let planned = PlannedAlert {
        disposition: Disposition::Open {
            ticket: new_ticket_for(&alert),
            seen_since: now - chrono::Duration::hours(1),
        },
        alert,
    };
    let bindings = store
        .inner
        .complete_event(&leased.lease, vec![planned], now)
        .await
        .unwrap();
    let [AlertBinding::Opened(tid)] = bindings.as_slice() else {
        panic!("{bindings:?}")
    };
    store.inner.get_ticket(*tid).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_analyst_change_lands_while_alerts_keep_attaching_to_the_ticket() {
    let store = Arc::new(FlakyStore::new(0));
    let ticket = storm_ticket(&store).await;
    store.storm.store(true, Ordering::SeqCst);
    let service = TicketService::new(store.clone());

    let change = TicketChange {
        status: Some(TicketStatus::Acknowledged),
        assignee: Some(Some("bob".into())),
        ..TicketChange::default()
    };
    let updated = service
        .update(ticket.id, change, &analyst())
        .await
        .expect("an alert attaching meanwhile is no conflicting edit");
    assert_eq!(updated.status, TicketStatus::Acknowledged);
    assert_eq!(updated.assignee.as_deref(), Some("bob"));
    assert_eq!(updated.version, ticket.version + 1);
    assert_eq!(
        updated.alert_count, 2,
        "the alert that attached meanwhile is kept"
    );
    let comments = store.inner.list_comments(ticket.id).await.unwrap();
    assert_eq!(comments.len(), 1, "one system comment records the change");
}

#[tokio::test]
async fn a_change_that_changes_nothing_stores_nothing_and_records_no_comment() {
    let store = Arc::new(FlakyStore::new(0));
    let ticket = storm_ticket(&store).await;
    let service = TicketService::new(store.clone());

    let same = TicketChange {
        status: Some(ticket.status),
        severity: Some(ticket.severity),
        ..TicketChange::default()
    };
    let answered = service.update(ticket.id, same, &analyst()).await.unwrap();
    assert_eq!(answered, ticket);
    assert_eq!(
        store.inner.get_ticket(ticket.id).await.unwrap().unwrap(),
        ticket
    );
    assert!(
        store
            .inner
            .list_comments(ticket.id)
            .await
            .unwrap()
            .is_empty()
    );
}
