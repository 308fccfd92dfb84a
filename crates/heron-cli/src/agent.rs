//! The agent's settings (model, embeddings, tools, budgets) and building its parts from them.
//!
//! Keys are flat (`llm_base_url` in `heron.toml`, `HERON_LLM_BASE_URL` in the environment),
//! as `docs/agent-tools.md` lists them. Without `llm_base_url` the agent is disabled and only
//! the local hashing embedder runs; each tool family is offered only when its key (or, for
//! BigQuery, its project) is set.

use anyhow::{Context, bail};
use heron_agent::{Agent, Budgets};
use heron_app::{SimilarityEmbedder, StoreDailyTokens, TriageAgent, TriageSettings};
use heron_core::agent::Tool;
use heron_core::llm::{ChatModel, Embedder};
use heron_core::ports::Store;
use heron_core::tool::ToolCache;
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A byte count written as a number or with a unit (`10GB`, `2GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(text) => heron_tools::parse_byte_size(&text)
                .map(Self)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// One table the agent may query, with what it holds (shown to the model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSetting {
    pub table: String,
    #[serde(default)]
    pub description: String,
}

/// What `heron serve` and `heron worker` build from the agent settings.
pub struct AgentParts {
    pub embedder: SimilarityEmbedder,
    /// `None` when no model is configured: the agent is disabled.
    pub triage: Option<TriageAgent>,
    pub chat_model: Option<Arc<dyn ChatModel>>,
    /// The model side of the metadata and enrich stages; `None` when the agent is disabled.
    pub enricher: Option<Arc<dyn heron_app::Enricher>>,
    /// Chat with the agent about a ticket; `None` when the agent is disabled.
    pub chat: Option<heron_app::ChatService>,
    pub tools: Vec<Arc<dyn Tool>>,
    pub budgets: Budgets,
    pub triage_settings: TriageSettings,
}

impl AgentParts {
    pub fn tool_names(&self) -> Vec<String> {
        self.tools.iter().map(|t| t.name().to_owned()).collect()
    }
}

/// Builds the model, embedder and tools. A setting that names a service but cannot work
/// (a missing model name, an unreadable runbook folder) is an error now, not at the first
/// alert.
pub async fn build(
    settings: &crate::settings::Settings,
    store: Arc<dyn Store>,
) -> anyhow::Result<AgentParts> {
    let s = settings;
    // One cap for every request to the provider, chat and embeddings alike.
    let limit = heron_llm::RequestLimit::new(
        usize::try_from(s.llm_max_concurrent_requests).unwrap_or(usize::MAX),
    );
    let chat_model: Option<Arc<dyn ChatModel>> = match &s.llm_base_url {
        None => None,
        Some(base_url) => {
            let model = s
                .llm_model
                .clone()
                .context("llm_base_url is set but llm_model is not: name the chat model")?;
            let chat: Arc<dyn ChatModel> = Arc::new(
                heron_llm::OpenAiChat::new(llm_settings(s, base_url, model))
                    .context("cannot set up the chat model")?,
            );
            Some(Arc::new(heron_llm::Limited::new(chat, limit.clone())))
        }
    };
    let embedder: Arc<dyn Embedder> = match &s.embedding_model {
        None => Arc::new(heron_llm::HashingEmbedder::new(
            s.embedding_dimensions
                .map_or(heron_llm::HashingEmbedder::DEFAULT_DIMENSIONS, |d| {
                    d as usize
                }),
        )),
        Some(model) => {
            let base_url = s
                .llm_base_url
                .as_ref()
                .context("embedding_model is set but llm_base_url is not")?;
            if s.embedding_dimensions.is_none() {
                bail!("embedding_model is set but embedding_dimensions is not");
            }
            let mut llm = llm_settings(s, base_url, s.llm_model.clone().unwrap_or_default());
            llm.embedding_model = Some(model.clone());
            let embedder: Arc<dyn Embedder> = Arc::new(
                heron_llm::OpenAiEmbedder::new(llm).context("cannot set up the embedding model")?,
            );
            Arc::new(heron_llm::Limited::new(embedder, limit.clone()))
        }
    };
    let clip = s.tool_result_bytes;
    let cache: Arc<dyn ToolCache> = store.clone();
    let mut tools: Vec<Arc<dyn Tool>> =
        heron_app::agent_tools::ticket_tools(store.clone(), embedder.name(), clip);
    if let Some(key) = &s.otx_api_key {
        let mut config = heron_tools::OtxConfig::new(key.clone());
        config.base_url = s.otx_base_url.clone();
        config.timeout = Duration::from_secs(s.otx_timeout);
        config.cache_ttl = Duration::from_secs(s.otx_cache_ttl);
        config.clip_bytes = clip;
        tools.extend(heron_tools::otx_tools(config, Some(cache.clone()))?);
    }
    if let Some(key) = &s.urlscan_api_key {
        let mut config = heron_tools::UrlscanConfig::new(key.clone());
        config.base_url = s.urlscan_base_url.clone();
        config.timeout = Duration::from_secs(s.urlscan_timeout);
        config.cache_ttl = Duration::from_secs(s.urlscan_cache_ttl);
        config.allow_scan = s.urlscan_allow_scan;
        config.scan_visibility = s.urlscan_scan_visibility.clone();
        config.clip_bytes = clip;
        tools.extend(heron_tools::urlscan_tools(config, Some(cache.clone()))?);
    }
    if let Some(project) = &s.bigquery_project {
        let credentials = match &s.bigquery_credentials {
            Some(path) => heron_tools::BigQueryCredentials::ServiceAccountKeyFile(path.clone()),
            None => heron_tools::BigQueryCredentials::ApplicationDefault,
        };
        let mut config = heron_tools::BigQueryConfig::new(project.clone(), credentials);
        config.location = s.bigquery_location.clone();
        config.base_url = s.bigquery_base_url.clone();
        config.tables = s
            .bigquery_tables
            .iter()
            .map(|t| heron_tools::AllowedTable {
                table: t.table.clone(),
                description: t.description.clone(),
            })
            .collect();
        config.runbook_dir = s.bigquery_runbooks.clone();
        config.max_bytes_per_query = s.bigquery_max_bytes_per_query.0;
        config.max_bytes_per_ticket = s.bigquery_max_bytes_per_ticket.0;
        config.max_rows = s.bigquery_max_rows;
        config.timeout = Duration::from_secs(s.bigquery_timeout);
        config.clip_bytes = clip;
        let bigquery = heron_tools::BigQueryTools::connect(config).await?;
        tools.extend(bigquery.tools());
    }
    let budgets = Budgets {
        max_steps: s.agent_max_steps,
        max_run_tokens: s.agent_max_run_tokens,
        wall_time: Duration::from_secs(s.agent_wall_time),
        max_tool_result_bytes: clip,
    };
    let triage = chat_model.as_ref().map(|model| {
        let daily = Arc::new(StoreDailyTokens::new(s.agent_daily_tokens));
        TriageAgent {
            agent: Arc::new(Agent::new(
                model.clone(),
                tools.clone(),
                budgets.clone(),
                daily.clone(),
            )),
            daily,
        }
    });
    let triage_settings = TriageSettings {
        concurrency: s.agent_concurrency,
        max_age: Duration::from_secs(s.agent_max_age_hours * 3600),
        // A run may use its whole wall time; the lease outlives a heartbeat gap comfortably.
        lease: Duration::from_secs(120),
        ..TriageSettings::default()
    };
    match &chat_model {
        Some(model) => tracing::info!(
            model = model.model(),
            embedder = embedder.name(),
            tools = ?tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "the triage agent is enabled"
        ),
        None => tracing::info!(
            embedder = embedder.name(),
            "no LLM configured (llm_base_url): the triage agent is disabled"
        ),
    }
    // Enrichment charges the same daily allowance as triage and chat.
    let enricher = chat_model.as_ref().zip(triage.as_ref()).map(|(model, t)| {
        Arc::new(heron_app::AgentEnricher::new(
            model.clone(),
            tools.clone(),
            budgets.clone(),
            t.daily.clone(),
            s.agent_concurrency,
        )) as Arc<dyn heron_app::Enricher>
    });
    let chat = triage
        .as_ref()
        .map(|t| heron_app::ChatService::new(store.clone(), t.agent.clone(), t.daily.clone()));
    Ok(AgentParts {
        enricher,
        chat,
        embedder: SimilarityEmbedder::new(embedder),
        triage,
        chat_model,
        tools,
        budgets,
        triage_settings,
    })
}

fn llm_settings(
    s: &crate::settings::Settings,
    base_url: &str,
    model: String,
) -> heron_llm::LlmSettings {
    let mut llm = heron_llm::LlmSettings::new(base_url, model);
    llm.api_key = s.llm_api_key.clone().filter(|k| !k.is_empty());
    llm.embedding_model = s.embedding_model.clone();
    llm.embedding_dimensions = s.embedding_dimensions;
    llm.timeout = Duration::from_secs(s.llm_timeout);
    llm.max_retries = s.llm_max_retries;
    if let (Some(api_version), Some(deployment)) =
        (&s.llm_azure_api_version, &s.llm_azure_deployment)
    {
        llm.azure = Some(heron_llm::AzureSettings {
            api_version: api_version.clone(),
            deployment: deployment.clone(),
            embedding_deployment: s.llm_azure_embedding_deployment.clone(),
        });
    }
    llm
}
