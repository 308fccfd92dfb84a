//! urlscan.io (API v1): `urlscan_search` (`query`, Elasticsearch query-string syntax),
//! `urlscan_result` (`uuid`), and `urlscan_scan` (`url`), which submits a new scan and is only
//! built when enabled: it makes urlscan.io fetch the URL, which an attacker may notice.
//!
//! A scan is submitted `unlisted`, and only for http(s) URLs whose host is a public name or a
//! public address — never localhost, private, link-local or other non-global ranges, so the
//! agent cannot be used to make a third party probe internal hosts.

use crate::ToolSetupError;
use async_trait::async_trait;
use heron_core::agent::{Tool, ToolError, ToolOutput};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const MAX_RESULTS: usize = 10;

#[derive(Clone, PartialEq, Eq)]
pub struct UrlscanSettings {
    /// `https://urlscan.io` in production.
    pub base_url: String,
    pub api_key: String,
    pub timeout: Duration,
    /// Offer `urlscan_scan`.
    pub allow_scan: bool,
}

impl std::fmt::Debug for UrlscanSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlscanSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("allow_scan", &self.allow_scan)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Result,
    Scan,
}

#[derive(Debug, Clone)]
pub struct UrlscanTool {
    kind: Kind,
    http: reqwest::Client,
    settings: Arc<UrlscanSettings>,
}

/// `urlscan_search` and `urlscan_result`, plus `urlscan_scan` when `allow_scan` is set.
pub fn urlscan_tools(settings: UrlscanSettings) -> Result<Vec<UrlscanTool>, ToolSetupError> {
    if settings.api_key.trim().is_empty() {
        return Err(ToolSetupError::Invalid(
            "the urlscan.io API key is empty".into(),
        ));
    }
    reqwest::Url::parse(&settings.base_url)
        .map_err(|e| ToolSetupError::Invalid(format!("the urlscan.io base URL: {e}")))?;
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()?;
    let mut kinds = vec![Kind::Search, Kind::Result];
    if settings.allow_scan {
        kinds.push(Kind::Scan);
    }
    let settings = Arc::new(settings);
    Ok(kinds
        .into_iter()
        .map(|kind| UrlscanTool {
            kind,
            http: http.clone(),
            settings: settings.clone(),
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultArgs {
    uuid: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanArgs {
    url: String,
}

fn invalid(e: impl std::fmt::Display) -> ToolError {
    ToolError::InvalidArguments(e.to_string())
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `url` may be handed to urlscan.io to fetch.
fn public_http_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("only http and https URLs can be scanned".into());
    }
    let public = match url.host() {
        None => false,
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name.contains('.')
                && ![
                    "localhost",
                    ".local",
                    ".internal",
                    ".localdomain",
                    ".home.arpa",
                ]
                .iter()
                .any(|suffix| name == suffix.trim_start_matches('.') || name.ends_with(suffix))
        }
        Some(url::Host::Ipv4(ip)) => is_global(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_global(IpAddr::V6(ip)),
    };
    if public {
        Ok(url)
    } else {
        Err("the URL's host is not public; internal hosts are never scanned".into())
    }
}

fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| !is_global(IpAddr::V4(v4))))
        }
    }
}

