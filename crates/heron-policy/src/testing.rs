//! An `opa test`-style runner for `test_*` rules, with line coverage.
//!
//! Tests are found in the parsed modules (not by scanning text): every rule whose name
//! starts with `test_`, in any package, at the line its first definition starts. As in OPA:
//! - a test passes when its rule evaluates to exactly `true`; it fails when it is undefined or
//!   any other value, and errors when evaluation fails (a runtime error such as a conflict or
//!   a type error in a builtin);
//! - rules named `todo_test_*` are reported as skipped, never evaluated;
//! - a *parameterised* test names its cases with variables in its head
//!   (`test_concat[note] if { some note, tc in cases; … }`, nested as `test_x[a][b]`, or in
//!   v0 `test_x[note] { … }`): each case passes when the rule holds for it, and the test
//!   passes when every case does. The cases that exist are found by evaluating the body up to
//!   the statement that binds the last case variable (a generated helper rule), so a case
//!   whose assertion fails is still named.
//!
//! Each test runs on its own clone of the prepared engine, so tests cannot leak state into
//! each other; coverage is the union of the lines every test evaluated.

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
    /// A `todo_test_*` rule: reported, never evaluated.
    Skipped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Error => "ERROR",
            Self::Skipped => "SKIPPED",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub file: String,
    pub package: String,
    pub name: String,
    /// The line of the rule's first definition (1-based; 0 for fixture results).
    pub row: u32,
    pub outcome: Outcome,
    #[serde(serialize_with = "as_micros")]
    pub duration: Duration,
    /// `print()` output and, for errors, the error.
    pub output: Vec<String>,
    /// The cases of a parameterised test, in the order their names sort.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cases: Vec<CaseResult>,
}

/// One case of a parameterised test: its name (one element per case variable) and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    pub name: Vec<String>,
    pub outcome: Outcome,
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

    /// No test failed or errored (skipped tests do not count against a run).
    pub fn passed(&self) -> bool {
        self.results
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Pass | Outcome::Skipped))
    }
}

/// A test rule found in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRule {
    pub file: String,
    /// Without the `data.` prefix: `ingest.demo_test`.
    pub package: String,
    pub name: String,
    /// Line of the first definition.
    pub row: u32,
    /// The case variables of a parameterised test, outermost first (empty for a plain test).
    pub params: Vec<String>,
    /// A `todo_test_*` rule.
    pub skip: bool,
    /// For a parameterised test: the source of a helper rule enumerating its cases.
    case_module: Option<String>,
}

impl TestRule {
    /// `data.<package>.<name>`, what `--run` matches.
    pub fn qualified(&self) -> String {
        format!("data.{}.{}", self.package, self.name)
    }
}

/// The name of the helper rule that enumerates a parameterised test's cases.
fn cases_rule(name: &str) -> String {
    format!("heron_cases__{name}")
}

