#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tuning drafts on a seeded false positive: events go through the real worker and Rego
//! policies, a ticket is resolved `false_positive`, and the deterministic draft must compile,
//! pass every test (its own included) and change exactly the events of that ticket.

use heron_app::tuning::{TuningError, TuningSettings, draft};
use heron_app::{Actor, Intake, PolicyHandle, TicketService, Worker, WorkerSettings};
use heron_core::policy::{PolicyEngine, PolicyLoadFailure, PolicyTrial, PolicyWorkbench};
use heron_core::ports::*;
use heron_core::testing::InMemoryStore;
use heron_core::*;
use heron_policy::testing::Outcome;
use heron_policy::{LoadOptions, PolicySet};
use std::sync::Arc;

const INGEST: &str = r#"package ingest.auth

alerts contains {
    "title": sprintf("Login by %s", [input.user]),
    "attrs": [{"key": "user", "value": input.user}, {"key": "ip", "value": input.ip}],
} if {
    input.kind == "login"
}
"#;

const INGEST_TEST: &str = r#"package ingest.auth_test

test_login_alerts if {
    count(data.ingest.auth.alerts) == 1 with input as {"kind": "login", "user": "a", "ip": "1"}
}
"#;

/// Adds a runbook attribute (which the ingest policy does not make: the draft must not match
/// on it) and publishes everything else as an alert.
const TRIAGE: &str = r#"package triage

attr := [{"key": "runbook", "value": "https://wiki/auth"}]
"#;

fn sources() -> Vec<(String, String)> {
    vec![
        ("auth.rego".into(), INGEST.into()),
        ("auth_test.rego".into(), INGEST_TEST.into()),
        ("triage.rego".into(), TRIAGE.into()),
    ]
}

/// The configured sources plus the draft's files, compiled and tested as the binary's
/// workbench does it.
struct Workbench;

impl PolicyWorkbench for Workbench {
    fn trial(&self, extra: &[(String, String)]) -> Result<PolicyTrial, PolicyLoadFailure> {
        let mut all = sources();
        all.extend(extra.iter().cloned());
        let set = PolicySet::from_sources(all, &LoadOptions::default())
            .map_err(|e| PolicyLoadFailure(e.to_string()))?;
        let report = heron_policy::testing::run(&set, |_| true);
        if !report.passed() {
            return Err(PolicyLoadFailure(format!("{:?}", report.results)));
        }
        let passed = report.count(Outcome::Pass);
        Ok(PolicyTrial {
            engine: Arc::new(set),
            tests_passed: passed,
            tests_total: report.results.len(),
        })
    }
}

fn current() -> Arc<dyn PolicyEngine> {
    Arc::new(PolicySet::from_sources(sources(), &LoadOptions::default()).unwrap())
}

struct Seeded {
    store: Arc<InMemoryStore>,
    backup_ticket: TicketId,
    backup_events: Vec<EventId>,
    alice_ticket: TicketId,
}

