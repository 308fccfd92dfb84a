//! Alerts: what an ingest policy makes of an event. Immutable but for their binding to a ticket
//! or a notice.

use crate::event::str_enum;
use crate::{AlertId, EventId, Fingerprint, NoticeId, SchemaName, TicketId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Severity of an alert, a ticket or a finding, in increasing order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

str_enum!(Severity {
    Info => "info",
    Low => "low",
    Medium => "medium",
    High => "high",
    Critical => "critical",
});

/// A key/value pivot on an alert (an IP, a user, a host…), optionally with a link.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attribute {
    pub key: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Where an alert's title or description came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataSource {
    /// Set by a policy (ingest, or triage overriding it).
    #[default]
    Policy,
    /// Heron's fallback: `Alert from <schema>`, or an empty description.
    Default,
    /// Written by the language model in the metadata stage.
    Llm,
}

str_enum!(MetadataSource {
    Policy => "policy",
    Default => "default",
    Llm => "llm",
});

/// One element of an ingest policy's `alerts` set, already decoded and normalised.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertDraft {
    pub title: Option<String>,
    pub description: Option<String>,
    pub attributes: Vec<Attribute>,
    pub tags: Vec<String>,
    pub channel: Option<String>,
    pub severity: Option<Severity>,
    /// The policy's own grouping key (any JSON); hashed with the schema into the fingerprint.
    pub fingerprint: Option<serde_json::Value>,
}

/// What an alert became once the pipeline decided.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Bound to a ticket (new or existing).
    Ticketed,
    /// Published as a notice.
    Noticed,
    /// The triage policy discarded it; kept for audit and replay.
    Discarded,
}

str_enum!(AlertStatus {
    Ticketed => "ticketed",
    Noticed => "noticed",
    Discarded => "discarded",
});

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub event_id: EventId,
    pub schema: SchemaName,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub title_source: MetadataSource,
    #[serde(default)]
    pub description_source: MetadataSource,
    pub attributes: Vec<Attribute>,
    pub tags: Vec<String>,
    pub severity: Severity,
    pub fingerprint: Fingerprint,
    pub channel: Option<String>,
    /// The raw event JSON the alert was made from.
    pub data: serde_json::Value,
    pub status: AlertStatus,
    pub ticket_id: Option<TicketId>,
    pub notice_id: Option<NoticeId>,
    pub created_at: DateTime<Utc>,
}
