#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end over HTTP: the worker's metadata and enrich stages through the real OpenAI
//! adapter against `heron_llm::testing::FakeOpenAi`, with real Rego policies.

use chrono::Utc;
use heron_agent::{Budgets, InMemoryDailyTokens};
use heron_app::{AgentEnricher, Enricher, Intake, PolicyHandle, Worker, WorkerSettings};
use heron_core::alert::MetadataSource;
use heron_core::ports::*;
use heron_core::testing::InMemoryStore;
use heron_core::*;
use heron_llm::testing::{FakeOpenAi, Reply};
use heron_llm::{LlmSettings, OpenAiChat};
use heron_policy::{LoadOptions, PolicySet};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const INGEST: &str = r#"package ingest.test
alerts contains {"severity": "high", "attributes": [{"key": "src_ip", "value": input.ip}]}
"#;

const ENRICH: &str = r#"package enrich
prompts contains {"id": "verdict", "template": "verdict.md", "params": {"ip": input.attributes[0].value}, "format": "json"}
"#;

const TEMPLATE: &str = "Is {{ params.ip }} (seen in \"{{ alert.metadata.title }}\") malicious?";

const TRIAGE: &str = r#"package triage
severity := "critical" if {
    some e in input.enrich
    e.id == "verdict"
    e.result.verdict == "malicious"
}
"#;

#[tokio::test]
async fn a_titleless_alert_is_named_and_enriched_through_an_openai_compatible_endpoint() {
    let server = FakeOpenAi::start().await;
    server
        .push_chat(Reply::text(
            &json!({"title": "C2 beacon from 198.51.100.7", "description": "A host beaconed."})
                .to_string(),
            (120, 20),
        ))
        // The endpoint is briefly unavailable: the adapter's own retry absorbs it.
        .push_chat(Reply::error(503, "server_error", None))
        .push_chat(Reply::text(r#"{"verdict": "malicious"}"#, (300, 10)));
    let mut settings = LlmSettings::new(server.base_url(), "gpt-test");
    settings.timeout = Duration::from_secs(5);
    settings.max_retries = 2;
    let model = Arc::new(OpenAiChat::new(settings).unwrap());
    let daily = Arc::new(InMemoryDailyTokens::new(1_000_000));
    let enricher: Arc<dyn Enricher> = Arc::new(AgentEnricher::new(
        model,
        Vec::new(),
        Budgets::default(),
        daily.clone(),
        2,
    ));

    let policies = PolicySet::from_sources_with_templates(
        vec![
            ("ingest.rego".into(), INGEST.into()),
            ("enrich.rego".into(), ENRICH.into()),
            ("triage.rego".into(), TRIAGE.into()),
        ],
        vec![("verdict.md".into(), TEMPLATE.into())],
        &LoadOptions::default(),
    )
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let wake = Arc::new(Notify::new());
    let worker = Worker::new(
        store.clone(),
        PolicyHandle::new(Arc::new(policies)),
        WorkerSettings::default(),
        wake.clone(),
        Some(enricher),
    );
    Intake::new(store.clone(), wake)
        .accept(NewEvent {
            id: EventId::new(),
            schema: SchemaName::parse("test").unwrap(),
            source: EventSource::Raw,
            body: json!({"ip": "198.51.100.7"}).to_string(),
            metadata: json!({}),
            idempotency_key: None,
            received_at: Utc::now(),
        })
        .await
        .unwrap();
    worker.run_once().await.unwrap();

    let alert = store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(alert.title, "C2 beacon from 198.51.100.7");
    assert_eq!(alert.title_source, MetadataSource::Llm);
    let ticket = store
        .get_ticket(alert.ticket_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticket.severity, Severity::Critical);
    let runs = store.list_agent_runs(ticket.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].usage.total_tokens, 310);
    use heron_agent::DailyTokens;
    assert_eq!(daily.remaining(), 1_000_000 - 140 - 310);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let task = requests[2].body.to_string();
    // The template rendered with the title the model had just written.
    assert!(
        task.contains("Is 198.51.100.7 (seen in \\\"C2 beacon from 198.51.100.7\\\") malicious?"),
        "{task}"
    );
}
