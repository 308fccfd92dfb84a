#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `policy_timeout_ms` stops a runaway evaluation in every package Heron evaluates, including
//! `auth.http`, which runs on the request path. (Its own test binary: the limit is
//! process-wide in regorus.)

use heron_core::SchemaName;
use heron_core::policy::PolicyEngine;
use heron_policy::{LoadOptions, PolicySet};
use std::time::{Duration, Instant};

/// About 25 million iterations: several seconds on the interpreter without a limit.
const RUNAWAY: &str =
    "count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000)]) > 0";

fn runaway_set() -> PolicySet {
    PolicySet::from_sources(
        vec![
            (
                "ingest.rego".into(),
                format!("package ingest.slow\n\nalerts contains {{\"title\": \"t\"}} if {{\n  {RUNAWAY}\n}}\n"),
            ),
            (
                "auth.rego".into(),
                format!("package auth.http\n\ndefault allow := false\n\nallow if {{\n  {RUNAWAY}\n}}\n"),
            ),
        ],
        &LoadOptions {
            eval_timeout: Duration::from_millis(200),
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn a_runaway_ingest_policy_is_stopped_with_an_error() {
    let set = runaway_set();
    let started = Instant::now();
    let result = set.ingest(
        &SchemaName::parse("slow").unwrap(),
        &serde_json::json!({"a": 1}),
    );
    assert!(result.is_err(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped by the limit, not by finishing: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_runaway_auth_http_policy_is_stopped_with_an_error_not_an_allow() {
    let set = runaway_set();
    let started = Instant::now();
    let result = set.authorize_http(&serde_json::json!({
        "req": {"method": "GET", "path": "/api/v1/tickets", "header": {}, "body": ""},
        "token": null,
        "env": {},
    }));
    assert!(result.is_err(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped by the limit, not by finishing: {:?}",
        started.elapsed()
    );
}
