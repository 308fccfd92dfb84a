//! Heron's language-model adapters: [`OpenAiChat`] and [`OpenAiEmbedder`] for any
//! OpenAI-compatible endpoint (OpenAI, Azure OpenAI, a LiteLLM proxy, vLLM, Ollama, Gemini's
//! OpenAI-compatible API…) through async-openai, and [`HashingEmbedder`], a local embedder for
//! when no embedding model is configured.
//!
//! Invariants:
//! - every request has a deadline ([`LlmSettings::timeout`]) covering connect, send and the
//!   whole answer; no call can hang;
//! - one retry policy (module `retry`) handles every transient failure, at most
//!   [`LlmSettings::max_retries`] times after the first attempt: rate limits (429, waiting at
//!   least as long as `Retry-After` says, up to [`MAX_RETRY_AFTER`]), server errors (5xx),
//!   timeouts and connection errors, with exponential backoff and jitter otherwise;
//!   authentication (401/403), bad requests (400/404/422) and exhausted quota are returned
//!   after exactly one request; async-openai's built-in retries are switched off;
//! - the HTTP client is reqwest on rustls with the process's ring provider (ADR 0002): the
//!   process must install it before building an adapter, or construction fails (never panics);
//! - settings with a value async-openai would panic on (an API key that is not a valid header)
//!   are refused at construction.
//!
//! Feature `testing` adds [`testing::FakeOpenAi`], a local server speaking the chat and
//! embeddings wire formats, scripted per test, for this crate's tests and anyone else's.

mod hashing;
mod limit;
mod openai;
mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use hashing::HashingEmbedder;
pub use limit::{Limited, RequestLimit};
pub use openai::{OpenAiChat, OpenAiEmbedder};
pub use retry::MAX_RETRY_AFTER;

use std::time::Duration;

/// Where the model lives and how patiently to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct LlmSettings {
    /// Base URL including the version path, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1` for Ollama.
    pub base_url: String,
    pub api_key: Option<String>,
    /// Chat model name.
    pub model: String,
    /// Embedding model name; without one, similarity uses [`HashingEmbedder`].
    pub embedding_model: Option<String>,
    /// Requested vector length (sent as `dimensions` to models that support it).
    pub embedding_dimensions: Option<u32>,
    /// Deadline of one HTTP request.
    pub timeout: Duration,
    /// Retries after the first attempt of a transient failure.
    pub max_retries: u32,
    /// Set for Azure OpenAI: `base_url` is then the resource, e.g.
    /// `https://my-resource.openai.azure.com`, and the key goes in the `api-key` header.
    pub azure: Option<AzureSettings>,
}

/// Azure OpenAI addresses deployments, not models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// The `api-version` query parameter, e.g. `2024-10-21`.
    pub api_version: String,
    /// Deployment of the chat model.
    pub deployment: String,
    /// Deployment of the embedding model, when embeddings come from Azure too.
    pub embedding_deployment: Option<String>,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("embedding_model", &self.embedding_model)
            .field("embedding_dimensions", &self.embedding_dimensions)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("azure", &self.azure)
            .finish()
    }
}

impl LlmSettings {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            embedding_model: None,
            embedding_dimensions: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            azure: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmSetupError {
    #[error(
        "cannot build the HTTP client for the model endpoint (is a TLS provider installed?): {0}"
    )]
    HttpClient(#[from] reqwest::Error),
    #[error("invalid LLM settings: {0}")]
    Invalid(String),
}
