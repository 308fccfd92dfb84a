//! A compiled policy folder and the pipeline's queries against it.

use crate::decode::{decode_enrich, decode_ingest, decode_triage, default_alert};
use crate::load::{LoadOptions, PolicyLoadError, RegoVersion, rego_files};
use crate::prompts::{self, Template};
use heron_core::SchemaName;
use heron_core::policy::{
    EnrichPrompt, EnrichTask, IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision,
    TriageInput,
};
use regorus::{CompiledPolicy, Engine, Value};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;

/// Packages under `ingest.` with this suffix hold tests, not a schema.
const TEST_PACKAGE_SUFFIX: &str = "_test";
const INTERNAL_PATH: &str = "heron_internal.rego";
const TRIAGE_DECISION: &str = "data.heron_internal.triage_decision";
const ENRICH_PROMPTS: &str = "data.enrich.prompts";
const AUTH_AGENT_ALLOW: &str = "data.auth.agent.allow";
const AUTH_HTTP_ALLOW: &str = "data.auth.http.allow";

/// Gathers every output field of `data.triage` into one object, so a decision is one
/// evaluation; Rego v1 (`import rego.v1`), which a v0 engine accepts too.
///
/// `suppress` (a Heron extension: a partial set, so any number of files can add to it
/// without conflicting) discards the alert whatever `publish` says: tuning drafts use it.
const TRIAGE_WRAPPER: &str = r#"package heron_internal

import rego.v1

default triage_suppressed := false
triage_suppressed if count(data.triage.suppress) > 0

default triage_publish := "alert"
triage_publish := "discard" if triage_suppressed
triage_publish := data.triage.publish if not triage_suppressed

default triage_title := null
triage_title := data.triage.title

default triage_description := null
triage_description := data.triage.description

default triage_channel := null
triage_channel := data.triage.channel

default triage_severity := null
triage_severity := data.triage.severity

default triage_assignee := null
triage_assignee := data.triage.assignee

default triage_attr := []
triage_attr := data.triage.attr

triage_decision := {
	"publish": triage_publish,
	"title": triage_title,
	"description": triage_description,
	"channel": triage_channel,
	"severity": triage_severity,
	"assignee": triage_assignee,
	"attr": triage_attr,
}
"#;

pub struct PolicySet {
    /// Every module, prepared; cloned for test runs and ad-hoc queries.
    engine: Engine,
    ingest: BTreeMap<String, CompiledPolicy>,
    /// The ingest rules compiled for regorus's VM, for
    /// [`PolicyEngine::ingest_unchecked`]; a schema the VM compiler refuses is left out
    /// (and evaluated by the interpreter).
    ingest_vm: BTreeMap<String, std::sync::Arc<regorus::rvm::program::Program>>,
    triage: Option<CompiledPolicy>,
    /// `data.enrich.prompts`, when the package defines it.
    enrich: Option<CompiledPolicy>,
    /// `data.auth.agent.allow`: `None` without the package; `Some(None)` when the package
    /// has no `allow` rule (which denies everyone).
    auth_agent: Option<Option<CompiledPolicy>>,
    /// `data.auth.http.allow`, as `auth_agent`.
    auth_http: Option<Option<CompiledPolicy>>,
    /// Prompt templates by file name (see [`crate::prompts`]).
    templates: BTreeMap<String, Template>,
    info: PolicyInfo,
    files: Vec<PathBuf>,
    /// `(path, text)` of every module, for the test runner.
    sources: Vec<(String, String)>,
    version: RegoVersion,
    ingest_digest: Option<u64>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("info", &self.info)
            .finish()
    }
}

