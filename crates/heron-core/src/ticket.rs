//! Tickets and their lifecycle, comments and notices.
//!
//! Lifecycle: `open → acknowledged → resolved → archived`, with `open → resolved` (resolving
//! acknowledges), `resolved → open` (reopen: the conclusion is cleared) and `archived → resolved`
//! (unarchive). Resolving needs a conclusion. Every other change of status is refused.

use crate::event::str_enum;
use crate::{
    AlertId, Attribute, CommentId, Fingerprint, NoticeId, SchemaName, Severity, TicketId, Timestamp,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    Open,
    Acknowledged,
    Resolved,
    Archived,
}

str_enum!(TicketStatus {
    Open => "open",
    Acknowledged => "acknowledged",
    Resolved => "resolved",
    Archived => "archived",
});

impl TicketStatus {
    /// Whether a ticket may move from `self` to `next` (staying put is always allowed).
    pub fn can_become(self, next: TicketStatus) -> bool {
        use TicketStatus::*;
        self == next
            || matches!(
                (self, next),
                (Open, Acknowledged)
                    | (Open, Resolved)
                    | (Acknowledged, Resolved)
                    | (Resolved, Open)
                    | (Resolved, Archived)
                    | (Archived, Resolved)
            )
    }

    /// Open and acknowledged tickets still collect new alerts with their fingerprint.
    pub fn is_active(self) -> bool {
        matches!(self, TicketStatus::Open | TicketStatus::Acknowledged)
    }
}

/// How an analyst closed a ticket (warren's conclusions).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Intended,
    Unaffected,
    FalsePositive,
    TruePositive,
    Escalated,
}

str_enum!(Conclusion {
    Intended => "intended",
    Unaffected => "unaffected",
    FalsePositive => "false_positive",
    TruePositive => "true_positive",
    Escalated => "escalated",
});

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub description: String,
    pub schema: SchemaName,
    pub status: TicketStatus,
    pub severity: Severity,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
    pub assignee: Option<String>,
    pub tags: Vec<String>,
    pub attributes: Vec<Attribute>,
    pub channel: Option<String>,
    pub fingerprint: Fingerprint,
    /// The agent's structured finding, once one exists.
    pub finding: Option<serde_json::Value>,
    pub alert_count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency counter of the fields people and agents edit (status, severity,
    /// assignee, conclusion…), bumped by every `update_ticket`. Attaching alerts does not bump
    /// it (they only move `alert_count` and `last_seen`, which no edit writes), so an analyst's
    /// change does not conflict with an alert storm on the same ticket.
    pub version: i64,
}

/// Everything needed to open a ticket for a first alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTicket {
    pub id: TicketId,
    pub title: String,
    pub description: String,
    pub schema: SchemaName,
    pub severity: Severity,
    pub assignee: Option<String>,
    pub tags: Vec<String>,
    pub attributes: Vec<Attribute>,
    pub channel: Option<String>,
    pub fingerprint: Fingerprint,
    pub created_at: DateTime<Utc>,
}

/// A requested change to a ticket; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketChange {
    pub status: Option<TicketStatus>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<String>>,
    pub severity: Option<Severity>,
    pub conclusion: Option<Conclusion>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("a ticket cannot go from {from} to {to}")]
    Transition {
        from: TicketStatus,
        to: TicketStatus,
    },
    #[error("resolving a ticket needs a conclusion")]
    ConclusionRequired,
    #[error("a conclusion can only be set on a resolved ticket")]
    ConclusionOnUnresolved,
}

