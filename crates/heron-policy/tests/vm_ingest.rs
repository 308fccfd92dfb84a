//! `ingest_unchecked` (regorus's VM) against `ingest` (the interpreter): the same alerts from
//! every example payload, and the one known difference, a rule conflict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::SchemaName;
use heron_core::policy::{PolicyEngine, PolicyError};
use heron_policy::{LoadOptions, PolicySet};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every JSON object of a fixture file (one object, or one per line).
fn objects(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => vec![value],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

fn fixtures(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fixtures(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
        {
            out.push(path);
        }
    }
}

#[test]
fn the_vm_makes_the_same_alerts_as_the_interpreter_from_every_example_payload() {
    let root = repo_root();
    let set = PolicySet::load(&[root.join("policies")], &LoadOptions::default()).unwrap();
    assert_eq!(
        set.vm_ingest_schemas(),
        set.info().ingest_schemas,
        "every example ingest policy compiles for the VM"
    );
    let mut compared = 0;
    for kind in ["detect", "ignore"] {
        let base = root.join("policies/testdata").join(kind);
        for schema_dir in std::fs::read_dir(&base).unwrap() {
            let schema_dir = schema_dir.unwrap().path();
            let schema =
                SchemaName::parse(schema_dir.file_name().unwrap().to_str().unwrap()).unwrap();
            let mut files = Vec::new();
            fixtures(&schema_dir, &mut files);
            for file in files {
                for event in objects(&file) {
                    let interpreted = set.ingest(&schema, &event).unwrap();
                    let vm = set.ingest_unchecked(&schema, &event.to_string()).unwrap();
                    assert_eq!(vm, interpreted, "{}", file.display());
                    compared += 1;
                }
            }
        }
    }
    assert!(compared >= 25, "only {compared} payloads compared");
}

#[test]
fn a_rule_conflict_is_an_error_for_ingest_and_fewer_alerts_for_the_vm() {
    let policy = r#"package ingest.demo

level := "high" if input.a
level := "low" if input.b

alerts contains {"title": "x", "severity": level} if input.kind == "x"
"#;
    let set = PolicySet::from_sources(
        vec![("demo.rego".into(), policy.into())],
        &LoadOptions::default(),
    )
    .unwrap();
    let schema = SchemaName::parse("demo").unwrap();
    let event = serde_json::json!({"kind": "x", "a": true, "b": true});
    assert!(matches!(
        set.ingest(&schema, &event),
        Err(PolicyError::Evaluation { .. })
    ));
    // What replay guards against by re-evaluating, with `ingest`, every event whose outcome
    // differs between the two sets (if regorus starts reporting the conflict, this changes).
    let vm = set.ingest_unchecked(&schema, &event.to_string());
    assert!(vm.as_ref().is_ok_and(|o| o.alerts.is_empty()), "{vm:?}");
    let fine = serde_json::json!({"kind": "x", "a": true});
    assert_eq!(
        set.ingest_unchecked(&schema, &fine.to_string()).unwrap(),
        set.ingest(&schema, &fine).unwrap()
    );
}

#[test]
fn text_that_is_not_a_json_object_is_an_input_error_for_the_vm() {
    let set = PolicySet::from_sources(
        vec![(
            "demo.rego".into(),
            "package ingest.demo\n\nalerts contains {\"title\": \"x\"} if input.kind == \"x\"\n"
                .into(),
        )],
        &LoadOptions::default(),
    )
    .unwrap();
    let schema = SchemaName::parse("demo").unwrap();
    for text in ["{\"kind\": ", "[1, 2]", "\"x\"", "null"] {
        let result = set.ingest_unchecked(&schema, text);
        assert!(
            matches!(result, Err(PolicyError::Input(_))),
            "{text}: {result:?}"
        );
    }
    assert_eq!(
        set.ingest_unchecked(&schema, r#"{"kind": "x"}"#)
            .unwrap()
            .alerts
            .len(),
        1
    );
}
