#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::SchemaName;
use heron_core::Severity;
use heron_core::policy::{
    PolicyEngine, PolicyError, Publish, TriageAlert, TriageInput, TriageMetadata,
};
use heron_policy::{LoadOptions, PolicyLoadError, PolicySet, RegoVersion};
use serde_json::json;

fn set(sources: &[(&str, &str)]) -> Result<PolicySet, PolicyLoadError> {
    PolicySet::from_sources(
        sources
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect(),
        &LoadOptions::default(),
    )
}

fn schema(s: &str) -> SchemaName {
    SchemaName::parse(s).unwrap()
}

const INGEST: &str = r#"package ingest.demo

alerts contains {
    "title": sprintf("Login by %s", [input.user]),
    "description": "d",
    "attrs": [{"key": "user", "value": input.user, "link": ""}, {"key": "port", "value": 22}],
    "tags": ["auth"],
    "severity": "high",
    "fingerprint": {"user": input.user},
} if {
    input.kind == "login"
}
"#;

fn triage_input(title: &str) -> TriageInput {
    TriageInput {
        alert: TriageAlert {
            id: "a1".into(),
            schema: schema("demo"),
            metadata: TriageMetadata {
                title: title.into(),
                description: String::new(),
                attributes: vec![],
                tags: vec![],
                channel: None,
                severity: Severity::Low,
                title_source: heron_core::alert::MetadataSource::Policy,
                description_source: heron_core::alert::MetadataSource::Default,
            },
            data: json!({}),
        },
        enrich: vec![],
    }
}

#[test]
fn ingest_package_turns_an_event_into_alerts_with_attributes() {
    let set = set(&[("demo.rego", INGEST)]).unwrap();
    let out = set
        .ingest(&schema("demo"), &json!({"kind": "login", "user": "bob"}))
        .unwrap();
    assert!(out.package_found);
    assert_eq!(out.alerts.len(), 1);
    let alert = &out.alerts[0];
    assert_eq!(alert.title.as_deref(), Some("Login by bob"));
    assert_eq!(alert.severity, Some(Severity::High));
    assert_eq!(alert.tags, vec!["auth".to_string()]);
    let attrs: Vec<_> = alert
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str(), a.link.clone()))
        .collect();
    assert_eq!(attrs, vec![("user", "bob", None), ("port", "22", None)]);
    assert_eq!(alert.fingerprint, Some(json!({"user": "bob"})));
}

#[test]
fn ingest_package_that_matches_nothing_yields_no_alerts() {
    let set = set(&[("demo.rego", INGEST)]).unwrap();
    let out = set
        .ingest(&schema("demo"), &json!({"kind": "logout"}))
        .unwrap();
    assert!(out.package_found);
    assert!(out.alerts.is_empty());
}

#[test]
fn schema_without_a_package_gets_one_default_alert() {
    let set = set(&[("demo.rego", INGEST)]).unwrap();
    let out = set
        .ingest(&schema("other"), &json!({"rule": "Shell in container"}))
        .unwrap();
    assert!(!out.package_found);
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(out.alerts[0].title.as_deref(), Some("Shell in container"));
}

#[test]
fn test_packages_are_not_schemas() {
    let test = "package ingest.demo_test\n\ntest_x if { true }\n";
    let set = set(&[("demo.rego", INGEST), ("demo_test.rego", test)]).unwrap();
    assert_eq!(
        heron_core::policy::PolicyEngine::info(&set).ingest_schemas,
        vec!["demo".to_string()]
    );
}

#[test]
fn hyphenated_schema_uses_a_quoted_package() {
    let src =
        "package ingest[\"okta-prod\"]\n\nalerts contains {\"title\": \"x\"} if { input.a }\n";
    let set = set(&[("o.rego", src)]).unwrap();
    let out = set
        .ingest(&schema("okta-prod"), &json!({"a": true}))
        .unwrap();
    assert!(out.package_found);
    assert_eq!(out.alerts.len(), 1);
}

#[test]
fn compile_error_names_file_line_and_column() {
    let err = set(&[(
        "policies/broken.rego",
        "package ingest.x\n\nalerts contains x if {\n  x := \n}\n",
    )])
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("policies/broken.rego:"), "{message}");
    let after = message.split("policies/broken.rego:").nth(1).unwrap();
    let mut parts = after.split(':');
    assert!(
        parts.next().unwrap().trim().parse::<u32>().is_ok(),
        "line in {message}"
    );
    assert!(
        parts.next().unwrap().trim().parse::<u32>().is_ok(),
        "column in {message}"
    );
}

