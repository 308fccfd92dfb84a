//! Local fakes of the APIs the tools call (feature `testing`), each an axum server on
//! `127.0.0.1` speaking the real wire format, scripted per test, recording every request:
//!
//! - [`FakeOtx`]: `GET /api/v1/indicators/{type}/{target}/general`; unscripted indicators
//!   get 404;
//! - [`FakeUrlscan`]: `GET /api/v1/search/`, `GET /api/v1/result/{uuid}/`,
//!   `POST /api/v1/scan/`; a request without the expected `API-Key` gets urlscan's 401;
//! - [`FakeBigQuery`]: `POST …/projects/{p}/queries` (dry runs and jobs),
//!   `GET …/projects/{p}/queries/{job}` (polling and `pageToken` paging),
//!   `GET …/projects/{p}/datasets/{d}/tables/{t}`; errors in Google's
//!   `{"error": {"code", "message", "errors": [{"reason"…}], "status"}}` shape.
//!
//! Each `start` installs the ring rustls provider, so clients can be built right after.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// As sent, percent-encoding included.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Recorded {
    /// The value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // Fakes only push and pop; a panicking test must not wedge the others.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[allow(clippy::expect_used)]
async fn serve(app: axum::Router) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a fake server");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn respond(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn record(uri: &Uri, method: Method, headers: HeaderMap, body: Value) -> Recorded {
    Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// OTX

#[derive(Debug, Default)]
struct OtxState {
    answers: HashMap<(String, String), (u16, Value)>,
    requests: Vec<Recorded>,
}

/// A fake AlienVault OTX API v1.
#[derive(Debug, Clone)]
pub struct FakeOtx {
    root: String,
    state: Arc<Mutex<OtxState>>,
}

impl FakeOtx {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(OtxState::default()));
        let app = axum::Router::new()
            .route(
                "/api/v1/indicators/{kind}/{target}/general",
                get(otx_general),
            )
            .with_state(Arc::clone(&state));
        Self {
            root: serve(app).await,
            state,
        }
    }

    /// The base URL to configure (`…/api/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/api/v1", self.root)
    }

    /// Answers `GET /indicators/{kind}/{target}/general` (kind as OTX spells it: `IPv4`,
    /// `IPv6`, `domain`, `hostname`, `file`, `url`; target decoded).
    pub fn answer(&self, kind: &str, target: &str, status: u16, body: Value) -> &Self {
        lock(&self.state)
            .answers
            .insert((kind.to_owned(), target.to_owned()), (status, body));
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }
}

async fn otx_general(
    State(state): State<Arc<Mutex<OtxState>>>,
    Path((kind, target)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    state
        .requests
        .push(record(&uri, Method::GET, headers, Value::Null));
    match state.answers.get(&(kind, target)) {
        Some((status, body)) => respond(*status, body.clone()),
        None => respond(404, json!({"detail": "Not found."})),
    }
}

// ---------------------------------------------------------------------------------------------
// urlscan.io

#[derive(Debug, Default)]
struct UrlscanState {
    api_key: Option<String>,
    searches: HashMap<String, (u16, Value)>,
    results: HashMap<String, (u16, Value)>,
    scans: VecDeque<(u16, Value)>,
    requests: Vec<Recorded>,
}

/// A fake urlscan.io API v1.
#[derive(Debug, Clone)]
pub struct FakeUrlscan {
    root: String,
    state: Arc<Mutex<UrlscanState>>,
}

impl FakeUrlscan {
    /// Accepts requests whose `API-Key` header is `api_key`.
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(UrlscanState {
            api_key: Some(api_key.to_owned()),
            ..UrlscanState::default()
        }));
        let app = axum::Router::new()
            .route("/api/v1/search/", get(urlscan_search))
            .route("/api/v1/result/{uuid}/", get(urlscan_result))
            .route("/api/v1/scan/", post(urlscan_scan))
            .with_state(Arc::clone(&state));
        Self {
            root: serve(app).await,
            state,
        }
    }

    /// The base URL to configure (`…/api/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/api/v1", self.root)
    }

    /// Answers a search for exactly `query` (the `q` parameter).
    pub fn search(&self, query: &str, status: u16, body: Value) -> &Self {
        lock(&self.state)
            .searches
            .insert(query.to_owned(), (status, body));
        self
    }

    pub fn result(&self, uuid: &str, status: u16, body: Value) -> &Self {
        lock(&self.state)
            .results
            .insert(uuid.to_owned(), (status, body));
        self
    }

    /// The answer to the next submission (default: success with a fresh uuid).
    pub fn push_scan(&self, status: u16, body: Value) -> &Self {
        lock(&self.state).scans.push_back((status, body));
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }
}

/// Records the request; answers urlscan's 401 when the key is missing or wrong.
fn urlscan_gate(state: &mut UrlscanState, request: Recorded) -> Option<Response> {
    let key = request
        .headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.requests.push(request);
    if key.is_none() || key != state.api_key {
        return Some(respond(
            401,
            json!({"message": "No API key supplied. Send the key using the 'API-Key' header",
                   "status": 401}),
        ));
    }
    None
}