async fn seed() -> Seeded {
    let store = Arc::new(InMemoryStore::new());
    let shared: Arc<dyn Store> = store.clone();
    let wake = Arc::new(tokio::sync::Notify::new());
    let intake = Intake::new(shared.clone(), wake.clone());
    let logins = [
        ("svc-backup", "10.0.0.9"),
        ("alice", "10.0.0.1"),
        ("svc-backup", "10.0.0.9"),
        ("svc-backup", "10.0.0.8"),
        ("svc-backup", "10.0.0.9"),
    ];
    let mut ids = Vec::new();
    for (user, ip) in logins {
        let body = serde_json::json!({"kind": "login", "user": user, "ip": ip}).to_string();
        let accepted = intake
            .accept(NewEvent {
                id: EventId::new(),
                schema: SchemaName::parse("auth").unwrap(),
                source: EventSource::Raw,
                body,
                metadata: serde_json::json!({}),
                idempotency_key: None,
                received_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        ids.push(accepted.event_id);
    }
    let worker = Worker::new(
        shared.clone(),
        PolicyHandle::new(current()),
        WorkerSettings::default(),
        wake,
        None,
    );
    while worker.run_once().await.unwrap() > 0 {}
    let tickets = store
        .list_tickets(&TicketQuery {
            limit: 10,
            ..TicketQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(tickets.len(), 3, "backup from .9, alice, backup from .8");
    let by_title = |ip: &str, title: &str| {
        tickets
            .iter()
            .find(|t| {
                t.title == title && t.attributes.iter().any(|a| a.key == "ip" && a.value == ip)
            })
            .unwrap()
            .id
    };
    let backup_ticket = by_title("10.0.0.9", "Login by svc-backup");
    let alice_ticket = by_title("10.0.0.1", "Login by alice");
    let service = TicketService::new(shared);
    let actor = Actor {
        name: "analyst".into(),
        source: CommentSource::Web,
        remote: None,
    };
    service
        .update(
            backup_ticket,
            TicketChange {
                status: Some(TicketStatus::Resolved),
                conclusion: Some(Conclusion::FalsePositive),
                reason: Some("nightly backup from the backup host".into()),
                ..TicketChange::default()
            },
            &actor,
        )
        .await
        .unwrap();
    Seeded {
        store,
        backup_ticket,
        backup_events: vec![ids[0], ids[2], ids[4]],
        alice_ticket,
    }
}

fn settings() -> TuningSettings {
    TuningSettings {
        since: None,
        dedup_window: std::time::Duration::from_secs(24 * 3600),
    }
}

#[tokio::test]
async fn a_draft_for_a_seeded_false_positive_compiles_passes_and_changes_exactly_its_events() {
    let seeded = seed().await;
    let draft = draft(
        seeded.store.clone(),
        current(),
        Arc::new(Workbench),
        None,
        seeded.backup_ticket,
        &settings(),
    )
    .await
    .unwrap();

    // Narrow: the schema and the two attributes every alert shared, not the runbook that
    // triage added.
    let matched: Vec<(&str, &str)> = draft
        .matched_on
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(matched, vec![("user", "svc-backup"), ("ip", "10.0.0.9")]);
    assert!(draft.rule.starts_with("package triage\n"), "{}", draft.rule);
    assert!(draft.rule.contains("suppress contains"), "{}", draft.rule);
    assert!(draft.test.contains("in data.triage.suppress with input as"));
    assert!(
        draft
            .patch
            .contains(&format!("+++ b/policies/{}", draft.rule_path))
    );
    assert!(
        draft
            .patch
            .contains(&format!("+++ b/policies/{}", draft.test_path))
    );

    // Validated: every test passed, the new one included (2 = the ingest test + the draft's).
    assert_eq!(
        (draft.validation.tests_passed, draft.validation.tests_total),
        (2, 2)
    );
    // Exactly the three backup logins from 10.0.0.9 change, from alert to discard.
    let auth = draft.validation.replay.schema("auth").unwrap();
    assert_eq!(auth.events, 5);
    let discard = auth.change("publish alert → discard").unwrap();
    assert_eq!(discard.count, 3);
    assert_eq!(discard.examples, seeded.backup_events);
    assert_eq!(draft.validation.events_changed, 3);
    assert_eq!(
        draft.validation.tickets_changed,
        vec![seeded.backup_ticket],
        "the tickets the draft would have kept from opening: the backup one, not Alice's"
    );
    assert_eq!(auth.candidate.tickets, auth.current.tickets - 1);
    assert!(
        auth.changes
            .iter()
            .all(|c| c.kind == "publish alert → discard"),
        "{:?}",
        auth.changes
    );

    // The draft, applied, is a policy set that discards the backup logins and nothing else.
    let mut applied = sources();
    applied.push((draft.rule_path.clone(), draft.rule.clone()));
    let set = PolicySet::from_sources(applied, &LoadOptions::default()).unwrap();
    let decide = |user: &str, ip: &str| {
        let output = set
            .ingest(
                &SchemaName::parse("auth").unwrap(),
                &serde_json::json!({"kind": "login", "user": user, "ip": ip}),
            )
            .unwrap();
        let mut alert = heron_app::pipeline::alerts_from_drafts(
            EventId::new(),
            &SchemaName::parse("auth").unwrap(),
            output.alerts,
            &serde_json::json!({}),
            chrono::Utc::now(),
        )
        .remove(0);
        heron_app::pipeline::triage_alert(&set, &mut alert, chrono::Utc::now(), Vec::new()).unwrap()
    };
    assert_eq!(decide("svc-backup", "10.0.0.9"), Disposition::Discard);
    assert!(matches!(
        decide("svc-backup", "10.0.0.8"),
        Disposition::Open { .. }
    ));
    assert!(matches!(
        decide("alice", "10.0.0.9"),
        Disposition::Open { .. }
    ));
}

#[tokio::test]
async fn only_tickets_resolved_as_false_positive_or_intended_get_a_draft() {
    let seeded = seed().await;
    let error = draft(
        seeded.store.clone(),
        current(),
        Arc::new(Workbench),
        None,
        seeded.alice_ticket,
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, TuningError::NotTunable(_)), "{error}");
    let missing = draft(
        seeded.store.clone(),
        current(),
        Arc::new(Workbench),
        None,
        TicketId::new(),
        &settings(),
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, TuningError::NotFound(_)));
}

/// A workbench whose tests fail (say, an existing test asserts the backup login alerts):
/// the draft is not shown.
struct FailingWorkbench;

impl PolicyWorkbench for FailingWorkbench {
    fn trial(&self, _: &[(String, String)]) -> Result<PolicyTrial, PolicyLoadFailure> {
        Err(PolicyLoadFailure(
            "1 of 3 policy tests do not pass: data.triage_test.test_backup_alerts FAIL".into(),
        ))
    }
}

#[tokio::test]
async fn a_draft_that_breaks_an_existing_test_is_not_shown() {
    let seeded = seed().await;
    let error = draft(
        seeded.store.clone(),
        current(),
        Arc::new(FailingWorkbench),
        None,
        seeded.backup_ticket,
        &settings(),
    )
    .await
    .unwrap_err();
    match error {
        TuningError::Invalid(message) => assert!(message.contains("test_backup_alerts")),
        other => panic!("{other}"),
    }
}

mod with_a_model {
    use super::*;
    use heron_core::llm::ChatModel;
    use heron_llm::testing::{FakeOpenAi, Reply};
    use heron_llm::{LlmSettings, OpenAiChat};

    fn model(server: &FakeOpenAi) -> Arc<dyn ChatModel> {
        let mut settings = LlmSettings::new(server.base_url(), "gpt-test");
        settings.timeout = std::time::Duration::from_secs(5);
        settings.max_retries = 0;
        Arc::new(OpenAiChat::new(settings).unwrap())
    }

    fn answer(rule: &str) -> Reply {
        Reply::text(&serde_json::json!({ "rule": rule }).to_string(), (100, 50))
    }

    #[tokio::test]
    async fn the_model_writes_the_rule_and_an_invalid_one_is_retried_with_its_error() {
        let seeded = seed().await;
        let server = FakeOpenAi::start().await;
        let entry = format!("ticket {}", seeded.backup_ticket);
        // First answer: the wrong package. Second: a valid rule, matching on the user only.
        server.push_chat(answer("package ingest.auth\n\nx := 1\n"));
        let valid = format!(
            "package triage\n\nsuppress contains {entry:?} if {{\n\tinput.alert.schema == \"auth\"\n\tsome a in input.alert.metadata.attributes\n\ta.key == \"ip\"\n\ta.value == \"10.0.0.9\"\n}}\n"
        );
        server.push_chat(answer(&valid));
        let draft = draft(
            seeded.store.clone(),
            current(),
            Arc::new(Workbench),
            Some(model(&server)),
            seeded.backup_ticket,
            &settings(),
        )
        .await
        .unwrap();
        assert_eq!(draft.author, "model");
        assert_eq!(draft.rule, valid);
        assert_eq!(draft.validation.events_changed, 3);
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let retry = requests[1].body.to_string();
        assert!(
            retry.contains("package triage"),
            "the error reaches the model: {retry}"
        );
        let first = requests[0].body.to_string();
        assert!(
            first.contains("=== DATA ===") && first.contains("svc-backup"),
            "{first}"
        );
    }

    #[tokio::test]
    async fn a_model_that_stays_invalid_is_dropped_for_the_deterministic_draft() {
        let seeded = seed().await;
        let server = FakeOpenAi::start().await;
        let entry = format!("ticket {}", seeded.backup_ticket);
        // Compiles, but a conflict-free rule that does not match the alert fails Heron's
        // test; then an answer that is not JSON.
        server.push_chat(answer(&format!(
            "package triage\n\nsuppress contains {entry:?} if input.alert.schema == \"other\"\n"
        )));
        server.push_chat(Reply::text("I would suppress svc-backup.", (10, 5)));
        let draft = draft(
            seeded.store.clone(),
            current(),
            Arc::new(Workbench),
            Some(model(&server)),
            seeded.backup_ticket,
            &settings(),
        )
        .await
        .unwrap();
        assert_eq!(draft.author, "deterministic");
        let why = draft.model_error.unwrap();
        assert!(
            why.contains("no valid draft after 2 tries") && why.contains("not JSON"),
            "{why}"
        );
        assert_eq!(draft.validation.events_changed, 3);
        assert_eq!(server.requests().len(), 2);
    }
}
