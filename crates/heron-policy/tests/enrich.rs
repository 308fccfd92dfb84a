#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `data.enrich`: decoding prompt tasks (warren's shapes), prompt templates loaded with the
//! policies, and the errors a policy author sees.

use heron_core::policy::{EnrichFormat, EnrichPrompt, EnrichTask, PolicyEngine, PolicyError};
use heron_policy::{LoadOptions, PolicyLoadError, PolicySet};
use serde_json::json;

fn set(sources: &[(&str, &str)], templates: &[(&str, &str)]) -> Result<PolicySet, PolicyLoadError> {
    PolicySet::from_sources_with_templates(
        sources
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect(),
        templates
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        &LoadOptions::default(),
    )
}

fn alert() -> serde_json::Value {
    json!({
        "id": "a1",
        "schema": "guardduty",
        "title": "Backdoor in ap-northeast-1",
        "description": "",
        "severity": "high",
        "attributes": [{"key": "ip", "value": "198.51.100.7"}],
        "data": {"detail": {"type": "Backdoor:EC2/C&CActivity.B!DNS", "region": "ap-northeast-1"}},
    })
}

fn tasks(set: &PolicySet) -> Vec<EnrichTask> {
    set.enrich(&alert()).unwrap()
}

#[test]
fn without_an_enrich_package_there_are_no_tasks() {
    let set = set(&[("t.rego", "package triage\npublish := \"alert\"")], &[]).unwrap();
    assert!(!set.has_enrich());
    assert_eq!(tasks(&set), vec![]);
}

#[test]
fn a_package_without_prompts_asks_for_nothing() {
    let set = set(&[("e.rego", "package enrich\nx := 1")], &[]).unwrap();
    assert_eq!(tasks(&set), vec![]);
}

#[test]
fn inline_and_template_tasks_decode_with_their_format_and_params() {
    let policy = r#"package enrich
prompts contains {"id": "summary", "inline": "Summarise the alert", "format": "text"}
prompts contains {
    "id": "check_ioc",
    "template": "threat_analysis.md",
    "params": {"severity_threshold": "high"},
    "format": "json",
} if { input.schema == "guardduty" }
prompts contains {"id": "never", "inline": "x"} if { input.schema == "okta" }
"#;
    let set = set(
        &[("enrich.rego", policy)],
        &[(
            "threat_analysis.md",
            "Is {{ alert.title }} above {{ params.severity_threshold }}?",
        )],
    )
    .unwrap();
    assert!(set.has_enrich());
    let mut got = tasks(&set);
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let mut params = serde_json::Map::new();
    params.insert("severity_threshold".into(), json!("high"));
    assert_eq!(
        got,
        vec![
            EnrichTask {
                id: "check_ioc".into(),
                prompt: EnrichPrompt::Template {
                    name: "threat_analysis.md".into(),
                    params,
                },
                format: EnrichFormat::Json,
            },
            EnrichTask {
                id: "summary".into(),
                prompt: EnrichPrompt::Inline("Summarise the alert".into()),
                format: EnrichFormat::Text,
            },
        ]
    );
    assert_eq!(
        set.render_prompt(&got[0], &alert()).unwrap(),
        "Is Backdoor in ap-northeast-1 above high?"
    );
    assert_eq!(
        set.render_prompt(&got[1], &alert()).unwrap(),
        "Summarise the alert"
    );
}

#[test]
fn a_task_without_an_id_gets_a_stable_one() {
    let policy = r#"package enrich
prompts contains {"inline": "Analyze this alert"}
prompts contains {"inline": "Something else", "format": "json"}
"#;
    let first = tasks(&set(&[("e.rego", policy)], &[]).unwrap());
    let again = tasks(&set(&[("e.rego", policy)], &[]).unwrap());
    assert_eq!(first.len(), 2);
    for task in &first {
        assert!(task.id.starts_with("task_"), "{}", task.id);
        assert_eq!(task.id.len(), "task_".len() + 8, "{}", task.id);
    }
    assert_ne!(first[0].id, first[1].id);
    assert_eq!(first, again, "the same tasks get the same ids");
    // Missing `format` means text, as in warren's examples.
    assert!(first.iter().any(|t| t.format == EnrichFormat::Text));
}

fn output_error(policy: &str) -> String {
    let set = set(&[("e.rego", policy)], &[("a.md", "x")]).unwrap();
    match set.enrich(&alert()) {
        Err(PolicyError::Output { query, message }) => {
            assert_eq!(query, "data.enrich.prompts");
            message
        }
        other => panic!("expected an output error, got {other:?}"),
    }
}