#[test]
fn rego_v0_syntax_needs_the_v0_setting() {
    let v0 = "package ingest.old\n\nalerts[{\"title\": \"t\"}] { input.a }\n";
    assert!(set(&[("old.rego", v0)]).is_err());
    let set = PolicySet::from_sources(
        vec![("old.rego".into(), v0.into())],
        &LoadOptions {
            version: RegoVersion::V0,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        set.ingest(&schema("old"), &json!({"a": true}))
            .unwrap()
            .alerts
            .len(),
        1
    );
}

#[test]
fn runtime_conflict_is_an_evaluation_error() {
    let src = r#"package ingest.c

sev := "high" if input.a
sev := "low" if input.b

alerts contains {"title": "t", "severity": sev} if { true }
"#;
    let set = set(&[("c.rego", src)]).unwrap();
    let err = set
        .ingest(&schema("c"), &json!({"a": true, "b": true}))
        .unwrap_err();
    assert!(matches!(err, PolicyError::Evaluation { .. }), "{err:?}");
}

#[test]
fn malformed_alert_is_an_output_error_naming_the_field() {
    let src = "package ingest.m\n\nalerts contains {\"title\": \"t\", \"severity\": \"urgent\"} if { true }\n";
    let set = set(&[("m.rego", src)]).unwrap();
    let err = set.ingest(&schema("m"), &json!({})).unwrap_err();
    assert!(err.to_string().contains("severity"), "{err}");
}

#[test]
fn missing_triage_package_publishes_as_alert() {
    let set = set(&[("demo.rego", INGEST)]).unwrap();
    let decision = set.triage(&triage_input("x")).unwrap();
    assert_eq!(decision.publish, Publish::Alert);
    assert_eq!(decision.title, None);
}

#[test]
fn triage_package_decides_publish_title_and_severity() {
    let triage = r#"package triage

default publish := "alert"
publish := "notice" if input.alert.metadata.severity == "low"
title := sprintf("[triaged] %s", [input.alert.metadata.title])
severity := "medium" if input.alert.metadata.severity == "low"
attr contains {"key": "triaged", "value": true}
"#;
    let set = set(&[("t.rego", triage)]).unwrap();
    let decision = set.triage(&triage_input("Login")).unwrap();
    assert_eq!(decision.publish, Publish::Notice);
    assert_eq!(decision.title.as_deref(), Some("[triaged] Login"));
    assert_eq!(decision.severity, Some(Severity::Medium));
    assert_eq!(decision.attr.len(), 1);
    assert_eq!(decision.channel, None);
}

#[test]
fn test_runner_reports_pass_fail_and_error() {
    let tests = r#"package ingest.demo_test

test_login_alerts if {
    count(data.ingest.demo.alerts) == 1 with input as {"kind": "login", "user": "bob"}
}

test_wrong if {
    print("counting", count(data.ingest.demo.alerts))
    count(data.ingest.demo.alerts) == 2 with input as {"kind": "login", "user": "bob"}
}

test_error if {
    x := ["a"]
    y := x[0] + 1
    y == 2
}
"#;
    let set = set(&[("demo.rego", INGEST), ("demo_test.rego", tests)]).unwrap();
    let report = heron_policy::testing::run(&set, |_| true);
    let by_name = |n: &str| report.results.iter().find(|r| r.name == n).unwrap();
    use heron_policy::testing::Outcome;
    assert_eq!(by_name("test_login_alerts").outcome, Outcome::Pass);
    assert_eq!(by_name("test_wrong").outcome, Outcome::Fail);
    assert!(
        by_name("test_wrong")
            .output
            .iter()
            .any(|l| l.contains("counting")),
        "{:?}",
        by_name("test_wrong").output
    );
    assert_eq!(report.results.len(), 3);
    assert!(!report.passed());
}

#[test]
fn coverage_reports_lines_no_test_reached() {
    let tests = r#"package ingest.demo_test

test_login_alerts if {
    count(data.ingest.demo.alerts) == 1 with input as {"kind": "login", "user": "bob"}
}
"#;
    let set = set(&[("demo.rego", INGEST), ("demo_test.rego", tests)]).unwrap();
    let report = heron_policy::testing::run_with(&set, |_| true, true);
    let coverage = report.coverage.expect("coverage was asked for");
    let demo = coverage
        .files
        .iter()
        .find(|f| f.path == "demo.rego")
        .unwrap();
    assert!(!demo.covered.is_empty(), "{demo:?}");
    assert!(demo.percent > 0.0 && demo.percent <= 100.0);
    assert!(coverage.percent > 0.0);

    // Without the test that reaches the alert rule, its body lines are not covered.
    let none = heron_policy::testing::run_with(&set, |_| false, true);
    let demo_none = none.coverage.unwrap();
    let covered_without: usize = demo_none
        .files
        .iter()
        .filter(|f| f.path == "demo.rego")
        .map(|f| f.covered.len())
        .sum();
    assert!(covered_without < demo.covered.len());
}

mod fixture_folders {
    use super::*;
    use heron_policy::fixtures::{Expect, run};
    use heron_policy::testing::{Outcome, TestReport};

    fn write(dir: &std::path::Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn every_object_in_json_and_jsonl_files_is_one_result() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "demo/two.json",
            r#"{"kind":"login","user":"a"} {"kind":"login","user":"b"}"#,
        );
        write(
            dir.path(),
            "demo/nested/lines.jsonl",
            "{\"kind\":\"login\",\"user\":\"c\"}\n\n{\"kind\":\"other\"}\n",
        );
        let set = set(&[("demo.rego", INGEST)]).unwrap();
        let mut report = TestReport::default();
        run(&set, dir.path(), Expect::Detect, &mut report);
        let names: Vec<(&str, Outcome)> = report
            .results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome))
            .collect();
        assert_eq!(
            names,
            vec![
                ("demo/nested/lines.jsonl#1", Outcome::Pass),
                ("demo/nested/lines.jsonl#2", Outcome::Fail),
                ("demo/two.json#1", Outcome::Pass),
                ("demo/two.json#2", Outcome::Pass),
            ]
        );
    }

    #[test]
    fn ignore_fixture_that_alerts_fails_with_the_alert_titles() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "demo/noise.json",
            r#"{"kind":"login","user":"eve"}"#,
        );
        let set = set(&[("demo.rego", INGEST)]).unwrap();
        let mut report = TestReport::default();
        run(&set, dir.path(), Expect::Ignore, &mut report);
        assert_eq!(report.results.len(), 1);
        assert_eq!(report.results[0].outcome, Outcome::Fail);
        assert!(report.results[0].output[0].contains("Login by eve"));
    }

    #[test]
    fn broken_fixtures_and_empty_folders_are_errors_not_skips() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "demo/bad.jsonl",
            "{\"kind\":\"login\"}\n{oops\n",
        );
        write(dir.path(), "nopolicy/x.json", "{}");
        let set = set(&[("demo.rego", INGEST)]).unwrap();
        let mut report = TestReport::default();
        run(&set, dir.path(), Expect::Detect, &mut report);
        assert_eq!(report.count(Outcome::Error), 2, "{:?}", report.results);
        assert!(report.results[0].output[0].contains("line 2"));
        assert!(report.results[1].output[0].contains("no ingest policy"));

        let empty = tempfile::tempdir().unwrap();
        let mut report = TestReport::default();
        run(&set, empty.path(), Expect::Ignore, &mut report);
        assert_eq!(report.count(Outcome::Error), 1);
        assert!(report.results[0].output[0].contains("no fixtures"));
    }
}