/// Finds `test_*` and `todo_test_*` rules in every loaded module, in file order.
pub fn discover(set: &PolicySet) -> Vec<TestRule> {
    use regorus::unstable::{Expr, Literal, Rule, RuleHead};
    let mut engine = set.engine();
    let mut rules: Vec<TestRule> = Vec::new();
    for module in engine.get_modules().iter() {
        let package = module.package.refr.span().text().to_owned();
        let file = module.package.span.source.file().clone();
        let imports: Vec<String> = module
            .imports
            .iter()
            .map(|i| i.span.text().to_owned())
            .collect();
        for rule in &module.policy {
            let Rule::Spec { span, head, bodies } = rule.as_ref() else {
                continue;
            };
            let (root, params) = match head {
                RuleHead::Compr { refr, .. } => match head_parts(refr) {
                    Some(parts) => parts,
                    None => continue,
                },
                RuleHead::Set { refr, key, .. } => {
                    let Some((root, mut params)) = head_parts(refr) else {
                        continue;
                    };
                    if let Some(key) = key {
                        match key.as_ref() {
                            Expr::Var { span, .. } => params.push(span.text().to_owned()),
                            _ => continue,
                        }
                    }
                    (root, params)
                }
                RuleHead::Func { .. } => continue,
            };
            let skip = root.starts_with("todo_test_");
            if !skip && !root.starts_with("test_") {
                continue;
            }
            if rules.iter().any(|r| r.package == package && r.name == root) {
                // Incremental definitions share one name (and one result).
                continue;
            }
            let case_module = (!params.is_empty() && !skip).then(|| {
                let mut helper_bodies = Vec::new();
                for body in bodies {
                    let mut mentioned = vec![false; params.len()];
                    let mut stmts = Vec::new();
                    for stmt in &body.query.stmts {
                        let text = stmt.span.text();
                        stmts.push(text.to_owned());
                        for (seen, param) in mentioned.iter_mut().zip(&params) {
                            *seen |= mentions(text, param)
                                || matches!(&stmt.literal, Literal::SomeVars { vars, .. }
                                    if vars.iter().any(|v| v.text() == param));
                        }
                        if mentioned.iter().all(|m| *m) {
                            break;
                        }
                    }
                    helper_bodies.push(stmts.join("\n  "));
                }
                let head: String = params.iter().map(|p| format!("[{p}]")).collect();
                let mut source = format!("package {package}\n\nimport rego.v1\n");
                for import in &imports {
                    if import != "import rego.v1" {
                        source.push_str(import);
                        source.push('\n');
                    }
                }
                for body in helper_bodies {
                    source.push_str(&format!(
                        "\n{}{head} := true if {{\n  {body}\n}}\n",
                        cases_rule(&root)
                    ));
                }
                source
            });
            rules.push(TestRule {
                file: file.clone(),
                package: package.clone(),
                name: root,
                row: span.line,
                params,
                skip,
                case_module,
            });
        }
    }
    rules
}

/// A rule head reference as its root name and the variables in brackets after it
/// (`test_x[a][b]` → `test_x`, `[a, b]`); `None` for anything else (dotted or constant refs).
fn head_parts(refr: &regorus::unstable::Expr) -> Option<(String, Vec<String>)> {
    use regorus::unstable::Expr;
    match refr {
        Expr::Var { span, .. } => Some((span.text().to_owned(), Vec::new())),
        Expr::RefBrack { refr, index, .. } => {
            let (root, mut params) = head_parts(refr)?;
            match index.as_ref() {
                Expr::Var { span, .. } => params.push(span.text().to_owned()),
                _ => return None,
            }
            Some((root, params))
        }
        _ => None,
    }
}

