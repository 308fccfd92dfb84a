//! `heron-bench`: prints Heron's throughput and latency figures next to baselines measured in
//! the same run on the same machine. Not a test: nothing here passes or fails.
//!
//! - `intake`: webhook events/s acknowledged (202 after commit) at 32 clients vs single-row
//!   `INSERT`s of the same payloads into the same PostgreSQL at the same concurrency; ack
//!   latency p50/p99 at a fixed 500 events/s.
//! - `e2e`: alerts/s from POST to ticket with the example policies (load generator included).
//! - `storm`, `prompt-size`: the agent's cost under an alert storm, and the size of what it
//!   sends to the model (see [`agent`]).
//! - `policy`: median µs of ingest + triage for the GuardDuty example, beside regopy (rego-cpp)
//!   evaluating the same policies and input (`scripts/bench` provides it).
//! - `replay`: events/s replayed from PostgreSQL by `heron policy replay` (both sides the
//!   example policies), beside the rate of reading the same pages alone.
//! - `similar`: similar-ticket search p50/p95 latency and recall@10 against exact search, on
//!   100,000 tickets (PostgreSQL, HNSW) and 10,000 (SQLite, exact).

mod agent;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use heron_cli::runtime;
use heron_cli::settings::Settings;
use heron_core::SchemaName;
use heron_core::policy::PolicyEngine;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod pages;
mod replay;
mod similar;
mod workers;

// The same allocator as the `heron` binary, so figures match what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "heron-bench")]
struct Cli {
    /// PostgreSQL server to benchmark against (a fresh database is created in it).
    #[arg(long, env = "HERON_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Repository root (for policies/ and their fixtures).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Intake {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 500)]
        fixed_rate: u64,
    },
    E2e {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 30_000)]
        alerts: usize,
        /// Events per request: 1 posts single JSON objects, more posts NDJSON batches.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Alerts over a few fingerprints: how many triage runs they start.
    Storm {
        #[arg(long, default_value_t = 10_000)]
        alerts: usize,
        #[arg(long, default_value_t = 20)]
        fingerprints: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// Bytes sent to the LLM per step of a triage run, for the example payloads.
    PromptSize,
    /// Dashboard page times at 10,000 tickets on PostgreSQL.
    Pages {
        #[arg(long, default_value_t = 10_000)]
        tickets: usize,
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// Queue drain rate with 1 and with 2 `heron worker` processes on one PostgreSQL.
    Workers {
        #[arg(long, default_value_t = 30_000)]
        events: usize,
        /// The `heron` binary the worker processes run.
        #[arg(long, default_value = "target/release/heron")]
        heron: PathBuf,
    },
    Policy {
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
        /// Python with regopy installed; without it only Heron is measured.
        #[arg(long, env = "HERON_BENCH_PYTHON")]
        python: Option<PathBuf>,
    },
    /// `heron policy replay`'s throughput from PostgreSQL.
    Replay {
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 2_000)]
        page: usize,
    },
    Similar {
        /// Tickets with embeddings on PostgreSQL.
        #[arg(long, default_value_t = 100_000)]
        pg_tickets: usize,
        /// Tickets with embeddings on SQLite.
        #[arg(long, default_value_t = 10_000)]
        sqlite_tickets: usize,
        #[arg(long, default_value_t = 256)]
        dims: usize,
        /// Clusters of the random embeddings (fewer, larger clusters are harder for HNSW).
        #[arg(long, default_value_t = 100)]
        clusters: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// `all`, `postgres` or `sqlite`.
        #[arg(long, default_value = "all")]
        backends: String,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Where the run's databases are made, to drop them at the end.
    let base_url = database_url(cli.database_url.clone()).ok();
    runtime.block_on(async move {
        let result = match cli.command {
            Command::Intake {
                clients,
                seconds,
                fixed_rate,
            } => {
                intake(
                    &cli.root,
                    &database_url(cli.database_url)?,
                    clients,
                    seconds,
                    fixed_rate,
                )
                .await
            }
            Command::E2e {
                clients,
                alerts,
                batch,
            } => {
                let url = database_url(cli.database_url)?;
                e2e(&cli.root, &url, clients, alerts, batch.max(1)).await
            }
            Command::Storm {
                alerts,
                fingerprints,
                clients,
            } => {
                let url = database_url(cli.database_url)?;
                agent::storm(&cli.root, &url, alerts, fingerprints.max(1), clients).await
            }
            Command::Pages { tickets, requests } => {
                let url = database_url(cli.database_url)?;
                pages::run(&url, tickets.max(100), requests.max(10)).await
            }
            Command::Workers { events, heron } => {
                let url = database_url(cli.database_url)?;
                workers::run(&cli.root, &url, events.max(100), &heron).await
            }
            Command::PromptSize => {
                agent::prompt_size(&cli.root, &database_url(cli.database_url)?).await
            }
            Command::Policy { iterations, python } => {
                policy(&cli.root, iterations, python.as_deref())
            }
            Command::Replay { events, page } => {
                let url = database_url(cli.database_url)?;
                replay::run(&cli.root, &url, events.max(1), page.max(1)).await
            }
            Command::Similar {
                pg_tickets,
                sqlite_tickets,
                dims,
                clusters,
                queries,
                seed,
                backends,
            } => {
                let url = database_url(cli.database_url).ok();
                let params = similar::Params {
                    pg_tickets: pg_tickets.max(1),
                    sqlite_tickets: sqlite_tickets.max(1),
                    dims,
                    clusters,
                    queries,
                    seed,
                };
                similar::run(url.as_deref(), params, &backends).await
            }
        };
        // A failed run leaves its databases for inspection.
        if result.is_ok()
            && let Some(base_url) = &base_url
        {
            let created = std::mem::take(&mut *lock_created());
            for url in created {
                drop_database(base_url, &url).await?;
            }
        }
        result
    })
}

