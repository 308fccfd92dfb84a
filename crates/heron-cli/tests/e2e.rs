#![allow(clippy::unwrap_used, clippy::expect_used)]

//! End to end, on SQLite and (with feature `postgres-tests`) PostgreSQL: the real server on
//! port 0 with the example policies, driven over HTTP.

use base64::Engine as _;
use heron_cli::runtime::{self, RunningServer};
use heron_cli::settings::Settings;
use heron_core::EventState;
use heron_core::ports::{EventQuery, Store, TicketQuery};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "e2e-token";

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    #[cfg_attr(not(feature = "postgres-tests"), allow(dead_code))]
    Postgres,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh PostgreSQL database per test, so tests never see each other's rows.
async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("HERON_TEST_DATABASE_URL")
        .expect("HERON_TEST_DATABASE_URL must point at a PostgreSQL server for postgres-tests");
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test server");
    let name = format!("heron_e2e_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

async fn drop_database(url: &str) {
    use sqlx::Connection;
    let Ok(base) = std::env::var("HERON_TEST_DATABASE_URL") else {
        return;
    };
    let Some((_, name)) = url.rsplit_once('/') else {
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

struct Harness {
    server: Option<RunningServer>,
    settings: Settings,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings {
            addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("data"),
            database_url: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(fresh_postgres().await),
            },
            policies: vec![repo_root().join("policies")],
            ..Settings::default()
        };
        settings.database_max_connections = 8;
        settings.auth.tokens = vec![TOKEN.into()];
        settings.worker.poll_interval_ms = 20;
        settings.worker.lease_secs = 2;
        settings.worker.backoff_base_ms = 10;
        settings.worker.max_attempts = 2;
        settings.sns.allowed_hosts = vec!["127.0.0.1".into()];
        settings.sns.allow_insecure_urls = true;
        adjust(&mut settings);
        let server = runtime::start_server(&settings)
            .await
            .expect("server starts");
        let base = format!("http://{}", server.addr);
        Self {
            server: Some(server),
            settings,
            http: reqwest::Client::new(),
            base,
            _dir: dir,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.server.as_ref().expect("running").store.clone()
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        self.post_with(path, content_type, body, &[]).await
    }

    async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("x-heron-user", "alice");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, None).await
    }

    /// Waits until no event is pending or leased.
    async fn drained(&self) {
        let store = self.store();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let stats = store.queue_stats(chrono::Utc::now()).await.expect("stats");
            if stats.pending == 0 && stats.processing == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "queue did not drain: {stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn all_tickets(&self) -> Vec<heron_core::Ticket> {
        let store = self.store();
        let mut tickets = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .list_tickets(&TicketQuery {
                    cursor: before,
                    limit: 500,
                    ..TicketQuery::default()
                })
                .await
                .expect("tickets");
            tickets.extend(page.items);
            match page.next_cursor {
                Some(c) => before = Some(c.parse().expect("cursor")),
                None => return tickets,
            }
        }
    }

    async fn events(&self, state: Option<EventState>) -> Vec<heron_core::Event> {
        self.store()
            .list_events(&EventQuery {
                state,
                limit: 10_000,
                ..EventQuery::default()
            })
            .await
            .expect("events")
            .items
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        // A passing test leaves no database behind (a failing one keeps it to look at).
        if let Some(url) = &self.settings.database_url {
            drop_database(url).await;
        }
    }
}

fn fixtures(kind: &str) -> Vec<(String, PathBuf)> {
    let base = repo_root().join("policies/testdata").join(kind);
    let mut out = Vec::new();
    for schema in std::fs::read_dir(&base).expect("fixtures dir") {
        let schema = schema.expect("entry").path();
        let name = schema
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for file in std::fs::read_dir(&schema).expect("schema dir") {
            out.push((name.clone(), file.expect("file").path()));
        }
    }
    out.sort();
    out
}

async fn every_example_payload_becomes_a_ticket_and_noise_is_ignored(backend: Backend) {
    let h = Harness::start(backend).await;
    let detect = fixtures("detect");
    let ignore = fixtures("ignore");
    assert!(
        detect.len() >= 16,
        "expected ≥ 2 detect fixtures per schema"
    );
    for (schema, file) in detect.iter().chain(&ignore) {
        let body = std::fs::read_to_string(file).expect("fixture");
        let (status, answer) = h
            .post(
                &format!("/hooks/alert/raw/{schema}"),
                "application/json",
                body,
            )
            .await;
        assert_eq!(status, 202, "{}: {answer}", file.display());
    }
    h.drained().await;
    let tickets = h.all_tickets().await;
    let schemas: std::collections::BTreeSet<_> =
        tickets.iter().map(|t| t.schema.to_string()).collect();
    for (schema, _) in &detect {
        assert!(schemas.contains(schema), "no ticket for {schema}");
    }
    for ticket in &tickets {
        assert_ne!(
            ticket.title,
            ticket.schema.to_string(),
            "title is just the schema"
        );
        assert!(
            !ticket.attributes.is_empty(),
            "{} has no attributes",
            ticket.title
        );
    }
    assert_eq!(
        h.events(Some(EventState::Ignored)).await.len(),
        ignore.len()
    );
    assert!(h.events(Some(EventState::Failed)).await.is_empty());
    h.stop().await;
}

async fn duplicate_delivery_is_acknowledged_without_a_second_event(backend: Backend) {
    let h = Harness::start(backend).await;
    let body = json!({"rule": "Terminal shell in container", "priority": "Warning", "output": "x"})
        .to_string();
    let key = [("idempotency-key", "delivery-42")];
    let (s1, first) = h
        .post_with(
            "/hooks/alert/raw/custom",
            "application/json",
            body.clone(),
            &key,
        )
        .await;
    let (s2, second) = h
        .post_with("/hooks/alert/raw/custom", "application/json", body, &key)
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["event_id"], second["event_id"]);
    assert_eq!(second["duplicate"], json!(true));
    assert!(first.get("duplicate").is_none());

    let data = base64::engine::general_purpose::STANDARD.encode(br#"{"rule":"r","output":"o"}"#);
    let push = json!({"message": {"data": data, "messageId": "pubsub-1", "attributes": {"k": "v"}}, "subscription": "projects/p/subscriptions/s"});
    let (p1, a) = h
        .post(
            "/hooks/alert/pubsub/custom",
            "application/json",
            push.to_string(),
        )
        .await;
    let (p2, b) = h
        .post(
            "/hooks/alert/pubsub/custom",
            "application/json",
            push.to_string(),
        )
        .await;
    assert_eq!((p1, p2), (202, 202));
    assert_eq!(a["event_id"], b["event_id"]);
    assert_eq!(b["duplicate"], json!(true));

    // Keys live in per-source namespaces: a sender's own key equal to a Pub/Sub message id
    // is a different delivery.
    let (s3, third) = h
        .post_with(
            "/hooks/alert/raw/custom",
            "application/json",
            json!({"rule": "other"}).to_string(),
            &[("idempotency-key", "pubsub-1")],
        )
        .await;
    assert_eq!(s3, 202);
    assert!(third.get("duplicate").is_none(), "{third}");

    // An NDJSON batch is stored whole, and re-sending it with its key stores nothing new.
    let batch = "{\"rule\":\"b1\"}\n{\"rule\":\"b2\"}\n";
    let batch_key = [("idempotency-key", "batch-7")];
    let (b1, first_batch) = h
        .post_with(
            "/hooks/alert/raw/custom",
            "application/x-ndjson",
            batch.to_owned(),
            &batch_key,
        )
        .await;
    let (b2, second_batch) = h
        .post_with(
            "/hooks/alert/raw/custom",
            "application/x-ndjson",
            batch.to_owned(),
            &batch_key,
        )
        .await;
    assert_eq!((b1, b2), (202, 202), "{first_batch} {second_batch}");
    assert_eq!(first_batch["count"], json!(2));
    assert_eq!(
        first_batch["events"][1]["event_id"],
        second_batch["events"][1]["event_id"]
    );
    assert_eq!(second_batch["events"][0]["duplicate"], json!(true));
    h.drained().await;
    assert_eq!(h.events(None).await.len(), 5);
    h.stop().await;
}

async fn storm_of_a_thousand_alerts_with_three_fingerprints_makes_three_tickets(backend: Backend) {
    let h = Harness::start(backend).await;
    let rules = [
        "Terminal shell in container",
        "Write below etc",
        "Outbound connection to C2",
    ];
    for chunk in 0..10 {
        let mut batch = String::new();
        for i in 0..100 {
            let n = chunk * 100 + i;
            let line = json!({"rule": rules[n % 3], "priority": "Critical", "output": format!("event {n}"), "time": format!("2026-11-23T03:00:{:02}Z", n % 60)});
            batch.push_str(&line.to_string());
            batch.push('\n');
        }
        let (status, answer) = h
            .post("/hooks/alert/raw/storm", "application/x-ndjson", batch)
            .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["count"], json!(100));
    }
    h.drained().await;
    let tickets = h.all_tickets().await;
    assert_eq!(
        tickets.len(),
        3,
        "{:?}",
        tickets
            .iter()
            .map(|t| (&t.title, t.alert_count))
            .collect::<Vec<_>>()
    );
    assert_eq!(tickets.iter().map(|t| t.alert_count).sum::<u64>(), 1000);
    h.stop().await;
}

