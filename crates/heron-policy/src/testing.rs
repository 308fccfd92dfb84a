//! An `opa test`-style runner for `test_*` rules.
//!
//! A test passes when its rule evaluates to exactly `true`; it fails when it is undefined or
//! any other value, and errors when evaluation fails. Rules named `todo_test_*` are skipped,
//! as in OPA.

use crate::PolicySet;
use regorus::Value;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Fail,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub file: String,
    pub package: String,
    pub name: String,
    pub outcome: Outcome,
    #[serde(serialize_with = "as_micros")]
    pub duration: Duration,
    /// `print()` output and, for errors, the error.
    pub output: Vec<String>,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_micros())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.outcome == Outcome::Pass)
    }
}

/// A test rule found in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRule {
    pub file: String,
    pub package: String,
    pub name: String,
}

/// Finds `test_*` rules: top-level rule heads in each module, by package.
pub fn discover(set: &PolicySet) -> Vec<TestRule> {
    let mut rules = Vec::new();
    for (file, text) in set.sources() {
        let mut package = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("package ") {
                package = Some(rest.trim().to_owned());
                continue;
            }
            let Some(pkg) = &package else { continue };
            if !line.starts_with("test_") {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let rule = TestRule {
                file: file.clone(),
                package: pkg.clone(),
                name,
            };
            // Incremental definitions share one name.
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    rules
}

/// Runs every discovered test whose `package.name` matches `filter`.
pub fn run(set: &PolicySet, filter: impl Fn(&str) -> bool) -> TestReport {
    let base = set.engine();
    let mut report = TestReport::default();
    for rule in discover(set) {
        let qualified = format!("{}.{}", rule.package, rule.name);
        if !filter(&qualified) {
            continue;
        }
        let mut engine = base.clone();
        engine.set_gather_prints(true);
        let started = Instant::now();
        let result = engine.eval_rule(format!("data.{qualified}"));
        let duration = started.elapsed();
        let mut output = engine.take_prints().unwrap_or_default();
        let outcome = match result {
            Ok(Value::Bool(true)) => Outcome::Pass,
            Ok(_) => Outcome::Fail,
            Err(e) => {
                output.push(e.to_string());
                Outcome::Error
            }
        };
        report.results.push(TestResult {
            file: rule.file,
            package: rule.package,
            name: rule.name,
            outcome,
            duration,
            output,
        });
    }
    report
}
