//! Block Kit for what Heron posts: ticket and notice cards with their buttons, thread lines,
//! and the resolve modal. Rendered as JSON (what Slack receives), so it can be checked as such.

use heron_core::slack::{Post, View};
use heron_core::{Conclusion, Ticket, TicketStatus};
use serde_json::{Value, json};

/// Action ids of the buttons, and the callback id of the resolve modal.
pub mod actions {
    pub const ACK: &str = "heron_ack";
    pub const ASSIGN_ME: &str = "heron_assign_me";
    pub const RESOLVE: &str = "heron_resolve";
    pub const ESCALATE: &str = "heron_escalate";
    /// `view_submission` of the resolve modal; `private_metadata` is the ticket id.
    pub const RESOLVE_SUBMIT: &str = "heron_resolve_submit";
}

/// Slack's limits: section text 3000 characters, header 150, fields 10 of 2000.
const TEXT_MAX: usize = 2900;
const HEADER_MAX: usize = 150;
const MAX_ATTRIBUTES: usize = 10;

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn escapes: `&`, `<` and `>`.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: impl Into<String>) -> Value {
    json!({"type": "mrkdwn", "text": text.into()})
}

fn plain(text: impl Into<String>) -> Value {
    json!({"type": "plain_text", "text": text.into(), "emoji": true})
}

fn button(text: &str, action: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": plain(text),
        "action_id": action,
        "value": value,
    });
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

fn link(url: &str, label: &str) -> String {
    format!("<{}|{}>", url.replace('|', "%7C"), escape(label))
}

/// The blocks of `post`.
pub fn blocks(post: &Post) -> Vec<Value> {
    match post {
        Post::Ticket {
            ticket,
            dashboard_url,
            note,
        } => ticket_blocks(ticket, dashboard_url.as_deref(), note.as_deref()),
        Post::Notice {
            notice,
            dashboard_url,
            note,
        } => {
            let mut out = Vec::new();
            if let Some(note) = note {
                out.push(json!({"type": "context", "elements": [mrkdwn(escape(note))]}));
            }
            out.push(json!({
                "type": "section",
                "text": mrkdwn(format!("🔔 *{}*", escape(&notice.title))),
                "fields": [
                    mrkdwn(format!("*Severity*\n{}", notice.severity)),
                    mrkdwn(format!("*Schema*\n{}", notice.schema)),
                ],
            }));
            match notice.ticket_id {
                Some(ticket) => out.push(json!({
                    "type": "context",
                    "elements": [mrkdwn(format!("Escalated to ticket `{ticket}`"))],
                })),
                None => out.push(json!({
                    "type": "actions",
                    "block_id": "heron_notice",
                    "elements": [button(
                        "Escalate",
                        actions::ESCALATE,
                        &notice.id.to_string(),
                        Some("danger"),
                    )],
                })),
            }
            if let Some(base) = dashboard_url {
                out.push(json!({
                    "type": "context",
                    "elements": [mrkdwn(link(&format!("{}/notices", base.trim_end_matches('/')), "Notices in Heron"))],
                }));
            }
            out
        }
        Post::Text { text } => vec![json!({
            "type": "section",
            "text": mrkdwn(clip(text, TEXT_MAX)),
        })],
    }
}

fn status_emoji(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Open => "🔴",
        TicketStatus::Acknowledged => "🟡",
        TicketStatus::Resolved => "✅",
        TicketStatus::Archived => "📦",
    }
}

