//! Replay: what a candidate policy set would have done with the events already stored,
//! compared with what the current set does with them.
//!
//! Each side (current, candidate) runs the worker's own steps on every event, oldest first:
//! ingest, alerts and fingerprints ([`pipeline::alerts_from_drafts`]), deduplication against
//! the tickets *this replay* opened (same fingerprint, seen within the dedup window: attach,
//! no triage), and `data.triage` ([`pipeline::triage_alert`]) for an alert that would open a
//! ticket. The two sides are then compared alert by alert (an alert is identified by its
//! event and its position among that event's alerts).
//!
//! Cost: ingest dominates (one policy evaluation per event and side). It runs on the fast
//! evaluator ([`PolicyEngine::ingest_unchecked`], regorus's VM), and again on the worker's
//! own for the events whose two outcomes differ, so every reported change is what the worker
//! would do. When both sets report the same [`PolicyEngine::ingest_digest`] (the change is in
//! triage or enrich only), ingest runs once per event for both sides. Ingest of a page runs
//! on several threads; the two simulations (sequential by nature: dedup depends on the
//! order) run beside each other.
//!
//! Invariants:
//! - replay only reads: it is given an [`EventHistory`], which has no method that writes, and
//!   it keeps its simulated tickets in memory;
//! - no model is called: the metadata and enrich stages are skipped and `data.triage` gets an
//!   empty `enrich` list on both sides (the report says whether a side has a `data.enrich`
//!   package whose results it therefore did not see);
//! - the simulation starts with no tickets: an alert that joined a ticket opened before the
//!   replay window opens one in the replay, on both sides alike.

use crate::pipeline;
use heron_core::policy::{IngestOutput, PolicyEngine, Publish};
use heron_core::ports::{Disposition, EventHistory, EventScan, NewAlert, StoreError};
use heron_core::{Event, EventId, EventState, Fingerprint, SchemaName, Severity, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// Only events received at or after this.
    pub since: Option<Timestamp>,
    pub schema: Option<SchemaName>,
    /// Events read per round trip.
    pub page_size: usize,
    /// The worker's dedup window.
    pub dedup_window: std::time::Duration,
    /// Example event ids kept per kind of change.
    pub examples: usize,
    /// Threads evaluating ingest (the two simulations take one each after it).
    pub threads: usize,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            since: None,
            schema: None,
            page_size: 2_000,
            dedup_window: std::time::Duration::from_secs(24 * 3600),
            examples: 5,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read stored events: {0}")]
    Store(#[from] StoreError),
    #[error("replay stopped: {0}")]
    Task(String),
}

/// What a replay found.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Events replayed (processed and ignored ones; pending, in-flight and failed events are
    /// skipped: the current set has not decided them).
    pub events: u64,
    /// Whether each side has a `data.enrich` package, whose tasks replay did not run.
    pub enrich_skipped: Sides<bool>,
    /// Per schema, by name.
    pub schemas: Vec<SchemaReplay>,
}

impl ReplayReport {
    /// Whether any schema shows a change.
    pub fn changed(&self) -> bool {
        self.schemas.iter().any(|s| !s.changes.is_empty())
    }

    pub fn schema(&self, name: &str) -> Option<&SchemaReplay> {
        self.schemas.iter().find(|s| s.schema.as_str() == name)
    }
}

/// A pair of values, one per policy set.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Sides<T> {
    pub current: T,
    pub candidate: T,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SchemaReplay {
    pub schema: SchemaName,
    pub events: u64,
    pub current: SideTotals,
    pub candidate: SideTotals,
    /// Kinds of change with how many alerts (or events, or tickets) and example event ids,
    /// sorted by kind.
    pub changes: Vec<Change>,
}

impl SchemaReplay {
    pub fn change(&self, kind: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.kind == kind)
    }
}

