//! AlienVault OTX lookups (API v1 `indicators/{type}/{indicator}/general`): `otx_ipv4`,
//! `otx_ipv6`, `otx_domain`, `otx_hostname`, `otx_file_hash`, `otx_url`, each taking `target`.
//!
//! The answer is a summary: pulse count, up to ten pulses with their tags, malware families and
//! adversary, reputation, country, ASN, and OTX's own validation notes (allow-listed
//! indicators) — the parts that bear on a verdict. An indicator OTX does not know (404) is an
//! answer ("no data"), not an error.

use crate::ToolSetupError;
use async_trait::async_trait;
use heron_core::agent::{Tool, ToolError, ToolOutput};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

const MAX_PULSES: usize = 10;
const MAX_TAGS: usize = 10;

#[derive(Clone, PartialEq, Eq)]
pub struct OtxSettings {
    /// `https://otx.alienvault.com` in production.
    pub base_url: String,
    pub api_key: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for OtxSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtxSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The kinds of indicator OTX looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndicatorKind {
    Ipv4,
    Ipv6,
    Domain,
    Hostname,
    FileHash,
    Url,
}

impl IndicatorKind {
    pub const ALL: [IndicatorKind; 6] = [
        Self::Ipv4,
        Self::Ipv6,
        Self::Domain,
        Self::Hostname,
        Self::FileHash,
        Self::Url,
    ];

    fn tool_name(self) -> &'static str {
        match self {
            Self::Ipv4 => "otx_ipv4",
            Self::Ipv6 => "otx_ipv6",
            Self::Domain => "otx_domain",
            Self::Hostname => "otx_hostname",
            Self::FileHash => "otx_file_hash",
            Self::Url => "otx_url",
        }
    }

    /// OTX's path segment for the kind.
    fn api_type(self) -> &'static str {
        match self {
            Self::Ipv4 => "IPv4",
            Self::Ipv6 => "IPv6",
            Self::Domain => "domain",
            Self::Hostname => "hostname",
            Self::FileHash => "file",
            Self::Url => "url",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Ipv4 => {
                "Threat intelligence on an IPv4 address from AlienVault OTX: pulses, reputation, country, ASN."
            }
            Self::Ipv6 => "Threat intelligence on an IPv6 address from AlienVault OTX.",
            Self::Domain => {
                "Threat intelligence on a registered domain (example.com) from AlienVault OTX."
            }
            Self::Hostname => {
                "Threat intelligence on a host name (www.example.com) from AlienVault OTX."
            }
            Self::FileHash => {
                "Threat intelligence on a file hash (MD5, SHA-1 or SHA-256) from AlienVault OTX."
            }
            Self::Url => "Threat intelligence on a full http(s) URL from AlienVault OTX.",
        }
    }

    /// Checks `target` for this kind; the error is for the model.
    fn check(self, target: &str) -> Result<String, String> {
        let target = target.trim();
        let ok = match self {
            Self::Ipv4 => target.parse::<Ipv4Addr>().is_ok(),
            Self::Ipv6 => target.parse::<Ipv6Addr>().is_ok(),
            Self::Domain | Self::Hostname => is_host_name(target),
            Self::FileHash => {
                matches!(target.len(), 32 | 40 | 64)
                    && target.chars().all(|c| c.is_ascii_hexdigit())
            }
            Self::Url => reqwest::Url::parse(target)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()),
        };
        if ok {
            Ok(target.to_owned())
        } else {
            let expected = match self {
                Self::Ipv4 => "an IPv4 address such as 203.0.113.9",
                Self::Ipv6 => "an IPv6 address such as 2001:db8::1",
                Self::Domain => "a domain such as example.com",
                Self::Hostname => "a host name such as www.example.com",
                Self::FileHash => "an MD5, SHA-1 or SHA-256 hash in hex",
                Self::Url => "an http(s) URL",
            };
            Err(format!("target must be {expected}, got {target:?}"))
        }
    }
}

fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// One OTX lookup tool.
#[derive(Debug, Clone)]
pub struct OtxTool {
    kind: IndicatorKind,
    http: reqwest::Client,
    settings: Arc<OtxSettings>,
}