fn ticket_blocks(ticket: &Ticket, dashboard: Option<&str>, note: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(note) = note {
        out.push(json!({"type": "context", "elements": [mrkdwn(escape(note))]}));
    }
    out.push(json!({
        "type": "header",
        "text": plain(clip(&format!("{} {}", status_emoji(ticket.status), ticket.title), HEADER_MAX)),
    }));
    let mut fields = vec![
        mrkdwn(format!("*Severity*\n{}", ticket.severity)),
        mrkdwn(format!("*Status*\n{}", ticket.status)),
        mrkdwn(format!(
            "*Assignee*\n{}",
            ticket.assignee.as_deref().map_or("—".to_owned(), escape)
        )),
        mrkdwn(format!("*Alerts*\n{}", ticket.alert_count)),
    ];
    if let Some(c) = ticket.conclusion {
        fields.push(mrkdwn(format!("*Conclusion*\n{}", conclusion_label(c))));
    }
    out.push(json!({"type": "section", "fields": fields}));
    if !ticket.description.trim().is_empty() {
        out.push(json!({
            "type": "section",
            "text": mrkdwn(clip(&escape(&ticket.description), TEXT_MAX)),
        }));
    }
    if let Some(finding) = &ticket.finding {
        let text = |k: &str| finding.get(k).and_then(Value::as_str).unwrap_or_default();
        let mut body = format!(
            "🤖 *Finding*: {} (severity {})\n{}",
            text("verdict").replace('_', " "),
            text("severity"),
            escape(text("summary"))
        );
        if !text("recommendation").is_empty() {
            body.push_str(&format!("\n💡 {}", escape(text("recommendation"))));
        }
        out.push(json!({"type": "section", "text": mrkdwn(clip(&body, TEXT_MAX))}));
    }
    if !ticket.attributes.is_empty() {
        let fields: Vec<Value> = ticket
            .attributes
            .iter()
            .take(MAX_ATTRIBUTES)
            .map(|a| {
                let value = match &a.link {
                    Some(url) => link(url, &a.value),
                    None => escape(&a.value),
                };
                mrkdwn(clip(&format!("*{}*\n{}", escape(&a.key), value), 1900))
            })
            .collect();
        out.push(json!({"type": "section", "fields": fields}));
    }
    let mut context = format!("Ticket `{}`", ticket.id);
    if let Some(base) = dashboard {
        context = format!(
            "{} · {}",
            link(
                &format!("{}/tickets/{}", base.trim_end_matches('/'), ticket.id),
                "Open in Heron"
            ),
            context
        );
    }
    out.push(json!({"type": "context", "elements": [mrkdwn(context)]}));
    let id = ticket.id.to_string();
    let mut buttons = Vec::new();
    if ticket.status == TicketStatus::Open {
        buttons.push(button("Acknowledge", actions::ACK, &id, None));
    }
    if ticket.status.is_active() {
        buttons.push(button("Assign to me", actions::ASSIGN_ME, &id, None));
        buttons.push(button("Resolve", actions::RESOLVE, &id, Some("primary")));
    }
    if !buttons.is_empty() {
        out.push(json!({"type": "actions", "block_id": "heron_ticket", "elements": buttons}));
    }
    out
}

fn conclusion_label(c: Conclusion) -> &'static str {
    match c {
        Conclusion::Intended => "Intended",
        Conclusion::Unaffected => "Unaffected",
        Conclusion::FalsePositive => "False positive",
        Conclusion::TruePositive => "True positive",
        Conclusion::Escalated => "Escalated",
    }
}

/// The modal of `view`.
pub fn view(view: &View) -> Value {
    match view {
        View::Resolve { ticket_id, title } => {
            let options: Vec<Value> = [
                Conclusion::FalsePositive,
                Conclusion::TruePositive,
                Conclusion::Intended,
                Conclusion::Unaffected,
                Conclusion::Escalated,
            ]
            .iter()
            .map(|c| json!({"text": plain(conclusion_label(*c)), "value": c.as_str()}))
            .collect();
            json!({
                "type": "modal",
                "callback_id": actions::RESOLVE_SUBMIT,
                "private_metadata": ticket_id.to_string(),
                "title": plain("Resolve ticket"),
                "submit": plain("Resolve"),
                "close": plain("Cancel"),
                "blocks": [
                    {"type": "section", "text": mrkdwn(format!("*{}*", escape(&clip(title, 500))))},
                    {
                        "type": "input",
                        "block_id": "conclusion",
                        "label": plain("Conclusion"),
                        "element": {
                            "type": "static_select",
                            "action_id": "value",
                            "placeholder": plain("Choose a conclusion"),
                            "options": options,
                        },
                    },
                    {
                        "type": "input",
                        "block_id": "reason",
                        "optional": true,
                        "label": plain("Reason"),
                        "element": {"type": "plain_text_input", "action_id": "value", "multiline": true},
                    },
                ],
            })
        }
    }
}
