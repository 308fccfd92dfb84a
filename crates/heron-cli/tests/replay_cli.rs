//! `heron policy replay` as a user runs it, on SQLite and (with feature `postgres-tests`)
//! PostgreSQL: a seeded database, a candidate set with a known change, the exact diff, and
//! a database left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use heron_core::ports::*;
use heron_core::*;
use std::path::Path;
use std::process::Command;

const INGEST: &str = r#"package ingest.auth

alerts contains {
    "title": sprintf("Login by %s", [input.user]),
    "attrs": [{"key": "user", "value": input.user}],
} if {
    input.kind == "login"
}
"#;

const CANDIDATE_TRIAGE: &str = r#"package triage

publish := "discard" if {
    some a in input.alert.metadata.attributes
    a.key == "user"
    a.value == "svc-backup"
}
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn heron(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_heron"))
        .current_dir(dir)
        .env_remove("HERON_CONFIG")
        .args(args)
        .output()
        .expect("run heron");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Stores the events and marks them done; the oldest one is 30 days old.
async fn seed(store: &std::sync::Arc<dyn Store>) -> Vec<EventId> {
    let now = Utc::now();
    let users = ["alice", "svc-backup", "alice", "svc-backup"];
    let mut ids = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let age = if i == 0 {
            Duration::days(30)
        } else {
            Duration::minutes(10 - i as i64)
        };
        let accepted = store
            .accept_event(NewEvent {
                id: EventId::new(),
                schema: SchemaName::parse("auth").unwrap(),
                source: EventSource::Raw,
                body: serde_json::json!({"kind": "login", "user": user}).to_string(),
                metadata: serde_json::json!({}),
                idempotency_key: None,
                received_at: now - age,
            })
            .await
            .unwrap();
        ids.push(accepted.event_id);
    }
    let leased = store
        .lease_events(10, now, now + Duration::minutes(5), 5)
        .await
        .unwrap();
    for l in leased {
        store.complete_event(&l.lease, vec![], now).await.unwrap();
    }
    ids
}

async fn replay_prints_the_exact_diff_and_writes_nothing(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "current/auth.rego", INGEST);
    write(dir.path(), "candidate/auth.rego", INGEST);
    write(dir.path(), "candidate/triage.rego", CANDIDATE_TRIAGE);
    let data_dir = dir.path().join("data");
    let store = heron_store::open_store(database_url.as_deref(), &data_dir, 2)
        .await
        .unwrap();
    let ids = seed(&store).await;
    let mut args = vec![
        "policy",
        "replay",
        "--policies",
        "candidate",
        "--current",
        "current",
        "--data-dir",
        "data",
        "--format",
        "json",
    ];
    if let Some(url) = &database_url {
        args.extend(["--database-url", url.as_str()]);
    }

    let (code, out, err) = heron(dir.path(), &args);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["events"], 4);
    let auth = &report["schemas"][0];
    assert_eq!(auth["schema"], "auth");
    assert_eq!(auth["current"]["published"], 4);
    assert_eq!(auth["candidate"]["discarded"], 2);
    assert_eq!(auth["changes"].as_array().unwrap().len(), 1, "{auth}");
    assert_eq!(auth["changes"][0]["kind"], "publish alert → discard");
    assert_eq!(
        auth["changes"][0]["examples"],
        serde_json::json!([ids[1].to_string(), ids[3].to_string()])
    );

    // --since leaves out the 30-day-old event; text output names the change.
    let mut text_args: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--format" && *a != "json")
        .collect();
    text_args.extend(["--since", "7d"]);
    let (code, out, err) = heron(dir.path(), &text_args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("replayed 3 events"), "{out}");
    assert!(out.contains("publish alert → discard"), "{out}");

    // Nothing was written: no ticket, no alert, every event still ignored.
    let tickets = store
        .list_tickets(&TicketQuery {
            limit: 10,
            ..TicketQuery::default()
        })
        .await
        .unwrap();
    assert!(tickets.items.is_empty());
    let alerts = store
        .list_alerts(&AlertQuery {
            limit: 10,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert!(alerts.items.is_empty());
    for id in ids {
        let event = store.get_event(id).await.unwrap().unwrap();
        assert_eq!(event.state, EventState::Ignored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_sqlite_prints_the_exact_diff_and_writes_nothing() {
    replay_prints_the_exact_diff_and_writes_nothing(None).await;
}

#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_postgres_prints_the_exact_diff_and_writes_nothing() {
    use sqlx::Connection;
    let base = std::env::var("HERON_TEST_DATABASE_URL")
        .expect("HERON_TEST_DATABASE_URL must point at a PostgreSQL server for postgres-tests");
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let name = format!("heron_replay_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    replay_prints_the_exact_diff_and_writes_nothing(Some(format!("{prefix}/{name}"))).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "current/auth.rego", INGEST);
    write(
        dir.path(),
        "candidate/auth.rego",
        "package ingest.auth\n\nalerts contains {\n",
    );
    let base = [
        "policy",
        "replay",
        "--current",
        "current",
        "--data-dir",
        "data",
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra);
        heron(dir.path(), &args)
    };
    let (code, _, err) = run(&["--policies", "candidate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("the candidate policy set") && err.contains("auth.rego:"),
        "{err}"
    );
    write(dir.path(), "good/auth.rego", INGEST);
    let (code, _, err) = run(&["--policies", "good", "--since", "7 weeks"]);
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
    let (code, _, err) = run(&["--policies", "good", "--schema", "not a schema!"]);
    assert_eq!(code, 2);
    assert!(err.contains("schema"), "{err}");
    let (code, _, err) = run(&[]);
    assert_eq!(code, 2, "{err}");
}
