//! Agent benchmarks, against a local OpenAI-compatible fake (no model is called):
//!
//! - `storm`: N alerts over K fingerprints, posted concurrently; prints how many triage runs
//!   (LLM chat calls offering `submit_finding`, counted by the fake) they started — the target
//!   is exactly K — and how many enrich calls the example enrich policy added;
//! - `prompt-size`: one triage run per example payload with a fixed three-step script
//!   (`get_alerts`, `similar_tickets`, `submit_finding`); prints the bytes sent to the LLM per
//!   step, median and max, per schema and overall, with the tool-result clips in place.

use anyhow::{Context, bail};
use heron_cli::runtime;
use heron_llm::testing::{FakeOpenAi, Reply};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn finding() -> String {
    json!({"severity": "medium", "verdict": "inconclusive", "confidence": 0.5,
           "summary": "benchmark finding", "reason": "scripted", "recommendation": "none",
           "evidence": []})
    .to_string()
}

fn with_model(settings: &mut heron_cli::settings::Settings, llm: &FakeOpenAi) {
    settings.llm_base_url = Some(llm.base_url());
    settings.llm_model = Some("bench-model".into());
    settings.llm_max_retries = 0;
    settings.agent_concurrency = 2;
}

/// Only the triage agent offers `submit_finding`: it tells its calls from enrich tasks'.
const TRIAGE_MARK: &str = "submit_finding";

fn is_triage_call(request: &heron_llm::testing::Recorded) -> bool {
    request.body.to_string().contains(TRIAGE_MARK)
}

/// Answers for the model calls the example policies make before triage, each matched by its
/// prompt: the metadata stage, `ioc_verdict` (policies/prompts/ioc_verdict.md) and `summary`.
/// One of each per alert that may need them; unused ones wait for a later alert.
fn script_enrich_answers(llm: &FakeOpenAi) {
    llm.push_chat_for(
        "You name security alerts",
        Reply::text(
            r#"{"title": "Suspicious activity", "description": "An alert from the benchmark."}"#,
            (300, 30),
        ),
    );
    llm.push_chat_for(
        "Look each indicator up",
        Reply::text(
            r#"{"verdict": "unknown", "indicators": [], "reason": "no tool knows them"}"#,
            (800, 40),
        ),
    );
    llm.push_chat_for(
        "In three sentences",
        Reply::text(
            "A benchmark alert. Nothing was affected. Check nothing.",
            (600, 30),
        ),
    );
}

fn chat_requests(llm: &FakeOpenAi) -> Vec<heron_llm::testing::Recorded> {
    llm.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect()
}

/// Waits until the event queue and the triage queue are both empty.
async fn settled(store: &Arc<dyn heron_core::ports::Store>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let now = store.now().await?;
        let events = store.queue_stats(now).await?;
        let triage = store.triage_stats(now).await?;
        if events.pending + events.processing + triage.pending + triage.processing == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("queues did not settle: events {events:?}, triage {triage:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn storm(
    root: &Path,
    base_url: &str,
    alerts: usize,
    fingerprints: usize,
    clients: usize,
) -> anyhow::Result<()> {
    println!(
        "== alert storm (PostgreSQL, {alerts} CrowdStrike detections over {fingerprints} fingerprints, {clients} clients, agent on a local fake LLM)"
    );
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join("policies/testdata/detect/crowdstrike/credential_dumping_lsass.json"),
        )
        .context("reading the CrowdStrike example")?,
    )?;
    let llm = FakeOpenAi::start().await;
    // One scripted answer per expected call: the example enrich policy asks for an indicator
    // verdict on the first alert of each fingerprint, then triage runs once per ticket. Any
    // call beyond them still reaches the fake (and is counted) though answered with an error.
    for _ in 0..fingerprints {
        script_enrich_answers(&llm);
        llm.push_chat_for(
            TRIAGE_MARK,
            Reply::tool_calls(&[("c1", "submit_finding", &finding())], (1000, 100)),
        );
    }
    let mut settings = crate::settings(root, crate::fresh_database(base_url).await?, true);
    with_model(&mut settings, &llm);
    let server = runtime::start_server(&settings).await?;
    let url = format!("http://{}", server.addr);
    let http = crate::client()?;
    let next = Arc::new(AtomicU64::new(0));
    let template = Arc::new(template);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next, template) =
            (http.clone(), url.clone(), next.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= alerts {
                    return anyhow::Ok(());
                }
                let mut body = (*template).clone();
                body["event"]["SHA256String"] = json!(format!("{:064x}", i % fingerprints));
                body["event"]["DetectId"] = json!(format!("ldt:bench:{i}"));
                let response = http
                    .post(format!("{url}/hooks/alert/raw/crowdstrike"))
                    .json(&body)
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
    settled(&server.store).await?;
    let elapsed = started.elapsed();
    let tickets = server
        .store
        .count_tickets_by_status()
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum::<u64>();
    let (triage, other): (Vec<_>, Vec<_>) =
        chat_requests(&llm).into_iter().partition(is_triage_call);
    println!(
        "{alerts} alerts → {tickets} tickets, {} triage runs started (LLM chat calls counted by the fake; target exactly {fingerprints}), {} enrich calls, in {:.1} s",
        triage.len(),
        other.len(),
        elapsed.as_secs_f64()
    );
    server.shutdown().await?;
    Ok(())
}