#[test]
fn the_ingest_digest_changes_with_ingest_modules_only() {
    let triage = "package triage\n\npublish := \"notice\"\n";
    let test = "package ingest.demo_test\n\ntest_x if true\n";
    let digest = |sources: &[(&str, &str)]| set(sources).unwrap().ingest_digest();
    let base = digest(&[("demo.rego", INGEST), ("triage.rego", triage)]);
    assert!(base.is_some());
    assert_eq!(
        digest(&[
            ("demo.rego", INGEST),
            ("triage.rego", "package triage\n\npublish := \"discard\"\n"),
            ("demo_test.rego", test),
        ]),
        base,
        "triage and tests do not change what ingest makes"
    );
    assert_ne!(
        digest(&[
            ("demo.rego", &INGEST.replace("login", "logon")),
            ("triage.rego", triage)
        ]),
        base
    );
    let peeking = "package ingest.peek\n\nalerts contains {\"title\": data.triage.publish}\n";
    assert_eq!(
        digest(&[
            ("demo.rego", INGEST),
            ("peek.rego", peeking),
            ("triage.rego", triage)
        ]),
        None,
        "an ingest module that reads triage cannot be shared"
    );
}

#[test]
fn a_suppress_entry_discards_whatever_publish_says_and_several_files_can_add_them() {
    let triage = "package triage\n\npublish := \"notice\"\n";
    let one = "package triage\n\nsuppress contains \"ticket 1\" if input.alert.metadata.title == \"Login\"\n";
    let two = "package triage\n\nsuppress contains \"ticket 2\" if input.alert.metadata.title == \"Other\"\n";
    let set = set(&[("t.rego", triage), ("s1.rego", one), ("s2.rego", two)]).unwrap();
    assert_eq!(
        set.triage(&triage_input("Login")).unwrap().publish,
        Publish::Discard
    );
    assert_eq!(
        set.triage(&triage_input("Other")).unwrap().publish,
        Publish::Discard
    );
    assert_eq!(
        set.triage(&triage_input("Third")).unwrap().publish,
        Publish::Notice
    );
    let v0 = PolicySet::from_sources(
        vec![(
            "t.rego".into(),
            "package triage\n\npublish = \"notice\" { true }\n".into(),
        )],
        &LoadOptions {
            version: RegoVersion::V0,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        v0.triage(&triage_input("x")).unwrap().publish,
        Publish::Notice
    );
}

#[test]
fn the_same_ingest_modules_from_another_folder_have_the_same_digest() {
    let a = set(&[("/srv/heron/policies/demo.rego", INGEST)]).unwrap();
    let b = set(&[("/tmp/candidate/demo.rego", INGEST)]).unwrap();
    assert_eq!(a.ingest_digest(), b.ingest_digest());
}
