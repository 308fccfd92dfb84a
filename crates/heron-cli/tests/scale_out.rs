#![cfg(feature = "postgres-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Several `heron` processes on one PostgreSQL, killed and restarted under load.
//!
//! Two `heron serve --no-worker` and two `heron worker` processes start at once on a fresh
//! database (so their migrations race), then take 20,000 events from concurrent clients,
//! with a tenth of them re-delivered. Mid-run one server and one worker are killed with
//! SIGKILL and started again; later the other two are restarted with SIGTERM (a rolling
//! restart). Every acknowledged event must be processed exactly once, no ticket may be
//! duplicated, and the queue must drain.

use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const TOKEN: &str = "scale-out-token";
const EVENTS: usize = 20_000;
const FINGERPRINTS: usize = 50;
const CLIENTS: usize = 16;

/// One alert per event, grouped by the event's `fp`.
const INGEST: &str = r#"package ingest.scale

alerts contains {
    "title": sprintf("scale-out %v", [input.fp]),
    "severity": "medium",
    "fingerprint": sprintf("fp-%v", [input.fp]),
}
"#;

async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("HERON_TEST_DATABASE_URL")
        .expect("HERON_TEST_DATABASE_URL must point at a PostgreSQL server for postgres-tests");
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test server");
    let name = format!("heron_scale_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// How to start one process again after it was stopped.
struct Recipe {
    args: Vec<String>,
    log: PathBuf,
}

struct Process {
    recipe: Recipe,
    child: Child,
}

impl Process {
    fn start(recipe: Recipe) -> Self {
        let child = spawn(&recipe);
        Self { recipe, child }
    }

    fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop_gracefully(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "{:?} exited with {status} after SIGTERM; log: {}",
                    self.recipe.args,
                    std::fs::read_to_string(&self.recipe.log).unwrap_or_default()
                );
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn restart(&mut self) {
        self.child = spawn(&self.recipe);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(recipe: &Recipe) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&recipe.log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_heron"))
        .args(&recipe.args)
        .env("HERON_AUTH__TOKENS", format!(r#"["{TOKEN}"]"#))
        .env("HERON_WORKER__LEASE_SECS", "3")
        .env("HERON_WORKER__POLL_INTERVAL_MS", "50")
        .env("HERON_WORKER__BACKOFF_BASE_MS", "50")
        .env("HERON_DATABASE_MAX_CONNECTIONS", "6")
        .env("HERON_LOG__FILTER", "info")
        .env_remove("HERON_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start heron")
}

fn server(db: &str, policies: &Path, port: u16, logs: &Path, n: usize) -> Recipe {
    Recipe {
        args: [
            "serve",
            "--no-worker",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db,
            "--policies",
            &policies.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        log: logs.join(format!("server-{n}.log")),
    }
}

fn worker(db: &str, policies: &Path, logs: &Path, n: usize) -> Recipe {
    Recipe {
        args: [
            "worker",
            "--database-url",
            db,
            "--policies",
            &policies.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        log: logs.join(format!("worker-{n}.log")),
    }
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server on {port} not ready in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Delivers event `i` (key `k-i`) until some server acknowledges it, trying the servers in
/// turn: a killed server's refused or cut connections are retried elsewhere with the same
/// key, as a real sender would. Returns the acknowledged event id and the duplicate flag.
async fn deliver(http: &reqwest::Client, ports: &[u16], i: usize, first: usize) -> (String, bool) {
    let body = json!({"fp": i % FINGERPRINTS, "n": i}).to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempt = first;
    loop {
        let port = ports[attempt % ports.len()];
        attempt += 1;
        let sent = http
            .post(format!("http://127.0.0.1:{port}/hooks/alert/raw/scale"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("k-{i}"))
            .body(body.clone())
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().as_u16() == 202
            && let Ok(answer) = response.json::<serde_json::Value>().await
        {
            let id = answer["event_id"].as_str().expect("event_id").to_owned();
            return (id, answer["duplicate"] == true);
        }
        assert!(
            Instant::now() < deadline,
            "event {i} was never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_servers_and_workers_process_every_acknowledged_event_exactly_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("scale.rego"), INGEST).unwrap();
    let logs = dir.path().to_path_buf();
    let db = fresh_postgres().await;
    let ports = [free_port(), free_port()];

    // All four at once on an empty database: their migrations race.
    let mut servers: Vec<Process> = ports
        .iter()
        .enumerate()
        .map(|(n, port)| Process::start(server(&db, &policies, *port, &logs, n)))
        .collect();
    let mut workers: Vec<Process> = (0..2)
        .map(|n| Process::start(worker(&db, &policies, &logs, n)))
        .collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for port in ports {
        wait_ready(&http, port).await;
    }

    let acknowledged: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, acknowledged, next) = (http.clone(), acknowledged.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= EVENTS {
                    return;
                }
                let (id, _) = deliver(&http, &ports, i, c).await;
                // A tenth is delivered again, to the other server: same event, flagged.
                if i % 10 == 0 {
                    let (again, duplicate) = deliver(&http, &ports, i, c + 1).await;
                    assert_eq!(again, id, "re-delivery of k-{i} names the first event");
                    assert!(duplicate, "re-delivery of k-{i} is flagged as a duplicate");
                }
                let previous = acknowledged.lock().await.insert(i, id.clone());
                // A retry after a cut connection may have been stored already: same id.
                if let Some(previous) = previous {
                    assert_eq!(previous, id);
                }
            }
        }));
    }

    // SIGKILL one server and one worker a quarter of the way in, then start them again.
    while next.load(Ordering::Relaxed) < EVENTS / 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    servers[0].kill_hard();
    workers[0].kill_hard();
    tokio::time::sleep(Duration::from_millis(500)).await;
    servers[0].restart();
    workers[0].restart();
    wait_ready(&http, ports[0]).await;

    // A rolling restart of the others with SIGTERM at half way.
    while next.load(Ordering::Relaxed) < EVENTS / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    servers[1].stop_gracefully();
    servers[1].restart();
    wait_ready(&http, ports[1]).await;
    workers[1].stop_gracefully();
    workers[1].restart();

    for client in clients {
        client.await.expect("client");
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert_eq!(acknowledged.len(), EVENTS);

    // The queue drains.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE state IN ('pending', 'processing')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} events still queued; worker log: {}",
            std::fs::read_to_string(logs.join("worker-0.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every acknowledged event is stored once, under the id it was acknowledged with, and
    // processed.
    let rows: Vec<(uuid::Uuid, Option<String>, String)> =
        sqlx::query_as("SELECT id, idempotency_key, state FROM events")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), EVENTS, "no event stored twice");
    for (id, key, state) in &rows {
        let i: usize = key
            .as_deref()
            .and_then(|k| k.strip_prefix("raw:k-"))
            .and_then(|n| n.parse().ok())
            .expect("every event has its key");
        assert_eq!(acknowledged[&i], id.to_string(), "k-{i}");
        assert_eq!(state, "processed", "k-{i}");
    }

    // Exactly once: one alert per event.
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(alerts, EVENTS as i64);
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT event_id FROM alerts GROUP BY event_id HAVING count(*) > 1) t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(twice, 0, "no event made two alerts");

    // One ticket per fingerprint, holding every alert of it.
    let tickets: Vec<(String, i64)> =
        sqlx::query_as("SELECT fingerprint, alert_count FROM tickets ORDER BY fingerprint")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tickets.len(), FINGERPRINTS, "{tickets:?}");
    assert!(
        tickets
            .iter()
            .all(|(_, count)| *count == (EVENTS / FINGERPRINTS) as i64),
        "{tickets:?}"
    );

    // Nothing is left leased.
    let leased: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE lease_token IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(leased, 0);

    for process in servers.iter_mut().chain(workers.iter_mut()) {
        process.stop_gracefully();
    }
}
