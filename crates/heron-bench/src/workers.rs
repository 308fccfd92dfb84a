//! `workers`: how processing scales with `heron worker` processes on one PostgreSQL.
//!
//! For 1 and then 2 processes, on a fresh database each time: a server without a worker
//! queues `events` copies of the example payloads (NDJSON batches of 100), then the worker
//! processes start and the clock runs until the queue is empty. Prints events/s for each and
//! the ratio. The time includes each process's start (connecting, loading the policies),
//! which is a few hundred milliseconds.

use anyhow::{Context, bail};
use heron_cli::runtime;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub async fn run(root: &Path, base_url: &str, events: usize, heron: &Path) -> anyhow::Result<()> {
    if !heron.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p heron-cli` (scripts/bench does)",
            heron.display()
        );
    }
    println!(
        "== worker processes (PostgreSQL, {events} events queued first, example policies, NDJSON batches of 100)"
    );
    let mut rates = Vec::new();
    for processes in [1usize, 2] {
        let rate = drain_with(root, base_url, events, heron, processes).await?;
        println!("{processes} worker process(es): {rate:.0} events/s");
        rates.push(rate);
    }
    if let [one, two] = rates[..] {
        println!(
            "ratio 2 processes / 1 process: {:.2} (this machine has {} cores, shared with PostgreSQL)",
            two / one,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    Ok(())
}

async fn drain_with(
    root: &Path,
    base_url: &str,
    events: usize,
    heron: &Path,
    processes: usize,
) -> anyhow::Result<f64> {
    let database = crate::fresh_database(base_url).await?;
    let settings = crate::settings(root, database.clone(), false);
    let server = runtime::start_server(&settings).await?;
    let url = format!("http://{}", server.addr);
    let http = crate::client()?;
    let bodies = crate::request_bodies(&crate::payloads(root)?, 100);
    let mut queued = 0;
    for (schema, content_type, body) in bodies.iter().cycle() {
        if queued >= events {
            break;
        }
        let response = http
            .post(format!("{url}/hooks/alert/raw/{schema}"))
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await?;
        if response.status().as_u16() != 202 {
            bail!("unexpected status {}", response.status());
        }
        queued += 100;
    }
    let started = Instant::now();
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(heron)
                .args(["worker", "--database-url", &database, "--policies"])
                .arg(root.join("policies"))
                .env("HERON_LOG__FILTER", "warn")
                .env_remove("HERON_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting heron worker")
        })
        .collect::<anyhow::Result<_>>()?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let now = server.store.now().await?;
        let stats = server.store.queue_stats(now).await?;
        if stats.pending == 0 && stats.processing == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the queue did not drain in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    server.shutdown().await?;
    Ok(queued as f64 / elapsed.as_secs_f64())
}
