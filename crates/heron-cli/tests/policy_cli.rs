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

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_failing_test_shows_its_print_output_and_verbose_shows_every_test_with_its_duration() {
    let dir = project();
    write(
        dir.path(),
        "policies/noisy_test.rego",
        "package noisy_test\n\ntest_counts if {\n    n := count(data.ingest.demo.alerts) with input as {\"kind\": \"x\"}\n    print(\"alerts:\", n)\n    n == 1\n}\n\ntodo_test_later if false\n",
    );
    let (code, out) = heron(dir.path(), &["policy", "test", "policies"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("data.noisy_test.test_counts: FAIL (") && out.contains("alerts: 0"),
        "{out}"
    );
    assert!(!out.contains("test_login_alerts"), "{out}");
    assert!(
        out.contains("PASS: 2/4") && out.contains("FAIL: 1/4") && out.contains("SKIPPED: 1/4"),
        "{out}"
    );

    let (_, out) = heron(dir.path(), &["policy", "test", "policies", "-v"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("data.ingest.demo_test.test_login_alerts: PASS ("))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.ends_with("ms)"), "{line}");
    assert!(
        out.contains("data.noisy_test.todo_test_later: SKIPPED"),
        "{out}"
    );
}

#[test]
fn a_parameterised_test_lists_its_failing_case() {
    let dir = project();
    write(
        dir.path(),
        "policies/cases_test.rego",
        r#"package cases_test

test_kinds[kind] if {
    some kind, want in {"login": 1, "other": 0, "rare": 0}
    count(data.ingest.demo.alerts) == want with input as {"kind": kind, "user": "u"}
}
"#,
    );
    let (code, out) = heron(dir.path(), &["policy", "test", "policies"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("  rare: FAIL"), "{out}");
    assert!(!out.contains("  login: PASS"), "{out}");
    let (_, out) = heron(dir.path(), &["policy", "test", "policies", "-v"]);
    assert!(out.contains("  login: PASS"), "{out}");
}

#[test]
fn json_output_carries_outcome_location_duration_and_output() {
    let dir = project();
    let (code, out) = heron(
        dir.path(),
        &["policy", "test", "policies", "--format", "json"],
    );
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &report["results"][0];
    assert_eq!(first["package"], "ingest.demo_test");
    assert_eq!(first["name"], "test_login_alerts");
    assert_eq!(first["row"], 3);
    assert_eq!(first["outcome"], "PASS");
    assert!(first["duration"].is_u64(), "{first}");
}

#[test]
fn fail_on_empty_turns_a_run_that_matched_nothing_into_a_failure() {
    let dir = project();
    let (code, out) = heron(
        dir.path(),
        &["policy", "test", "policies", "--run", "no_such_test"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS: 0/0"), "{out}");
    let (code, out) = heron(
        dir.path(),
        &[
            "policy",
            "test",
            "policies",
            "--run",
            "no_such_test",
            "--fail-on-empty",
        ],
    );
    assert_eq!(code, 1, "{out}");
}

#[test]
fn v0_policies_need_the_v0_flag_and_then_pass() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "v0/authz.rego",
        "package authz\n\nallow {\n    input.method == \"POST\"\n}\n\ntest_post {\n    allow with input as {\"method\": \"POST\"}\n}\n",
    );
    let (code, out) = heron(dir.path(), &["policy", "test", "v0"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("authz.rego:"), "{out}");
    for flag in ["--rego-v0", "--v0-compatible"] {
        let (code, out) = heron(dir.path(), &["policy", "test", "v0", flag]);
        assert_eq!(code, 0, "{flag}: {out}");
        assert!(out.contains("PASS: 1/1"), "{out}");
    }
}
