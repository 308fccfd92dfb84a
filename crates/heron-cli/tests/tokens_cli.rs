#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `heron token create|list|revoke` as an operator runs it, on SQLite: the secret is printed
//! once and only its hash is stored, names are unique among live tokens, and every change is
//! audited with source `cli`.

use heron_core::access::AccessStore;
use heron_core::access::{AuditQuery, AuditSource, token_hash};
use std::path::Path;
use std::process::Command;

fn heron(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_heron"))
        .current_dir(dir)
        .env_remove("HERON_CONFIG")
        .env_remove("HERON_DATABASE_URL")
        .env("HERON_DATA_DIR", dir.join("data"))
        .env("USER", "operator")
        .args(args)
        .output()
        .expect("run heron");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_token_is_created_shown_once_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, secret, err) = heron(
        dir.path(),
        &[
            "token",
            "create",
            "--name",
            "siem",
            "--scopes",
            "read,ingest",
            "--expires",
            "30d",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_owned();
    assert!(
        secret.starts_with("heron_") && secret.len() > 40,
        "{secret:?}"
    );
    assert!(err.contains("shown once"), "{err}");

    let (code, _, err) = heron(
        dir.path(),
        &["token", "create", "--name", "siem", "--scopes", "write"],
    );
    assert_ne!(code, 0, "a live token's name cannot be taken twice");
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) = heron(
        dir.path(),
        &["token", "create", "--name", "x", "--scopes", "admin"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("admin"), "{err}");

    let (code, list, err) = heron(dir.path(), &["token", "list"]);
    assert_eq!(code, 0, "{err}");
    let row = list.lines().find(|l| l.contains("siem")).expect("listed");
    assert!(row.contains("ingest,read"), "{row}");
    assert!(row.ends_with("active"), "{row}");
    assert!(!list.contains(&secret), "the secret is never shown again");

    let (code, out, err) = heron(dir.path(), &["token", "revoke", "siem"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked token \"siem\""), "{out}");
    let (code, _, err) = heron(dir.path(), &["token", "revoke", "siem"]);
    assert_ne!(code, 0, "nothing live of that name is left");
    assert!(err.contains("no active token"), "{err}");
    let (_, list, _) = heron(dir.path(), &["token", "list", "--format", "json"]);
    let tokens: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert!(tokens[0]["revoked_at"].is_string(), "{tokens}");
    assert_eq!(tokens[0]["scopes"], serde_json::json!(["ingest", "read"]));

    let store = heron_store::SqliteStore::open(&dir.path().join("data/heron.db"))
        .await
        .unwrap();
    let stored = store.find_api_token(&token_hash(&secret)).await.unwrap();
    assert!(
        stored.is_some_and(|t| t.revoked_at.is_some()),
        "found by the hash of the printed secret"
    );
    let bytes = std::fs::read(dir.path().join("data/heron.db")).unwrap();
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret itself is not in the database file"
    );
    let audit = store
        .list_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items;
    let entries: Vec<(&str, &str, AuditSource)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.source))
        .collect();
    assert_eq!(
        entries,
        [
            ("token.revoke", "operator", AuditSource::Cli),
            ("token.create", "operator", AuditSource::Cli)
        ]
    );
    store.close().await;
}
