//! urlscan.io: `urlscan_search`, `urlscan_result` and, only when enabled, `urlscan_scan`.
//!
//! API v1 (header `API-Key`): `GET {base}/search/?q=…&size=…`, `GET {base}/result/{uuid}/`,
//! `POST {base}/scan/`. Answers are summaries (verdicts, page, hosting, counts of what the
//! page loaded) rather than the raw documents, which run to megabytes.
//!
//! Invariants:
//! - `urlscan_scan` is the one tool that makes a third party do something (fetch a URL), so it
//!   is only offered when [`UrlscanConfig::allow_scan`] is set, submits with the configured
//!   visibility (private by default), and only accepts http(s) URLs to public hosts without
//!   credentials (see `validate::public_web_url`);
//! - a result uuid is validated as a UUID and a search query as a bounded, single-line
//!   string before any request;
//! - searches and finished results are cached; submissions and unfinished results are not.

use crate::common::{self, Cache};
use crate::{ToolsSetupError, validate};
use async_trait::async_trait;
use heron_core::agent::{Tool, ToolError, ToolOutput};
use heron_core::tool::{DEFAULT_CLIP_BYTES, ToolCache, ToolContext};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub struct UrlscanConfig {
    /// Default `https://urlscan.io/api/v1`.
    pub base_url: String,
    pub api_key: String,
    pub timeout: Duration,
    pub clip_bytes: usize,
    pub cache_ttl: Duration,
    /// Offer `urlscan_scan`, which submits URLs to urlscan.io.
    pub allow_scan: bool,
    /// Visibility of submitted scans: `private`, `unlisted` or `public`.
    pub scan_visibility: String,
    /// Results asked for per search (urlscan's `size`).
    pub search_size: u32,
}

impl UrlscanConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://urlscan.io/api/v1";

    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.into(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(20),
            clip_bytes: DEFAULT_CLIP_BYTES,
            cache_ttl: Duration::from_secs(3600),
            allow_scan: false,
            scan_visibility: "private".into(),
            search_size: 20,
        }
    }
}

impl std::fmt::Debug for UrlscanConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlscanConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("clip_bytes", &self.clip_bytes)
            .field("cache_ttl", &self.cache_ttl)
            .field("allow_scan", &self.allow_scan)
            .field("scan_visibility", &self.scan_visibility)
            .field("search_size", &self.search_size)
            .finish()
    }
}

/// `urlscan_search` and `urlscan_result`, plus `urlscan_scan` when scanning is allowed.
pub fn urlscan_tools(
    config: UrlscanConfig,
    cache: Option<Arc<dyn ToolCache>>,
) -> Result<Vec<Arc<dyn Tool>>, ToolsSetupError> {
    if config.api_key.trim().is_empty() {
        return Err(ToolsSetupError::Invalid(
            "the urlscan.io API key is empty".into(),
        ));
    }
    reqwest::header::HeaderValue::from_str(config.api_key.trim()).map_err(|_| {
        ToolsSetupError::Invalid("the urlscan.io API key is not a valid header value".into())
    })?;
    if !matches!(
        config.scan_visibility.as_str(),
        "private" | "unlisted" | "public"
    ) {
        return Err(ToolsSetupError::Invalid(format!(
            "urlscan scan visibility {:?} is not private, unlisted or public",
            config.scan_visibility
        )));
    }
    let allow_scan = config.allow_scan;
    let shared = Arc::new(Urlscan {
        base_url: common::base_url("urlscan.io base URL", &config.base_url)?,
        http: common::http_client(config.timeout)?,
        cache: Cache {
            cache,
            ttl: config.cache_ttl,
        },
        config,
    });
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(SearchTool(Arc::clone(&shared))),
        Arc::new(ResultTool(Arc::clone(&shared))),
    ];
    if allow_scan {
        tools.push(Arc::new(ScanTool(shared)));
    }
    Ok(tools)
}

struct Urlscan {
    config: UrlscanConfig,
    base_url: String,
    http: reqwest::Client,
    cache: Cache,
}

impl Urlscan {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .header("API-Key", self.config.api_key.trim())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    fn request_url(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("API-Key", self.config.api_key.trim())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    fn output(&self, text: &str, cached: bool) -> ToolOutput {
        let mut output = ToolOutput::clipped(text, self.config.clip_bytes);
        output.cached = cached;
        output
    }
}

/// Longest search query accepted.
const MAX_QUERY_CHARS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
}

struct SearchTool(Arc<Urlscan>);

#[async_trait]
impl Tool for SearchTool {
    fn name(&self) -> &str {
        "urlscan_search"
    }