#[async_trait]
impl Tool for UrlscanTool {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Search => "urlscan_search",
            Kind::Result => "urlscan_result",
            Kind::Scan => "urlscan_scan",
        }
    }

    fn description(&self) -> &str {
        match self.kind {
            Kind::Search => {
                "Search past urlscan.io scans (query syntax: domain:example.com, ip:203.0.113.9, page.url:\"...\"). Returns up to 10 scans with their result uuids."
            }
            Kind::Result => {
                "Fetch one urlscan.io scan result by uuid: verdict, page (IP, ASN, country, server) and counts of contacted hosts."
            }
            Kind::Scan => {
                "Submit a public http(s) URL to urlscan.io for a new unlisted scan; fetch the result with urlscan_result about 30 seconds later."
            }
        }
    }

    fn parameters(&self) -> Value {
        let (field, schema) = match self.kind {
            Kind::Search => (
                "query",
                json!({"type": "string", "minLength": 1, "maxLength": 1000}),
            ),
            Kind::Result => (
                "uuid",
                json!({"type": "string", "pattern": "^[0-9a-fA-F-]{36}$"}),
            ),
            Kind::Scan => (
                "url",
                json!({"type": "string", "minLength": 1, "maxLength": 2048}),
            ),
        };
        json!({"type": "object", "additionalProperties": false, "required": [field],
               "properties": {field: schema}})
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutput, ToolError> {
        let base = reqwest::Url::parse(&self.settings.base_url)
            .map_err(|e| ToolError::Failed(format!("the urlscan.io base URL: {e}")))?;
        let endpoint = |segments: &[&str]| -> Result<reqwest::Url, ToolError> {
            let mut url = base.clone();
            url.path_segments_mut()
                .map_err(|()| ToolError::Failed("the base URL cannot take a path".into()))?
                .pop_if_empty()
                .extend(segments)
                .push("");
            Ok(url)
        };
        let request = match self.kind {
            Kind::Search => {
                let args: SearchArgs = serde_json::from_value(arguments).map_err(invalid)?;
                if args.query.trim().is_empty() || args.query.len() > 1000 {
                    return Err(invalid("query must be 1 to 1000 characters"));
                }
                let mut url = endpoint(&["api", "v1", "search"])?;
                url.query_pairs_mut()
                    .append_pair("q", &args.query)
                    .append_pair("size", &MAX_RESULTS.to_string());
                self.http.get(url)
            }
            Kind::Result => {
                let args: ResultArgs = serde_json::from_value(arguments).map_err(invalid)?;
                if !is_uuid(&args.uuid) {
                    return Err(invalid(format!(
                        "uuid must be a scan uuid, got {:?}",
                        args.uuid
                    )));
                }
                self.http
                    .get(endpoint(&["api", "v1", "result", &args.uuid])?)
            }
            Kind::Scan => {
                let args: ScanArgs = serde_json::from_value(arguments).map_err(invalid)?;
                let url = public_http_url(&args.url).map_err(ToolError::Refused)?;
                self.http
                    .post(endpoint(&["api", "v1", "scan"])?)
                    .json(&json!({"url": url.as_str(), "visibility": "unlisted"}))
            }
        };
        let response = request
            .header("API-Key", &self.settings.api_key)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ToolError::Timeout(self.settings.timeout)
                } else {
                    ToolError::Failed(format!("urlscan.io is unreachable: {e}"))
                }
            })?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 if self.kind == Kind::Result => {
                return Ok(ToolOutput {
                    text: json!({"found": false,
                                 "note": "no such scan, or it has not finished yet (try again in ~30 s)"})
                    .to_string(),
                    bytes_processed: None,
                });
            }
            400 => {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let message = body["message"].as_str().unwrap_or("bad request").to_owned();
                return Err(ToolError::Refused(format!("urlscan.io refused: {message}")));
            }
            401 | 403 => return Err(ToolError::Failed("urlscan.io refused the API key".into())),
            429 => {
                return Err(ToolError::Failed(
                    "urlscan.io rate limit reached; try later".into(),
                ));
            }
            other => {
                return Err(ToolError::Failed(format!(
                    "urlscan.io answered HTTP {other}"
                )));
            }
        }
        let body: Value = response.json().await.map_err(|e| {
            ToolError::Failed(format!("urlscan.io answered something unreadable: {e}"))
        })?;
        let text = match self.kind {
            Kind::Search => summarise_search(&body),
            Kind::Result => summarise_result(&body),
            Kind::Scan => json!({
                "submitted": true,
                "uuid": body["uuid"],
                "visibility": body["visibility"],
                "note": "call urlscan_result with this uuid in about 30 seconds",
            }),
        };
        Ok(ToolOutput {
            text: text.to_string(),
            bytes_processed: None,
        })
    }
}

fn summarise_search(body: &Value) -> Value {
    let results: Vec<Value> = body["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(MAX_RESULTS)
        .map(|r| {
            json!({
                "uuid": r["task"]["uuid"], "time": r["task"]["time"], "url": r["page"]["url"],
                "domain": r["page"]["domain"], "ip": r["page"]["ip"], "country": r["page"]["country"],
                "asn": r["page"]["asn"], "asnname": r["page"]["asnname"], "status": r["page"]["status"],
            })
        })
        .collect();
    json!({"results": results, "has_more": body["has_more"]})
}

fn summarise_result(body: &Value) -> Value {
    let count = |key: &str| body["lists"][key].as_array().map_or(0, Vec::len);
    let overall = &body["verdicts"]["overall"];
    json!({
        "found": true,
        "uuid": body["task"]["uuid"],
        "scanned_at": body["task"]["time"],
        "url": body["page"]["url"],
        "verdict": {
            "malicious": overall["malicious"], "score": overall["score"],
            "categories": overall["categories"], "brands": overall["brands"], "tags": overall["tags"],
        },
        "page": {
            "domain": body["page"]["domain"], "ip": body["page"]["ip"], "country": body["page"]["country"],
            "asn": body["page"]["asn"], "asnname": body["page"]["asnname"], "server": body["page"]["server"],
            "status": body["page"]["status"],
        },
        "contacted": {"ips": count("ips"), "domains": count("domains"), "urls": count("urls")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_http_urls_may_be_scanned() {
        for ok in [
            "https://evil.example/login",
            "http://203.0.113.0.nip.io/x",
            "https://[2001:4860::8888]/",
        ] {
            assert!(public_http_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://localhost/admin",
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://printer.local/",
            "http://db.internal/",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://intranet/",
        ] {
            assert!(public_http_url(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn uuids_are_checked_by_shape() {
        assert!(is_uuid("09df6b90-eff4-4ac9-9d34-41a27d4aa848"));
        assert!(!is_uuid("09df6b90-eff4-4ac9-9d34"));
        assert!(!is_uuid("../../../etc/passwd-0000-0000-000000000000"));
    }
}
