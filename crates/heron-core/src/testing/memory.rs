//! [`InMemoryStore`]: a stateful [`Store`] held in process memory, for application tests.
//!
//! It keeps exactly the semantics of the database stores (it passes the same conformance
//! suite), so a test that passes against it is a test of the application, not of the fake:
//! - every operation runs under one mutex, which plays the part of a serialisable
//!   transaction: a completion either applies all of its effects or none of them;
//! - completions go through the replay the database stores use
//!   ([`crate::completion::plan`]), so dispositions mean the same here as there;
//! - timestamps are truncated to the microsecond on the way in, as the databases store them;
//! - the dedup target of a fingerprint is tracked in its own index (`targets`), the counterpart
//!   of the unique `dedup_key` column, and an entry only ever names an active ticket;
//! - listings are newest first by id, capped at [`MAX_PAGE`] items per page;
//! - its clock ([`EventQueue::now`]) is the host's, moved by [`InMemoryStore::advance_clock`]
//!   so that application tests can let leases expire or a backlog age without sleeping.

use crate::agent::AgentRun;
use crate::alert::AlertStatus;
use crate::completion::{self, BatchWrite, LockedTicket};
use crate::dashboard::DashboardMetrics;
use crate::investigation::{
    AgentStore, EmbeddingStore, SimilarTicket, TriageJob, TriageJobState, TriageLease,
    TriageOutcome, TriageStats,
};
use crate::ports::{
    AlertBinding, AlertQuery, AlertRepository, EventHistory, EventLog, EventQuery, EventQueue,
    EventScan, Lease, LeasedEvent, NewAlert, NoticeQuery, NoticeRepository, Page, PlannedAlert,
    QueueStats, Store, StoreError, StoreResult, TicketQuery, TicketRepository, scan_limit,
};
use crate::ticket::NewTicket;
use crate::tool::{ToolCache, ToolCacheError};
use crate::{
    Accepted, Alert, AlertId, Comment, CommentId, Event, EventId, EventState, Fingerprint,
    NewEvent, Notice, NoticeId, SchemaName, Ticket, TicketId, TicketStatus, Timestamp,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

mod access;
mod slack;

/// Most items one listing page returns, whatever limit is asked for (a limit of 0 means 1).
pub const MAX_PAGE: usize = 1000;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Added to the host's clock by [`EventQueue::now`].
    clock_offset: chrono::Duration,
    events: BTreeMap<EventId, StoredEvent>,
    /// (schema, idempotency key) → the first event that carried it.
    idempotency: HashMap<(SchemaName, String), EventId>,
    alerts: BTreeMap<AlertId, Alert>,
    tickets: BTreeMap<TicketId, Ticket>,
    /// Fingerprint → its dedup target (the `dedup_key` unique index of the databases).
    targets: HashMap<Fingerprint, TicketId>,
    comments: BTreeMap<CommentId, Comment>,
    notices: BTreeMap<NoticeId, Notice>,
    triage: BTreeMap<TicketId, StoredTriage>,
    runs: BTreeMap<Uuid, AgentRun>,
    /// (ticket, model) → vector.
    embeddings: HashMap<(TicketId, String), Vec<f32>>,
    /// (alert, model) → vector.
    alert_embeddings: HashMap<(AlertId, String), Vec<f32>>,
    /// Alerts waiting for an embedding, by (created_at, id).
    alerts_to_embed: std::collections::BTreeSet<(Timestamp, AlertId)>,
    /// Tool cache: key → (value, expires_at).
    cache: HashMap<String, (String, Timestamp)>,
    slack: slack::SlackMem,
    access: access::AccessMem,
}

#[derive(Debug, Clone)]
struct StoredTriage {
    job: TriageJob,
    next_attempt_at: Option<Timestamp>,
    lease: Option<HeldLease>,
}

impl State {
    /// Every newly opened ticket gets its triage job in the same step (see
    /// [`crate::investigation`]).
    fn enqueue_triage(&mut self, ticket: TicketId, now: Timestamp) {
        let now = micros(now);
        self.triage.insert(
            ticket,
            StoredTriage {
                job: TriageJob {
                    ticket_id: ticket,
                    state: TriageJobState::Pending,
                    attempts: 0,
                    last_error: None,
                    created_at: now,
                    updated_at: now,
                },
                next_attempt_at: Some(now),
                lease: None,
            },
        );
    }

    fn take_off_embedding_list(&mut self, id: AlertId) {
        if let Some(created_at) = self.alerts.get(&id).map(|a| a.created_at) {
            self.alerts_to_embed.remove(&(created_at, id));
        }
    }

    /// The store's clock ([`EventQueue::now`]), for changes the ports give no time for.
    fn clock(&self) -> Timestamp {
        micros(chrono::Utc::now() + self.clock_offset)
    }

    fn held_triage(&mut self, lease: &TriageLease) -> StoreResult<&mut StoredTriage> {
        match self.triage.get_mut(&lease.ticket_id) {
            Some(stored)
                if stored.job.state == TriageJobState::Processing
                    && stored.lease.is_some_and(|held| held.token == lease.token) =>
            {
                Ok(stored)
            }
            _ => Err(StoreError::TriageLeaseLost(lease.ticket_id)),
        }
    }
}

#[derive(Debug, Clone)]
struct StoredEvent {
    event: Event,
    lease: Option<HeldLease>,
}

#[derive(Debug, Clone, Copy)]
struct HeldLease {
    token: Uuid,
    expires_at: Timestamp,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this store's clock forward by `by` (see [`EventQueue::now`]).
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.lock().clock_offset += by;
    }

    /// A panic in another test thread must not wedge this store: every mutation below is
    /// computed before it is applied, so the state behind a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Databases keep microseconds; so does this store, so that round trips compare equal.
