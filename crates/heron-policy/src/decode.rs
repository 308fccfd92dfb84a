//! Turning policy output (regorus values) into domain types, with messages that tell a policy
//! author exactly which field is wrong.

use heron_core::policy::{EnrichFormat, EnrichPrompt, EnrichTask, Publish, TriageDecision};
use heron_core::{AlertDraft, Attribute, SchemaName, Severity};
use regorus::Value;
use serde_json::Value as Json;

fn to_json(value: &Value) -> Result<Json, String> {
    if *value == Value::Undefined {
        return Ok(Json::Null);
    }
    serde_json::to_value(value).map_err(|e| format!("cannot convert the result to JSON: {e}"))
}

/// `alerts` (a set, or an array) of alert objects. Undefined means no alerts.
pub(crate) fn decode_ingest(output: &Value) -> Result<Vec<AlertDraft>, String> {
    let json = to_json(output)?;
    let items = match json {
        Json::Null => return Ok(Vec::new()),
        Json::Array(items) => items,
        other => {
            return Err(format!(
                "`alerts` must be a set of objects, got {}",
                kind(&other)
            ));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| decode_alert(item).map_err(|e| format!("alerts[{i}]: {e}")))
        .collect()
}

fn decode_alert(item: Json) -> Result<AlertDraft, String> {
    let Json::Object(mut map) = item else {
        return Err(format!("expected an object, got {}", kind(&item)));
    };
    // warren's code reads `attributes`; its docs say `attrs`: accept both.
    let mut attributes = decode_attributes(map.remove("attributes"), "attributes")?;
    attributes.extend(decode_attributes(map.remove("attrs"), "attrs")?);
    Ok(AlertDraft {
        title: optional_string(map.remove("title"), "title")?,
        description: optional_string(map.remove("description"), "description")?,
        attributes,
        tags: decode_tags(map.remove("tags"))?,
        channel: optional_string(map.remove("channel"), "channel")?,
        severity: optional_severity(map.remove("severity"))?,
        fingerprint: map.remove("fingerprint").filter(|v| !v.is_null()),
    })
}

pub(crate) fn decode_triage(output: &Value) -> Result<TriageDecision, String> {
    let Json::Object(mut map) = to_json(output)? else {
        return Err("the triage decision is not an object".into());
    };
    let publish = match map.remove("publish") {
        None | Some(Json::Null) => Publish::Alert,
        Some(Json::String(s)) => match s.as_str() {
            "alert" => Publish::Alert,
            "notice" => Publish::Notice,
            "discard" => Publish::Discard,
            other => {
                return Err(format!(
                    "`publish` must be \"alert\", \"notice\" or \"discard\", got {other:?}"
                ));
            }
        },
        Some(other) => return Err(format!("`publish` must be a string, got {}", kind(&other))),
    };
    Ok(TriageDecision {
        publish,
        title: optional_string(map.remove("title"), "title")?,
        description: optional_string(map.remove("description"), "description")?,
        channel: optional_string(map.remove("channel"), "channel")?,
        severity: optional_severity(map.remove("severity"))?,
        assignee: optional_string(map.remove("assignee"), "assignee")?,
        attr: decode_attributes(map.remove("attr"), "attr")?,
    })
}

/// `prompts` (a set, or an array) of task objects. Undefined means no tasks.
pub(crate) fn decode_enrich(output: &Value) -> Result<Vec<EnrichTask>, String> {
    let items = match to_json(output)? {
        Json::Null => return Ok(Vec::new()),
        Json::Array(items) => items,
        other => {
            return Err(format!(
                "`prompts` must be a set of objects, got {}",
                kind(&other)
            ));
        }
    };
    let mut tasks: Vec<EnrichTask> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let task = decode_task(item).map_err(|e| format!("prompts[{i}]: {e}"))?;
        if tasks.iter().any(|t| t.id == task.id) {
            return Err(format!(
                "prompts[{i}]: the id {:?} is used by two tasks; `data.triage` finds results by id",
                task.id
            ));
        }
        tasks.push(task);
    }
    Ok(tasks)
}

