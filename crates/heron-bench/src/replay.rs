//! `replay`: events/s that `heron policy replay` gets through from PostgreSQL, both sides
//! being the example policies (every event is evaluated twice: current and candidate), beside
//! the rate at which the same pages are only read (the database's share of the time).

use anyhow::Context;
use chrono::{Duration, Utc};
use heron_core::ports::{EventHistory, EventScan};
use heron_core::{EventId, EventSource, EventState, NewEvent, SchemaName};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub async fn run(root: &Path, base_url: &str, events: usize, page: usize) -> anyhow::Result<()> {
    let url = super::fresh_database(base_url).await?;
    let store = heron_store::PgStore::connect(&url, 8).await?;
    let payloads = super::payloads(root)?;
    println!(
        "== replay from PostgreSQL: {events} stored events cycling through {} example payloads, \
         pages of {page}",
        payloads.len()
    );
    let start = Utc::now() - Duration::days(1);
    let mut batch = Vec::with_capacity(1000);
    for i in 0..events {
        let (schema, body) = &payloads[i % payloads.len()];
        batch.push(NewEvent {
            id: EventId::new(),
            schema: SchemaName::parse(schema)?,
            source: EventSource::Raw,
            body: body.clone(),
            metadata: serde_json::json!({}),
            idempotency_key: None,
            received_at: start + Duration::milliseconds(i as i64),
        });
        if batch.len() == 1000 || i + 1 == events {
            use heron_core::ports::EventLog;
            store.accept_events(std::mem::take(&mut batch)).await?;
        }
    }
    // As if a worker had processed them (replay reads processed and ignored events).
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        sqlx::query("UPDATE events SET state = 'processed', processed_at = now()")
            .execute(&mut conn)
            .await?;
        sqlx::query("VACUUM ANALYZE events")
            .execute(&mut conn)
            .await?;
        // Flush the set-up's writes now, so that the timed reads do not share the machine
        // with the checkpoint that would otherwise write them out in the middle of the run.
        sqlx::query("CHECKPOINT").execute(&mut conn).await?;
    }
    let store: Arc<dyn EventHistory> = Arc::new(store);

    // Reading alone.
    let started = Instant::now();
    let mut after = None;
    let mut read = 0usize;
    loop {
        let got = store
            .scan_events(&EventScan {
                states: vec![EventState::Processed, EventState::Ignored],
                after,
                limit: page,
                ..EventScan::default()
            })
            .await?;
        read += got.len();
        after = got.last().map(|e| e.id);
        if got.len() < page {
            break;
        }
    }
    let read_secs = started.elapsed().as_secs_f64();

    let options = heron_policy::LoadOptions::default();
    let policies = vec![root.join("policies")];
    let current = Arc::new(heron_policy::PolicySet::load(&policies, &options)?);
    // The candidate: the examples plus one triage rule, as a tuning change would add.
    let copy = tempfile::tempdir()?;
    copy_dir(&root.join("policies"), copy.path())?;
    std::fs::write(
        copy.path().join("tuning.rego"),
        "package triage\n\npublish := \"discard\" if input.alert.metadata.title == \"bench: never\"\n",
    )?;
    let candidate = Arc::new(heron_policy::PolicySet::load(
        &[copy.path().to_path_buf()],
        &options,
    )?);
    let started = Instant::now();
    let report = heron_app::replay::replay(
        store,
        current,
        candidate,
        &heron_app::replay::ReplaySettings {
            page_size: page,
            ..heron_app::replay::ReplaySettings::default()
        },
    )
    .await
    .context("replay")?;
    let replay_secs = started.elapsed().as_secs_f64();
    let changed = report.changed();
    let alerts: u64 = report.schemas.iter().map(|s| s.current.alerts).sum();
    let tickets: u64 = report.schemas.iter().map(|s| s.current.tickets).sum();
    println!(
        "read only:        {read} events in {read_secs:.2} s = {:.0} events/s",
        read as f64 / read_secs
    );
    println!(
        "replay:           {} events ({alerts} alerts, {tickets} simulated tickets per side) in \
         {replay_secs:.2} s = {:.0} events/s (target ≥ 20,000); {} threads; changes found: \
         {changed}",
        report.events,
        report.events as f64 / replay_secs,
        heron_app::replay::ReplaySettings::default().threads,
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
