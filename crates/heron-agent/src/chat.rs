//! Chat: answering an analyst's question about a ticket, with the same tools, fence and
//! budgets as an investigation, ending on the model's first answer without tool calls.
//!
//! The conversation so far (the ticket's comments, earlier answers included) travels in the
//! fenced ticket context, so an earlier comment cannot pose as an instruction; only the
//! question itself is outside the fence. Each recorded step is handed to an observer as it
//! happens, which is how answers stream to the web and Slack.

use crate::{Agent, End, prompt, push_step};
use heron_core::agent::{AgentRun, AgentStep, RunPurpose, RunStatus, StepKind};
use heron_core::llm::{ChatMessage, ChatRequest, TokenUsage};
use heron_core::tool::ToolContext;
use heron_core::{TicketId, Timestamp};
use std::time::Instant;

impl Agent {
    /// Answers `question` about the ticket described by `context` (untrusted). `on_step` sees
    /// every step once recorded. The run ends `completed` with `answer` set, or on a budget
    /// or a model failure, as investigations do.
    pub async fn chat(
        &self,
        ticket_id: TicketId,
        context: &serde_json::Value,
        question: &str,
        now: Timestamp,
        on_step: &(dyn Fn(&AgentStep) + Send + Sync),
    ) -> AgentRun {
        let fence = prompt::Fence::new();
        let mut run = AgentRun {
            id: uuid::Uuid::now_v7(),
            ticket_id,
            purpose: RunPurpose::Chat,
            model: self.model.model().to_owned(),
            status: RunStatus::Running,
            started_at: now,
            finished_at: None,
            finding: None,
            answer: None,
            budget: None,
            error: None,
            usage: TokenUsage::default(),
            steps: Vec::new(),
        };
        let mut messages = vec![
            ChatMessage::System {
                content: prompt::chat_system(&fence),
            },
            ChatMessage::User {
                content: prompt::chat_question(&fence, context, question),
            },
        ];
        let ctx = ToolContext::new(run.id, Some(ticket_id));
        let started = Instant::now();
        match self
            .chat_steps(&mut run, &mut messages, &fence, &ctx, started, on_step)
            .await
        {
            Ok(answer) => {
                run.status = RunStatus::Completed;
                run.answer = Some(answer);
            }
            Err(End::Budget(kind)) => {
                run.status = RunStatus::BudgetExhausted;
                run.budget = Some(kind);
            }
            Err(End::Failed(error)) => {
                run.status = RunStatus::Failed;
                run.error = Some(error);
            }
        }
        let elapsed = chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        run.finished_at = Some(now + elapsed);
        run
    }

    async fn chat_steps(
        &self,
        run: &mut AgentRun,
        messages: &mut Vec<ChatMessage>,
        fence: &prompt::Fence,
        ctx: &ToolContext,
        started: Instant,
        on_step: &(dyn Fn(&AgentStep) + Send + Sync),
    ) -> Result<String, End> {
        let tools = self.offered_tools();
        loop {
            self.check_budgets(run, started)?;
            let remaining = self.budgets.wall_time.saturating_sub(started.elapsed());
            let request = ChatRequest {
                messages: messages.clone(),
                tools: tools.clone(),
                max_tokens: None,
            };
            let call_started = Instant::now();
            let response = match tokio::time::timeout(remaining, self.model.chat(request)).await {
                Err(_) => return Err(End::Budget(heron_core::agent::BudgetKind::WallTime)),
                Ok(Err(e)) => {
                    push_step(run, StepKind::Model, call_started, |s| {
                        s.error = Some(e.to_string());
                    });
                    notify(run, on_step);
                    return Err(End::Failed(crate::describe(&e)));
                }
                Ok(Ok(response)) => response,
            };
            run.usage.add(response.usage);
            self.daily.spend(u64::from(response.usage.total_tokens));
            push_step(run, StepKind::Model, call_started, |s| {
                s.tokens = response.usage;
                s.result = response.content.clone();
            });
            notify(run, on_step);
            if response.tool_calls.is_empty() {
                let answer = response.content.unwrap_or_default();
                if answer.trim().is_empty() {
                    return Err(End::Failed("the model answered nothing".into()));
                }
                return Ok(answer);
            }
            messages.push(ChatMessage::Assistant {
                content: response.content.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            for call in &response.tool_calls {
                let arguments = serde_json::from_str::<serde_json::Value>(&call.arguments);
                let shown = Some(
                    arguments
                        .as_ref()
                        .ok()
                        .cloned()
                        .unwrap_or_else(|| serde_json::Value::String(call.arguments.clone())),
                );
                let content = self
                    .call_tool(run, call, arguments, shown, fence, ctx, started)
                    .await;
                notify(run, on_step);
                messages.push(ChatMessage::Tool {
                    tool_call_id: call.id.clone(),
                    content,
                });
            }
        }
    }
}

fn notify(run: &AgentRun, on_step: &(dyn Fn(&AgentStep) + Send + Sync)) {
    if let Some(step) = run.steps.last() {
        on_step(step);
    }
}
