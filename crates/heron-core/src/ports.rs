//! Storage ports. One [`Store`] holds events (which double as the pipeline's work queue),
//! alerts, tickets, comments and notices. Implementations: `heron_store::{SqliteStore,
//! PgStore}` and, with feature `testing`, [`crate::testing::InMemoryStore`]; all must pass
//! [`crate::testing::conformance`].
//!
//! Invariants every implementation keeps:
//! - `accept_event` is durable when it returns: the event is committed before intake answers;
//! - one idempotency key per schema maps to exactly one event, forever;
//! - a leased event is completed or failed only by the holder of its current lease, and its
//!   outcome (alerts, ticket changes, new state) is committed atomically with that completion,
//!   so every event's effects happen exactly once even when workers die mid-way;
//! - at most one *active* ticket (open or acknowledged) per fingerprint is the deduplication
//!   target, and the database enforces it; resolving a ticket, or opening a newer one for the
//!   same fingerprint after the window, releases it;
//! - an event is handed out at most `max_attempts` times: one whose lease expired that often
//!   (it crashes or stalls whoever runs it) is marked `failed` instead of leased again.
//!
//! Time: every queue time (lease expiry, due times, completion) is passed in, and callers take
//! it from [`EventQueue::now`], the store's own clock. On PostgreSQL that is the database
//! server's clock, so processes on hosts whose clocks disagree still agree on when a lease
//! expires and when an event is due; a due time handed in for a new or retried event is
//! moreover capped at the database's clock, so "due at once" holds even when the accepting
//! host's clock runs ahead. SQLite and the in-memory store serve one host: its clock is theirs.

use crate::alert::{AlertStatus, MetadataSource};
use crate::dashboard::{DashboardMetrics, TicketCursor, TicketSort};
use crate::{
    Accepted, Alert, AlertId, Attribute, Comment, Event, EventId, EventState, Fingerprint,
    NewEvent, Notice, NoticeId, SchemaName, Severity, Ticket, TicketId, TicketStatus, Timestamp,
    ticket::NewTicket,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with the stored state (stale version, wrong state, duplicate…).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller's lease on this event expired and was taken over, or never existed.
    #[error("the lease on event {0} is no longer held")]
    LeaseLost(EventId),
    /// The caller's lease on this ticket's triage job expired and was taken over, or never
    /// existed.
    #[error("the triage lease on ticket {0} is no longer held")]
    TriageLeaseLost(TicketId),
    /// The database cannot be reached; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a value it cannot hold (PostgreSQL: SQLSTATE class 22, e.g. text
    /// or JSON containing U+0000). Storing the same data again cannot succeed.
    #[error("the database rejected the data: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The `last_error` of an event given up on at lease time (see [`EventQueue::lease_events`]),
/// with `{n}` standing for its attempts. Database stores fill it in SQL (`replace`), so that
/// every store says the same.
pub const LEASE_EXPIRED_ERROR: &str = "gave up after {n} attempts: the lease expired before \
    the event completed (it may crash or stall its worker)";

/// [`LEASE_EXPIRED_ERROR`] for `attempts`.
pub fn lease_expired_error(attempts: u32) -> String {
    LEASE_EXPIRED_ERROR.replace("{n}", &attempts.to_string())
}

/// A stored value that does not name a known variant (a corrupt row or a bad filter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
}

/// One page of a newest-first listing. `next_cursor` is the id to pass as `before` for the
/// next page, present only when more items exist.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    pub state: Option<EventState>,
    pub schema: Option<SchemaName>,
    /// Only events with an id strictly smaller (older) than this.
    pub before: Option<EventId>,
    pub limit: usize,
}

/// Which stored events [`EventHistory::scan_events`] reads: oldest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventScan {
    /// Only events received at or after this.
    pub since: Option<Timestamp>,
    pub schema: Option<SchemaName>,
    /// Only events in one of these states; empty: every state.
    pub states: Vec<EventState>,
    /// Only events with an id strictly greater (newer) than this: the last id of the
    /// previous page.
    pub after: Option<EventId>,
    /// At most this many events, capped at [`MAX_SCAN_PAGE`] (0 reads one).
    pub limit: usize,
}

/// The largest page [`EventHistory::scan_events`] answers.
pub const MAX_SCAN_PAGE: usize = 10_000;

