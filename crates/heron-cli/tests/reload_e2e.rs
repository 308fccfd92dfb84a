//! Policy hot reload through the real server, on SQLite and (with feature `postgres-tests`)
//! PostgreSQL: reloads by the API, by the folder watch and by a refused (broken or failing)
//! set, all while events keep arriving, lose and duplicate nothing; a refused set is visible
//! in `GET /api/v1/policies`, `/readyz` and `/metrics`, and the set in force keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_cli::runtime::{self, RunningServer};
use heron_cli::settings::Settings;
use heron_core::ports::*;
use heron_core::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "reload-token";

fn policy(version: &str) -> String {
    format!(
        r#"package ingest.load

alerts contains {{
    "title": sprintf("{version} event %d", [input.n]),
    "attrs": [{{"key": "n", "value": input.n}}],
}} if {{
    is_number(input.n)
}}
"#
    )
}

const TESTS: &str = r#"package ingest.load_test

test_one_alert_per_event if {
    count(data.ingest.load.alerts) == 1 with input as {"n": 1}
}
"#;

/// Drops a test database made for one test (a kept local server would collect them).
#[cfg(feature = "postgres-tests")]
async fn drop_postgres(url: &str) {
    use sqlx::Connection;
    let (Ok(base), Some((_, name))) = (
        std::env::var("HERON_TEST_DATABASE_URL"),
        url.rsplit_once('/'),
    ) else {
        return;
    };
    if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

#[cfg(feature = "postgres-tests")]
async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("HERON_TEST_DATABASE_URL")
        .expect("HERON_TEST_DATABASE_URL must point at a PostgreSQL server for postgres-tests");
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let name = format!("heron_reload_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

struct Server {
    server: RunningServer,
    http: reqwest::Client,
    base: String,
}

impl Server {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until `GET /api/v1/policies` satisfies `check`.
    async fn policies_until(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.get("/api/v1/policies").await;
            if check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn start(dir: &Path, database_url: Option<String>) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        database_url,
        policies: vec![dir.join("policies")],
        ..Settings::default()
    };
    settings.database_max_connections = 8;
    settings.auth.tokens = vec![TOKEN.into()];
    settings.worker.poll_interval_ms = 20;
    settings.policy_watch_debounce_ms = 100;
    let server = runtime::start_server(&settings).await.unwrap();
    let base = format!("http://{}", server.addr);
    Server {
        server,
        http: reqwest::Client::new(),
        base,
    }
}

async fn all_alerts(store: &Arc<dyn Store>) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_alerts(&AlertQuery {
                before,
                limit: 500,
                ..AlertQuery::default()
            })
            .await
            .unwrap();
        alerts.extend(page.items);
        match page.next_cursor {
            Some(c) => before = Some(c.parse().unwrap()),
            None => return alerts,
        }
    }
}

