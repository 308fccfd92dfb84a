//! [`InMemoryStore`]: a stateful [`Store`] held in process memory, for application tests.
//!
//! It keeps exactly the semantics of the database stores (it passes the same conformance
//! suite), so a test that passes against it is a test of the application, not of the fake:
//! - every operation runs under one mutex, which plays the part of a serialisable
//!   transaction: a completion either applies all of its effects or none of them;
//! - timestamps are truncated to the microsecond on the way in, as the databases store them;
//! - the dedup target of a fingerprint is tracked in its own index (`targets`), the counterpart
//!   of the unique `dedup_key` column, and an entry only ever names an active ticket;
//! - listings are newest first by id, capped at [`MAX_PAGE`] items per page;
//! - its clock ([`EventQueue::now`]) is the host's, moved by [`InMemoryStore::advance_clock`]
//!   so that application tests can let leases expire or a backlog age without sleeping.

use crate::alert::AlertStatus;
use crate::ports::{
    AlertBinding, AlertQuery, AlertRepository, Disposition, EventLog, EventQuery, EventQueue,
    Lease, LeasedEvent, NoticeQuery, NoticeRepository, Page, PlannedAlert, QueueStats, Store,
    StoreError, StoreResult, TicketQuery, TicketRepository,
};
use crate::ticket::NewTicket;
use crate::{
    Accepted, Alert, AlertId, Comment, CommentId, Event, EventId, EventState, Fingerprint,
    NewEvent, Notice, NoticeId, SchemaName, Ticket, TicketId, TicketStatus, Timestamp,
};
use async_trait::async_trait;
use chrono::Timelike;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

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
    t.with_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
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

    /// `complete_event` on the locked state: stages every alert, then applies all or nothing.
    fn complete(
        &mut self,
        lease: &Lease,
        alerts: Vec<PlannedAlert>,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertBinding>> {
        self.held(lease)?;
        let ignored = alerts.is_empty();
        let mut staged = Staged::new(self, now);
        let mut bindings = Vec::with_capacity(alerts.len());
        for planned in alerts {
            bindings.push(staged.apply(planned)?);
        }
        let Staged {
            tickets,
            targets,
            alerts,
            notices,
            ..
        } = staged;

        self.tickets.extend(tickets);
        for (fingerprint, target) in targets {
            match target {
                Some(id) => self.targets.insert(fingerprint, id),
                None => self.targets.remove(&fingerprint),
            };
        }
        self.alerts.extend(alerts.into_iter().map(|a| (a.id, a)));
        self.notices.extend(notices.into_iter().map(|n| (n.id, n)));
        let stored = self.held(lease)?;
        stored.event.state = if ignored {
            EventState::Ignored
        } else {
            EventState::Processed
        };
        stored.event.processed_at = Some(micros(now));
        stored.event.next_attempt_at = None;
        stored.event.last_error = None;
        stored.lease = None;
        Ok(bindings)
    }
}

/// The changes one completion makes, staged over the current state so that a conflict on the
/// third alert leaves no trace of the first two.
struct Staged<'a> {
    base: &'a State,
    now: Timestamp,
    tickets: BTreeMap<TicketId, Ticket>,
    /// `None` releases the fingerprint.
    targets: HashMap<Fingerprint, Option<TicketId>>,
    alerts: Vec<Alert>,
    notices: Vec<Notice>,
}

impl<'a> Staged<'a> {
    fn new(base: &'a State, now: Timestamp) -> Self {
        Self {
            base,
            now: micros(now),
            tickets: BTreeMap::new(),
            targets: HashMap::new(),
            alerts: Vec::new(),
            notices: Vec::new(),
        }
    }

    fn ticket(&self, id: TicketId) -> Option<&Ticket> {
        self.tickets.get(&id).or_else(|| self.base.tickets.get(&id))
    }

    fn target(&self, fingerprint: &Fingerprint) -> Option<TicketId> {
        match self.targets.get(fingerprint) {
            Some(staged) => *staged,
            None => self.base.targets.get(fingerprint).copied(),
        }
    }

    /// Counts one more alert seen at `seen` on ticket `id`.
    fn attach(&mut self, id: TicketId, seen: Timestamp) -> StoreResult<()> {
        let mut ticket = self
            .ticket(id)
            .cloned()
            .ok_or_else(|| StoreError::Conflict(format!("ticket {id} does not exist")))?;
        ticket.alert_count += 1;
        ticket.last_seen = ticket.last_seen.max(micros(seen));
        self.tickets.insert(id, ticket);
        Ok(())
    }

