//! BigQuery for the agent: `bigquery_query`, `bigquery_schema` and `get_runbook`, through
//! gcp-bigquery-client.
//!
//! Invariants of `bigquery_query` (in this order, each before anything costs money):
//! 1. the SQL is one read-only statement that reads only allow-listed tables (see [`sql`] for
//!    how references are found and what that cannot see);
//! 2. a dry run (`dryRun: true`) estimates the bytes scanned; above the per-query cap the
//!    query is refused with the numbers and advice the model can act on;
//! 3. the estimate is reserved in the run's [`ScanLedger`](heron_core::tool::ScanLedger)
//!    against the per-ticket budget, atomically, so concurrent calls of one run cannot
//!    overspend it together; over budget, the query is refused;
//! 4. the real job runs with `maximumBytesBilled` set to the per-query cap, so BigQuery itself
//!    stops a query whose estimate was wrong;
//! 5. the ledger is settled with the bytes actually processed (0 for a failed job or a cache
//!    hit); a query that timed out keeps its estimate counted, as it may still be running;
//! 6. at most `max_rows` rows are fetched (following `pageToken`) and at most `clip_bytes` of
//!    them reach the model, with a note saying what was left out and how to narrow the query.
//!
//! `bigquery_schema` answers columns only for allow-listed tables; `get_runbook` is offered
//! only when runbooks were loaded.

pub(crate) mod rows;
pub mod runbook;
pub(crate) mod sql;

use crate::ToolsSetupError;
use crate::common::{self, format_bytes};
use async_trait::async_trait;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use heron_core::agent::{Tool, ToolError, ToolOutput};
use heron_core::tool::{DEFAULT_CLIP_BYTES, ToolContext, clip};
use runbook::Runbook;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the client authenticates to Google.
#[derive(Clone, PartialEq, Eq)]
pub enum BigQueryCredentials {
    /// A service-account key file (JSON).
    ServiceAccountKeyFile(PathBuf),
    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file,
    /// or the metadata server on Google Cloud.
    ApplicationDefault,
    /// A fixed bearer token (tests, emulators, tokens minted elsewhere).
    AccessToken(String),
}

impl std::fmt::Debug for BigQueryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServiceAccountKeyFile(path) => {
                f.debug_tuple("ServiceAccountKeyFile").field(path).finish()
            }
            Self::ApplicationDefault => f.write_str("ApplicationDefault"),
            Self::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

/// A table the agent may read, and what it holds (shown to the model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTable {
    /// `project.dataset.table` or `dataset.table` (in the configured project); may end in
    /// `*` for a wildcard table, which then must be queried exactly so.
    pub table: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryConfig {
    /// The project jobs run (and are billed) in.
    pub project_id: String,
    /// Job location (`US`, `EU`, `europe-west1`…), when not the default.
    pub location: Option<String>,
    pub credentials: BigQueryCredentials,
    /// The REST API root (default Google's); for tests and emulators.
    pub base_url: Option<String>,
    pub tables: Vec<AllowedTable>,
    /// Folder of `.sql` runbooks (see [`runbook`]).
    pub runbook_dir: Option<PathBuf>,
    /// Largest estimated scan of one query; also its `maximumBytesBilled`.
    pub max_bytes_per_query: u64,
    /// Largest total scan of one run (one ticket's investigation).
    pub max_bytes_per_ticket: u64,
    /// Rows fetched per query.
    pub max_rows: usize,
    /// Largest answer given to the model.
    pub clip_bytes: usize,
    /// Deadline of one tool call (dry run, job and paging together).
    pub timeout: Duration,
}

impl BigQueryConfig {
    pub const DEFAULT_MAX_BYTES_PER_QUERY: u64 = 10_000_000_000;
    pub const DEFAULT_MAX_BYTES_PER_TICKET: u64 = 50_000_000_000;