impl PolicySet {
    /// Loads and compiles every `.rego` file under `roots`, and the prompt templates under
    /// each root's `prompts/` folder.
    pub fn load(roots: &[PathBuf], options: &LoadOptions) -> Result<Self, PolicyLoadError> {
        let files = rego_files(roots)?;
        if files.is_empty() {
            let shown = roots.first().cloned().unwrap_or_default();
            return Err(PolicyLoadError::Empty(shown));
        }
        let mut sources = Vec::with_capacity(files.len());
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| PolicyLoadError::Io {
                path: file.clone(),
                source,
            })?;
            sources.push((file.to_string_lossy().into_owned(), text));
        }
        let templates = prompts::template_files(roots)?
            .into_iter()
            .map(|(name, text, path)| (name, text, Some(path)))
            .collect();
        let mut set = Self::build(sources, templates, options)?;
        set.files = files;
        Ok(set)
    }

    /// [`load`](Self::load) with `extra` `(path, source)` modules added (a change being
    /// tried out); an extra path that names a loaded file replaces it.
    pub fn load_with_extra(
        roots: &[PathBuf],
        extra: &[(String, String)],
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        let files = rego_files(roots)?;
        let mut sources = Vec::with_capacity(files.len() + extra.len());
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| PolicyLoadError::Io {
                path: file.clone(),
                source,
            })?;
            let path = file.to_string_lossy().into_owned();
            if !extra.iter().any(|(p, _)| *p == path) {
                sources.push((path, text));
            }
        }
        sources.extend(extra.iter().cloned());
        let templates = prompts::template_files(roots)?
            .into_iter()
            .map(|(name, text, path)| (name, text, Some(path)))
            .collect();
        let mut set = Self::build(sources, templates, options)?;
        set.files = files;
        Ok(set)
    }

    /// Compiles policies given as `(path, source)` pairs, without prompt templates.
    pub fn from_sources(
        sources: Vec<(String, String)>,
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        Self::build(sources, Vec::new(), options)
    }

    /// Compiles policies given as `(path, source)` pairs, with prompt templates given as
    /// `(name, text)` pairs.
    pub fn from_sources_with_templates(
        sources: Vec<(String, String)>,
        templates: Vec<(String, String)>,
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        let templates = templates
            .into_iter()
            .map(|(name, text)| (name, text, None))
            .collect();
        Self::build(sources, templates, options)
    }

    fn build(
        sources: Vec<(String, String)>,
        template_sources: Vec<(String, String, Option<PathBuf>)>,
        options: &LoadOptions,
    ) -> Result<Self, PolicyLoadError> {
        let mut templates = BTreeMap::new();
        for (name, text, path) in template_sources {
            let path = path.unwrap_or_else(|| PathBuf::from(prompts::PROMPT_DIR).join(&name));
            let template = prompts::parse(&text).map_err(|e| PolicyLoadError::Compile {
                message: format!("{}: {e}", path.display()),
                path,
            })?;
            templates.insert(name, template);
        }
        for (name, module) in prompts::static_references(&sources) {
            if !templates.contains_key(&name) {
                return Err(PolicyLoadError::Compile {
                    path: PathBuf::from(&module),
                    message: format!(
                        "{module}: the enrich task template {name:?} is not a file under {}/ \
                         (loaded: {})",
                        prompts::PROMPT_DIR,
                        if templates.is_empty() {
                            "none".to_owned()
                        } else {
                            templates.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ),
                });
            }
        }
        regorus::utils::limits::set_fallback_execution_timer_config(Some(
            regorus::utils::limits::ExecutionTimerConfig {
                limit: options.eval_timeout,
                check_interval: NonZeroU32::MIN.saturating_add(255),
            },
        ));
        let mut engine = Engine::new();
        engine.set_rego_v0(options.version == RegoVersion::V0);
        let file_count = sources.len();
        for (path, text) in &sources {
            engine.add_policy(path.clone(), text.clone()).map_err(|e| {
                PolicyLoadError::Compile {
                    path: PathBuf::from(path),
                    message: compile_message(path, &e.to_string()),
                }
            })?;
        }
        let compile_error = |path: &str, e: &dyn std::fmt::Display| PolicyLoadError::Compile {
            path: PathBuf::from(path),
            message: e.to_string(),
        };
        let packages = engine
            .get_packages()
            .map_err(|e| compile_error("<policies>", &e))?;

        let has_triage = packages.iter().any(|p| p == "data.triage");
        let mut ingest = BTreeMap::new();
        let mut ingest_vm = BTreeMap::new();
        for package in &packages {
            let Some(schema) = ingest_schema_of(package) else {
                continue;
            };
            let entrypoint: regorus::Rc<str> = format!("{}.alerts", ingest_path(&schema)).into();
            // A package under `ingest.` without an `alerts` rule (a helper library) is not a
            // schema: posting to that name gets the default alert.
            if let Ok(compiled) = engine.clone().compile_with_entrypoint(&entrypoint) {
                if let Ok(program) =
                    regorus::languages::rego::compiler::Compiler::compile_from_policy(
                        &compiled,
                        &[&entrypoint],
                    )
                {
                    ingest_vm.insert(schema.clone(), program);
                }
                ingest.insert(schema, compiled);
            }
        }
        let triage = if has_triage {
            let mut with_wrapper = engine.clone();
            with_wrapper
                .add_policy(INTERNAL_PATH.into(), TRIAGE_WRAPPER.into())
                .map_err(|e| compile_error(INTERNAL_PATH, &e))?;
            let entry: regorus::Rc<str> = TRIAGE_DECISION.into();
            Some(
                with_wrapper
                    .compile_with_entrypoint(&entry)
                    .map_err(|e| compile_error("data.triage", &e))?,
            )
        } else {
            None
        };
        let enrich = if packages.iter().any(|p| p == "data.enrich") {
            let entry: regorus::Rc<str> = ENRICH_PROMPTS.into();
            // A `package enrich` without a `prompts` rule asks for nothing, as in warren.
            engine.clone().compile_with_entrypoint(&entry).ok()
        } else {
            None
        };
        let ingest_digest = ingest_digest(&engine, options.version);
        let auth_agent = packages.iter().any(|p| p == "data.auth.agent").then(|| {
            let entry: regorus::Rc<str> = AUTH_AGENT_ALLOW.into();
            engine.clone().compile_with_entrypoint(&entry).ok()
        });
        let auth_http = packages.iter().any(|p| p == "data.auth.http").then(|| {
            let entry: regorus::Rc<str> = AUTH_HTTP_ALLOW.into();
            engine.clone().compile_with_entrypoint(&entry).ok()
        });
        let info = PolicyInfo {
            packages: packages.clone(),
            ingest_schemas: ingest.keys().cloned().collect(),
            has_triage,
            files: file_count,
        };
        Ok(Self {
            engine,
            ingest,
            ingest_vm,
            triage,
            enrich,
            auth_agent,
            auth_http,
            templates,
            info,
            files: Vec::new(),
            sources,
            version: options.version,
            ingest_digest,
        })
    }

    /// A copy of the prepared engine holding every loaded module (tests included).
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }

    pub fn rego_version(&self) -> RegoVersion {
        self.version
    }

    /// The schemas whose ingest rule runs on regorus's VM in
    /// [`PolicyEngine::ingest_unchecked`] (the others fall back to the interpreter).
    pub fn vm_ingest_schemas(&self) -> Vec<&str> {
        self.ingest_vm.keys().map(String::as_str).collect()
    }
}

