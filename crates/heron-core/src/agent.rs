//! The triage agent's records and the port of the tools it calls.
//!
//! Invariants:
//! - an [`AgentRun`] that has ended has exactly one of: a validated [`Finding`]
//!   (`completed`), the budget that stopped it (`budget_exhausted`), or an error (`failed`);
//! - every step carries its latency and tokens, and a tool step its arguments and a result
//!   clipped to what was sent to the model, so a run can be audited after the fact;
//! - a finding's `evidence` names steps of the same run (`step-<n>`), so every claim points at
//!   the tool result it rests on.

use crate::TicketId;
use crate::llm::TokenUsage;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingSeverity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    TruePositive,
    FalsePositive,
    Benign,
    Inconclusive,
}

/// What the agent concluded, as submitted through its `submit_finding` tool.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub severity: FindingSeverity,
    pub verdict: Verdict,
    /// 0 to 1.
    pub confidence: f64,
    pub summary: String,
    pub reason: String,
    pub recommendation: String,
    /// Step references (`step-3`) of the tool results the finding rests on.
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    BudgetExhausted,
    Failed,
}

/// The budget that ended a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    Steps,
    RunTokens,
    WallTime,
    DailyTokens,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A call to the model.
    Model,
    /// A tool the model called (including `submit_finding`).
    Tool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStep {
    /// 1-based; a finding cites it as `step-<index>`.
    pub index: u32,
    pub kind: StepKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The arguments as the model wrote them (raw text when they were not JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// What went back to the model, after clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
    pub tokens: TokenUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_processed: Option<u64>,
}

/// Why a run happened.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPurpose {
    /// The investigation of a new ticket, ending with a finding.
    #[default]
    Triage,
    /// An answer to a question about the ticket (web, API or Slack).
    Chat,
    /// A `data.enrich` prompt task.
    Enrich,
}

crate::event::str_enum!(RunPurpose {
    Triage => "triage",
    Chat => "chat",
    Enrich => "enrich",
});

crate::event::str_enum!(RunStatus {
    Running => "running",
    Completed => "completed",
    BudgetExhausted => "budget_exhausted",
    Failed => "failed",
});

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    pub id: uuid::Uuid,
    pub ticket_id: TicketId,
    #[serde(default)]
    pub purpose: RunPurpose,
    pub model: String,
    pub status: RunStatus,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finding: Option<Finding>,
    /// A chat's or an enrichment task's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    pub budget: Option<BudgetKind>,
    pub error: Option<String>,
    pub usage: TokenUsage,
    pub steps: Vec<AgentStep>,
}

/// What a tool call gives back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolOutput {
    /// Text for the model, already clipped to the tool's size limit (see
    /// [`crate::tool::clip`]).
    pub text: String,
    /// Bytes a query scanned (BigQuery), for the record and the scan budget.
    pub bytes_processed: Option<u64>,
    /// Set when `text` is a cut-down version of a longer result.
    pub clipped: Option<crate::tool::Clipped>,
    /// The answer came from the tool cache, not from the service.
    pub cached: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's schema; the message says how, for the model.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool refused on policy (a scan cap, an allow-list); the message says why.
    #[error("refused: {0}")]
    Refused(String),
    #[error("the tool did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the tool failed: {0}")]
    Failed(String),
}

/// A capability offered to the agent. Tools only read: none changes anything outside Heron.
#[async_trait]
pub trait Tool: Send + Sync {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON schema of the arguments object.
    fn parameters(&self) -> serde_json::Value;
    /// Longest the agent waits for this tool.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
    /// Runs the tool. `ctx` belongs to the current run and is the same for all its calls.
    async fn call(
        &self,
        arguments: serde_json::Value,
        ctx: &crate::tool::ToolContext,
    ) -> Result<ToolOutput, ToolError>;
}
