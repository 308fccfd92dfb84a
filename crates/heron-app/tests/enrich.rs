#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The metadata and enrich stages in the worker, with real Rego policies, the in-memory store
//! and a scripted model behind the agent-backed enricher.

use chrono::Utc;
use heron_agent::{Budgets, InMemoryDailyTokens};
use heron_app::{AgentEnricher, Enricher, Intake, PolicyHandle, Worker, WorkerSettings};
use heron_core::agent::{RunPurpose, RunStatus};
use heron_core::alert::{AlertStatus, MetadataSource};
use heron_core::llm::{ChatResponse, LlmError};
use heron_core::ports::*;
use heron_core::testing::{InMemoryStore, ScriptedChatModel};
use heron_core::*;
use heron_policy::{LoadOptions, PolicySet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// One alert per event, titled by `rule` when the event has one; severity high.
const INGEST: &str = r#"package ingest.test

alerts contains {
    "title": object.get(input, "rule", ""),
    "description": object.get(input, "about", ""),
    "severity": "high",
    "attributes": [{"key": "src_ip", "value": "198.51.100.7"}],
    "fingerprint": object.get(input, "rule", "none"),
}
"#;

/// One json task asking for a verdict on the source address.
const ENRICH: &str = r#"package enrich

prompts contains {
    "id": "verdict",
    "inline": sprintf("Is %s malicious?", [input.attributes[0].value]),
    "format": "json",
}
"#;

/// Routes on the enrich result: malicious → critical ticket; benign → notice. Every task
/// error becomes an attribute, and so does the number of results triage got.
const TRIAGE: &str = r#"package triage

verdict := v if {
    some e in input.enrich
    e.id == "verdict"
    v := e.result.verdict
}

default publish := "alert"
publish := "notice" if verdict == "benign"

severity := "critical" if verdict == "malicious"

error_attrs := [{"key": "enrich_error", "value": m} | some e in input.enrich; m := e.result.error]

attr := array.concat(error_attrs, [{"key": "enrich_count", "value": count(input.enrich)}])
"#;

fn attribute(alert: &Alert, key: &str) -> Option<String> {
    alert
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.clone())
}

struct Setup {
    store: Arc<dyn Store>,
    worker: Worker,
    intake: Intake,
    model: Arc<ScriptedChatModel>,
}

fn policies(enrich: bool) -> PolicyHandle {
    let mut sources = vec![
        ("ingest.rego".to_owned(), INGEST.to_owned()),
        ("triage.rego".to_owned(), TRIAGE.to_owned()),
    ];
    if enrich {
        sources.push(("enrich.rego".to_owned(), ENRICH.to_owned()));
    }
    PolicyHandle::new(Arc::new(
        PolicySet::from_sources(sources, &LoadOptions::default()).unwrap(),
    ))
}

fn setup(
    replies: Vec<Result<ChatResponse, LlmError>>,
    enrich_policy: bool,
    with_model: bool,
    max_attempts: u32,
) -> Setup {
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let model = Arc::new(ScriptedChatModel::new(replies));
    let enricher: Option<Arc<dyn Enricher>> = with_model.then(|| {
        Arc::new(AgentEnricher::new(
            model.clone(),
            Vec::new(),
            Budgets::default(),
            Arc::new(InMemoryDailyTokens::new(1_000_000)),
            2,
        )) as Arc<dyn Enricher>
    });
    let wake = Arc::new(Notify::new());
    let worker = Worker::new(
        store.clone(),
        policies(enrich_policy),
        WorkerSettings {
            max_attempts,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..WorkerSettings::default()
        },
        wake.clone(),
        enricher,
    );
    Setup {
        intake: Intake::new(store.clone(), wake),
        store,
        worker,
        model,
    }
}

async fn send(s: &Setup, body: serde_json::Value) -> EventId {
    let event = NewEvent {
        id: EventId::new(),
        schema: SchemaName::parse("test").unwrap(),
        source: EventSource::Raw,
        body: body.to_string(),
        metadata: serde_json::json!({}),
        idempotency_key: None,
        received_at: Utc::now(),
    };
    s.intake.accept(event).await.unwrap().event_id
}

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

async fn only_alert(s: &Setup) -> Alert {
    let mut alerts = s
        .store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    alerts.remove(0)
}