impl PolicyEngine for PolicySet {
    fn ingest(
        &self,
        schema: &SchemaName,
        event: &serde_json::Value,
    ) -> Result<IngestOutput, PolicyError> {
        let Some(compiled) = self.ingest.get(schema.as_str()) else {
            return Ok(IngestOutput {
                alerts: vec![default_alert(schema, event)],
                package_found: false,
            });
        };
        let query = || format!("data.ingest.{schema}.alerts");
        let output =
            compiled
                .eval_with_input(rego_value(event))
                .map_err(|e| PolicyError::Evaluation {
                    query: query(),
                    message: e.to_string(),
                })?;
        let alerts = decode_ingest(&output).map_err(|message| PolicyError::Output {
            query: query(),
            message,
        })?;
        Ok(IngestOutput {
            alerts,
            package_found: true,
        })
    }

    /// regorus's bytecode VM: several times faster than the interpreter, but in regorus
    /// 0.14 a rule conflict makes the rule undefined instead of an error.
    fn ingest_unchecked(
        &self,
        schema: &SchemaName,
        event_json: &str,
    ) -> Result<IngestOutput, PolicyError> {
        let Some(program) = self.ingest_vm.get(schema.as_str()) else {
            return self.ingest(schema, &heron_core::policy::event_object(event_json)?);
        };
        // Parsed straight into the evaluator's values (serde_json's parser and the same
        // visitor as the conversion from a `serde_json::Value`, so the same values), without
        // the intermediate tree.
        let input =
            Value::from_json_str(event_json).map_err(|e| PolicyError::Input(e.to_string()))?;
        if input.as_object().is_err() {
            return Err(PolicyError::Input("not an object".into()));
        }
        let query = || format!("data.ingest.{schema}.alerts");
        let output = with_vm(program, |vm| {
            vm.set_input(input);
            vm.execute()
        })
        .map_err(|e| PolicyError::Evaluation {
            query: query(),
            message: e.to_string(),
        })?;
        let alerts = decode_ingest(&output).map_err(|message| PolicyError::Output {
            query: query(),
            message,
        })?;
        Ok(IngestOutput {
            alerts,
            package_found: true,
        })
    }

