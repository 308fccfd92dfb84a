#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replay of a candidate policy set over a seeded in-memory store, with real Rego policies:
//! each test seeds events with a known difference between the two sets and checks the exact
//! diff, and that replay changed nothing in the store.

use chrono::{DateTime, Duration, Utc};
use heron_app::replay::{ReplayReport, ReplaySettings, replay};
use heron_core::policy::PolicyEngine;
use heron_core::ports::*;
use heron_core::testing::InMemoryStore;
use heron_core::*;
use heron_policy::{LoadOptions, PolicySet};
use std::sync::Arc;

const INGEST: &str = r#"package ingest.auth

alerts contains {
    "title": sprintf("Login by %s", [input.user]),
    "attrs": [{"key": "user", "value": input.user}, {"key": "ip", "value": input.ip}],
    "severity": "medium",
} if {
    input.kind == "login"
}
"#;

const TRIAGE_ALL: &str = "package triage\n\npublish := \"alert\"\n";

const TRIAGE_QUIET_BACKUP: &str = r#"package triage

publish := "discard" if {
    some a in input.alert.metadata.attributes
    a.key == "user"
    a.value == "svc-backup"
}
"#;

fn policies(sources: &[&str]) -> Arc<dyn PolicyEngine> {
    let sources = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("p{i}.rego"), s.to_string()))
        .collect();
    Arc::new(PolicySet::from_sources(sources, &LoadOptions::default()).unwrap())
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// Stores `bodies` (schema, JSON, minutes after t0) as events and marks them done, as a
/// worker would have; returns their ids in order.
async fn seed(
    store: &Arc<InMemoryStore>,
    bodies: &[(&str, serde_json::Value, i64)],
) -> Vec<EventId> {
    let mut ids = Vec::new();
    for (schema, body, minutes) in bodies {
        let accepted = store
            .accept_event(NewEvent {
                id: EventId::new(),
                schema: SchemaName::parse(schema).unwrap(),
                source: EventSource::Raw,
                body: body.to_string(),
                metadata: serde_json::json!({}),
                idempotency_key: None,
                received_at: t0() + Duration::minutes(*minutes),
            })
            .await
            .unwrap();
        ids.push(accepted.event_id);
    }
    let now = t0() + Duration::days(1);
    let leased = store
        .lease_events(ids.len(), now, now + Duration::minutes(5), 5)
        .await
        .unwrap();
    for l in leased {
        store.complete_event(&l.lease, vec![], now).await.unwrap();
    }
    ids
}

fn login(user: &str, ip: &str) -> serde_json::Value {
    serde_json::json!({"kind": "login", "user": user, "ip": ip})
}

async fn run(
    store: &Arc<InMemoryStore>,
    current: Arc<dyn PolicyEngine>,
    candidate: Arc<dyn PolicyEngine>,
    settings: ReplaySettings,
) -> ReplayReport {
    let history: Arc<dyn EventHistory> = store.clone();
    replay(history, current, candidate, &settings)
        .await
        .unwrap()
}