async fn worker_stopped_mid_queue_and_restarted_finishes_every_event_exactly_once(
    backend: Backend,
) {
    let h = Harness::start_with(backend, |s| s.worker.enabled = false).await;
    let total = 400;
    for n in 0..total {
        let body = json!({"rule": format!("rule {}", n % 7), "output": n}).to_string();
        let (status, _) = h
            .post("/hooks/alert/raw/restart", "application/json", body)
            .await;
        assert_eq!(status, 202);
    }
    // A worker that dies abruptly part-way: its leases are left to expire.
    let mut crashing = h.settings.clone();
    crashing.worker.lease_secs = 1;
    crashing.worker.batch_size = 8;
    let worker = runtime::start_worker(&crashing).await.expect("worker");
    let store = h.store();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let processed = h.events(Some(EventState::Processed)).await.len();
        if processed >= total / 4 {
            break;
        }
        assert!(Instant::now() < deadline, "worker made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.abort();
    let processed_before = h.events(Some(EventState::Processed)).await.len();
    assert!(
        processed_before < total,
        "the worker finished before it was stopped"
    );

    let restarted = runtime::start_worker(&crashing).await.expect("worker");
    h.drained().await;
    restarted.shutdown().await.expect("shutdown");

    let events = h.events(None).await;
    assert_eq!(events.len(), total);
    assert!(
        events.iter().all(|e| e.state == EventState::Processed),
        "every event processed"
    );
    let alerts = store
        .list_alerts(&heron_core::ports::AlertQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("alerts")
        .items;
    assert_eq!(
        alerts.len(),
        total,
        "one alert per event: nothing lost, nothing doubled"
    );
    let tickets = h.all_tickets().await;
    assert_eq!(tickets.len(), 7);
    assert_eq!(
        tickets.iter().map(|t| t.alert_count).sum::<u64>(),
        total as u64
    );
    h.stop().await;
}

async fn every_bad_input_gets_its_error_and_leaves_nothing_behind(backend: Backend) {
    let h = Harness::start_with(backend, |s| s.max_body_bytes = 4096).await;
    let pubsub_data = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        // JSON the worker could not parse: too deep, out of f64 range, a lone surrogate.
        (
            "/hooks/alert/raw/falco",
            "application/json",
            format!("{{\"a\": {}1{}}}", "[".repeat(200), "]".repeat(200)),
            400,
            "invalid_json",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/json",
            "{\"n\": 1e400}".into(),
            400,
            "invalid_json",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/json",
            "{\"s\": \"\\ud800\"}".into(),
            400,
            "invalid_json",
        ),
        // U+0000 cannot be stored by PostgreSQL: refused the same way on both backends.
        (
            "/hooks/alert/raw/falco",
            "application/json",
            "{\"s\": \"a\\u0000b\"}".into(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/pubsub/falco",
            "application/json",
            json!({"message": {"data": pubsub_data("{}"), "attributes": {"k": "a\u{0}b"}}})
                .to_string(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/x-ndjson",
            // 1,001 events in 3,003 bytes: under the body limit, over the event cap.
            "{}\n".repeat(1001),
            413,
            "payload_too_large",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/json",
            "{\"rule\": ".into(),
            400,
            "invalid_json",
        ),
        (
            "/hooks/alert/raw/falco",
            "text/plain",
            "hello".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/json",
            format!("{{\"x\": \"{}\"}}", "a".repeat(5000)),
            413,
            "payload_too_large",
        ),
        (
            "/hooks/alert/raw/Not_Valid",
            "application/json",
            "{}".into(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/json",
            "[1, 2]".into(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/json",
            "\"text\"".into(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/raw/falco",
            "application/x-ndjson",
            "{\"a\":1}\n[]\n".into(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/pubsub/falco",
            "application/json",
            json!({"message": {"data": "%%%"}}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/pubsub/falco",
            "application/json",
            json!({"message": {"data": base64::engine::general_purpose::STANDARD.encode("[1]")}})
                .to_string(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/pubsub/falco",
            "application/json",
            json!({"nope": 1}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/hooks/alert/sns/falco",
            "text/plain",
            json!({"Type": "Notification"}).to_string(),
            400,
            "bad_request",
        ),
    ];
    for (path, content_type, body, status, code) in cases {
        let (got, answer) = h.post(path, content_type, body).await;
        assert_eq!(got, status, "{path} {content_type}: {answer}");
        assert_eq!(answer["error"]["code"], json!(code), "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (_, invalid) = h
        .post(
            "/hooks/alert/raw/falco",
            "application/json",
            "{\n  \"a\": @\n}",
        )
        .await;
    let message = invalid["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("line 2") && message.contains("column"),
        "{message}"
    );

    let unauthenticated = h
        .http
        .post(format!("{}/hooks/alert/raw/falco", h.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let wrong = h
        .http
        .post(format!("{}/hooks/alert/raw/falco", h.base))
        .bearer_auth("wrong-token")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 401);
    let empty_query_token = h
        .http
        .post(format!("{}/hooks/alert/raw/falco?token=", h.base))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(empty_query_token.status().as_u16(), 401);

    // The server's own rejections are JSON too.
    let wrong_method = h
        .http
        .get(format!("{}/hooks/alert/raw/falco", h.base))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_method.status().as_u16(), 405);
    let body: Value = wrong_method.json().await.expect("405 is JSON");
    assert_eq!(body["error"]["code"], json!("method_not_allowed"));
    let (status, bad_query) = h.get("/api/v1/events?limit=many").await;
    assert_eq!(status, 400, "{bad_query}");
    assert_eq!(bad_query["error"]["code"], json!("bad_request"));
    assert!(
        h.events(None).await.is_empty(),
        "a rejected request stored something"
    );
    h.stop().await;
}

const FAILING_POLICY: &str = r#"package ingest.flaky

level := "high" if input.a
level := "low" if input.b

alerts contains {"title": "Flaky", "severity": level} if { true }
"#;

const FIXED_POLICY: &str = r#"package ingest.flaky

alerts contains {"title": "Flaky fixed", "severity": "high", "attributes": [{"key": "a", "value": "1"}]} if { true }
"#;

async fn policy_runtime_error_leaves_the_event_failed_and_retryable(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("flaky.rego"), FAILING_POLICY).expect("write");
    let policy_dir = dir.path().to_path_buf();
    let h = Harness::start_with(backend, |s| s.policies = vec![policy_dir]).await;
    let (status, answer) = h
        .post(
            "/hooks/alert/raw/flaky",
            "application/json",
            r#"{"a": true, "b": true}"#,
        )
        .await;
    assert_eq!(status, 202);
    let event_id = answer["event_id"].as_str().expect("id").to_owned();
    h.drained().await;
    let (_, event) = h.get(&format!("/api/v1/events/{event_id}")).await;
    assert_eq!(event["state"], json!("failed"), "{event}");
    assert!(
        event["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("data.ingest.flaky")),
        "{event}"
    );
    let (_, failed) = h.get("/api/v1/events?state=failed").await;
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(1));

    // Fix the policy and retry through the API: the event is processed once.
    let fixed = heron_policy::PolicySet::from_sources(
        vec![("flaky.rego".into(), FIXED_POLICY.into())],
        &heron_policy::LoadOptions::default(),
    )
    .expect("fixed policy");
    h.server
        .as_ref()
        .expect("running")
        .policies
        .replace(Arc::new(fixed));
    let (status, retried) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/events/{event_id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["state"], json!("pending"));
    h.drained().await;
    let (_, event) = h.get(&format!("/api/v1/events/{event_id}")).await;
    assert_eq!(event["state"], json!("processed"), "{event}");
    let tickets = h.all_tickets().await;
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].title, "Flaky fixed");
    let (status, _) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/events/{event_id}/retry"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a processed event cannot be re-run");
    h.stop().await;
}

async fn ticket_lifecycle_comments_and_notices_work_over_the_api(backend: Backend) {
    let h = Harness::start(backend).await;
    // Falco "Notice" priority maps to low severity, which the example triage publishes as a notice.
    let notice = json!({"rule": "Read sensitive file untrusted", "priority": "Notice", "output": "x", "hostname": "node-1", "source": "syscall", "output_fields": {"user.name": "bob", "container.id": "abc"}});
    let alert = json!({"rule": "Terminal shell in container", "priority": "Critical", "output": "y", "hostname": "node-2", "source": "syscall", "output_fields": {"user.name": "root", "container.id": "def", "k8s.ns.name": "prod", "k8s.pod.name": "web"}});
    for body in [&notice, &alert] {
        let (status, answer) = h
            .post(
                "/hooks/alert/raw/falco",
                "application/json",
                body.to_string(),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
    }
    h.drained().await;
    let (status, page) = h.get("/api/v1/tickets?status=open").await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    let id = items[0]["id"].as_str().expect("id").to_owned();

    let (status, err) = h
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            Some(json!({"status": "archived"})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let (status, _) = h
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(status, 409, "resolving needs a conclusion");
    let (status, acked) = h
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            Some(json!({"status": "acknowledged", "assignee": "alice"})),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["assignee"], json!("alice"));
    assert!(acked["acked_at"].is_string());
    let (status, resolved) = h.api(reqwest::Method::PATCH, &format!("/api/v1/tickets/{id}"),
        Some(json!({"status": "resolved", "conclusion": "false_positive", "reason": "admin debugging"}))).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["conclusion"], json!("false_positive"));
    let (status, bad) = h
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            Some(json!({"status": "nonsense"})),
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    let (status, _) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tickets/{id}/comments"),
            Some(json!({"text": "looked at it"})),
        )
        .await;
    assert_eq!(status, 201);
    let impostor = h
        .http
        .post(format!("{}/api/v1/tickets/{id}/comments", h.base))
        .bearer_auth(TOKEN)
        .header("x-heron-user", "m".repeat(200))
        .json(&json!({"text": "never stored"}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        impostor.status().as_u16(),
        400,
        "an over-long X-Heron-User is refused"
    );
    let (_, comments) = h.get(&format!("/api/v1/tickets/{id}/comments")).await;
    let texts: Vec<&str> = comments
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert!(texts.contains(&"looked at it"), "{comments}");
    assert!(
        texts.iter().any(|t| t.starts_with("alice changed status")),
        "the change is recorded with who made it: {comments}"
    );

    let (_, alerts) = h.get(&format!("/api/v1/alerts?ticket={id}")).await;
    assert_eq!(alerts["items"].as_array().map(Vec::len), Some(1));

    let (_, notices) = h.get("/api/v1/notices").await;
    let notice_id = notices["items"][0]["id"]
        .as_str()
        .expect("a notice")
        .to_owned();
    let (status, escalated) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/notices/{notice_id}/escalate"),
            None,
        )
        .await;
    assert_eq!(status, 201, "{escalated}");
    let (status, _) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/notices/{notice_id}/escalate"),
            None,
        )
        .await;
    assert_eq!(status, 409);
    let (_, unbound) = h.get("/api/v1/alerts?unbound=true").await;
    assert_eq!(
        unbound["items"].as_array().map(Vec::len),
        Some(0),
        "{unbound}"
    );

    let (_, page1) = h.get("/api/v1/tickets?limit=1").await;
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, page2) = h
        .get(&format!("/api/v1/tickets?limit=1&before={cursor}"))
        .await;
    assert_eq!(page2["items"].as_array().map(Vec::len), Some(1));
    assert_ne!(page1["items"][0]["id"], page2["items"][0]["id"]);
    assert!(page2["next_cursor"].is_null());
    let (_, searched) = h.get("/api/v1/tickets?q=TERMINAL%20SHELL").await;
    assert_eq!(
        searched["items"].as_array().map(Vec::len),
        Some(1),
        "{searched}"
    );
    h.stop().await;
}

/// Serves the test certificate the way SNS serves its signing certificates.
async fn certificate_server() -> String {
    let cert =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sns/cert.pem"))
            .expect("cert");
    let app = axum::Router::new().route(
        "/SimpleNotificationService-test.pem",
        axum::routing::get(move || {
            let cert = cert.clone();
            async move { cert }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/SimpleNotificationService-test.pem")
}

fn sign_v2(message: &mut Value) {
    let fields = [
        "Message",
        "MessageId",
        "Subject",
        "Timestamp",
        "TopicArn",
        "Type",
    ];
    let canonical: String = fields
        .iter()
        .filter_map(|f| {
            message
                .get(*f)
                .and_then(Value::as_str)
                .map(|v| format!("{f}\n{v}\n"))
        })
        .collect();
    let der =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sns/key.pk8.der"))
            .expect("key");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("pkcs8");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        canonical.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    message["SignatureVersion"] = json!("2");
    message["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(signature));
}

async fn signed_sns_notifications_are_accepted_and_forged_ones_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    let cert_url = certificate_server().await;
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sns/notification_v1.json"),
    )
    .expect("fixture");
    let mut v1: Value = serde_json::from_str(&fixture).expect("json");
    v1["SigningCertURL"] = json!(cert_url);
    let (status, answer) = h
        .post(
            "/hooks/alert/sns/guardduty",
            "text/plain; charset=UTF-8",
            v1.to_string(),
        )
        .await;
    assert_eq!(status, 202, "SignatureVersion 1: {answer}");
    let (_, again) = h
        .post("/hooks/alert/sns/guardduty", "text/plain", v1.to_string())
        .await;
    assert_eq!(
        again["duplicate"],
        json!(true),
        "MessageId is the idempotency key"
    );

    let mut v2 = v1.clone();
    v2["MessageId"] = json!("2b0e3c4d-0000-4000-8000-000000000002");
    sign_v2(&mut v2);
    let (status, answer) = h
        .post("/hooks/alert/sns/guardduty", "text/plain", v2.to_string())
        .await;
    assert_eq!(status, 202, "SignatureVersion 2: {answer}");

    let mut forged = v2.clone();
    forged["Message"] = json!("{\"source\":\"aws.guardduty\",\"forged\":true}");
    let (status, _) = h
        .post(
            "/hooks/alert/sns/guardduty",
            "text/plain",
            forged.to_string(),
        )
        .await;
    assert_eq!(status, 401, "a changed message fails verification");
    let mut elsewhere = v2.clone();
    elsewhere["SigningCertURL"] = json!("https://attacker.example/SimpleNotificationService-x.pem");
    let (status, _) = h
        .post(
            "/hooks/alert/sns/guardduty",
            "text/plain",
            elsewhere.to_string(),
        )
        .await;
    assert_eq!(status, 401, "certificates come only from allowed hosts");

    let mut confirmation = json!({
        "Type": "SubscriptionConfirmation", "MessageId": "c-1", "Token": "tok",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:heron-alerts", "Message": "confirm",
        "SubscribeURL": "http://127.0.0.1:1/confirm", "Timestamp": "2026-11-23T03:00:00.000Z",
        "SignatureVersion": "2", "Signature": "", "SigningCertURL": cert_url,
    });
    let canonical: String = [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ]
    .iter()
    .map(|f| format!("{f}\n{}\n", confirmation[*f].as_str().unwrap_or_default()))
    .collect();
    let der =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sns/key.pk8.der"))
            .expect("key");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("pkcs8");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        canonical.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    confirmation["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(signature));
    let (status, answer) = h
        .post(
            "/hooks/alert/sns/guardduty",
            "text/plain",
            confirmation.to_string(),
        )
        .await;
    assert_eq!(status, 403, "confirmation is off by default: {answer}");

    h.drained().await;
    assert_eq!(h.events(None).await.len(), 2);
    h.stop().await;
}

async fn openapi_document_covers_every_route(backend: Backend) {
    let h = Harness::start(backend).await;
    let (status, doc) = h.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let expected = [
        ("post", "/hooks/alert/raw/{schema}"),
        ("post", "/hooks/alert/pubsub/{schema}"),
        ("post", "/hooks/alert/sns/{schema}"),
        ("post", "/hooks/slack/event"),
        ("post", "/hooks/slack/interaction"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/events/{id}"),
        ("post", "/api/v1/events/{id}/retry"),
        ("post", "/api/v1/events/retry-failed"),
        ("get", "/api/v1/alerts"),
        ("get", "/api/v1/alerts/{id}"),
        ("get", "/api/v1/tickets"),
        ("get", "/api/v1/tickets/{id}"),
        ("patch", "/api/v1/tickets/{id}"),
        ("get", "/api/v1/tickets/{id}/comments"),
        ("post", "/api/v1/tickets/{id}/comments"),
        ("get", "/api/v1/tickets/{id}/agent-runs"),
        ("post", "/api/v1/tickets/{id}/agent-runs"),
        ("get", "/api/v1/tickets/{id}/similar"),
        ("get", "/api/v1/tickets/{id}/tuning"),
        ("get", "/api/v1/alerts/{id}/similar"),
        ("post", "/api/v1/tickets/{id}/chat"),
        ("get", "/api/v1/tickets/{id}/chat/stream"),
        ("get", "/api/v1/tickets/{id}/slack"),
        ("get", "/api/v1/notices"),
        ("post", "/api/v1/notices/{id}/escalate"),
        ("get", "/api/v1/policies"),
        ("get", "/api/v1/audit"),
        ("post", "/api/v1/policies/reload"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/api/v1/alerts/{id}/bind"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    let documented: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "the document lists a route this test does not know"
    );
    // And every documented route is really served (not 404/405).
    for (method, path) in expected {
        let url = format!(
            "{}{}",
            h.base,
            path.replace("{schema}", "x")
                .replace("{id}", "00000000-0000-7000-8000-000000000000")
        );
        let response = h
            .http
            .request(method.to_uppercase().parse().expect("method"), url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        assert!(
            status != 405
                && !(status == 404
                    && response
                        .text()
                        .await
                        .unwrap_or_default()
                        .contains("no such route")),
            "{method} {path} is not served"
        );
    }
    h.stop().await;
}

async fn health_readiness_and_metrics_report_the_pipeline(backend: Backend) {
    let h = Harness::start(backend).await;
    let (status, _) = h
        .post(
            "/hooks/alert/raw/falco",
            "application/json",
            json!({"rule": "Terminal shell in container", "priority": "Critical", "output": "z"})
                .to_string(),
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let (status, health) = h.get("/healthz").await;
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
    let (status, ready) = h.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["database"]["reachable"], json!(true));
    assert!(ready["policies"]["ingest_schemas"].as_u64().unwrap() >= 8);
    assert_eq!(
        ready["agent"]["enabled"],
        json!(false),
        "no LLM is configured"
    );
    assert!(
        ready.get("error").is_none() && !ready.to_string().contains("rego"),
        "readiness must not reveal policy files or errors: {ready}"
    );
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "heron_triage_queue_depth",
        "heron_events_received_total",
        "heron_events_processed_total",
        "heron_alerts_total",
        "heron_tickets_opened_total",
        "heron_queue_depth",
        "heron_stage_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    h.stop().await;
}

/// A detect fixture holding one JSON object, for each of two different schemas.
/// Two single-alert payloads of different schemas that the example enrich policy leaves alone
/// (medium severity): their only model calls are the triage agent's, so a test can script them
/// in order.
fn two_single_alert_payloads() -> [(String, String); 2] {
    [
        ("okta", "okta/account_locked.json"),
        ("wazuh", "wazuh/sshd_brute_force.json"),
    ]
    .map(|(schema, file)| (schema.to_owned(), detect_fixture(file)))
}

fn detect_fixture(file: &str) -> String {
    std::fs::read_to_string(repo_root().join("policies/testdata/detect").join(file))
        .expect("fixture")
}

/// Polls the ticket's agent runs until its triage job is no longer pending or processing.
async fn triage_settled(h: &Harness, ticket: &heron_core::Ticket) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, runs) = h
            .get(&format!("/api/v1/tickets/{}/agent-runs", ticket.id))
            .await;
        assert_eq!(status, 200, "{runs}");
        let state = runs["triage"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state != "pending" && state != "processing" {
            return runs;
        }
        assert!(Instant::now() < deadline, "triage did not settle: {runs}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn finding_args(evidence: &[&str]) -> String {
    json!({"severity": "medium", "verdict": "benign", "confidence": 0.7,
           "summary": "expected admin activity", "reason": "the alert matches a change window",
           "recommendation": "close as intended", "evidence": evidence})
    .to_string()
}

async fn the_agent_investigates_each_new_ticket_once_and_answers_questions_about_it(
    backend: Backend,
) {
    use heron_llm::testing::{FakeOpenAi, Reply};
    let llm = FakeOpenAi::start().await;
    let h = Harness::start_with(backend, |s| {
        s.llm_base_url = Some(llm.base_url());
        s.llm_model = Some("gpt-test".into());
        s.llm_api_key = Some("sk-test".into());
    })
    .await;
    let [(schema_a, body_a), (schema_b, body_b)] = two_single_alert_payloads();

    // First ticket: the agent reads the alerts, then submits a finding citing them.
    llm.push_chat(Reply::tool_calls(
        &[("c1", "get_alerts", r#"{"limit": 5, "offset": 0}"#)],
        (300, 20),
    ));
    llm.push_chat(Reply::tool_calls(
        &[("c2", "submit_finding", &finding_args(&["step-2"]))],
        (400, 60),
    ));
    for _ in 0..5 {
        let (status, _) = h
            .post(
                &format!("/hooks/alert/raw/{schema_a}"),
                "application/json",
                body_a.clone(),
            )
            .await;
        assert_eq!(status, 202);
    }
    h.drained().await;
    let tickets = h.all_tickets().await;
    assert_eq!(
        tickets.len(),
        1,
        "five deliveries of one alert make one ticket"
    );
    let first = tickets[0].clone();
    let runs = triage_settled(&h, &first).await;
    assert_eq!(runs["agent_enabled"], true);
    assert_eq!(runs["triage"]["state"], "done", "{runs}");
    let run = &runs["runs"][0];
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["steps"][1]["tool"], "get_alerts");
    assert_eq!(run["usage"]["total_tokens"], 780);
    let (_, ticket) = h.get(&format!("/api/v1/tickets/{}", first.id)).await;
    assert_eq!(ticket["finding"]["verdict"], "benign");
    assert_eq!(
        ticket["version"], first.version,
        "the finding leaves the version alone"
    );
    // The run is on record as Heron's own change to the ticket.
    let audited = format!("/api/v1/audit?action=agent.triage&ticket={}", first.id);
    eventually("the triage run is in the audit log", || async {
        let (_, page) = h.get(&audited).await;
        page["items"].as_array().is_some_and(|items| {
            items.len() == 1
                && items[0]["actor"] == "triage agent"
                && items[0]["source"] == "system"
                && items[0]["details"]["verdict"] == "benign"
                && items[0]["details"]["tokens"] == 780
        })
    })
    .await;

    let chats: Vec<_> = llm
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect();
    assert_eq!(chats.len(), 2, "one investigation for the five deliveries");
    let offered: Vec<&str> = chats[0].body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap_or_default())
        .collect();
    for tool in [
        "similar_tickets",
        "get_alerts",
        "get_comments",
        "submit_finding",
    ] {
        assert!(offered.contains(&tool), "{tool} not offered: {offered:?}");
    }
    assert!(
        !offered.iter().any(|t| t.starts_with("otx_")),
        "OTX is not configured"
    );
    assert_eq!(chats[0].headers["authorization"], "Bearer sk-test");

    // A second, different ticket; its run ends on a bad finding then a good one.
    llm.push_chat(Reply::tool_calls(
        &[("c3", "submit_finding", r#"{"verdict": "maybe"}"#)],
        (100, 10),
    ));
    llm.push_chat(Reply::tool_calls(
        &[("c4", "submit_finding", &finding_args(&[]))],
        (100, 10),
    ));
    let (status, _) = h
        .post(
            &format!("/hooks/alert/raw/{schema_b}"),
            "application/json",
            body_b,
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let second = h
        .all_tickets()
        .await
        .into_iter()
        .find(|t| t.id != first.id)
        .expect("second ticket");
    let runs = triage_settled(&h, &second).await;
    assert_eq!(runs["runs"][0]["status"], "completed", "{runs}");
    assert!(
        runs["runs"][0]["steps"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("finding rejected")),
        "{runs}"
    );

    // Similar tickets: the other ticket, with a score; never the ticket itself.
    let (status, similar) = h
        .get(&format!("/api/v1/tickets/{}/similar?limit=5", first.id))
        .await;
    assert_eq!(status, 200, "{similar}");
    let similar = similar.as_array().expect("list");
    assert_eq!(similar.len(), 1);
    assert_eq!(similar[0]["ticket_id"], second.id.to_string());
    assert!(similar[0]["score"].as_f64().is_some());
    let (status, _) = h
        .get(&format!("/api/v1/tickets/{}/similar?limit=500", first.id))
        .await;
    assert_eq!(status, 400);

    // Chat, answered whole.
    llm.push_chat(Reply::text(
        "It is the admin's scheduled change (step-2 of the triage).",
        (50, 15),
    ));
    let (status, answer) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tickets/{}/chat", first.id),
            Some(json!({"question": "Why benign?"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["run"]["purpose"], "chat");
    assert_eq!(answer["question"]["author"], "alice");
    assert_eq!(answer["answer"]["author"], "heron");
    assert!(
        answer["answer"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("scheduled change")
    );

    // Chat, streamed: step events as it works, then the answer, then done.
    llm.push_chat(Reply::tool_calls(&[("c5", "get_comments", "{}")], (50, 5)));
    llm.push_chat(Reply::text("Alice asked why it is benign.", (60, 8)));
    let response = h
        .http
        .get(format!(
            "{}/api/v1/tickets/{}/chat/stream?question=What%20was%20asked%3F",
            h.base, first.id
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let stream = response.text().await.expect("events");
    let names: Vec<&str> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        vec!["step", "step", "step", "answer", "done"],
        "{stream}"
    );
    assert!(stream.contains("Alice asked why it is benign."));
    let (_, comments) = h
        .get(&format!("/api/v1/tickets/{}/comments", first.id))
        .await;
    let authors: Vec<&str> = comments
        .as_array()
        .expect("comments")
        .iter()
        .map(|c| c["author"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(authors, vec!["alice", "heron", "api", "heron"]);

    // Asking for a new investigation queues the triage again.
    let (status, job) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tickets/{}/agent-runs", first.id),
            None,
        )
        .await;
    assert_eq!(status, 202, "{job}");
    llm.push_chat(Reply::tool_calls(
        &[("c6", "submit_finding", &finding_args(&[]))],
        (10, 1),
    ));
    let runs = triage_settled(&h, &first).await;
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(4),
        "triage, 2 chats, re-run"
    );
    h.stop().await;
}

async fn without_a_model_tickets_are_still_searchable_and_chat_says_the_agent_is_disabled(
    backend: Backend,
) {
    let h = Harness::start(backend).await;
    let [(schema, body), (other_schema, other_body)] = two_single_alert_payloads();
    let (status, _) = h
        .post(
            &format!("/hooks/alert/raw/{schema}"),
            "application/json",
            body,
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let ticket = h.all_tickets().await.remove(0);
    let runs = triage_settled(&h, &ticket).await;
    assert_eq!(runs["agent_enabled"], false);
    assert_eq!(runs["triage"]["state"], "skipped");
    assert!(runs["runs"].as_array().is_some_and(Vec::is_empty));
    let (status, similar) = h
        .get(&format!("/api/v1/tickets/{}/similar", ticket.id))
        .await;
    assert_eq!(status, 200, "{similar}");
    let (status, error) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tickets/{}/chat", ticket.id),
            Some(json!({"question": "hello?"})),
        )
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled")
    );

    // Alerts are embedded in the background by the local hashing embedder, and an alert
    // finds the tickets it resembles other than its own.
    let (status, _) = h
        .post(
            &format!("/hooks/alert/raw/{other_schema}"),
            "application/json",
            other_body,
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let store = h.store();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .alerts_to_embed(10)
        .await
        .expect("waiting alerts")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "alerts were not embedded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alert = store
        .list_alerts(&heron_core::ports::AlertQuery {
            ticket: Some(ticket.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("alerts")
        .items
        .remove(0);
    let other = h
        .all_tickets()
        .await
        .into_iter()
        .find(|t| t.id != ticket.id)
        .expect("second ticket");
    // The other ticket's own embedding is written by the triage worker, beside the alerts'.
    let found = loop {
        let (status, similar) = h.get(&format!("/api/v1/alerts/{}/similar", alert.id)).await;
        assert_eq!(status, 200, "{similar}");
        let found: Vec<String> = similar
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s["ticket_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "no similar ticket was found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        found,
        vec![other.id.to_string()],
        "its own ticket is left out"
    );
    let (status, _) = h
        .get(&format!(
            "/api/v1/alerts/{}/similar",
            heron_core::AlertId::new()
        ))
        .await;
    assert_eq!(status, 404);
    let (status, _) = h.get("/api/v1/alerts/not-an-id/similar").await;
    assert_eq!(status, 400);
    h.stop().await;
}

/// The example enrich policy asks for an indicator verdict on a high-severity GuardDuty
/// finding; the task runs through the real client, its verdict
/// reaches the triage policy (which raises the ticket to critical) and the run is on the ticket.
async fn enrich_tasks_run_before_triage_and_their_answers_reach_the_triage_policy(
    backend: Backend,
) {
    use heron_llm::testing::{FakeOpenAi, Reply};
    let llm = FakeOpenAi::start().await;
    let h = Harness::start_with(backend, |s| {
        s.llm_base_url = Some(llm.base_url());
        s.llm_model = Some("gpt-test".into());
        s.llm_api_key = Some("sk-test".into());
    })
    .await;
    // Each reply goes to the call it is written for: the enrich task (its prompt comes from
    // policies/prompts/ioc_verdict.md) and the triage agent run after it.
    llm.push_chat_for(
        "Look each indicator up",
        Reply::text(
            r#"{"verdict": "malicious", "indicators": [], "reason": "known C2"}"#,
            (200, 30),
        ),
    );
    llm.push_chat_for(
        "submit_finding",
        Reply::tool_calls(&[("t1", "submit_finding", &finding_args(&[]))], (300, 40)),
    );
    let (status, _) = h
        .post(
            "/hooks/alert/raw/guardduty",
            "application/json",
            detect_fixture("guardduty/ec2_c2_dns.json"),
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let tickets = h.all_tickets().await;
    assert_eq!(tickets.len(), 1);
    let ticket = &tickets[0];
    assert_eq!(
        ticket.severity.to_string(),
        "critical",
        "the triage policy raised the high finding on the enrich verdict"
    );
    let runs = triage_settled(&h, ticket).await;
    let purposes: Vec<&str> = runs["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["purpose"].as_str().unwrap_or_default())
        .collect();
    assert!(purposes.contains(&"enrich"), "{runs}");
    assert!(purposes.contains(&"triage"), "{runs}");
    let enrich = runs["runs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["purpose"] == "enrich"))
        .expect("enrich run");
    assert_eq!(enrich["status"], "completed", "{enrich}");
    let chats: Vec<_> = llm
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect();
    assert_eq!(chats.len(), 2, "one enrich task, one triage run");
    assert!(
        chats[0].body.to_string().contains("Look each indicator up"),
        "enrichment runs before triage"
    );
    h.stop().await;
}

async fn a_token_over_its_rate_limit_gets_429_with_retry_after_and_stores_nothing(
    backend: Backend,
) {
    let h = Harness::start_with(backend, |s| {
        s.auth.tokens.push("second-token".into());
        s.rate_limit.per_token_per_second = 1;
        s.rate_limit.per_token_burst = 2;
    })
    .await;
    let body = |n: u32| json!({"detail": {"type": "Recon:EC2/PortProbe"}, "n": n}).to_string();
    let mut statuses = Vec::new();
    let mut refused = None;
    for n in 0..3 {
        let response = h
            .http
            .post(format!("{}/hooks/alert/raw/guardduty", h.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body(n))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
        if response.status().as_u16() == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=2).contains(&retry_after), "{retry_after}");
            let error: Value = response.json().await.expect("json");
            refused = Some(error);
        }
    }
    assert_eq!(
        statuses,
        vec![202, 202, 429],
        "a burst of two, then refused"
    );
    assert_eq!(refused.expect("a refusal")["error"]["code"], "rate_limited");

    // Another token has its own allowance, and probes are never limited.
    let other = h
        .http
        .post(format!("{}/hooks/alert/raw/guardduty", h.base))
        .bearer_auth("second-token")
        .header("content-type", "application/json")
        .body(body(10))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status().as_u16(), 202);
    for _ in 0..5 {
        let health = h
            .http
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status().as_u16(), 200);
    }
    h.drained().await;
    let events = h
        .store()
        .list_events(&heron_core::ports::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events")
        .items;
    assert_eq!(events.len(), 3, "the refused delivery was not stored");

    // After the wait, the first token is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = h
        .post("/hooks/alert/raw/guardduty", "application/json", body(3))
        .await;
    assert_eq!(status, 202);
    h.stop().await;
}

async fn nesting_past_the_json_depth_limit_and_oversized_headers_are_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    // 200 nested arrays: past the parser's depth limit (128), refused at intake.
    let deep = format!("{{\"a\": {}1{}}}", "[".repeat(200), "]".repeat(200));
    let (status, error) = h
        .post("/hooks/alert/raw/guardduty", "application/json", deep)
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "invalid_json");
    // 100 levels are fine.
    let ok = format!("{{\"a\": {}1{}}}", "[".repeat(100), "]".repeat(100));
    let (status, _) = h
        .post("/hooks/alert/raw/guardduty", "application/json", ok)
        .await;
    assert_eq!(status, 202);
    // A request with a huge header block is refused by the HTTP layer.
    let big = "x".repeat(512 * 1024);
    let response = h
        .http
        .post(format!("{}/hooks/alert/raw/guardduty", h.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("x-padding", big)
        .body("{}")
        .send()
        .await;
    // Either the HTTP layer answers 431 (or 400), or it closes the connection on it.
    if let Ok(r) = response {
        assert!(
            r.status().as_u16() == 431 || r.status().as_u16() == 400,
            "{}",
            r.status()
        );
    }
    h.drained().await;
    let events = h
        .store()
        .list_events(&heron_core::ports::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events")
        .items;
    assert_eq!(events.len(), 1, "only the acceptable body was stored");
    h.stop().await;
}

// --- Slack ---------------------------------------------------------------------------------

const SLACK_TOKEN: &str = "xoxb-e2e";
const SLACK_SECRET: &str = "e2e-signing-secret";
const SLACK_CHANNEL: &str = "C0TRIAGE";

/// Sends `body` to a Slack endpoint signed as Slack signs it (or as told).
async fn slack_send(
    h: &Harness,
    path: &str,
    content_type: &str,
    body: &str,
    timestamp: i64,
    secret: &str,
    retry: Option<&str>,
) -> (u16, Value) {
    let ts = timestamp.to_string();
    let signature = heron_slack::SigningSecret::new(secret).sign(&ts, body.as_bytes());
    let mut request = h
        .http
        .post(format!("{}{path}", h.base))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", signature)
        .body(body.to_owned());
    if let Some(n) = retry {
        request = request
            .header("x-slack-retry-num", n)
            .header("x-slack-retry-reason", "http_timeout");
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn slack_event(h: &Harness, event_id: &str, event: Value, retry: Option<&str>) -> u16 {
    let body = json!({
        "token": "unused", "team_id": heron_slack::testing::TEAM_ID, "api_app_id": "A0HERON",
        "type": "event_callback", "event_id": event_id, "event_time": 1_700_000_000,
        "event": event,
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    slack_send(
        h,
        "/hooks/slack/event",
        "application/json",
        &body,
        now,
        SLACK_SECRET,
        retry,
    )
    .await
    .0
}

async fn slack_click(h: &Harness, user: &str, action: &str, value: &str, message_ts: &str) -> u16 {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": heron_slack::testing::TEAM_ID},
        "api_app_id": "A0HERON", "token": "unused", "trigger_id": "1234.5678.abcdef",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": SLACK_CHANNEL, "is_ephemeral": false},
        "channel": {"id": SLACK_CHANNEL, "name": "triage"},
        "message": {"type": "message", "ts": message_ts, "bot_id": heron_slack::testing::BOT_ID, "text": "card"},
        "actions": [{"action_id": action, "block_id": "heron_ticket", "type": "button",
                     "value": value, "action_ts": format!("1700000{}.0001", message_ts.len())}],
    });
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let now = chrono::Utc::now().timestamp();
    slack_send(
        h,
        "/hooks/slack/interaction",
        "application/x-www-form-urlencoded",
        &body,
        now,
        SLACK_SECRET,
        None,
    )
    .await
    .0
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn comments(h: &Harness, ticket: heron_core::TicketId) -> Vec<heron_core::Comment> {
    h.store().list_comments(ticket).await.expect("comments")
}

fn bot_texts(fake: &heron_slack::testing::FakeSlack, ts: &str) -> Vec<String> {
    fake.thread(SLACK_CHANNEL, ts)
        .into_iter()
        .filter(|m| m.bot)
        .map(|m| m.text)
        .collect()
}

async fn a_ticket_lives_in_its_slack_thread_and_the_agent_answers_there_for_allowed_users_only(
    backend: Backend,
) {
    use heron_llm::testing::{FakeOpenAi, Reply};
    use heron_slack::testing::{BOT_USER_ID, FakeSlack};
    let slack = FakeSlack::start(SLACK_TOKEN, &[SLACK_CHANNEL])
        .await
        .expect("fake slack");
    slack.add_user("U0ALICE", "Alice", Some("alice@example.com"));
    slack.add_user("U0BOB", "Bob", Some("bob@example.com"));
    slack.add_user("U0MALLORY", "Mallory", Some("mallory@example.com"));
    let llm = FakeOpenAi::start().await;
    let h = Harness::start_with(backend, |s| {
        s.no_auth = true;
        s.llm_base_url = Some(llm.base_url());
        s.llm_model = Some("gpt-test".into());
        s.llm_api_key = Some("sk-test".into());
        s.slack_bot_token = Some(SLACK_TOKEN.into());
        s.slack_signing_secret = Some(SLACK_SECRET.into());
        s.slack_channel = Some(SLACK_CHANNEL.into());
        s.slack_base_url = Some(slack.url.clone());
        s.slack_allowed_users = vec!["U0ALICE".into(), "bob@example.com".into()];
        s.public_url = Some("https://heron.example".into());
    })
    .await;
    assert_eq!(
        slack.calls_of("auth.test").len(),
        1,
        "the token is checked at start"
    );

    // Bad signatures and old timestamps are refused; url_verification is answered.
    let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let now = chrono::Utc::now().timestamp();
    let (status, body) = slack_send(
        &h,
        "/hooks/slack/event",
        "application/json",
        &challenge,
        now,
        SLACK_SECRET,
        None,
    )
    .await;
    assert_eq!(
        (status, &body["challenge"]),
        (
            200,
            &json!("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
        )
    );
    let (status, _) = slack_send(
        &h,
        "/hooks/slack/event",
        "application/json",
        &challenge,
        now,
        "not-the-secret",
        None,
    )
    .await;
    assert_eq!(status, 401, "a bad signature is refused");
    let (status, _) = slack_send(
        &h,
        "/hooks/slack/event",
        "application/json",
        &challenge,
        now - 301,
        SLACK_SECRET,
        None,
    )
    .await;
    assert_eq!(status, 401, "a timestamp older than 5 minutes is refused");
    let (status, _) = slack_send(
        &h,
        "/hooks/slack/interaction",
        "application/x-www-form-urlencoded",
        "payload=%7B%7D",
        now - 600,
        SLACK_SECRET,
        None,
    )
    .await;
    assert_eq!(status, 401);

    // An alert becomes a ticket, posted to the channel with its buttons; triage's finding
    // updates the message in place. The agent reads the alerts, and its finding is held back
    // until its progress has been seen in the thread.
    llm.push_chat(Reply::tool_calls(
        &[("c1", "get_alerts", r#"{"limit": 5, "offset": 0}"#)],
        (100, 10),
    ));
    let finding_held = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.push_chat(
        Reply::tool_calls(
            &[("c2", "submit_finding", &finding_args(&["step-2"]))],
            (100, 10),
        )
        .held_until(finding_held.clone()),
    );
    let [(schema, payload), _] = two_single_alert_payloads();
    let (status, _) = h
        .post(
            &format!("/hooks/alert/raw/{schema}"),
            "application/json",
            payload,
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let ticket = h.all_tickets().await.remove(0);
    eventually(
        "the triage run's progress is in the thread while it works",
        || async {
            slack.messages().iter().any(|m| {
                m.bot
                    && m.thread_ts.is_some()
                    && m.text.contains("Triage agent* is investigating")
                    && m.text.contains("🔧 `get_alerts`")
            })
        },
    )
    .await;
    finding_held.notify_one();
    triage_settled(&h, &ticket).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let card_ts = loop {
        let (status, state) = h.get(&format!("/api/v1/tickets/{}/slack", ticket.id)).await;
        let ts = state["ts"].as_str().unwrap_or_default().to_owned();
        if status == 200
            && state["state"] == "synced"
            && slack
                .messages()
                .iter()
                .any(|m| m.ts == ts && m.blocks.to_string().contains("expected admin activity"))
        {
            break ts;
        }
        assert!(
            Instant::now() < deadline,
            "the ticket was not posted with its finding: {state}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    eventually("the triage agent's finding is in the thread", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.contains("🔧 `submit_finding`") && t.contains("expected admin activity"))
    })
    .await;
    // One message for the run: posted while it worked (its tool call, no finding yet), then
    // updated in place with the finding.
    let triage_messages: Vec<_> = slack
        .thread(SLACK_CHANNEL, &card_ts)
        .into_iter()
        .filter(|m| m.bot && m.text.contains("Triage agent"))
        .collect();
    assert_eq!(triage_messages.len(), 1, "{triage_messages:?}");
    let progress = slack
        .calls_of("chat.postMessage")
        .into_iter()
        .find(|c| {
            c.params["text"]
                .as_str()
                .is_some_and(|t| t.contains("Triage agent"))
        })
        .expect("the progress message");
    let first = progress.params["text"].as_str().unwrap_or_default();
    assert!(
        first.contains("is investigating") && first.contains("🔧 `get_alerts`"),
        "progress is shown while the run works: {first}"
    );
    assert!(!first.contains("Finding"), "{first}");
    assert!(
        triage_messages[0]
            .text
            .contains("🔧 `get_alerts`\n🔧 `submit_finding`"),
        "{triage_messages:?}"
    );
    let (_, state) = h.get(&format!("/api/v1/tickets/{}/slack", ticket.id)).await;
    assert_eq!(state["channel"], SLACK_CHANNEL);
    assert_eq!(state["last_error"], Value::Null);
    let posts = slack.calls_of("chat.postMessage");
    let card = posts
        .iter()
        .find(|c| c.params["thread_ts"].is_null())
        .expect("the card");
    let blocks = card.params["blocks"].to_string();
    for action in ["heron_ack", "heron_assign_me", "heron_resolve"] {
        assert!(blocks.contains(action), "{action} missing: {blocks}");
    }
    assert!(blocks.contains(&format!("https://heron.example/tickets/{}", ticket.id)));
    assert_eq!(
        posts
            .iter()
            .filter(|c| c.params["thread_ts"].is_null())
            .count(),
        1,
        "one message per ticket"
    );

    // The same alert again attaches: the message's alert count is updated in place, and
    // no message is posted for the alert.
    let [(schema, payload), _] = two_single_alert_payloads();
    let (status, _) = h
        .post(
            &format!("/hooks/alert/raw/{schema}"),
            "application/json",
            payload,
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    eventually("the alert count is updated in place", || async {
        slack
            .messages()
            .iter()
            .any(|m| m.ts == card_ts && m.blocks.to_string().contains("*Alerts*\\n2"))
    })
    .await;
    assert_eq!(
        slack
            .calls_of("chat.postMessage")
            .iter()
            .filter(|c| c.params["thread_ts"].is_null())
            .count(),
        1,
        "no message per alert"
    );

    // A thread reply becomes a comment under the author's Slack name, once even when
    // Slack delivers it again.
    let alice_ts = slack.say(
        SLACK_CHANNEL,
        Some(&card_ts),
        "U0ALICE",
        "looks like our scanner",
    );
    let reply = json!({"type": "message", "channel": SLACK_CHANNEL, "user": "U0ALICE",
        "text": "looks like our scanner", "ts": alice_ts, "thread_ts": card_ts, "channel_type": "channel"});
    assert_eq!(slack_event(&h, "Ev0ALICE1", reply.clone(), None).await, 200);
    assert_eq!(slack_event(&h, "Ev0ALICE1", reply, Some("1")).await, 200);
    eventually("the reply is a comment", || async {
        comments(&h, ticket.id)
            .await
            .iter()
            .any(|c| c.text == "looks like our scanner")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from_slack: Vec<_> = comments(&h, ticket.id)
        .await
        .into_iter()
        .filter(|c| c.source == heron_core::CommentSource::Slack)
        .collect();
    assert_eq!(
        from_slack.len(),
        1,
        "a retried event acts once: {from_slack:?}"
    );
    assert_eq!(from_slack[0].author, "Alice");

    // A comment through the API and one through the web page go to the thread with their
    // authors' names.
    let (status, _) = h
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/tickets/{}/comments", ticket.id),
            Some(json!({"text": "api says the scan was scheduled"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, page) = h.get(&format!("/tickets/{}", ticket.id)).await;
    let page = page.as_str().unwrap_or_default().to_owned();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("csrf in the page")
        .to_owned();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &csrf)
        .append_pair("action", "comment")
        .append_pair("text", "web says ticket CHG-42 covers it")
        .finish();
    let response = h
        .http
        .post(format!("{}/tickets/{}/actions", h.base, ticket.id))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("web comment");
    assert!(
        response.status().is_redirection() || response.status().is_success(),
        "{}",
        response.status()
    );
    eventually("the API and web comments are in the thread", || async {
        let texts = bot_texts(&slack, &card_ts);
        texts
            .iter()
            .any(|t| t.contains("api says the scan was scheduled") && t.contains("alice"))
            && texts
                .iter()
                .any(|t| t.contains("web says ticket CHG-42 covers it"))
    })
    .await;

    // Another thread reply; then Alice edits hers and Bob deletes his.
    let bob_ts = slack.say(
        SLACK_CHANNEL,
        Some(&card_ts),
        "U0BOB",
        "agreed, closing soon",
    );
    let reply = json!({"type": "message", "channel": SLACK_CHANNEL, "user": "U0BOB",
        "text": "agreed, closing soon", "ts": bob_ts, "thread_ts": card_ts});
    assert_eq!(slack_event(&h, "Ev0BOB1", reply, None).await, 200);
    eventually("Bob's reply is a comment", || async {
        comments(&h, ticket.id)
            .await
            .iter()
            .any(|c| c.text == "agreed, closing soon" && c.author == "Bob")
    })
    .await;
    let texts = bot_texts(&slack, &card_ts);
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("looks like our scanner") || t.contains("agreed, closing")),
        "what was said in Slack is not posted back: {texts:?}"
    );
    let edited = json!({"type": "message", "subtype": "message_changed", "channel": SLACK_CHANNEL, "hidden": true,
        "message": {"type": "message", "user": "U0ALICE", "text": "looks like our scanner (confirmed)", "ts": alice_ts, "thread_ts": card_ts,
            "edited": {"user": "U0ALICE", "ts": "1700009999.000001"}},
        "previous_message": {"type": "message", "user": "U0ALICE", "text": "looks like our scanner", "ts": alice_ts},
        "ts": "1700009999.000002", "event_ts": "1700009999.000002"});
    assert_eq!(slack_event(&h, "Ev0EDIT1", edited, None).await, 200);
    let deleted = json!({"type": "message", "subtype": "message_deleted", "channel": SLACK_CHANNEL, "hidden": true,
        "deleted_ts": bob_ts, "previous_message": {"type": "message", "user": "U0BOB", "text": "agreed, closing soon", "ts": bob_ts},
        "ts": "1700009999.000003", "event_ts": "1700009999.000003"});
    assert_eq!(slack_event(&h, "Ev0DEL1", deleted, None).await, 200);
    eventually("the edit and the deletion follow", || async {
        let all = comments(&h, ticket.id).await;
        all.iter()
            .any(|c| c.text == "looks like our scanner (confirmed)")
            && !all.iter().any(|c| c.text.contains("closing soon"))
    })
    .await;

    // @heron in the ticket's thread: the agent answers there, with progress.
    llm.push_chat(Reply::text(
        "It is the weekly authorised scan from 10.0.0.5.",
        (200, 20),
    ));
    let model_calls = || {
        llm.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .count()
    };
    let before = model_calls();
    let question = format!("<@{BOT_USER_ID}> is this the weekly scan?");
    let mention_ts = slack.say(SLACK_CHANNEL, Some(&card_ts), "U0ALICE", &question);
    let mention = json!({"type": "app_mention", "channel": SLACK_CHANNEL, "user": "U0ALICE", "text": question,
        "ts": mention_ts, "thread_ts": card_ts, "event_ts": mention_ts});
    // Slack sends the same message as a `message` event too: it is not a comment twice.
    let as_message = json!({"type": "message", "channel": SLACK_CHANNEL, "user": "U0ALICE", "text": question,
        "ts": mention_ts, "thread_ts": card_ts});
    assert_eq!(slack_event(&h, "Ev0ASK1", mention, None).await, 200);
    assert_eq!(slack_event(&h, "Ev0ASK2", as_message, None).await, 200);
    eventually("the agent's answer is in the thread", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.contains("It is the weekly authorised scan"))
    })
    .await;
    // The answer is a comment, posted by the thread's sync, which may come before the
    // progress message's last update.
    eventually("the progress message ends answered", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.starts_with("✅ Answered"))
    })
    .await;
    assert_eq!(model_calls(), before + 1);
    let answers: Vec<_> = slack
        .messages()
        .into_iter()
        .filter(|m| m.text.contains("weekly authorised scan"))
        .collect();
    assert_eq!(answers.len(), 1, "answered once");
    assert_eq!(
        answers[0].thread_ts.as_deref(),
        Some(card_ts.as_str()),
        "only in the thread it was asked in"
    );
    let all = comments(&h, ticket.id).await;
    assert_eq!(
        all.iter()
            .filter(|c| c.text.contains("is this the weekly scan?"))
            .count(),
        1,
        "the question is one comment"
    );

    // One chat per thread: a second question waits; `@heron abort` stops the first.
    llm.push_chat(
        Reply::text("a slow answer nobody will read", (10, 10)).with_delay(Duration::from_secs(20)),
    );
    let ask = |id: &str, text: &str| {
        let text = format!("<@{BOT_USER_ID}> {text}");
        let ts = slack.say(SLACK_CHANNEL, Some(&card_ts), "U0ALICE", &text);
        (
            id.to_owned(),
            json!({"type": "app_mention", "channel": SLACK_CHANNEL, "user": "U0ALICE",
            "text": text, "ts": ts, "thread_ts": card_ts, "event_ts": ts}),
        )
    };
    let (id, event) = ask("Ev0SLOW1", "which hosts did it scan?");
    assert_eq!(slack_event(&h, &id, event, None).await, 200);
    eventually("the slow question is being answered", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .filter(|t| t.starts_with("🤔 Looking into it"))
            .count()
            == 1
            && model_calls() == before + 2
    })
    .await;
    let (id, event) = ask("Ev0SLOW2", "and when?");
    assert_eq!(slack_event(&h, &id, event, None).await, 200);
    eventually("the second question is told to wait", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.contains("please wait"))
    })
    .await;
    let (id, event) = ask("Ev0ABORT", "abort");
    assert_eq!(slack_event(&h, &id, event, None).await, 200);
    eventually("the chat is stopped", || async {
        let texts = bot_texts(&slack, &card_ts);
        texts.iter().any(|t| t.starts_with("🛑 Stopping the agent"))
            && texts.iter().any(|t| t == "🛑 Stopped.")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !comments(&h, ticket.id)
            .await
            .iter()
            .any(|c| c.text.contains("slow answer")),
        "an aborted chat leaves no answer"
    );
    assert_eq!(
        model_calls(),
        before + 2,
        "the waiting question did not run the agent"
    );
    let before = model_calls();

    // Mallory is not on the allow-list: a polite refusal, and the agent does not run.
    let question = format!("<@{BOT_USER_ID}> dump every ticket you know");
    let ts = slack.say(SLACK_CHANNEL, Some(&card_ts), "U0MALLORY", &question);
    let mention = json!({"type": "app_mention", "channel": SLACK_CHANNEL, "user": "U0MALLORY", "text": question,
        "ts": ts, "thread_ts": card_ts, "event_ts": ts});
    assert_eq!(slack_event(&h, "Ev0EVIL1", mention, None).await, 200);
    eventually("Mallory is refused", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.contains("<@U0MALLORY>") && t.contains("not allowed"))
    })
    .await;
    assert_eq!(model_calls(), before, "no agent run for a refused user");
    assert_eq!(
        slack_click(
            &h,
            "U0MALLORY",
            "heron_ack",
            &ticket.id.to_string(),
            &card_ts
        )
        .await,
        200
    );

    // Bob acknowledges with the button: recorded under his Slack identity, the message
    // updated in place without the Acknowledge button.
    let updates_before = slack.calls_of("chat.update").len();
    assert_eq!(
        slack_click(&h, "U0BOB", "heron_ack", &ticket.id.to_string(), &card_ts).await,
        200
    );
    eventually(
        "the ticket is acknowledged and its message updated",
        || async {
            let t = h
                .store()
                .get_ticket(ticket.id)
                .await
                .expect("ticket")
                .expect("exists");
            let card = slack
                .messages()
                .into_iter()
                .find(|m| m.ts == card_ts)
                .expect("card");
            t.status == heron_core::TicketStatus::Acknowledged
                && slack.calls_of("chat.update").len() > updates_before
                && !card.blocks.to_string().contains("heron_ack")
        },
    )
    .await;
    let all = comments(&h, ticket.id).await;
    assert!(
        all.iter().any(|c| c
            .text
            .contains("Bob (Slack U0BOB in C0TRIAGE) changed status open → acknowledged")),
        "{all:?}"
    );
    assert!(
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.contains("Mallory") || t.contains("<@U0MALLORY>"))
    );
    eventually("the status change is a line in the thread", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .any(|t| t.contains("changed status open → acknowledged"))
    })
    .await;
    // Resolve opens the modal.
    assert_eq!(
        slack_click(
            &h,
            "U0ALICE",
            "heron_resolve",
            &ticket.id.to_string(),
            &card_ts
        )
        .await,
        200
    );
    eventually("the resolve modal is opened", || async {
        !slack.calls_of("views.open").is_empty()
    })
    .await;
    let modal = slack.calls_of("views.open").remove(0);
    assert_eq!(modal.params["trigger_id"], "1234.5678.abcdef");
    assert_eq!(
        modal.params["view"]["private_metadata"],
        ticket.id.to_string()
    );

    // Alice assigns it to herself, then resolves it through the modal: both recorded under
    // her Slack identity, each a line in the thread, the card updated.
    assert_eq!(
        slack_click(
            &h,
            "U0ALICE",
            "heron_assign_me",
            &ticket.id.to_string(),
            &card_ts
        )
        .await,
        200
    );
    eventually("the ticket is Alice's", || async {
        h.store()
            .get_ticket(ticket.id)
            .await
            .expect("ticket")
            .is_some_and(|t| t.assignee.as_deref() == Some("Alice"))
    })
    .await;
    let resolved =
        slack_submit_resolve(&h, "U0ALICE", ticket.id, "false_positive", "our scanner").await;
    assert_eq!(resolved, 200);
    eventually("the ticket is resolved from the modal", || async {
        h.store()
            .get_ticket(ticket.id)
            .await
            .expect("ticket")
            .is_some_and(|t| {
                t.status == heron_core::TicketStatus::Resolved
                    && t.conclusion == Some(heron_core::Conclusion::FalsePositive)
                    && t.reason.as_deref() == Some("our scanner")
            })
    })
    .await;
    // Each change's history comment is written right after the change commits.
    for change in ["assign", "resolved"] {
        eventually(
            &format!("a comment says Alice {change} it from Slack"),
            || async {
                comments(&h, ticket.id).await.iter().any(|c| {
                    c.text.contains("Alice (Slack U0ALICE in C0TRIAGE)") && c.text.contains(change)
                })
            },
        )
        .await;
    }
    eventually(
        "the card shows it resolved, without buttons to act",
        || async {
            slack
                .messages()
                .into_iter()
                .find(|m| m.ts == card_ts)
                .is_some_and(|m| {
                    let blocks = m.blocks.to_string();
                    blocks.to_lowercase().contains("resolved")
                        && !blocks.contains("heron_resolve\"")
                        && !blocks.contains("heron_assign_me")
                })
        },
    )
    .await;
    // Mallory's modal submission (had she got one) changes nothing.
    assert_eq!(
        slack_submit_resolve(&h, "U0MALLORY", ticket.id, "true_positive", "mine now").await,
        200
    );
    eventually("Mallory's submission is refused", || async {
        bot_texts(&slack, &card_ts)
            .iter()
            .filter(|t| t.contains("<@U0MALLORY>") && t.contains("not allowed"))
            .count()
            >= 3
    })
    .await;
    let t = h
        .store()
        .get_ticket(ticket.id)
        .await
        .expect("ticket")
        .expect("exists");
    assert_eq!(t.conclusion, Some(heron_core::Conclusion::FalsePositive));
    h.stop().await;
}

/// Submits the Resolve modal as Slack sends a `view_submission`.
async fn slack_submit_resolve(
    h: &Harness,
    user: &str,
    ticket: heron_core::TicketId,
    conclusion: &str,
    reason: &str,
) -> u16 {
    let payload = json!({
        "type": "view_submission",
        "team": {"id": heron_slack::testing::TEAM_ID, "domain": "example"},
        "user": {"id": user, "username": user.to_lowercase(), "team_id": heron_slack::testing::TEAM_ID},
        "api_app_id": "A0HERON", "token": "unused", "trigger_id": "4321.8765.fedcba",
        "view": {
            "id": format!("V0{user}"), "type": "modal", "callback_id": "heron_resolve_submit",
            "private_metadata": ticket.to_string(), "hash": format!("1700000000.{user}"),
            "state": {"values": {
                "conclusion": {"value": {"type": "static_select",
                    "selected_option": {"text": {"type": "plain_text", "text": conclusion}, "value": conclusion}}},
                "reason": {"value": {"type": "plain_text_input", "value": reason}},
            }},
        },
    });
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let now = chrono::Utc::now().timestamp();
    slack_send(
        h,
        "/hooks/slack/interaction",
        "application/x-www-form-urlencoded",
        &body,
        now,
        SLACK_SECRET,
        None,
    )
    .await
    .0
}

/// A request with `token` (and nothing else): its status and body.
async fn call_as(
    h: &Harness,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = h
        .http
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn stored_tokens_open_only_their_scopes_until_revoked_or_expired(backend: Backend) {
    use reqwest::Method;
    let h = Harness::start(backend).await;
    let store = h.store();
    let create = |name: &'static str, scopes: &'static str, expires: Option<&'static str>| {
        let store = store.clone();
        async move {
            heron_cli::tokens::create(store.as_ref(), name, scopes, expires)
                .await
                .expect("token created")
                .0
        }
    };
    let ingester = create("siem", "ingest", Some("30d")).await;
    let reader = create("dashboard-bot", "read", None).await;
    let writer = create("soar", "read,write", None).await;
    let brief = create("brief", "ingest,read,write", Some("1s")).await;
    let alert =
        json!({"rule": "Terminal shell in container", "priority": "Warning", "output": "x"});

    let (status, body) = call_as(
        &h,
        &ingester,
        Method::POST,
        "/hooks/alert/raw/custom",
        Some(alert.clone()),
    )
    .await;
    assert_eq!(status, 202, "an ingest token posts alerts: {body}");
    let (status, body) = call_as(&h, &ingester, Method::GET, "/api/v1/tickets", None).await;
    assert_eq!(status, 403, "an ingest token cannot read: {body}");
    assert_eq!(body["error"]["code"], "forbidden");
    h.drained().await;
    let ticket = h.all_tickets().await.pop().expect("a ticket");
    let ticket_path = format!("/api/v1/tickets/{}", ticket.id);

    let (status, body) = call_as(&h, &reader, Method::GET, &ticket_path, None).await;
    assert_eq!(status, 200, "a read token reads: {body}");
    let (status, _) = call_as(&h, &reader, Method::GET, "/api/v1/events", None).await;
    assert_eq!(status, 200);
    let (status, _) = call_as(
        &h,
        &reader,
        Method::POST,
        "/hooks/alert/raw/custom",
        Some(alert.clone()),
    )
    .await;
    assert_eq!(status, 403, "a read token cannot ingest");
    let (status, _) = call_as(
        &h,
        &reader,
        Method::PATCH,
        &ticket_path,
        Some(json!({"status": "acknowledged"})),
    )
    .await;
    assert_eq!(status, 403, "a read token cannot change tickets");
    let (status, _) = call_as(
        &h,
        &reader,
        Method::POST,
        "/api/v1/events/retry-failed",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call_as(
        &h,
        &reader,
        Method::GET,
        &format!("{ticket_path}/chat/stream?question=hi"),
        None,
    )
    .await;
    assert_eq!(
        status, 403,
        "the chat stream changes things: it needs write"
    );

    let (status, body) = call_as(
        &h,
        &writer,
        Method::PATCH,
        &ticket_path,
        Some(json!({"status": "acknowledged"})),
    )
    .await;
    assert_eq!(status, 200, "a write token changes tickets: {body}");
    let (status, comment) = call_as(
        &h,
        &writer,
        Method::POST,
        &format!("{ticket_path}/comments"),
        Some(json!({"text": "looking"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        comment["author"], "soar",
        "a stored token acts under its own name"
    );

    let (status, body) = call_as(
        &h,
        "heron_not-a-token",
        Method::GET,
        "/api/v1/tickets",
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");

    heron_cli::tokens::revoke(store.as_ref(), "siem")
        .await
        .expect("revoked");
    let (status, body) = call_as(
        &h,
        &ingester,
        Method::POST,
        "/hooks/alert/raw/custom",
        Some(alert.clone()),
    )
    .await;
    assert_eq!(status, 401, "a revoked token: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{body}"
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = call_as(&h, &brief, Method::GET, "/api/v1/tickets", None).await;
    assert_eq!(status, 401, "an expired token: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{body}"
    );

    // The configured token still opens everything.
    let (status, _) = h.get("/api/v1/tickets").await;
    assert_eq!(status, 200);

    // Uses are recorded (the first use of each token is written at once, in the background).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tokens = store.list_api_tokens().await.expect("tokens");
        let used: Vec<&str> = tokens
            .iter()
            .filter(|t| t.last_used_at.is_some())
            .map(|t| t.name.as_str())
            .collect();
        if ["siem", "dashboard-bot", "soar"]
            .iter()
            .all(|n| used.contains(n))
        {
            break;
        }
        assert!(Instant::now() < deadline, "last use not recorded: {used:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

async fn every_change_is_in_the_audit_log_with_who_what_when_and_where(backend: Backend) {
    use reqwest::Method;
    let h = Harness::start(backend).await;
    let started = chrono::Utc::now();
    let (status, _) = h
        .post(
            "/hooks/alert/raw/custom",
            "application/json",
            json!({"rule": "Terminal shell in container", "priority": "Warning", "output": "x"})
                .to_string(),
        )
        .await;
    assert_eq!(status, 202);
    h.drained().await;
    let ticket = h.all_tickets().await.pop().expect("a ticket");
    let ticket_path = format!("/api/v1/tickets/{}", ticket.id);
    let (status, _) = h
        .api(
            Method::PATCH,
            &ticket_path,
            Some(json!({"status": "acknowledged", "assignee": "bob"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = h
        .api(
            Method::POST,
            &format!("{ticket_path}/comments"),
            Some(json!({"text": "on it"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = h.api(Method::POST, "/api/v1/policies/reload", None).await;
    assert_eq!(status, 200);
    heron_cli::tokens::create(h.store().as_ref(), "siem", "ingest", None)
        .await
        .expect("token");

    let (status, page) = h.get(&format!("/api/v1/audit?ticket={}", ticket.id)).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    let actions: Vec<&str> = items.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["ticket.comment", "ticket.update"], "newest first");
    let update = &items[1];
    assert_eq!(update["actor"], "alice");
    assert_eq!(update["source"], "api");
    assert_eq!(update["remote"], "127.0.0.1");
    assert_eq!(update["details"]["before"]["status"], "open");
    assert_eq!(update["details"]["after"]["status"], "acknowledged");
    assert_eq!(update["details"]["after"]["assignee"], "bob");
    let at: chrono::DateTime<chrono::Utc> =
        update["at"].as_str().expect("at").parse().expect("time");
    assert!(at >= started - chrono::Duration::seconds(1) && at <= chrono::Utc::now());

    let (_, reloads) = h.get("/api/v1/audit?action=policy.reload").await;
    assert_eq!(
        reloads["items"].as_array().map(Vec::len),
        Some(1),
        "{reloads}"
    );
    assert_eq!(reloads["items"][0]["details"]["ok"], true);
    let (_, created) = h.get("/api/v1/audit?action=token.create").await;
    assert_eq!(created["items"][0]["source"], "cli");
    assert_eq!(created["items"][0]["target"], "siem");
    let (_, by_alice) = h.get("/api/v1/audit?actor=alice").await;
    assert_eq!(
        by_alice["items"].as_array().map(Vec::len),
        Some(3),
        "update, comment, reload: {by_alice}"
    );

    // Paging: one at a time, following the cursor, until the end.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = h
            .get(&format!("/api/v1/audit?limit=1&cursor={cursor}"))
            .await;
        assert_eq!(status, 200);
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (_, none) = h
        .get(&format!(
            "/api/v1/audit?since={}",
            future.replace('+', "%2B")
        ))
        .await;
    assert_eq!(none["items"], json!([]));
    let (_, all) = h
        .get(&format!(
            "/api/v1/audit?until={}",
            future.replace('+', "%2B")
        ))
        .await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(4));
    let (status, body) = h.get("/api/v1/audit?since=yesterday").await;
    assert_eq!(status, 400, "{body}");
    h.stop().await;
}

async fn the_auth_http_policy_guards_webhooks_and_the_api(backend: Backend) {
    use reqwest::Method;
    let extra = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        extra.path().join("auth_http.rego"),
        r#"package auth.http

default allow := false

# Reads: only while the allow-listed environment says which package runs the tests, the
# rest of the environment is not shown, and from this machine.
allow if {
	input.req.method == "GET"
	startswith(input.req.path, "/api/v1/")
	input.env.CARGO_PKG_NAME == "heron-cli"
	not input.env.PATH
	input.remote == "127.0.0.1"
}

# Alerts: only from the sender that says so, and never the blocked rule (read from the body).
allow if {
	input.req.method == "POST"
	startswith(input.req.path, "/hooks/alert/raw/")
	input.req.header["x-sender"][0] == "siem"
	json.unmarshal(input.req.body).rule != "blocked"
}

# A broken rule: two different values for one path is an evaluation error.
allow := true if input.req.path == "/api/v1/notices"

allow := false if input.req.path == "/api/v1/notices"
"#,
    )
    .expect("policy");
    let h = Harness::start_with(backend, |s| {
        s.policies.push(extra.path().to_path_buf());
        s.auth_policy_env = vec!["CARGO_PKG_NAME".into()];
    })
    .await;
    let (status, body) = h.get("/api/v1/tickets").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h
        .api(
            Method::PATCH,
            "/api/v1/tickets/00000000-0000-7000-8000-000000000000",
            Some(json!({"status": "acknowledged"})),
        )
        .await;
    assert_eq!(status, 403, "no rule allows changes: {body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let alert =
        |rule: &str| json!({"rule": rule, "priority": "Warning", "output": "x"}).to_string();
    let (status, _) = h
        .post_with(
            "/hooks/alert/raw/custom",
            "application/json",
            alert("ok"),
            &[("x-sender", "siem")],
        )
        .await;
    assert_eq!(
        status, 202,
        "the body reaches the handler intact after the policy read it"
    );
    let (status, _) = h
        .post_with(
            "/hooks/alert/raw/custom",
            "application/json",
            alert("blocked"),
            &[("x-sender", "siem")],
        )
        .await;
    assert_eq!(status, 403, "the policy reads the body");
    let (status, _) = h
        .post("/hooks/alert/raw/custom", "application/json", alert("ok"))
        .await;
    assert_eq!(status, 403, "the policy reads the headers");
    let (status, body) = h.get("/api/v1/notices").await;
    assert_eq!(status, 403, "an evaluation error denies: {body}");
    let (status, _) = h.get("/api/v1/tickets").await;
    assert_eq!(status, 200, "and the server goes on");
    h.drained().await;
    assert_eq!(
        h.events(None).await.len(),
        1,
        "only the allowed alert was stored"
    );
    // Authentication comes first: without a token the policy is not asked.
    let response = h
        .http
        .get(format!("{}/api/v1/tickets", h.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    h.stop().await;
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        #[cfg(feature = "postgres-tests")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

on_every_backend!(
    every_example_payload_becomes_a_ticket_and_noise_is_ignored,
    duplicate_delivery_is_acknowledged_without_a_second_event,
    storm_of_a_thousand_alerts_with_three_fingerprints_makes_three_tickets,
    worker_stopped_mid_queue_and_restarted_finishes_every_event_exactly_once,
    every_bad_input_gets_its_error_and_leaves_nothing_behind,
    policy_runtime_error_leaves_the_event_failed_and_retryable,
    ticket_lifecycle_comments_and_notices_work_over_the_api,
    signed_sns_notifications_are_accepted_and_forged_ones_refused,
    openapi_document_covers_every_route,
    health_readiness_and_metrics_report_the_pipeline,
    the_agent_investigates_each_new_ticket_once_and_answers_questions_about_it,
    without_a_model_tickets_are_still_searchable_and_chat_says_the_agent_is_disabled,
    enrich_tasks_run_before_triage_and_their_answers_reach_the_triage_policy,
    a_token_over_its_rate_limit_gets_429_with_retry_after_and_stores_nothing,
    nesting_past_the_json_depth_limit_and_oversized_headers_are_refused,
    a_ticket_lives_in_its_slack_thread_and_the_agent_answers_there_for_allowed_users_only,
    stored_tokens_open_only_their_scopes_until_revoked_or_expired,
    every_change_is_in_the_audit_log_with_who_what_when_and_where,
    the_auth_http_policy_guards_webhooks_and_the_api,
);