    fn description(&self) -> &str {
        "Search urlscan.io's past scans (Elasticsearch query syntax, e.g. domain:example.com, \
         ip:203.0.113.9, page.url:\"https://example.com/login\", hash:<sha256>). Answers the \
         newest matching scans with their verdicts, hosting and result uuid."
    }

    fn parameters(&self) -> Value {
        common::object_schema(json!({
            "query": {"type": "string", "description": "urlscan.io search query"}
        }))
    }

    fn timeout(&self) -> Duration {
        self.0.config.timeout + Duration::from_secs(1)
    }

    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let SearchArgs { query } = common::parse_args(arguments)?;
        let query = query.trim();
        if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
            return Err(ToolError::InvalidArguments(format!(
                "the query must be 1 to {MAX_QUERY_CHARS} characters"
            )));
        }
        if query.chars().any(char::is_control) {
            return Err(ToolError::InvalidArguments(
                "the query must be one line without control characters".into(),
            ));
        }
        let urlscan = &self.0;
        let key = format!("urlscan:search:{query}");
        if let Some(text) = urlscan.cache.get(&key).await {
            return Ok(urlscan.output(&text, true));
        }
        let size = urlscan.config.search_size.clamp(1, 100).to_string();
        let mut url = reqwest::Url::parse(&format!("{}/search/", urlscan.base_url))
            .map_err(|e| ToolError::Failed(format!("the urlscan.io base URL is invalid: {e}")))?;
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("size", &size);
        let request = urlscan.request_url(reqwest::Method::GET, url);
        let answer = common::send("urlscan.io", request, urlscan.config.timeout).await?;
        if answer.status != 200 {
            return Err(common::status_error("urlscan.io", &answer));
        }
        let document = answer.json().ok_or_else(|| {
            ToolError::Failed("urlscan.io answered something that is not JSON".into())
        })?;
        let text = summarise_search(query, &document);
        urlscan.cache.put(&key, &text).await;
        Ok(urlscan.output(&text, false))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultArgs {
    uuid: String,
}

struct ResultTool(Arc<Urlscan>);

#[async_trait]
impl Tool for ResultTool {
    fn name(&self) -> &str {
        "urlscan_result"
    }

    fn description(&self) -> &str {
        "Fetch a urlscan.io scan result by uuid (from urlscan_search or urlscan_scan): \
         verdicts, final page, IPs, ASNs, countries and domains the page contacted."
    }

    fn parameters(&self) -> Value {
        common::object_schema(json!({
            "uuid": {"type": "string", "description": "scan uuid, e.g. 0196d976-07f6-7aae-8a57-aa019145f31c"}
        }))
    }

