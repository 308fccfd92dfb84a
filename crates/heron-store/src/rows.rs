//! Row structs shared by both backends, and their conversion into domain types.
//!
//! One struct per table serves SQLite and PostgreSQL alike: the column types that differ
//! between the two (ids, timestamps, JSON) decode through the newtypes below, which know
//! both encodings. Enum columns are read as text and parsed here, so a corrupt row becomes a
//! `Backend` error, never a panic.

use crate::error::corrupt;
use heron_core::agent::{AgentRun, AgentStep, BudgetKind, Finding, RunPurpose, RunStatus};
use heron_core::alert::AlertStatus;
use heron_core::investigation::{SimilarTicket, TriageJob, TriageJobState, TriageLease};
use heron_core::llm::TokenUsage;
use heron_core::ports::{Lease, LeasedEvent, StoreResult};
use heron_core::{
    Alert, AlertId, Attribute, Comment, CommentId, Event, EventId, Fingerprint, Notice, NoticeId,
    SchemaName, Ticket, TicketId, Timestamp,
};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Postgres, Sqlite, Type};
use std::str::FromStr;
use uuid::Uuid;

/// A UUID: `uuid` on PostgreSQL, hyphenated lowercase `TEXT` on SQLite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbUuid(pub Uuid);

/// A timestamp: `timestamptz` on PostgreSQL, `INTEGER` unix microseconds on SQLite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbTime(pub Timestamp);

/// A JSON document: `jsonb` on PostgreSQL, `TEXT` on SQLite.
#[derive(Debug, Clone)]
pub(crate) struct DbJson(pub serde_json::Value);

/// SQLite's encoding of a timestamp. Whole microseconds, like PostgreSQL's `timestamptz`.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

impl Type<Sqlite> for DbUuid {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbUuid {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Self(Uuid::parse_str(text)?))
    }
}

