//! AlienVault OTX lookups: `otx_ipv4`, `otx_ipv6`, `otx_domain`, `otx_hostname`,
//! `otx_file_hash`, `otx_url`.
//!
//! Each asks OTX API v1 `GET {base}/indicators/{type}/{target}/general` (header
//! `X-OTX-API-KEY`) and answers a summary of what matters for triage — pulse count, the
//! newest pulses (names, tags, malware families, adversaries, ATT&CK ids), reputation,
//! country, ASN, allow-list validations — instead of the raw document, which is mostly
//! presentation data.
//!
//! Invariants:
//! - the target is validated for its type before any request (an IPv4 tool only ever sends a
//!   dotted quad), and an address that is not public is answered without asking OTX;
//! - the target travels as one percent-encoded path segment, so a URL indicator cannot
//!   change the path;
//! - answers (including "OTX has no record") are cached for the configured TTL under
//!   `otx:{type}:{target}`.

use crate::common::{self, Cache};
use crate::{ToolsSetupError, validate};
use async_trait::async_trait;
use heron_core::agent::{Tool, ToolError, ToolOutput};
use heron_core::tool::{DEFAULT_CLIP_BYTES, ToolCache, ToolContext};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub struct OtxConfig {
    /// Default `https://otx.alienvault.com/api/v1`.
    pub base_url: String,
    pub api_key: String,
    /// Deadline of one lookup.
    pub timeout: Duration,
    /// Largest answer given to the model.
    pub clip_bytes: usize,
    /// How long an answer is reused from the cache.
    pub cache_ttl: Duration,
    /// Pulses listed in an answer (newest first); the count is always the full one.
    pub max_pulses: usize,
}

impl OtxConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://otx.alienvault.com/api/v1";

    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.into(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(20),
            clip_bytes: DEFAULT_CLIP_BYTES,
            cache_ttl: Duration::from_secs(6 * 3600),
            max_pulses: 10,
        }
    }
}

impl std::fmt::Debug for OtxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtxConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("clip_bytes", &self.clip_bytes)
            .field("cache_ttl", &self.cache_ttl)
            .field("max_pulses", &self.max_pulses)
            .finish()
    }
}

/// The six OTX tools sharing one client and cache.
pub fn otx_tools(
    config: OtxConfig,
    cache: Option<Arc<dyn ToolCache>>,
) -> Result<Vec<Arc<dyn Tool>>, ToolsSetupError> {
    if config.api_key.trim().is_empty() {
        return Err(ToolsSetupError::Invalid("the OTX API key is empty".into()));
    }
    reqwest::header::HeaderValue::from_str(config.api_key.trim()).map_err(|_| {
        ToolsSetupError::Invalid("the OTX API key is not a valid header value".into())
    })?;
    let shared = Arc::new(Otx {
        base_url: common::base_url("OTX base URL", &config.base_url)?,
        http: common::http_client(config.timeout)?,
        cache: Cache {
            cache,
            ttl: config.cache_ttl,
        },
        config,
    });
    Ok(Kind::ALL
        .iter()
        .map(|kind| {
            Arc::new(OtxTool {
                kind: *kind,
                otx: Arc::clone(&shared),
            }) as Arc<dyn Tool>
        })
        .collect())
}

