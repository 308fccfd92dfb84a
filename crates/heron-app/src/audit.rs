//! The audit log: every state change, recorded with who made it, from where and when.
//!
//! Where the store changes state and the audit entry in one transaction (creating and
//! revoking tokens), the entry is part of that call. Everything else (ticket edits, comments,
//! escalations, retries, policy reloads, agent runs) is recorded right after the change
//! committed, by [`record`]: a failure to write the entry is logged and counted
//! (`heron_audit_failures_total`) but does not undo or fail the change that already happened.

use crate::Actor;
use heron_core::access::{AuditEntry, AuditSource};
use heron_core::ports::Store;
use heron_core::{AuditId, TicketId};
use serde_json::Value;

/// An audit entry for `actor` doing `action` now.
pub fn entry(
    actor: &Actor,
    action: &str,
    ticket: Option<TicketId>,
    target: Option<String>,
    details: Value,
) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        at: chrono::Utc::now(),
        actor: actor.name.clone(),
        source: actor.audit_source(),
        remote: actor.remote.clone(),
        action: action.to_owned(),
        ticket_id: ticket,
        target,
        details,
    }
}

/// Records a change that already committed; see the module documentation.
pub async fn record(
    store: &dyn Store,
    actor: &Actor,
    action: &str,
    ticket: Option<TicketId>,
    target: Option<String>,
    details: Value,
) {
    let entry = entry(actor, action, ticket, target, details);
    if let Err(e) = store.record_audit(entry).await {
        metrics::counter!("heron_audit_failures_total").increment(1);
        tracing::error!(action, actor = %actor.name, error = %e, "could not write the audit entry");
    }
}

impl Actor {
    /// Heron itself (a watcher, a worker, start-up).
    pub fn system(name: &str) -> Self {
        Actor {
            name: name.to_owned(),
            source: heron_core::CommentSource::System,
            remote: None,
        }
    }

    /// Where the actor's changes come from, for the audit log.
    pub fn audit_source(&self) -> AuditSource {
        AuditSource::from(self.source)
    }
}
