#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No configured secret ever leaves the process: the `heron` binary runs with every kind of
//! secret set (some from files), at debug log level, while an alert is triaged by an agent
//! whose OTX lookup fails; its logs, `heron config` and every answer it gives are searched
//! for each secret.

use heron_llm::testing::{FakeOpenAi, Reply};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const API_TOKEN: &str = "tok-SECRET-api-7f3a9c";
const LLM_KEY: &str = "sk-SECRET-llm-51d2e8";
const OTX_KEY: &str = "otx-SECRET-key-94bb10";
const URLSCAN_KEY: &str = "urlscan-SECRET-key-0c77e4";
const SECRETS: [&str; 4] = [API_TOKEN, LLM_KEY, OTX_KEY, URLSCAN_KEY];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn heron(dir: &std::path::Path, llm: &FakeOpenAi, dead_port: u16) -> Command {
    std::fs::write(dir.join("llm-key"), format!("{LLM_KEY}\n")).unwrap();
    std::fs::write(dir.join("tokens"), format!("{API_TOKEN}\n")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_heron"));
    command
        .env_remove("HERON_CONFIG")
        .env("HERON_LLM_API_KEY_FILE", dir.join("llm-key"))
        .env("HERON_AUTH__TOKENS_FILE", dir.join("tokens"))
        .env("HERON_LLM_BASE_URL", llm.base_url())
        .env("HERON_LLM_MODEL", "gpt-test")
        .env("HERON_OTX_API_KEY", OTX_KEY)
        // Nothing listens there: the lookup fails, and its error is recorded and logged.
        .env(
            "HERON_OTX_BASE_URL",
            format!("http://127.0.0.1:{dead_port}"),
        )
        .env("HERON_URLSCAN_API_KEY", URLSCAN_KEY)
        .env(
            "HERON_URLSCAN_BASE_URL",
            format!("http://127.0.0.1:{dead_port}"),
        )
        .env("HERON_LOG__FILTER", "debug")
        .env("HERON_DATA_DIR", dir.join("data"))
        .env(
            "HERON_POLICIES",
            format!("[\"{}\"]", repo_root().join("policies").display()),
        )
        .stdin(Stdio::null());
    command
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} holds the secret {secret}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_appears_in_logs_config_or_any_answer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let llm = FakeOpenAi::start().await;
    let dead_port = free_port();
    let port = free_port();

    let config = heron(dir.path(), &llm, dead_port)
        .arg("config")
        .output()
        .expect("heron config");
    assert!(config.status.success(), "{config:?}");
    let shown = String::from_utf8_lossy(&config.stdout);
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_no_secret("`heron config`", &shown);
    assert_no_secret(
        "`heron config` errors",
        &String::from_utf8_lossy(&config.stderr),
    );

    // The agent looks the alert's address up in OTX (which fails), then concludes.
    llm.push_chat_for(
        "submit_finding",
        Reply::tool_calls(
            &[("c1", "otx_ipv4", r#"{"target": "93.184.216.34"}"#)],
            (100, 10),
        ),
    );
    let finding = json!({"severity": "low", "verdict": "benign", "confidence": 0.6,
        "summary": "lookup failed", "reason": "OTX unreachable", "recommendation": "none",
        "evidence": []});
    llm.push_chat_for(
        "submit_finding",
        Reply::tool_calls(&[("c2", "submit_finding", &finding.to_string())], (100, 10)),
    );

    let log_path = dir.path().join("heron.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = heron(dir.path(), &llm, dead_port)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("heron serve");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut answers = Vec::new();
    let alert = std::fs::read_to_string(
        repo_root().join("policies/testdata/detect/okta/account_locked.json"),
    )
    .unwrap();
    let posted = http
        .post(format!("{base}/hooks/alert/raw/okta"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(alert)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    answers.push(posted.text().await.unwrap());

    // Wait for the investigation to be recorded, then read everything a client can read.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ticket_id = loop {
        let tickets: serde_json::Value = http
            .get(format!("{base}/api/v1/tickets"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = tickets["items"][0]["id"].as_str() {
            let runs: serde_json::Value = http
                .get(format!("{base}/api/v1/tickets/{id}/agent-runs"))
                .bearer_auth(API_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if runs["triage"]["state"] == "done" {
                let step = &runs["runs"][0]["steps"][1];
                assert_eq!(step["tool"], "otx_ipv4", "{runs}");
                assert!(step["error"].is_string(), "the lookup failed: {runs}");
                break id.to_owned();
            }
        }
        assert!(Instant::now() < deadline, "the triage did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for path in [
        "/readyz".to_owned(),
        "/healthz".to_owned(),
        "/metrics".to_owned(),
        "/api/v1/openapi.json".to_owned(),
        "/api/v1/tickets".to_owned(),
        format!("/api/v1/tickets/{ticket_id}"),
        format!("/api/v1/tickets/{ticket_id}/agent-runs"),
        format!("/api/v1/tickets/{ticket_id}/alerts"),
        "/api/v1/events".to_owned(),
        "/api/v1/policies".to_owned(),
    ] {
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        answers.push(format!("{path}: {}", response.text().await.unwrap()));
    }
    // Refusals do not echo anything either.
    let refused = http
        .get(format!("{base}/api/v1/tickets"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    answers.push(refused.text().await.unwrap());

    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let _ = server.wait();

    for answer in &answers {
        assert_no_secret("an HTTP answer", answer);
    }
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("otx"),
        "the failed lookup is in the debug log"
    );
    assert_no_secret("the log", &logged);
    // The model was called with its key, so the key was really in use.
    let requests = llm.requests();
    assert!(!requests.is_empty());
    assert_eq!(
        requests[0].headers["authorization"],
        format!("Bearer {LLM_KEY}")
    );
}