    pub fn new(project_id: impl Into<String>, credentials: BigQueryCredentials) -> Self {
        Self {
            project_id: project_id.into(),
            location: None,
            credentials,
            base_url: None,
            tables: Vec::new(),
            runbook_dir: None,
            max_bytes_per_query: Self::DEFAULT_MAX_BYTES_PER_QUERY,
            max_bytes_per_ticket: Self::DEFAULT_MAX_BYTES_PER_TICKET,
            max_rows: 100,
            clip_bytes: DEFAULT_CLIP_BYTES,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A fully qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct TableId {
    project: String,
    dataset: String,
    table: String,
}

impl TableId {
    /// `dataset.table` (in `default_project`) or `project.dataset.table`; the project may
    /// itself contain dots (domain-scoped projects), so segments are taken from the right.
    fn parse(path: &str, default_project: &str) -> Option<Self> {
        let mut parts = path.rsplitn(3, '.');
        let table = parts.next()?.trim();
        let dataset = parts.next()?.trim();
        let project = parts.next().unwrap_or(default_project).trim();
        if [project, dataset, table].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Self {
            project: project.to_ascii_lowercase(),
            dataset: dataset.to_owned(),
            table: table.to_owned(),
        })
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// The three BigQuery tools, sharing one client.
#[derive(Clone)]
pub struct BigQueryTools {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BigQueryTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryTools")
            .field("config", &self.inner.config)
            .field("runbooks", &self.inner.runbooks.keys().collect::<Vec<_>>())
            .finish()
    }
}

struct Inner {
    config: BigQueryConfig,
    client: gcp_bigquery_client::Client,
    tables: BTreeMap<TableId, String>,
    runbooks: BTreeMap<String, Runbook>,
}

#[derive(Clone)]
struct StaticToken(String);

#[async_trait]
impl gcp_bigquery_client::auth::Authenticator for StaticToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(self.0.clone())
    }
}

impl BigQueryTools {
    /// Checks the configuration, loads the runbooks and builds the client. Makes no request:
    /// credentials are first used by the first query.
    pub async fn connect(config: BigQueryConfig) -> Result<Self, ToolsSetupError> {
        let invalid = |why: String| Err(ToolsSetupError::Invalid(why));
        if config.project_id.trim().is_empty() {
            return invalid("the BigQuery project is empty".into());
        }
        if config.tables.is_empty() {
            return invalid("no BigQuery tables are allowed; list at least one".into());
        }
        if config.max_bytes_per_query == 0 || config.max_bytes_per_ticket == 0 {
            return invalid("BigQuery scan caps must be above zero".into());
        }
        if config.max_rows == 0 {
            return invalid("BigQuery max rows must be above zero".into());
        }
        let mut tables = BTreeMap::new();
        for allowed in &config.tables {
            let Some(id) = TableId::parse(&allowed.table, &config.project_id) else {
                return invalid(format!(
                    "allowed table {:?} is not dataset.table or project.dataset.table",
                    allowed.table
                ));
            };
            tables.insert(id, allowed.description.trim().to_owned());
        }
        let runbooks = match &config.runbook_dir {
            Some(dir) => runbook::load(dir)?,
            None => BTreeMap::new(),
        };
        let http = reqwest012::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ToolsSetupError::BigQuery(format!("building the HTTP client: {e}")))?;
        let mut builder = ClientBuilder::new();
        builder.with_client(http);
        if let Some(base) = &config.base_url {
            builder.with_v2_base_url(common::base_url("BigQuery base URL", base)?);
        }
        let client = match &config.credentials {
            BigQueryCredentials::AccessToken(token) => {
                builder
                    .build_from_authenticator(Arc::new(StaticToken(token.clone())))
                    .await
            }
            BigQueryCredentials::ServiceAccountKeyFile(path) => {
                builder
                    .build_from_service_account_key_file(&path.to_string_lossy())
                    .await
            }
            BigQueryCredentials::ApplicationDefault => {
                builder.build_from_application_default_credentials().await
            }
        }
        .map_err(|e| ToolsSetupError::BigQuery(format!("building the client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                client,
                tables,
                runbooks,
            }),
        })
    }

    /// `bigquery_query`, `bigquery_schema`, and `get_runbook` when runbooks exist.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        let mut tools: Vec<Arc<dyn Tool>> = vec![
            Arc::new(QueryTool {
                description: self.inner.query_description(),
                inner: Arc::clone(&self.inner),
            }),
            Arc::new(SchemaTool {
                description: self.inner.schema_description(),
                inner: Arc::clone(&self.inner),
            }),
        ];
        if !self.inner.runbooks.is_empty() {
            tools.push(Arc::new(RunbookTool {
                description: self.inner.runbook_description(),
                inner: Arc::clone(&self.inner),
            }));
        }
        tools
    }

    /// The loaded runbooks, by name.
    pub fn runbooks(&self) -> Vec<Runbook> {
        self.inner.runbooks.values().cloned().collect()
    }
}

impl Inner {
    fn table_list(&self) -> String {
        let mut list = String::new();
        for (id, description) in &self.tables {
            let _ = write!(list, "\n- `{id}`");
            if !description.is_empty() {
                let _ = write!(list, ": {description}");
            }
        }
        list
    }

