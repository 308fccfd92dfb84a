//! The triage agent's investigation tools, each an [`heron_core::agent::Tool`]:
//!
//! - [`otx`]: `otx_ipv4`, `otx_ipv6`, `otx_domain`, `otx_hostname`, `otx_file_hash`,
//!   `otx_url` (AlienVault OTX indicator lookups);
//! - [`urlscan`]: `urlscan_search`, `urlscan_result`, and `urlscan_scan` when enabled;
//! - [`bigquery`]: `bigquery_query` (under a per-query cap and a per-investigation budget),
//!   `bigquery_schema`, `get_runbook`.
//!
//! Invariants every tool keeps:
//! - arguments are checked before anything is sent: each tool decodes them into a typed
//!   struct that denies unknown fields (its JSON schema, offered to the model, says the same:
//!   every property required, no others), then checks their values (an IPv4 tool only sends
//!   a dotted quad); a refusal says what was wrong, for the model to correct;
//! - every external request has a deadline, and the tool's own
//!   [`Tool::timeout`](heron_core::agent::Tool::timeout) covers the whole call;
//! - what reaches the model is a summary of the answer, clipped to the configured size
//!   (16 KB by default) with a `[clipped: N of M bytes]` note when cut;
//! - tools only read; the one that makes a third party act (`urlscan_scan`) is off unless
//!   enabled and only takes public URLs;
//! - threat-intelligence answers are cached through [`heron_core::tool::ToolCache`] when one
//!   is given; a failing cache is a miss, never an error.
//!
//! HTTP clients are reqwest on rustls with the process's ring provider (ADR 0002): install it
//! before building tools. BigQuery goes through gcp-bigquery-client, which brings its own
//! reqwest 0.12, also on rustls with ring.
//!
//! Feature `testing` adds [`testing`]: local fakes of the OTX, urlscan.io and BigQuery REST
//! APIs speaking their wire formats, for these tests and the agent's.

pub mod bigquery;
mod common;
pub mod otx;
pub mod urlscan;
mod validate;

#[cfg(feature = "testing")]
pub mod testing;

pub use bigquery::{AllowedTable, BigQueryConfig, BigQueryCredentials, BigQueryTools};
pub use common::{format_bytes, parse_byte_size};
pub use otx::{OtxConfig, otx_tools};
pub use urlscan::{UrlscanConfig, urlscan_tools};

/// Why tools could not be built from their configuration.
#[derive(Debug, thiserror::Error)]
pub enum ToolsSetupError {
    #[error("cannot build the HTTP client (is a TLS provider installed?): {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("invalid tool settings: {0}")]
    Invalid(String),
    #[error("BigQuery: {0}")]
    BigQuery(String),
    #[error("runbooks: {0}")]
    Runbooks(String),
}
