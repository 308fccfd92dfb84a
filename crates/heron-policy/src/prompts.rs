//! Prompt templates for `data.enrich` tasks: loading them with the policies, checking the
//! names policies refer to, and rendering them.
//!
//! Layout: every `*.md`, `*.txt` or `*.tmpl` file directly under `<policy root>/prompts/` is a
//! template named by its file name (`threat_analysis.md`), for each folder given as a policy
//! root. (warren reads them from a separate `--prompt-dir`; keeping them next to the policies
//! means one folder, one git repository and one review for both.)
//!
//! Syntax: `{{ path }}` is replaced by the value at `path`, a dotted path of names and array
//! indexes (`{{ alert.data.findings.0.id }}`), spaces inside the braces optional. Paths start
//! at `alert` (the alert as the enrich policy sees it; `alert.metadata.<field>` is accepted
//! for `alert.<field>`, as warren's templates write `.Alert.Metadata.Title`) or at `params`
//! (the task's params); any other first name is looked up in the params, as warren puts them
//! at the template's root. A string is inserted as is, a missing value or `null` as nothing,
//! anything else as compact JSON. There is no escaping, no condition and no loop: a template
//! needing logic belongs in the policy, which can compute params.
//!
//! Invariants:
//! - a template that loads renders: every `{{ … }}` was parsed at load time, so rendering
//!   cannot fail and a Go-template habit (`{{ .Alert.Title }}`) is a load error with its line;
//! - a template name a `package enrich` module spells out as a string literal
//!   (`"template": "x.md"`) must exist at load time; a name computed at evaluation time is
//!   only checked when the task runs, and an unknown one fails that task alone.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File extensions loaded as templates (warren's set).
const EXTENSIONS: [&str; 3] = ["md", "txt", "tmpl"];

/// The folder under a policy root that holds templates.
pub const PROMPT_DIR: &str = "prompts";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Path(Vec<String>),
}

/// `(name, text)` of every template under `<root>/prompts/` for each folder root. A name
/// found in two roots with different texts is an error: which one wins would depend on the
/// order of the roots.
pub(crate) fn template_files(
    roots: &[PathBuf],
) -> Result<Vec<(String, String, PathBuf)>, crate::PolicyLoadError> {
    let mut found: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for root in roots {
        let dir = root.join(PROMPT_DIR);
        if !dir.is_dir() {
            continue;
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| crate::PolicyLoadError::Io { path, source }
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            entries.push(entry.map_err(io(&dir))?.path());
        }
        entries.sort();
        for path in entries {
            let wanted = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e));
            let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            let (Some(name), true) = (name, wanted && path.is_file()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            if let Some((other, other_path)) = found.get(&name)
                && *other != text
            {
                return Err(crate::PolicyLoadError::Compile {
                    path,
                    message: format!(
                        "prompt template {name:?} is also defined, differently, in {}",
                        other_path.display()
                    ),
                });
            }
            found.insert(name, (text, path));
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, (text, path))| (name, text, path))
        .collect())
}

/// Parses a template; the error names the line of the first bad placeholder.
pub(crate) fn parse(text: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let line = text[..consumed + open].matches('\n').count() + 1;
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!("line {line}: `{{{{` is never closed by `}}}}`"));
        };
        let inner = after[..close].trim();
        let path = parse_path(inner).ok_or_else(|| {
            format!(
                "line {line}: `{{{{ {inner} }}}}` is not a dotted path such as \
                 `alert.title` or `params.threshold` (no Go-template syntax)"
            )
        })?;
        parts.push(Part::Path(path));
        let used = open + 2 + close + 2;
        consumed += used;
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(Template { parts })
}

fn parse_path(inner: &str) -> Option<Vec<String>> {
    let segments: Vec<String> = inner.split('.').map(str::to_owned).collect();
    let valid = |s: &String| {
        let mut chars = s.chars();
        match chars.next() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }
            Some(c) if c.is_ascii_digit() => chars.all(|c| c.is_ascii_digit()),
            _ => false,
        }
    };
    let first_is_name = segments
        .first()
        .and_then(|s| s.chars().next())
        .is_some_and(|c| !c.is_ascii_digit());
    (first_is_name && segments.iter().all(valid)).then_some(segments)
}