    fn query_description(&self) -> String {
        format!(
            "Run a read-only GoogleSQL query on the security log tables below and get up to \
             {rows} rows back. Every query is dry-run first: one scanning more than {cap} is \
             refused, and this investigation may scan {budget} in all. Check columns with \
             bigquery_schema first; select only the columns you need, filter on the \
             partition/time column to the narrowest window, and aggregate (COUNT, GROUP BY) \
             instead of paging through rows. Qualify tables as dataset.table. Tables:{list}",
            rows = self.config.max_rows,
            cap = format_bytes(self.config.max_bytes_per_query),
            budget = format_bytes(self.config.max_bytes_per_ticket),
            list = self.table_list(),
        )
    }

    fn schema_description(&self) -> String {
        format!(
            "Show the columns (name, type, mode, description), partitioning and clustering of \
             one of these tables:{}",
            self.table_list()
        )
    }

    fn runbook_description(&self) -> String {
        let mut list = String::new();
        for runbook in self.runbooks.values() {
            let _ = write!(list, "\n- {}: {}", runbook.name, runbook.title);
            if !runbook.description.is_empty() {
                let _ = write!(list, " — {}", runbook.description);
            }
        }
        format!(
            "Get the SQL of a vetted investigation query (runbook) by name, to adapt and run \
             with bigquery_query. Runbooks:{list}"
        )
    }

    /// The allow-listed table `path` names, or a refusal listing what is allowed.
    fn allowed(&self, path: &str) -> Result<TableId, ToolError> {
        TableId::parse(path, &self.config.project_id)
            .filter(|id| self.tables.contains_key(id))
            .ok_or_else(|| {
                ToolError::Refused(format!(
                    "`{path}` is not one of the tables this tool may read:{}",
                    self.table_list()
                ))
            })
    }

