//! The OTX tools against `heron_tools::testing::FakeOtx`, a local server speaking OTX API v1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::agent::{Tool, ToolError};
use heron_core::testing::InMemoryToolCache;
use heron_core::tool::{ToolCache, ToolContext};
use heron_tools::testing::FakeOtx;
use heron_tools::{OtxConfig, otx_tools};
use serde_json::{Value, json};
use std::sync::Arc;

const WITH_PULSES: &str = include_str!("fixtures/otx/ipv4_general_with_pulses.json");
const ALLOW_LISTED: &str = include_str!("fixtures/otx/domain_general_allow_listed.json");
const URL_NO_PULSES: &str = include_str!("fixtures/otx/url_general_no_pulses.json");

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn config(fake: &FakeOtx) -> OtxConfig {
    let mut config = OtxConfig::new("otx-test-key");
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

fn ctx() -> ToolContext {
    ToolContext::new(uuid::Uuid::now_v7(), None)
}

async fn call(
    tool: &Arc<dyn Tool>,
    arguments: Value,
) -> Result<heron_core::agent::ToolOutput, ToolError> {
    tool.call(arguments, &ctx()).await
}

#[tokio::test]
async fn an_ipv4_lookup_summarises_pulses_reputation_country_and_asn() {
    let fake = FakeOtx::start().await;
    fake.answer("IPv4", "45.95.169.12", 200, fixture(WITH_PULSES));
    let tools = otx_tools(config(&fake), None).unwrap();
    let output = call(
        &tool(&tools, "otx_ipv4"),
        json!({"target": " 45.95.169.12 "}),
    )
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&output.text).unwrap();
    assert_eq!(summary["indicator"], "45.95.169.12");
    assert_eq!(summary["pulse_count"], 2);
    assert_eq!(summary["country"], "Romania");
    assert_eq!(summary["asn"], "AS200651 Flokinet Ltd");
    assert_eq!(summary["reputation"], 0);
    assert_eq!(summary["malware_families"], json!(["Mirai"]));
    // Newest pulse first, with its ATT&CK ids; noisy tag lists are cut to ten.
    assert_eq!(
        summary["pulses"][0]["name"],
        "SSH brute-force sources, November 2026"
    );
    assert_eq!(
        summary["pulses"][0]["attack_ids"],
        json!(["T1110", "T1021.004"])
    );
    assert_eq!(summary["pulses"][0]["tags"].as_array().unwrap().len(), 10);
    assert_eq!(summary["pulses"][1]["malware_families"], json!(["Mirai"]));
    // Presentation data stays out.
    assert!(!output.text.contains("flag_url") && !output.text.contains("avatar_url"));
    assert!(output.clipped.is_none() && !output.cached);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        "/api/v1/indicators/IPv4/45.95.169.12/general"
    );
    assert_eq!(requests[0].headers["x-otx-api-key"], "otx-test-key");
}

#[tokio::test]
async fn an_indicator_without_pulses_says_so_with_its_allow_list_validation() {
    let fake = FakeOtx::start().await;
    fake.answer(
        "domain",
        "updates.example-vendor.com",
        200,
        fixture(ALLOW_LISTED),
    );
    let tools = otx_tools(config(&fake), None).unwrap();
    let output = call(
        &tool(&tools, "otx_domain"),
        json!({"target": "Updates.Example-Vendor.com."}),
    )
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&output.text).unwrap();
    assert_eq!(summary["pulse_count"], 0);
    assert_eq!(summary["pulses"], json!([]));
    assert_eq!(
        summary["validation"],
        json!(["Whitelisted domain: Whitelisted domain example-vendor.com"])
    );
}

#[tokio::test]
async fn an_unknown_indicator_is_answered_as_not_found_rather_than_failing() {
    let fake = FakeOtx::start().await;
    let tools = otx_tools(config(&fake), None).unwrap();
    let output = call(
        &tool(&tools, "otx_file_hash"),
        json!({"target": "9F2B5C0E4D3A1F7E6B8C9D0A1E2F3A4B5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F"}),
    )
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&output.text).unwrap();
    assert_eq!(summary["found"], false);
    assert_eq!(
        fake.requests()[0].path,
        "/api/v1/indicators/file/9f2b5c0e4d3a1f7e6b8c9d0a1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f/general"
    );
}

