//! An `opa test`-style runner for `test_*` rules, with line coverage.
//!
//! A test passes when its rule evaluates to exactly `true`; it fails when it is undefined or
//! any other value, and errors when evaluation fails. Rules named `todo_test_*` are skipped,
//! as in OPA. Each test runs on its own clone of the prepared engine, so tests cannot leak
//! state into each other; coverage is the union of the lines every test evaluated.

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
    /// Present when coverage was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

/// Which lines of each policy file the tests evaluated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    pub files: Vec<FileCoverage>,
    /// Covered lines over coverable lines, all files together, 0–100 (100 with none coverable).
    pub percent: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FileCoverage {
    pub path: String,
    pub covered: Vec<u32>,
    pub not_covered: Vec<u32>,
    pub percent: f64,
}

fn percent(covered: usize, not_covered: usize) -> f64 {
    let total = covered + not_covered;
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

impl Coverage {
    fn merge(per_test: Vec<regorus::coverage::Report>) -> Self {
        use std::collections::{BTreeMap, BTreeSet};
        let mut by_path: BTreeMap<String, (BTreeSet<u32>, BTreeSet<u32>)> = BTreeMap::new();
        for report in per_test {
            for file in report.files {
                let entry = by_path.entry(file.path).or_default();
                entry.0.extend(file.covered);
                entry.1.extend(file.not_covered);
            }
        }
        let (mut covered_total, mut not_covered_total) = (0, 0);
        let files = by_path
            .into_iter()
            .map(|(path, (covered, not_covered))| {
                // A line one test skipped but another evaluated is covered.
                let not_covered: Vec<u32> = not_covered.difference(&covered).copied().collect();
                let covered: Vec<u32> = covered.into_iter().collect();
                covered_total += covered.len();
                not_covered_total += not_covered.len();
                FileCoverage {
                    percent: percent(covered.len(), not_covered.len()),
                    path,
                    covered,
                    not_covered,
                }
            })
            .collect();
        Self {
            files,
            percent: percent(covered_total, not_covered_total),
        }
    }
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
    run_with(set, filter, false)
}

/// [`run`], gathering line coverage when `coverage` is set.
pub fn run_with(set: &PolicySet, filter: impl Fn(&str) -> bool, coverage: bool) -> TestReport {
    let base = set.engine();
    let mut report = TestReport::default();
    let mut per_test = Vec::new();
    for rule in discover(set) {
        let qualified = format!("{}.{}", rule.package, rule.name);
        if !filter(&qualified) {
            continue;
        }
        let mut engine = base.clone();
        engine.set_gather_prints(true);
        engine.set_enable_coverage(coverage);
        let started = Instant::now();
        let result = engine.eval_rule(format!("data.{qualified}"));
        let duration = started.elapsed();
        let mut output = engine.take_prints().unwrap_or_default();
        if coverage {
            match engine.get_coverage_report() {
                Ok(r) => per_test.push(r),
                Err(e) => output.push(format!("coverage unavailable: {e}")),
            }
        }
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
    if coverage {
        report.coverage = Some(Coverage::merge(per_test));
    }
    report
}
