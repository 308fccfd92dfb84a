#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Properties of fingerprinting and of the ticket lifecycle, over generated inputs.
//!
//! `PROPTEST_CASES` raises the number of cases (default 256 per property); the nightly-free
//! long run is `PROPTEST_CASES=200000 cargo test --release -p heron-core --test properties`.

use chrono::{Duration, TimeZone, Utc};
use heron_core::{
    AlertDraft, Attribute, Conclusion, Fingerprint, SchemaName, Severity, Ticket, TicketChange,
    TicketId, TicketStatus,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn schema_name() -> impl Strategy<Value = SchemaName> {
    "[a-z0-9][a-z0-9_.-]{0,20}".prop_map(|s| SchemaName::parse(&s).expect("valid by construction"))
}

fn attributes() -> impl Strategy<Value = Vec<Attribute>> {
    prop::collection::vec(
        ("[a-z_]{1,8}", ".{0,12}").prop_map(|(key, value)| Attribute {
            key,
            value,
            link: None,
        }),
        0..8,
    )
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// The same JSON with every object's keys inserted in reverse order.
fn reordered(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reordered(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reordered).collect()),
        other => other.clone(),
    }
}

fn draft(attributes: Vec<Attribute>, key: Option<Value>) -> AlertDraft {
    AlertDraft {
        attributes,
        fingerprint: key,
        ..AlertDraft::default()
    }
}

proptest! {
    #[test]
    fn a_derived_fingerprint_ignores_the_order_of_attributes(
        schema in schema_name(),
        title in ".{0,20}",
        attributes in attributes(),
    ) {
        let mut reversed = attributes.clone();
        reversed.reverse();
        let a = Fingerprint::of(&schema, &draft(attributes, None), &title);
        let b = Fingerprint::of(&schema, &draft(reversed, None), &title);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.as_str().len(), 64);
        prop_assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn a_policy_key_fingerprint_ignores_the_order_of_object_keys(
        schema in schema_name(),
        key in json(),
    ) {
        let a = Fingerprint::of(&schema, &draft(Vec::new(), Some(key.clone())), "t");
        let b = Fingerprint::of(&schema, &draft(Vec::new(), Some(reordered(&key))), "other title");
        prop_assert_eq!(a, b, "the title does not count when the policy gives a key");
    }

    #[test]
    fn two_schemas_never_share_a_fingerprint(
        first in schema_name(),
        second in schema_name(),
        key in prop::option::of(json()),
        attributes in attributes(),
    ) {
        prop_assume!(first != second);
        let alert = draft(attributes, key);
        prop_assert_ne!(
            Fingerprint::of(&first, &alert, "t"),
            Fingerprint::of(&second, &alert, "t")
        );
    }

    #[test]
    fn different_policy_keys_give_different_fingerprints(
        schema in schema_name(),
        a in json(),
        b in json(),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(
            Fingerprint::of(&schema, &draft(Vec::new(), Some(a)), "t"),
            Fingerprint::of(&schema, &draft(Vec::new(), Some(b)), "t")
        );
    }
}

fn status() -> impl Strategy<Value = TicketStatus> {
    prop_oneof![
        Just(TicketStatus::Open),
        Just(TicketStatus::Acknowledged),
        Just(TicketStatus::Resolved),
        Just(TicketStatus::Archived),
    ]
}

fn conclusion() -> impl Strategy<Value = Conclusion> {
    prop_oneof![
        Just(Conclusion::Intended),
        Just(Conclusion::Unaffected),
        Just(Conclusion::FalsePositive),
        Just(Conclusion::TruePositive),
        Just(Conclusion::Escalated),
    ]
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Info),
        Just(Severity::Low),
        Just(Severity::Medium),
        Just(Severity::High),
        Just(Severity::Critical),
    ]
}

fn change() -> impl Strategy<Value = TicketChange> {
    (
        prop::option::of(status()),
        prop::option::of(prop::option::of("[a-z]{1,6}")),
        prop::option::of(severity()),
        prop::option::of(conclusion()),
        prop::option::of("[a-z ]{0,12}"),
    )
        .prop_map(
            |(status, assignee, severity, conclusion, reason)| TicketChange {
                status,
                assignee,
                severity,
                conclusion,
                reason,
            },
        )
}

fn new_ticket() -> Ticket {
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    Ticket {
        id: TicketId::new(),
        title: "t".into(),
        description: String::new(),
        schema: SchemaName::parse("test").unwrap(),
        status: TicketStatus::Open,
        severity: Severity::Medium,
        conclusion: None,
        reason: None,
        assignee: None,
        tags: Vec::new(),
        attributes: Vec::new(),
        channel: None,
        fingerprint: Fingerprint::from_stored("f".repeat(64)),
        finding: None,
        alert_count: 1,
        first_seen: at,
        last_seen: at,
        acked_at: None,
        resolved_at: None,
        created_at: at,
        updated_at: at,
        version: 1,
    }
}

proptest! {
    #[test]
    fn any_sequence_of_changes_keeps_the_lifecycle_invariants(
        changes in prop::collection::vec(change(), 1..40),
    ) {
        let mut ticket = new_ticket();
        let mut now = ticket.created_at;
        let mut was_acknowledged = false;
        for change in changes {
            now += Duration::seconds(1);
            let before = ticket.clone();
            match ticket.apply(&change, now) {
                Err(_) => prop_assert_eq!(&ticket, &before, "a refused change changes nothing"),
                Ok(()) => {
                    prop_assert!(before.status.can_become(ticket.status));
                    prop_assert_eq!(
                        ticket.updated_at == now,
                        ticket != before,
                        "updated_at moves exactly when something changed"
                    );
                    if let Some(severity) = change.severity {
                        prop_assert_eq!(ticket.severity, severity);
                    }
                }
            }
            let closed = matches!(ticket.status, TicketStatus::Resolved | TicketStatus::Archived);
            prop_assert_eq!(closed, ticket.conclusion.is_some(), "a conclusion exactly when closed");
            prop_assert_eq!(ticket.status.is_active(), !closed);
            if ticket.status != TicketStatus::Open {
                was_acknowledged = true;
            }
            prop_assert_eq!(
                ticket.acked_at.is_some(),
                was_acknowledged,
                "acknowledged once the ticket first leaves open, and never forgotten"
            );
            if ticket.status == TicketStatus::Resolved {
                prop_assert!(ticket.resolved_at.is_some());
            }
            if ticket.status == TicketStatus::Open {
                prop_assert!(ticket.resolved_at.is_none());
            }
        }
    }
}