#[tokio::test]
async fn a_second_lookup_of_the_same_indicator_is_served_from_the_cache() {
    let fake = FakeOtx::start().await;
    fake.answer("IPv4", "45.95.169.12", 200, fixture(WITH_PULSES));
    let cache = Arc::new(InMemoryToolCache::new());
    let tools = otx_tools(config(&fake), Some(cache.clone() as Arc<dyn ToolCache>)).unwrap();
    let otx = tool(&tools, "otx_ipv4");
    let first = call(&otx, json!({"target": "45.95.169.12"})).await.unwrap();
    let second = call(&otx, json!({"target": "45.95.169.12"})).await.unwrap();
    assert_eq!(first.text, second.text);
    assert!(!first.cached && second.cached);
    assert_eq!(
        fake.requests().len(),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(cache.hits(), 1);
    assert_eq!(cache.keys(), vec!["otx:IPv4:45.95.169.12".to_owned()]);
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_any_request() {
    let fake = FakeOtx::start().await;
    let tools = otx_tools(config(&fake), None).unwrap();
    let cases = [
        ("otx_ipv4", json!({"target": "45.95.169"})),
        ("otx_ipv4", json!({"target": "2001:db8::1"})),
        ("otx_ipv6", json!({"target": "45.95.169.12"})),
        ("otx_domain", json!({"target": "localhost"})),
        ("otx_hostname", json!({"target": "evil host.example.com"})),
        ("otx_file_hash", json!({"target": "abc123"})),
        ("otx_url", json!({"target": "ftp://files.example.com/x"})),
        ("otx_ipv4", json!({})),
        (
            "otx_ipv4",
            json!({"target": "45.95.169.12", "verbose": true}),
        ),
        ("otx_ipv4", json!({"target": 45})),
        ("otx_ipv4", json!("45.95.169.12")),
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

#[tokio::test]
async fn a_private_address_is_answered_without_asking_otx() {
    let fake = FakeOtx::start().await;
    let tools = otx_tools(config(&fake), None).unwrap();
    let output = call(&tool(&tools, "otx_ipv4"), json!({"target": "10.20.30.40"}))
        .await
        .unwrap();
    assert!(output.text.contains("private"), "{}", output.text);
    let v6 = call(&tool(&tools, "otx_ipv6"), json!({"target": "fe80::1"}))
        .await
        .unwrap();
    assert!(v6.text.contains("link-local"), "{}", v6.text);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_url_target_travels_as_one_encoded_path_segment() {
    let fake = FakeOtx::start().await;
    let url = "https://login-verify.example.net/a/b?c=d";
    fake.answer("url", url, 200, fixture(URL_NO_PULSES));
    let tools = otx_tools(config(&fake), None).unwrap();
    let output = call(&tool(&tools, "otx_url"), json!({"target": url}))
        .await
        .unwrap();
    let summary: Value = serde_json::from_str(&output.text).unwrap();
    assert_eq!(summary["indicator"], url);
    assert_eq!(summary["pulse_count"], 0);
    let path = &fake.requests()[0].path;
    assert_eq!(
        path,
        "/api/v1/indicators/url/https:%2F%2Flogin-verify.example.net%2Fa%2Fb%3Fc=d/general"
    );
}

#[tokio::test]
async fn a_refused_api_key_is_reported_as_a_tool_failure() {
    let fake = FakeOtx::start().await;
    fake.answer(
        "IPv4",
        "45.95.169.12",
        403,
        json!({"detail": "Authentication credentials were not provided."}),
    );
    let tools = otx_tools(config(&fake), None).unwrap();
    let error = call(&tool(&tools, "otx_ipv4"), json!({"target": "45.95.169.12"}))
        .await
        .unwrap_err();
    match error {
        ToolError::Failed(message) => {
            assert!(message.contains("refused the credentials"), "{message}");
            assert!(message.contains("Authentication credentials"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn long_answers_are_clipped_with_a_note() {
    let fake = FakeOtx::start().await;
    fake.answer("IPv4", "45.95.169.12", 200, fixture(WITH_PULSES));
    let mut config = config(&fake);
    config.clip_bytes = 400;
    let tools = otx_tools(config, None).unwrap();
    let output = call(&tool(&tools, "otx_ipv4"), json!({"target": "45.95.169.12"}))
        .await
        .unwrap();
    assert!(output.text.len() <= 400, "{}", output.text.len());
    let clipped = output.clipped.expect("clipped");
    assert!(output.text.ends_with(&format!(
        "[clipped: {} of {} bytes]",
        clipped.kept, clipped.total
    )));
    assert!(clipped.total > 400);
}

#[tokio::test]
async fn every_otx_tool_offers_a_strict_schema_with_one_required_target() {
    let fake = FakeOtx::start().await;
    let tools = otx_tools(config(&fake), None).unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        vec![
            "otx_ipv4",
            "otx_ipv6",
            "otx_domain",
            "otx_hostname",
            "otx_file_hash",
            "otx_url"
        ]
    );
    for tool in &tools {
        let schema = tool.parameters();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["target"]));
        assert_eq!(schema["properties"]["target"]["type"], "string");
        assert!(!tool.description().is_empty());
    }
}

#[test]
fn an_empty_or_malformed_api_key_is_a_setup_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(otx_tools(OtxConfig::new(" "), None).is_err());
    assert!(otx_tools(OtxConfig::new("key\nwith newline"), None).is_err());
    let mut bad_url = OtxConfig::new("key");
    bad_url.base_url = "otx.example.com".into();
    assert!(otx_tools(bad_url, None).is_err());
    let shown = format!("{:?}", OtxConfig::new("secret-key"));
    assert!(!shown.contains("secret-key"), "{shown}");
}