    fn check_tables(&self, sql_text: &str) -> Result<(), ToolError> {
        let analysis = sql::analyse(sql_text).map_err(|why| {
            ToolError::Refused(format!("{why}. Allowed tables:{}", self.table_list()))
        })?;
        let mut refused = Vec::new();
        for path in &analysis.tables {
            if !path.contains('.') {
                if analysis.ctes.contains(&path.to_ascii_lowercase()) {
                    continue;
                }
                refused.push(format!("`{path}` (qualify it as dataset.table)"));
                continue;
            }
            if self.allowed(path).is_err() {
                refused.push(format!("`{path}`"));
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(ToolError::Refused(format!(
                "the query reads {}, which this tool may not read. Allowed tables:{}",
                refused.join(", "),
                self.table_list()
            )))
        }
    }

    fn location(&self) -> Option<String> {
        self.config.location.clone()
    }
}

/// Maps the client's error to what the model is told.
fn bq_error(error: BQError, timeout: Duration) -> ToolError {
    match error {
        BQError::ResponseError { error } => {
            let nested = error.error;
            let reason = nested
                .errors
                .iter()
                .find_map(|e| e.get("reason").cloned())
                .unwrap_or_default();
            let message = nested.message;
            match (nested.code, reason.as_str()) {
                (_, "bytesBilledLimitExceeded") => ToolError::Refused(format!(
                    "BigQuery stopped the query at the per-query cap ({message}); narrow the \
                     time range or the columns"
                )),
                (400, _) | (_, "invalidQuery" | "invalid") => ToolError::InvalidArguments(format!(
                    "BigQuery rejected the query ({reason}): {message}"
                )),
                (403, "quotaExceeded" | "rateLimitExceeded") => ToolError::Failed(format!(
                    "BigQuery quota or rate limit reached ({reason}): {message}; continue \
                     without BigQuery or try later"
                )),
                (401 | 403, _) => {
                    ToolError::Failed(format!("BigQuery refused access ({reason}): {message}"))
                }
                (404, _) => ToolError::Failed(format!("BigQuery: not found: {message}")),
                (code, _) => ToolError::Failed(format!(
                    "BigQuery failed (HTTP {code}, {reason}): {message}"
                )),
            }
        }
        BQError::RequestError(e) if e.is_timeout() => ToolError::Timeout(timeout),
        BQError::RequestError(e) if e.is_decode() => ToolError::Failed(format!(
            "BigQuery answered something this client cannot read: {e}"
        )),
        BQError::AuthError(_) | BQError::YupAuthError(_) | BQError::NoToken => {
            ToolError::Failed(format!("BigQuery authentication failed: {error}"))
        }
        other => ToolError::Failed(format!("BigQuery failed: {other}")),
    }
}

fn parse_bytes(value: Option<&String>) -> Option<u64> {
    value.and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryArgs {
    sql: String,
    description: String,
}

struct QueryTool {
    inner: Arc<Inner>,
    description: String,
}

/// Longest SQL accepted.
const MAX_SQL_CHARS: usize = 100_000;
/// Room kept for the closing note when fitting rows into the clip size.
const NOTE_ROOM: usize = 400;

#[async_trait]
impl Tool for QueryTool {
    fn name(&self) -> &str {
        "bigquery_query"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        common::object_schema(json!({
            "sql": {"type": "string", "description": "one GoogleSQL SELECT statement"},
            "description": {"type": "string", "description": "what the query looks for, in one sentence"}
        }))
    }

    fn timeout(&self) -> Duration {
        self.inner.config.timeout + Duration::from_secs(1)
    }

    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let QueryArgs { sql, description } = common::parse_args(arguments)?;
        let sql = sql.trim().to_owned();
        if sql.is_empty() || sql.chars().count() > MAX_SQL_CHARS {
            return Err(ToolError::InvalidArguments(format!(
                "the SQL must be 1 to {MAX_SQL_CHARS} characters"
            )));
        }
        if description.trim().is_empty() {
            return Err(ToolError::InvalidArguments(
                "say in the description what the query looks for".into(),
            ));
        }
        self.inner.check_tables(&sql)?;
        let deadline = self.inner.config.timeout;
        tokio::time::timeout(deadline, self.run(&sql, description.trim(), ctx))
            .await
            .map_err(|_| ToolError::Timeout(deadline))?
    }
}

impl QueryTool {
    async fn run(
        &self,
        sql_text: &str,
        description: &str,
        ctx: &ToolContext,
    ) -> Result<ToolOutput, ToolError> {
        let config = &self.inner.config;
        let estimate = self.dry_run(sql_text).await?;
        if estimate > config.max_bytes_per_query {
            return Err(ToolError::Refused(format!(
                "this query would scan {} ({estimate} bytes), over the per-query cap of {} \
                 ({} bytes). Narrow the time range with a filter on the partition column, \
                 select fewer columns (never SELECT *), or query a smaller table, then try again.",
                format_bytes(estimate),
                format_bytes(config.max_bytes_per_query),
                config.max_bytes_per_query,
            )));
        }
        if let Err(spent) = ctx.scan.reserve(estimate, config.max_bytes_per_ticket) {
            return Err(ToolError::Refused(format!(
                "this query would scan {}, but this investigation has already scanned {} of \
                 its {} budget ({} left). Answer from the results you have, or run a much \
                 narrower query.",
                format_bytes(estimate),
                format_bytes(spent),
                format_bytes(config.max_bytes_per_ticket),
                format_bytes(config.max_bytes_per_ticket.saturating_sub(spent)),
            )));
        }
        match self.execute(sql_text, ctx).await {
            Ok(result) => {
                let actual = if result.cache_hit {
                    0
                } else {
                    result.bytes_processed.unwrap_or(estimate)
                };
                ctx.scan.settle(estimate, actual);
                Ok(self.render(description, &result, actual, ctx))
            }
            Err(error) => {
                // A failed job is not billed.
                ctx.scan.settle(estimate, 0);
                Err(error)
            }
        }
    }

    async fn dry_run(&self, sql_text: &str) -> Result<u64, ToolError> {
        let config = &self.inner.config;
        let mut request = QueryRequest::new(sql_text);
        request.dry_run = Some(true);
        // The estimate must not count on the cache: it bounds what the real job may bill.
        request.use_query_cache = Some(false);
        request.location = self.inner.location();
        let response = self
            .inner
            .client
            .job()
            .query(&config.project_id, request)
            .await
            .map_err(|e| bq_error(e, config.timeout))?;
        parse_bytes(response.total_bytes_processed.as_ref()).ok_or_else(|| {
            ToolError::Failed("BigQuery's dry run gave no estimate of the bytes scanned".into())
        })
    }