/// What one policy set did with a schema's events.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SideTotals {
    /// Alerts the ingest policy made.
    pub alerts: u64,
    /// Alerts published as alerts (opening or joining a ticket).
    pub published: u64,
    pub notices: u64,
    pub discarded: u64,
    /// Tickets the replay opened.
    pub tickets: u64,
    /// Events the policy failed on.
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// E.g. `publish alert → discard`, `severity low → high`, `fingerprint changed`,
    /// `tickets merged`, `ingest fewer alerts`, `candidate error`.
    pub kind: String,
    pub count: u64,
    pub examples: Vec<EventId>,
}

/// An event as both sides read it. Its body is parsed into a `serde_json::Value` only when
/// something needs one (the worker's own ingest of an event whose outcomes differ, triage of
/// an alert that opens a ticket): the fast ingest reads the stored text itself.
struct Replayed {
    event: Event,
    body: std::sync::OnceLock<Result<serde_json::Value, String>>,
}

impl Replayed {
    fn new(event: Event) -> Self {
        Self {
            event,
            body: std::sync::OnceLock::new(),
        }
    }

    /// The body as the worker reads it, with the worker's refusals.
    fn body(&self) -> Result<&serde_json::Value, String> {
        self.body
            .get_or_init(|| {
                let body = serde_json::from_str::<serde_json::Value>(&self.event.body)
                    .map_err(|e| format!("stored body is not JSON: {e}"))?;
                if body.is_object() {
                    Ok(body)
                } else {
                    Err("stored body is not a JSON object".to_owned())
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[derive(Debug, Clone)]
struct AlertOutcome {
    fingerprint: Fingerprint,
    publish: Publish,
    severity: Severity,
    /// The simulated ticket (this side's numbering) an alert opened or joined.
    ticket: Option<u64>,
    /// Whether the alert opened that ticket.
    opened: bool,
}

type EventOutcome = Result<Vec<AlertOutcome>, String>;

/// One policy set's simulation: its tickets by fingerprint.
struct Side {
    policies: Arc<dyn PolicyEngine>,
    window: chrono::Duration,
    /// Fingerprint → (ticket number, last seen).
    open: HashMap<Fingerprint, (u64, Timestamp)>,
    tickets: u64,
}

/// What ingest made of one event (alerts with fingerprints), or why it failed.
type Ingested = Result<Vec<NewAlert>, String>;

/// What an ingest policy made of one event, or why it failed.
type Drafts = Result<IngestOutput, String>;

/// Ingest of one event, through the fast evaluator ([`PolicyEngine::ingest_unchecked`]) or
/// the worker's own.
fn drafts(policies: &dyn PolicyEngine, replayed: &Replayed, checked: bool) -> Drafts {
    let schema = &replayed.event.schema;
    let output = if checked {
        policies.ingest(schema, replayed.body()?)
    } else {
        policies.ingest_unchecked(schema, &replayed.event.body)
    };
    output.map_err(|e| e.to_string())
}

/// The alerts exactly as the worker would make them from `drafts`, except that `data` (the
/// event) is left out until triage needs it ([`Side::run`]).
fn alerts(replayed: &Replayed, drafts: Drafts) -> Ingested {
    let event = &replayed.event;
    Ok(pipeline::alerts_without_data(
        event.id,
        &event.schema,
        drafts?.alerts,
        event.received_at,
    ))
}

/// Ingest of one event for both sides (the candidate's only unless `shared`). The fast
/// evaluator may turn a rule conflict into fewer alerts where the worker would fail the
/// event, so an event whose two outcomes differ is evaluated again the worker's way, and
/// what replay reports as a change is what the worker would do. (Equal outcomes are equal
/// the worker's way too, or both sides conflict: the worker fails such an event either way.)
fn ingest_both(
    current: &dyn PolicyEngine,
    candidate: &dyn PolicyEngine,
    replayed: &Replayed,
    shared: bool,
) -> (Ingested, Option<Ingested>) {
    let now = drafts(current, replayed, false);
    if shared {
        return (alerts(replayed, now), None);
    }
    let next = drafts(candidate, replayed, false);
    if now == next {
        let same = alerts(replayed, now);
        return (same.clone(), Some(same));
    }
    let now = drafts(current, replayed, true);
    let next = drafts(candidate, replayed, true);
    (alerts(replayed, now), Some(alerts(replayed, next)))
}

impl Side {
    fn new(policies: Arc<dyn PolicyEngine>, window: std::time::Duration) -> Self {
        Self {
            policies,
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
            open: HashMap::new(),
            tickets: 0,
        }
    }

    fn run_page(&mut self, page: &[Replayed], ingested: &[Ingested]) -> Vec<EventOutcome> {
        page.iter()
            .zip(ingested)
            .map(|(r, alerts)| self.run(r, alerts))
            .collect()
    }

    /// Deduplication and triage of one event's alerts, in order. An event whose triage
    /// fails opens nothing (the worker would not commit it).
    fn run(&mut self, replayed: &Replayed, ingested: &Ingested) -> EventOutcome {
        let alerts = ingested.as_ref().map_err(Clone::clone)?;
        let seen = replayed.event.received_at;
        let since = seen.checked_sub_signed(self.window).unwrap_or(seen);
        let mut outcomes = Vec::with_capacity(alerts.len());
        let mut opened_here: Vec<Fingerprint> = Vec::new();
        for alert in alerts {
            if let Some((ticket, last_seen)) = self.open.get_mut(&alert.fingerprint)
                && *last_seen >= since
            {
                *last_seen = (*last_seen).max(seen);
                outcomes.push(AlertOutcome {
                    fingerprint: alert.fingerprint.clone(),
                    publish: Publish::Alert,
                    severity: alert.severity,
                    ticket: Some(*ticket),
                    opened: false,
                });
                continue;
            }
            // Only an alert that would open a ticket is triaged (and copied: triage may
            // rewrite it), with its event as `data`, as the worker gives it.
            let mut alert = alert.clone();
            if let Ok(body) = replayed.body() {
                alert.data = body.clone();
            }
            let disposition =
                match pipeline::triage_alert(&*self.policies, &mut alert, seen, Vec::new()) {
                    Ok(d) => d,
                    Err(e) => {
                        for fingerprint in opened_here {
                            self.open.remove(&fingerprint);
                        }
                        return Err(e.to_string());
                    }
                };
            let (publish, ticket) = match disposition {
                Disposition::Open { .. } | Disposition::Attach { .. } => {
                    self.tickets += 1;
                    self.open
                        .insert(alert.fingerprint.clone(), (self.tickets, seen));
                    opened_here.push(alert.fingerprint.clone());
                    (Publish::Alert, Some(self.tickets))
                }
                Disposition::Notice { .. } => (Publish::Notice, None),
                Disposition::Discard => (Publish::Discard, None),
            };
            outcomes.push(AlertOutcome {
                fingerprint: alert.fingerprint,
                publish,
                severity: alert.severity,
                opened: ticket.is_some(),
                ticket,
            });
        }
        Ok(outcomes)
    }
}

/// Ingest of a page on `threads` threads: for the current set, and for the candidate unless
/// `shared` (equal ingest digests: the candidate's alerts are the current ones).
fn ingest_page(
    page: &[Replayed],
    current: &dyn PolicyEngine,
    candidate: &dyn PolicyEngine,
    shared: bool,
    threads: usize,
) -> (Vec<Ingested>, Option<Vec<Ingested>>) {
    let chunk = page.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<(Vec<Ingested>, Option<Vec<Ingested>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = page
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut now = Vec::with_capacity(part.len());
                    let mut next = (!shared).then(|| Vec::with_capacity(part.len()));
                    for r in part {
                        let (a, b) = ingest_both(current, candidate, r, shared);
                        now.push(a);
                        if let (Some(next), Some(b)) = (next.as_mut(), b) {
                            next.push(b);
                        }
                    }
                    (now, next)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(part) => part,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let mut now = Vec::with_capacity(page.len());
    let mut next = (!shared).then(|| Vec::with_capacity(page.len()));
    for (a, b) in parts {
        now.extend(a);
        if let (Some(next), Some(b)) = (next.as_mut(), b) {
            next.extend(b);
        }
    }
    (now, next)
}

/// Accumulates the comparison, per schema.
#[derive(Default)]
struct Tally {
    events: u64,
    current: SideTotals,
    candidate: SideTotals,
    changes: BTreeMap<String, (u64, Vec<EventId>)>,
    /// Current ticket → candidate tickets its alerts went to (with an example event), and
    /// the reverse: a ticket of one side spread over several of the other is a split or a
    /// merge.
    current_to_candidate: HashMap<u64, (BTreeSet<u64>, EventId)>,
    candidate_to_current: HashMap<u64, (BTreeSet<u64>, EventId)>,
}

impl Tally {
    fn note(&mut self, kind: String, count: u64, event: EventId, examples: usize) {
        let entry = self.changes.entry(kind).or_default();
        entry.0 += count;
        if entry.1.len() < examples && !entry.1.contains(&event) {
            entry.1.push(event);
        }
    }
}

fn totals(side: &mut SideTotals, outcome: &EventOutcome) {
    match outcome {
        Err(_) => side.errors += 1,
        Ok(alerts) => {
            side.alerts += alerts.len() as u64;
            for alert in alerts {
                side.tickets += u64::from(alert.opened);
                match alert.publish {
                    Publish::Alert => side.published += 1,
                    Publish::Notice => side.notices += 1,
                    Publish::Discard => side.discarded += 1,
                }
            }
        }
    }
}

fn publish_label(p: Publish) -> &'static str {
    match p {
        Publish::Alert => "alert",
        Publish::Notice => "notice",
        Publish::Discard => "discard",
    }
}

fn compare(
    tally: &mut Tally,
    id: EventId,
    current: &EventOutcome,
    candidate: &EventOutcome,
    examples: usize,
) {
    tally.events += 1;
    totals(&mut tally.current, current);
    totals(&mut tally.candidate, candidate);
    let (now, next) = match (current, candidate) {
        (Ok(now), Ok(next)) => (now, next),
        (Ok(_), Err(_)) => return tally.note("candidate error".into(), 1, id, examples),
        (Err(_), Ok(_)) => return tally.note("current error fixed".into(), 1, id, examples),
        (Err(_), Err(_)) => return,
    };
    if next.len() < now.len() {
        let dropped = (now.len() - next.len()) as u64;
        tally.note("ingest fewer alerts".into(), dropped, id, examples);
    } else if next.len() > now.len() {
        let added = (next.len() - now.len()) as u64;
        tally.note("ingest more alerts".into(), added, id, examples);
    }
    for (a, b) in now.iter().zip(next) {
        if a.publish != b.publish {
            let kind = format!(
                "publish {} → {}",
                publish_label(a.publish),
                publish_label(b.publish)
            );
            tally.note(kind, 1, id, examples);
        } else if a.severity != b.severity {
            let kind = format!("severity {} → {}", a.severity, b.severity);
            tally.note(kind, 1, id, examples);
        }
        if a.fingerprint != b.fingerprint {
            tally.note("fingerprint changed".into(), 1, id, examples);
        }
        if let (Some(t_now), Some(t_next)) = (a.ticket, b.ticket) {
            tally
                .current_to_candidate
                .entry(t_now)
                .or_insert_with(|| (BTreeSet::new(), id))
                .0
                .insert(t_next);
            tally
                .candidate_to_current
                .entry(t_next)
                .or_insert_with(|| (BTreeSet::new(), id))
                .0
                .insert(t_now);
        }
    }
}

fn finish(schema: SchemaName, mut tally: Tally, examples: usize) -> SchemaReplay {
    for (map, kind) in [
        (&tally.current_to_candidate, "tickets split"),
        (&tally.candidate_to_current, "tickets merged"),
    ] {
        let mut spread: Vec<(u64, EventId)> = map
            .iter()
            .filter(|(_, (others, _))| others.len() > 1)
            .map(|(ticket, (_, example))| (*ticket, *example))
            .collect();
        if spread.is_empty() {
            continue;
        }
        spread.sort();
        tally.changes.insert(
            kind.to_owned(),
            (
                spread.len() as u64,
                spread.iter().take(examples).map(|(_, e)| *e).collect(),
            ),
        );
    }
    SchemaReplay {
        schema,
        events: tally.events,
        current: tally.current,
        candidate: tally.candidate,
        changes: tally
            .changes
            .into_iter()
            .map(|(kind, (count, examples))| Change {
                kind,
                count,
                examples,
            })
            .collect(),
    }
}

/// Replays the stored events `settings` selects through `current` and `candidate` and
/// reports the differences. Reads a page ahead while the two sides evaluate the current one
/// on blocking threads (one per side).
pub async fn replay(
    history: Arc<dyn EventHistory>,
    current: Arc<dyn PolicyEngine>,
    candidate: Arc<dyn PolicyEngine>,
    settings: &ReplaySettings,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport {
        enrich_skipped: Sides {
            current: current.has_enrich(),
            candidate: candidate.has_enrich(),
        },
        ..ReplayReport::default()
    };
    let scan = EventScan {
        since: settings.since,
        schema: settings.schema.clone(),
        states: vec![EventState::Processed, EventState::Ignored],
        after: None,
        limit: settings.page_size,
    };
    let limit = heron_core::ports::scan_limit(settings.page_size);
    // Equal ingest digests: ingest once per event, for both sides.
    let shared = matches!(
        (current.ingest_digest(), candidate.ingest_digest()),
        (Some(a), Some(b)) if a == b
    );
    let mut sides = Some((
        Side::new(current, settings.dedup_window),
        Side::new(candidate, settings.dedup_window),
    ));
    let mut tallies: BTreeMap<SchemaName, Tally> = BTreeMap::new();
    let mut next = Some(tokio::spawn(read_page(history.clone(), scan.clone())));
    while let Some(pending) = next.take() {
        let page = pending
            .await
            .map_err(|e| ReplayError::Task(e.to_string()))??;
        if page.len() == limit
            && let Some(last) = page.last()
        {
            let scan = EventScan {
                after: Some(last.event.id),
                ..scan.clone()
            };
            next = Some(tokio::spawn(read_page(history.clone(), scan)));
        }
        if page.is_empty() {
            break;
        }
        let (mut now, mut cand) = sides
            .take()
            .ok_or_else(|| ReplayError::Task("lost the replay state".into()))?;
        let page = Arc::new(page);
        let threads = settings.threads;
        let work = page.clone();
        let (now, cand, now_outcomes, cand_outcomes) = tokio::task::spawn_blocking(move || {
            let (ingested_now, ingested_cand) =
                ingest_page(&work, &*now.policies, &*cand.policies, shared, threads);
            let ingested_cand = ingested_cand.as_ref().unwrap_or(&ingested_now);
            // The two simulations are independent: one on this thread, one beside it.
            let (now_outcomes, cand_outcomes) = std::thread::scope(|scope| {
                let candidate = scope.spawn(|| cand.run_page(&work, ingested_cand));
                let current = now.run_page(&work, &ingested_now);
                match candidate.join() {
                    Ok(c) => (current, c),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            });
            (now, cand, now_outcomes, cand_outcomes)
        })
        .await
        .map_err(|e| ReplayError::Task(e.to_string()))?;
        for ((replayed, a), b) in page.iter().zip(&now_outcomes).zip(&cand_outcomes) {
            let tally = tallies.entry(replayed.event.schema.clone()).or_default();
            compare(tally, replayed.event.id, a, b, settings.examples);
        }
        report.events += page.len() as u64;
        sides = Some((now, cand));
    }
    report.schemas = tallies
        .into_iter()
        .map(|(schema, tally)| finish(schema, tally, settings.examples))
        .collect();
    Ok(report)
}

async fn read_page(
    history: Arc<dyn EventHistory>,
    scan: EventScan,
) -> Result<Vec<Replayed>, ReplayError> {
    let events = history.scan_events(&scan).await?;
    Ok(events.into_iter().map(Replayed::new).collect())
}