async fn urlscan_search(
    State(state): State<Arc<Mutex<UrlscanState>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    let request = record(&uri, Method::GET, headers, Value::Null);
    let query = request.query_param("q").unwrap_or_default();
    if let Some(denied) = urlscan_gate(&mut state, request) {
        return denied;
    }
    match state.searches.get(&query) {
        Some((status, body)) => respond(*status, body.clone()),
        None => respond(
            200,
            json!({"results": [], "total": 0, "took": 3, "has_more": false}),
        ),
    }
}

async fn urlscan_result(
    State(state): State<Arc<Mutex<UrlscanState>>>,
    Path(uuid): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    if let Some(denied) = urlscan_gate(&mut state, record(&uri, Method::GET, headers, Value::Null))
    {
        return denied;
    }
    match state.results.get(&uuid) {
        Some((status, body)) => respond(*status, body.clone()),
        None => respond(
            404,
            json!({"message": "Scan is not finished yet or does not exist.", "status": 404}),
        ),
    }
}

async fn urlscan_scan(
    State(state): State<Arc<Mutex<UrlscanState>>>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if let Some(denied) = urlscan_gate(
        &mut state,
        record(&uri, Method::POST, headers, body.clone()),
    ) {
        return denied;
    }
    match state.scans.pop_front() {
        Some((status, answer)) => respond(status, answer),
        None => {
            let uuid = uuid::Uuid::new_v4().to_string();
            respond(
                200,
                json!({
                    "message": "Submission successful", "uuid": uuid,
                    "result": format!("https://urlscan.io/result/{uuid}/"),
                    "api": format!("https://urlscan.io/api/v1/result/{uuid}/"),
                    "visibility": body["visibility"], "url": body["url"],
                }),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// BigQuery

/// How the fake answers queries whose SQL contains a given text.
#[derive(Debug, Clone)]
pub struct FakeQuery {
    /// `totalBytesProcessed` of the dry run and of the job.
    pub bytes: u64,
    /// `schema.fields`, as BigQuery sends it.
    pub fields: Value,
    /// Cell values per row (strings, nested `{"f": …}` or arrays as BigQuery sends them).
    pub rows: Vec<Vec<Value>>,
    /// Most rows per page, whatever `maxResults` asks for (BigQuery's page size limit).
    pub page_size: usize,
    pub cache_hit: bool,
    /// `getQueryResults` answers `jobComplete: false` this many times first.
    pub polls_before_complete: u32,
    /// Answer the dry run with this error instead.
    pub dry_run_error: Option<(u16, Value)>,
    /// Answer the job with this error instead.
    pub job_error: Option<(u16, Value)>,
}

impl FakeQuery {
    pub fn new(bytes: u64, fields: Value, rows: Vec<Vec<Value>>) -> Self {
        Self {
            bytes,
            fields,
            rows,
            page_size: 1000,
            cache_hit: false,
            polls_before_complete: 0,
            dry_run_error: None,
            job_error: None,
        }
    }
}

/// Google's error body.
pub fn bigquery_error(code: u16, reason: &str, message: &str) -> Value {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        _ => "UNKNOWN",
    };
    json!({"error": {"code": code, "message": message,
                     "errors": [{"message": message, "domain": "global", "reason": reason}],
                     "status": status}})
}

#[derive(Debug)]
struct Job {
    query: FakeQuery,
    polls_left: u32,
}

#[derive(Debug, Default)]
struct BigQueryState {
    queries: Vec<(String, FakeQuery)>,
    tables: HashMap<(String, String, String), Value>,
    jobs: HashMap<String, Job>,
    requests: Vec<Recorded>,
}

/// A fake BigQuery REST API v2.
#[derive(Debug, Clone)]
pub struct FakeBigQuery {
    root: String,
    state: Arc<Mutex<BigQueryState>>,
}

impl FakeBigQuery {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(BigQueryState::default()));
        let app = axum::Router::new()
            .route("/bigquery/v2/projects/{project}/queries", post(bq_query))
            .route(
                "/bigquery/v2/projects/{project}/queries/{job}",
                get(bq_results),
            )
            .route(
                "/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}",
                get(bq_table),
            )
            .with_state(Arc::clone(&state));
        Self {
            root: serve(app).await,
            state,
        }
    }

    /// The v2 API root to configure (`…/bigquery/v2`).
    pub fn base_url(&self) -> String {
        format!("{}/bigquery/v2", self.root)
    }

    /// Queries whose SQL contains `sql_contains` get `answer` (first match wins).
    pub fn on_query(&self, sql_contains: &str, answer: FakeQuery) -> &Self {
        lock(&self.state)
            .queries
            .push((sql_contains.to_owned(), answer));
        self
    }

    /// `tables.get` answers `body` (a Table resource) for this table.
    pub fn table(&self, project: &str, dataset: &str, table: &str, body: Value) -> &Self {
        lock(&self.state).tables.insert(
            (project.to_owned(), dataset.to_owned(), table.to_owned()),
            body,
        );
        self
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The bodies of `jobs.query` requests that were dry runs, then of those that were jobs.
    pub fn query_bodies(&self) -> (Vec<Value>, Vec<Value>) {
        let bodies: Vec<Value> = self
            .requests()
            .into_iter()
            .filter(|r| r.method == Method::POST)
            .map(|r| r.body)
            .collect();
        bodies
            .into_iter()
            .partition(|b| b["dryRun"].as_bool() == Some(true))
    }
}

fn page(
    job_id: &str,
    project: &str,
    query: &FakeQuery,
    offset: usize,
    max: Option<usize>,
) -> Value {
    let size = max.unwrap_or(usize::MAX).min(query.page_size).max(1);
    let end = (offset + size).min(query.rows.len());
    let rows: Vec<Value> = query.rows[offset.min(end)..end]
        .iter()
        .map(|cells| json!({"f": cells.iter().map(|v| json!({"v": v})).collect::<Vec<_>>()}))
        .collect();
    let mut body = json!({
        "kind": "bigquery#getQueryResultsResponse",
        "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
        "schema": {"fields": query.fields},
        "totalRows": query.rows.len().to_string(),
        "rows": rows,
        "totalBytesProcessed": query.bytes.to_string(),
        "jobComplete": true,
        "cacheHit": query.cache_hit,
    });
    if end < query.rows.len() {
        body["pageToken"] = json!(format!("tok-{end}"));
    }
    body
}

async fn bq_query(
    State(state): State<Arc<Mutex<BigQueryState>>>,
    Path(project): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    state
        .requests
        .push(record(&uri, Method::POST, headers, body.clone()));
    let sql = body["query"].as_str().unwrap_or_default().to_owned();
    let Some(query) = state
        .queries
        .iter()
        .find(|(needle, _)| sql.contains(needle.as_str()))
        .map(|(_, q)| q.clone())
    else {
        return respond(
            400,
            bigquery_error(400, "invalidQuery", "the fake has no answer for this query"),
        );
    };
    if body["dryRun"].as_bool() == Some(true) {
        if let Some((status, error)) = query.dry_run_error {
            return respond(status, error);
        }
        return respond(
            200,
            json!({"kind": "bigquery#queryResponse",
                   "jobReference": {"projectId": project, "location": "US"},
                   "schema": {"fields": query.fields},
                   "totalBytesProcessed": query.bytes.to_string(),
                   "jobComplete": true, "cacheHit": false}),
        );
    }
    if let Some((status, error)) = query.job_error {
        return respond(status, error);
    }
    let job_id = format!("job_{}", state.jobs.len() + 1);
    let polls_left = query.polls_before_complete;
    let answer = if polls_left > 0 {
        json!({"kind": "bigquery#queryResponse",
               "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
               "jobComplete": false})
    } else {
        let max = body["maxResults"]
            .as_u64()
            .and_then(|m| usize::try_from(m).ok());
        page(&job_id, &project, &query, 0, max)
    };
    state.jobs.insert(job_id, Job { query, polls_left });
    respond(200, answer)
}

async fn bq_results(
    State(state): State<Arc<Mutex<BigQueryState>>>,
    Path((project, job_id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (status, body, running) = {
        let mut state = lock(&state);
        let request = record(&uri, Method::GET, headers, Value::Null);
        let token = request.query_param("pageToken");
        let max = request
            .query_param("maxResults")
            .and_then(|m| m.parse::<usize>().ok());
        state.requests.push(request);
        match state.jobs.get_mut(&job_id) {
            None => (
                404,
                bigquery_error(
                    404,
                    "notFound",
                    &format!("Not found: Job {project}:{job_id}"),
                ),
                false,
            ),
            Some(job) if job.polls_left > 0 => {
                job.polls_left -= 1;
                (
                    200,
                    json!({"kind": "bigquery#getQueryResultsResponse",
                           "jobReference": {"projectId": project, "jobId": job_id,
                                            "location": "US"},
                           "jobComplete": false}),
                    true,
                )
            }
            Some(job) => {
                let offset = token
                    .as_deref()
                    .and_then(|t| t.strip_prefix("tok-"))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                (200, page(&job_id, &project, &job.query, offset, max), false)
            }
        }
    };
    if running {
        // BigQuery holds a poll for up to timeoutMs; a short pause keeps pollers from spinning.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    respond(status, body)
}

async fn bq_table(
    State(state): State<Arc<Mutex<BigQueryState>>>,
    Path((project, dataset, table)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    state
        .requests
        .push(record(&uri, Method::GET, headers, Value::Null));
    match state
        .tables
        .get(&(project.clone(), dataset.clone(), table.clone()))
    {
        Some(body) => respond(200, body.clone()),
        None => respond(
            404,
            bigquery_error(
                404,
                "notFound",
                &format!("Not found: Table {project}:{dataset}.{table}"),
            ),
        ),
    }
}