    async fn execute(&self, sql_text: &str, ctx: &ToolContext) -> Result<QueryResult, ToolError> {
        let config = &self.inner.config;
        let started = Instant::now();
        let page_size = i32::try_from(config.max_rows).unwrap_or(i32::MAX);
        let wait_ms = |started: Instant| {
            let left = config.timeout.saturating_sub(started.elapsed());
            i32::try_from(left.as_millis().min(60_000)).unwrap_or(60_000)
        };
        let mut request = QueryRequest::new(sql_text);
        request.maximum_bytes_billed = Some(config.max_bytes_per_query.to_string());
        request.max_results = Some(page_size);
        request.timeout_ms = Some(wait_ms(started));
        request.location = self.inner.location();
        request.use_query_cache = Some(true);
        request.labels = Some(HashMap::from([
            ("heron".to_owned(), "agent".to_owned()),
            ("heron_run".to_owned(), ctx.run_id.hyphenated().to_string()),
        ]));
        let error = |e: BQError| bq_error(e, config.timeout);
        let mut response: QueryResponse = self
            .inner
            .client
            .job()
            .query(&config.project_id, request)
            .await
            .map_err(error)?;
        let job = response.job_reference.clone().unwrap_or_default();
        let job_id = job.job_id.clone().unwrap_or_default();
        let location = job.location.clone().or_else(|| self.inner.location());
        // jobs.query answers before the job finishes when it runs longer than timeoutMs.
        while !response.job_complete.unwrap_or(false) {
            if job_id.is_empty() {
                return Err(ToolError::Failed(
                    "BigQuery did not finish the query and gave no job id to wait on".into(),
                ));
            }
            let parameters = GetQueryResultsParameters {
                location: location.clone(),
                max_results: Some(page_size),
                timeout_ms: Some(wait_ms(started)),
                ..GetQueryResultsParameters::default()
            };
            response = self
                .inner
                .client
                .job()
                .get_query_results(&config.project_id, &job_id, parameters)
                .await
                .map_err(error)?
                .into();
        }
        if let Some(errors) = response.errors.as_ref().filter(|e| !e.is_empty()) {
            let first = &errors[0];
            return Err(ToolError::Failed(format!(
                "BigQuery reported errors for the query: {}",
                first.message.clone().unwrap_or_else(|| first.to_string())
            )));
        }
        let fields = response
            .schema
            .as_ref()
            .and_then(|s| s.fields.clone())
            .unwrap_or_default();
        let mut rows = response.rows.take().unwrap_or_default();
        let mut page_token = response.page_token.take();
        while rows.len() < config.max_rows
            && let Some(token) = page_token.take()
        {
            let left = i32::try_from(config.max_rows - rows.len()).unwrap_or(i32::MAX);
            let parameters = GetQueryResultsParameters {
                location: location.clone(),
                max_results: Some(left),
                page_token: Some(token),
                timeout_ms: Some(wait_ms(started)),
                ..GetQueryResultsParameters::default()
            };
            let page = self
                .inner
                .client
                .job()
                .get_query_results(&config.project_id, &job_id, parameters)
                .await
                .map_err(error)?;
            rows.extend(page.rows.unwrap_or_default());
            page_token = page.page_token;
        }
        rows.truncate(config.max_rows);
        Ok(QueryResult {
            rows: rows.iter().map(|r| rows::to_json(&fields, r)).collect(),
            fields,
            total_rows: parse_bytes(response.total_rows.as_ref()),
            bytes_processed: parse_bytes(response.total_bytes_processed.as_ref()),
            cache_hit: response.cache_hit.unwrap_or(false),
            more_pages: page_token.is_some(),
        })
    }

    fn render(
        &self,
        description: &str,
        result: &QueryResult,
        bytes: u64,
        ctx: &ToolContext,
    ) -> ToolOutput {
        let config = &self.inner.config;
        let total = result.total_rows.unwrap_or(result.rows.len() as u64);
        let header = json!({
            "source": "bigquery",
            "description": description,
            "bytes_processed": bytes,
            "bytes_processed_human": format_bytes(bytes),
            "cache_hit": result.cache_hit,
            "total_rows": total,
            "columns": result.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            "investigation_scanned": format_bytes(ctx.scan.scanned()),
            "investigation_budget": format_bytes(config.max_bytes_per_ticket),
        });
        let mut text = header.to_string();
        let room = config.clip_bytes.saturating_sub(NOTE_ROOM);
        let mut shown = 0usize;
        for row in &result.rows {
            let line = row.to_string();
            if text.len() + 1 + line.len() > room {
                break;
            }
            text.push('\n');
            text.push_str(&line);
            shown += 1;
        }
        let fetched = result.rows.len();
        if (shown as u64) < total {
            let why = if shown < fetched {
                format!(
                    "the rest did not fit in {}",
                    format_bytes(config.clip_bytes as u64)
                )
            } else if result.more_pages || total > fetched as u64 {
                format!("at most {} rows are returned", config.max_rows)
            } else {
                "the rest were not returned".to_owned()
            };
            let _ = write!(
                text,
                "\n[rows: showing {shown} of {total}; {why}. Do not page through results: \
                 aggregate with COUNT/GROUP BY or add WHERE filters instead]"
            );
        }
        let (text, clipped) = clip(&text, config.clip_bytes);
        ToolOutput {
            text,
            bytes_processed: Some(bytes),
            clipped,
            cached: false,
        }
    }
}

struct QueryResult {
    fields: Vec<TableFieldSchema>,
    rows: Vec<Value>,
    total_rows: Option<u64>,
    bytes_processed: Option<u64>,
    cache_hit: bool,
    more_pages: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaArgs {
    table: String,
}

struct SchemaTool {
    inner: Arc<Inner>,
    description: String,
}

#[async_trait]
impl Tool for SchemaTool {
    fn name(&self) -> &str {
        "bigquery_schema"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        common::object_schema(json!({
            "table": {"type": "string", "description": "dataset.table or project.dataset.table"}
        }))
    }