pub async fn prompt_size(root: &Path, base_url: &str) -> anyhow::Result<()> {
    println!(
        "== prompt size per triage run (example payloads; script: get_alerts, similar_tickets, submit_finding; tool results clipped at 16 KiB)"
    );
    let llm = FakeOpenAi::start().await;
    let mut settings = crate::settings(root, crate::fresh_database(base_url).await?, true);
    with_model(&mut settings, &llm);
    settings.agent_concurrency = 1;
    let server = runtime::start_server(&settings).await?;
    let url = format!("http://{}", server.addr);
    let http = crate::client()?;
    let mut by_schema: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (schema, body) in crate::payloads(root)? {
        let before = chat_requests(&llm).len();
        let tickets_before = total_tickets(&server.store).await?;
        script_enrich_answers(&llm);
        llm.push_chat_for(
            TRIAGE_MARK,
            Reply::tool_calls(
                &[("c1", "get_alerts", r#"{"limit": 5, "offset": 0}"#)],
                (1000, 20),
            ),
        );
        llm.push_chat_for(
            TRIAGE_MARK,
            Reply::tool_calls(&[("c2", "similar_tickets", r#"{"limit": 5}"#)], (1500, 20)),
        );
        llm.push_chat_for(
            TRIAGE_MARK,
            Reply::tool_calls(&[("c3", "submit_finding", &finding())], (2000, 80)),
        );
        let response = http
            .post(format!("{url}/hooks/alert/raw/{schema}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if response.status().as_u16() != 202 {
            bail!("unexpected status {}", response.status());
        }
        settled(&server.store).await?;
        if total_tickets(&server.store).await? == tickets_before {
            // Joined an earlier ticket: no run; its script waits for the next payload.
            continue;
        }
        let sizes: Vec<usize> = chat_requests(&llm)[before..]
            .iter()
            .filter(|r| is_triage_call(r))
            .map(|r| r.body.to_string().len())
            .collect();
        by_schema.entry(schema).or_default().extend(sizes);
    }
    let mut all = Vec::new();
    println!(
        "{:<14} {:>6} {:>12} {:>12}",
        "schema", "steps", "median B", "max B"
    );
    for (schema, sizes) in &by_schema {
        let (median, max) = median_max(sizes);
        println!("{schema:<14} {:>6} {median:>12} {max:>12}", sizes.len());
        all.extend(sizes);
    }
    let (median, max) = median_max(&all);
    println!(
        "{:<14} {:>6} {median:>12} {max:>12}   (bytes of JSON sent to the LLM per step)",
        "all",
        all.len()
    );
    server.shutdown().await?;
    Ok(())
}

async fn total_tickets(store: &Arc<dyn heron_core::ports::Store>) -> anyhow::Result<u64> {
    Ok(store
        .count_tickets_by_status()
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum())
}

fn median_max(values: &[usize]) -> (usize, usize) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    (median, sorted.last().copied().unwrap_or(0))
}
