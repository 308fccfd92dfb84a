//! Heron's domain core: the types every other crate speaks (events, alerts, tickets, notices,
//! comments), the ticket lifecycle, alert fingerprinting, and the ports (traits) through which
//! the application reaches storage, the policy engine and language models.
//!
//! Invariants kept here:
//! - this crate performs no IO and depends on no IO crate; time is always passed in;
//! - every identifier is a UUID v7, so ids sort by creation time and serve as cursors;
//! - a ticket only changes status along the edges of [`ticket::TicketStatus::can_become`].
//!
//! Feature `testing` adds an in-memory [`testing::InMemoryStore`] and the conformance suite
//! that every [`ports::Store`] implementation must pass.

pub mod access;
pub mod agent;
pub mod alert;
pub mod completion;
pub mod dashboard;
pub mod event;
pub mod fingerprint;
pub mod ids;
pub mod investigation;
pub mod llm;
pub mod policy;
pub mod ports;
pub mod schema;
pub mod slack;
pub mod ticket;
pub mod tool;

#[cfg(feature = "testing")]
pub mod testing;

pub use alert::{Alert, AlertDraft, Attribute, Severity};
pub use event::{Accepted, Event, EventSource, EventState, NewEvent};
pub use fingerprint::Fingerprint;
pub use ids::{AlertId, AuditId, CommentId, EventId, NoticeId, TicketId, TokenId};
pub use schema::SchemaName;
pub use ticket::{Comment, CommentSource, Conclusion, Notice, Ticket, TicketChange, TicketStatus};

/// Timestamps are UTC everywhere.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// What every store keeps of a timestamp: whole microseconds, as both databases do.
pub fn truncate_to_micros(t: Timestamp) -> Timestamp {
    use chrono::Timelike;
    t.with_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}
