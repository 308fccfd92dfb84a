//! The pure steps of the pipeline, shared by the worker and by `heron policy eval` / replay:
//! turning ingest output into alerts (with fingerprints), and triaging a new alert.

use heron_core::policy::{
    PolicyEngine, PolicyError, Publish, TriageAlert, TriageInput, TriageMetadata,
};
use heron_core::ports::{Disposition, NewAlert};
use heron_core::ticket::NewTicket;
use heron_core::{
    AlertDraft, AlertId, EventId, Fingerprint, NoticeId, SchemaName, TicketId, Timestamp,
};

/// Builds alerts from an ingest policy's drafts: titles default, fingerprints computed. The
/// alerts are dated `seen`: the worker passes the event's arrival (`received_at`), which is
/// what a ticket's `first_seen`/`last_seen` and the dedup window are measured in.
pub fn alerts_from_drafts(
    event_id: EventId,
    schema: &SchemaName,
    drafts: Vec<AlertDraft>,
    body: &serde_json::Value,
    seen: Timestamp,
) -> Vec<NewAlert> {
    drafts
        .into_iter()
        .map(|draft| {
            let title = draft
                .title
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| format!("Alert from {schema}"));
            let fingerprint = Fingerprint::of(schema, &draft, &title);
            NewAlert {
                id: AlertId::new(),
                event_id,
                schema: schema.clone(),
                title,
                description: draft.description.unwrap_or_default(),
                attributes: draft.attributes,
                tags: draft.tags,
                severity: draft.severity.unwrap_or_default(),
                fingerprint,
                channel: draft.channel,
                data: body.clone(),
                created_at: seen,
            }
        })
        .collect()
}

/// Runs `data.triage` on the first alert of its fingerprint, applies its overrides to the
/// alert, and decides where it goes. A ticket it opens is dated by the alert (the worker
/// re-dates it to when it is opened).
pub fn triage_alert(
    policies: &dyn PolicyEngine,
    alert: &mut NewAlert,
    seen_since: Timestamp,
) -> Result<Disposition, PolicyError> {
    let input = TriageInput {
        alert: TriageAlert {
            id: alert.id.to_string(),
            schema: alert.schema.clone(),
            metadata: TriageMetadata {
                title: alert.title.clone(),
                description: alert.description.clone(),
                attributes: alert.attributes.clone(),
                tags: alert.tags.clone(),
                channel: alert.channel.clone(),
                severity: alert.severity,
            },
            data: alert.data.clone(),
        },
        enrich: Vec::new(),
    };
    let decision = policies.triage(&input)?;
    if let Some(title) = decision.title.filter(|t| !t.trim().is_empty()) {
        alert.title = title;
    }
    if let Some(description) = decision.description {
        alert.description = description;
    }
    if let Some(channel) = decision.channel {
        alert.channel = Some(channel);
    }
    if let Some(severity) = decision.severity {
        alert.severity = severity;
    }
    alert.attributes.extend(decision.attr);
    Ok(match decision.publish {
        Publish::Alert => Disposition::Open {
            ticket: NewTicket {
                id: TicketId::new(),
                title: alert.title.clone(),
                description: alert.description.clone(),
                schema: alert.schema.clone(),
                severity: alert.severity,
                assignee: decision.assignee,
                tags: alert.tags.clone(),
                attributes: alert.attributes.clone(),
                channel: alert.channel.clone(),
                fingerprint: alert.fingerprint.clone(),
                created_at: alert.created_at,
            },
            seen_since,
        },
        Publish::Notice => Disposition::Notice {
            notice_id: NoticeId::new(),
            title: alert.title.clone(),
            channel: alert.channel.clone(),
        },
        Publish::Discard => Disposition::Discard,
    })
}
