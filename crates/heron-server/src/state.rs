//! What handlers share.

use crate::sns::SnsVerifier;
use crate::{AuthMode, SnsSettings};
use heron_app::{Intake, PolicyHandle, TicketService};
use heron_core::ports::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Whole-request deadline (reading the body included); past it the answer is 408.
    pub request_timeout: std::time::Duration,
    /// Requests in flight at once; more wait for a slot.
    pub max_concurrent_requests: usize,
    pub auth: AuthMode,
    pub sns: SnsSettings,
    pub rate_limits: crate::RateLimitSettings,
    /// Dashboard sign-in; `None`: pages take an API token (HTTP Basic) only.
    pub oidc: Option<std::sync::Arc<crate::Oidc>>,
    /// The environment variables `data.auth.http` sees as `input.env` (read at start).
    pub auth_policy_env: std::collections::BTreeMap<String, String>,
    /// Google ID tokens required on the Pub/Sub webhook.
    pub pubsub_oidc: Option<crate::PubsubOidcSettings>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: std::time::Duration::from_secs(30),
            max_concurrent_requests: 512,
            auth: AuthMode::Disabled,
            sns: SnsSettings::default(),
            rate_limits: crate::RateLimitSettings::default(),
            oidc: None,
            auth_policy_env: std::collections::BTreeMap::new(),
            pubsub_oidc: None,
        }
    }
}

#[derive(Clone)]
pub struct ServerState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub intake: Intake,
    pub tickets: TicketService,
    pub policies: PolicyHandle,
    pub settings: ServerSettings,
    pub sns: SnsVerifier,
    pub metrics: Option<PrometheusHandle>,
    /// When `/metrics` last refreshed its database-backed gauges.
    pub gauges_refreshed: std::sync::Mutex<Option<std::time::Instant>>,
    pub agent: Option<AgentState>,
    pub tuning: Option<TuningState>,
    pub slack: Option<SlackState>,
    pub usage: crate::access::UsageRecorder,
    pub pubsub_oidc: Option<Arc<crate::PubsubOidc>>,
}

/// What tuning drafts need: a workbench to try changes on the configured policies, and how
/// far back their replay looks.
#[derive(Clone)]
pub struct TuningState {
    pub workbench: Arc<dyn heron_core::policy::PolicyWorkbench>,
    /// Writes the draft when configured (validated like any draft).
    pub model: Option<Arc<dyn heron_core::llm::ChatModel>>,
    /// Replay the events of this long before now.
    pub replay_window: std::time::Duration,
    pub dedup_window: std::time::Duration,
}

/// What the agent routes need: the embedder tickets are compared by, and the chat (only when
/// a model is configured).
#[derive(Clone)]
pub struct AgentState {
    pub embedder: heron_app::SimilarityEmbedder,
    pub chat: Option<heron_app::ChatService>,
    /// Whether new tickets are investigated (a model is configured).
    pub enabled: bool,
    /// Names of the tools offered to the model.
    pub tools: Vec<String>,
}

/// What the Slack endpoints need: the use cases and the request verifier.
#[derive(Clone)]
pub struct SlackState {
    pub service: heron_app::SlackService,
    pub verifier: Arc<dyn heron_core::slack::RequestVerifier>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl ServerState {
    pub fn new(
        store: Arc<dyn Store>,
        intake: Intake,
        policies: PolicyHandle,
        settings: ServerSettings,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, StateError> {
        let sns = SnsVerifier::new(settings.sns.clone()).map_err(StateError::HttpClient)?;
        let pubsub_oidc = settings
            .pubsub_oidc
            .clone()
            .map(crate::PubsubOidc::new)
            .transpose()
            .map_err(StateError::HttpClient)?
            .map(Arc::new);
        Ok(Self {
            inner: Arc::new(Inner {
                tickets: TicketService::new(store.clone()),
                store,
                intake,
                policies,
                sns,
                settings,
                metrics,
                gauges_refreshed: std::sync::Mutex::new(None),
                agent: None,
                tuning: None,
                slack: None,
                usage: crate::access::UsageRecorder::default(),
                pubsub_oidc,
            }),
        })
    }

    /// Adds the agent's parts; call before the state is shared (building the router).
    pub fn with_agent(mut self, agent: AgentState) -> Self {
        match std::sync::Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.agent = Some(agent),
            None => {
                tracing::error!("the agent was added to a server state already shared; ignored")
            }
        }
        self
    }
}

impl ServerState {
    /// Enables tuning drafts; call before the state is shared (building the router).
    pub fn with_tuning(mut self, tuning: TuningState) -> Self {
        match std::sync::Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.tuning = Some(tuning),
            None => tracing::error!("tuning was added to a server state already shared; ignored"),
        }
        self
    }

    /// Adds Slack; call before the state is shared (building the router).
    pub fn with_slack(mut self, slack: SlackState) -> Self {
        match std::sync::Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.slack = Some(slack),
            None => {
                tracing::error!("Slack was added to a server state already shared; ignored")
            }
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot build the HTTP client (is a TLS provider installed?): {0}")]
    HttpClient(reqwest::Error),
}