struct Otx {
    config: OtxConfig,
    base_url: String,
    http: reqwest::Client,
    cache: Cache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ipv4,
    Ipv6,
    Domain,
    Hostname,
    FileHash,
    Url,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Domain,
        Kind::Hostname,
        Kind::FileHash,
        Kind::Url,
    ];

    fn tool_name(self) -> &'static str {
        match self {
            Kind::Ipv4 => "otx_ipv4",
            Kind::Ipv6 => "otx_ipv6",
            Kind::Domain => "otx_domain",
            Kind::Hostname => "otx_hostname",
            Kind::FileHash => "otx_file_hash",
            Kind::Url => "otx_url",
        }
    }

    /// The indicator type in OTX's paths.
    fn path(self) -> &'static str {
        match self {
            Kind::Ipv4 => "IPv4",
            Kind::Ipv6 => "IPv6",
            Kind::Domain => "domain",
            Kind::Hostname => "hostname",
            Kind::FileHash => "file",
            Kind::Url => "url",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Kind::Ipv4 => {
                "Look up an IPv4 address in AlienVault OTX: threat-intelligence pulses \
                           that list it, reputation, country and ASN."
            }
            Kind::Ipv6 => {
                "Look up an IPv6 address in AlienVault OTX: pulses that list it, \
                           reputation, country and ASN."
            }
            Kind::Domain => {
                "Look up a registered domain (example.com) in AlienVault OTX: \
                             pulses, malware families and allow-list status."
            }
            Kind::Hostname => {
                "Look up a fully qualified hostname (www.example.com) in \
                               AlienVault OTX: pulses, malware families and allow-list status."
            }
            Kind::FileHash => {
                "Look up a file hash (MD5, SHA-1 or SHA-256) in AlienVault OTX: \
                               pulses and malware families it is linked to."
            }
            Kind::Url => "Look up a full http(s) URL in AlienVault OTX: pulses that list it.",
        }
    }

    fn target_description(self) -> &'static str {
        match self {
            Kind::Ipv4 => "IPv4 address, e.g. 203.0.113.9",
            Kind::Ipv6 => "IPv6 address, e.g. 2001:db8::1",
            Kind::Domain => "domain name, e.g. example.com",
            Kind::Hostname => "hostname, e.g. www.example.com",
            Kind::FileHash => "MD5, SHA-1 or SHA-256 hex digest",
            Kind::Url => "absolute http(s) URL",
        }
    }

    /// The target normalised, or `Err(Ok(answer))` when no lookup is needed, or
    /// `Err(Err(why))` when it is invalid.
    fn check(self, target: &str) -> Result<String, Result<String, String>> {
        let not_public = |ip: std::net::IpAddr, why: String| {
            Ok(
                json!({"source": "otx", "indicator": ip.to_string(), "looked_up": false,
                      "note": format!("{why}; OTX has no intelligence on such addresses")})
                .to_string(),
            )
        };
        match self {
            Kind::Ipv4 => {
                let ip = validate::ipv4(target).map_err(Err)?;
                match validate::public_ip(ip.into()) {
                    Ok(()) => Ok(ip.to_string()),
                    Err(why) => Err(not_public(ip.into(), why)),
                }
            }
            Kind::Ipv6 => {
                let ip = validate::ipv6(target).map_err(Err)?;
                match validate::public_ip(ip.into()) {
                    Ok(()) => Ok(ip.to_string()),
                    Err(why) => Err(not_public(ip.into(), why)),
                }
            }
            Kind::Domain | Kind::Hostname => validate::dns_name(target).map_err(Err),
            Kind::FileHash => validate::file_hash(target).map_err(Err),
            Kind::Url => validate::web_url(target)
                .map(|u| u.to_string())
                .map_err(Err),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    target: String,
}

struct OtxTool {
    kind: Kind,
    otx: Arc<Otx>,
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
        common::object_schema(json!({
            "target": {"type": "string", "description": self.kind.target_description()}
        }))
    }

    fn timeout(&self) -> Duration {
        self.otx.config.timeout + Duration::from_secs(1)
    }

    async fn call(&self, arguments: Value, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let Args { target } = common::parse_args(arguments)?;
        let target = match self.kind.check(&target) {
            Ok(target) => target,
            Err(Ok(answer)) => return Ok(ToolOutput::clipped(&answer, self.otx.config.clip_bytes)),
            Err(Err(why)) => return Err(ToolError::InvalidArguments(why)),
        };
        let key = format!("otx:{}:{target}", self.kind.path());
        if let Some(text) = self.otx.cache.get(&key).await {
            let mut output = ToolOutput::clipped(&text, self.otx.config.clip_bytes);
            output.cached = true;
            return Ok(output);
        }
        let text = self.otx.lookup(self.kind, &target).await?;
        self.otx.cache.put(&key, &text).await;
        Ok(ToolOutput::clipped(&text, self.otx.config.clip_bytes))
    }
}