fn decode_task(item: Json) -> Result<EnrichTask, String> {
    let Json::Object(mut map) = item else {
        return Err(format!("expected an object, got {}", kind(&item)));
    };
    // Derived before anything is taken out, so the id covers the whole task.
    let auto_id = || format!("task_{:08x}", content_hash(&Json::Object(map.clone())));
    let id = match optional_string(map.get("id").cloned(), "id")? {
        Some(id) if !id.trim().is_empty() => id,
        _ => auto_id(),
    };
    let inline = optional_string(map.remove("inline"), "inline")?;
    let template = optional_string(map.remove("template"), "template")?;
    let params = match map.remove("params") {
        None | Some(Json::Null) => serde_json::Map::new(),
        Some(Json::Object(params)) => params,
        Some(other) => return Err(format!("`params` must be an object, got {}", kind(&other))),
    };
    let prompt = match (inline, template) {
        (Some(text), None) => {
            if !params.is_empty() {
                return Err("`params` only applies to a `template` task".into());
            }
            EnrichPrompt::Inline(text)
        }
        (None, Some(name)) => EnrichPrompt::Template { name, params },
        (None, None) => {
            return Err(
                "a task needs exactly one of `inline` (the prompt) or `template` \
                        (a file under prompts/); it has neither"
                    .into(),
            );
        }
        (Some(_), Some(_)) => {
            return Err("a task needs exactly one of `inline` or `template`; it has both".into());
        }
    };
    let format = match optional_string(map.remove("format"), "format")?.as_deref() {
        None | Some("text") => EnrichFormat::Text,
        Some("json") => EnrichFormat::Json,
        Some(other) => {
            return Err(format!(
                "`format` must be \"text\" or \"json\", got {other:?}"
            ));
        }
    };
    Ok(EnrichTask { id, prompt, format })
}

/// FNV-1a over the task's JSON (keys sorted): the same task always gets the same auto id.
fn content_hash(value: &Json) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 32) as u32 ^ hash as u32
}

/// warren's default when a schema has no ingest package: one alert carrying the raw event.
pub(crate) fn default_alert(schema: &SchemaName, event: &Json) -> AlertDraft {
    let title = ["title", "name", "rule", "message", "summary"]
        .iter()
        .find_map(|k| event.get(k).and_then(Json::as_str))
        .map(|t| t.chars().take(255).collect::<String>())
        .unwrap_or_else(|| format!("Alert from {schema}"));
    AlertDraft {
        title: Some(title),
        ..AlertDraft::default()
    }
}

fn optional_string(value: Option<Json>, field: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{field}` must be a string, got {}", kind(&other))),
    }
}

fn optional_severity(value: Option<Json>) -> Result<Option<Severity>, String> {
    match optional_string(value, "severity")? {
        None => Ok(None),
        Some(s) => s.to_ascii_lowercase().parse().map(Some).map_err(|_| {
            format!("`severity` must be one of info, low, medium, high, critical; got {s:?}")
        }),
    }
}

fn decode_tags(value: Option<Json>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .into_iter()
            .map(|t| match t {
                Json::String(s) => Ok(s),
                other => Err(format!("`tags` must hold strings, got {}", kind(&other))),
            })
            .collect(),
        Some(other) => Err(format!(
            "`tags` must be an array of strings, got {}",
            kind(&other)
        )),
    }
}

fn decode_attributes(value: Option<Json>, field: &str) -> Result<Vec<Attribute>, String> {
    let items = match value {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "`{field}` must be an array of {{key, value, link}}, got {}",
                kind(&other)
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Json::Object(mut map) = item else {
            return Err(format!(
                "`{field}[{i}]` must be an object with key and value"
            ));
        };
        let key = match map.remove("key") {
            Some(Json::String(k)) if !k.is_empty() => k,
            _ => return Err(format!("`{field}[{i}].key` must be a non-empty string")),
        };
        let value = match map.remove("value") {
            Some(Json::String(s)) => s,
            // Skip absent values rather than fail: policies often map optional fields.
            None | Some(Json::Null) => continue,
            Some(v @ (Json::Number(_) | Json::Bool(_))) => v.to_string(),
            Some(other) => {
                return Err(format!(
                    "`{field}[{i}].value` must be a scalar, got {}",
                    kind(&other)
                ));
            }
        };
        let link = optional_string(map.remove("link"), "link")?.filter(|l| !l.is_empty());
        out.push(Attribute { key, value, link });
    }
    Ok(out)
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}
