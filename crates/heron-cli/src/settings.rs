//! Settings: built-in defaults, then a TOML file, then `HERON_*` environment variables, then
//! command-line flags — each later source wins. `docs/configuration.md` documents every key.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds.
    pub addr: SocketAddr,
    /// Where the embedded SQLite database (and the generated bootstrap token) live.
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; unset for SQLite in `data_dir/heron.db`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// Policy files or folders.
    pub policies: Vec<PathBuf>,
    /// `v1` (default) or `v0`.
    pub rego_version: String,
    /// Wall-clock limit for one policy evaluation, in milliseconds.
    pub policy_timeout_ms: u64,
    /// Changes in the policy folders are gathered for this long, then reloaded once; 0 turns
    /// watching off (SIGHUP and `POST /api/v1/policies/reload` still reload).
    pub policy_watch_debounce_ms: u64,
    /// Accept webhooks and API calls without a token (refused unless `addr` is loopback).
    pub no_auth: bool,
    /// Largest webhook body, in bytes.
    pub max_body_bytes: usize,
    /// A request that takes longer is answered 408 (body reading included).
    pub request_timeout_secs: u64,
    /// Requests handled at once; more wait for a slot (within the request timeout).
    pub max_concurrent_requests: usize,
    pub auth: AuthSettings,
    pub sns: SnsSettings,
    pub rate_limit: RateLimitSettings,
    /// OpenID Connect issuer for dashboard sign-in (unset: pages take an API token).
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<String>,
    /// This server's `/auth/callback`, as registered with the IdP.
    pub oidc_redirect_url: Option<String>,
    /// Signs dashboard sessions (≥ 32 bytes); the same on every instance behind one address.
    pub session_secret: Option<String>,
    pub worker: WorkerSettings,
    pub log: LogSettings,

    // The agent: model, embeddings, tools and budgets (docs/agent-tools.md). Flat keys, so
    // that `HERON_LLM_BASE_URL` and `llm_base_url` name the same setting.
    /// OpenAI-compatible base URL; unset disables the agent.
    pub llm_base_url: Option<String>,
    pub llm_api_key: Option<String>,
    pub llm_model: Option<String>,
    /// Unset: the local hashing embedder.
    pub embedding_model: Option<String>,
    pub embedding_dimensions: Option<u32>,
    /// Seconds for one HTTP attempt to the model.
    pub llm_timeout: u64,
    pub llm_max_retries: u32,
    /// Requests to the model provider (chat and embeddings) in flight at once in this
    /// process, across enrichment, investigations, chats and drafts; more wait their turn.
    pub llm_max_concurrent_requests: u64,
    pub llm_azure_api_version: Option<String>,
    pub llm_azure_deployment: Option<String>,
    pub llm_azure_embedding_deployment: Option<String>,
    /// Largest tool answer given to the model, in bytes.
    pub tool_result_bytes: usize,
    pub otx_api_key: Option<String>,
    pub otx_base_url: String,
    pub otx_timeout: u64,
    pub otx_cache_ttl: u64,
    pub urlscan_api_key: Option<String>,
    pub urlscan_base_url: String,
    pub urlscan_timeout: u64,
    pub urlscan_cache_ttl: u64,
    pub urlscan_allow_scan: bool,
    pub urlscan_scan_visibility: String,
    pub bigquery_project: Option<String>,
    pub bigquery_location: Option<String>,
    /// Service-account key file; unset: application default credentials.
    pub bigquery_credentials: Option<PathBuf>,
    /// BigQuery REST root, for emulators and tests.
    pub bigquery_base_url: Option<String>,
    pub bigquery_tables: Vec<crate::agent::TableSetting>,
    pub bigquery_runbooks: Option<PathBuf>,
    pub bigquery_max_bytes_per_query: crate::agent::ByteSize,
    pub bigquery_max_bytes_per_ticket: crate::agent::ByteSize,
    pub bigquery_max_rows: usize,
    pub bigquery_timeout: u64,
    /// Model calls plus tool calls per run.
    pub agent_max_steps: u32,
    pub agent_max_run_tokens: u64,
    /// Seconds one run may take.
    pub agent_wall_time: u64,
    /// Tokens all runs of the service may spend per UTC day.
    pub agent_daily_tokens: u64,
    /// Investigations at once per process.
    pub agent_concurrency: usize,
    /// Tickets older than this (hours) when their triage comes up are not investigated.
    pub agent_max_age_hours: u64,

    // Slack (docs/slack.md): flat keys, `HERON_SLACK_BOT_TOKEN` is `slack_bot_token`.
    /// `xoxb-…`; unset (with the signing secret) runs Heron without Slack.
    pub slack_bot_token: Option<String>,
    /// Verifies that requests to `/hooks/slack/*` come from Slack.
    pub slack_signing_secret: Option<String>,
    /// The default channel (an id like `C0123456789`, or a name).
    pub slack_channel: Option<String>,
    /// The Slack Web API root, for a local fake in tests (default `https://slack.com/api`).
    pub slack_base_url: Option<String>,
    /// Who may drive the agent and press the buttons: Slack user ids or e-mail addresses
    /// (a list, or one comma-separated string); empty: anyone.
    #[serde(deserialize_with = "string_or_list")]
    pub slack_allowed_users: Vec<String>,
    /// Channels where the agent may be driven and buttons pressed; empty: any.
    #[serde(deserialize_with = "string_or_list")]
    pub slack_allowed_channels: Vec<String>,
    /// `allowlist` (the two lists above) or `policy` (`data.auth.agent` decides).
    pub slack_authorization: String,
    /// The dashboard's public address (`https://heron.example.com`), for links in Slack.
    pub public_url: Option<String>,

    /// Environment variables `data.auth.http` sees as `input.env` (a list, or one
    /// comma-separated string); nothing else of the environment is shown to it.
    #[serde(deserialize_with = "string_or_list")]
    pub auth_policy_env: Vec<String>,
    /// Require a Google-signed ID token with this audience on `/hooks/alert/pubsub/*`.
    pub pubsub_audience: Option<String>,
    /// With `pubsub_audience`: the token's `email` must be this service account.
    pub pubsub_service_account: Option<String>,
    /// The JWKS the ID tokens are checked against (default: Google's).
    pub pubsub_jwks_url: Option<String>,
}