impl Otx {
    async fn lookup(&self, kind: Kind, target: &str) -> Result<String, ToolError> {
        let mut url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ToolError::Failed(format!("the OTX base URL is invalid: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| ToolError::Failed("the OTX base URL cannot take a path".into()))?
            .pop_if_empty()
            .extend(["indicators", kind.path(), target, "general"]);
        let request = self
            .http
            .get(url)
            .header("X-OTX-API-KEY", self.config.api_key.trim())
            .header(reqwest::header::ACCEPT, "application/json");
        let answer = common::send("OTX", request, self.config.timeout).await?;
        match answer.status {
            200 => {
                let document = answer.json().ok_or_else(|| {
                    ToolError::Failed("OTX answered something that is not JSON".into())
                })?;
                Ok(summarise(kind, target, &document, self.config.max_pulses))
            }
            // OTX answers 404 for indicators it has never seen (and some malformed ones).
            404 => Ok(json!({"source": "otx", "indicator": target, "found": false,
                             "note": "OTX has no record of this indicator"})
            .to_string()),
            _ => Err(common::status_error("OTX", &answer)),
        }
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    source: &'static str,
    indicator: String,
    #[serde(rename = "type")]
    kind: String,
    pulse_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reputation: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    malware_families: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    adversaries: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    industries: Vec<String>,
    /// Allow-list hits ("Whitelisted domain alienvault.com"): strong evidence of benign.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    validation: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    false_positive: Vec<Value>,
    pulses: Vec<PulseSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct PulseSummary {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    modified: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    malware_families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adversary: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attack_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tlp: Option<String>,
}

/// Most tags listed per pulse; community pulses carry dozens of noise tags.
const MAX_TAGS: usize = 10;

fn strings(value: &Value, field: Option<&str>) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match field {
                    None => item.as_str().map(str::to_owned),
                    // Malware families and ATT&CK ids come as strings or as objects.
                    Some(field) => item
                        .get(field)
                        .and_then(Value::as_str)
                        .or_else(|| item.as_str())
                        .map(str::to_owned),
                })
                .filter(|s| !s.trim().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> Option<String> {
    value
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn summarise(kind: Kind, target: &str, doc: &Value, max_pulses: usize) -> String {
    let info = &doc["pulse_info"];
    let mut pulses: Vec<&Value> = info["pulses"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    // Newest first: ISO timestamps sort as text.
    pulses.sort_by(|a, b| {
        b["modified"]
            .as_str()
            .unwrap_or_default()
            .cmp(a["modified"].as_str().unwrap_or_default())
    });
    let listed: Vec<PulseSummary> = pulses
        .iter()
        .take(max_pulses)
        .map(|p| PulseSummary {
            name: text(&p["name"]).unwrap_or_else(|| "(unnamed)".into()),
            modified: text(&p["modified"]).or_else(|| text(&p["created"])),
            tags: strings(&p["tags"], None)
                .into_iter()
                .take(MAX_TAGS)
                .collect(),
            malware_families: strings(&p["malware_families"], Some("display_name")),
            adversary: text(&p["adversary"]),
            attack_ids: strings(&p["attack_ids"], Some("id")),
            tlp: text(&p["TLP"]).or_else(|| text(&p["tlp"])),
        })
        .collect();
    let pulse_count = info["count"].as_u64().unwrap_or(pulses.len() as u64);
    let related = |field: &str| -> Vec<String> {
        let mut all = BTreeSet::new();
        for group in ["alienvault", "other"] {
            all.extend(strings(
                &info["related"][group][field],
                Some("display_name"),
            ));
        }
        for pulse in &pulses {
            if field == "malware_families" {
                all.extend(strings(&pulse["malware_families"], Some("display_name")));
            }
        }
        all.into_iter().collect()
    };
    let country = text(&doc["country_name"]).or_else(|| text(&doc["country_code"]));
    let validation = doc["validation"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| {
                    let name = text(&v["name"])?;
                    Some(match text(&v["message"]) {
                        Some(message) => format!("{name}: {message}"),
                        None => name,
                    })
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    let note = (pulse_count as usize > listed.len()).then(|| {
        format!(
            "{} of {pulse_count} pulses listed, newest first",
            listed.len()
        )
    });
    let summary = Summary {
        source: "otx",
        indicator: text(&doc["indicator"]).unwrap_or_else(|| target.to_owned()),
        kind: text(&doc["type_title"])
            .or_else(|| text(&doc["type"]))
            .unwrap_or_else(|| kind.path().to_owned()),
        pulse_count,
        reputation: doc.get("reputation").filter(|v| !v.is_null()).cloned(),
        country,
        asn: text(&doc["asn"]),
        malware_families: related("malware_families"),
        adversaries: related("adversary"),
        industries: related("industries"),
        validation,
        false_positive: doc["false_positive"]
            .as_array()
            .or_else(|| doc["False_positive"].as_array())
            .cloned()
            .unwrap_or_default(),
        pulses: listed,
        note,
    };
    serde_json::to_string(&summary).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
