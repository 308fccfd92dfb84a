//! Chat and embeddings over async-openai.
//!
//! Requests are written in the wire format every OpenAI-compatible server speaks and read into
//! async-openai's typed requests, so the port's types stay independent of the crate's (which
//! move between releases) while async-openai still does transport, errors and retries.

use crate::{LlmSettings, LlmSetupError};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::middleware::retry::OpenAIRetryLayer;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, CreateChatCompletionRequest, CreateChatCompletionResponse,
    FinishReason as WireFinish,
};
use async_openai::types::embeddings::{CreateEmbeddingRequest, CreateEmbeddingResponse};
use async_trait::async_trait;
use heron_core::llm::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, Embedder, Embeddings, FinishReason,
    LlmError, TokenUsage, ToolCall,
};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;

fn client(settings: &LlmSettings) -> Result<Client<OpenAIConfig>, LlmSetupError> {
    if settings.base_url.trim().is_empty() {
        return Err(LlmSetupError::Invalid("the base URL is empty".into()));
    }
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .build()?;
    let service = tower::ServiceBuilder::new()
        .layer(OpenAIRetryLayer::new(settings.max_retries as usize))
        .service(ReqwestService::new(http));
    // An explicit (possibly empty) key, so a stray OPENAI_API_KEY in the environment is
    // never sent to a different endpoint.
    let config = OpenAIConfig::new()
        .with_api_base(settings.base_url.trim_end_matches('/'))
        .with_api_key(settings.api_key.clone().unwrap_or_default());
    Ok(Client::with_config(config).with_http_service(service))
}

/// Chat completions with tool calling.
#[derive(Clone)]
pub struct OpenAiChat {
    client: Client<OpenAIConfig>,
    settings: LlmSettings,
}

impl std::fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("settings", &self.settings)
            .finish()
    }
}

impl OpenAiChat {
    pub fn new(settings: LlmSettings) -> Result<Self, LlmSetupError> {
        if settings.model.trim().is_empty() {
            return Err(LlmSetupError::Invalid(
                "the chat model name is empty".into(),
            ));
        }
        Ok(Self {
            client: client(&settings)?,
            settings,
        })
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn model(&self) -> &str {
        &self.settings.model
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let wire = chat_request(&self.settings.model, &request);
        let typed: CreateChatCompletionRequest = serde_json::from_value(wire)
            .map_err(|e| LlmError::Other(format!("building the chat request: {e}")))?;
        let response = with_timeout_retries(&self.settings, || {
            let typed = typed.clone();
            async move { self.client.chat().create(typed).await }
        })
        .await?;
        chat_response(response)
    }
}

/// Text embeddings from the configured embedding model.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    settings: LlmSettings,
    model: String,
    dimensions: usize,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// Needs `embedding_model` and `embedding_dimensions`: vectors of an unknown length cannot
    /// be given a database column.
    pub fn new(settings: LlmSettings) -> Result<Self, LlmSetupError> {
        let model = settings
            .embedding_model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| LlmSetupError::Invalid("no embedding model is configured".into()))?;
        let dimensions = settings
            .embedding_dimensions
            .filter(|d| (1..=16_000).contains(d))
            .ok_or_else(|| {
                LlmSetupError::Invalid("embedding dimensions must be set, 1 to 16000".into())
            })? as usize;
        Ok(Self {
            client: client(&settings)?,
            settings,
            model,
            dimensions,
        })
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn name(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        if texts.is_empty() {
            return Ok(Embeddings {
                vectors: Vec::new(),
                usage: TokenUsage::default(),
            });
        }
        let wire = json!({
            "model": self.model,
            "input": texts,
            "dimensions": self.dimensions,
            "encoding_format": "float",
        });
        let typed: CreateEmbeddingRequest = serde_json::from_value(wire)
            .map_err(|e| LlmError::Other(format!("building the embedding request: {e}")))?;
        let response: CreateEmbeddingResponse = with_timeout_retries(&self.settings, || {
            let typed = typed.clone();
            async move { self.client.embeddings().create(typed).await }
        })
        .await?;
        let mut data = response.data;
        data.sort_by_key(|d| d.index);
        if data.len() != texts.len() {
            return Err(LlmError::Protocol(format!(
                "{} vectors for {} texts",
                data.len(),
                texts.len()
            )));
        }
        let vectors: Vec<Vec<f32>> = data.into_iter().map(|d| d.embedding).collect();
        if let Some(bad) = vectors.iter().find(|v| v.len() != self.dimensions) {
            return Err(LlmError::Protocol(format!(
                "a vector of {} dimensions, expected {}",
                bad.len(),
                self.dimensions
            )));
        }
        Ok(Embeddings {
            vectors,
            usage: TokenUsage {
                prompt_tokens: response.usage.prompt_tokens,
                completion_tokens: 0,
                total_tokens: response.usage.total_tokens,
            },
        })
    }
}