/// [`EventScan::limit`] as every store applies it.
pub fn scan_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_SCAN_PAGE)
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertQuery {
    pub schema: Option<SchemaName>,
    pub ticket: Option<TicketId>,
    /// Only alerts bound to no ticket.
    pub unbound: bool,
    pub before: Option<AlertId>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TicketQuery {
    pub status: Option<TicketStatus>,
    pub severity: Option<Severity>,
    pub assignee: Option<String>,
    pub tag: Option<String>,
    /// Case-insensitive substring of the title or the description.
    pub text: Option<String>,
    /// The order; newest first by default.
    pub sort: TicketSort,
    /// Only tickets after this one in that order: the `next_cursor` of the page before. Its
    /// key must be the order's (else `Invalid`).
    pub cursor: Option<TicketCursor>,
    pub limit: usize,
}

impl TicketQuery {
    /// The cursor, checked against the order (see [`TicketQuery::cursor`]).
    pub fn checked_cursor(&self) -> StoreResult<Option<TicketCursor>> {
        match self.cursor {
            Some(cursor) if cursor.key() != self.sort.key => Err(StoreError::Invalid(format!(
                "a cursor of a listing by {} cannot page a listing by {}",
                cursor.key(),
                self.sort.key
            ))),
            other => Ok(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NoticeQuery {
    pub escalated: Option<bool>,
    pub before: Option<NoticeId>,
    pub limit: usize,
}

/// Proof of holding an event: only the current lease token can complete or fail it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub event_id: EventId,
    pub token: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeasedEvent {
    pub event: Event,
    pub lease: Lease,
}

/// An alert as the pipeline made it, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub id: AlertId,
    pub event_id: EventId,
    pub schema: SchemaName,
    pub title: String,
    pub description: String,
    pub title_source: MetadataSource,
    pub description_source: MetadataSource,
    pub attributes: Vec<Attribute>,
    pub tags: Vec<String>,
    pub severity: Severity,
    pub fingerprint: Fingerprint,
    pub channel: Option<String>,
    pub data: serde_json::Value,
    pub created_at: Timestamp,
}

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Bind to this ticket, which the worker found as the active ticket for the alert's
    /// fingerprint seen since `seen_since`. If that no longer holds when completing (resolved,
    /// or went stale meanwhile), completion fails with `Conflict` and the worker re-plans.
    Attach {
        ticket_id: TicketId,
        seen_since: Timestamp,
    },
    /// Open `ticket`, unless an active ticket with the same fingerprint seen since `seen_since`
    /// exists by the time of completion (another worker won the race): then bind to that one.
    /// An active ticket with this fingerprint older than `seen_since` stops being the target.
    Open {
        ticket: NewTicket,
        seen_since: Timestamp,
    },
    Notice {
        notice_id: NoticeId,
        title: String,
        channel: Option<String>,
    },
    Discard,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAlert {
    pub alert: NewAlert,
    pub disposition: Disposition,
}

/// What became of each planned alert, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum AlertBinding {
    Attached(TicketId),
    Opened(TicketId),
    Noticed(NoticeId),
    Discarded,
}

impl AlertBinding {
    pub fn status(&self) -> AlertStatus {
        match self {
            AlertBinding::Attached(_) | AlertBinding::Opened(_) => AlertStatus::Ticketed,
            AlertBinding::Noticed(_) => AlertStatus::Noticed,
            AlertBinding::Discarded => AlertStatus::Discarded,
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Pending events whose next attempt is due now or later.
    pub pending: u64,
    /// Leased events (including expired leases not yet taken over).
    pub processing: u64,
    pub failed: u64,
    /// Held back by the backlog breaker (`waiting`); not part of `pending`.
    pub waiting: u64,
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Durably stores a delivery as a `pending` event, due at once. With an idempotency key
    /// already stored for the schema, stores nothing and answers the first event's id with
    /// `duplicate: true`.
    async fn accept_event(&self, event: NewEvent) -> StoreResult<Accepted>;
    /// Stores several deliveries atomically (one transaction: on any error nothing is stored)
    /// and answers one [`Accepted`] per input, in order. Each item is deduplicated as by
    /// [`accept_event`](Self::accept_event): an idempotency key already stored, or carried by
    /// an earlier item of the same call (same schema), answers that event's id with
    /// `duplicate: true` and stores nothing for the item. An event id that already exists
    /// (stored, or earlier in the call) is `Conflict`.
    async fn accept_events(&self, events: Vec<NewEvent>) -> StoreResult<Vec<Accepted>>;
    async fn get_event(&self, id: EventId) -> StoreResult<Option<Event>>;
    async fn list_events(&self, query: &EventQuery) -> StoreResult<Page<Event>>;
    /// Puts a `failed` or `ignored` event back to `pending`, due at `now`, clearing its error
    /// and its count of attempts (a manual retry gets the full number of attempts again).
    /// Other states: `Conflict`. Unknown id: `NotFound`.
    async fn retry_event(&self, id: EventId, now: Timestamp) -> StoreResult<Event>;
    /// Retries every `failed` event as [`retry_event`](Self::retry_event) does; returns how
    /// many.
    async fn retry_failed_events(&self, now: Timestamp) -> StoreResult<u64>;
    async fn queue_stats(&self, now: Timestamp) -> StoreResult<QueueStats>;
}

/// Reading stored events in bulk, for replaying policies over history. It only reads: a
/// caller holding an `&dyn EventHistory` cannot change anything.
#[async_trait]
pub trait EventHistory: Send + Sync {
    /// Stored events matching `scan`, in id order (ids are UUIDv7, so oldest first), at most
    /// [`scan_limit`]`(scan.limit)` of them. Fewer than the limit means the scan is done; the
    /// next page starts `after` the last id returned.
    async fn scan_events(&self, scan: &EventScan) -> StoreResult<Vec<Event>>;
}

#[async_trait]
pub trait EventQueue: Send + Sync {
    /// The store's clock, from which callers take every time they pass to the queue (see the
    /// module documentation): PostgreSQL answers the database server's `now()`.
    async fn now(&self) -> StoreResult<Timestamp>;
    /// Leases up to `limit` due events, oldest first: `pending` ones with `next_attempt_at <=
    /// now`, and `processing` ones whose lease expired before `now`. Each gets a fresh token,
    /// state `processing`, lease expiry `lease_until`, and `attempts + 1`. Concurrent callers
    /// never receive the same event while its lease holds.
    ///
    /// An expired lease on an event that already had `max_attempts` attempts is not taken
    /// over: the event becomes `failed` with a `last_error` saying its lease expired, and is
    /// not returned (so fewer than `limit` events may be returned while more are due).
    async fn lease_events(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Vec<LeasedEvent>>;
    /// Moves the expiry of a lease still held to `until` (a heartbeat for slow work).
    /// `LeaseLost` if the lease is not the current one.
    async fn extend_lease(&self, lease: &Lease, until: Timestamp) -> StoreResult<()>;
    /// The active ticket for `fingerprint` whose `last_seen >= seen_since`, if any.
    async fn find_dedup_ticket(
        &self,
        fingerprint: &Fingerprint,
        seen_since: Timestamp,
    ) -> StoreResult<Option<TicketId>>;
    /// Atomically stores the alerts, applies their dispositions (attaching bumps the ticket's
    /// `alert_count` and sets `last_seen` to the alert's `created_at` if later; it leaves
    /// `version`, which guards edits, alone), and marks the event `processed` (or `ignored`
    /// when `alerts` is empty) at `now`. `LeaseLost` if the lease token is not the current
    /// one; then nothing is stored. `Invalid` if the database cannot hold a value of the
    /// alerts; then nothing is stored and the lease is still held.
    async fn complete_event(
        &self,
        lease: &Lease,
        alerts: Vec<PlannedAlert>,
        now: Timestamp,
    ) -> StoreResult<Vec<AlertBinding>>;
    /// The batch form of [`complete_event`](Self::complete_event): the same per-event
    /// semantics, applied to the events in order, committed together in one transaction.
    ///
    /// Answers one result per input, in order:
    /// - `Err(LeaseLost)` for an event whose lease is not the current one (a lease named
    ///   twice in the batch is held by the first occurrence only); it stores nothing;
    /// - `Err(Conflict)` for an event whose plan no longer holds against the state left by
    ///   the events before it (an `Attach` whose target is not the active dedup target for
    ///   the alert's fingerprint seen since `seen_since`); it stores nothing, keeps its lease,
    ///   and the caller re-plans it;
    /// - `Ok(bindings)` for every other event, all of which are committed together. Later
    ///   events see the effects of earlier ones: a second `Open` for a fingerprint attaches to
    ///   the ticket the first one opened.
    ///
    /// The outer `Err` is a failure of the whole batch (database unreachable, deadlock, an
    /// unexpected constraint violation, a value of one event the database cannot hold):
    /// nothing is stored and every lease is still held. Unless it is `Unavailable`, the
    /// cause may be one event's data: completing the events one by one isolates it.
    ///
    /// The default implementation completes the events one by one with `complete_event`, so
    /// it is correct for any store but not atomic: there, an error of one event's own
    /// transaction (e.g. `Unavailable`) lands in that event's slot. Database stores override
    /// it with one transaction, which is what makes a storm of one fingerprint cheap: the
    /// ticket row is updated, locked and committed once per batch instead of once per event.
    /// They also run `complete_event` as a batch of one, so that both forms take their locks
    /// in the same order.
    async fn complete_events(
        &self,
        batch: Vec<(Lease, Vec<PlannedAlert>)>,
        now: Timestamp,
    ) -> StoreResult<Vec<Result<Vec<AlertBinding>, StoreError>>> {
        let mut results = Vec::with_capacity(batch.len());
        for (lease, alerts) in batch {
            results.push(self.complete_event(&lease, alerts, now).await);
        }
        Ok(results)
    }
    /// Records a failed attempt: with `retry_at`, back to `pending` due then; without, `failed`.
    /// `last_error` is set either way. `LeaseLost` as for completion.
    async fn fail_event(
        &self,
        lease: &Lease,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// Gives a lease back unfinished (shutdown): `pending`, due at once; the attempt is not
    /// counted.
    async fn release_event(&self, lease: &Lease) -> StoreResult<()>;
    /// Holds a leased event back (the backlog breaker): `waiting`, not leased by anyone, the
    /// attempt not counted, `note` in `last_error` so the listing says why. `LeaseLost` as
    /// for completion.
    async fn hold_event(&self, lease: &Lease, note: &str) -> StoreResult<()>;
    /// Puts up to `limit` `waiting` events back to `pending`, oldest (by id) first, due at
    /// `now`, without their note; returns how many.
    async fn resume_waiting_events(&self, now: Timestamp, limit: u64) -> StoreResult<u64>;
}

#[async_trait]
pub trait TicketRepository: Send + Sync {
    async fn get_ticket(&self, id: TicketId) -> StoreResult<Option<Ticket>>;
    async fn list_tickets(&self, query: &TicketQuery) -> StoreResult<Page<Ticket>>;
    /// Stores the mutable fields of `ticket` (status, severity, conclusion, reason, assignee,
    /// tags, title, description, finding, acked_at, resolved_at, updated_at) if the stored
    /// version equals `ticket.version`; returns it with `version + 1`. Stale version:
    /// `Conflict`. A ticket that is no longer active stops being its fingerprint's target.
    async fn update_ticket(&self, ticket: &Ticket) -> StoreResult<Ticket>;
    async fn count_tickets_by_status(&self) -> StoreResult<Vec<(TicketStatus, u64)>>;
    /// The dashboard's figures for `[since, until)`, as [`DashboardMetrics`] defines them
    /// (see [`crate::dashboard`]).
    async fn dashboard_metrics(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<DashboardMetrics>;
    /// `NotFound` if the ticket does not exist.
    async fn add_comment(&self, comment: Comment) -> StoreResult<Comment>;
    /// Oldest first.
    async fn list_comments(&self, ticket: TicketId) -> StoreResult<Vec<Comment>>;
}

#[async_trait]
pub trait AlertRepository: Send + Sync {
    async fn get_alert(&self, id: AlertId) -> StoreResult<Option<Alert>>;
    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Page<Alert>>;
    /// The tickets holding alerts of `events`, each once, in id order.
    async fn tickets_of_events(&self, events: &[EventId]) -> StoreResult<Vec<TicketId>>;
    /// Binds an alert that is on no ticket (a notice's or a discarded one) to `ticket`, in one
    /// transaction: the alert becomes `ticketed`, the ticket's `alert_count` grows by one and
    /// its `last_seen` moves to the alert's `created_at` if that is later (its `version` is
    /// left alone, as for attaching), and a notice of the alert that was not escalated
    /// records the ticket, as an escalation would. Answers the alert as stored. An alert
    /// already on a ticket: `Conflict`. Unknown alert or ticket: `NotFound`.
    async fn bind_alert(&self, alert: AlertId, ticket: TicketId) -> StoreResult<Alert>;
}

#[async_trait]
pub trait NoticeRepository: Send + Sync {
    async fn get_notice(&self, id: NoticeId) -> StoreResult<Option<Notice>>;
    async fn list_notices(&self, query: &NoticeQuery) -> StoreResult<Page<Notice>>;
    /// Atomically opens `ticket` (with `alert_count` 1; it does not become a deduplication
    /// target), binds the notice's alert to it (status `ticketed`) and records the ticket on
    /// the notice. Already escalated: `Conflict`.
    async fn escalate_notice(&self, id: NoticeId, ticket: NewTicket) -> StoreResult<Ticket>;
}

/// Everything a Heron process needs from its database.
#[async_trait]
pub trait Store:
    EventLog
    + EventHistory
    + EventQueue
    + TicketRepository
    + AlertRepository
    + NoticeRepository
    + crate::investigation::AgentStore
    + crate::investigation::EmbeddingStore
    + crate::tool::ToolCache
    + crate::slack::SlackStore
    + crate::access::AccessStore
{
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
}