#[tokio::test]
async fn replay_reports_alerts_that_the_candidate_would_discard() {
    let store = Arc::new(InMemoryStore::new());
    let ids = seed(
        &store,
        &[
            ("auth", login("alice", "10.0.0.1"), 0),
            ("auth", login("alice", "10.0.0.1"), 1),
            ("auth", login("svc-backup", "10.0.0.9"), 2),
            (
                "auth",
                serde_json::json!({"kind": "logout", "user": "alice"}),
                3,
            ),
            ("auth", login("svc-backup", "10.0.0.9"), 4),
        ],
    )
    .await;
    let report = run(
        &store,
        policies(&[INGEST, TRIAGE_ALL]),
        policies(&[INGEST, TRIAGE_QUIET_BACKUP]),
        ReplaySettings::default(),
    )
    .await;
    assert_eq!(report.events, 5);
    let auth = report.schema("auth").unwrap();
    assert_eq!(auth.events, 5);
    assert_eq!(
        (
            auth.current.alerts,
            auth.current.published,
            auth.current.discarded,
            auth.current.tickets
        ),
        (4, 4, 0, 2)
    );
    assert_eq!(
        (
            auth.candidate.alerts,
            auth.candidate.published,
            auth.candidate.discarded,
            auth.candidate.tickets
        ),
        (4, 2, 2, 1)
    );
    assert_eq!(auth.changes.len(), 1, "{:?}", auth.changes);
    let discard = auth.change("publish alert → discard").unwrap();
    assert_eq!(discard.count, 2);
    assert_eq!(discard.examples, vec![ids[2], ids[4]]);

    // Read-only: the store holds no ticket, no alert, and every event kept its state.
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
    let events = store
        .list_events(&EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(events.items.iter().all(|e| e.state == EventState::Ignored));
}

#[tokio::test]
async fn a_coarser_fingerprint_merges_tickets_and_a_severity_rule_shows_as_severity_changes() {
    let store = Arc::new(InMemoryStore::new());
    let ids = seed(
        &store,
        &[
            ("auth", login("alice", "10.0.0.1"), 0),
            ("auth", login("alice", "10.0.0.2"), 1),
            ("auth", login("bob", "10.0.0.3"), 2),
        ],
    )
    .await;
    // The candidate groups logins by user only, and raises bob's severity.
    let candidate_ingest = r#"package ingest.auth

alerts contains {
    "title": sprintf("Login by %s", [input.user]),
    "attrs": [{"key": "user", "value": input.user}, {"key": "ip", "value": input.ip}],
    "severity": object.get({"bob": "high"}, input.user, "medium"),
    "fingerprint": {"user": input.user},
} if {
    input.kind == "login"
}
"#;
    let report = run(
        &store,
        policies(&[INGEST, TRIAGE_ALL]),
        policies(&[candidate_ingest, TRIAGE_ALL]),
        ReplaySettings::default(),
    )
    .await;
    let auth = report.schema("auth").unwrap();
    assert_eq!((auth.current.tickets, auth.candidate.tickets), (3, 2));
    let merged = auth.change("tickets merged").unwrap();
    assert_eq!((merged.count, merged.examples.clone()), (1, vec![ids[0]]));
    assert_eq!(auth.change("fingerprint changed").unwrap().count, 3);
    let severity = auth.change("severity medium → high").unwrap();
    assert_eq!(
        (severity.count, severity.examples.clone()),
        (1, vec![ids[2]])
    );
    assert!(auth.change("tickets split").is_none());
    assert_eq!(auth.changes.len(), 3, "{:?}", auth.changes);
}

#[tokio::test]
async fn identical_sets_report_no_change_and_since_and_schema_select_the_events() {
    let store = Arc::new(InMemoryStore::new());
    seed(
        &store,
        &[
            ("auth", login("alice", "10.0.0.1"), 0),
            ("other", serde_json::json!({"x": 1}), 10),
            ("auth", login("bob", "10.0.0.2"), 20),
        ],
    )
    .await;
    let set = policies(&[INGEST, TRIAGE_ALL]);
    let report = run(&store, set.clone(), set.clone(), ReplaySettings::default()).await;
    assert!(!report.changed(), "{report:?}");
    assert_eq!(report.events, 3);
    // A schema without an ingest package gets warren's one default alert on both sides.
    assert_eq!(report.schema("other").unwrap().current.alerts, 1);

    let report = run(
        &store,
        set.clone(),
        set.clone(),
        ReplaySettings {
            since: Some(t0() + Duration::minutes(5)),
            schema: Some(SchemaName::parse("auth").unwrap()),
            ..ReplaySettings::default()
        },
    )
    .await;
    assert_eq!(report.events, 1);
    assert_eq!(report.schemas.len(), 1);
}

#[tokio::test]
async fn a_candidate_that_fails_on_events_is_reported_with_examples_and_pages_cover_every_event() {
    let store = Arc::new(InMemoryStore::new());
    let bodies: Vec<(&str, serde_json::Value, i64)> = (0..25)
        .map(|i| ("auth", login(&format!("u{i}"), "10.0.0.1"), i))
        .collect();
    let ids = seed(&store, &bodies).await;
    // A conflict for user u7 only: two different titles for one complete rule.
    let broken = r#"package triage

title := "a" if input.alert.metadata.title == "Login by u7"

title := "b" if input.alert.metadata.title == "Login by u7"
"#;
    let report = run(
        &store,
        policies(&[INGEST, TRIAGE_ALL]),
        policies(&[INGEST, broken]),
        ReplaySettings {
            page_size: 4,
            examples: 2,
            ..ReplaySettings::default()
        },
    )
    .await;
    assert_eq!(report.events, 25);
    let auth = report.schema("auth").unwrap();
    assert_eq!((auth.current.errors, auth.candidate.errors), (0, 1));
    let error = auth.change("candidate error").unwrap();
    assert_eq!((error.count, error.examples.clone()), (1, vec![ids[7]]));
}

#[tokio::test]
async fn enrich_packages_are_reported_as_not_run() {
    let store = Arc::new(InMemoryStore::new());
    seed(&store, &[("auth", login("alice", "10.0.0.1"), 0)]).await;
    let enrich = "package enrich\n\nprompts contains {\"id\": \"x\", \"inline\": \"look\"}\n";
    let report = run(
        &store,
        policies(&[INGEST, TRIAGE_ALL]),
        policies(&[INGEST, TRIAGE_ALL, enrich]),
        ReplaySettings::default(),
    )
    .await;
    assert!(!report.enrich_skipped.current);
    assert!(report.enrich_skipped.candidate);
    assert!(!report.changed());
}

#[tokio::test]
async fn an_ingest_conflict_in_the_candidate_is_reported_as_the_error_the_worker_would_hit() {
    let store = Arc::new(InMemoryStore::new());
    let bodies: Vec<(&str, serde_json::Value, i64)> = (0..10)
        .map(|i| ("auth", login(&format!("u{i}"), "10.0.0.1"), i))
        .collect();
    let ids = seed(&store, &bodies).await;
    // Two values for one complete rule when the user is u3: the worker fails that event;
    // replay's fast evaluator alone would have seen one alert fewer.
    let conflicting = r#"package ingest.auth

level := "high" if input.user == "u3"
level := "low" if input.user == "u3"
level := "medium" if input.user != "u3"

alerts contains {
    "title": sprintf("Login by %s", [input.user]),
    "attrs": [{"key": "user", "value": input.user}, {"key": "ip", "value": input.ip}],
    "severity": level,
} if {
    input.kind == "login"
}
"#;
    let report = run(
        &store,
        policies(&[INGEST, TRIAGE_ALL]),
        policies(&[conflicting, TRIAGE_ALL]),
        ReplaySettings::default(),
    )
    .await;
    let auth = report.schema("auth").unwrap();
    assert_eq!((auth.current.errors, auth.candidate.errors), (0, 1));
    let error = auth.change("candidate error").unwrap();
    assert_eq!((error.count, error.examples.clone()), (1, vec![ids[3]]));
    assert!(
        auth.change("ingest fewer alerts").is_none(),
        "{:?}",
        auth.changes
    );
}