    fn triage(&self, input: &TriageInput) -> Result<TriageDecision, PolicyError> {
        let Some(compiled) = &self.triage else {
            return Ok(TriageDecision::default());
        };
        let query = || "data.triage".to_owned();
        let input = serde_json::to_value(input).map_err(|e| PolicyError::Output {
            query: query(),
            message: e.to_string(),
        })?;
        let output =
            compiled
                .eval_with_input(Value::from(input))
                .map_err(|e| PolicyError::Evaluation {
                    query: query(),
                    message: e.to_string(),
                })?;
        decode_triage(&output).map_err(|message| PolicyError::Output {
            query: query(),
            message,
        })
    }

    fn info(&self) -> PolicyInfo {
        self.info.clone()
    }

    fn ingest_digest(&self) -> Option<u64> {
        self.ingest_digest
    }

    fn has_enrich(&self) -> bool {
        self.enrich.is_some()
    }

    fn authorize_agent(&self, input: &serde_json::Value) -> Result<Option<bool>, PolicyError> {
        allows(self.auth_agent.as_ref(), AUTH_AGENT_ALLOW, input)
    }

    fn has_auth_http(&self) -> bool {
        self.auth_http.is_some()
    }

    fn authorize_http(&self, input: &serde_json::Value) -> Result<Option<bool>, PolicyError> {
        allows(self.auth_http.as_ref(), AUTH_HTTP_ALLOW, input)
    }

    fn enrich(&self, alert: &serde_json::Value) -> Result<Vec<EnrichTask>, PolicyError> {
        let Some(compiled) = &self.enrich else {
            return Ok(Vec::new());
        };
        let output =
            compiled
                .eval_with_input(rego_value(alert))
                .map_err(|e| PolicyError::Evaluation {
                    query: ENRICH_PROMPTS.into(),
                    message: e.to_string(),
                })?;
        decode_enrich(&output).map_err(|message| PolicyError::Output {
            query: ENRICH_PROMPTS.into(),
            message,
        })
    }

    fn render_prompt(
        &self,
        task: &EnrichTask,
        alert: &serde_json::Value,
    ) -> Result<String, PolicyError> {
        match &task.prompt {
            EnrichPrompt::Inline(text) => Ok(text.clone()),
            EnrichPrompt::Template { name, params } => match self.templates.get(name) {
                Some(template) => Ok(template.render(alert, params)),
                None => Err(PolicyError::Output {
                    query: ENRICH_PROMPTS.into(),
                    message: format!(
                        "task {}: no prompt template named {name:?} under {}/",
                        task.id,
                        prompts::PROMPT_DIR
                    ),
                }),
            },
        }
    }
}

/// A digest of the modules ingest can depend on: the text of every module except those of
/// `triage`, `enrich` and test packages (`*_test`), sorted, with the syntax version. `None` when
/// a kept module refers to an excluded package (then ingest may depend on any module, and
/// the set cannot say what its ingest depends on).
/// VMs kept per thread, one per program, so an evaluation reuses a loaded VM instead of
/// building one (each keeps its program alive, so a program's address identifies it).
const VMS_PER_THREAD: usize = 32;

