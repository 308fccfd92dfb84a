//! The urlscan.io tools against `heron_tools::testing::FakeUrlscan`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::agent::{Tool, ToolError, ToolOutput};
use heron_core::testing::InMemoryToolCache;
use heron_core::tool::{ToolCache, ToolContext};
use heron_tools::testing::FakeUrlscan;
use heron_tools::{UrlscanConfig, urlscan_tools};
use serde_json::{Value, json};
use std::sync::Arc;

const SEARCH: &str = include_str!("fixtures/urlscan/search_login_page.json");
const RESULT: &str = include_str!("fixtures/urlscan/result_phishing_page.json");
const UUID: &str = "0196d976-07f6-7aae-8a57-aa019145f31c";
const KEY: &str = "urlscan-test-key";

fn config(fake: &FakeUrlscan) -> UrlscanConfig {
    let mut config = UrlscanConfig::new(KEY);
    config.base_url = fake.base_url();
    config
}

fn tool(tools: &[Arc<dyn Tool>], name: &str) -> Arc<dyn Tool> {
    tools
        .iter()
        .find(|t| t.name() == name)
        .cloned()
        .unwrap_or_else(|| panic!("no tool {name}"))
}

async fn call(tool: &Arc<dyn Tool>, arguments: Value) -> Result<ToolOutput, ToolError> {
    tool.call(arguments, &ToolContext::new(uuid::Uuid::now_v7(), None))
        .await
}

fn parsed(output: &ToolOutput) -> Value {
    serde_json::from_str(&output.text).unwrap()
}

#[tokio::test]
async fn a_search_summarises_matching_scans_with_their_verdicts() {
    let fake = FakeUrlscan::start(KEY).await;
    let query = "domain:login-verify.example.net";
    fake.search(query, 200, serde_json::from_str(SEARCH).unwrap());
    let tools = urlscan_tools(config(&fake), None).unwrap();
    let output = call(&tool(&tools, "urlscan_search"), json!({"query": query}))
        .await
        .unwrap();
    let summary = parsed(&output);
    assert_eq!(summary["total"], 1);
    assert_eq!(summary["has_more"], false);
    let first = &summary["results"][0];
    assert_eq!(first["uuid"], UUID);
    assert_eq!(first["page"]["ip"], "45.95.169.12");
    assert_eq!(first["page"]["title"], "Sign in to your account");
    assert_eq!(first["verdict"]["malicious"], true);
    assert!(!output.text.contains("screenshot"));

    let requests = fake.requests();
    assert_eq!(requests[0].path, "/api/v1/search/");
    assert_eq!(requests[0].query_param("q").as_deref(), Some(query));
    assert_eq!(requests[0].query_param("size").as_deref(), Some("20"));
    assert_eq!(requests[0].headers["api-key"], KEY);
}

#[tokio::test]
async fn a_result_summarises_verdicts_page_and_contacted_hosts() {
    let fake = FakeUrlscan::start(KEY).await;
    fake.result(UUID, 200, serde_json::from_str(RESULT).unwrap());
    let tools = urlscan_tools(config(&fake), None).unwrap();
    let output = call(
        &tool(&tools, "urlscan_result"),
        json!({"uuid": UUID.to_uppercase()}),
    )
    .await
    .unwrap();
    let summary = parsed(&output);
    assert_eq!(summary["uuid"], UUID);
    assert_eq!(summary["verdicts"]["overall"]["malicious"], true);
    assert_eq!(
        summary["verdicts"]["overall"]["categories"],
        json!(["phishing"])
    );
    assert_eq!(summary["page"]["asnname"], "FLOKINET, RO");
    assert_eq!(
        summary["lists"]["domains"],
        json!(["login-verify.example.net", "cdn.example-cdn.com"])
    );
    assert_eq!(summary["counts"]["certificates"], 1);
    // The request log and DOM of the page stay out.
    assert!(!output.text.contains("requestId"));
    assert_eq!(fake.requests()[0].path, format!("/api/v1/result/{UUID}/"));
}

#[tokio::test]
async fn an_unfinished_or_unknown_result_is_not_found_and_never_cached() {
    let fake = FakeUrlscan::start(KEY).await;
    let cache = Arc::new(InMemoryToolCache::new());
    let tools = urlscan_tools(config(&fake), Some(cache.clone() as Arc<dyn ToolCache>)).unwrap();
    let result = tool(&tools, "urlscan_result");
    for _ in 0..2 {
        let output = call(&result, json!({"uuid": UUID})).await.unwrap();
        assert_eq!(parsed(&output)["found"], false);
    }
    assert_eq!(
        fake.requests().len(),
        2,
        "a 404 must be asked again next time"
    );
    assert!(cache.keys().is_empty());
}

