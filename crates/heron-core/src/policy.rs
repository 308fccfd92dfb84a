//! The policy port: what the pipeline asks of the Rego engine. Evaluation is synchronous CPU
//! work (microseconds); implementations must be cheap to share across threads.

use crate::{AlertDraft, Attribute, SchemaName, Severity};
use serde::{Deserialize, Serialize};

/// What `data.ingest.<schema>` made of an event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestOutput {
    pub alerts: Vec<AlertDraft>,
    /// False when no `ingest.<schema>` package exists and the default single alert was made.
    pub package_found: bool,
}

/// `data.triage`'s input, in warren's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageInput {
    pub alert: TriageAlert,
    pub enrich: Vec<EnrichResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageAlert {
    pub id: String,
    pub schema: SchemaName,
    pub metadata: TriageMetadata,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageMetadata {
    pub title: String,
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub tags: Vec<String>,
    pub channel: Option<String>,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichResult {
    pub id: String,
    pub prompt: String,
    pub result: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    #[default]
    Alert,
    Notice,
    Discard,
}

/// `data.triage`'s decision; every field but `publish` may be left undefined by the policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TriageDecision {
    pub publish: Publish,
    pub title: Option<String>,
    pub description: Option<String>,
    pub channel: Option<String>,
    pub severity: Option<Severity>,
    pub assignee: Option<String>,
    pub attr: Vec<Attribute>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy ran but failed (a conflict, a builtin error, a timeout…).
    #[error("policy {query} failed: {message}")]
    Evaluation { query: String, message: String },
    /// The policy ran but its output does not have the documented shape.
    #[error("policy {query} returned an unusable result: {message}")]
    Output { query: String, message: String },
}

/// Facts about the loaded policy set, for `/readyz` and the API.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub packages: Vec<String>,
    pub ingest_schemas: Vec<String>,
    pub has_triage: bool,
    pub files: usize,
}

pub trait PolicyEngine: Send + Sync {
    fn ingest(
        &self,
        schema: &SchemaName,
        event: &serde_json::Value,
    ) -> Result<IngestOutput, PolicyError>;
    fn triage(&self, input: &TriageInput) -> Result<TriageDecision, PolicyError>;
    fn info(&self) -> PolicyInfo;
}