/// The databases this run made ([`fresh_database`]), dropped when it ends well: a kept local
/// PostgreSQL does not fill up with benchmark data.
static CREATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn lock_created() -> std::sync::MutexGuard<'static, Vec<String>> {
    CREATED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drops a database made by [`fresh_database`].
pub(crate) async fn drop_database(base_url: &str, url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let name = url.rsplit('/').next().context("database URL has no path")?;
    // `fresh_database` made the name from a UUID: [0-9a-z_] only.
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("unexpected database name {name:?}");
    }
    let mut conn = sqlx::PgConnection::connect(base_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

fn database_url(given: Option<String>) -> anyhow::Result<String> {
    given
        .or_else(|| std::env::var("HERON_TEST_DATABASE_URL").ok())
        .context(
            "set HERON_BENCH_DATABASE_URL (or run through scripts/bench, which starts PostgreSQL)",
        )
}

async fn fresh_database(base: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base).await?;
    let name = format!("heron_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let (prefix, _) = base.rsplit_once('/').context("database URL has no path")?;
    let url = format!("{prefix}/{name}");
    lock_created().push(url.clone());
    Ok(url)
}

/// Every detect fixture, as `(schema, body)`.
fn payloads(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let base = root.join("policies/testdata/detect");
    let mut out = Vec::new();
    for schema in std::fs::read_dir(&base).with_context(|| format!("reading {}", base.display()))? {
        let schema = schema?.path();
        let name = schema
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for file in std::fs::read_dir(&schema)? {
            let body = std::fs::read_to_string(file?.path())?;
            // Compact, as products send it.
            let compact: Value = serde_json::from_str(&body)?;
            out.push((name.clone(), compact.to_string()));
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no fixtures under {}", base.display());
    }
    Ok(out)
}

/// Request bodies for the end-to-end run: each fixture alone, or NDJSON batches of one
/// schema's fixtures (a route carries one schema) cycling through them.
fn request_bodies(
    payloads: &[(String, String)],
    batch: usize,
) -> Vec<(String, &'static str, String)> {
    if batch == 1 {
        return payloads
            .iter()
            .map(|(schema, body)| (schema.clone(), "application/json", body.clone()))
            .collect();
    }
    let mut by_schema: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (schema, body) in payloads {
        by_schema.entry(schema).or_default().push(body);
    }
    by_schema
        .into_iter()
        .map(|(schema, bodies)| {
            let mut ndjson = String::new();
            for body in bodies.iter().cycle().take(batch) {
                ndjson.push_str(body);
                ndjson.push('\n');
            }
            (schema.to_owned(), "application/x-ndjson", ndjson)
        })
        .collect()
}

fn settings(root: &Path, database_url: String, worker: bool) -> Settings {
    let mut s = Settings {
        addr: ([127, 0, 0, 1], 0).into(),
        data_dir: std::env::temp_dir().join("heron-bench"),
        database_url: Some(database_url),
        policies: vec![root.join("policies")],
        no_auth: true,
        ..Settings::default()
    };
    s.database_max_connections = 40;
    s.worker.enabled = worker;
    s.log.filter = "warn".into();
    s
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?)
}

/// Runs `clients` loops calling `op(i)` until `seconds` pass; returns successful ops.
async fn closed_loop<F, Fut>(clients: usize, seconds: u64, op: F) -> anyhow::Result<u64>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, done, stop) = (op.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c as u64;
            while !stop.load(Ordering::Relaxed) {
                op(i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += clients as u64;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn intake(
    root: &Path,
    base_url: &str,
    clients: usize,
    seconds: u64,
    fixed_rate: u64,
) -> anyhow::Result<()> {
    let payloads = Arc::new(payloads(root)?);
    println!(
        "== intake (PostgreSQL, {clients} clients, {seconds} s per phase, {} distinct payloads)",
        payloads.len()
    );

    // Baseline: single-row INSERTs of the same payloads into the same server.
    let raw_url = fresh_database(base_url).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(&raw_url)
        .await?;
    sqlx::query("CREATE TABLE raw_insert (id uuid PRIMARY KEY, schema text NOT NULL, body text NOT NULL, received_at timestamptz NOT NULL)")
        .execute(&pool)
        .await?;
    let (p, pl) = (payloads.clone(), pool.clone());
    let raw = closed_loop(clients, seconds, move |i| {
        let (p, pool) = (p.clone(), pl.clone());
        async move {
            let (schema, body) = &p[(i as usize) % p.len()];
            sqlx::query(
                "INSERT INTO raw_insert (id, schema, body, received_at) VALUES ($1, $2, $3, now())",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(schema)
            .bind(body)
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
    .await?;
    pool.close().await;
    let raw_rate = raw as f64 / seconds as f64;

    // Heron: the real server, worker off, so only intake is measured.
    let server =
        runtime::start_server(&settings(root, fresh_database(base_url).await?, false)).await?;
    let url = format!("http://{}", server.addr);
    let http = client()?;
    let (p, h, u) = (payloads.clone(), http.clone(), url.clone());
    let accepted = closed_loop(clients, seconds, move |i| {
        let (p, http, url) = (p.clone(), h.clone(), u.clone());
        async move {
            let (schema, body) = &p[(i as usize) % p.len()];
            let response = http
                .post(format!("{url}/hooks/alert/raw/{schema}"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            if response.status().as_u16() != 202 {
                bail!("unexpected status {}", response.status());
            }
            Ok(())
        }
    })
    .await?;
    let heron_rate = accepted as f64 / seconds as f64;
    println!("raw single-row INSERT:    {raw_rate:>10.0} rows/s");
    println!("heron intake (202):       {heron_rate:>10.0} events/s");
    println!(
        "ratio heron/raw:          {:>10.2}   (target >= 0.50)",
        heron_rate / raw_rate
    );

    // Open loop at a fixed rate: latency as a sender sees it.
    let total = fixed_rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / fixed_rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticker.tick().await;
        let (http, url, p) = (http.clone(), url.clone(), payloads.clone());
        tasks.push(tokio::spawn(async move {
            let (schema, body) = &p[(i as usize) % p.len()];
            let started = Instant::now();
            let response = http
                .post(format!("{url}/hooks/alert/raw/{schema}"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            let elapsed = started.elapsed();
            if response.status().as_u16() != 202 {
                bail!("unexpected status {}", response.status());
            }
            anyhow::Ok(elapsed)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await??);
    }
    latencies.sort();
    println!(
        "ack latency at {fixed_rate}/s:    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} events   (target p99 <= 20 ms)",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        latencies.len()
    );
    server.shutdown().await?;
    Ok(())
}

async fn e2e(
    root: &Path,
    base_url: &str,
    clients: usize,
    alerts: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let bodies = Arc::new(request_bodies(&payloads(root)?, batch));
    let requests = alerts.div_ceil(batch);
    let alerts = requests * batch;
    let shape = if batch == 1 {
        "one JSON object per request".to_owned()
    } else {
        format!("NDJSON, {batch} events per request")
    };
    println!(
        "== end to end (PostgreSQL, {clients} clients, {alerts} alerts, {shape}, example policies, in-process worker)"
    );
    let server =
        runtime::start_server(&settings(root, fresh_database(base_url).await?, true)).await?;
    let url = format!("http://{}", server.addr);
    let http = client()?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, bodies, next) = (http.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= requests {
                    return anyhow::Ok(());
                }
                let (schema, content_type, body) = &bodies[i % bodies.len()];
                let response = http
                    .post(format!("{url}/hooks/alert/raw/{schema}"))
                    .header("content-type", *content_type)
                    .body(body.clone())
                    .send()
                    .await?;
                if response.status().as_u16() != 202 {
                    bail!("unexpected status {}", response.status());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let posted = started.elapsed();
    let store = server.store.clone();
    loop {
        let stats = store.queue_stats(chrono::Utc::now()).await?;
        if stats.pending == 0 && stats.processing == 0 {
            break;
        }
        // Coarse polling: each poll is a COUNT on the server being measured.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let failed = store.queue_stats(chrono::Utc::now()).await?.failed;
    println!(
        "posted in {:.2} s; every alert ticketed after {:.2} s ({failed} failed)",
        posted.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "end to end:               {:>10.0} alerts/s   (target >= 3000)",
        alerts as f64 / elapsed.as_secs_f64()
    );
    server.shutdown().await?;
    Ok(())
}

fn policy(root: &Path, iterations: usize, python: Option<&Path>) -> anyhow::Result<()> {
    let policies = vec![
        root.join("policies/ingest/guardduty.rego"),
        root.join("policies/triage.rego"),
    ];
    let set = heron_policy::PolicySet::load(&policies, &heron_policy::LoadOptions::default())?;
    let fixture_dir = root.join("policies/testdata/detect/guardduty");
    let first = std::fs::read_dir(&fixture_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .context("no guardduty fixture")?;
    let event: Value = serde_json::from_str(&std::fs::read_to_string(&first)?)?;
    let schema = SchemaName::parse("guardduty")?;
    println!(
        "== policy evaluation: ingest + triage, GuardDuty example ({}), {iterations} iterations",
        first.display()
    );

    let mut samples = Vec::with_capacity(iterations);
    let mut triage_input = None;
    for i in 0..iterations + 1000 {
        let started = Instant::now();
        let output = set.ingest(&schema, &event)?;
        let mut alerts = heron_app::pipeline::alerts_from_drafts(
            heron_core::EventId::new(),
            &schema,
            output.alerts,
            &event,
            chrono::Utc::now(),
        );
        let Some(alert) = alerts.first_mut() else {
            bail!("the fixture made no alert")
        };
        if triage_input.is_none() {
            triage_input = Some(
                serde_json::json!({"alert": {"id": alert.id.to_string(), "schema": "guardduty",
                "metadata": {"title": alert.title, "description": alert.description, "attributes": alert.attributes,
                "tags": alert.tags, "channel": alert.channel, "severity": alert.severity}, "data": event}, "enrich": []}),
            );
        }
        heron_app::pipeline::triage_alert(&set, alert, chrono::Utc::now(), Vec::new())?;
        if i >= 1000 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    let heron_median = percentile(&samples, 0.5).as_secs_f64() * 1e6;
    let mut ingest_only = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        set.ingest(&schema, &event)?;
        ingest_only.push(started.elapsed());
    }
    ingest_only.sort();
    println!(
        "  of which ingest:        {:>10.1} µs median",
        percentile(&ingest_only, 0.5).as_secs_f64() * 1e6
    );
    println!("heron (regorus):          {heron_median:>10.1} µs median   (target <= 20 µs)");

    let Some(python) = python else {
        println!(
            "regopy:                   not measured (set HERON_BENCH_PYTHON to a python with regopy)"
        );
        return Ok(());
    };
    let input_path = std::env::temp_dir().join("heron-bench-triage-input.json");
    std::fs::write(&input_path, serde_json::to_string(&triage_input)?)?;
    let script = root.join("bench/regopy_policy.py");
    let output = std::process::Command::new(python)
        .arg(&script)
        .args(&policies)
        .arg(&first)
        .arg(&input_path)
        // rego-cpp takes ~20 ms per evaluation: a few hundred samples give a stable median
        // without the comparison taking minutes.
        .arg(iterations.min(500).to_string())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "regopy benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let regopy_median: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("regopy output")?;
    println!("regopy (rego-cpp):        {regopy_median:>10.1} µs median");
    println!(
        "ratio regopy/heron:       {:>10.1}x",
        regopy_median / heron_median
    );
    Ok(())
}