#[tokio::test]
async fn a_repeated_search_is_served_from_the_cache() {
    let fake = FakeUrlscan::start(KEY).await;
    fake.search(
        "ip:45.95.169.12",
        200,
        serde_json::from_str(SEARCH).unwrap(),
    );
    let cache = Arc::new(InMemoryToolCache::new());
    let tools = urlscan_tools(config(&fake), Some(cache.clone() as Arc<dyn ToolCache>)).unwrap();
    let search = tool(&tools, "urlscan_search");
    let first = call(&search, json!({"query": "ip:45.95.169.12"}))
        .await
        .unwrap();
    let second = call(&search, json!({"query": " ip:45.95.169.12 "}))
        .await
        .unwrap();
    assert_eq!(first.text, second.text);
    assert!(second.cached);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn the_scan_tool_is_only_offered_when_enabled() {
    let fake = FakeUrlscan::start(KEY).await;
    let names = |tools: Vec<Arc<dyn Tool>>| {
        tools
            .iter()
            .map(|t| t.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(urlscan_tools(config(&fake), None).unwrap()),
        vec!["urlscan_search", "urlscan_result"]
    );
    let mut enabled = config(&fake);
    enabled.allow_scan = true;
    assert_eq!(
        names(urlscan_tools(enabled, None).unwrap()),
        vec!["urlscan_search", "urlscan_result", "urlscan_scan"]
    );
}

#[tokio::test]
async fn a_scan_submits_the_url_with_the_configured_visibility_and_answers_the_uuid() {
    let fake = FakeUrlscan::start(KEY).await;
    fake.push_scan(
        200,
        json!({"message": "Submission successful", "uuid": UUID,
               "result": format!("https://urlscan.io/result/{UUID}/"),
               "api": format!("https://urlscan.io/api/v1/result/{UUID}/"),
               "visibility": "private", "url": "https://login-verify.example.net/a"}),
    );
    let mut config = config(&fake);
    config.allow_scan = true;
    let tools = urlscan_tools(config, None).unwrap();
    let output = call(
        &tool(&tools, "urlscan_scan"),
        json!({"url": "https://login-verify.example.net/a"}),
    )
    .await
    .unwrap();
    let answer = parsed(&output);
    assert_eq!(answer["uuid"], UUID);
    assert_eq!(answer["submitted"], true);
    assert!(answer["note"].as_str().unwrap().contains("urlscan_result"));
    let request = &fake.requests()[0];
    assert_eq!(request.path, "/api/v1/scan/");
    assert_eq!(
        request.body,
        json!({"url": "https://login-verify.example.net/a", "visibility": "private"})
    );
}

#[tokio::test]
async fn scanning_refuses_internal_and_credentialed_urls_before_any_request() {
    let fake = FakeUrlscan::start(KEY).await;
    let mut config = config(&fake);
    config.allow_scan = true;
    let tools = urlscan_tools(config, None).unwrap();
    let scan = tool(&tools, "urlscan_scan");
    for url in [
        "http://localhost:8080/admin",
        "http://127.0.0.1/",
        "http://10.1.2.3/",
        "http://192.168.1.1/login",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fd12::1]/",
        "http://jenkins/",
        "https://grafana.corp.internal/",
        "https://admin:hunter2@example.com/",
        "ftp://example.com/file",
        "javascript:alert(1)",
    ] {
        let error = call(&scan, json!({"url": url})).await.unwrap_err();
        assert!(
            matches!(error, ToolError::InvalidArguments(_)),
            "{url}: {error:?}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_refused_submission_passes_urlscans_reason_to_the_model() {
    let fake = FakeUrlscan::start(KEY).await;
    fake.push_scan(
        400,
        json!({"message": "DNS Error - Could not resolve domain", "status": 400}),
    );
    let mut config = config(&fake);
    config.allow_scan = true;
    let tools = urlscan_tools(config, None).unwrap();
    let error = call(
        &tool(&tools, "urlscan_scan"),
        json!({"url": "https://does-not-resolve.example.org/"}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, ToolError::Refused(m) if m.contains("Could not resolve domain")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_reported_as_refused_credentials() {
    let fake = FakeUrlscan::start(KEY).await;
    let mut config = config(&fake);
    config.api_key = "not-the-key".into();
    let tools = urlscan_tools(config, None).unwrap();
    let error = call(
        &tool(&tools, "urlscan_search"),
        json!({"query": "domain:example.com"}),
    )
    .await
    .unwrap_err();
    match error {
        ToolError::Failed(message) => {
            assert!(message.contains("HTTP 401"), "{message}");
            assert!(message.contains("No API key supplied"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_queries_and_uuids_are_refused_before_any_request() {
    let fake = FakeUrlscan::start(KEY).await;
    let tools = urlscan_tools(config(&fake), None).unwrap();
    let cases = [
        ("urlscan_search", json!({"query": "  "})),
        ("urlscan_search", json!({"query": "domain:a.com\nAND evil"})),
        ("urlscan_search", json!({"query": "x".repeat(1001)})),
        ("urlscan_search", json!({"q": "domain:a.com"})),
        ("urlscan_result", json!({"uuid": "not-a-uuid"})),
        ("urlscan_result", json!({"uuid": "../../search"})),
        ("urlscan_result", json!({"uuid": UUID, "full": true})),
    ];
    for (name, arguments) in cases {
        let error = call(&tool(&tools, name), arguments.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ToolError::InvalidArguments(_)),
            "{name} {arguments}: {error:?}"
        );
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn an_unknown_scan_visibility_is_a_setup_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = UrlscanConfig::new("key");
    config.scan_visibility = "secret".into();
    assert!(urlscan_tools(config, None).is_err());
}