    fn timeout(&self) -> Duration {
        self.inner.config.timeout + Duration::from_secs(1)
    }

    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let SchemaArgs { table } = common::parse_args(arguments)?;
        let path = table.trim().trim_matches('`');
        let id = self.inner.allowed(path)?;
        let config = &self.inner.config;
        let found = tokio::time::timeout(
            config.timeout,
            self.inner
                .client
                .table()
                .get(&id.project, &id.dataset, &id.table, None),
        )
        .await
        .map_err(|_| ToolError::Timeout(config.timeout))?
        .map_err(|e| bq_error(e, config.timeout))?;
        let columns: Vec<Value> = found
            .schema
            .fields
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(column)
            .collect();
        let text = json!({
            "source": "bigquery",
            "table": id.to_string(),
            "about": self.inner.tables.get(&id),
            "description": found.description,
            "rows": found.num_rows,
            "bytes": parse_bytes(found.num_bytes.as_ref()).map(format_bytes),
            "time_partitioning": found.time_partitioning.as_ref().map(|p| json!({
                "type": p.r#type, "field": p.field.clone().unwrap_or_else(|| "_PARTITIONTIME".into()),
            })),
            "require_partition_filter": found.require_partition_filter,
            "clustering": found.clustering.as_ref().and_then(|c| c.fields.clone()),
            "columns": columns,
        })
        .to_string();
        Ok(ToolOutput::clipped(&text, config.clip_bytes))
    }
}

fn column(field: &TableFieldSchema) -> Value {
    let mut out = json!({
        "name": field.name,
        "type": serde_json::to_value(&field.r#type).unwrap_or(Value::Null),
    });
    if let Some(mode) = field.mode.as_ref().filter(|m| m.as_str() != "NULLABLE") {
        out["mode"] = json!(mode);
    }
    if let Some(description) = field.description.as_ref().filter(|d| !d.is_empty()) {
        out["description"] = json!(description);
    }
    if let Some(nested) = field.fields.as_ref() {
        out["fields"] = Value::Array(nested.iter().map(column).collect());
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunbookArgs {
    name: String,
}

struct RunbookTool {
    inner: Arc<Inner>,
    description: String,
}

#[async_trait]
impl Tool for RunbookTool {
    fn name(&self) -> &str {
        "get_runbook"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        common::object_schema(json!({
            "name": {"type": "string", "description": "runbook name, as listed"}
        }))
    }

    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let RunbookArgs { name } = common::parse_args(arguments)?;
        let runbook = self.inner.runbooks.get(name.trim()).ok_or_else(|| {
            ToolError::InvalidArguments(format!(
                "there is no runbook named {name:?}; the runbooks are: {}",
                self.inner
                    .runbooks
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let text = json!({
            "name": runbook.name, "title": runbook.title,
            "description": runbook.description, "sql": runbook.sql,
        })
        .to_string();
        Ok(ToolOutput::clipped(&text, self.inner.config.clip_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_default_the_project_and_allow_dotted_projects() {
        let id = TableId::parse("logs.auth", "sec-prod").unwrap();
        assert_eq!(id.to_string(), "sec-prod.logs.auth");
        let scoped = TableId::parse("example.com:sec.logs.auth", "x").unwrap();
        assert_eq!(scoped.project, "example.com:sec");
        assert!(TableId::parse("auth", "x").is_none());
        assert!(TableId::parse("logs.", "x").is_none());
    }
}
