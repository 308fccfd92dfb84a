//! urlscan.io tools against a local server speaking its search, result and scan formats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use heron_core::agent::{Tool, ToolError};
use heron_tools::urlscan::{UrlscanSettings, UrlscanTool, urlscan_tools};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const UUID: &str = "09df6b90-eff4-4ac9-9d34-41a27d4aa848";

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, Option<String>, Value)>>,
}

fn record(seen: &Seen, what: String, headers: &HeaderMap, body: Value) {
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.requests.lock().unwrap().push((what, key, body));
}

async fn fake() -> (String, Arc<Seen>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route(
            "/api/v1/search/",
            axum::routing::get(
                |State(seen): State<Arc<Seen>>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
                    record(&seen, format!("search {}", q["q"]), &headers, Value::Null);
                    axum::Json(json!({"has_more": true, "results": (0..12).map(|i| json!({
                        "task": {"uuid": format!("uuid-{i}"), "time": "2026-11-20T10:00:00.000Z", "url": "http://evil.example/"},
                        "page": {"url": "http://evil.example/", "domain": "evil.example", "ip": "198.51.100.7",
                                 "country": "NL", "asn": "AS64500", "asnname": "EXAMPLE-NET", "status": "200"},
                        "_id": format!("uuid-{i}"), "result": "https://urlscan.io/api/v1/result/x/"
                    })).collect::<Vec<_>>()}))
                },
            ),
        )
        .route(
            "/api/v1/result/{uuid}/",
            axum::routing::get(
                |State(seen): State<Arc<Seen>>, headers: HeaderMap, Path(uuid): Path<String>| async move {
                    record(&seen, format!("result {uuid}"), &headers, Value::Null);
                    if uuid != UUID {
                        return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Scan is not finished yet or does not exist", "status": 404}))).into_response();
                    }
                    axum::Json(json!({
                        "task": {"uuid": UUID, "time": "2026-11-20T10:00:00.000Z"},
                        "page": {"url": "http://evil.example/", "domain": "evil.example", "ip": "198.51.100.7", "country": "NL",
                                 "asn": "AS64500", "asnname": "EXAMPLE-NET", "server": "nginx", "status": "200"},
                        "verdicts": {"overall": {"score": 100, "categories": ["phishing"], "brands": ["ExampleBank"], "tags": [], "malicious": true, "hasVerdicts": 1}},
                        "lists": {"ips": ["198.51.100.7", "198.51.100.8"], "domains": ["evil.example"], "urls": []},
                        "data": {"requests": ["huge"]}
                    })).into_response()
                },
            ),
        )
        .route(
            "/api/v1/scan/",
            axum::routing::post(
                |State(seen): State<Arc<Seen>>, headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    record(&seen, "scan".into(), &headers, body.clone());
                    axum::Json(json!({"message": "Submission successful", "uuid": UUID,
                        "result": format!("https://urlscan.io/result/{UUID}/"), "api": format!("https://urlscan.io/api/v1/result/{UUID}/"),
                        "visibility": body["visibility"], "url": body["url"]}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn tools(base: &str, allow_scan: bool) -> Vec<UrlscanTool> {
    urlscan_tools(UrlscanSettings {
        base_url: base.into(),
        api_key: "us-key".into(),
        timeout: Duration::from_secs(2),
        allow_scan,
    })
    .unwrap()
}

fn tool<'a>(tools: &'a [UrlscanTool], name: &str) -> &'a UrlscanTool {
    tools.iter().find(|t| t.name() == name).unwrap()
}

#[tokio::test]
async fn search_returns_at_most_ten_scans_with_their_uuids() {
    let (base, seen) = fake().await;
    let tools = tools(&base, false);
    let out = tool(&tools, "urlscan_search")
        .call(json!({"query": "domain:evil.example"}))
        .await
        .unwrap();
    let summary: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(summary["results"].as_array().unwrap().len(), 10);
    assert_eq!(summary["results"][0]["uuid"], "uuid-0");
    assert_eq!(summary["has_more"], true);
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests[0].0, "search domain:evil.example");
    assert_eq!(requests[0].1.as_deref(), Some("us-key"));
}

#[tokio::test]
async fn a_result_is_summarised_to_verdict_page_and_counts() {
    let (base, _) = fake().await;
    let tools = tools(&base, false);
    let out = tool(&tools, "urlscan_result")
        .call(json!({"uuid": UUID}))
        .await
        .unwrap();
    let summary: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(summary["verdict"]["malicious"], true);
    assert_eq!(summary["verdict"]["brands"], json!(["ExampleBank"]));
    assert_eq!(summary["contacted"]["ips"], 2);
    assert!(
        !out.text.contains("huge"),
        "raw request data is not passed on"
    );
}

#[tokio::test]
async fn an_unfinished_or_unknown_scan_is_an_answer_that_says_so() {
    let (base, _) = fake().await;
    let tools = tools(&base, false);
    let out = tool(&tools, "urlscan_result")
        .call(json!({"uuid": "00000000-0000-0000-0000-000000000000"}))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap()["found"],
        false
    );
}

#[tokio::test]
async fn scanning_is_offered_only_when_enabled_and_submits_unlisted() {
    let (base, seen) = fake().await;
    assert!(
        !tools(&base, false)
            .iter()
            .any(|t| t.name() == "urlscan_scan")
    );
    let tools = tools(&base, true);
    let out = tool(&tools, "urlscan_scan")
        .call(json!({"url": "https://evil.example/login"}))
        .await
        .unwrap();
    assert!(out.text.contains(UUID));
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests[0].2["visibility"], "unlisted");
    assert_eq!(requests[0].2["url"], "https://evil.example/login");
}

#[tokio::test]
async fn internal_urls_are_refused_without_contacting_urlscan() {
    let (base, seen) = fake().await;
    let tools = tools(&base, true);
    let error = tool(&tools, "urlscan_scan")
        .call(json!({"url": "http://169.254.169.254/latest/meta-data/"}))
        .await
        .unwrap_err();
    assert!(matches!(error, ToolError::Refused(_)), "{error:?}");
    let error = tool(&tools, "urlscan_result")
        .call(json!({"uuid": "../../admin"}))
        .await
        .unwrap_err();
    assert!(matches!(error, ToolError::InvalidArguments(_)), "{error:?}");
    assert!(seen.requests.lock().unwrap().is_empty());
}
