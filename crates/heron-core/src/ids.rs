//! Typed identifiers. All are UUID v7: time-ordered, so "newest first" is "largest id first" and an
//! id is a stable pagination cursor.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A received webhook delivery.
    EventId
);
id_type!(
    /// An alert produced by an ingest policy from an event.
    AlertId
);
id_type!(
    /// A ticket: one problem under investigation, possibly many alerts.
    TicketId
);
id_type!(
    /// A notice: an alert the triage policy published as low-key information.
    NoticeId
);
id_type!(
    /// A comment on a ticket.
    CommentId
);
id_type!(
    /// A stored API token (its row, never its secret).
    TokenId
);
id_type!(
    /// An entry of the audit log.
    AuditId
);
