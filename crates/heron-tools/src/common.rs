//! What every tool shares: argument parsing against a typed struct, the strict JSON schema
//! shape, the HTTP client, reading answers with a size cap, and cache access.

use heron_core::agent::ToolError;
use heron_core::tool::ToolCache;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use crate::ToolsSetupError;

/// Largest answer read from a threat-intelligence API; what reaches the model is clipped far
/// below this, the cap only bounds memory.
pub(crate) const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Decodes a tool's arguments into its typed form. The structs deny unknown fields, so this
/// is the schema check: a missing, extra or mistyped field is refused with serde's message,
/// which names the field, before anything is sent anywhere.
pub(crate) fn parse_args<T: DeserializeOwned>(arguments: Value) -> Result<T, ToolError> {
    if !arguments.is_object() {
        return Err(ToolError::InvalidArguments(format!(
            "the arguments must be a JSON object, not {arguments}"
        )));
    }
    serde_json::from_value(arguments).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// A strict object schema: every property required, nothing else allowed (the shape OpenAI's
/// strict function calling accepts).
pub(crate) fn object_schema(properties: Value) -> Value {
    let required: Vec<Value> = properties
        .as_object()
        .map(|p| p.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// An HTTP client on the process's rustls provider (ring, ADR 0002) with a deadline per
/// request. Redirects are not followed: an API key must never be replayed to another host.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, ToolsSetupError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("heron/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ToolsSetupError::HttpClient)
}

/// A base URL as configured, checked, without a trailing slash.
pub(crate) fn base_url(name: &str, value: &str) -> Result<String, ToolsSetupError> {
    let trimmed = value.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|e| ToolsSetupError::Invalid(format!("{name}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ToolsSetupError::Invalid(format!(
            "{name} must be an http(s) URL"
        )));
    }
    Ok(trimmed.to_owned())
}

/// An answer read in full (up to [`MAX_RESPONSE_BYTES`]).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends `request`, mapping transport failures to what the model should be told.
pub(crate) async fn send(
    service: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, ToolError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport(service, &e, timeout))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport(service, &e, timeout))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ToolError::Failed(format!(
                "{service} answered more than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

fn transport(service: &str, error: &reqwest::Error, timeout: Duration) -> ToolError {
    if error.is_timeout() {
        ToolError::Timeout(timeout)
    } else {
        ToolError::Failed(format!("{service} could not be reached: {error}"))
    }
}

/// The failure for a status that is not a usable answer, worded for the model.
pub(crate) fn status_error(service: &str, answer: &Answer) -> ToolError {
    let detail = answer
        .json()
        .and_then(|v| {
            ["message", "detail", "description"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_owned))
        })
        .unwrap_or_default();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {}", detail.chars().take(300).collect::<String>())
    };
    ToolError::Failed(match answer.status {
        401 | 403 => format!(
            "{service} refused the credentials (HTTP {}){detail}; this tool is misconfigured, \
             continue without it",
            answer.status
        ),
        429 => format!(
            "{service} rate limit reached (HTTP 429){detail}; continue without it or try later"
        ),
        500..=599 => format!("{service} is unavailable (HTTP {}){detail}", answer.status),
        other => format!("{service} answered HTTP {other}{detail}"),
    })
}

/// A tool's optional answer cache with its TTL. Cache failures are logged and treated as
/// misses: the cache only ever saves requests, it never fails a lookup.
#[derive(Clone)]
pub(crate) struct Cache {
    pub cache: Option<Arc<dyn ToolCache>>,
    pub ttl: Duration,
}

impl Cache {
    pub(crate) async fn get(&self, key: &str) -> Option<String> {
        let cache = self.cache.as_ref()?;
        match cache.get(key, chrono::Utc::now()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(key, error = %e, "tool cache read failed; looking up instead");
                None
            }
        }
    }

    pub(crate) async fn put(&self, key: &str, value: &str) {
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::zero());
        if let Err(e) = cache.put(key, value, chrono::Utc::now() + ttl).await {
            tracing::warn!(key, error = %e, "tool cache write failed");
        }
    }
}

/// Human-readable bytes in powers of 1000, as BigQuery bills them: `12.3 GB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a size such as `10GB`, `500 MiB` or `1073741824`: decimal units (KB, MB, GB, TB, PB)
/// are powers of 1000, binary ones (KiB…PiB) powers of 1024, a bare number is bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 10GB"))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        "pib" => 1024f64.powi(5),
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_byte_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_byte_size("50 gb"), Ok(50_000_000_000));
        assert_eq!(parse_byte_size("1.5 TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_byte_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_byte_size("123"), Ok(123));
        assert!(parse_byte_size("ten GB").is_err());
        assert!(parse_byte_size("5 parsecs").is_err());
    }

    #[test]
    fn bytes_format_in_powers_of_a_thousand() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(10_000_000_000), "10.0 GB");
        assert_eq!(format_bytes(23_456_000_000), "23.5 GB");
    }

    #[test]
    fn arguments_must_be_an_object() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Args {
            target: String,
        }
        assert!(parse_args::<Args>(json!("1.2.3.4")).is_err());
        assert!(parse_args::<Args>(json!({"target": "x", "extra": 1})).is_err());
        assert!(parse_args::<Args>(json!({"target": "x"})).is_ok());
    }
}