/// Whether `text` uses the variable `var` (as a whole word).
fn mentions(text: &str, var: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(var).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + var.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Runs every discovered test whose `data.package.name` matches `filter`.
pub fn run(set: &PolicySet, filter: impl Fn(&str) -> bool) -> TestReport {
    run_with(set, filter, false)
}

/// [`run`], gathering line coverage when `coverage` is set.
pub fn run_with(set: &PolicySet, filter: impl Fn(&str) -> bool, coverage: bool) -> TestReport {
    let base = set.engine();
    let mut report = TestReport::default();
    let mut per_test = Vec::new();
    for rule in discover(set) {
        let qualified = rule.qualified();
        if !filter(&qualified) {
            continue;
        }
        if rule.skip {
            report.results.push(TestResult {
                file: rule.file,
                package: rule.package,
                name: rule.name,
                row: rule.row,
                outcome: Outcome::Skipped,
                duration: Duration::ZERO,
                output: Vec::new(),
                cases: Vec::new(),
            });
            continue;
        }
        let mut engine = base.clone();
        engine.set_gather_prints(true);
        engine.set_enable_coverage(coverage);
        let started = Instant::now();
        let result = evaluate(&mut engine, &qualified);
        let duration = started.elapsed();
        let mut output = engine.take_prints().unwrap_or_default();
        if coverage {
            match engine.get_coverage_report() {
                Ok(r) => per_test.push(r),
                Err(e) => output.push(format!("coverage unavailable: {e}")),
            }
        }
        let mut cases = Vec::new();
        let outcome = match result {
            Err(e) => {
                output.push(e);
                Outcome::Error
            }
            Ok(value) if rule.params.is_empty() => {
                if value == Value::Bool(true) {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                }
            }
            Ok(value) => {
                match evaluate_cases(&base, &rule, &value) {
                    Ok(found) => cases = found,
                    Err(e) => output.push(e),
                }
                let all_pass =
                    !cases.is_empty() && cases.iter().all(|c| c.outcome == Outcome::Pass);
                if all_pass {
                    Outcome::Pass
                } else {
                    if cases.is_empty() {
                        output.push("the test has no cases".into());
                    }
                    Outcome::Fail
                }
            }
        };
        report.results.push(TestResult {
            file: rule.file,
            package: rule.package,
            name: rule.name,
            row: rule.row,
            outcome,
            duration,
            output,
            cases,
        });
    }
    if coverage {
        report.coverage = Some(Coverage::merge(per_test));
    }
    report
}

/// The value of the rule at `path` (`Undefined` when it is not defined). A query rather than
/// `eval_rule`, which refuses paths to rules whose head has several brackets.
fn evaluate(engine: &mut regorus::Engine, path: &str) -> Result<Value, String> {
    let results = engine
        .eval_query(path.to_owned(), false)
        .map_err(|e| e.to_string())?;
    Ok(results
        .result
        .into_iter()
        .next()
        .and_then(|r| r.expressions.into_iter().next())
        .map_or(Value::Undefined, |e| e.value))
}

/// The cases of a parameterised test: those its rule holds for (from `value`) and those its
/// body enumerates (from the helper rule); a case in the second set only has failed.
fn evaluate_cases(
    base: &regorus::Engine,
    rule: &TestRule,
    value: &Value,
) -> Result<Vec<CaseResult>, String> {
    let depth = rule.params.len();
    let mut passed = Vec::new();
    leaves(value, depth, &mut Vec::new(), &mut |path, leaf| {
        if *leaf == Value::Bool(true) {
            passed.push(path.to_vec());
        }
    });
    let mut all = passed.clone();
    let mut note = Ok(());
    if let Some(source) = &rule.case_module {
        let mut engine = base.clone();
        let path = format!("heron_cases__{}__{}.rego", rule.package, rule.name);
        let enumerated = engine
            .add_policy(path, source.clone())
            .map_err(|e| e.to_string())
            .and_then(|_| {
                evaluate(
                    &mut engine,
                    &format!("data.{}.{}", rule.package, cases_rule(&rule.name)),
                )
            });
        match enumerated {
            Ok(domain) => leaves(&domain, depth, &mut Vec::new(), &mut |path, _| {
                all.push(path.to_vec());
            }),
            Err(e) => {
                note = Err(format!(
                    "the cases that did not pass could not be listed: {e}"
                ))
            }
        }
    }
    all.sort();
    all.dedup();
    let cases: Vec<CaseResult> = all
        .into_iter()
        .map(|name| CaseResult {
            outcome: if passed.contains(&name) {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            name,
        })
        .collect();
    match note {
        Ok(()) => Ok(cases),
        Err(e) if cases.is_empty() => Err(e),
        Err(_) => Ok(cases),
    }
}

/// Calls `visit` with every path of `depth` keys into nested objects (or a set at the last
/// level, as a v0 partial-set test makes) and the value found there.
fn leaves(
    value: &Value,
    depth: usize,
    path: &mut Vec<String>,
    visit: &mut dyn FnMut(&[String], &Value),
) {
    if depth == 0 {
        visit(path, value);
        return;
    }
    let key_text = |k: &Value| match k {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    };
    match value {
        Value::Object(fields) => {
            for (key, inner) in fields.iter() {
                path.push(key_text(key));
                leaves(inner, depth - 1, path, visit);
                path.pop();
            }
        }
        Value::Set(items) if depth == 1 => {
            for item in items.iter() {
                path.push(key_text(item));
                visit(path, &Value::Bool(true));
                path.pop();
            }
        }
        _ => {}
    }
}