/// A list, or one string of comma-separated items (as an environment variable gives it).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Either::Many(v) => v,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Tokens valid for every webhook and the API.
    pub tokens: Vec<String>,
    /// Tokens valid for one schema's webhooks only.
    pub schema_tokens: BTreeMap<String, Vec<String>>,
}

/// Request rate limits (`[rate_limit]`); a rate of 0 turns that limit off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per second per bearer token.
    pub per_token_per_second: u32,
    /// Requests a token may send at once above its rate (default: one second's worth).
    pub per_token_burst: u32,
    /// Requests per second per client address.
    pub per_source_per_second: u32,
    pub per_source_burst: u32,
    /// The client address is the first `X-Forwarded-For` entry (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

impl RateLimitSettings {
    pub fn to_server(&self) -> heron_server::RateLimitSettings {
        let limit = |rate: u32, burst: u32| {
            std::num::NonZeroU32::new(rate).map(|per_second| heron_server::RateLimit {
                per_second,
                burst: std::num::NonZeroU32::new(burst).unwrap_or(per_second),
            })
        };
        heron_server::RateLimitSettings {
            per_token: limit(self.per_token_per_second, self.per_token_burst),
            per_source: limit(self.per_source_per_second, self.per_source_burst),
            trust_forwarded_for: self.trust_forwarded_for,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnsSettings {
    pub allowed_hosts: Vec<String>,
    pub confirm_subscriptions: bool,
    pub allowed_topic_arns: Vec<String>,
    pub allow_insecure_urls: bool,
}

impl Default for SnsSettings {
    fn default() -> Self {
        let d = heron_server::SnsSettings::default();
        Self {
            allowed_hosts: d.allowed_hosts,
            confirm_subscriptions: d.confirm_subscriptions,
            allowed_topic_arns: d.allowed_topic_arns,
            allow_insecure_urls: d.allow_insecure_urls,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run the worker inside `heron serve`.
    pub enabled: bool,
    pub concurrency: usize,
    pub batch_size: usize,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub dedup_window_secs: u64,
    /// Pending events above which model work (enrichment, triage) pauses; 0: never.
    pub backlog_pause_above: u64,
    /// Model work resumes once pending events are at or below this (0: half of
    /// `backlog_pause_above`).
    pub backlog_resume_below: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        let d = heron_app::WorkerSettings::default();
        Self {
            enabled: true,
            concurrency: d.concurrency,
            batch_size: d.batch_size,
            lease_secs: d.lease.as_secs(),
            poll_interval_ms: d.poll_interval.as_millis() as u64,
            max_attempts: d.max_attempts,
            backoff_base_ms: d.backoff_base.as_millis() as u64,
            backoff_max_secs: d.backoff_max.as_secs(),
            dedup_window_secs: d.dedup_window.as_secs(),
            backlog_pause_above: 0,
            backlog_resume_below: 0,
        }
    }
}

impl WorkerSettings {
    pub fn to_app(&self) -> heron_app::WorkerSettings {
        use std::time::Duration;
        heron_app::WorkerSettings {
            concurrency: self.concurrency.max(1),
            batch_size: self.batch_size.max(1),
            lease: Duration::from_secs(self.lease_secs.max(1)),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(1)),
            max_attempts: self.max_attempts.max(1),
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            dedup_window: Duration::from_secs(self.dedup_window_secs),
            backlog: (self.backlog_pause_above > 0).then(|| heron_app::BacklogLimits {
                pause_above: self.backlog_pause_above,
                resume_below: if self.backlog_resume_below == 0 {
                    self.backlog_pause_above / 2
                } else {
                    self.backlog_resume_below.min(self.backlog_pause_above)
                },
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,heron_app=debug`; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            database_max_connections: 16,
            policies: vec![PathBuf::from("policies")],
            rego_version: "v1".into(),
            policy_timeout_ms: 2000,
            policy_watch_debounce_ms: 500,
            no_auth: false,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            max_concurrent_requests: 512,
            auth: AuthSettings::default(),
            sns: SnsSettings::default(),
            rate_limit: RateLimitSettings::default(),
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_redirect_url: None,
            session_secret: None,
            worker: WorkerSettings::default(),
            log: LogSettings::default(),
            llm_base_url: None,
            llm_api_key: None,
            llm_model: None,
            embedding_model: None,
            embedding_dimensions: None,
            llm_timeout: 60,
            llm_max_retries: 3,
            llm_max_concurrent_requests: 8,
            llm_azure_api_version: None,
            llm_azure_deployment: None,
            llm_azure_embedding_deployment: None,
            tool_result_bytes: 16 * 1024,
            otx_api_key: None,
            otx_base_url: heron_tools::OtxConfig::DEFAULT_BASE_URL.into(),
            otx_timeout: 20,
            otx_cache_ttl: 6 * 3600,
            urlscan_api_key: None,
            urlscan_base_url: heron_tools::UrlscanConfig::DEFAULT_BASE_URL.into(),
            urlscan_timeout: 20,
            urlscan_cache_ttl: 3600,
            urlscan_allow_scan: false,
            urlscan_scan_visibility: "private".into(),
            bigquery_project: None,
            bigquery_location: None,
            bigquery_credentials: None,
            bigquery_base_url: None,
            bigquery_tables: Vec::new(),
            bigquery_runbooks: None,
            bigquery_max_bytes_per_query: crate::agent::ByteSize(
                heron_tools::BigQueryConfig::DEFAULT_MAX_BYTES_PER_QUERY,
            ),
            bigquery_max_bytes_per_ticket: crate::agent::ByteSize(
                heron_tools::BigQueryConfig::DEFAULT_MAX_BYTES_PER_TICKET,
            ),
            bigquery_max_rows: 100,
            bigquery_timeout: 120,
            agent_max_steps: 12,
            agent_max_run_tokens: 100_000,
            agent_wall_time: 300,
            agent_daily_tokens: 2_000_000,
            agent_concurrency: 2,
            agent_max_age_hours: 24,
            slack_bot_token: None,
            slack_signing_secret: None,
            slack_channel: None,
            slack_base_url: None,
            slack_allowed_users: Vec::new(),
            slack_allowed_channels: Vec::new(),
            slack_authorization: "allowlist".into(),
            public_url: None,
            auth_policy_env: Vec::new(),
            pubsub_audience: None,
            pubsub_service_account: None,
            pubsub_jwks_url: None,
        }
    }
}

/// Flags that override the file and the environment (only those given).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<PathBuf>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rego_version: Option<String>,
}

/// The top-level keys of [`Settings`] as serde names them: every one of them can be set from a
/// `HERON_*` variable (`HERON_LLM_BASE_URL` → `llm_base_url`). Other `HERON_*` variables
/// (`HERON_CONFIG`, `HERON_LOG`, test and benchmark settings) are not settings and are left
/// alone. Read from the derived `Deserialize` itself, so a new setting cannot be forgotten.
fn settings_keys() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};
    /// Answers nothing; remembers the field names serde asks a struct for.
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("a probe"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("a probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    static KEYS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut fields: &'static [&'static str] = &[];
        let _ = Settings::deserialize(Probe(&mut fields));
        fields
    })
}

/// Settings a file can hold instead of the environment (`HERON_<KEY>_FILE`, a mounted
/// Kubernetes or Docker secret): the file's content without its trailing newline;
/// `auth.tokens` (`HERON_AUTH__TOKENS_FILE`) takes one token per line.
pub const SECRET_FILE_KEYS: &[&str] = &[
    "database_url",
    "llm_api_key",
    "otx_api_key",
    "urlscan_api_key",
    "oidc_client_secret",
    "session_secret",
    "slack_bot_token",
    "slack_signing_secret",
    "auth__tokens",
];

/// The settings named by `HERON_<KEY>_FILE` variables, read from their files. `lookup`
/// reads an environment variable. Setting both `HERON_<KEY>` and `HERON_<KEY>_FILE`, an
/// unreadable file and an empty one are errors naming the variable.
fn secret_files(lookup: &dyn Fn(&str) -> Option<String>) -> Result<figment::value::Dict, String> {
    use figment::value::{Dict, Value};
    let mut values = Dict::new();
    for key in SECRET_FILE_KEYS {
        let name = format!("HERON_{}", key.to_ascii_uppercase());
        let Some(path) = lookup(&format!("{name}_FILE")) else {
            continue;
        };
        if lookup(&name).is_some() {
            return Err(format!("both {name} and {name}_FILE are set: keep one"));
        }
        let content = std::fs::read_to_string(&path)
            .map_err(|e| format!("{name}_FILE: cannot read {path}: {e}"))?;
        let value = content.trim_end_matches(['\n', '\r']);
        if value.trim().is_empty() {
            return Err(format!("{name}_FILE: {path} is empty"));
        }
        match key.split_once("__") {
            Some((table, field)) => {
                let lines: Vec<Value> = value
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Value::from)
                    .collect();
                let mut nested = Dict::new();
                nested.insert(field.to_owned(), Value::from(lines));
                values.insert(table.to_owned(), Value::from(nested));
            }
            None => {
                values.insert((*key).to_owned(), Value::from(value.to_owned()));
            }
        }
    }
    Ok(values)
}

/// Whether `HERON_<key>` names a setting (`key` without the prefix, any case).
/// The tables (`[worker]`…) are set field by field (`HERON_WORKER__CONCURRENCY`): a bare
/// `HERON_LOG` is the log filter variable, not the `[log]` table.
fn is_setting_env_key(key: &str) -> bool {
    const TABLES: &[&str] = &["auth", "sns", "rate_limit", "worker", "log"];
    let lower = key.to_ascii_lowercase();
    if let Some(base) = lower.strip_suffix("_file")
        && SECRET_FILE_KEYS.contains(&base)
    {
        return false;
    }
    let mut parts = key.split("__");
    let top = parts.next().unwrap_or_default().to_ascii_lowercase();
    let nested = parts.next().is_some();
    if TABLES.contains(&top.as_str()) {
        return nested;
    }
    settings_keys().contains(&top.as_str())
}

/// Default config file, read when present and no other is named.
pub const DEFAULT_CONFIG_FILE: &str = "heron.toml";

impl Settings {
    pub fn load(
        config_file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Self, Box<figment::Error>> {
        Self::load_with(config_file, overrides, &|name| std::env::var(name).ok())
    }

    /// [`Settings::load`] with `lookup` reading the `HERON_<KEY>_FILE` variables (tests).
    fn load_with(
        config_file: Option<&Path>,
        overrides: &Overrides,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Box<figment::Error>> {
        let files = secret_files(lookup).map_err(|e| Box::new(figment::Error::from(e)))?;
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => {
                if Path::new(DEFAULT_CONFIG_FILE).exists() {
                    figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
                }
            }
        }
        figment
            .merge(
                Env::prefixed("HERON_")
                    .filter(|key| is_setting_env_key(key.as_str()))
                    .split("__"),
            )
            .merge(Serialized::defaults(files))
            .merge(Serialized::defaults(overrides))
            .extract::<Settings>()
            .map_err(Box::new)
            .and_then(|settings| {
                settings
                    .validate()
                    .map_err(|e| Box::new(figment::Error::from(e)))?;
                Ok(settings)
            })
    }

    /// Bounds every number, so no setting can overflow a time computation or disable a
    /// safety limit by accident; the message names the key and its range.
    pub fn validate(&self) -> Result<(), String> {
        const DAY: u64 = 86_400;
        let checks: [(&str, u64, u64, u64); 25] = [
            ("llm_timeout", self.llm_timeout, 1, 3600),
            (
                "llm_max_concurrent_requests",
                self.llm_max_concurrent_requests,
                1,
                1024,
            ),
            ("llm_max_retries", u64::from(self.llm_max_retries), 0, 20),
            (
                "embedding_dimensions",
                u64::from(self.embedding_dimensions.unwrap_or(256)),
                8,
                16_000,
            ),
            (
                "tool_result_bytes",
                self.tool_result_bytes as u64,
                256,
                1 << 20,
            ),
            ("otx_timeout", self.otx_timeout, 1, 600),
            ("urlscan_timeout", self.urlscan_timeout, 1, 600),
            (
                "bigquery_max_rows",
                self.bigquery_max_rows as u64,
                1,
                10_000,
            ),
            ("bigquery_timeout", self.bigquery_timeout, 1, 3600),
            ("agent_max_steps", u64::from(self.agent_max_steps), 2, 200),
            ("agent_wall_time", self.agent_wall_time, 1, 3600),
            ("agent_concurrency", self.agent_concurrency as u64, 1, 64),
            ("policy_timeout_ms", self.policy_timeout_ms, 1, 600_000),
            (
                "policy_watch_debounce_ms",
                self.policy_watch_debounce_ms,
                0,
                600_000,
            ),
            ("max_body_bytes", self.max_body_bytes as u64, 1024, 64 << 20),
            ("request_timeout_secs", self.request_timeout_secs, 1, 3600),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u64,
                1,
                100_000,
            ),
            (
                "database_max_connections",
                u64::from(self.database_max_connections),
                1,
                1000,
            ),
            ("worker.concurrency", self.worker.concurrency as u64, 1, 256),
            (
                "worker.batch_size",
                self.worker.batch_size as u64,
                1,
                10_000,
            ),
            ("worker.lease_secs", self.worker.lease_secs, 1, DAY),
            (
                "worker.poll_interval_ms",
                self.worker.poll_interval_ms,
                1,
                3_600_000,
            ),
            (
                "worker.max_attempts",
                u64::from(self.worker.max_attempts),
                1,
                1000,
            ),
            (
                "worker.backoff_max_secs",
                self.worker.backoff_max_secs,
                0,
                7 * DAY,
            ),
            (
                "worker.dedup_window_secs",
                self.worker.dedup_window_secs,
                0,
                366 * DAY,
            ),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(format!("{key} = {value} is out of range {min}..={max}"));
            }
        }
        if self.worker.backoff_base_ms > 3_600_000 {
            return Err(format!(
                "worker.backoff_base_ms = {} is out of range 0..=3600000",
                self.worker.backoff_base_ms
            ));
        }
        Ok(())
    }

    /// The settings with every secret replaced, for display.
    pub fn redacted(&self) -> Settings {
        let mut shown = self.clone();
        let hide = |v: &mut Vec<String>| v.iter_mut().for_each(|t| *t = "<redacted>".into());
        hide(&mut shown.auth.tokens);
        for key in [
            &mut shown.llm_api_key,
            &mut shown.otx_api_key,
            &mut shown.urlscan_api_key,
            &mut shown.oidc_client_secret,
            &mut shown.session_secret,
            &mut shown.slack_bot_token,
            &mut shown.slack_signing_secret,
        ]
        .into_iter()
        .flatten()
        {
            *key = "<redacted>".into();
        }
        shown.auth.schema_tokens.values_mut().for_each(hide);
        if let Some(url) = &mut shown.database_url {
            *url = redact_url_password(url);
        }
        shown
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://heron:s3cret@db:5432/heron"),
            "postgres://heron:<redacted>@db:5432/heron"
        );
        assert_eq!(
            redact_url_password("postgres://db/heron"),
            "postgres://db/heron"
        );
    }

    #[test]
    fn redacted_settings_hide_every_token() {
        let mut s = Settings::default();
        s.auth.tokens = vec!["t1".into()];
        s.auth
            .schema_tokens
            .insert("okta".into(), vec!["t2".into()]);
        let shown = toml::to_string(&s.redacted()).unwrap();
        assert!(
            !shown.contains("t1") && !shown.contains("\"t2\""),
            "{shown}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("heron.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:9000\"\n[worker]\nconcurrency = 7\n",
        )
        .unwrap();
        let loaded = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(loaded.addr.port(), 9000);
        assert_eq!(loaded.worker.concurrency, 7);
        let overrides = Overrides {
            addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..Overrides::default()
        };
        assert_eq!(
            Settings::load(Some(&file), &overrides).unwrap().addr.port(),
            9100
        );
    }

    #[test]
    fn out_of_range_numbers_are_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("heron.toml");
        std::fs::write(&file, "[worker]\ndedup_window_secs = 1000000000000\n").unwrap();
        let error = Settings::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(
            error.to_string().contains("worker.dedup_window_secs"),
            "{error}"
        );
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn agent_variables_are_settings_and_other_heron_variables_are_not() {
        for key in [
            "LLM_BASE_URL",
            "llm_api_key",
            "EMBEDDING_DIMENSIONS",
            "OTX_API_KEY",
            "URLSCAN_ALLOW_SCAN",
            "BIGQUERY_MAX_BYTES_PER_TICKET",
            "AGENT_DAILY_TOKENS",
            "WORKER__CONCURRENCY",
            "PUBSUB_AUDIENCE",
            "PUBSUB_SERVICE_ACCOUNT",
            "PUBSUB_JWKS_URL",
            "AUTH_POLICY_ENV",
        ] {
            assert!(is_setting_env_key(key), "{key}");
        }
        for key in ["CONFIG", "LOG", "TEST_DATABASE_URL", "BENCH_PYTHON"] {
            assert!(!is_setting_env_key(key), "{key}");
        }
    }

    #[test]
    fn every_top_level_setting_can_be_set_from_the_environment() {
        let keys = settings_keys();
        assert!(keys.len() > 40, "{keys:?}");
        for key in keys {
            let variable = key.to_ascii_uppercase();
            let tables = ["auth", "sns", "rate_limit", "worker", "log"];
            let variable = if tables.contains(key) {
                format!("{variable}__X")
            } else {
                variable
            };
            assert!(is_setting_env_key(&variable), "HERON_{variable}");
        }
    }

    #[test]
    fn agent_settings_load_from_flat_keys_with_byte_sizes_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("heron.toml");
        std::fs::write(
            &file,
            "llm_base_url = \"http://llm:4000/v1\"\nllm_model = \"m\"\nllm_api_key = \"sk-secret\"\n\
             otx_api_key = \"otx-secret\"\nbigquery_max_bytes_per_ticket = \"30GB\"\n\
             bigquery_max_bytes_per_query = 1000\n\
             bigquery_tables = [{ table = \"logs.dns\", description = \"resolver logs\" }]\n",
        )
        .unwrap();
        let loaded = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(loaded.llm_base_url.as_deref(), Some("http://llm:4000/v1"));
        assert_eq!(loaded.bigquery_max_bytes_per_ticket.0, 30_000_000_000);
        assert_eq!(loaded.bigquery_max_bytes_per_query.0, 1000);
        assert_eq!(loaded.bigquery_tables[0].table, "logs.dns");
        let shown = toml::to_string(&loaded.redacted()).unwrap();
        assert!(
            !shown.contains("sk-secret") && !shown.contains("otx-secret"),
            "{shown}"
        );
        std::fs::write(&file, "bigquery_max_bytes_per_ticket = \"lots\"\n").unwrap();
        assert!(Settings::load(Some(&file), &Overrides::default()).is_err());
    }

    #[test]
    fn slack_settings_load_from_toml_with_comma_lists_and_their_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("heron.toml");
        std::fs::write(
            &file,
            "slack_bot_token = \"xoxb-secret\"\nslack_signing_secret = \"signing-secret\"\n\
             slack_channel = \"C0SEC\"\nslack_allowed_users = \"U1, alice@example.com\"\n\
             slack_allowed_channels = [\"C0SEC\"]\nslack_authorization = \"policy\"\n",
        )
        .unwrap();
        let loaded = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(loaded.slack_channel.as_deref(), Some("C0SEC"));
        assert_eq!(loaded.slack_allowed_users, ["U1", "alice@example.com"]);
        assert_eq!(loaded.slack_allowed_channels, ["C0SEC"]);
        assert_eq!(loaded.slack_authorization, "policy");
        let shown = toml::to_string(&loaded.redacted()).unwrap();
        assert!(
            !shown.contains("xoxb-secret") && !shown.contains("signing-secret"),
            "{shown}"
        );
        assert!(is_setting_env_key("SLACK_BOT_TOKEN"));
        assert!(is_setting_env_key("PUBLIC_URL"));
    }

    #[test]
    fn secrets_come_from_files_named_by_their_file_variables() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("llm-key");
        std::fs::write(&key, "sk-from-file\n").unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "t-one\n\n  t-two \n").unwrap();
        let env: HashMap<String, String> = [
            ("HERON_LLM_API_KEY_FILE", key.display().to_string()),
            ("HERON_AUTH__TOKENS_FILE", tokens.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let loaded =
            Settings::load_with(None, &Overrides::default(), &|name| env.get(name).cloned())
                .unwrap();
        assert_eq!(loaded.llm_api_key.as_deref(), Some("sk-from-file"));
        assert_eq!(loaded.auth.tokens, vec!["t-one", "t-two"]);
        assert!(!is_setting_env_key("LLM_API_KEY_FILE"));
        assert!(!is_setting_env_key("auth__tokens_file"));
    }

    #[test]
    fn a_secret_set_twice_or_in_a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.path().join("missing").display().to_string();
        for (env, expected) in [
            (
                vec![
                    ("HERON_OTX_API_KEY", "k".to_owned()),
                    ("HERON_OTX_API_KEY_FILE", empty.display().to_string()),
                ],
                "both HERON_OTX_API_KEY and HERON_OTX_API_KEY_FILE",
            ),
            (
                vec![("HERON_DATABASE_URL_FILE", missing)],
                "HERON_DATABASE_URL_FILE: cannot read",
            ),
            (
                vec![("HERON_URLSCAN_API_KEY_FILE", empty.display().to_string())],
                "HERON_URLSCAN_API_KEY_FILE",
            ),
        ] {
            let env: HashMap<String, String> =
                env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let error =
                Settings::load_with(None, &Overrides::default(), &|name| env.get(name).cloned())
                    .unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("heron.toml");
        std::fs::write(&file, "adress = \"127.0.0.1:9000\"\n").unwrap();
        assert!(Settings::load(Some(&file), &Overrides::default()).is_err());
    }
}