/// The six OTX tools, sharing one HTTP client.
pub fn otx_tools(settings: OtxSettings) -> Result<Vec<OtxTool>, ToolSetupError> {
    if settings.api_key.trim().is_empty() {
        return Err(ToolSetupError::Invalid("the OTX API key is empty".into()));
    }
    reqwest::Url::parse(&settings.base_url)
        .map_err(|e| ToolSetupError::Invalid(format!("the OTX base URL: {e}")))?;
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()?;
    let settings = Arc::new(settings);
    Ok(IndicatorKind::ALL
        .into_iter()
        .map(|kind| OtxTool {
            kind,
            http: http.clone(),
            settings: settings.clone(),
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    target: String,
}

#[derive(Deserialize, Default)]
struct General {
    #[serde(default)]
    indicator: Option<String>,
    #[serde(default)]
    reputation: Option<Value>,
    #[serde(default)]
    country_name: Option<String>,
    #[serde(default)]
    asn: Option<String>,
    #[serde(default)]
    pulse_info: PulseInfo,
    #[serde(default)]
    validation: Vec<Value>,
}

#[derive(Deserialize, Default)]
struct PulseInfo {
    #[serde(default)]
    count: u64,
    #[serde(default)]
    pulses: Vec<Pulse>,
}

#[derive(Deserialize)]
struct Pulse {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    malware_families: Vec<Value>,
    #[serde(default)]
    adversary: String,
    #[serde(default)]
    created: String,
}

#[async_trait]
impl Tool for OtxTool {
    fn name(&self) -> &str {
        self.kind.tool_name()
    }

    fn description(&self) -> &str {
        self.kind.description()
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["target"],
            "properties": {"target": {"type": "string", "minLength": 1, "maxLength": 2048}}
        })
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    async fn call(&self, arguments: Value) -> Result<ToolOutput, ToolError> {
        let args: Arguments = serde_json::from_value(arguments)
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let target = self
            .kind
            .check(&args.target)
            .map_err(ToolError::InvalidArguments)?;
        let mut url = reqwest::Url::parse(&self.settings.base_url)
            .map_err(|e| ToolError::Failed(format!("the OTX base URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| ToolError::Failed("the OTX base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend([
                "api",
                "v1",
                "indicators",
                self.kind.api_type(),
                &target,
                "general",
            ]);
        let response = self
            .http
            .get(url)
            .header("X-OTX-API-KEY", &self.settings.api_key)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ToolError::Timeout(self.settings.timeout)
                } else {
                    ToolError::Failed(format!("OTX is unreachable: {e}"))
                }
            })?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => {
                return Ok(ToolOutput {
                    text: json!({"indicator": target, "known_to_otx": false}).to_string(),
                    bytes_processed: None,
                });
            }
            401 | 403 => return Err(ToolError::Failed("OTX refused the API key".into())),
            429 => {
                return Err(ToolError::Failed(
                    "OTX rate limit reached; try later".into(),
                ));
            }
            other => return Err(ToolError::Failed(format!("OTX answered HTTP {other}"))),
        }
        let general: General = response
            .json()
            .await
            .map_err(|e| ToolError::Failed(format!("OTX answered something unreadable: {e}")))?;
        Ok(ToolOutput {
            text: summarise(&target, general).to_string(),
            bytes_processed: None,
        })
    }
}

fn summarise(target: &str, general: General) -> Value {
    let pulses: Vec<Value> = general
        .pulse_info
        .pulses
        .iter()
        .take(MAX_PULSES)
        .map(|p| {
            let families: Vec<&str> = p
                .malware_families
                .iter()
                .filter_map(|f| {
                    f.get("display_name")
                        .or_else(|| f.get("id"))
                        .and_then(Value::as_str)
                        .or_else(|| f.as_str())
                })
                .collect();
            json!({
                "name": p.name,
                "tags": p.tags.iter().take(MAX_TAGS).collect::<Vec<_>>(),
                "malware_families": families,
                "adversary": p.adversary,
                "created": p.created,
            })
        })
        .collect();
    let allow_listed: Vec<&str> = general
        .validation
        .iter()
        .filter_map(|v| v.get("message").and_then(Value::as_str))
        .collect();
    json!({
        "indicator": general.indicator.as_deref().unwrap_or(target),
        "known_to_otx": true,
        "pulse_count": general.pulse_info.count,
        "pulses": pulses,
        "reputation": general.reputation,
        "country": general.country_name,
        "asn": general.asn,
        "allow_listed": allow_listed,
    })
}
