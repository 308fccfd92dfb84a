//! Ticket, comment, notice and event operations for the API and the CLI.

use crate::{AppError, AppResult};
use chrono::Utc;
use heron_core::ports::{Store, StoreError};
use heron_core::slack::SlackSubject;
use heron_core::ticket::NewTicket;
use heron_core::{
    Alert, AlertId, Comment, CommentId, CommentSource, Event, EventId, NoticeId, Ticket,
    TicketChange, TicketId,
};
use std::sync::Arc;

/// Who is acting, recorded on what they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub source: CommentSource,
    /// The client address the change came from, when it came over the network.
    pub remote: Option<String>,
}

/// Longest comment accepted, in bytes.
pub(crate) const MAX_COMMENT_BYTES: usize = 64 * 1024;
/// Optimistic-concurrency retries when two people change a ticket at once.
const UPDATE_RETRIES: usize = 3;

#[derive(Clone)]
pub struct TicketService {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for TicketService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketService").finish()
    }
}

impl TicketService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Applies a change under the lifecycle rules and records who made it as a system comment.
    pub async fn update(
        &self,
        id: TicketId,
        change: TicketChange,
        actor: &Actor,
    ) -> AppResult<Ticket> {
        if let Some(reason) = &change.reason
            && reason.len() > MAX_COMMENT_BYTES
        {
            return Err(AppError::Invalid("reason is too long".into()));
        }
        for _ in 0..UPDATE_RETRIES {
            let mut ticket = self
                .store
                .get_ticket(id)
                .await?
                .ok_or_else(|| AppError::NotFound(format!("ticket {id}")))?;
            let before = ticket.clone();
            ticket.apply(&change, Utc::now())?;
            if ticket == before {
                return Ok(ticket);
            }
            match self.store.update_ticket(&ticket).await {
                Ok(updated) => {
                    let summary = describe_change(&before, &updated);
                    if !summary.is_empty() {
                        self.record(id, actor, summary.clone()).await?;
                    }
                    crate::audit::record(
                        self.store.as_ref(),
                        actor,
                        "ticket.update",
                        Some(id),
                        None,
                        serde_json::json!({
                            "summary": summary,
                            "version": updated.version,
                            "before": changed_fields(&before),
                            "after": changed_fields(&updated),
                        }),
                    )
                    .await;
                    self.sync_slack(SlackSubject::Ticket(id)).await;
                    return Ok(updated);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!(
            "ticket {id} is being changed concurrently; try again"
        )))
    }

    pub async fn add_comment(
        &self,
        ticket: TicketId,
        actor: &Actor,
        text: &str,
    ) -> AppResult<Comment> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AppError::Invalid("comment text is empty".into()));
        }
        if text.len() > MAX_COMMENT_BYTES {
            return Err(AppError::Invalid(format!(
                "comment is longer than {MAX_COMMENT_BYTES} bytes"
            )));
        }
        let comment = self
            .store
            .add_comment(Comment {
                id: CommentId::new(),
                ticket_id: ticket,
                source: actor.source,
                author: actor.name.clone(),
                text: text.to_owned(),
                created_at: Utc::now(),
            })
            .await?;
        crate::audit::record(
            self.store.as_ref(),
            actor,
            "ticket.comment",
            Some(ticket),
            Some(comment.id.to_string()),
            serde_json::json!({ "bytes": comment.text.len() }),
        )
        .await;
        self.sync_slack(SlackSubject::Ticket(ticket)).await;
        Ok(comment)
    }

    /// Asks for the subject's Slack thread to catch up (a no-op when it has none). The
    /// change is committed already: a failure here is logged, and the next change or the
    /// thread's next sync catches up.
    pub async fn sync_slack(&self, subject: SlackSubject) {
        let result = match self.store.now().await {
            Ok(now) => self.store.request_slack_sync(subject, now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(subject = ?subject, error = %e, "could not request a Slack sync");
        }
    }

    async fn record(&self, ticket: TicketId, actor: &Actor, summary: String) -> AppResult<()> {
        self.store
            .add_comment(Comment {
                id: CommentId::new(),
                ticket_id: ticket,
                source: CommentSource::System,
                author: actor.name.clone(),
                text: format!("{} {summary}", actor.name),
                created_at: Utc::now(),
            })
            .await?;
        Ok(())
    }

    /// Opens a ticket from a notice's alert.
    pub async fn escalate_notice(&self, id: NoticeId, actor: &Actor) -> AppResult<Ticket> {
        let notice = self
            .store
            .get_notice(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("notice {id}")))?;
        if let Some(ticket) = notice.ticket_id {
            return Err(AppError::Conflict(format!(
                "notice {id} was already escalated to ticket {ticket}"
            )));
        }
        let alert = self
            .store
            .get_alert(notice.alert_id)
            .await?
            .ok_or_else(|| {
                AppError::Internal(format!(
                    "alert {} of notice {id} is missing",
                    notice.alert_id
                ))
            })?;
        let ticket = self
            .store
            .escalate_notice(
                id,
                NewTicket {
                    id: TicketId::new(),
                    title: alert.title,
                    description: alert.description,
                    schema: alert.schema,
                    severity: alert.severity,
                    assignee: None,
                    tags: alert.tags,
                    attributes: alert.attributes,
                    channel: alert.channel,
                    fingerprint: alert.fingerprint,
                    created_at: Utc::now(),
                },
            )
            .await?;
        self.record(ticket.id, actor, format!("escalated notice {id}"))
            .await?;
        crate::audit::record(
            self.store.as_ref(),
            actor,
            "notice.escalate",
            Some(ticket.id),
            Some(id.to_string()),
            serde_json::json!({}),
        )
        .await;
        self.sync_slack(SlackSubject::Notice(id)).await;
        Ok(ticket)
    }

    /// Binds an alert that is on no ticket (a notice's or a discarded one) to `ticket`, and
    /// records on the ticket who did it.
    pub async fn bind_alert(
        &self,
        alert: AlertId,
        ticket: TicketId,
        actor: &Actor,
    ) -> AppResult<Alert> {
        let bound = self.store.bind_alert(alert, ticket).await?;
        self.record(
            ticket,
            actor,
            format!("bound alert {alert}: {}", bound.title),
        )
        .await?;
        crate::audit::record(
            self.store.as_ref(),
            actor,
            "alert.bind",
            Some(ticket),
            Some(alert.to_string()),
            serde_json::json!({}),
        )
        .await;
        self.sync_slack(SlackSubject::Ticket(ticket)).await;
        if let Some(notice) = bound.notice_id {
            self.sync_slack(SlackSubject::Notice(notice)).await;
        }
        Ok(bound)
    }

    pub async fn retry_event(&self, id: EventId, actor: &Actor) -> AppResult<Event> {
        let event = self.store.retry_event(id, Utc::now()).await?;
        crate::audit::record(
            self.store.as_ref(),
            actor,
            "event.retry",
            None,
            Some(id.to_string()),
            serde_json::json!({}),
        )
        .await;
        Ok(event)
    }

    pub async fn retry_failed_events(&self, actor: &Actor) -> AppResult<u64> {
        let retried = self.store.retry_failed_events(Utc::now()).await?;
        crate::audit::record(
            self.store.as_ref(),
            actor,
            "event.retry_failed",
            None,
            None,
            serde_json::json!({ "retried": retried }),
        )
        .await;
        Ok(retried)
    }

    /// Records a change made elsewhere (a policy reload, an agent run asked for) in the
    /// audit log, right after it happened.
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        ticket: Option<TicketId>,
        target: Option<String>,
        details: serde_json::Value,
    ) {
        crate::audit::record(self.store.as_ref(), actor, action, ticket, target, details).await;
    }
}

/// The fields an edit may change, for the audit log.
fn changed_fields(ticket: &Ticket) -> serde_json::Value {
    serde_json::json!({
        "status": ticket.status,
        "severity": ticket.severity,
        "assignee": ticket.assignee,
        "conclusion": ticket.conclusion,
        "reason": ticket.reason,
    })
}

fn describe_change(before: &Ticket, after: &Ticket) -> String {
    let mut parts = Vec::new();
    if before.status != after.status {
        parts.push(format!(
            "changed status {} → {}",
            before.status, after.status
        ));
    }
    if before.conclusion != after.conclusion
        && let Some(c) = after.conclusion
    {
        parts.push(format!("set conclusion {c}"));
    }
    if before.assignee != after.assignee {
        match &after.assignee {
            Some(a) => parts.push(format!("assigned {a}")),
            None => parts.push("unassigned the ticket".into()),
        }
    }
    if before.severity != after.severity {
        parts.push(format!(
            "changed severity {} → {}",
            before.severity, after.severity
        ));
    }
    if before.reason != after.reason
        && let Some(r) = &after.reason
    {
        parts.push(format!("with reason: {r}"));
    }
    parts.join(", ")
}