pub(crate) fn micros(t: Timestamp) -> Timestamp {
    crate::truncate_to_micros(t)
}

fn page_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

/// Newest-first page of `map` below `before`, keeping the values `keep` accepts.
fn page<K, V>(
    map: &BTreeMap<K, V>,
    before: Option<K>,
    limit: usize,
    keep: impl Fn(&V) -> bool,
) -> Page<V>
where
    K: Ord + Copy + std::fmt::Display,
    V: Clone,
{
    let limit = page_limit(limit);
    let range = match before {
        Some(before) => map.range(..before),
        None => map.range(..),
    };
    let mut found: Vec<(K, V)> = range
        .rev()
        .filter(|(_, v)| keep(v))
        .take(limit + 1)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let next_cursor = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|(k, _)| k.to_string())
    } else {
        None
    };
    Page {
        items: found.into_iter().map(|(_, v)| v).collect(),
        next_cursor,
    }
}

/// A freshly opened ticket for its first alert, seen at `seen`.
pub(crate) fn open_ticket(new: &NewTicket, seen: Timestamp) -> Ticket {
    let created = micros(new.created_at);
    Ticket {
        id: new.id,
        title: new.title.clone(),
        description: new.description.clone(),
        schema: new.schema.clone(),
        status: TicketStatus::Open,
        severity: new.severity,
        conclusion: None,
        reason: None,
        assignee: new.assignee.clone(),
        tags: new.tags.clone(),
        attributes: new.attributes.clone(),
        channel: new.channel.clone(),
        fingerprint: new.fingerprint.clone(),
        finding: None,
        alert_count: 1,
        first_seen: micros(seen),
        last_seen: micros(seen),
        acked_at: None,
        resolved_at: None,
        created_at: created,
        updated_at: created,
        version: 1,
    }
}

impl State {
    /// The event behind `lease` if the lease is still the current one.
    fn held(&mut self, lease: &Lease) -> StoreResult<&mut StoredEvent> {
        match self.events.get_mut(&lease.event_id) {
            Some(stored)
                if stored.event.state == EventState::Processing
                    && stored.lease.is_some_and(|held| held.token == lease.token) =>
            {
                Ok(stored)
            }
            _ => Err(StoreError::LeaseLost(lease.event_id)),
        }
    }

    /// The ticket row as a database store locks it: its dedup key is the fingerprint while
    /// `targets` names it.
    fn locked(&self, ticket: &Ticket) -> LockedTicket {
        let target = self.targets.get(&ticket.fingerprint) == Some(&ticket.id);
        LockedTicket {
            id: ticket.id,
            dedup_key: target.then(|| ticket.fingerprint.clone()),
            active: ticket.status.is_active(),
            last_seen: ticket.last_seen,
        }
    }

    /// `complete_events` on the locked state, the way the database stores do it: the rows the
    /// batch can touch go through the shared replay ([`completion::plan`]), whose write is
    /// then checked (ids a unique index would refuse fail the whole batch) and applied.
    fn complete_all(
        &mut self,
        batch: Vec<(Lease, Vec<PlannedAlert>)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        let held: HashSet<EventId> = batch
            .iter()
            .filter_map(|(lease, _)| self.held(lease).ok().map(|_| lease.event_id))
            .collect();
        let (ids, fingerprints) = completion::lock_set(&batch, &held);
        let mut locked: BTreeMap<TicketId, LockedTicket> = BTreeMap::new();
        let by_target = fingerprints.iter().filter_map(|f| self.targets.get(f));
        for id in ids.iter().chain(by_target) {
            if let Some(ticket) = self.tickets.get(id) {
                locked.insert(*id, self.locked(ticket));
            }
        }
        let write = completion::plan(batch, &held, locked.into_values().collect());
        self.check_unique(&write)?;

        let now = micros(now);
        for update in &write.updates {
            if let Some(ticket) = self.tickets.get_mut(&update.id) {
                ticket.alert_count += u64::try_from(update.added).unwrap_or(0);
                ticket.last_seen = ticket.last_seen.max(micros(update.last_seen));
                if update.release && self.targets.get(&ticket.fingerprint) == Some(&ticket.id) {
                    self.targets.remove(&ticket.fingerprint);
                }
            }
        }
        for opened in &write.opened {
            let mut ticket = open_ticket(&opened.ticket, opened.first_seen);
            ticket.alert_count = u64::try_from(opened.count).unwrap_or(0);
            ticket.last_seen = micros(opened.last_seen);
            if let Some(fingerprint) = &opened.dedup_key {
                self.targets.insert(fingerprint.clone(), ticket.id);
            }
            self.enqueue_triage(ticket.id, now);
            self.tickets.insert(ticket.id, ticket);
        }
        for notice in &write.notices {
            if let Some((alert, _)) = write.alerts.get(notice.alert) {
                self.notices.insert(
                    notice.id,
                    Notice {
                        id: notice.id,
                        alert_id: alert.id,
                        schema: alert.schema.clone(),
                        title: notice.title.clone(),
                        severity: alert.severity,
                        channel: notice.channel.clone(),
                        created_at: now,
                        ticket_id: None,
                    },
                );
            }
        }
        for (alert, binding) in write.alerts {
            let alert = stored_alert(alert, binding);
            self.alerts_to_embed.insert((alert.created_at, alert.id));
            self.alerts.insert(alert.id, alert);
        }
        for (id, state) in write.events {
            if let Some(stored) = self.events.get_mut(&id) {
                stored.event.state = state;
                stored.event.processed_at = Some(now);
                stored.event.next_attempt_at = None;
                stored.event.last_error = None;
                stored.lease = None;
            }
        }
        Ok(write.results)
    }

