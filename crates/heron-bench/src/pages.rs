//! `pages`: server time of the dashboard's queue (newest first, filtered, sorted), ticket and
//! metrics pages at 10,000 tickets on PostgreSQL (target: under 50 ms each).
//!
//! Loads `tickets` distinct tickets through the real intake and worker (a one-rule policy,
//! one ticket per event, a few attributes and a raw body of realistic size), then requests
//! the first queue page, a filtered queue page and ticket pages from a keep-alive client on
//! the same machine, and prints p50/p95/max of the whole request.

use anyhow::bail;
use heron_cli::runtime;
use serde_json::json;
use std::time::{Duration, Instant};

const POLICY: &str = r#"package ingest.bench

alerts contains {
    "title": sprintf("Suspicious sign-in for %s from %s", [input.user, input.ip]),
    "description": "A sign-in from an address this user never used, outside office hours.",
    "severity": input.severity,
    "fingerprint": input.n,
    "attributes": [
        {"key": "user", "value": input.user},
        {"key": "ip", "value": input.ip},
        {"key": "country", "value": input.country},
    ],
}
"#;

pub async fn run(base_url: &str, tickets: usize, requests: usize) -> anyhow::Result<()> {
    println!(
        "== dashboard pages (PostgreSQL, {tickets} tickets, {requests} requests per page kind, loopback keep-alive client)"
    );
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench.rego"), POLICY)?;
    let mut settings = crate::settings(dir.path(), crate::fresh_database(base_url).await?, true);
    settings.policies = vec![dir.path().to_path_buf()];
    let server = runtime::start_server(&settings).await?;
    let url = format!("http://{}", server.addr);
    let http = crate::client()?;
    let severities = ["info", "low", "medium", "high", "critical"];
    let countries = ["DE", "US", "BR", "JP"];
    let started = Instant::now();
    for batch in (0..tickets).collect::<Vec<_>>().chunks(100) {
        let mut body = String::new();
        for n in batch {
            body.push_str(
                &json!({
                    "n": n,
                    "user": format!("user{}@example.com", n % 700),
                    "ip": format!("198.51.{}.{}", n / 256 % 256, n % 256),
                    "country": countries[n % 4],
                    "severity": severities[n % 5],
                    "raw": {"event": "sign-in", "client": "Mozilla/5.0", "padding": "x".repeat(600)},
                })
                .to_string(),
            );
            body.push('\n');
        }
        let response = http
            .post(format!("{url}/hooks/alert/raw/bench"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        if response.status().as_u16() != 202 {
            bail!("unexpected status {}", response.status());
        }
    }
    loop {
        let stats = server.store.queue_stats(chrono::Utc::now()).await?;
        if stats.pending == 0 && stats.processing == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the queue did not drain");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counted: u64 = server
        .store
        .count_tickets_by_status()
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum();
    println!(
        "loaded {counted} tickets in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let page = server
        .store
        .list_tickets(&heron_core::ports::TicketQuery {
            limit: 200,
            ..Default::default()
        })
        .await?;
    let ids: Vec<String> = page.items.iter().map(|t| t.id.to_string()).collect();
    if ids.is_empty() {
        bail!("no tickets were made");
    }

    measure(&http, "queue, first page", requests, |_| format!("{url}/")).await?;
    measure(&http, "queue, older page", requests, |_| {
        format!("{url}/?before={}", ids[ids.len() - 1])
    })
    .await?;
    measure(&http, "queue, text + severity filter", requests, |i| {
        format!("{url}/?severity=high&q=user{}%40example", i % 700)
    })
    .await?;
    measure(&http, "queue, by severity", requests, |_| {
        format!("{url}/?sort=severity&order=desc")
    })
    .await?;
    measure(&http, "queue, by last update", requests, |_| {
        format!("{url}/?sort=updated&order=asc")
    })
    .await?;
    measure(&http, "metrics page (12 weeks)", requests, |_| {
        format!("{url}/stats")
    })
    .await?;
    measure(&http, "ticket page", requests, |i| {
        format!("{url}/tickets/{}", ids[i % ids.len()])
    })
    .await?;
    server.shutdown().await?;
    Ok(())
}

async fn measure(
    http: &reqwest::Client,
    what: &str,
    requests: usize,
    url: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
    // Warm-up: connection, caches, prepared statements.
    for i in 0..10 {
        http.get(url(i)).send().await?.bytes().await?;
    }
    let mut times = Vec::with_capacity(requests);
    for i in 0..requests {
        let started = Instant::now();
        let response = http.get(url(i)).send().await?;
        if !response.status().is_success() {
            bail!("{what}: status {}", response.status());
        }
        response.bytes().await?;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what:<32} p50 {:>6.1} ms   p95 {:>6.1} ms   max {:>6.1} ms   (target p95 < 50 ms)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
    Ok(())
}