impl Type<Postgres> for DbUuid {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <Uuid as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbUuid {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<Uuid as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let us = <i64 as Decode<Sqlite>>::decode(value)?;
        chrono::DateTime::from_timestamp_micros(us)
            .map(Self)
            .ok_or_else(|| format!("timestamp {us}µs is out of range").into())
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <Timestamp as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <Timestamp as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<Timestamp as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for DbJson {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbJson {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(Self(serde_json::from_str(text)?))
    }
}

impl Type<Postgres> for DbJson {
    fn type_info() -> PgTypeInfo {
        <sqlx::types::Json<serde_json::Value> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <sqlx::types::Json<serde_json::Value> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbJson {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let sqlx::types::Json(json) =
            <sqlx::types::Json<serde_json::Value> as Decode<Postgres>>::decode(value)?;
        Ok(Self(json))
    }
}

fn parse<T>(kind: &str, raw: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    raw.parse()
        .map_err(|e| corrupt(format!("stored {kind} {raw:?}: {e}")))
}

fn schema(raw: String) -> StoreResult<SchemaName> {
    SchemaName::try_from(raw).map_err(|e| corrupt(format!("stored {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(kind: &str, json: DbJson) -> StoreResult<T> {
    serde_json::from_value(json.0).map_err(|e| corrupt(format!("stored {kind}: {e}")))
}

fn count(kind: &str, n: i64) -> StoreResult<u64> {
    u64::try_from(n).map_err(|_| corrupt(format!("stored {kind} {n} is negative")))
}

/// The event columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! event_columns {
    () => {
        "id, schema, source, body, metadata, idempotency_key, state, attempts, last_error, received_at, processed_at, next_attempt_at"
    };
}
pub(crate) use event_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    id: DbUuid,
    schema: String,
    source: String,
    body: String,
    metadata: DbJson,
    idempotency_key: Option<String>,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    received_at: DbTime,
    processed_at: Option<DbTime>,
    next_attempt_at: Option<DbTime>,
}

impl TryFrom<EventRow> for Event {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: EventRow) -> StoreResult<Event> {
        Ok(Event {
            id: EventId::from_uuid(row.id.0),
            schema: schema(row.schema)?,
            source: parse("event source", &row.source)?,
            body: row.body,
            metadata: row.metadata.0,
            idempotency_key: row.idempotency_key,
            state: parse("event state", &row.state)?,
            attempts: u32::try_from(row.attempts)
                .map_err(|_| corrupt(format!("stored attempts {}", row.attempts)))?,
            last_error: row.last_error,
            received_at: row.received_at.0,
            processed_at: row.processed_at.map(|t| t.0),
            next_attempt_at: row.next_attempt_at.map(|t| t.0),
        })
    }
}

/// An event row returned by a lease, with the token that now holds it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LeasedRow {
    #[sqlx(flatten)]
    pub event: EventRow,
    /// `NULL` for an event the lease gave up on (its lease expired `max_attempts` times).
    pub lease_token: Option<DbUuid>,
}

/// The events a lease statement took, oldest first. Rows without a token are events it gave
/// up on instead (now `failed`): reported here, since the worker never sees them.
pub(crate) fn leased_events(rows: Vec<LeasedRow>) -> StoreResult<Vec<LeasedEvent>> {
    let mut leased = Vec::with_capacity(rows.len());
    for row in rows {
        let event = Event::try_from(row.event)?;
        match row.lease_token {
            Some(token) => leased.push(LeasedEvent {
                lease: Lease {
                    event_id: event.id,
                    token: token.0,
                },
                event,
            }),
            None => tracing::error!(
                event_id = %event.id,
                schema = %event.schema,
                attempts = event.attempts,
                "gave up on an event whose lease expired on every attempt; it is failed now"
            ),
        }
    }
    // RETURNING has no order of its own.
    leased.sort_by_key(|l| (l.event.next_attempt_at, l.event.id));
    Ok(leased)
}

/// The ticket columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! ticket_columns {
    () => {
        "id, title, description, schema, status, severity, conclusion, reason, assignee, tags, attributes, channel, fingerprint, finding, alert_count, first_seen, last_seen, acked_at, resolved_at, created_at, updated_at, version"
    };
}
pub(crate) use ticket_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TicketRow {
    id: DbUuid,
    title: String,
    description: String,
    schema: String,
    status: String,
    severity: String,
    conclusion: Option<String>,
    reason: Option<String>,
    assignee: Option<String>,
    tags: DbJson,
    attributes: DbJson,
    channel: Option<String>,
    fingerprint: String,
    finding: Option<DbJson>,
    alert_count: i64,
    first_seen: DbTime,
    last_seen: DbTime,
    acked_at: Option<DbTime>,
    resolved_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
    version: i64,
}

impl TryFrom<TicketRow> for Ticket {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: TicketRow) -> StoreResult<Ticket> {
        Ok(Ticket {
            id: TicketId::from_uuid(row.id.0),
            title: row.title,
            description: row.description,
            schema: schema(row.schema)?,
            status: parse("ticket status", &row.status)?,
            severity: parse("severity", &row.severity)?,
            conclusion: row
                .conclusion
                .map(|c| parse("conclusion", &c))
                .transpose()?,
            reason: row.reason,
            assignee: row.assignee,
            tags: from_json("ticket tags", row.tags)?,
            attributes: from_json::<Vec<Attribute>>("ticket attributes", row.attributes)?,
            channel: row.channel,
            fingerprint: Fingerprint::from_stored(row.fingerprint),
            finding: row.finding.map(|f| f.0),
            alert_count: count("alert count", row.alert_count)?,
            first_seen: row.first_seen.0,
            last_seen: row.last_seen.0,
            acked_at: row.acked_at.map(|t| t.0),
            resolved_at: row.resolved_at.map(|t| t.0),
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
            version: row.version,
        })
    }
}

/// The alert columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! alert_columns {
    () => {
        "id, event_id, schema, title, description, attributes, tags, severity, fingerprint, channel, data, status, ticket_id, notice_id, created_at, title_source, description_source"
    };
}
pub(crate) use alert_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AlertRow {
    id: DbUuid,
    event_id: DbUuid,
    schema: String,
    title: String,
    description: String,
    attributes: DbJson,
    tags: DbJson,
    severity: String,
    fingerprint: String,
    channel: Option<String>,
    data: DbJson,
    status: String,
    ticket_id: Option<DbUuid>,
    notice_id: Option<DbUuid>,
    created_at: DbTime,
    title_source: String,
    description_source: String,
}

impl TryFrom<AlertRow> for Alert {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: AlertRow) -> StoreResult<Alert> {
        Ok(Alert {
            id: AlertId::from_uuid(row.id.0),
            event_id: EventId::from_uuid(row.event_id.0),
            schema: schema(row.schema)?,
            title: row.title,
            description: row.description,
            title_source: parse("title source", &row.title_source)?,
            description_source: parse("description source", &row.description_source)?,
            attributes: from_json("alert attributes", row.attributes)?,
            tags: from_json("alert tags", row.tags)?,
            severity: parse("severity", &row.severity)?,
            fingerprint: Fingerprint::from_stored(row.fingerprint),
            channel: row.channel,
            data: row.data.0,
            status: parse::<AlertStatus>("alert status", &row.status)?,
            ticket_id: row.ticket_id.map(|id| TicketId::from_uuid(id.0)),
            notice_id: row.notice_id.map(|id| NoticeId::from_uuid(id.0)),
            created_at: row.created_at.0,
        })
    }
}