    /// What the databases' unique indexes refuse: ids, of alerts, notices and opened tickets,
    /// that exist already or twice in the write.
    fn check_unique(&self, write: &BatchWrite) -> StoreResult<()> {
        let mut alerts = HashSet::new();
        for (alert, _) in &write.alerts {
            if self.alerts.contains_key(&alert.id) || !alerts.insert(alert.id) {
                return Err(StoreError::Conflict(format!(
                    "alert {} already exists",
                    alert.id
                )));
            }
        }
        let mut notices = HashSet::new();
        for notice in &write.notices {
            if self.notices.contains_key(&notice.id) || !notices.insert(notice.id) {
                return Err(StoreError::Conflict(format!(
                    "notice {} already exists",
                    notice.id
                )));
            }
        }
        for opened in &write.opened {
            if self.tickets.contains_key(&opened.ticket.id) {
                return Err(StoreError::Conflict(format!(
                    "ticket {} already exists",
                    opened.ticket.id
                )));
            }
        }
        Ok(())
    }
}

/// A planned alert as stored, bound as `binding` says.
fn stored_alert(alert: NewAlert, binding: AlertBinding) -> Alert {
    let (ticket_id, notice_id) = match binding {
        AlertBinding::Attached(id) | AlertBinding::Opened(id) => (Some(id), None),
        AlertBinding::Noticed(id) => (None, Some(id)),
        AlertBinding::Discarded => (None, None),
    };
    Alert {
        id: alert.id,
        event_id: alert.event_id,
        schema: alert.schema,
        title: alert.title,
        description: alert.description,
        title_source: alert.title_source,
        description_source: alert.description_source,
        attributes: alert.attributes,
        tags: alert.tags,
        severity: alert.severity,
        fingerprint: alert.fingerprint,
        channel: alert.channel,
        data: alert.data,
        status: binding.status(),
        ticket_id,
        notice_id,
        created_at: micros(alert.created_at),
    }
}

/// The (schema, idempotency key) an event is deduplicated on, if it has a key.
fn dedup_key(event: &NewEvent) -> Option<(SchemaName, String)> {
    event
        .idempotency_key
        .as_ref()
        .map(|key| (event.schema.clone(), key.clone()))
}

fn event_exists(id: EventId) -> StoreError {
    StoreError::Conflict(format!("event {id} already exists"))
}

impl State {
    /// Stores a new `pending` event, due at once; the caller checked it is not a duplicate.
    fn insert_event(&mut self, event: NewEvent) {
        if let Some(key) = dedup_key(&event) {
            self.idempotency.insert(key, event.id);
        }
        let received_at = micros(event.received_at);
        let stored = Event {
            id: event.id,
            schema: event.schema,
            source: event.source,
            body: event.body,
            metadata: event.metadata,
            idempotency_key: event.idempotency_key,
            state: EventState::Pending,
            attempts: 0,
            last_error: None,
            received_at,
            processed_at: None,
            next_attempt_at: Some(received_at),
        };
        self.events.insert(
            stored.id,
            StoredEvent {
                event: stored,
                lease: None,
            },
        );
    }
}

#[async_trait]
impl EventLog for InMemoryStore {
    async fn accept_event(&self, event: NewEvent) -> StoreResult<Accepted> {
        let mut state = self.lock();
        if let Some(first) = dedup_key(&event).and_then(|key| state.idempotency.get(&key)) {
            return Ok(Accepted {
                event_id: *first,
                duplicate: true,
            });
        }
        if state.events.contains_key(&event.id) {
            return Err(event_exists(event.id));
        }
        let event_id = event.id;
        state.insert_event(event);
        Ok(Accepted {
            event_id,
            duplicate: false,
        })
    }

    /// Every item is checked before any is stored, so an error leaves the store untouched.
    async fn accept_events(&self, events: Vec<NewEvent>) -> StoreResult<Vec<Accepted>> {
        let mut state = self.lock();
        let mut batch_keys: HashMap<(SchemaName, String), EventId> = HashMap::new();
        let mut batch_ids: HashSet<EventId> = HashSet::new();
        let mut answers = Vec::with_capacity(events.len());
        let mut fresh = Vec::new();
        for event in events {
            let key = dedup_key(&event);
            let first = key.as_ref().and_then(|key| {
                state
                    .idempotency
                    .get(key)
                    .or_else(|| batch_keys.get(key))
                    .copied()
            });
            if let Some(first) = first {
                answers.push(Accepted {
                    event_id: first,
                    duplicate: true,
                });
                continue;
            }
            if state.events.contains_key(&event.id) || !batch_ids.insert(event.id) {
                return Err(event_exists(event.id));
            }
            if let Some(key) = key {
                batch_keys.insert(key, event.id);
            }
            answers.push(Accepted {
                event_id: event.id,
                duplicate: false,
            });
            fresh.push(event);
        }
        for event in fresh {
            state.insert_event(event);
        }
        Ok(answers)
    }

    async fn get_event(&self, id: EventId) -> StoreResult<Option<Event>> {
        Ok(self.lock().events.get(&id).map(|s| s.event.clone()))
    }

    async fn list_events(&self, query: &EventQuery) -> StoreResult<Page<Event>> {
        let state = self.lock();
        let page = page(&state.events, query.before, query.limit, |s| {
            query.state.is_none_or(|want| s.event.state == want)
                && query
                    .schema
                    .as_ref()
                    .is_none_or(|want| &s.event.schema == want)
        });
        Ok(Page {
            items: page.items.into_iter().map(|s| s.event).collect(),
            next_cursor: page.next_cursor,
        })
    }