#[test]
fn a_task_with_neither_or_both_prompts_is_an_output_error() {
    let neither =
        output_error("package enrich\nprompts contains {\"id\": \"x\", \"format\": \"text\"}");
    assert!(neither.contains("exactly one of `inline`"), "{neither}");
    assert!(neither.contains("neither"), "{neither}");
    let both = output_error(
        "package enrich\nprompts contains {\"id\": \"x\", \"inline\": \"a\", \"template\": \"a.md\"}",
    );
    assert!(both.contains("both"), "{both}");
}

#[test]
fn bad_fields_name_the_task_and_the_field() {
    let format =
        output_error("package enrich\nprompts contains {\"inline\": \"a\", \"format\": \"yaml\"}");
    assert!(format.starts_with("prompts[0]: `format`"), "{format}");
    let params =
        output_error("package enrich\nprompts contains {\"template\": \"a.md\", \"params\": [1]}");
    assert!(params.contains("`params` must be an object"), "{params}");
    let inline_params = output_error(
        "package enrich\nprompts contains {\"inline\": \"a\", \"params\": {\"x\": 1}}",
    );
    assert!(
        inline_params.contains("only applies to a `template`"),
        "{inline_params}"
    );
    let not_set = output_error("package enrich\nprompts := \"summarise\"");
    assert!(not_set.contains("must be a set of objects"), "{not_set}");
    let duplicate = output_error(
        "package enrich\nprompts contains {\"id\": \"x\", \"inline\": \"a\"}\nprompts contains {\"id\": \"x\", \"inline\": \"b\"}",
    );
    assert!(duplicate.contains("used by two tasks"), "{duplicate}");
}

#[test]
fn an_evaluation_error_is_not_an_empty_task_list() {
    let policy = r#"package enrich
f(_) := 1
f(_) := 2
prompts contains {"inline": sprintf("%v", [f(0)])}
"#;
    let set = set(&[("e.rego", policy)], &[]).unwrap();
    let err = set.enrich(&alert()).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Evaluation { query, .. } if query == "data.enrich.prompts"),
        "{err:?}"
    );
}

#[test]
fn a_template_named_literally_must_exist_at_load_time() {
    let policy = "package enrich\nprompts contains {\"template\": \"missing.md\"}";
    let err = set(&[("policies/enrich.rego", policy)], &[("other.md", "x")]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("policies/enrich.rego"), "{message}");
    assert!(message.contains("\"missing.md\""), "{message}");
    assert!(message.contains("other.md"), "{message}");
}

#[test]
fn a_template_named_at_evaluation_time_fails_only_its_task() {
    let policy = r#"package enrich
prompts contains {"id": "dyn", "template": concat("", [input.schema, ".md"])}
"#;
    let set = set(&[("e.rego", policy)], &[]).unwrap();
    let got = tasks(&set);
    assert_eq!(got.len(), 1);
    let err = set.render_prompt(&got[0], &alert()).unwrap_err();
    assert!(err.to_string().contains("\"guardduty.md\""), "{err}");
}

#[test]
fn a_template_in_go_syntax_is_a_load_error_with_its_line() {
    let err = set(
        &[("t.rego", "package triage\npublish := \"alert\"")],
        &[("t.md", "Alert:\n{{ .Alert.Metadata.Title }}")],
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("t.md: line 2"), "{message}");
}

#[test]
fn templates_load_from_the_prompts_folder_of_each_policy_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("enrich.rego"),
        "package enrich\nprompts contains {\"id\": \"t\", \"template\": \"ask.md\", \"params\": {\"n\": 3}}",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("prompts")).unwrap();
    std::fs::write(
        dir.path().join("prompts/ask.md"),
        "{{ alert.metadata.title }} / {{ n }} / {{ alert.data.detail.region }}",
    )
    .unwrap();
    // Not a template: wrong extension.
    std::fs::write(dir.path().join("prompts/notes.json"), "{{ broken").unwrap();
    let set = PolicySet::load(&[dir.path().to_path_buf()], &LoadOptions::default()).unwrap();
    let got = tasks(&set);
    assert_eq!(
        set.render_prompt(&got[0], &alert()).unwrap(),
        "Backdoor in ap-northeast-1 / 3 / ap-northeast-1"
    );
}

#[test]
fn the_same_template_name_with_two_texts_in_two_roots_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, text) in [(&a, "one"), (&b, "two")] {
        std::fs::write(
            dir.path().join("p.rego"),
            "package triage\npublish := \"alert\"",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("prompts")).unwrap();
        std::fs::write(dir.path().join("prompts/x.md"), text).unwrap();
    }
    let err = PolicySet::load(
        &[a.path().to_path_buf(), b.path().to_path_buf()],
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"x.md\""), "{err}");
}