impl Ticket {
    /// Applies `change` at `now`, enforcing the lifecycle. On error the ticket is unchanged.
    /// `updated_at` moves only when a field actually changed, so a change that changes
    /// nothing leaves the ticket equal to what it was (and callers can skip storing it).
    pub fn apply(&mut self, change: &TicketChange, now: Timestamp) -> Result<(), LifecycleError> {
        let next = change.status.unwrap_or(self.status);
        if !self.status.can_become(next) {
            return Err(LifecycleError::Transition {
                from: self.status,
                to: next,
            });
        }
        let reopening = self.status == TicketStatus::Resolved && next == TicketStatus::Open;
        let conclusion = if reopening {
            change.conclusion
        } else {
            change.conclusion.or(self.conclusion)
        };
        let resolved_like = matches!(next, TicketStatus::Resolved | TicketStatus::Archived);
        if resolved_like && conclusion.is_none() {
            return Err(LifecycleError::ConclusionRequired);
        }
        if !resolved_like && change.conclusion.is_some() {
            return Err(LifecycleError::ConclusionOnUnresolved);
        }
        let before = self.clone();

        if next != self.status {
            if self.acked_at.is_none() && next != TicketStatus::Open {
                self.acked_at = Some(now);
            }
            if next == TicketStatus::Resolved && self.status != TicketStatus::Archived {
                self.resolved_at = Some(now);
            }
            if reopening {
                self.resolved_at = None;
                self.reason = None;
            }
            self.status = next;
        }
        self.conclusion = if resolved_like { conclusion } else { None };
        if let Some(reason) = &change.reason {
            self.reason = Some(reason.clone());
        }
        if let Some(assignee) = &change.assignee {
            self.assignee = assignee.clone();
        }
        if let Some(severity) = change.severity {
            self.severity = severity;
        }
        if *self != before {
            self.updated_at = now;
        }
        Ok(())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommentSource {
    Web,
    Api,
    Slack,
    Agent,
    System,
}

str_enum!(CommentSource {
    Web => "web",
    Api => "api",
    Slack => "slack",
    Agent => "agent",
    System => "system",
});

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: CommentId,
    pub ticket_id: TicketId,
    pub source: CommentSource,
    pub author: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// An alert the triage policy published as a notice: visible, but no ticket until escalated.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub id: NoticeId,
    pub alert_id: AlertId,
    pub schema: SchemaName,
    pub title: String,
    pub severity: Severity,
    pub channel: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The ticket it was escalated to, if it was.
    pub ticket_id: Option<TicketId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn at(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn ticket() -> Ticket {
        Ticket {
            id: TicketId::new(),
            title: "t".into(),
            description: String::new(),
            schema: SchemaName::parse("falco").unwrap(),
            status: TicketStatus::Open,
            severity: Severity::High,
            conclusion: None,
            reason: None,
            assignee: None,
            tags: vec![],
            attributes: vec![],
            channel: None,
            fingerprint: Fingerprint::from_stored("f".into()),
            finding: None,
            alert_count: 1,
            first_seen: at(0),
            last_seen: at(0),
            acked_at: None,
            resolved_at: None,
            created_at: at(0),
            updated_at: at(0),
            version: 1,
        }
    }

    fn to(status: TicketStatus) -> TicketChange {
        TicketChange {
            status: Some(status),
            ..TicketChange::default()
        }
    }

    #[test]
    fn acknowledging_records_the_first_acknowledgement_time() {
        let mut t = ticket();
        t.apply(&to(TicketStatus::Acknowledged), at(60)).unwrap();
        assert_eq!(t.acked_at, Some(at(60)));
        assert_eq!(t.status, TicketStatus::Acknowledged);
    }

    #[test]
    fn resolving_without_a_conclusion_is_refused_and_changes_nothing() {
        let mut t = ticket();
        let before = t.clone();
        assert_eq!(
            t.apply(&to(TicketStatus::Resolved), at(5)),
            Err(LifecycleError::ConclusionRequired)
        );
        assert_eq!(t, before);
    }

    #[test]
    fn resolving_directly_counts_as_acknowledging() {
        let mut t = ticket();
        let change = TicketChange {
            conclusion: Some(Conclusion::FalsePositive),
            reason: Some("scanner".into()),
            ..to(TicketStatus::Resolved)
        };
        t.apply(&change, at(90)).unwrap();
        assert_eq!((t.acked_at, t.resolved_at), (Some(at(90)), Some(at(90))));
        assert_eq!(t.conclusion, Some(Conclusion::FalsePositive));
    }

    #[test]
    fn reopening_clears_the_conclusion() {
        let mut t = ticket();
        t.apply(
            &TicketChange {
                conclusion: Some(Conclusion::Intended),
                ..to(TicketStatus::Resolved)
            },
            at(1),
        )
        .unwrap();
        t.apply(&to(TicketStatus::Open), at(2)).unwrap();
        assert_eq!(
            (t.status, t.conclusion, t.resolved_at),
            (TicketStatus::Open, None, None)
        );
    }

    #[test]
    fn a_change_that_changes_nothing_leaves_the_ticket_equal_including_updated_at() {
        let mut t = ticket();
        t.assignee = Some("alice".into());
        let before = t.clone();
        let same = TicketChange {
            status: Some(TicketStatus::Open),
            assignee: Some(Some("alice".into())),
            severity: Some(Severity::High),
            ..TicketChange::default()
        };
        t.apply(&same, at(500)).unwrap();
        assert_eq!(t, before);

        t.apply(&to(TicketStatus::Acknowledged), at(600)).unwrap();
        assert_eq!(t.updated_at, at(600), "a real change moves updated_at");
    }

    #[test]
    fn an_open_ticket_cannot_be_archived() {
        let mut t = ticket();
        assert!(matches!(
            t.apply(&to(TicketStatus::Archived), at(1)),
            Err(LifecycleError::Transition { .. })
        ));
    }

    #[test]
    fn a_conclusion_on_an_open_ticket_is_refused() {
        let mut t = ticket();
        let change = TicketChange {
            conclusion: Some(Conclusion::Intended),
            ..TicketChange::default()
        };
        assert_eq!(
            t.apply(&change, at(1)),
            Err(LifecycleError::ConclusionOnUnresolved)
        );
    }

    #[test]
    fn every_edge_outside_the_lifecycle_is_refused() {
        use TicketStatus::*;
        let allowed = [
            (Open, Acknowledged),
            (Open, Resolved),
            (Acknowledged, Resolved),
            (Resolved, Open),
            (Resolved, Archived),
            (Archived, Resolved),
        ];
        for from in TicketStatus::ALL {
            for next in TicketStatus::ALL {
                let expected = from == next || allowed.contains(&(*from, *next));
                assert_eq!(from.can_become(*next), expected, "{from} -> {next}");
            }
        }
    }
}