async fn reloads_during_load_lose_and_duplicate_nothing(database_url: Option<String>) {
    const EVENTS: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("load.rego"), policy("v1")).unwrap();
    std::fs::write(policies.join("load_test.rego"), TESTS).unwrap();
    let server = Arc::new(start(dir.path(), database_url).await);

    // Four clients post events 0..EVENTS while the policies change under them.
    let mut clients = Vec::new();
    for client in 0..4 {
        let server = server.clone();
        clients.push(tokio::spawn(async move {
            for n in (client..EVENTS).step_by(4) {
                let (status, body) = server.post("/hooks/alert/raw/load", json!({"n": n})).await;
                assert_eq!(status, 202, "{body}");
                if n % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }

    // 1. Reload through the API (same set): accepted.
    let (status, body) = server.post("/api/v1/policies/reload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reload"]["last_trigger"], "api");
    assert!(
        body["ingest_schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("load"))
    );

    // 2. A syntax error on disk: the watch refuses it; the API says why and the metric is 1.
    std::fs::write(
        policies.join("broken.rego"),
        "package broken\n\nallow if {\n",
    )
    .unwrap();
    let refused = server
        .policies_until("the broken file to be refused", |b| {
            b["reload"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("broken.rego:"))
        })
        .await;
    assert_eq!(refused["reload"]["last_trigger"], "watch");
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "the old set still works: {ready}");
    assert_eq!(ready["policies"]["reload_failing"], true);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("heron_policy_reload_failing 1"),
        "{metrics}"
    );
    assert!(metrics.contains("heron_policy_reloads_total{result=\"refused\"}"));
    let (status, body) = server.post("/api/v1/policies/reload", json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unprocessable");

    // 3. Compiles but its own test fails: refused too, naming the test.
    std::fs::remove_file(policies.join("broken.rego")).unwrap();
    std::fs::write(
        policies.join("load_test.rego"),
        TESTS.replace("== 1", "== 2"),
    )
    .unwrap();
    server
        .policies_until("the failing test to be named", |b| {
            b["reload"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("data.ingest.load_test.test_one_alert_per_event FAIL"))
        })
        .await;

    // 4. A good change: v2 titles, tests fixed; the watch swaps it in.
    std::fs::write(policies.join("load_test.rego"), TESTS).unwrap();
    std::fs::write(policies.join("load.rego"), policy("v2")).unwrap();
    let generation_before = refused["reload"]["generation"].as_u64().unwrap();
    let good = server
        .policies_until("the v2 set to be swapped in", |b| {
            b["reload"]["last_error"].is_null()
                && b["reload"]["generation"].as_u64().unwrap() > generation_before
        })
        .await;
    assert!(
        good["reload"]["reloads_ok"].as_u64().unwrap() >= 2,
        "{good}"
    );
    assert!(
        server
            .metrics()
            .await
            .contains("heron_policy_reload_failing 0")
    );

    for client in clients {
        client.await.unwrap();
    }
    // A few more events after the swap, which must see v2.
    for n in EVENTS..EVENTS + 10 {
        let (status, _) = server.post("/hooks/alert/raw/load", json!({"n": n})).await;
        assert_eq!(status, 202);
    }
    let total = EVENTS + 10;

    let store = server.server.store.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = store.queue_stats(chrono::Utc::now()).await.unwrap();
        if stats.pending == 0 && stats.processing == 0 {
            assert_eq!(stats.failed, 0, "no event failed across the reloads");
            break;
        }
        assert!(Instant::now() < deadline, "queue did not drain: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Exactly one alert per event, each made by a whole set (v1 or v2), the late ones by v2.
    let alerts = all_alerts(&store).await;
    assert_eq!(alerts.len(), total, "one alert per event");
    let mut numbers: Vec<u64> = alerts
        .iter()
        .map(|a| {
            let n = a.data["n"].as_u64().unwrap();
            let v1 = a.title == format!("v1 event {n}");
            let v2 = a.title == format!("v2 event {n}");
            assert!(v1 || v2, "{}", a.title);
            if n >= EVENTS as u64 {
                assert!(v2, "an event after the swap used the old set: {}", a.title);
            }
            n
        })
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), total, "no event made two alerts");
    let events = store
        .list_events(&EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        events.items.len(),
        total,
        "no delivery lost or stored twice"
    );

    let server = Arc::try_unwrap(server).ok().expect("clients are done");
    server.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_sqlite_reloads_during_load_lose_and_duplicate_nothing() {
    reloads_during_load_lose_and_duplicate_nothing(None).await;
}

#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_reloads_during_load_lose_and_duplicate_nothing() {
    let url = fresh_postgres().await;
    reloads_during_load_lose_and_duplicate_nothing(Some(url.clone())).await;
    drop_postgres(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_with_watching_off_still_reloads_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("load.rego"), policy("v1")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        policies: vec![policies.clone()],
        ..Settings::default()
    };
    settings.auth.tokens = vec![TOKEN.into()];
    settings.policy_watch_debounce_ms = 0;
    let running = runtime::start_server(&settings).await.unwrap();
    let server = Server {
        base: format!("http://{}", running.addr),
        server: running,
        http: reqwest::Client::new(),
    };
    std::fs::write(
        policies.join("extra.rego"),
        "package ingest.extra\n\nalerts contains {\"title\": \"x\"}\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, before) = server.get("/api/v1/policies").await;
    assert_eq!(
        before["reload"]["generation"], 1,
        "nothing watched: {before}"
    );
    let (status, after) = server.post("/api/v1/policies/reload", json!({})).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["reload"]["generation"], 2);
    assert!(
        after["ingest_schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("extra"))
    );
    server.server.shutdown().await.unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("load.rego"), policy("v1")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        policies: vec![policies.clone()],
        ..Settings::default()
    };
    settings.auth.tokens = vec![TOKEN.into()];
    settings.policy_watch_debounce_ms = 0;
    let running = runtime::start_server(&settings).await.unwrap();
    let server = Server {
        base: format!("http://{}", running.addr),
        server: running,
        http: reqwest::Client::new(),
    };
    std::fs::write(
        policies.join("extra.rego"),
        "package ingest.extra\n\nalerts contains {\"title\": \"x\"}\n",
    )
    .unwrap();
    // This test process is the server: signal it.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let after = server
        .policies_until("SIGHUP to reload", |b| b["reload"]["generation"] == 2)
        .await;
    assert_eq!(after["reload"]["last_trigger"], "sighup");
    assert!(
        after["ingest_schemas"]
            .as_array()
            .unwrap()
            .contains(&json!("extra"))
    );
    server.server.shutdown().await.unwrap();
}

impl Server {
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// From a false positive resolved over the API to a validated draft over the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_false_positive_gets_a_validated_tuning_draft_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("auth.rego"),
        "package ingest.auth\n\nalerts contains {\"title\": sprintf(\"Login by %s\", [input.user]), \"attrs\": [{\"key\": \"user\", \"value\": input.user}]} if input.kind == \"login\"\n",
    )
    .unwrap();
    std::fs::write(
        policies.join("load_test.rego"),
        "package x_test\n\ntest_ok if true\n",
    )
    .unwrap();
    let server = start(dir.path(), None).await;
    for user in ["svc-backup", "alice", "svc-backup"] {
        let (status, _) = server
            .post(
                "/hooks/alert/raw/auth",
                json!({"kind": "login", "user": user}),
            )
            .await;
        assert_eq!(status, 202);
    }
    let store = server.server.store.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.queue_stats(chrono::Utc::now()).await.unwrap().pending > 0
        || store
            .queue_stats(chrono::Utc::now())
            .await
            .unwrap()
            .processing
            > 0
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, tickets) = server.get("/api/v1/tickets").await;
    let find = |title: &str| {
        tickets["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["title"] == title)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let backup = find("Login by svc-backup");
    let alice = find("Login by alice");

    let (status, body) = server
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/tickets/{backup}/tuning"),
            None,
        )
        .await;
    assert_eq!(status, 409, "an open ticket gets no draft: {body}");
    let (status, body) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/api/v1/tickets/{backup}"),
            Some(json!({"status": "resolved", "conclusion": "false_positive", "reason": "backup job"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, draft) = server
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/tickets/{backup}/tuning"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{draft}");
    assert_eq!(
        draft["matched_on"],
        json!([{"key": "user", "value": "svc-backup"}])
    );
    assert_eq!(draft["validation"]["tests_passed"], 2);
    assert_eq!(draft["validation"]["events_changed"], 2);
    assert_eq!(
        draft["validation"]["tickets_changed"],
        json!([backup.to_string()])
    );
    assert!(
        draft["patch"]
            .as_str()
            .unwrap()
            .contains("+++ b/policies/tuning/")
    );
    let (status, _) = server
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/tickets/{alice}/tuning"),
            None,
        )
        .await;
    assert_eq!(status, 409);

    // Applied as the patch says, the watch reloads it and the next backup login is discarded.
    std::fs::create_dir_all(policies.join("tuning")).unwrap();
    for (path, text) in [("rule_path", "rule"), ("test_path", "test")] {
        std::fs::write(
            policies.join(draft[path].as_str().unwrap()),
            draft[text].as_str().unwrap(),
        )
        .unwrap();
    }
    server
        .policies_until("the draft to be reloaded", |b| {
            b["reload"]["generation"].as_u64().unwrap() >= 2 && b["reload"]["last_error"].is_null()
        })
        .await;
    let (status, accepted) = server
        .post(
            "/hooks/alert/raw/auth",
            json!({"kind": "login", "user": "svc-backup"}),
        )
        .await;
    assert_eq!(status, 202);
    let event_id: EventId = accepted["event_id"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = store.get_event(event_id).await.unwrap().unwrap();
        if event.state == EventState::Processed {
            break;
        }
        assert!(Instant::now() < deadline, "{event:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alerts = all_alerts(&store).await;
    let newest = alerts.iter().find(|a| a.event_id == event_id).unwrap();
    assert_eq!(newest.status, heron_core::alert::AlertStatus::Discarded);
    server.server.shutdown().await.unwrap();
}
