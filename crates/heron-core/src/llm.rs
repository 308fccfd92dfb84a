//! Ports to a language model: chat with tool calling, and text embeddings.
//!
//! Invariants:
//! - every successful call reports its token usage, so budgets can be enforced by the caller;
//! - a tool call's arguments are passed through as the raw string the model produced, even
//!   when it is not valid JSON: answering a malformed call is the agent's job, not the
//!   transport's;
//! - errors say whether trying again can help ([`LlmError::is_transient`]); adapters retry
//!   transient ones themselves before returning them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One message of a conversation, in the shape every OpenAI-compatible API shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's answer to the call `tool_call_id`.
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Raw JSON text as the model wrote it; may be malformed.
    pub arguments: String,
}

/// A tool offered to the model: its name, what it does, and a JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    /// Upper bound on the completion's tokens, when the caller's budget needs one.
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    /// Cut by the token limit.
    Length,
    ContentFilter,
    Other,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl TokenUsage {
    pub fn add(&mut self, other: TokenUsage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: FinishReason,
    pub usage: TokenUsage,
    /// The model that answered, as the server names it.
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embeddings {
    /// One vector per input text, in order, each of the embedder's dimensions.
    pub vectors: Vec<Vec<f32>>,
    pub usage: TokenUsage,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// Rate limited or a server error that outlasted the retries.
    #[error("the model endpoint is unavailable: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the model endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The API key is missing, wrong or lacks access; retrying cannot help.
    #[error("the model endpoint refused the credentials: {0}")]
    Auth(String),
    /// The request itself is wrong (unknown model, bad parameters); retrying cannot help.
    #[error("the model endpoint rejected the request: {0}")]
    BadRequest(String),
    /// The answer could not be understood.
    #[error("the model endpoint answered something unusable: {0}")]
    Protocol(String),
    #[error("{0}")]
    Other(String),
}

impl LlmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. } | Self::Timeout(_))
    }
}

#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The configured model name (for records and display).
    fn model(&self) -> &str;
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, LlmError>;
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Length of every vector this embedder returns.
    fn dimensions(&self) -> usize;
    /// What produced the vectors (a model name, or the local hashing embedder), so vectors
    /// from different embedders are never compared.
    fn name(&self) -> &str;
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError>;
}
