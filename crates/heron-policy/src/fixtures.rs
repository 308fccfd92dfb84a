//! warren-style fixture folders: `<base>/<schema>/**/*.json|jsonl`, where every object under a
//! *detect* base must make at least one alert with that schema's ingest policy and every object
//! under an *ignore* base must make none.
//!
//! A `.json` file may hold several objects one after another; a `.jsonl` file holds one per
//! line. Each object is one test result, named `<schema>/<relative path>#<n>` (n from 1), so a
//! failure points at the exact object. A file that cannot be read or parsed is an error, never
//! skipped, and a base with no fixtures at all is an error too — an empty folder tests nothing.

use crate::PolicySet;
use crate::testing::{Outcome, TestReport, TestResult};
use heron_core::SchemaName;
use heron_core::policy::PolicyEngine;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What fixtures under a base must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// At least one alert per object.
    Detect,
    /// No alert for any object.
    Ignore,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Self::Detect => "detect",
            Self::Ignore => "ignore",
        }
    }
}

/// Runs every fixture under `base`, appending one result per object to `report`.
pub fn run(set: &PolicySet, base: &Path, expect: Expect, report: &mut TestReport) {
    let label = expect.label();
    let push = |report: &mut TestReport, file: String, name: String, output: String| {
        report.results.push(TestResult {
            file,
            package: label.to_owned(),
            name,
            row: 0,
            outcome: Outcome::Error,
            duration: std::time::Duration::ZERO,
            output: vec![output],
            cases: Vec::new(),
        });
    };
    let schemas = match sorted_entries(base) {
        Ok(entries) => entries,
        Err(e) => {
            let shown = base.display().to_string();
            push(report, shown.clone(), shown, e);
            return;
        }
    };
    let mut files_seen = 0usize;
    for schema_dir in schemas.into_iter().filter(|p| p.is_dir()) {
        let dir_name = schema_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let schema = match SchemaName::parse(&dir_name) {
            Ok(schema) => schema,
            Err(e) => {
                let shown = schema_dir.display().to_string();
                push(report, shown.clone(), shown, e.to_string());
                continue;
            }
        };
        let mut files = Vec::new();
        if let Err(e) = collect_files(&schema_dir, &mut files) {
            let shown = schema_dir.display().to_string();
            push(report, shown.clone(), shown, e);
            continue;
        }
        files_seen += files.len();
        for file in files {
            let shown = file.display().to_string();
            let relative = file
                .strip_prefix(&schema_dir)
                .unwrap_or(&file)
                .display()
                .to_string();
            let values = match read_objects(&file) {
                Ok(values) => values,
                Err(e) => {
                    push(report, shown, format!("{schema}/{relative}"), e);
                    continue;
                }
            };
            for (index, value) in values.into_iter().enumerate() {
                let name = format!("{schema}/{relative}#{}", index + 1);
                let started = Instant::now();
                let (outcome, output) = check(set, &schema, &value, expect);
                let duration = started.elapsed();
                report.results.push(TestResult {
                    file: shown.clone(),
                    package: label.to_owned(),
                    name,
                    row: 0,
                    outcome,
                    duration,
                    output,
                    cases: Vec::new(),
                });
            }
        }
    }
    if files_seen == 0 {
        let shown = base.display().to_string();
        let message = format!("no fixtures: expected {shown}/<schema>/**/*.json or *.jsonl");
        push(report, shown.clone(), shown, message);
    }
}

fn check(
    set: &PolicySet,
    schema: &SchemaName,
    value: &serde_json::Value,
    expect: Expect,
) -> (Outcome, Vec<String>) {
    if !value.is_object() {
        return (
            Outcome::Error,
            vec!["a fixture must be a JSON object".into()],
        );
    }
    let output = match set.ingest(schema, value) {
        Ok(output) => output,
        Err(e) => return (Outcome::Error, vec![e.to_string()]),
    };
    if !output.package_found {
        return (
            Outcome::Error,
            vec![format!("no ingest policy for schema `{schema}`")],
        );
    }
    let count = output.alerts.len();
    match expect {
        Expect::Detect if count == 0 => (
            Outcome::Fail,
            vec!["expected at least one alert, got none".into()],
        ),
        Expect::Ignore if count > 0 => {
            let titles: Vec<&str> = output
                .alerts
                .iter()
                .map(|a| a.title.as_deref().unwrap_or("(untitled)"))
                .collect();
            (
                Outcome::Fail,
                vec![format!(
                    "expected no alert, got {count}: {}",
                    titles.join("; ")
                )],
            )
        }
        _ => (Outcome::Pass, Vec::new()),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| format!("{}: {e}", dir.display()))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("json" | "jsonl")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Every JSON value in the file: a stream of values for `.json`, one per non-blank line for
/// `.jsonl`. Errors carry the position (line for `.jsonl`, line:column for `.json`).
fn read_objects(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut values = Vec::new();
    if path.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str(line)
                .map_err(|e| format!("line {}: invalid JSON: {e}", number + 1))?;
            values.push(value);
        }
    } else {
        for value in serde_json::Deserializer::from_str(&text).into_iter() {
            values.push(value.map_err(|e| format!("invalid JSON: {e}"))?);
        }
    }
    if values.is_empty() {
        return Err("the file holds no JSON value".into());
    }
    Ok(values)
}