    fn apply(&mut self, planned: PlannedAlert) -> StoreResult<AlertBinding> {
        let PlannedAlert { alert, disposition } = planned;
        if self.base.alerts.contains_key(&alert.id) || self.alerts.iter().any(|a| a.id == alert.id)
        {
            return Err(StoreError::Conflict(format!(
                "alert {} already exists",
                alert.id
            )));
        }
        let binding = match disposition {
            Disposition::Attach {
                ticket_id,
                seen_since,
            } => {
                let still_target = self.target(&alert.fingerprint) == Some(ticket_id)
                    && self
                        .ticket(ticket_id)
                        .is_some_and(|t| t.status.is_active() && t.last_seen >= micros(seen_since));
                if !still_target {
                    return Err(StoreError::Conflict(format!(
                        "ticket {ticket_id} is no longer the active ticket for fingerprint {}",
                        alert.fingerprint
                    )));
                }
                self.attach(ticket_id, alert.created_at)?;
                AlertBinding::Attached(ticket_id)
            }
            Disposition::Open { ticket, seen_since } => {
                let fingerprint = ticket.fingerprint.clone();
                let fresh_target = match self.target(&fingerprint) {
                    Some(id)
                        if self
                            .ticket(id)
                            .is_some_and(|t| t.last_seen >= micros(seen_since)) =>
                    {
                        Some(id)
                    }
                    Some(_) => {
                        // Stale: it stops being the target; the new ticket takes its place.
                        self.targets.insert(fingerprint.clone(), None);
                        None
                    }
                    None => None,
                };
                match fresh_target {
                    Some(id) => {
                        self.attach(id, alert.created_at)?;
                        AlertBinding::Attached(id)
                    }
                    None => {
                        if self.ticket(ticket.id).is_some() {
                            return Err(StoreError::Conflict(format!(
                                "ticket {} already exists",
                                ticket.id
                            )));
                        }
                        self.tickets
                            .insert(ticket.id, open_ticket(&ticket, alert.created_at));
                        self.targets.insert(fingerprint, Some(ticket.id));
                        AlertBinding::Opened(ticket.id)
                    }
                }
            }
            Disposition::Notice {
                notice_id,
                title,
                channel,
            } => {
                if self.base.notices.contains_key(&notice_id)
                    || self.notices.iter().any(|n| n.id == notice_id)
                {
                    return Err(StoreError::Conflict(format!(
                        "notice {notice_id} already exists"
                    )));
                }
                self.notices.push(Notice {
                    id: notice_id,
                    alert_id: alert.id,
                    schema: alert.schema.clone(),
                    title,
                    severity: alert.severity,
                    channel,
                    created_at: self.now,
                    ticket_id: None,
                });
                AlertBinding::Noticed(notice_id)
            }
            Disposition::Discard => AlertBinding::Discarded,
        };
        let (ticket_id, notice_id) = match binding {
            AlertBinding::Attached(id) | AlertBinding::Opened(id) => (Some(id), None),
            AlertBinding::Noticed(id) => (None, Some(id)),
            AlertBinding::Discarded => (None, None),
        };
        self.alerts.push(Alert {
            id: alert.id,
            event_id: alert.event_id,
            schema: alert.schema,
            title: alert.title,
            description: alert.description,
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
        });
        Ok(binding)
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
        self.lock().complete(lease, alerts, now)
    }

    /// Every completion under one hold of the mutex: atomic as a whole, each event staged on
    /// its own so that a conflicting one leaves no trace.
    async fn complete_events(
        &self,
        batch: Vec<(Lease, Vec<PlannedAlert>)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        let mut state = self.lock();
        Ok(batch
            .into_iter()
            .map(|(lease, alerts)| state.complete(&lease, alerts, now))
            .collect())
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
}

#[async_trait]
impl TicketRepository for InMemoryStore {
    async fn get_ticket(&self, id: TicketId) -> StoreResult<Option<Ticket>> {
        Ok(self.lock().tickets.get(&id).cloned())
    }

    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Page<Ticket>> {
        let state = self.lock();
        let text = query.text.as_ref().map(|t| t.to_lowercase());
        Ok(page(&state.tickets, query.before, query.limit, |t| {
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
        }))
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
        state.tickets.insert(opened.id, opened.clone());
        Ok(opened)
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