/// The notice columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! notice_columns {
    () => {
        "id, alert_id, schema, title, severity, channel, created_at, ticket_id"
    };
}
pub(crate) use notice_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct NoticeRow {
    id: DbUuid,
    alert_id: DbUuid,
    schema: String,
    title: String,
    severity: String,
    channel: Option<String>,
    created_at: DbTime,
    ticket_id: Option<DbUuid>,
}

impl TryFrom<NoticeRow> for Notice {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: NoticeRow) -> StoreResult<Notice> {
        Ok(Notice {
            id: NoticeId::from_uuid(row.id.0),
            alert_id: AlertId::from_uuid(row.alert_id.0),
            schema: schema(row.schema)?,
            title: row.title,
            severity: parse("severity", &row.severity)?,
            channel: row.channel,
            created_at: row.created_at.0,
            ticket_id: row.ticket_id.map(|id| TicketId::from_uuid(id.0)),
        })
    }
}

/// The comment columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! comment_columns {
    () => {
        "id, ticket_id, source, author, text, created_at"
    };
}
pub(crate) use comment_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CommentRow {
    id: DbUuid,
    ticket_id: DbUuid,
    source: String,
    author: String,
    text: String,
    created_at: DbTime,
}

impl TryFrom<CommentRow> for Comment {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: CommentRow) -> StoreResult<Comment> {
        Ok(Comment {
            id: CommentId::from_uuid(row.id.0),
            ticket_id: TicketId::from_uuid(row.ticket_id.0),
            source: parse("comment source", &row.source)?,
            author: row.author,
            text: row.text,
            created_at: row.created_at.0,
        })
    }
}

/// Converts fetched rows, failing on the first corrupt one.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = heron_core::ports::StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// Builds a newest-first page from up to `limit + 1` fetched items.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> String,
) -> heron_core::ports::Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    heron_core::ports::Page { items, next_cursor }
}

/// Most items one listing page returns, whatever limit is asked for (a limit of 0 means 1);
/// the same bound as the in-memory store's.
pub(crate) const MAX_PAGE: usize = 1000;

pub(crate) fn page_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}

/// Text of a JSON value for SQLite's `TEXT` columns.
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("cannot encode JSON: {e}")))
}

/// The triage job columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! triage_columns {
    () => {
        "ticket_id, state, attempts, last_error, created_at, updated_at"
    };
}
pub(crate) use triage_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TriageJobRow {
    ticket_id: DbUuid,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<TriageJobRow> for TriageJob {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: TriageJobRow) -> StoreResult<TriageJob> {
        Ok(TriageJob {
            ticket_id: TicketId::from_uuid(row.ticket_id.0),
            state: parse::<TriageJobState>("triage job state", &row.state)?,
            attempts: attempts(row.attempts)?,
            last_error: row.last_error,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
        })
    }
}

fn attempts(n: i64) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| corrupt(format!("stored attempts {n}")))
}

/// A triage job a lease statement touched: leased (with its token), or given up on (no
/// token: its lease expired `max_attempts` times and it is `failed` now).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TriageLeasedRow {
    ticket_id: DbUuid,
    attempts: i64,
    next_attempt_at: Option<DbTime>,
    lease_token: Option<DbUuid>,
}

/// The jobs a lease statement took, oldest first; the ones it gave up on are logged, since
/// no worker sees them.
pub(crate) fn leased_triage(rows: Vec<TriageLeasedRow>) -> StoreResult<Vec<TriageLease>> {
    let mut leased = Vec::with_capacity(rows.len());
    for row in rows {
        let ticket_id = TicketId::from_uuid(row.ticket_id.0);
        let attempts = attempts(row.attempts)?;
        match row.lease_token {
            Some(token) => leased.push((
                row.next_attempt_at.map(|t| t.0),
                TriageLease {
                    ticket_id,
                    token: token.0,
                    attempts,
                },
            )),
            None => tracing::error!(
                %ticket_id,
                attempts,
                "gave up on a triage job whose lease expired on every attempt; it is failed now"
            ),
        }
    }
    // RETURNING has no order of its own.
    leased.sort_by_key(|(due, lease)| (*due, lease.ticket_id));
    Ok(leased.into_iter().map(|(_, lease)| lease).collect())
}

