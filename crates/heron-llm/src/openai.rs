//! Chat and embeddings over async-openai.
//!
//! Requests are written in the wire format every OpenAI-compatible server speaks and read into
//! async-openai's typed requests, so the port's types stay independent of the crate's (which
//! move between releases). async-openai builds the HTTP requests and parses the answers; the
//! transport under it ([`crate::retry`]) sends them, with deadlines and the retry policy.

use crate::retry::{HttpFailure, RetryPolicy, RetryingTransport};
use crate::{LlmSettings, LlmSetupError};
use async_openai::Client;
use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use async_openai::error::OpenAIError;
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
use std::sync::Arc;
use std::time::Duration;

/// First step of the retry backoff.
const BASE_DELAY: Duration = Duration::from_millis(200);

/// What the endpoint serves: chat, or embeddings (on Azure each is its own deployment).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Chat,
    Embeddings,
}

fn client(
    settings: &LlmSettings,
    purpose: Purpose,
) -> Result<Client<Box<dyn Config>>, LlmSetupError> {
    let base = settings.base_url.trim().trim_end_matches('/');
    if base.is_empty() {
        return Err(LlmSetupError::Invalid("the base URL is empty".into()));
    }
    let key = settings.api_key.clone().unwrap_or_default();
    // async-openai builds these headers with `parse().unwrap()` on every request; a key with a
    // control character (a stray newline from a secrets file) must fail here, not panic there.
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
        return Err(LlmSetupError::Invalid(
            "the API key contains characters not allowed in an HTTP header".into(),
        ));
    }
    // The client enforces the per-attempt deadline on connect, send and the whole body.
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .build()?;
    let transport = RetryingTransport::new(
        http.clone(),
        RetryPolicy {
            max_retries: settings.max_retries,
            base_delay: BASE_DELAY,
            timeout: settings.timeout,
        },
    );
    let config: Box<dyn Config> = match &settings.azure {
        None => Box::new(
            // Explicit key, organisation and project (possibly empty), so stray OPENAI_*
            // variables in the environment are never sent to a different endpoint.
            OpenAIConfig::new()
                .with_api_base(base)
                .with_api_key(key)
                .with_org_id("")
                .with_project_id(""),
        ),
        Some(azure) => {
            let deployment = match purpose {
                Purpose::Chat => Some(azure.deployment.as_str()),
                Purpose::Embeddings => azure.embedding_deployment.as_deref(),
            }
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                LlmSetupError::Invalid(match purpose {
                    Purpose::Chat => "Azure OpenAI needs a chat deployment".into(),
                    Purpose::Embeddings => "Azure OpenAI needs an embedding deployment".into(),
                })
            })?;
            if azure.api_version.trim().is_empty() {
                return Err(LlmSetupError::Invalid(
                    "Azure OpenAI needs an api-version".into(),
                ));
            }
            Box::new(
                AzureConfig::new()
                    .with_api_base(base)
                    .with_api_key(key)
                    .with_deployment_id(deployment)
                    .with_api_version(azure.api_version.trim()),
            )
        }
    };
    // `build` rather than `with_config`: the latter makes a default reqwest client of its own,
    // which panics when no TLS provider is installed.
    Ok(Client::build(http, config).with_http_service(transport))
}

/// Chat completions with tool calling.
#[derive(Clone)]
pub struct OpenAiChat {
    client: Arc<Client<Box<dyn Config>>>,
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
            client: Arc::new(client(&settings, Purpose::Chat)?),
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
        let response = self
            .client
            .chat()
            .create(typed)
            .await
            .map_err(|e| map_error(e, self.settings.timeout))?;
        chat_response(response)
    }
}

/// Text embeddings from the configured embedding model.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: Arc<Client<Box<dyn Config>>>,
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
            client: Arc::new(client(&settings, Purpose::Embeddings)?),
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
        let response: CreateEmbeddingResponse = self
            .client
            .embeddings()
            .create(typed)
            .await
            .map_err(|e| map_error(e, self.settings.timeout))?;
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

/// The final outcome of the transport (see [`crate::retry`]) as the port's error.
fn map_error(error: OpenAIError, timeout: Duration) -> LlmError {
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpFailure>() {
            Ok(failure) => map_failure(*failure),
            Err(other) => LlmError::Other(other.to_string()),
        },
        // Only reachable if a response bypassed the transport; kept for completeness.
        OpenAIError::ApiError(api) => map_failure(HttpFailure::Status {
            status: api.status_code.as_u16(),
            message: api.api_error.message,
            kind: api.api_error.r#type,
            code: api.api_error.code,
            retry_after: None,
        }),
        OpenAIError::Reqwest(e) if e.is_timeout() => LlmError::Timeout(timeout),
        OpenAIError::JSONDeserialize(e, _) => LlmError::Protocol(e.to_string()),
        OpenAIError::InvalidArgument(message) => LlmError::BadRequest(message),
        other => LlmError::Other(other.to_string()),
    }
}

fn map_failure(failure: HttpFailure) -> LlmError {
    let text = failure.to_string();
    match failure {
        HttpFailure::Status {
            status,
            kind,
            code,
            retry_after,
            ..
        } => {
            let quota = [&kind, &code]
                .iter()
                .any(|v| v.as_deref() == Some("insufficient_quota"));
            match status {
                401 | 403 => LlmError::Auth(text),
                429 if quota => LlmError::Auth(format!("quota exhausted: {text}")),
                408 | 429 | 500..=599 => LlmError::Transient {
                    message: text,
                    retry_after,
                },
                _ => LlmError::BadRequest(text),
            }
        }
        HttpFailure::Timeout(after) => LlmError::Timeout(after),
        HttpFailure::Connection(_) => LlmError::Transient {
            message: text,
            retry_after: None,
        },
        HttpFailure::Protocol(_) => LlmError::Protocol(text),
        HttpFailure::Other(_) => LlmError::Other(text),
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
