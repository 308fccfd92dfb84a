//! The pure steps of the pipeline, shared by the worker and by `heron policy eval` / replay:
//! turning ingest output into alerts (with fingerprints), the enrich policy's input, and
//! triaging a new alert.
//!
//! Invariant: an alert's fingerprint is computed from what the ingest policy made (with the
//! default title), never from what the model or triage wrote later, so deduplication does not
//! depend on a language model's answer.

use heron_core::alert::MetadataSource;
use heron_core::policy::{
    EnrichResult, PolicyEngine, PolicyError, Publish, TriageAlert, TriageInput, TriageMetadata,
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
    let mut alerts = alerts_without_data(event_id, schema, drafts, seen);
    for alert in &mut alerts {
        alert.data = body.clone();
    }
    alerts
}

/// [`alerts_from_drafts`] with `data` left `null`, for a caller that copies the event into
/// only the alerts that need it (replay: the few that reach triage).
pub fn alerts_without_data(
    event_id: EventId,
    schema: &SchemaName,
    drafts: Vec<AlertDraft>,
    seen: Timestamp,
) -> Vec<NewAlert> {
    drafts
        .into_iter()
        .map(|draft| {
            let title = draft
                .title
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| default_title(schema));
            let fingerprint = Fingerprint::of(schema, &draft, &title);
            // The fallback title (also what `heron-policy` gives an event without an ingest
            // package and without a title field) is a default, whoever wrote it.
            let title_source = if is_default_title(&title, schema) {
                MetadataSource::Default
            } else {
                MetadataSource::Policy
            };
            let description = draft.description.unwrap_or_default();
            let description_source = if description.trim().is_empty() {
                MetadataSource::Default
            } else {
                MetadataSource::Policy
            };
            NewAlert {
                id: AlertId::new(),
                event_id,
                schema: schema.clone(),
                title,
                description,
                title_source,
                description_source,
                attributes: draft.attributes,
                tags: draft.tags,
                severity: draft.severity.unwrap_or_default(),
                fingerprint,
                channel: draft.channel,
                data: serde_json::Value::Null,
                created_at: seen,
            }
        })
        .collect()
}

/// The title an alert gets when its policy gave none.
pub fn default_title(schema: &SchemaName) -> String {
    format!("Alert from {schema}")
}

/// Whether `title` is [`default_title`] of `schema` (without allocating).
pub fn is_default_title(title: &str, schema: &SchemaName) -> bool {
    title.strip_prefix("Alert from ") == Some(schema.as_str())
}

/// `data.enrich`'s input, in warren's shape: the alert with its metadata fields flattened
/// (`title`, `description`, `attributes`, … at the top level) and the raw event as `data`.
/// `ticket_id` is `null`: the alert is not bound yet. Prompt templates render over it too.
pub fn enrich_input(alert: &NewAlert) -> serde_json::Value {
    serde_json::json!({
        "id": alert.id.to_string(),
        "ticket_id": null,
        "schema": alert.schema,
        "title": alert.title,
        "description": alert.description,
        "title_source": alert.title_source,
        "description_source": alert.description_source,
        "attributes": alert.attributes,
        "tags": alert.tags,
        "channel": alert.channel,
        "severity": alert.severity,
        "data": alert.data,
        "created_at": alert.created_at,
    })
}

/// Runs `data.triage` on the first alert of its fingerprint with the enrich tasks' results,
/// applies its overrides to the alert (a title or description it sets has source `policy`),
/// and decides where it goes. A ticket it opens is dated by the alert (the worker re-dates it
/// to when it is opened).
pub fn triage_alert(
    policies: &dyn PolicyEngine,
    alert: &mut NewAlert,
    seen_since: Timestamp,
    enrich: Vec<EnrichResult>,
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
                title_source: alert.title_source,
                description_source: alert.description_source,
            },
            data: alert.data.clone(),
        },
        enrich,
    };
    let decision = policies.triage(&input)?;
    if let Some(title) = decision.title.filter(|t| !t.trim().is_empty()) {
        alert.title = title;
        alert.title_source = MetadataSource::Policy;
    }
    if let Some(description) = decision.description {
        alert.description = description;
        alert.description_source = MetadataSource::Policy;
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