impl Template {
    pub(crate) fn render(&self, alert: &Value, params: &serde_json::Map<String, Value>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Path(path) => {
                    let value = match path.split_first() {
                        Some((root, rest)) if root == "alert" => lookup_alert(alert, rest),
                        Some((root, rest)) if root == "params" => {
                            rest.split_first().and_then(|(name, rest)| {
                                params.get(name).and_then(|v| lookup(v, rest))
                            })
                        }
                        Some((name, rest)) => params.get(name).and_then(|v| lookup(v, rest)),
                        None => None,
                    };
                    match value {
                        None | Some(Value::Null) => {}
                        Some(Value::String(s)) => out.push_str(s),
                        Some(other) => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        out
    }
}

fn lookup_alert<'a>(alert: &'a Value, path: &[String]) -> Option<&'a Value> {
    match path.split_first() {
        // warren's `.Alert.Metadata.Title`: the alert's metadata fields are its own fields.
        Some((first, rest)) if first == "metadata" && alert.get("metadata").is_none() => {
            lookup(alert, rest)
        }
        _ => lookup(alert, path),
    }
}

fn lookup<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Template names spelled out as `"template": "<name>"` in the `package enrich` modules of
/// `sources`, with the module's path.
pub(crate) fn static_references(sources: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, text) in sources {
        if package_of(text).as_deref() != Some("enrich") {
            continue;
        }
        let code = strip_comments(text);
        let mut rest = code.as_str();
        while let Some(at) = rest.find("\"template\"") {
            rest = &rest[at + "\"template\"".len()..];
            let Some(after_colon) = rest.trim_start().strip_prefix(':') else {
                continue;
            };
            let Some(literal) = after_colon.trim_start().strip_prefix('"') else {
                continue;
            };
            if let Some(end) = literal.find('"') {
                out.push((literal[..end].to_owned(), path.clone()));
            }
        }
    }
    out
}

/// `text` without its `#` comments (a `#` inside a string is kept).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for c in line.chars() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' && q == '"' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c == '#' => break,
                None if c == '"' || c == '`' => quote = Some(c),
                None => {}
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

/// The package a module declares (`package a.b` → `a.b`), ignoring comments.
fn package_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.strip_prefix("package "))
        .map(|p| p.trim().to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn render(text: &str, alert: Value, params: Value) -> String {
        let Value::Object(params) = params else {
            panic!("params must be an object")
        };
        parse(text).unwrap().render(&alert, &params)
    }

    #[test]
    fn paths_are_replaced_by_alert_and_param_values() {
        let out = render(
            "Title: {{ alert.title }}; sev {{alert.severity}}; ip {{ alert.data.ips.1 }}; \
             at least {{ params.threshold }} / {{ threshold }}",
            json!({"title": "Port scan", "severity": "high", "data": {"ips": ["a", "b"]}}),
            json!({"threshold": "high"}),
        );
        assert_eq!(
            out,
            "Title: Port scan; sev high; ip b; at least high / high"
        );
    }

    #[test]
    fn warren_style_metadata_paths_read_the_alert_fields() {
        let out = render(
            "{{ alert.metadata.title }}",
            json!({"title": "T"}),
            json!({}),
        );
        assert_eq!(out, "T");
    }

    #[test]
    fn missing_values_render_as_nothing_and_structures_as_json() {
        let out = render(
            "[{{ alert.nope.deeper }}][{{ alert.data }}][{{ params.n }}]",
            json!({"data": {"a": [1, true]}}),
            json!({"n": 3}),
        );
        assert_eq!(out, r#"[][{"a":[1,true]}][3]"#);
    }

    #[test]
    fn go_template_syntax_is_refused_with_its_line() {
        let err = parse("first\nsecond {{ .Alert.Title }}").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse("{{ alert.title").unwrap_err();
        assert!(err.contains("never closed"), "{err}");
        assert!(parse("{{ 0.x }}").is_err());
        assert!(parse("{{ }}").is_err());
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        assert_eq!(
            render("plain } { text", json!({}), json!({})),
            "plain } { text"
        );
    }

    #[test]
    fn template_names_are_found_only_in_the_enrich_package() {
        let sources = vec![
            (
                "enrich.rego".to_owned(),
                "# c \"template\": \"no.md\"\npackage enrich\n# \"template\": \"comment.md\"\n\
                 prompts contains {\"template\" : \"a.md\", \"inline\": \"#\"} if true\n\
                 prompts contains {\"template\": name} if { name := \"b.md\" }"
                    .to_owned(),
            ),
            (
                "other.rego".to_owned(),
                "package triage\nx := {\"template\": \"c.md\"}".to_owned(),
            ),
        ];
        assert_eq!(
            static_references(&sources),
            vec![("a.md".to_owned(), "enrich.rego".to_owned())]
        );
    }
}