    fn timeout(&self) -> Duration {
        self.0.config.timeout + Duration::from_secs(1)
    }

    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let ResultArgs { uuid } = common::parse_args(arguments)?;
        let uuid = uuid::Uuid::parse_str(uuid.trim())
            .map_err(|_| ToolError::InvalidArguments(format!("{uuid:?} is not a uuid")))?
            .hyphenated()
            .to_string();
        let urlscan = &self.0;
        let key = format!("urlscan:result:{uuid}");
        if let Some(text) = urlscan.cache.get(&key).await {
            return Ok(urlscan.output(&text, true));
        }
        let request = urlscan.request(reqwest::Method::GET, &format!("/result/{uuid}/"));
        let answer = common::send("urlscan.io", request, urlscan.config.timeout).await?;
        match answer.status {
            200 => {
                let document = answer.json().ok_or_else(|| {
                    ToolError::Failed("urlscan.io answered something that is not JSON".into())
                })?;
                let text = summarise_result(&document);
                urlscan.cache.put(&key, &text).await;
                Ok(urlscan.output(&text, false))
            }
            // Also the answer while a fresh scan is still running: never cached.
            404 => Ok(urlscan.output(
                &json!({"source": "urlscan", "uuid": uuid, "found": false,
                        "note": "no result for this uuid: unknown, or the scan has not \
                                 finished yet (results appear 10 to 30 seconds after \
                                 submission)"})
                .to_string(),
                false,
            )),
            _ => Err(common::status_error("urlscan.io", &answer)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanArgs {
    url: String,
}

struct ScanTool(Arc<Urlscan>);

#[async_trait]
impl Tool for ScanTool {
    fn name(&self) -> &str {
        "urlscan_scan"
    }

    fn description(&self) -> &str {
        "Submit a public http(s) URL to urlscan.io for a fresh scan. Answers the scan uuid; \
         call urlscan_result with it after about 30 seconds. Search first: a recent scan may \
         already exist. Never submit internal URLs or URLs carrying tokens or personal data."
    }

    fn parameters(&self) -> Value {
        common::object_schema(json!({
            "url": {"type": "string", "description": "public http(s) URL to scan"}
        }))
    }

    fn timeout(&self) -> Duration {
        self.0.config.timeout + Duration::from_secs(1)
    }

    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let ScanArgs { url } = common::parse_args(arguments)?;
        let url = validate::public_web_url(&url).map_err(ToolError::InvalidArguments)?;
        let urlscan = &self.0;
        let request = urlscan
            .request(reqwest::Method::POST, "/scan/")
            .json(&json!({"url": url.as_str(), "visibility": urlscan.config.scan_visibility}));
        let answer = common::send("urlscan.io", request, urlscan.config.timeout).await?;
        let document = answer.json().unwrap_or(Value::Null);
        match answer.status {
            200 => {
                let uuid = document["uuid"].as_str().unwrap_or_default();
                let text = json!({
                    "source": "urlscan", "submitted": true, "uuid": uuid,
                    "url": document.get("url").cloned().unwrap_or_else(|| url.as_str().into()),
                    "visibility": document.get("visibility").cloned().unwrap_or(Value::Null),
                    "note": "call urlscan_result with this uuid in about 30 seconds",
                })
                .to_string();
                Ok(urlscan.output(&text, false))
            }
            // urlscan explains refusals (unresolvable domain, blocked or reserved URL) in the
            // body; the model can act on that.
            400 => Err(ToolError::Refused(format!(
                "urlscan.io refused the submission: {}",
                document["message"]
                    .as_str()
                    .or_else(|| document["description"].as_str())
                    .unwrap_or("no reason given")
            ))),
            _ => Err(common::status_error("urlscan.io", &answer)),
        }
    }
}

fn pick(value: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(v) = value.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

fn summarise_search(query: &str, doc: &Value) -> String {
    let results: Vec<Value> = doc["results"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|r| {
                    let mut item = Map::new();
                    item.insert(
                        "uuid".into(),
                        r.get("_id")
                            .or_else(|| r["task"].get("uuid"))
                            .cloned()
                            .unwrap_or(Value::Null),
                    );
                    item.insert("time".into(), r["task"]["time"].clone());
                    item.insert("submitted_url".into(), r["task"]["url"].clone());
                    item.insert(
                        "page".into(),
                        pick(
                            &r["page"],
                            &[
                                "url", "domain", "ip", "country", "asn", "asnname", "server",
                                "status", "title", "mimeType",
                            ],
                        ),
                    );
                    if let Some(verdicts) = r.get("verdicts").filter(|v| !v.is_null()) {
                        item.insert(
                            "verdict".into(),
                            pick(&verdicts["overall"], &["malicious", "score"]),
                        );
                    }
                    Value::Object(item)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "source": "urlscan",
        "query": query,
        "total": doc.get("total").cloned().unwrap_or(Value::from(results.len())),
        "has_more": doc["has_more"].as_bool().unwrap_or(false),
        "results": results,
    })
    .to_string()
}

/// Entries listed per list (IPs, domains…); the count is always given in full.
const MAX_LIST: usize = 20;

fn summarise_result(doc: &Value) -> String {
    let lists = &doc["lists"];
    let mut listed = Map::new();
    let mut counts = Map::new();
    for name in [
        "ips",
        "countries",
        "asns",
        "domains",
        "servers",
        "urls",
        "hashes",
        "certificates",
        "linkDomains",
    ] {
        let items = lists[name].as_array().cloned().unwrap_or_default();
        counts.insert(name.into(), Value::from(items.len()));
        if matches!(name, "ips" | "countries" | "asns" | "domains" | "servers") && !items.is_empty()
        {
            listed.insert(
                name.into(),
                Value::Array(items.into_iter().take(MAX_LIST).collect()),
            );
        }
    }
    let verdicts = &doc["verdicts"];
    json!({
        "source": "urlscan",
        "uuid": doc["task"]["uuid"],
        "task": pick(&doc["task"], &["url", "time", "visibility", "method", "tags", "reportURL"]),
        "page": pick(&doc["page"], &["url", "domain", "ip", "country", "city", "asn", "asnname", "server", "status", "title", "mimeType", "tlsIssuer", "tlsValidDays", "apexDomain"]),
        "verdicts": {
            "overall": pick(&verdicts["overall"], &["malicious", "score", "categories", "brands", "tags"]),
            "urlscan": pick(&verdicts["urlscan"], &["malicious", "score", "categories", "brands"]),
            "engines": pick(&verdicts["engines"], &["maliciousTotal", "benignTotal", "enginesTotal", "malicious"]),
            "community": pick(&verdicts["community"], &["votesMalicious", "votesBenign", "votesTotal"]),
        },
        "stats": pick(&doc["stats"], &["malicious", "uniqCountries", "totalLinks", "securePercentage", "adBlocked"]),
        "lists": listed,
        "counts": counts,
    })
    .to_string()
}