/// Runs `call`, retrying a request that timed out (async-openai's layer retries the other
/// transient failures itself) with exponential backoff, and maps the final error.
async fn with_timeout_retries<T, F, Fut>(settings: &LlmSettings, call: F) -> Result<T, LlmError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, OpenAIError>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                let mapped = map_error(error, settings.timeout);
                if matches!(mapped, LlmError::Timeout(_)) && attempt < settings.max_retries {
                    let delay = Duration::from_millis(200u64 << attempt.min(6));
                    tracing::warn!(attempt, ?delay, "the model endpoint timed out; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    continue;
                }
                return Err(mapped);
            }
        }
    }
}

fn map_error(error: OpenAIError, timeout: Duration) -> LlmError {
    match error {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message = api.api_error.message.clone();
            match status {
                401 | 403 => LlmError::Auth(message),
                429 if api.api_error.code.as_deref() == Some("insufficient_quota") => {
                    LlmError::Auth(format!("quota exhausted: {message}"))
                }
                429 | 500..=599 => LlmError::Transient {
                    message: format!("HTTP {status}: {message}"),
                    retry_after: None,
                },
                _ => LlmError::BadRequest(format!("HTTP {status}: {message}")),
            }
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(timeout),
        OpenAIError::Reqwest(e) if e.is_connect() => LlmError::Transient {
            message: format!("cannot connect: {e}"),
            retry_after: None,
        },
        OpenAIError::JSONDeserialize(e, _) => LlmError::Protocol(e.to_string()),
        other => {
            // Timeouts can also arrive wrapped by the middleware.
            let text = other.to_string();
            if text.contains("timed out") || text.contains("operation timed out") {
                LlmError::Timeout(timeout)
            } else {
                LlmError::Other(text)
            }
        }
    }
}

/// The port's request in OpenAI's wire format.
fn chat_request(model: &str, request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| match m {
            ChatMessage::System { content } => json!({"role": "system", "content": content}),
            ChatMessage::User { content } => json!({"role": "user", "content": content}),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut message = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    message["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": c.arguments}})
                        })
                        .collect();
                }
                message
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}),
        })
        .collect();
    let mut wire = json!({"model": model, "messages": messages});
    if !request.tools.is_empty() {
        wire["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        wire["tool_choice"] = json!("auto");
    }
    if let Some(max) = request.max_tokens {
        wire["max_completion_tokens"] = json!(max);
    }
    wire
}

fn chat_response(response: CreateChatCompletionResponse) -> Result<ChatResponse, LlmError> {
    let usage = response
        .usage
        .map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        })
        .unwrap_or_default();
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Protocol("the answer has no choices".into()))?;
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .filter_map(|call| match call {
            ChatCompletionMessageToolCalls::Function(f) => Some(ToolCall {
                id: f.id,
                name: f.function.name,
                arguments: f.function.arguments,
            }),
            // Custom (free-form) tools are never offered, so such a call cannot be answered.
            ChatCompletionMessageToolCalls::Custom(_) => None,
        })
        .collect();
    let finish_reason = match choice.finish_reason {
        Some(WireFinish::Stop) => FinishReason::Stop,
        Some(WireFinish::ToolCalls) => FinishReason::ToolCalls,
        Some(WireFinish::Length) => FinishReason::Length,
        Some(WireFinish::ContentFilter) => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    };
    Ok(ChatResponse {
        content: choice.message.content,
        tool_calls,
        finish_reason,
        usage,
        model: response.model,
    })
}