    async fn retry_event(&self, id: EventId, now: Timestamp) -> StoreResult<Event> {
        let mut state = self.lock();
        let stored = state
            .events
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("event {id}")))?;
        match stored.event.state {
            EventState::Failed | EventState::Ignored => {
                make_due(stored, now);
                Ok(stored.event.clone())
            }
            other => Err(StoreError::Conflict(format!(
                "event {id} is {other}; only failed or ignored events can be retried"
            ))),
        }
    }

    async fn retry_failed_events(&self, now: Timestamp) -> StoreResult<u64> {
        let mut state = self.lock();
        let mut count = 0;
        for stored in state.events.values_mut() {
            if stored.event.state == EventState::Failed {
                make_due(stored, now);
                count += 1;
            }
        }
        Ok(count)
    }

    async fn queue_stats(&self, _now: Timestamp) -> StoreResult<QueueStats> {
        let state = self.lock();
        let mut stats = QueueStats::default();
        for stored in state.events.values() {
            match stored.event.state {
                EventState::Pending => stats.pending += 1,
                EventState::Processing => stats.processing += 1,
                EventState::Failed => stats.failed += 1,
                EventState::Waiting => stats.waiting += 1,
                EventState::Processed | EventState::Ignored => {}
            }
        }
        Ok(stats)
    }
}

/// Back to `pending`, due at `now`, with no error, no completion time and a fresh count of
/// attempts.
fn make_due(stored: &mut StoredEvent, now: Timestamp) {
    stored.event.state = EventState::Pending;
    stored.event.attempts = 0;
    stored.event.next_attempt_at = Some(micros(now));
    stored.event.last_error = None;
    stored.event.processed_at = None;
    stored.lease = None;
}

#[async_trait]
impl EventQueue for InMemoryStore {
    async fn now(&self) -> StoreResult<Timestamp> {
        let offset = self.lock().clock_offset;
        Ok(micros(chrono::Utc::now() + offset))
    }

    async fn lease_events(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Vec<LeasedEvent>> {
        let mut state = self.lock();
        let now = micros(now);
        let mut due: Vec<(Option<Timestamp>, EventId)> = state
            .events
            .values()
            .filter(|s| match s.event.state {
                EventState::Pending => s.event.next_attempt_at.is_some_and(|at| at <= now),
                EventState::Processing => s.lease.is_none_or(|held| held.expires_at < now),
                _ => false,
            })
            .map(|s| (s.event.next_attempt_at, s.event.id))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        let mut leased = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some(stored) = state.events.get_mut(&id) {
                if stored.event.state == EventState::Processing
                    && stored.event.attempts >= max_attempts
                {
                    stored.event.state = EventState::Failed;
                    stored.event.last_error =
                        Some(crate::ports::lease_expired_error(stored.event.attempts));
                    stored.event.next_attempt_at = None;
                    stored.lease = None;
                    continue;
                }
                let token = Uuid::new_v4();
                stored.event.state = EventState::Processing;
                stored.event.attempts += 1;
                stored.lease = Some(HeldLease {
                    token,
                    expires_at: micros(lease_until),
                });
                leased.push(LeasedEvent {
                    event: stored.event.clone(),
                    lease: Lease {
                        event_id: id,
                        token,
                    },
                });
            }
        }
        Ok(leased)
    }

    async fn find_dedup_ticket(
        &self,
        fingerprint: &Fingerprint,
        seen_since: Timestamp,
    ) -> StoreResult<Option<TicketId>> {
        let state = self.lock();
        Ok(state
            .targets
            .get(fingerprint)
            .filter(|id| {
                state
                    .tickets
                    .get(id)
                    .is_some_and(|t| t.last_seen >= micros(seen_since))
            })
            .copied())
    }

    async fn complete_event(
        &self,
        lease: &Lease,
        alerts: Vec<PlannedAlert>,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertBinding>> {
        completion::single(self.lock().complete_all(vec![(lease.clone(), alerts)], now))
    }

    /// Under one hold of the mutex: atomic as a whole, each event replayed on its own so that
    /// a conflicting one leaves no trace.
    async fn complete_events(
        &self,
        batch: Vec<(Lease, Vec<PlannedAlert>)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        self.lock().complete_all(batch, now)
    }

    async fn fail_event(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.held(lease)?;
        stored.event.state = if retry_at.is_some() {
            EventState::Pending
        } else {
            EventState::Failed
        };
        stored.event.next_attempt_at = retry_at.map(micros);
        stored.event.last_error = Some(error.to_owned());
        stored.lease = None;
        Ok(())
    }

    async fn extend_lease(&self, lease: &Lease, until: Timestamp) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.held(lease)?;
        stored.lease = Some(HeldLease {
            token: lease.token,
            expires_at: micros(until),
        });
        Ok(())
    }

    async fn release_event(&self, lease: &Lease) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.held(lease)?;
        // `next_attempt_at` still holds the due time it was leased at, which is not after any
        // `now` a worker will lease with: the event is due at once and keeps its place.
        stored.event.state = EventState::Pending;
        stored.event.attempts = stored.event.attempts.saturating_sub(1);
        stored.lease = None;
        Ok(())
    }

    async fn hold_event(&self, lease: &Lease, note: &str) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.held(lease)?;
        stored.event.state = EventState::Waiting;
        stored.event.attempts = stored.event.attempts.saturating_sub(1);
        stored.event.last_error = Some(note.to_owned());
        stored.lease = None;
        Ok(())
    }

    async fn resume_waiting_events(&self, now: Timestamp, limit: u64) -> StoreResult<u64> {
        let mut state = self.lock();
        let mut resumed = 0;
        // Events are kept in id order: the oldest come back first.
        for stored in state.events.values_mut() {
            if resumed >= limit {
                break;
            }
            if stored.event.state == EventState::Waiting {
                stored.event.state = EventState::Pending;
                stored.event.next_attempt_at = Some(micros(now));
                stored.event.last_error = None;
                resumed += 1;
            }
        }
        Ok(resumed)
    }
}

