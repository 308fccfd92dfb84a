#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fuzzing (proptest, ignored by default; docs/development.md#fuzzing): Slack deliveries as
//! the Slack worker parses and acts on them. Events (mentions, thread replies, edits,
//! deletions) and interactions (buttons, the resolve modal), well-formed or not, about a real
//! ticket or not, are accepted once and handled without a panic or a storage error.

use heron_app::{PolicyHandle, SlackAccess, SlackService, SlackSettings, SlackWorker};
use heron_core::policy::PolicyEngine;
use heron_core::ports::{Disposition, EventLog, EventQueue, PlannedAlert};
use heron_core::slack::{ChatUser, DeliveryKind};
use heron_core::testing::conformance::{new_alert, new_event, new_ticket_for};
use heron_core::testing::fuzz::fuzz;
use heron_core::testing::{InMemoryStore, RecordingChat};
use heron_policy::{LoadOptions, PolicySet};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::vec(("[a-z_]{1,10}", inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A text that may mention the bot, ask for help, abort, or say anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<@UBOT> help".to_owned()),
        Just("<@UBOT> abort".to_owned()),
        Just("<@UBOT> ticket".to_owned()),
        "<@UBOT> [ -~]{0,40}",
        any::<String>(),
    ]
}

fn user() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("U1")),
        Just(json!("U2")),
        Just(json!("UBOT")),
        any_json()
    ]
}

fn ts(thread: String) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(thread)),
        "[0-9]{1,10}\\.[0-9]{1,6}".prop_map(Value::from),
        any_json(),
    ]
}

#[derive(Debug, Clone)]
enum Delivery {
    Event(Value),
    Interaction(Value),
}

fn delivery(ticket: String, thread: String) -> impl Strategy<Value = Delivery> {
    let event = (
        prop_oneof![
            Just("app_mention"),
            Just("message"),
            Just("reaction_added"),
            Just("unknown")
        ],
        prop_oneof![
            Just(Value::Null),
            Just(json!("message_changed")),
            Just(json!("message_deleted")),
            Just(json!("bot_message")),
        ],
        text(),
        user(),
        prop_oneof![Just(json!("CDEFAULT")), Just(json!("CSEC")), any_json()],
        ts(thread.clone()),
        ts(thread),
        "[ -~]{1,12}",
    )
        .prop_map(|(kind, subtype, text, user, channel, ts, thread_ts, id)| {
            Delivery::Event(json!({
                "type": "event_callback",
                "event_id": format!("Ev{id}"),
                "event": {
                    "type": kind, "subtype": subtype, "text": text, "user": user,
                    "channel": channel, "ts": ts, "thread_ts": thread_ts,
                    "message": {"ts": ts, "text": text, "user": user},
                    "previous_message": {"ts": ts},
                    "deleted_ts": ts,
                },
            }))
        });
    let ticket_value = prop_oneof![Just(json!(ticket)), any_json()];
    let interaction = (
        prop_oneof![
            Just("block_actions".to_owned()),
            Just("view_submission".to_owned()),
            "[a-z_]{0,12}"
        ],
        prop_oneof![
            Just(json!("ack")),
            Just(json!("assign")),
            Just(json!("resolve")),
            Just(json!("escalate")),
            any_json()
        ],
        ticket_value.clone(),
        user(),
        prop_oneof![Just(json!("false_positive")), any_json()],
        "[0-9]{1,10}\\.[0-9]{1,6}",
        any_json(),
    )
        .prop_map(move |(kind, action, value, user, conclusion, action_ts, extra)| {
            Delivery::Interaction(json!({
                "type": kind,
                "user": {"id": user, "name": "someone"},
                "channel": {"id": "CDEFAULT"},
                "message": {"ts": "1.0", "thread_ts": "1.0"},
                "actions": [{"action_id": action, "value": value, "action_ts": action_ts}],
                "view": {
                    "id": "V1", "hash": action_ts, "private_metadata": value,
                    "state": {"values": {"conclusion": {"conclusion": {"selected_option": {"value": conclusion}}},
                                         "reason": {"reason": {"value": extra}}}},
                },
                "extra": extra,
            }))
        });
    prop_oneof![
        event,
        interaction,
        any_json().prop_map(Delivery::Event),
        any_json().prop_map(Delivery::Interaction)
    ]
}

#[test]
#[ignore = "fuzzing: run with --ignored (docs/development.md#fuzzing)"]
fn fuzz_slack_events_and_interactions_are_handled_without_a_panic() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (slack, worker, ticket, thread) = runtime.block_on(async {
        let store = Arc::new(InMemoryStore::new());
        let chat = Arc::new(RecordingChat::new().with_channels(&["CDEFAULT", "CSEC"]));
        for (id, name) in [("U1", "Alice"), ("U2", "Mallory")] {
            chat.add_user(ChatUser {
                id: id.into(),
                name: name.into(),
                email: Some(format!("{}@example.com", name.to_lowercase())),
                is_bot: false,
            });
        }
        let policies = PolicySet::from_sources(
            vec![(
                "p.rego".into(),
                "package triage\n\npublish := \"alert\"\n".into(),
            )],
            &LoadOptions::default(),
        )
        .unwrap();
        let slack = SlackService::connect(
            store.clone(),
            chat.clone(),
            None,
            PolicyHandle::new(Arc::new(policies) as Arc<dyn PolicyEngine>),
            SlackSettings {
                default_channel: "CDEFAULT".into(),
                access: SlackAccess::default(),
                update_interval: Duration::from_millis(0),
                discover_interval: Duration::from_millis(0),
                ..SlackSettings::default()
            },
        )
        .await
        .unwrap();
        let worker = SlackWorker::new(slack.clone());
        // A real ticket with a real thread, for deliveries to land on.
        let now = store.now().await.unwrap();
        let id = store
            .accept_event(new_event("guardduty", None, now))
            .await
            .unwrap()
            .event_id;
        let leased = store
            .lease_events(1, now, now + chrono::Duration::seconds(60), 5)
            .await
            .unwrap();
        let alert = new_alert(id, "guardduty", "fp", now);
        let ticket = new_ticket_for(&alert);
        let ticket_id = ticket.id;
        store
            .complete_event(
                &leased[0].lease,
                vec![PlannedAlert {
                    alert,
                    disposition: Disposition::Open {
                        ticket,
                        seen_since: now - chrono::Duration::hours(1),
                    },
                }],
                now,
            )
            .await
            .unwrap();
        worker.run_once().await.unwrap();
        let thread = heron_core::slack::SlackStore::get_slack_thread(
            store.as_ref(),
            heron_core::slack::SlackSubject::Ticket(ticket_id),
        )
        .await
        .unwrap()
        .and_then(|t| t.ts)
        .unwrap_or_else(|| "1.0".into());
        (slack, worker, ticket_id.to_string(), thread)
    });
    fuzz("slack deliveries", delivery(ticket, thread), |d| {
        runtime.block_on(async {
            let (kind, payload) = match d {
                Delivery::Event(p) => (DeliveryKind::Event, p),
                Delivery::Interaction(p) => (DeliveryKind::Interaction, p),
            };
            // Accepting may refuse a payload it cannot key (an error, not a panic).
            if slack.accept(kind, payload).await.is_ok() {
                let handled = worker.run_once().await;
                prop_assert!(handled.is_ok(), "{handled:?}");
            }
            Ok(())
        })
    });
}