#[tokio::test]
async fn enrich_results_reach_triage_which_routes_on_them_and_the_run_is_kept_on_the_ticket() {
    let s = setup(
        vec![ScriptedChatModel::text(r#"{"verdict": "malicious"}"#, 40)],
        true,
        true,
        5,
    );
    send(
        &s,
        serde_json::json!({"rule": "C2 beacon", "about": "DNS to a C2 domain"}),
    )
    .await;
    run_until_idle(&s).await;

    let alert = only_alert(&s).await;
    assert_eq!(alert.status, AlertStatus::Ticketed);
    let ticket = s
        .store
        .get_ticket(alert.ticket_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ticket.severity,
        Severity::Critical,
        "triage read the verdict"
    );
    assert_eq!(attribute(&alert, "enrich_count").as_deref(), Some("1"));

    let requests = s.model.requests();
    assert_eq!(
        requests.len(),
        1,
        "title and description were given: no metadata call"
    );
    let prompt = serde_json::to_string(&requests[0].messages).unwrap();
    assert!(prompt.contains("Is 198.51.100.7 malicious?"));

    let runs = s.store.list_agent_runs(ticket.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].purpose, RunPurpose::Enrich);
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].usage.total_tokens, 40);
}

#[tokio::test]
async fn an_alert_that_joins_an_open_ticket_makes_no_model_call() {
    // Enough replies for one triage only: a second call would get "the script is exhausted"
    // and show as an error attribute.
    let s = setup(
        vec![ScriptedChatModel::text(r#"{"verdict": "malicious"}"#, 40)],
        true,
        true,
        5,
    );
    send(&s, serde_json::json!({"rule": "storm", "about": "x"})).await;
    run_until_idle(&s).await;
    // The same fingerprint, in a later batch (the ticket is stored) and twice in one batch.
    for _ in 0..3 {
        send(&s, serde_json::json!({"rule": "storm", "about": "x"})).await;
    }
    run_until_idle(&s).await;

    assert_eq!(
        s.model.requests().len(),
        1,
        "one model call for the whole storm"
    );
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
    assert_eq!(tickets[0].alert_count, 4);
    assert!(
        tickets[0]
            .attributes
            .iter()
            .all(|a| a.key != "enrich_error")
    );
}

/// The scripted model, answering after a pause: long enough for other batches to start.
struct SlowModel(Arc<ScriptedChatModel>);

#[async_trait::async_trait]
impl heron_core::llm::ChatModel for SlowModel {
    fn model(&self) -> &str {
        self.0.model()
    }
    async fn chat(&self, request: heron_core::llm::ChatRequest) -> Result<ChatResponse, LlmError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.0.chat(request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_of_one_new_fingerprint_share_one_enrichment() {
    // One reply only: a second enrichment would get "the script is exhausted".
    let model = Arc::new(ScriptedChatModel::new(vec![ScriptedChatModel::text(
        r#"{"verdict": "malicious"}"#,
        40,
    )]));
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let wake = Arc::new(Notify::new());
    let enricher: Arc<dyn Enricher> = Arc::new(AgentEnricher::new(
        Arc::new(SlowModel(model.clone())),
        Vec::new(),
        Budgets::default(),
        Arc::new(InMemoryDailyTokens::new(1_000_000)),
        2,
    ));
    let worker = Worker::new(
        store.clone(),
        policies(true),
        WorkerSettings {
            batch_size: 1,
            ..WorkerSettings::default()
        },
        wake.clone(),
        Some(enricher),
    );
    let s = Setup {
        intake: Intake::new(store.clone(), wake),
        store,
        worker,
        model,
    };
    for _ in 0..6 {
        send(&s, serde_json::json!({"rule": "storm", "about": "x"})).await;
    }
    // Six batches of one event at once: none sees a ticket for the fingerprint yet.
    let batches: Vec<_> = (0..6)
        .map(|_| {
            let worker = s.worker.clone();
            tokio::spawn(async move { worker.run_once().await.unwrap() })
        })
        .collect();
    for batch in batches {
        assert_eq!(batch.await.unwrap(), 1, "each batch took one event");
    }

    assert_eq!(s.model.requests().len(), 1, "one enrichment for the storm");
    let tickets = s
        .store
        .list_tickets(&TicketQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(tickets.len(), 1, "the database keeps one ticket");
    assert_eq!(tickets[0].alert_count, 6);
    assert_eq!(tickets[0].severity, Severity::Critical);
    let alerts = s
        .store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert!(
        alerts
            .iter()
            .all(|a| attribute(a, "enrich_error").is_none()),
        "no alert saw a failed enrichment: {alerts:?}"
    );
}

#[tokio::test]
async fn a_missing_title_and_description_are_written_by_the_model_with_source_llm() {
    let s = setup(
        vec![ScriptedChatModel::text(
            r#"{"title": "Beacon to a known C2 from 198.51.100.7", "description": "A host talked to a C2 server."}"#,
            25,
        )],
        false,
        true,
        5,
    );
    send(&s, serde_json::json!({"n": 1})).await;
    run_until_idle(&s).await;

    let alert = only_alert(&s).await;
    assert_eq!(alert.title, "Beacon to a known C2 from 198.51.100.7");
    assert_eq!(alert.title_source, MetadataSource::Llm);
    assert_eq!(alert.description, "A host talked to a C2 server.");
    assert_eq!(alert.description_source, MetadataSource::Llm);
    let ticket = s
        .store
        .get_ticket(alert.ticket_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticket.title, alert.title);
    let requests = s.model.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].tools.is_empty());
}

#[tokio::test]
async fn a_failed_description_keeps_the_defaults_and_never_fails_the_event() {
    let s = setup(vec![Err(LlmError::Auth("bad key".into()))], false, true, 5);
    let id = send(&s, serde_json::json!({"n": 1})).await;
    run_until_idle(&s).await;

    let alert = only_alert(&s).await;
    assert_eq!(alert.title, "Alert from test");
    assert_eq!(alert.title_source, MetadataSource::Default);
    assert_eq!(alert.description_source, MetadataSource::Default);
    let event = s.store.get_event(id).await.unwrap().unwrap();
    assert_eq!((event.state, event.attempts), (EventState::Processed, 1));
}

#[tokio::test]
async fn a_model_down_through_every_attempt_retries_then_triages_with_the_error_result() {
    let down = || {
        Err(LlmError::Transient {
            message: "503 Service Unavailable".into(),
            retry_after: None,
        })
    };
    let s = setup(vec![down(), down(), down()], true, true, 3);
    let id = send(&s, serde_json::json!({"rule": "C2 beacon", "about": "x"})).await;
    run_until_idle(&s).await;

    let event = s.store.get_event(id).await.unwrap().unwrap();
    assert_eq!(event.state, EventState::Processed, "the alert is not lost");
    assert_eq!(event.attempts, 3, "retried while attempts remained");
    assert_eq!(s.model.requests().len(), 3);
    let alert = only_alert(&s).await;
    assert_eq!(alert.status, AlertStatus::Ticketed);
    let error = alert
        .attributes
        .iter()
        .find(|a| a.key == "enrich_error")
        .expect("triage saw the task's error");
    assert!(error.value.contains("503"), "{}", error.value);
}

#[tokio::test]
async fn a_json_task_whose_answer_is_not_json_gives_triage_an_error_result() {
    let s = setup(
        vec![
            ScriptedChatModel::text("Probably malicious.", 10),
            ScriptedChatModel::text("I said: probably malicious.", 10),
        ],
        true,
        true,
        5,
    );
    let id = send(&s, serde_json::json!({"rule": "C2 beacon", "about": "x"})).await;
    run_until_idle(&s).await;

    let alert = only_alert(&s).await;
    let error = alert
        .attributes
        .iter()
        .find(|a| a.key == "enrich_error")
        .expect("triage saw the task's error");
    assert!(error.value.contains("not JSON"), "{}", error.value);
    let event = s.store.get_event(id).await.unwrap().unwrap();
    assert_eq!(
        event.attempts, 1,
        "a bad answer is not retried at the event level"
    );
    let runs = s
        .store
        .list_agent_runs(alert.ticket_id.unwrap())
        .await
        .unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
}

#[tokio::test]
async fn without_a_model_enrich_tasks_are_skipped_and_triage_gets_an_empty_enrich() {
    let s = setup(Vec::new(), true, false, 5);
    send(&s, serde_json::json!({"rule": "C2 beacon", "about": "x"})).await;
    send(&s, serde_json::json!({"n": 2})).await;
    run_until_idle(&s).await;

    let alerts = s
        .store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(alerts.len(), 2);
    for alert in alerts {
        assert_eq!(alert.status, AlertStatus::Ticketed);
        assert_eq!(attribute(&alert, "enrich_count").as_deref(), Some("0"));
        assert_eq!(
            alert.title_source == MetadataSource::Default,
            alert.title == "Alert from test"
        );
    }
    assert!(s.model.requests().is_empty());
}
