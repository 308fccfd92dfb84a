//! The triage agent's investigation tools, each a [`heron_core::agent::Tool`].
//!
//! Invariants:
//! - tools only read: none changes anything outside Heron;
//! - arguments are checked against the tool's schema before any request is made, and a
//!   failure says what is wrong in words the model can act on;
//! - every request has a deadline, and answers are summarised to what an analyst needs rather
//!   than passed through raw (the agent clips whatever is left).

pub mod otx;
pub mod urlscan;

#[derive(Debug, thiserror::Error)]
pub enum ToolSetupError {
    #[error("cannot build the HTTP client (is a TLS provider installed?): {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("invalid tool settings: {0}")]
    Invalid(String),
}
