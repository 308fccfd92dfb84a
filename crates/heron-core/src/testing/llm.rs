//! A scripted [`ChatModel`]: answers from a queue and records every request, so agent tests
//! can drive a conversation step by step and inspect exactly what was sent.

use crate::llm::{
    ChatModel, ChatRequest, ChatResponse, FinishReason, LlmError, TokenUsage, ToolCall,
};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct ScriptedChatModel {
    replies: Mutex<VecDeque<Result<ChatResponse, LlmError>>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedChatModel {
    pub fn new(replies: Vec<Result<ChatResponse, LlmError>>) -> Self {
        Self {
            replies: Mutex::new(replies.into()),
            requests: Mutex::default(),
        }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// An answer calling tools; each call is `(name, arguments)`, ids are `call_<n>`.
    pub fn calls(calls: &[(&str, &str)], tokens: u32) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            content: None,
            tool_calls: calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| ToolCall {
                    id: format!("call_{i}"),
                    name: (*name).to_owned(),
                    arguments: (*arguments).to_owned(),
                })
                .collect(),
            finish_reason: FinishReason::ToolCalls,
            usage: TokenUsage {
                prompt_tokens: tokens,
                completion_tokens: 0,
                total_tokens: tokens,
            },
            model: "scripted".into(),
        })
    }

    /// A plain text answer.
    pub fn text(content: &str, tokens: u32) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            content: Some(content.to_owned()),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: TokenUsage {
                prompt_tokens: tokens,
                completion_tokens: 0,
                total_tokens: tokens,
            },
            model: "scripted".into(),
        })
    }
}

#[async_trait]
impl ChatModel for ScriptedChatModel {
    fn model(&self) -> &str {
        "scripted"
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(request);
        }
        self.replies
            .lock()
            .ok()
            .and_then(|mut r| r.pop_front())
            .unwrap_or_else(|| Err(LlmError::Other("the script is exhausted".into())))
    }
}
