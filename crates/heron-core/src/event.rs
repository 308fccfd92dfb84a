//! Events: webhook deliveries, stored verbatim before they are acknowledged.
//!
//! The event row is also the unit of work for the pipeline: it is `pending` until a worker
//! leases it, and ends `processed` (alerts made), `ignored` (the ingest policy made none) or
//! `failed` (with the error, until someone retries it). While the backlog breaker is tripped,
//! an event whose alerts need model work `waits` (not leased, no attempt spent) until the
//! breaker lets it back to `pending`.

use crate::{EventId, SchemaName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The webhook flavour an event came in through.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    Raw,
    Pubsub,
    Sns,
    /// Made by Heron itself (the notice of a tripped backlog breaker); never from a webhook.
    System,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Waiting for a worker (possibly after a failed attempt, until `next_attempt_at`).
    Pending,
    /// Leased by a worker; returns to the pool if the lease expires.
    Processing,
    Processed,
    /// The ingest policy produced no alerts; kept for audit and replay.
    Ignored,
    /// Gave up; `last_error` says why. Retrying puts it back to `pending`.
    Failed,
    /// Held back while the backlog breaker is tripped: it would open a ticket that needs the
    /// model (enrichment). Back to `pending`, oldest first, as the backlog leaves room.
    Waiting,
}

macro_rules! str_enum {
    ($ty:ty { $($variant:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }
            pub const ALL: &'static [$ty] = &[$(Self::$variant),*];
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = crate::ports::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok(Self::$variant),)*
                    other => Err(crate::ports::UnknownVariant {
                        kind: stringify!($ty),
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}
pub(crate) use str_enum;

str_enum!(EventSource { Raw => "raw", Pubsub => "pubsub", Sns => "sns", System => "system" });
str_enum!(EventState {
    Pending => "pending",
    Processing => "processing",
    Processed => "processed",
    Ignored => "ignored",
    Failed => "failed",
    Waiting => "waiting",
});

/// What intake hands to the store. `body` is the JSON text of the event object exactly as it
/// will be given to the ingest policy (for Pub/Sub and SNS: the decoded message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: EventId,
    pub schema: SchemaName,
    pub source: EventSource,
    pub body: String,
    /// Facts from the delivery envelope (Pub/Sub attributes, SNS topic…); a JSON object.
    pub metadata: serde_json::Value,
    /// Re-deliveries with the same key (per schema) are acknowledged without a second event.
    pub idempotency_key: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// The store's answer to an accepted delivery.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub event_id: EventId,
    /// True when the idempotency key was seen before; `event_id` is then the first event's.
    pub duplicate: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub schema: SchemaName,
    pub source: EventSource,
    pub body: String,
    pub metadata: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub state: EventState,
    /// Processing attempts started so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}