#[async_trait]
impl TicketRepository for InMemoryStore {
    async fn get_ticket(&self, id: TicketId) -> StoreResult<Option<Ticket>> {
        Ok(self.lock().tickets.get(&id).cloned())
    }

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Page<Ticket>> {
        use crate::dashboard::{SortDirection, TicketCursor, TicketSortKey, severity_rank};
        let cursor = query.checked_cursor()?;
        let state = self.lock();
        let text = query.text.as_ref().map(|t| t.to_lowercase());
        let sort_key = |t: &Ticket| match query.sort.key {
            TicketSortKey::Created => (0, t.id),
            TicketSortKey::Updated => (t.updated_at.timestamp_micros(), t.id),
            TicketSortKey::Severity => (severity_rank(t.severity), t.id),
        };
        let cursor_key = cursor.map(|c| match c {
            TicketCursor::Created(id) => (0, id),
            TicketCursor::Updated(at, id) => (at.timestamp_micros(), id),
            TicketCursor::Severity(severity, id) => (severity_rank(severity), id),
        });
        let descending = query.sort.direction == SortDirection::Desc;
        let mut found: Vec<&Ticket> = state
            .tickets
            .values()
            .filter(|t| {
                query.status.is_none_or(|want| t.status == want)
                    && query.severity.is_none_or(|want| t.severity == want)
                    && query
                        .assignee
                        .as_ref()
                        .is_none_or(|want| t.assignee.as_ref() == Some(want))
                    && query.tag.as_ref().is_none_or(|want| t.tags.contains(want))
                    && text.as_ref().is_none_or(|want| {
                        t.title.to_lowercase().contains(want)
                            || t.description.to_lowercase().contains(want)
                    })
                    && cursor_key.is_none_or(|after| {
                        if descending {
                            sort_key(t) < after
                        } else {
                            sort_key(t) > after
                        }
                    })
            })
            .collect();
        found.sort_by_key(|t| sort_key(t));
        if descending {
            found.reverse();
        }
        let limit = page_limit(query.limit);
        let next_cursor = (found.len() > limit)
            .then(|| TicketCursor::after(found[limit - 1], query.sort.key).to_string());
        Ok(Page {
            items: found.into_iter().take(limit).cloned().collect(),
            next_cursor,
        })
    }

    async fn update_ticket(&self, ticket: &Ticket) -> StoreResult<Ticket> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let stored = state
            .tickets
            .get_mut(&ticket.id)
            .ok_or_else(|| StoreError::NotFound(format!("ticket {}", ticket.id)))?;
        if stored.version != ticket.version {
            return Err(StoreError::Conflict(format!(
                "ticket {} is at version {}, not {}",
                ticket.id, stored.version, ticket.version
            )));
        }
        stored.status = ticket.status;
        stored.severity = ticket.severity;
        stored.conclusion = ticket.conclusion;
        stored.reason = ticket.reason.clone();
        stored.assignee = ticket.assignee.clone();
        stored.tags = ticket.tags.clone();
        stored.title = ticket.title.clone();
        stored.description = ticket.description.clone();
        stored.finding = ticket.finding.clone();
        stored.acked_at = ticket.acked_at.map(micros);
        stored.resolved_at = ticket.resolved_at.map(micros);
        stored.updated_at = micros(ticket.updated_at);
        stored.version += 1;
        if !stored.status.is_active() && state.targets.get(&stored.fingerprint) == Some(&stored.id)
        {
            state.targets.remove(&stored.fingerprint);
        }
        Ok(stored.clone())
    }

    async fn count_tickets_by_status(&self) -> StoreResult<Vec<(TicketStatus, u64)>> {
        let state = self.lock();
        Ok(TicketStatus::ALL
            .iter()
            .map(|status| {
                let n = state
                    .tickets
                    .values()
                    .filter(|t| t.status == *status)
                    .count();
                (*status, n as u64)
            })
            .collect())
    }

    async fn dashboard_metrics(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<DashboardMetrics> {
        use crate::dashboard::{DayValue, MAX_TICKET_TIMES, SEVERITIES_DESC, TicketTimes};
        use crate::{Conclusion, Severity};
        let state = self.lock();
        let within = |t: Timestamp| since <= t && t < until;
        fn per_day(values: impl Iterator<Item = (Timestamp, u64)>) -> Vec<DayValue> {
            let mut days: BTreeMap<chrono::NaiveDate, u64> = BTreeMap::new();
            for (at, n) in values {
                *days.entry(at.date_naive()).or_default() += n;
            }
            days.into_iter()
                .map(|(day, value)| DayValue { day, value })
                .collect()
        }
        let tickets: Vec<&Ticket> = state
            .tickets
            .values()
            .filter(|t| within(t.created_at))
            .collect();
        let count =
            |keep: &dyn Fn(&Ticket) -> bool| tickets.iter().filter(|t| keep(t)).count() as u64;
        let runs: Vec<&AgentRun> = state
            .runs
            .values()
            .filter(|r| within(r.started_at))
            .collect();
        let mut times: Vec<&Ticket> = tickets.clone();
        times.sort_by_key(|t| std::cmp::Reverse(t.id));
        times.truncate(MAX_TICKET_TIMES);
        times.sort_by_key(|t| (t.created_at, t.id));
        Ok(DashboardMetrics {
            since,
            until,
            alerts_per_day: per_day(
                state
                    .alerts
                    .values()
                    .filter(|a| within(a.created_at))
                    .map(|a| (a.created_at, 1)),
            ),
            tickets_by_status: TicketStatus::ALL
                .iter()
                .map(|s| (*s, count(&|t| t.status == *s)))
                .collect(),
            tickets_by_severity: SEVERITIES_DESC
                .iter()
                .map(|s: &Severity| (*s, count(&|t| t.severity == *s)))
                .collect(),
            conclusions: Conclusion::ALL
                .iter()
                .map(|c| (*c, count(&|t| t.conclusion == Some(*c))))
                .collect(),
            tokens_per_day: per_day(
                runs.iter()
                    .map(|r| (r.started_at, u64::from(r.usage.total_tokens))),
            ),
            bigquery_bytes_per_day: per_day(runs.iter().flat_map(|r| {
                r.steps
                    .iter()
                    .filter_map(|s| s.bytes_processed.map(|b| (r.started_at, b)))
            })),
            ticket_times: times
                .into_iter()
                .map(|t| TicketTimes {
                    created_at: t.created_at,
                    acked_at: t.acked_at,
                    resolved_at: t.resolved_at,
                })
                .collect(),
        })
    }

    async fn add_comment(&self, comment: Comment) -> StoreResult<Comment> {
        let mut state = self.lock();
        if !state.tickets.contains_key(&comment.ticket_id) {
            return Err(StoreError::NotFound(format!(
                "ticket {}",
                comment.ticket_id
            )));
        }
        if state.comments.contains_key(&comment.id) {
            return Err(StoreError::Conflict(format!(
                "comment {} already exists",
                comment.id
            )));
        }
        let comment = Comment {
            created_at: micros(comment.created_at),
            ..comment
        };
        state.comments.insert(comment.id, comment.clone());
        Ok(comment)
    }

    async fn list_comments(&self, ticket: TicketId) -> StoreResult<Vec<Comment>> {
        let state = self.lock();
        let mut comments: Vec<Comment> = state
            .comments
            .values()
            .filter(|c| c.ticket_id == ticket)
            .cloned()
            .collect();
        comments.sort_by_key(|c| (c.created_at, c.id));
        Ok(comments)
    }
}