thread_local! {
    static VMS: std::cell::RefCell<Vec<(usize, regorus::rvm::vm::RegoVM)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's VM for `program`, loading one the first time; the least
/// recently used of more than [`VMS_PER_THREAD`] is dropped (after policy reloads), and so
/// is a VM whose run failed (its state is not trusted for the next input).
/// An `auth.*` package's answer: `None` without the package, `false` when its `allow` rule
/// could not be compiled (the package is there, so nothing is allowed), else `allow == true`.
fn allows(
    package: Option<&Option<CompiledPolicy>>,
    query: &str,
    input: &serde_json::Value,
) -> Result<Option<bool>, PolicyError> {
    let Some(compiled) = package else {
        return Ok(None);
    };
    let Some(compiled) = compiled else {
        return Ok(Some(false));
    };
    let output =
        compiled
            .eval_with_input(rego_value(input))
            .map_err(|e| PolicyError::Evaluation {
                query: query.into(),
                message: e.to_string(),
            })?;
    Ok(Some(output == Value::from(true)))
}

/// The Rego value of `json`, read in place: regorus's `From<serde_json::Value>` runs the same
/// `Deserialize` but needs an owned copy, a deep clone per evaluation.
fn rego_value(json: &serde_json::Value) -> Value {
    use serde::Deserialize as _;
    Value::deserialize(json).unwrap_or(Value::Undefined)
}

fn with_vm<T, E>(
    program: &std::sync::Arc<regorus::rvm::program::Program>,
    f: impl FnOnce(&mut regorus::rvm::vm::RegoVM) -> Result<T, E>,
) -> Result<T, E> {
    let key = std::sync::Arc::as_ptr(program) as usize;
    VMS.with(|cell| {
        let mut vms = cell.borrow_mut();
        let mut vm = match vms.iter().position(|(k, _)| *k == key) {
            Some(i) => vms.remove(i).1,
            None => {
                let mut vm = regorus::rvm::vm::RegoVM::new();
                vm.load_program(program.clone());
                vm
            }
        };
        let out = f(&mut vm)?;
        vms.push((key, vm));
        if vms.len() > VMS_PER_THREAD {
            vms.remove(0);
        }
        Ok(out)
    })
}

fn ingest_digest(engine: &Engine, version: RegoVersion) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut engine = engine.clone();
    let excluded = |package: &str| {
        package == "triage"
            || package.starts_with("triage.")
            || package == "enrich"
            || package.starts_with("enrich.")
            || package.ends_with("_test")
    };
    let mut kept = Vec::new();
    let mut excluded_packages = Vec::new();
    for module in engine.get_modules().iter() {
        let package = module.package.refr.span().text().to_owned();
        let source = &module.package.span.source;
        if excluded(&package) {
            excluded_packages.push(package);
        } else {
            // The text only: the same modules loaded from another folder are the same.
            kept.push(source.contents().clone());
        }
    }
    for text in &kept {
        for package in &excluded_packages {
            let root = package.split('.').next().unwrap_or(package);
            if text.contains(&format!("data.{root}")) {
                return None;
            }
        }
    }
    kept.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (version == RegoVersion::V0).hash(&mut hasher);
    kept.hash(&mut hasher);
    Some(hasher.finish())
}

/// Puts regorus's `--> file:line:col` location first, compiler-style
/// (`file:line:col: message`), followed by its source excerpt.
fn compile_message(path: &str, raw: &str) -> String {
    let location = raw
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "))
        .map(str::trim)
        .unwrap_or(path);
    let summary = raw
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("error: "))
        .unwrap_or("compile error");
    format!("{location}: {summary}\n{}", raw.trim_matches('\n'))
}

/// `data.ingest.aws.guardduty` → `aws.guardduty`; `data.ingest["okta-prod"]` → `okta-prod`.
fn ingest_schema_of(package: &str) -> Option<String> {
    let rest = package.strip_prefix("data.ingest")?;
    let mut segments = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut seg = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    seg.push(n);
                    chars.next();
                }
                segments.push(seg);
            }
            '[' => {
                let seg: String = chars
                    .by_ref()
                    .take_while(|&n| n != ']')
                    .filter(|&n| n != '"')
                    .collect();
                segments.push(seg);
            }
            _ => return None,
        }
    }
    let schema = segments.join(".");
    let valid = SchemaName::parse(&schema).is_ok() && !schema.ends_with(TEST_PACKAGE_SUFFIX);
    valid.then_some(schema)
}

