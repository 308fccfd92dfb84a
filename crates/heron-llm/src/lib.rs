//! Heron's language-model adapters: [`OpenAiChat`] and [`OpenAiEmbedder`] for any
//! OpenAI-compatible endpoint (OpenAI, a LiteLLM proxy, vLLM, Ollama, Gemini's OpenAI-compatible
//! API…) through async-openai, and [`HashingEmbedder`], a local embedder for when no embedding
//! model is configured.
//!
//! Invariants:
//! - every request has a deadline ([`LlmSettings::timeout`]); no call can hang;
//! - transient failures are retried at most [`LlmSettings::max_retries`] times: rate limits
//!   (429, waiting as long as `Retry-After` says), server errors (5xx) and connection errors by
//!   async-openai's retry layer, timeouts by this crate; authentication (401/403) and
//!   bad-request (400/404/422) errors are returned at once;
//! - the HTTP client is reqwest on rustls with the process's ring provider (ADR 0002).

mod hashing;
mod openai;

pub use hashing::HashingEmbedder;
pub use openai::{OpenAiChat, OpenAiEmbedder};

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