#[async_trait]
impl AlertRepository for InMemoryStore {
    async fn get_alert(&self, id: AlertId) -> StoreResult<Option<Alert>> {
        Ok(self.lock().alerts.get(&id).cloned())
    }

    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Page<Alert>> {
        let state = self.lock();
        Ok(page(&state.alerts, query.before, query.limit, |a| {
            query.schema.as_ref().is_none_or(|want| &a.schema == want)
                && query.ticket.is_none_or(|want| a.ticket_id == Some(want))
                && (!query.unbound || a.ticket_id.is_none())
        }))
    }

    async fn tickets_of_events(&self, events: &[EventId]) -> StoreResult<Vec<TicketId>> {
        let wanted: std::collections::HashSet<_> = events.iter().collect();
        let state = self.lock();
        let tickets: std::collections::BTreeSet<TicketId> = state
            .alerts
            .values()
            .filter(|a| wanted.contains(&a.event_id))
            .filter_map(|a| a.ticket_id)
            .collect();
        Ok(tickets.into_iter().collect())
    }

    async fn bind_alert(&self, alert: AlertId, ticket: TicketId) -> StoreResult<Alert> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let stored = state
            .alerts
            .get(&alert)
            .ok_or_else(|| StoreError::NotFound(format!("alert {alert}")))?;
        if let Some(bound) = stored.ticket_id {
            return Err(StoreError::Conflict(format!(
                "alert {alert} is already on ticket {bound}"
            )));
        }
        let target = state
            .tickets
            .get_mut(&ticket)
            .ok_or_else(|| StoreError::NotFound(format!("ticket {ticket}")))?;
        target.alert_count += 1;
        target.last_seen = target.last_seen.max(stored.created_at);
        if let Some(notice) = stored.notice_id.and_then(|n| state.notices.get_mut(&n))
            && notice.ticket_id.is_none()
        {
            notice.ticket_id = Some(ticket);
        }
        let stored = state
            .alerts
            .get_mut(&alert)
            .ok_or_else(|| StoreError::NotFound(format!("alert {alert}")))?;
        stored.ticket_id = Some(ticket);
        stored.status = AlertStatus::Ticketed;
        Ok(stored.clone())
    }
}

#[async_trait]
impl NoticeRepository for InMemoryStore {
    async fn get_notice(&self, id: NoticeId) -> StoreResult<Option<Notice>> {
        Ok(self.lock().notices.get(&id).cloned())
    }

    async fn list_notices(&self, query: &NoticeQuery) -> StoreResult<Page<Notice>> {
        let state = self.lock();
        Ok(page(&state.notices, query.before, query.limit, |n| {
            query
                .escalated
                .is_none_or(|want| n.ticket_id.is_some() == want)
        }))
    }

    async fn escalate_notice(&self, id: NoticeId, ticket: NewTicket) -> StoreResult<Ticket> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let notice = state
            .notices
            .get(&id)
            .ok_or_else(|| StoreError::NotFound(format!("notice {id}")))?;
        if let Some(existing) = notice.ticket_id {
            return Err(StoreError::Conflict(format!(
                "notice {id} was already escalated to ticket {existing}"
            )));
        }
        if state.tickets.contains_key(&ticket.id) {
            return Err(StoreError::Conflict(format!(
                "ticket {} already exists",
                ticket.id
            )));
        }
        let alert_id = notice.alert_id;
        let alert = state
            .alerts
            .get_mut(&alert_id)
            .ok_or_else(|| StoreError::Backend(format!("notice {id} names no stored alert")))?;
        let opened = open_ticket(&ticket, alert.created_at);
        alert.status = AlertStatus::Ticketed;
        alert.ticket_id = Some(opened.id);
        if let Some(notice) = state.notices.get_mut(&id) {
            notice.ticket_id = Some(opened.id);
        }
        state.enqueue_triage(opened.id, opened.created_at);
        state.tickets.insert(opened.id, opened.clone());
        Ok(opened)
    }
}