/// The rule path of a schema's ingest package, bracketing segments that are not identifiers.
fn ingest_path(schema: &str) -> String {
    let mut path = String::from("data.ingest");
    for segment in schema.split('.') {
        let identifier = segment
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if identifier {
            path.push('.');
            path.push_str(segment);
        } else {
            path.push_str(&format!("[\"{segment}\"]"));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(source: &str) -> PolicySet {
        PolicySet::from_sources(
            vec![("auth.rego".into(), source.into())],
            &LoadOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn auth_agent_allows_only_whom_its_policy_names_and_is_absent_without_the_package() {
        let policy = set(
            "package auth.agent\n\nallow if {\n  input.user.email == \"alice@example.com\"\n  input.channel == \"CSEC\"\n}\n",
        );
        let input = |email: &str, channel: &str| {
            serde_json::json!({"message": "hi", "user": {"id": "U1", "email": email},
                "channel": channel, "ticket": null})
        };
        assert_eq!(
            policy.authorize_agent(&input("alice@example.com", "CSEC")),
            Ok(Some(true))
        );
        assert_eq!(
            policy.authorize_agent(&input("mallory@example.com", "CSEC")),
            Ok(Some(false))
        );
        assert_eq!(
            policy.authorize_agent(&input("alice@example.com", "CRANDOM")),
            Ok(Some(false))
        );
        let none = set("package triage\n\npublish := \"alert\"\n");
        assert_eq!(none.authorize_agent(&input("a", "b")), Ok(None));
    }

    #[test]
    fn auth_http_sees_warrens_request_shape_and_an_evaluation_error_is_an_error() {
        let policy = set(
            "package auth.http\n\ndefault allow := false\n\nallow if {\n  input.req.method == \"POST\"\n  input.req.path == \"/hooks/alert/raw/okta\"\n  input.req.header[\"x-sender\"][0] == \"siem\"\n  json.unmarshal(input.req.body).ok\n  \"ingest\" in input.token.scopes\n  input.env.HERON_ENV == \"prod\"\n}\n\nallow := true if input.req.path == \"/boom\"\n\nallow := false if input.req.path == \"/boom\"\n",
        );
        assert!(policy.has_auth_http());
        let input = |path: &str, body: &str, scopes: &[&str]| {
            serde_json::json!({
                "req": {"method": "POST", "path": path, "header": {"x-sender": ["siem"]}, "body": body},
                "token": {"name": "siem", "scopes": scopes, "claims": {}},
                "env": {"HERON_ENV": "prod"},
            })
        };
        assert_eq!(
            policy.authorize_http(&input(
                "/hooks/alert/raw/okta",
                "{\"ok\": true}",
                &["ingest"]
            )),
            Ok(Some(true))
        );
        assert_eq!(
            policy.authorize_http(&input(
                "/hooks/alert/raw/okta",
                "{\"ok\": false}",
                &["ingest"]
            )),
            Ok(Some(false)),
            "the body decides"
        );
        assert_eq!(
            policy.authorize_http(&input("/hooks/alert/raw/okta", "{\"ok\": true}", &["read"])),
            Ok(Some(false)),
            "the token's scopes decide"
        );
        assert!(
            policy.authorize_http(&input("/boom", "", &[])).is_err(),
            "conflicting values are an evaluation error, not a decision"
        );
        let none = set("package triage\n\npublish := \"alert\"\n");
        assert!(!none.has_auth_http());
        assert_eq!(none.authorize_http(&input("/", "", &[])), Ok(None));
    }

    #[test]
    fn package_names_map_to_schemas() {
        assert_eq!(
            ingest_schema_of("data.ingest.guardduty").as_deref(),
            Some("guardduty")
        );
        assert_eq!(
            ingest_schema_of("data.ingest.aws.guardduty").as_deref(),
            Some("aws.guardduty")
        );
        assert_eq!(
            ingest_schema_of("data.ingest[\"okta-prod\"]").as_deref(),
            Some("okta-prod")
        );
        assert_eq!(ingest_schema_of("data.ingest.guardduty_test"), None);
        assert_eq!(ingest_schema_of("data.triage"), None);
        assert_eq!(ingest_schema_of("data.ingestion.x"), None);
    }

    #[test]
    fn schemas_map_back_to_rule_paths() {
        assert_eq!(ingest_path("guardduty"), "data.ingest.guardduty");
        assert_eq!(ingest_path("okta-prod"), "data.ingest[\"okta-prod\"]");
        assert_eq!(ingest_path("aws.guardduty"), "data.ingest.aws.guardduty");
        assert_eq!(ingest_path("0day"), "data.ingest[\"0day\"]");
    }
}
