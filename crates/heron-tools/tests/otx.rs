//! OTX tools against a local server speaking OTX's `general` wire format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use heron_core::agent::{Tool, ToolError};
use heron_tools::otx::{OtxSettings, OtxTool, otx_tools};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, String, Option<String>)>>,
}

async fn general(
    State(seen): State<Arc<Seen>>,
    Path((kind, indicator)): Path<(String, String)>,
    headers: HeaderMap,
) -> axum::response::Response {
    let key = headers
        .get("x-otx-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.requests
        .lock()
        .unwrap()
        .push((kind.clone(), indicator.clone(), key.clone()));
    if key.as_deref() != Some("otx-key") {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"detail": "Authentication required"})),
        )
            .into_response();
    }
    match indicator.as_str() {
        "198.51.100.7" => axum::Json(json!({
            "indicator": "198.51.100.7", "type": "IPv4", "type_title": "IPv4", "reputation": 0,
            "country_name": "Netherlands", "asn": "AS64500 EXAMPLE-NET",
            "validation": [],
            "pulse_info": {"count": 12, "references": [], "related": {}, "pulses": (0..12).map(|i| json!({
                "id": format!("p{i}"), "name": format!("SSH brute force wave {i}"), "TLP": "white",
                "tags": ["ssh", "bruteforce", "mirai", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11", "t12"],
                "malware_families": [{"id": "Mirai", "display_name": "Mirai", "target": null}],
                "adversary": "", "created": "2026-10-01T00:00:00.000000"
            })).collect::<Vec<_>>()},
            "sections": ["general", "geo", "reputation", "url_list", "passive_dns", "malware"]
        }))
        .into_response(),
        "8.8.8.8" => axum::Json(json!({
            "indicator": "8.8.8.8", "type": "IPv4", "reputation": 0, "country_name": "United States of America",
            "asn": "AS15169 GOOGLE",
            "validation": [{"source": "whitelist", "message": "Whitelisted IP", "name": "Whitelisted IP"}],
            "pulse_info": {"count": 0, "pulses": [], "references": [], "related": {}}
        }))
        .into_response(),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"detail": "Not found."}))).into_response(),
    }
}

async fn fake() -> (String, Arc<Seen>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route(
            "/api/v1/indicators/{kind}/{indicator}/general",
            axum::routing::get(general),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn tools(base: &str, key: &str) -> Vec<OtxTool> {
    otx_tools(OtxSettings {
        base_url: base.into(),
        api_key: key.into(),
        timeout: Duration::from_secs(2),
    })
    .unwrap()
}

fn tool<'a>(tools: &'a [OtxTool], name: &str) -> &'a OtxTool {
    tools.iter().find(|t| t.name() == name).unwrap()
}

#[tokio::test]
async fn an_ip_with_pulses_is_summarised_with_at_most_ten_pulses_and_tags() {
    let (base, seen) = fake().await;
    let tools = tools(&base, "otx-key");
    let out = tool(&tools, "otx_ipv4")
        .call(json!({"target": "198.51.100.7"}))
        .await
        .unwrap();
    let summary: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(summary["pulse_count"], 12);
    assert_eq!(summary["pulses"].as_array().unwrap().len(), 10);
    assert_eq!(summary["pulses"][0]["tags"].as_array().unwrap().len(), 10);
    assert_eq!(summary["pulses"][0]["malware_families"], json!(["Mirai"]));
    assert_eq!(summary["asn"], "AS64500 EXAMPLE-NET");
    let requests = seen.requests.lock().unwrap();
    assert_eq!(
        requests[0],
        ("IPv4".into(), "198.51.100.7".into(), Some("otx-key".into()))
    );
}

#[tokio::test]
async fn allow_listed_indicators_say_so() {
    let (base, _) = fake().await;
    let tools = tools(&base, "otx-key");
    let out = tool(&tools, "otx_ipv4")
        .call(json!({"target": "8.8.8.8"}))
        .await
        .unwrap();
    let summary: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(summary["pulse_count"], 0);
    assert_eq!(summary["allow_listed"], json!(["Whitelisted IP"]));
}

#[tokio::test]
async fn an_unknown_indicator_is_an_answer_not_an_error() {
    let (base, seen) = fake().await;
    let tools = tools(&base, "otx-key");
    let out = tool(&tools, "otx_domain")
        .call(json!({"target": "unknown.example"}))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap()["known_to_otx"],
        false
    );
    assert_eq!(seen.requests.lock().unwrap()[0].0, "domain");
}

#[tokio::test]
async fn bad_arguments_are_refused_before_any_request() {
    let (base, seen) = fake().await;
    let tools = tools(&base, "otx-key");
    for (name, args) in [
        ("otx_ipv4", json!({"target": "203.0.113"})),
        ("otx_ipv6", json!({"target": "203.0.113.9"})),
        ("otx_file_hash", json!({"target": "not-a-hash"})),
        ("otx_url", json!({"target": "file:///etc/passwd"})),
        ("otx_domain", json!({"target": "../../admin"})),
        ("otx_ipv4", json!({"target": "203.0.113.9", "extra": 1})),
        ("otx_ipv4", json!({})),
    ] {
        let error = tool(&tools, name).call(args.clone()).await.unwrap_err();
        assert!(
            matches!(error, ToolError::InvalidArguments(_)),
            "{name} {args}: {error:?}"
        );
    }
    assert!(seen.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_url_target_travels_as_one_escaped_path_segment() {
    let (base, seen) = fake().await;
    let tools = tools(&base, "otx-key");
    tool(&tools, "otx_url")
        .call(json!({"target": "https://evil.example/a/b?c=d"}))
        .await
        .unwrap();
    let requests = seen.requests.lock().unwrap();
    assert_eq!(requests[0].0, "url");
    assert_eq!(requests[0].1, "https://evil.example/a/b?c=d");
}

#[tokio::test]
async fn a_refused_api_key_is_a_tool_failure() {
    let (base, _) = fake().await;
    let tools = tools(&base, "wrong");
    let error = tool(&tools, "otx_ipv4")
        .call(json!({"target": "198.51.100.7"}))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ToolError::Failed(ref m) if m.contains("API key")),
        "{error:?}"
    );
}

#[test]
fn an_empty_api_key_is_a_setup_error_and_every_kind_is_offered() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(
        otx_tools(OtxSettings {
            base_url: "http://127.0.0.1:9".into(),
            api_key: " ".into(),
            timeout: Duration::from_secs(1),
        })
        .is_err()
    );
    let names: Vec<String> = tools("http://127.0.0.1:9", "k")
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "otx_ipv4",
            "otx_ipv6",
            "otx_domain",
            "otx_hostname",
            "otx_file_hash",
            "otx_url"
        ]
    );
}