#[async_trait]
impl EventHistory for InMemoryStore {
    async fn scan_events(&self, scan: &EventScan) -> StoreResult<Vec<Event>> {
        use std::ops::Bound;
        let state = self.lock();
        let start = match scan.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        Ok(state
            .events
            .range((start, Bound::Unbounded))
            .map(|(_, stored)| &stored.event)
            .filter(|e| scan.since.is_none_or(|since| e.received_at >= since))
            .filter(|e| scan.schema.as_ref().is_none_or(|s| &e.schema == s))
            .filter(|e| scan.states.is_empty() || scan.states.contains(&e.state))
            .take(scan_limit(scan.limit))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Store for InMemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl AgentStore for InMemoryStore {
    async fn lease_triage(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Vec<TriageLease>> {
        let mut state = self.lock();
        let now = micros(now);
        let mut due: Vec<(Option<Timestamp>, TicketId)> = state
            .triage
            .values()
            .filter(|s| match s.job.state {
                TriageJobState::Pending => s.next_attempt_at.is_some_and(|at| at <= now),
                TriageJobState::Processing => s.lease.is_none_or(|held| held.expires_at < now),
                _ => false,
            })
            .map(|s| (s.next_attempt_at, s.job.ticket_id))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        let mut leased = Vec::with_capacity(due.len());
        for (_, id) in due {
            let Some(stored) = state.triage.get_mut(&id) else {
                continue;
            };
            if stored.job.state == TriageJobState::Processing && stored.job.attempts >= max_attempts
            {
                stored.job.state = TriageJobState::Failed;
                stored.job.last_error =
                    Some(crate::ports::lease_expired_error(stored.job.attempts));
                stored.job.updated_at = now;
                stored.next_attempt_at = None;
                stored.lease = None;
                continue;
            }
            let token = Uuid::new_v4();
            stored.job.state = TriageJobState::Processing;
            stored.job.attempts += 1;
            stored.job.updated_at = now;
            stored.lease = Some(HeldLease {
                token,
                expires_at: micros(lease_until),
            });
            leased.push(TriageLease {
                ticket_id: id,
                token,
                attempts: stored.job.attempts,
            });
        }
        Ok(leased)
    }

    async fn extend_triage_lease(&self, lease: &TriageLease, until: Timestamp) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.held_triage(lease)?;
        stored.lease = Some(HeldLease {
            token: lease.token,
            expires_at: micros(until),
        });
        Ok(())
    }

    async fn finish_triage(
        &self,
        lease: &TriageLease,
        outcome: TriageOutcome,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.held_triage(lease)?;
        let now = micros(now);
        let (job_state, error) = match outcome {
            TriageOutcome::Ran(run) => {
                if let Some(finding) = &run.finding {
                    let value = serde_json::to_value(finding)
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    if let Some(ticket) = state.tickets.get_mut(&lease.ticket_id) {
                        ticket.finding = Some(value);
                    }
                }
                state.runs.insert(run.id, stored_run(*run));
                (TriageJobState::Done, None)
            }
            TriageOutcome::Skipped(reason) => (TriageJobState::Skipped, Some(reason)),
        };
        if let Some(stored) = state.triage.get_mut(&lease.ticket_id) {
            stored.job.state = job_state;
            stored.job.last_error = error;
            stored.job.updated_at = now;
            stored.next_attempt_at = None;
            stored.lease = None;
        }
        Ok(())
    }

    async fn fail_triage(
        &self,
        lease: &TriageLease,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let now = state.clock();
        let stored = state.held_triage(lease)?;
        stored.job.state = if retry_at.is_some() {
            TriageJobState::Pending
        } else {
            TriageJobState::Failed
        };
        stored.job.last_error = Some(error.to_owned());
        stored.job.updated_at = now;
        stored.next_attempt_at = retry_at.map(micros);
        stored.lease = None;
        Ok(())
    }

    async fn release_triage(&self, lease: &TriageLease) -> StoreResult<()> {
        let mut state = self.lock();
        let now = state.clock();
        let stored = state.held_triage(lease)?;
        stored.job.state = TriageJobState::Pending;
        stored.job.attempts = stored.job.attempts.saturating_sub(1);
        stored.job.updated_at = now;
        // `next_attempt_at` keeps the due time the job was leased at, as a released event
        // does: due at once whatever clock the caller runs on, at the head of the queue.
        stored.lease = None;
        Ok(())
    }

    async fn requeue_triage(&self, ticket: TicketId, now: Timestamp) -> StoreResult<TriageJob> {
        let mut state = self.lock();
        if !state.tickets.contains_key(&ticket) {
            return Err(StoreError::NotFound(format!("ticket {ticket}")));
        }
        let now = micros(now);
        if let Some(stored) = state.triage.get(&ticket)
            && stored.job.state == TriageJobState::Processing
        {
            return Err(StoreError::Conflict(format!(
                "the triage of ticket {ticket} is running"
            )));
        }
        let created_at = state.triage.get(&ticket).map(|s| s.job.created_at);
        state.enqueue_triage(ticket, now);
        let stored = state
            .triage
            .get_mut(&ticket)
            .ok_or_else(|| StoreError::Backend("triage job vanished".into()))?;
        if let Some(created_at) = created_at {
            stored.job.created_at = created_at;
        }
        Ok(stored.job.clone())
    }

    async fn get_triage_job(&self, ticket: TicketId) -> StoreResult<Option<TriageJob>> {
        Ok(self.lock().triage.get(&ticket).map(|s| s.job.clone()))
    }

    async fn triage_stats(&self, _now: Timestamp) -> StoreResult<TriageStats> {
        let state = self.lock();
        let mut stats = TriageStats::default();
        for stored in state.triage.values() {
            match stored.job.state {
                TriageJobState::Pending => stats.pending += 1,
                TriageJobState::Processing => stats.processing += 1,
                TriageJobState::Failed => stats.failed += 1,
                TriageJobState::Done | TriageJobState::Skipped => {}
            }
        }
        Ok(stats)
    }

    async fn save_agent_run(&self, run: &AgentRun) -> StoreResult<()> {
        let mut state = self.lock();
        if !state.tickets.contains_key(&run.ticket_id) {
            return Err(StoreError::NotFound(format!("ticket {}", run.ticket_id)));
        }
        state.runs.insert(run.id, stored_run(run.clone()));
        Ok(())
    }

    async fn list_agent_runs(&self, ticket: TicketId) -> StoreResult<Vec<AgentRun>> {
        let state = self.lock();
        let mut runs: Vec<AgentRun> = state
            .runs
            .values()
            .filter(|r| r.ticket_id == ticket)
            .cloned()
            .collect();
        runs.sort_by_key(|r| (r.started_at, r.id));
        Ok(runs)
    }

    async fn tokens_spent_since(&self, since: Timestamp) -> StoreResult<u64> {
        let state = self.lock();
        Ok(state
            .runs
            .values()
            .filter(|r| r.started_at >= since)
            .map(|r| u64::from(r.usage.total_tokens))
            .sum())
    }
}

/// What a database keeps of a run: timestamps to the microsecond.
fn stored_run(mut run: AgentRun) -> AgentRun {
    run.started_at = micros(run.started_at);
    run.finished_at = run.finished_at.map(micros);
    run
}

#[async_trait]
impl EmbeddingStore for InMemoryStore {
    async fn put_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
        vector: &[f32],
    ) -> StoreResult<()> {
        let mut state = self.lock();
        if !state.tickets.contains_key(&ticket) {
            return Err(StoreError::NotFound(format!("ticket {ticket}")));
        }
        state
            .embeddings
            .insert((ticket, model.to_owned()), vector.to_vec());
        Ok(())
    }

    async fn get_ticket_embedding(
        &self,
        ticket: TicketId,
        model: &str,
    ) -> StoreResult<Option<Vec<f32>>> {
        Ok(self
            .lock()
            .embeddings
            .get(&(ticket, model.to_owned()))
            .cloned())
    }

    async fn similar_tickets(
        &self,
        model: &str,
        vector: &[f32],
        limit: usize,
        exclude: Option<TicketId>,
    ) -> StoreResult<Vec<SimilarTicket>> {
        let state = self.lock();
        let mut scored: Vec<(f64, TicketId)> = state
            .embeddings
            .iter()
            .filter(|((id, m), v)| m == model && v.len() == vector.len() && Some(*id) != exclude)
            .map(|((id, _), v)| (crate::investigation::cosine_similarity(vector, v), *id))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(limit);
        Ok(scored
            .into_iter()
            .filter_map(|(score, id)| {
                state.tickets.get(&id).map(|t| SimilarTicket {
                    ticket_id: t.id,
                    title: t.title.clone(),
                    status: t.status,
                    conclusion: t.conclusion,
                    reason: t.reason.clone(),
                    finding: t.finding.clone(),
                    created_at: t.created_at,
                    score,
                })
            })
            .collect())
    }

    async fn alerts_to_embed(&self, limit: usize) -> StoreResult<Vec<Alert>> {
        let state = self.lock();
        Ok(state
            .alerts_to_embed
            .iter()
            .take(limit)
            .filter_map(|(_, id)| state.alerts.get(id).cloned())
            .collect())
    }

    async fn put_alert_embeddings(
        &self,
        model: &str,
        vectors: &[(AlertId, Vec<f32>)],
    ) -> StoreResult<()> {
        let mut state = self.lock();
        if let Some((missing, _)) = vectors
            .iter()
            .find(|(id, _)| !state.alerts.contains_key(id))
        {
            return Err(StoreError::NotFound(format!("alert {missing}")));
        }
        for (id, vector) in vectors {
            state
                .alert_embeddings
                .insert((*id, model.to_owned()), vector.clone());
            state.take_off_embedding_list(*id);
        }
        Ok(())
    }

    async fn skip_alert_embeddings(&self, alerts: &[AlertId]) -> StoreResult<()> {
        let mut state = self.lock();
        for id in alerts {
            state.take_off_embedding_list(*id);
        }
        Ok(())
    }

    async fn get_alert_embedding(
        &self,
        alert: AlertId,
        model: &str,
    ) -> StoreResult<Option<Vec<f32>>> {
        Ok(self
            .lock()
            .alert_embeddings
            .get(&(alert, model.to_owned()))
            .cloned())
    }
}

#[async_trait]
impl ToolCache for InMemoryStore {
    async fn get(&self, key: &str, now: Timestamp) -> Result<Option<String>, ToolCacheError> {
        Ok(self
            .lock()
            .cache
            .get(key)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(value, _)| value.clone()))
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        expires_at: Timestamp,
    ) -> Result<(), ToolCacheError> {
        self.lock()
            .cache
            .insert(key.to_owned(), (value.to_owned(), micros(expires_at)));
        Ok(())
    }
}
