//! The triage agent: a tool-calling loop over a [`ChatModel`] that ends when the model submits
//! a valid [`Finding`], or when a budget runs out.
//!
//! Invariants:
//! - the model can only cause the tools it was offered to run; a call naming anything else is
//!   answered with an error and runs nothing;
//! - ticket data and tool results reach the model inside a per-run fence with an unguessable
//!   marker, and the marker is removed from the data first, so data can never close the fence
//!   and pose as instructions;
//! - budgets (steps, tokens per run, wall time, tokens per day for the whole service) are
//!   checked before every model call and the model has no way to change them; when one runs
//!   out the run ends `budget_exhausted`, keeping every step so far;
//! - every run ends — with a finding, a budget, or a recorded error — and never panics.

mod chat;
mod finding;
mod prompt;
mod task;

pub use finding::{finding_schema, validate_finding};
pub use task::{AlertText, MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, TaskError, TaskOutcome};

use chrono::{NaiveDate, Utc};
use heron_core::agent::{
    AgentRun, AgentStep, BudgetKind, Finding, RunStatus, StepKind, Tool, ToolError,
};
use heron_core::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, TokenUsage, ToolSpec};
use heron_core::tool::ToolContext;
use heron_core::{TicketId, Timestamp};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tool through which the model ends a run.
pub const SUBMIT_FINDING: &str = "submit_finding";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    /// Model calls plus tool calls.
    pub max_steps: u32,
    /// Prompt plus completion tokens over the run.
    pub max_run_tokens: u64,
    pub wall_time: Duration,
    /// Bytes of a tool result sent back to the model.
    pub max_tool_result_bytes: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            max_steps: 12,
            max_run_tokens: 100_000,
            wall_time: Duration::from_secs(300),
            max_tool_result_bytes: 16 * 1024,
        }
    }
}

/// The service-wide daily token allowance shared by every run.
pub trait DailyTokens: Send + Sync {
    fn remaining(&self) -> u64;
    fn spend(&self, tokens: u64);
}

/// A daily allowance kept in memory, reset at midnight UTC.
#[derive(Debug)]
pub struct InMemoryDailyTokens {
    limit: u64,
    spent: Mutex<(NaiveDate, u64)>,
}

impl InMemoryDailyTokens {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            spent: Mutex::new((Utc::now().date_naive(), 0)),
        }
    }

    fn with_today<T>(&self, f: impl FnOnce(&mut u64) -> T) -> T {
        let mut guard = match self.spent.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let today = Utc::now().date_naive();
        if guard.0 != today {
            *guard = (today, 0);
        }
        f(&mut guard.1)
    }
}

impl DailyTokens for InMemoryDailyTokens {
    fn remaining(&self) -> u64 {
        self.with_today(|spent| self.limit.saturating_sub(*spent))
    }

    fn spend(&self, tokens: u64) {
        self.with_today(|spent| *spent = spent.saturating_add(tokens));
    }
}

pub struct Agent {
    model: Arc<dyn ChatModel>,
    tools: Vec<Arc<dyn Tool>>,
    budgets: Budgets,
    daily: Arc<dyn DailyTokens>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("model", &self.model.model())
            .field(
                "tools",
                &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field("budgets", &self.budgets)
            .finish()
    }
}

impl Agent {
    pub fn new(
        model: Arc<dyn ChatModel>,
        tools: Vec<Arc<dyn Tool>>,
        budgets: Budgets,
        daily: Arc<dyn DailyTokens>,
    ) -> Self {
        Self {
            model,
            tools,
            budgets,
            daily,
        }
    }

