//! `heron policy test` as a user runs it: exit status, filters, fixtures, coverage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const POLICY: &str = r#"package ingest.demo

alerts contains {"title": sprintf("Login by %s", [input.user])} if {
    input.kind == "login"
}

alerts contains {"title": "Never tested"} if {
    input.kind == "rare"
}
"#;

const TESTS: &str = r#"package ingest.demo_test

test_login_alerts if {
    count(data.ingest.demo.alerts) == 1 with input as {"kind": "login", "user": "bob"}
}

test_other_is_quiet if {
    count(data.ingest.demo.alerts) == 0 with input as {"kind": "other"}
}
"#;

fn heron(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_heron"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run heron");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("policies/demo.rego", POLICY);
    write("policies/demo_test.rego", TESTS);
    write(
        "detect/demo/login.jsonl",
        "{\"kind\":\"login\",\"user\":\"a\"}\n",
    );
    write(
        "ignore/demo/other.json",
        "{\"kind\":\"other\"} {\"kind\":\"noise\"}",
    );
    dir
}

#[test]
fn passing_rules_and_fixtures_exit_zero_with_a_summary() {
    let dir = project();
    let (code, out) = heron(
        dir.path(),
        &[
            "policy", "test", "policies", "--detect", "detect", "--ignore", "ignore",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS: 5/5"), "{out}");
}

#[test]
fn an_ignore_fixture_that_alerts_fails_with_exit_one() {
    let dir = project();
    std::fs::write(
        dir.path().join("ignore/demo/login.json"),
        "{\"kind\":\"login\",\"user\":\"eve\"}",
    )
    .unwrap();
    let (code, out) = heron(
        dir.path(),
        &["policy", "test", "policies", "--ignore", "ignore"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Login by eve"), "{out}");
}

#[test]
fn run_takes_a_regular_expression_and_a_bad_one_exits_two() {
    let dir = project();
    let (code, out) = heron(
        dir.path(),
        &[
            "policy",
            "test",
            "policies",
            "-v",
            "--run",
            "demo_test\\.test_log.n_",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("PASS: 1/1") && out.contains("test_login_alerts: PASS"),
        "{out}"
    );
    let (code, out) = heron(dir.path(), &["policy", "test", "policies", "--run", "("]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn coverage_below_the_threshold_fails_and_names_uncovered_lines() {
    let dir = project();
    let (code, out) = heron(
        dir.path(),
        &[
            "policy",
            "test",
            "policies",
            "--coverage",
            "--threshold",
            "100",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("policies/demo.rego") && out.contains("not covered: lines"),
        "{out}"
    );
    assert!(out.contains("below the threshold"), "{out}");
    let (code, out) = heron(
        dir.path(),
        &[
            "policy",
            "test",
            "policies",
            "--coverage",
            "--threshold",
            "10",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["coverage"]["percent"].as_f64().unwrap() < 100.0);
}

#[test]
fn a_policy_that_does_not_compile_exits_two_with_its_location() {
    let dir = project();
    std::fs::write(
        dir.path().join("policies/broken.rego"),
        "package x\n\nallow if {\n",
    )
    .unwrap();
    let (code, out) = heron(dir.path(), &["policy", "test", "policies"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("broken.rego:"), "{out}");
}