/// The agent run columns, in the order of the row struct (a literal, for `concat!`).
macro_rules! run_columns {
    () => {
        "id, ticket_id, purpose, status, model, started_at, finished_at, prompt_tokens, completion_tokens, total_tokens, finding, answer, budget, error, steps"
    };
}
pub(crate) use run_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AgentRunRow {
    id: DbUuid,
    ticket_id: DbUuid,
    purpose: String,
    status: String,
    model: String,
    started_at: DbTime,
    finished_at: Option<DbTime>,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    finding: Option<DbJson>,
    answer: Option<String>,
    budget: Option<String>,
    error: Option<String>,
    steps: DbJson,
}

fn tokens(kind: &str, n: i64) -> StoreResult<u32> {
    u32::try_from(n).map_err(|_| corrupt(format!("stored {kind} {n}")))
}

impl TryFrom<AgentRunRow> for AgentRun {
    type Error = heron_core::ports::StoreError;
    fn try_from(row: AgentRunRow) -> StoreResult<AgentRun> {
        Ok(AgentRun {
            id: row.id.0,
            ticket_id: TicketId::from_uuid(row.ticket_id.0),
            purpose: parse::<RunPurpose>("run purpose", &row.purpose)?,
            model: row.model,
            status: parse::<RunStatus>("run status", &row.status)?,
            started_at: row.started_at.0,
            finished_at: row.finished_at.map(|t| t.0),
            finding: row
                .finding
                .map(|f| from_json::<Finding>("finding", f))
                .transpose()?,
            answer: row.answer,
            budget: row.budget.map(|b| budget_kind(&b)).transpose()?,
            error: row.error,
            usage: TokenUsage {
                prompt_tokens: tokens("prompt tokens", row.prompt_tokens)?,
                completion_tokens: tokens("completion tokens", row.completion_tokens)?,
                total_tokens: tokens("total tokens", row.total_tokens)?,
            },
            steps: from_json::<Vec<AgentStep>>("run steps", row.steps)?,
        })
    }
}

/// A budget kind as stored: its serde name (`run_tokens`), like every other enum column.
pub(crate) fn budget_text(kind: BudgetKind) -> StoreResult<String> {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        other => Err(corrupt(format!(
            "budget kind {kind:?} encodes as {other:?}"
        ))),
    }
}

fn budget_kind(raw: &str) -> StoreResult<BudgetKind> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|e| corrupt(format!("stored budget kind {raw:?}: {e}")))
}

/// The ticket columns a similar-ticket search answers (a literal, for `concat!`), prefixed
/// with the tickets table's alias `t`.
macro_rules! similar_columns {
    () => {
        "t.id, t.title, t.status, t.conclusion, t.reason, t.finding, t.created_at"
    };
}
pub(crate) use similar_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SimilarRow {
    id: DbUuid,
    title: String,
    status: String,
    conclusion: Option<String>,
    reason: Option<String>,
    finding: Option<DbJson>,
    created_at: DbTime,
}

impl SimilarRow {
    pub(crate) fn ticket_id(&self) -> TicketId {
        TicketId::from_uuid(self.id.0)
    }

    pub(crate) fn scored(self, score: f64) -> StoreResult<SimilarTicket> {
        Ok(SimilarTicket {
            ticket_id: TicketId::from_uuid(self.id.0),
            title: self.title,
            status: parse("ticket status", &self.status)?,
            conclusion: self
                .conclusion
                .map(|c| parse("conclusion", &c))
                .transpose()?,
            reason: self.reason,
            finding: self.finding.map(|f| f.0),
            created_at: self.created_at.0,
            score,
        })
    }
}

/// Most tickets one similar-ticket search answers, whatever limit is asked for (the stores
/// size their buffers by the limit).
pub(crate) const MAX_SIMILAR: usize = 1_000;

/// The largest vector either store accepts: pgvector's limit for `vector`.
pub(crate) const MAX_DIMS: usize = 16_000;

/// The dimensions of a vector to store or search with, or `Invalid`.
pub(crate) fn dims(vector: &[f32]) -> StoreResult<i32> {
    if vector.is_empty() || vector.len() > MAX_DIMS {
        return Err(heron_core::ports::StoreError::Invalid(format!(
            "an embedding has 1 to {MAX_DIMS} dimensions, not {}",
            vector.len()
        )));
    }
    if let Some(bad) = vector.iter().find(|x| !x.is_finite()) {
        return Err(heron_core::ports::StoreError::Invalid(format!(
            "an embedding holds finite numbers only, not {bad}"
        )));
    }
    i32::try_from(vector.len())
        .map_err(|_| heron_core::ports::StoreError::Invalid("too many dimensions".into()))
}
