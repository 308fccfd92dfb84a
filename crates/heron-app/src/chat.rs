//! Chat with the agent about a ticket: the question and the answer become the ticket's
//! comments (so the web, the API and Slack show one conversation), and the run is stored
//! with every step.
//!
//! Invariants: the question is stored before the model is asked, so it is never lost even
//! when the model fails; an answer is stored as a comment by [`AGENT_AUTHOR`] only when the
//! run completed; every run is stored, whatever its end, and counted.

use crate::triage::{StoreDailyTokens, ticket_context};
use crate::{Actor, AppError, AppResult, TicketService};
use heron_agent::Agent;
use heron_core::agent::{AgentRun, AgentStep, RunStatus};
use heron_core::ports::Store;
use heron_core::{Comment, CommentSource, TicketId};
use std::sync::Arc;

/// Who the agent's comments are from.
pub const AGENT_AUTHOR: &str = "heron";

/// Longest question accepted, in bytes.
pub const MAX_QUESTION_BYTES: usize = 4000;

#[derive(Debug, Clone)]
pub struct ChatReply {
    pub run: AgentRun,
    pub question: Comment,
    /// The answer as stored on the ticket; `None` when the run did not complete.
    pub answer: Option<Comment>,
}

#[derive(Clone)]
pub struct ChatService {
    store: Arc<dyn Store>,
    tickets: TicketService,
    agent: Arc<Agent>,
    daily: Arc<StoreDailyTokens>,
}

impl ChatService {
    pub fn new(store: Arc<dyn Store>, agent: Arc<Agent>, daily: Arc<StoreDailyTokens>) -> Self {
        Self {
            tickets: TicketService::new(store.clone()),
            store,
            agent,
            daily,
        }
    }

    /// Asks the agent `question` about `ticket` on behalf of `actor`; `on_step` sees every
    /// step of the run as it happens.
    pub async fn ask(
        &self,
        ticket: TicketId,
        actor: &Actor,
        question: &str,
        on_step: &(dyn Fn(&AgentStep) + Send + Sync),
    ) -> AppResult<ChatReply> {
        let question = question.trim();
        if question.is_empty() {
            return Err(AppError::Invalid("the question is empty".into()));
        }
        if question.len() > MAX_QUESTION_BYTES {
            return Err(AppError::Invalid(format!(
                "the question is longer than {MAX_QUESTION_BYTES} bytes"
            )));
        }
        let Some(current) = self.store.get_ticket(ticket).await? else {
            return Err(AppError::NotFound(format!("ticket {ticket}")));
        };
        // The context is read before the question is stored, so the question appears once:
        // as the question, not also as part of the conversation.
        let context = ticket_context(self.store.as_ref(), &current).await?;
        let asked = self.tickets.add_comment(ticket, actor, question).await?;
        let now = self.store.now().await?;
        if let Err(e) = self.daily.refresh(self.store.as_ref(), now).await {
            tracing::warn!(error = %e, "could not read today's token use; using the last known count");
        }
        let run = self
            .agent
            .chat(ticket, &context, question, now, on_step)
            .await;
        crate::metrics::agent_run(&run);
        self.store.save_agent_run(&run).await?;
        crate::audit::record(
            self.store.as_ref(),
            actor,
            "agent.run",
            Some(ticket),
            Some(run.id.to_string()),
            serde_json::json!({ "purpose": "chat", "status": run.status }),
        )
        .await;
        let answer = match (&run.status, &run.answer) {
            (RunStatus::Completed, Some(text)) => Some(
                self.tickets
                    .add_comment(
                        ticket,
                        &Actor {
                            name: AGENT_AUTHOR.into(),
                            source: CommentSource::Agent,
                            remote: None,
                        },
                        &clip_answer(text),
                    )
                    .await?,
            ),
            _ => None,
        };
        Ok(ChatReply {
            run,
            question: asked,
            answer,
        })
    }
}

/// An answer fits in a comment.
fn clip_answer(text: &str) -> String {
    heron_core::tool::clip(text, crate::tickets::MAX_COMMENT_BYTES).0
}
