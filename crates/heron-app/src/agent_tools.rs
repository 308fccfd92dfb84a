//! The agent's tools over Heron's own data: `similar_tickets`, `get_alerts`, `get_comments`.
//! They read the ticket named by the run's [`ToolContext`], never one the model names, so a
//! run can only look at its own ticket (and, through similarity, at past tickets' summaries).
//!
//! Invariants: tools only read; arguments are checked against their schema (unknown fields
//! and out-of-range numbers are refused with a message the model can act on); answers are
//! JSON, clipped to the configured size.

use heron_core::agent::{Tool, ToolError, ToolOutput};
use heron_core::ports::{AlertQuery, Store};
use heron_core::tool::ToolContext;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest `limit` a tool accepts.
const MAX_LIMIT: u64 = 20;

/// The three tools, sharing one store. `embedding_model` names the embedder whose vectors
/// `similar_tickets` compares (the one the triage worker stores).
pub fn ticket_tools(
    store: Arc<dyn Store>,
    embedding_model: &str,
    clip_bytes: usize,
) -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(SimilarTickets {
            store: Arc::clone(&store),
            model: embedding_model.to_owned(),
            clip_bytes,
        }),
        Arc::new(GetAlerts {
            store: Arc::clone(&store),
            clip_bytes,
        }),
        Arc::new(GetComments { store, clip_bytes }),
    ]
}

fn ticket_of(ctx: &ToolContext) -> Result<heron_core::TicketId, ToolError> {
    ctx.ticket_id
        .ok_or_else(|| ToolError::Refused("this conversation is not about a ticket".into()))
}

fn parse<T: for<'de> Deserialize<'de>>(arguments: Value) -> Result<T, ToolError> {
    serde_json::from_value(arguments).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

fn limit_in_range(limit: u64) -> Result<usize, ToolError> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit as usize)
    } else {
        Err(ToolError::InvalidArguments(format!(
            "limit must be between 1 and {MAX_LIMIT}, not {limit}"
        )))
    }
}

fn failed(e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(e.to_string())
}

fn answer(value: &Value, clip_bytes: usize) -> ToolOutput {
    let text = serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
    ToolOutput::clipped(&text, clip_bytes)
}

struct SimilarTickets {
    store: Arc<dyn Store>,
    model: String,
    clip_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitArgs {
    limit: u64,
}

#[async_trait::async_trait]
impl Tool for SimilarTickets {
    fn name(&self) -> &str {
        "similar_tickets"
    }

    fn description(&self) -> &str {
        "Past tickets most similar to this one, with how analysts concluded them \
         (conclusion, reason) and the agent's earlier verdicts. Use it to see whether this \
         pattern was a false positive or a real incident before."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                          "description": "how many tickets, best first"}
            },
            "required": ["limit"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let args: LimitArgs = parse(arguments)?;
        let limit = limit_in_range(args.limit)?;
        let ticket = ticket_of(ctx)?;
        let Some(vector) = self
            .store
            .get_ticket_embedding(ticket, &self.model)
            .await
            .map_err(failed)?
        else {
            return Ok(ToolOutput::clipped(
                "no embedding is stored for this ticket yet, so no similar tickets can be found",
                self.clip_bytes,
            ));
        };
        let similar = self
            .store
            .similar_tickets(&self.model, &vector, limit, Some(ticket))
            .await
            .map_err(failed)?;
        let items: Vec<Value> = similar
            .iter()
            .map(|s| {
                json!({
                    "ticket_id": s.ticket_id,
                    "title": s.title,
                    "status": s.status,
                    "conclusion": s.conclusion,
                    "reason": s.reason,
                    "agent_verdict": s.finding.as_ref().and_then(|f| f.get("verdict")),
                    "agent_summary": s.finding.as_ref().and_then(|f| f.get("summary")),
                    "created_at": s.created_at,
                    "score": (s.score * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        Ok(answer(
            &json!({ "similar_tickets": items }),
            self.clip_bytes,
        ))
    }
}

struct GetAlerts {
    store: Arc<dyn Store>,
    clip_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageArgs {
    limit: u64,
    offset: u64,
}

/// Alerts a ticket can be paged through; beyond this the model is told to stop.
const MAX_OFFSET: u64 = 1000;

#[async_trait::async_trait]
impl Tool for GetAlerts {
    fn name(&self) -> &str {
        "get_alerts"
    }

    fn description(&self) -> &str {
        "The alerts attached to this ticket, newest first, with their attributes and raw data."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET,
                           "description": "alerts to skip, newest first"}
            },
            "required": ["limit", "offset"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let args: PageArgs = parse(arguments)?;
        let limit = limit_in_range(args.limit)?;
        if args.offset > MAX_OFFSET {
            return Err(ToolError::InvalidArguments(format!(
                "offset must be at most {MAX_OFFSET}"
            )));
        }
        let ticket = ticket_of(ctx)?;
        let page = self
            .store
            .list_alerts(&AlertQuery {
                ticket: Some(ticket),
                limit: args.offset as usize + limit,
                ..AlertQuery::default()
            })
            .await
            .map_err(failed)?;
        let alerts: Vec<Value> = page
            .items
            .iter()
            .skip(args.offset as usize)
            .map(|a| {
                json!({
                    "id": a.id,
                    "schema": a.schema,
                    "title": a.title,
                    "description": a.description,
                    "severity": a.severity,
                    "attributes": a.attributes,
                    "created_at": a.created_at,
                    "data": a.data,
                })
            })
            .collect();
        let total = self
            .store
            .get_ticket(ticket)
            .await
            .map_err(failed)?
            .map(|t| t.alert_count);
        Ok(answer(
            &json!({ "alert_count": total, "offset": args.offset, "alerts": alerts }),
            self.clip_bytes,
        ))
    }
}

struct GetComments {
    store: Arc<dyn Store>,
    clip_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[async_trait::async_trait]
impl Tool for GetComments {
    fn name(&self) -> &str {
        "get_comments"
    }

    fn description(&self) -> &str {
        "The analysts' comments on this ticket (from the web, the API and Slack), oldest first."
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }

    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let _: NoArgs = parse(if arguments.is_null() {
            json!({})
        } else {
            arguments
        })?;
        let ticket = ticket_of(ctx)?;
        let comments = self.store.list_comments(ticket).await.map_err(failed)?;
        let items: Vec<Value> = comments
            .iter()
            .map(|c| json!({"author": c.author, "source": c.source, "text": c.text, "created_at": c.created_at}))
            .collect();
        Ok(answer(&json!({ "comments": items }), self.clip_bytes))
    }
}
