#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fuzzing (proptest, ignored by default; docs/development.md#fuzzing): the conversion of
//! JSON into Rego input. Whatever JSON an event or a request carries reaches a policy
//! unchanged (a policy that echoes its input gives it back; floats to within 4 units in the
//! last place, see `same`), evaluating the ingest and `auth.http` entry points over it
//! answers or errs, never panics, and the two ways an event becomes ingest input (the
//! worker's, from a parsed `serde_json::Value`; replay's, from the stored text into the VM)
//! make the same alerts.

use heron_core::SchemaName;
use heron_core::policy::PolicyEngine;
use heron_core::testing::fuzz::fuzz;
use heron_policy::{LoadOptions, PolicySet};
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON: every scalar kind (floats, huge and negative integers, any Unicode), keys
/// of any text, nested.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z_.\\[\\]\"\\\\ ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

const POLICY: &str = r#"package echo

out := input

package_count := count(input) if is_object(input)
"#;

const INGEST: &str = r#"package ingest.fuzz

alert contains {"title": sprintf("%v", [input.title]), "attrs": [{"key": k, "value": sprintf("%v", [v])} | some k, v in input]} if {
	is_object(input)
}
"#;

/// Alerts built from every field of the input, for comparing the two ingest paths.
const FIELDS: &str = r#"package ingest.fields

alerts contains {"title": sprintf("%v", [k]), "attrs": [{"key": "value", "value": sprintf("%v", [v])}], "tags": [type_name(v)]} if {
	some k, v in input
}
"#;

const AUTH: &str = r#"package auth.http

default allow := false

allow if {
	input.req.method == "POST"
	input.token.scopes[_] == "ingest"
	json.is_valid(input.req.body)
}
"#;

/// Equal as JSON, with integers compared exactly and floats to within a few units in the
/// last place (see below).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() => {
            // Known: regorus keeps floats as decimals and may give back a neighbouring
            // double (3.4270434047019645e79 comes back as 3.427043404701964e79): equal to
            // within a few units in the last place (subnormals included), never more.
            match (x.as_f64(), y.as_f64()) {
                (Some(a), Some(b)) => {
                    a == b
                        || (a.is_sign_negative() == b.is_sign_negative()
                            && a.to_bits().abs_diff(b.to_bits()) <= 4)
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
#[ignore = "fuzzing: run with --ignored (docs/development.md#fuzzing)"]
fn fuzz_json_reaches_rego_unchanged_and_never_panics_an_entry_point() {
    let set = PolicySet::from_sources(
        vec![
            ("echo.rego".into(), POLICY.into()),
            ("ingest.rego".into(), INGEST.into()),
            ("fields.rego".into(), FIELDS.into()),
            ("auth.rego".into(), AUTH.into()),
        ],
        &LoadOptions::default(),
    )
    .unwrap();
    let schema = SchemaName::parse("fuzz").unwrap();
    let fields = SchemaName::parse("fields").unwrap();
    fuzz("json → rego input", json(), |value| {
        let mut engine = set.engine();
        engine.set_input(regorus::Value::from(value.clone()));
        let out = engine
            .eval_rule("data.echo.out".into())
            .map_err(|e| TestCaseError::fail(format!("echo failed: {e}")))?;
        let back = serde_json::to_value(&out)
            .map_err(|e| TestCaseError::fail(format!("cannot convert back: {e}")))?;
        prop_assert!(same(&value, &back), "changed on the way:\n{value}\n{back}");
        // Entry points answer or err; a panic fails the run.
        let _ = set.ingest(&schema, &value);
        if value.is_object() {
            // Both read the same stored text, as they do in production.
            let text = value.to_string();
            let parsed: Value = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("cannot parse back: {e}")))?;
            let worker = set.ingest(&fields, &parsed);
            let replay = set.ingest_unchecked(&fields, &text);
            prop_assert_eq!(worker, replay, "the two ingest inputs differ for {}", text);
        }
        let input = serde_json::json!({
            "req": {"method": "POST", "path": "/hooks/alert/raw/fuzz", "header": {}, "body": value.to_string()},
            "token": {"name": "t", "scopes": ["ingest"], "claims": value},
            "env": {},
        });
        prop_assert_eq!(set.authorize_http(&input), Ok(Some(true)));
        Ok(())
    });
}