    /// The configured tools, as offered to the model in a chat (no `submit_finding`).
    pub(crate) fn offered_tools(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name().to_owned(),
                description: t.description().to_owned(),
                parameters: t.parameters(),
            })
            .collect()
    }

    /// The tools offered to the model: the configured ones and `submit_finding`.
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self
            .tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name().to_owned(),
                description: t.description().to_owned(),
                parameters: t.parameters(),
            })
            .collect();
        specs.push(ToolSpec {
            name: SUBMIT_FINDING.into(),
            description: "Submit your finding and end the investigation. Cite the steps \
                          (step-N) whose results support it."
                .into(),
            parameters: finding_schema(),
        });
        specs
    }

    /// Investigates one ticket. `context` is the ticket and its alerts as JSON: untrusted.
    pub async fn investigate(
        &self,
        ticket_id: TicketId,
        context: &serde_json::Value,
        now: Timestamp,
    ) -> AgentRun {
        self.investigate_observed(ticket_id, context, now, &|_| {})
            .await
    }

    /// [`Agent::investigate`], with `on_step` seeing every step as soon as it is recorded
    /// (for progress shown while the run works), in order, each once.
    pub async fn investigate_observed(
        &self,
        ticket_id: TicketId,
        context: &serde_json::Value,
        now: Timestamp,
        on_step: &(dyn Fn(&AgentStep) + Send + Sync),
    ) -> AgentRun {
        let fence = prompt::Fence::new();
        let mut run = AgentRun {
            id: uuid::Uuid::now_v7(),
            ticket_id,
            purpose: heron_core::agent::RunPurpose::Triage,
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
                content: prompt::system(&fence),
            },
            ChatMessage::User {
                content: prompt::ticket(&fence, context),
            },
        ];
        let tools = self.tool_specs();
        // One context per run: the tools' per-run state (the scan ledger) starts empty.
        let ctx = ToolContext::new(run.id, Some(ticket_id));
        let started = Instant::now();
        let mut seen = 0;
        let outcome = self
            .steps(
                &mut run,
                &mut messages,
                &tools,
                &fence,
                &ctx,
                started,
                &mut |run: &AgentRun| report_new_steps(run, &mut seen, on_step),
            )
            .await;
        report_new_steps(&run, &mut seen, on_step);
        match outcome {
            Ok(finding) => {
                run.status = RunStatus::Completed;
                run.finding = Some(finding);
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

    #[allow(clippy::too_many_arguments)]
    async fn steps(
        &self,
        run: &mut AgentRun,
        messages: &mut Vec<ChatMessage>,
        tools: &[ToolSpec],
        fence: &prompt::Fence,
        ctx: &ToolContext,
        started: Instant,
        report: &mut (dyn FnMut(&AgentRun) + Send),
    ) -> Result<Finding, End> {
        loop {
            report(run);
            self.check_budgets(run, started)?;
            let remaining = self.budgets.wall_time.saturating_sub(started.elapsed());
            let request = ChatRequest {
                messages: messages.clone(),
                tools: tools.to_vec(),
                max_tokens: None,
            };
            let call_started = Instant::now();
            let response = match tokio::time::timeout(remaining, self.model.chat(request)).await {
                Err(_) => return Err(End::Budget(BudgetKind::WallTime)),
                Ok(Err(e)) => {
                    push_step(run, StepKind::Model, call_started, |s| {
                        s.error = Some(e.to_string());
                    });
                    return Err(End::Failed(describe(&e)));
                }
                Ok(Ok(response)) => response,
            };
            run.usage.add(response.usage);
            self.daily.spend(u64::from(response.usage.total_tokens));
            push_step(run, StepKind::Model, call_started, |s| {
                s.tokens = response.usage;
                s.result = response.content.clone();
            });
            messages.push(ChatMessage::Assistant {
                content: response.content.clone(),
                tool_calls: response.tool_calls.clone(),
            });
            if response.tool_calls.is_empty() {
                messages.push(ChatMessage::User {
                    content: prompt::NUDGE.into(),
                });
                continue;
            }
            for call in &response.tool_calls {
                let call_started = Instant::now();
                let arguments = serde_json::from_str::<serde_json::Value>(&call.arguments);
                let shown_arguments = Some(
                    arguments
                        .as_ref()
                        .ok()
                        .cloned()
                        .unwrap_or_else(|| serde_json::Value::String(call.arguments.clone())),
                );
                if call.name == SUBMIT_FINDING {
                    let checked = arguments
                        .map_err(|e| format!("the arguments are not JSON: {e}"))
                        .and_then(|value| validate_finding(value, &run.steps));
                    match checked {
                        Ok(finding) => {
                            push_step(run, StepKind::Tool, call_started, |s| {
                                s.tool = Some(call.name.clone());
                                s.arguments = shown_arguments;
                                s.result = Some("accepted".into());
                            });
                            return Ok(finding);
                        }
                        Err(why) => {
                            let answer = format!(
                                "finding rejected: {why}. Fix it and call {SUBMIT_FINDING} again."
                            );
                            push_step(run, StepKind::Tool, call_started, |s| {
                                s.tool = Some(call.name.clone());
                                s.arguments = shown_arguments;
                                s.error = Some(answer.clone());
                            });
                            messages.push(ChatMessage::Tool {
                                tool_call_id: call.id.clone(),
                                content: answer,
                            });
                            continue;
                        }
                    }
                }
                let content = self
                    .call_tool(run, call, arguments, shown_arguments, fence, ctx, started)
                    .await;
                report(run);
                messages.push(ChatMessage::Tool {
                    tool_call_id: call.id.clone(),
                    content,
                });
            }
        }
    }

    /// Runs one tool call the model asked for (refusing a tool that was not offered and
    /// arguments that are not JSON), records it as a step, and answers what goes back to the
    /// model: the result inside the data fence, or the error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_tool(
        &self,
        run: &mut AgentRun,
        call: &heron_core::llm::ToolCall,
        arguments: Result<serde_json::Value, serde_json::Error>,
        shown_arguments: Option<serde_json::Value>,
        fence: &prompt::Fence,
        ctx: &ToolContext,
        started: Instant,
    ) -> String {
        let call_started = Instant::now();
        let step_index = next_index(run);
        let (content, result, error, bytes) =
            match self.tools.iter().find(|t| t.name() == call.name) {
                None => {
                    let why = format!(
                        "there is no tool named {:?}; use only the tools offered",
                        call.name
                    );
                    (why.clone(), None, Some(why), None)
                }
                Some(tool) => match arguments {
                    Err(e) => {
                        let why = format!("the arguments are not JSON: {e}");
                        (why.clone(), None, Some(why), None)
                    }
                    Ok(value) => {
                        let remaining = self.budgets.wall_time.saturating_sub(started.elapsed());
                        let limit = tool.timeout().min(remaining);
                        match tokio::time::timeout(limit, tool.call(value, ctx)).await {
                            Err(_) => {
                                let why = ToolError::Timeout(limit).to_string();
                                (why.clone(), None, Some(why), None)
                            }
                            Ok(Err(e)) => {
                                let why = e.to_string();
                                (why.clone(), None, Some(why), None)
                            }
                            Ok(Ok(output)) => {
                                let clipped =
                                    clip(&output.text, self.budgets.max_tool_result_bytes);
                                (
                                    fence.wrap(&format!("step-{step_index}"), &clipped),
                                    Some(clipped),
                                    None,
                                    output.bytes_processed,
                                )
                            }
                        }
                    }
                },
            };
        push_step(run, StepKind::Tool, call_started, |s| {
            s.tool = Some(call.name.clone());
            s.arguments = shown_arguments;
            s.result = result;
            s.error = error;
            s.bytes_processed = bytes;
        });
        content
    }

    fn check_budgets(&self, run: &AgentRun, started: Instant) -> Result<(), End> {
        if run.steps.len() as u64 >= u64::from(self.budgets.max_steps) {
            return Err(End::Budget(BudgetKind::Steps));
        }
        if u64::from(run.usage.total_tokens) >= self.budgets.max_run_tokens {
            return Err(End::Budget(BudgetKind::RunTokens));
        }
        if started.elapsed() >= self.budgets.wall_time {
            return Err(End::Budget(BudgetKind::WallTime));
        }
        if self.daily.remaining() == 0 {
            return Err(End::Budget(BudgetKind::DailyTokens));
        }
        Ok(())
    }
}

enum End {
    Budget(BudgetKind),
    Failed(String),
}

fn describe(error: &LlmError) -> String {
    format!("the model call failed: {error}")
}

fn next_index(run: &AgentRun) -> u32 {
    u32::try_from(run.steps.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

/// Hands `on_step` the steps recorded since the last call (`seen` counts those handed).
fn report_new_steps(
    run: &AgentRun,
    seen: &mut usize,
    on_step: &(dyn Fn(&AgentStep) + Send + Sync),
) {
    for step in run.steps.iter().skip(*seen) {
        on_step(step);
    }
    *seen = run.steps.len();
}

fn push_step(
    run: &mut AgentRun,
    kind: StepKind,
    started: Instant,
    fill: impl FnOnce(&mut AgentStep),
) {
    let mut step = AgentStep {
        index: next_index(run),
        kind,
        tool: None,
        arguments: None,
        result: None,
        error: None,
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        tokens: TokenUsage::default(),
        bytes_processed: None,
    };
    fill(&mut step);
    run.steps.push(step);
}

/// At most `max` bytes (on a character boundary), with a note saying how much was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[clipped: {end} of {} bytes]", &text[..end], text.len())
}
