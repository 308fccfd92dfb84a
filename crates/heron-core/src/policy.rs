//! The policy port: what the pipeline asks of the Rego engine. Evaluation is synchronous CPU
//! work (microseconds); implementations must be cheap to share across threads.
//!
//! Invariants:
//! - an [`EnrichTask`] has exactly one prompt (inline text or a named template) and an id
//!   unique among the tasks of one evaluation, so `data.triage` can find its result by id;
//! - an engine without a `data.enrich` package answers no tasks and [`PolicyEngine::has_enrich`]
//!   `false`, so callers can skip building the enrich input at all.

use crate::alert::MetadataSource;
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
    /// Where the title came from (`policy`, `default` or `llm`), as warren gives it.
    pub title_source: MetadataSource,
    pub description_source: MetadataSource,
}

/// One `data.enrich` task's outcome, as `data.triage` sees it (warren's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichResult {
    pub id: String,
    /// The prompt the agent was given (the inline text, or the rendered template).
    pub prompt: String,
    /// The answer: a string for `format: text`, the parsed value for `format: json`, or
    /// `{"error": "..."}` when the task could not produce one.
    pub result: serde_json::Value,
}

/// How a task's answer is handed to `data.triage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichFormat {
    /// The answer's text, as a JSON string.
    #[default]
    Text,
    /// The answer parsed as JSON.
    Json,
}

/// Where a task's prompt comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrichPrompt {
    /// The policy's own text.
    Inline(String),
    /// A template loaded with the policies, rendered over the alert and `params`.
    Template {
        name: String,
        params: serde_json::Map<String, serde_json::Value>,
    },
}

/// One element of `data.enrich.prompts`, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichTask {
    /// The policy's `id`, or `task_` and 8 hex digits derived from the task's content (stable
    /// across runs, so a replay gives the same ids).
    pub id: String,
    pub prompt: EnrichPrompt,
    pub format: EnrichFormat,
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
    /// The event given as text is not a JSON object.
    #[error("the event is not a JSON object: {0}")]
    Input(String),
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
    /// [`ingest`](Self::ingest) through a faster evaluator that may report a rule conflict
    /// as fewer alerts instead of an error. Only for callers that check what they report
    /// (replay re-evaluates with `ingest` every event whose outcome differs), never for the
    /// worker. The event is its stored JSON text, which the evaluator may read without
    /// building a `serde_json::Value` first; text that is not a JSON object is
    /// [`PolicyError::Input`]. Default: parse, then `ingest`.
    fn ingest_unchecked(
        &self,
        schema: &SchemaName,
        event_json: &str,
    ) -> Result<IngestOutput, PolicyError> {
        self.ingest(schema, &event_object(event_json)?)
    }
    fn info(&self) -> PolicyInfo;
    /// A digest of everything [`ingest`](Self::ingest) depends on, when the engine can tell:
    /// two engines with equal digests make the same alerts from every event, so a caller
    /// comparing them (replay) may evaluate ingest once. `None` (the default): unknown.
    fn ingest_digest(&self) -> Option<u64> {
        None
    }
    /// Whether a `data.enrich` package exists: when it does not, [`enrich`](Self::enrich)
    /// answers no tasks and callers need not build its input.
    fn has_enrich(&self) -> bool {
        false
    }
    /// `data.auth.agent.allow` for `input` (who asks the agent or presses a button, where,
    /// about which ticket): `None` when no `auth.agent` package is loaded, else whether it
    /// allows (an undefined `allow` denies).
    fn authorize_agent(&self, input: &serde_json::Value) -> Result<Option<bool>, PolicyError> {
        let _ = input;
        Ok(None)
    }
    /// Whether a `data.auth.http` package is loaded (then every webhook and API request is
    /// asked about through [`authorize_http`](Self::authorize_http)).
    fn has_auth_http(&self) -> bool {
        false
    }
    /// `data.auth.http.allow` for a request's `input` (`{req, token, env}`): `None` when no
    /// `auth.http` package is loaded, else whether it allows (an undefined `allow` denies).
    fn authorize_http(&self, input: &serde_json::Value) -> Result<Option<bool>, PolicyError> {
        let _ = input;
        Ok(None)
    }
    /// `data.enrich.prompts` for `alert` (warren's flattened alert JSON). No package: no tasks.
    fn enrich(&self, alert: &serde_json::Value) -> Result<Vec<EnrichTask>, PolicyError> {
        let _ = alert;
        Ok(Vec::new())
    }
    /// The text of a task's prompt: the inline text, or its template rendered over `alert`
    /// and the task's params. An unknown template is [`PolicyError::Output`].
    fn render_prompt(
        &self,
        task: &EnrichTask,
        alert: &serde_json::Value,
    ) -> Result<String, PolicyError> {
        let _ = alert;
        match &task.prompt {
            EnrichPrompt::Inline(text) => Ok(text.clone()),
            EnrichPrompt::Template { name, .. } => Err(PolicyError::Output {
                query: "data.enrich.prompts".into(),
                message: format!(
                    "task {}: no prompt template named {name:?} is loaded",
                    task.id
                ),
            }),
        }
    }
}

/// Why a fresh policy set was refused on reload: it does not compile, or its own `test_*`
/// rules do not pass. The message is for people (file:line first when there is one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyLoadFailure(pub String);

/// Loads the configured policies afresh for a reload: compiled, and checked against the
/// set's own `test_*` rules, so only a set that passes them is ever handed out. Synchronous
/// CPU and file work; callers run it off the async threads.
pub trait PolicyLoader: Send + Sync {
    fn load(&self) -> Result<std::sync::Arc<dyn PolicyEngine>, PolicyLoadFailure>;
}

/// A policy set tried out with extra files: compiled and tested, never put in force.
pub struct PolicyTrial {
    pub engine: std::sync::Arc<dyn PolicyEngine>,
    pub tests_passed: usize,
    pub tests_total: usize,
}

/// Tries changes to the configured policies without applying them (tuning drafts): the
/// configured folders plus `extra` `(relative path, text)` files, compiled, with every
/// `test_*` rule run. A set that does not compile or whose tests do not all pass is a
/// [`PolicyLoadFailure`]. Synchronous; callers run it off the async threads.
pub trait PolicyWorkbench: Send + Sync {
    fn trial(&self, extra: &[(String, String)]) -> Result<PolicyTrial, PolicyLoadFailure>;
}

/// An event's stored text as the worker reads it: a JSON object, or [`PolicyError::Input`].
pub fn event_object(event_json: &str) -> Result<serde_json::Value, PolicyError> {
    let event: serde_json::Value =
        serde_json::from_str(event_json).map_err(|e| PolicyError::Input(e.to_string()))?;
    if !event.is_object() {
        return Err(PolicyError::Input(format!("a JSON {}", json_kind(&event))));
    }
    Ok(event)
}

/// What a JSON value is, for a message.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
