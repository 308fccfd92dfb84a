//! Starting and stopping Heron's parts from [`Settings`].

use crate::settings::Settings;
use anyhow::{Context, bail};
use heron_app::{
    AlertEmbeddingSettings, AlertEmbeddingWorker, Intake, PolicyHandle, SlackService, SlackWorker,
    TriageWorker, Worker,
};
use heron_core::ports::Store;
use heron_policy::{LoadOptions, PolicySet, RegoVersion};
use heron_server::{AuthConfig, AuthMode, ServerSettings, ServerState};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Opens (and migrates) the configured database.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    heron_store::open_store(
        settings.database_url.as_deref(),
        &settings.data_dir,
        settings.database_max_connections,
    )
    .await
    .with_context(|| match &settings.database_url {
        Some(url) => format!(
            "cannot open database {}",
            crate::settings::redact_url_password(url)
        ),
        None => format!(
            "cannot open the SQLite database in {}",
            settings.data_dir.display()
        ),
    })
}

pub fn rego_version(settings: &Settings) -> anyhow::Result<RegoVersion> {
    match settings.rego_version.as_str() {
        "v1" | "1" => Ok(RegoVersion::V1),
        "v0" | "0" => Ok(RegoVersion::V0),
        other => bail!("rego_version must be v1 or v0, got {other:?}"),
    }
}

/// Loads and compiles the policy folders; a compile error names file:line:column.
pub fn load_policies(settings: &Settings) -> anyhow::Result<PolicySet> {
    let options = LoadOptions {
        version: rego_version(settings)?,
        eval_timeout: Duration::from_millis(settings.policy_timeout_ms.max(1)),
    };
    Ok(PolicySet::load(&settings.policies, &options)?)
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(heron_app::metrics::STAGE_SECONDS.into()),
                    &buckets,
                )
                .ok()?
                .install_recorder()
                .ok()?;
            heron_app::metrics::describe();
            Some(recorder)
        })
        .clone()
}

/// Decides webhook/API authentication. Without any configured token (and without
/// `no_auth`), a random token is generated once into `data_dir/bootstrap-token` so that a
/// first start is both usable and closed.
pub fn auth_mode(settings: &Settings) -> anyhow::Result<AuthMode> {
    if settings.no_auth {
        if !settings.addr.ip().is_loopback() {
            bail!(
                "--no-auth is only allowed on a loopback address, not {}; configure auth.tokens instead",
                settings.addr
            );
        }
        return Ok(AuthMode::Disabled);
    }
    for (schema, tokens) in &settings.auth.schema_tokens {
        if tokens.iter().any(|t| t.trim().is_empty()) {
            bail!("auth.schema_tokens.{schema} holds an empty token; remove it or set a value");
        }
    }
    let mut config = AuthConfig {
        tokens: settings
            .auth
            .tokens
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect(),
        schema_tokens: settings.auth.schema_tokens.clone(),
    };
    if config.tokens.is_empty() && config.schema_tokens.values().all(Vec::is_empty) {
        let path = settings.data_dir.join("bootstrap-token");
        let token = bootstrap_token(&path)?;
        tracing::warn!(
            path = %path.display(),
            "no auth.tokens configured: webhooks and the API accept the generated token in this file"
        );
        config.tokens.push(token);
    }
    Ok(AuthMode::Tokens(config))
}

fn bootstrap_token(path: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let token = format!("heron_{}", uuid::Uuid::new_v4().simple());
    std::fs::write(path, format!("{token}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(token)
}

/// The policies, reloadable from their folders (see [`crate::reload`]), with the folder watch
/// and SIGHUP listener started; both stop on `stop`.
fn reloadable_policies(
    settings: &Settings,
    stop: &watch::Receiver<bool>,
    audit: &crate::reload::AuditStore,
) -> anyhow::Result<(PolicyHandle, Option<notify::RecommendedWatcher>)> {
    let loader = Arc::new(crate::reload::FolderLoader::new(settings));
    let policies = PolicyHandle::reloadable(Arc::new(load_policies(settings)?), loader);
    crate::reload::reload_on_sighup(policies.clone(), stop.clone(), audit.clone());
    let watcher = if settings.policy_watch_debounce_ms > 0 {
        Some(crate::reload::watch_folders(
            &settings.policies,
            policies.clone(),
            Duration::from_millis(settings.policy_watch_debounce_ms),
            stop.clone(),
            audit.clone(),
        )?)
    } else {
        None
    };
    Ok((policies, watcher))
}

/// Google ID tokens on the Pub/Sub webhook, when `pubsub_audience` is set.
fn pubsub_oidc(settings: &Settings) -> anyhow::Result<Option<heron_server::PubsubOidcSettings>> {
    let Some(audience) = settings
        .pubsub_audience
        .clone()
        .filter(|a| !a.trim().is_empty())
    else {
        if settings.pubsub_service_account.is_some() || settings.pubsub_jwks_url.is_some() {
            bail!("pubsub_service_account and pubsub_jwks_url need pubsub_audience");
        }
        return Ok(None);
    };
    if settings.pubsub_service_account.is_none() {
        tracing::warn!(
            "pubsub_audience without pubsub_service_account: any Google-signed ID token for that audience is accepted on the Pub/Sub webhook"
        );
    }
    Ok(Some(heron_server::PubsubOidcSettings {
        audience,
        service_account: settings.pubsub_service_account.clone(),
        jwks_url: settings
            .pubsub_jwks_url
            .clone()
            .unwrap_or_else(|| heron_server::GOOGLE_JWKS_URL.to_owned()),
    }))
}

/// How far back a tuning draft's replay looks.
pub const TUNING_REPLAY_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// A running server (and, unless disabled, its in-process worker).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub policies: PolicyHandle,
    /// Watches the policy folders while it lives.
    _watcher: Option<notify::RecommendedWatcher>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    worker: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests and events finish, and waits.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(worker) = self.worker {
            worker.await.context("worker task failed")?;
        }
        self.server.await.context("server task failed")??;
        Ok(())
    }

    /// Runs until SIGINT/SIGTERM, then shuts down gracefully within [`SHUTDOWN_GRACE`].
    /// A worker or server task that ends on its own (a panic, a listener error) is an error
    /// exit rather than a process that looks alive but no longer works.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let unexpected = {
            let worker = async {
                match self.worker.as_mut() {
                    Some(worker) => worker.await.map_err(anyhow::Error::from),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown_signal() => None,
                ended = worker => Some(match ended {
                    Ok(()) => anyhow::anyhow!("the worker stopped unexpectedly"),
                    Err(e) => anyhow::anyhow!("the worker task failed: {e}"),
                }),
                ended = &mut self.server => Some(match ended {
                    Ok(Ok(())) => anyhow::anyhow!("the HTTP server stopped unexpectedly"),
                    Ok(Err(e)) => anyhow::anyhow!("the HTTP server failed: {e}"),
                    Err(e) => anyhow::anyhow!("the HTTP server task failed: {e}"),
                }),
            }
        };
        if let Some(error) = unexpected {
            tracing::error!(error = %error, "stopping");
            let _ = self.shutdown.send(true);
            self.server.abort();
            if let Some(worker) = self.worker {
                worker.abort();
            }
            return Err(error);
        }
        tracing::info!("shutting down: finishing in-flight requests and events");
        tokio::time::timeout(SHUTDOWN_GRACE, self.shutdown())
            .await
            .map_err(|_| shutdown_overran())?
    }
}

/// How long a graceful shutdown may take before the process exits anyway; leases of events
/// still in flight then expire and the events are redelivered, so nothing is lost.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

fn shutdown_overran() -> anyhow::Error {
    anyhow::anyhow!(
        "shutdown did not finish within {} s; unfinished events will be redelivered when their leases expire",
        SHUTDOWN_GRACE.as_secs()
    )
}

/// Starts the HTTP server on `settings.addr` (port 0 picks a free one) with a worker inside
/// when `settings.worker.enabled`.
pub async fn start_server(settings: &Settings) -> anyhow::Result<RunningServer> {
    let auth = auth_mode(settings)?;
    let (shutdown, mut on_shutdown) = watch::channel(false);
    let audit = crate::reload::AuditStore::default();
    let (policies, watcher) = reloadable_policies(settings, &on_shutdown, &audit)?;
    let store = open_store(settings).await?;
    let _ = audit.set(store.clone());
    let wake = Arc::new(Notify::new());
    let intake = Intake::new(store.clone(), wake.clone());
    let server_settings = ServerSettings {
        max_body_bytes: settings.max_body_bytes,
        request_timeout: std::time::Duration::from_secs(settings.request_timeout_secs),
        max_concurrent_requests: settings.max_concurrent_requests,
        auth,
        sns: heron_server::SnsSettings {
            allowed_hosts: settings.sns.allowed_hosts.clone(),
            confirm_subscriptions: settings.sns.confirm_subscriptions,
            allowed_topic_arns: settings.sns.allowed_topic_arns.clone(),
            allow_insecure_urls: settings.sns.allow_insecure_urls,
        },
        rate_limits: settings.rate_limit.to_server(),
        oidc: oidc(settings)?,
        auth_policy_env: settings
            .auth_policy_env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
            .collect(),
        pubsub_oidc: pubsub_oidc(settings)?,
    };
    let agent = crate::agent::build(settings, store.clone()).await?;
    let state = ServerState::new(
        store.clone(),
        intake,
        policies.clone(),
        server_settings,
        metrics_handle(),
    )?
    .with_agent(heron_server::AgentState {
        embedder: agent.embedder.clone(),
        chat: agent.chat.clone(),
        enabled: agent.triage.is_some(),
        tools: agent.tool_names(),
    })
    .with_tuning(heron_server::TuningState {
        workbench: Arc::new(crate::reload::FolderLoader::new(settings)),
        model: agent.chat_model.clone(),
        replay_window: TUNING_REPLAY_WINDOW,
        dedup_window: settings.worker.to_app().dedup_window,
    });
    let slack = slack(settings, &store, &policies, &agent).await?;
    let state = match &slack {
        Some((service, verifier)) => state.with_slack(heron_server::SlackState {
            service: service.clone(),
            verifier: verifier.clone(),
        }),
        None => state,
    };
    let state_has_slack = slack.is_some();
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    let addr = listener.local_addr()?;
    let app = heron_server::router(state);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = on_shutdown.wait_for(|stop| *stop).await;
        })
        .await
    });
    let worker = settings.worker.enabled.then(|| {
        let worker = Worker::new(
            store.clone(),
            policies.clone(),
            settings.worker.to_app(),
            wake,
            agent.enricher.clone(),
        );
        let slack = slack.map(|(service, _)| service);
        let triage = triage_worker(&store, &agent, slack.as_ref()).with_breaker(worker.breaker());
        spawn_workers(
            worker,
            triage,
            alert_embedding_worker(&store, &agent),
            slack.map(SlackWorker::new),
            shutdown.subscribe(),
        )
    });
    tracing::info!(%addr, backend = store.backend(), worker = settings.worker.enabled, slack = state_has_slack, "heron is serving");
    Ok(RunningServer {
        addr,
        store,
        policies,
        _watcher: watcher,
        shutdown,
        server,
        worker,
    })
}

/// A stand-alone worker (`heron worker`).
pub struct RunningWorker {
    pub policies: PolicyHandle,
    _watcher: Option<notify::RecommendedWatcher>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningWorker {
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("worker task failed")
    }

    /// Kills the worker without finishing or releasing anything, as a crash would; its
    /// leases are left to expire.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Runs until SIGINT/SIGTERM (then stops within [`SHUTDOWN_GRACE`]), or fails if the
    /// worker task ends on its own.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown_signal() => {}
            ended = &mut self.task => {
                let error = match ended {
                    Ok(()) => anyhow::anyhow!("the worker stopped unexpectedly"),
                    Err(e) => anyhow::anyhow!("the worker task failed: {e}"),
                };
                tracing::error!(error = %error, "stopping");
                return Err(error);
            }
        }
        tracing::info!("shutting down: finishing in-flight events");
        tokio::time::timeout(SHUTDOWN_GRACE, self.shutdown())
            .await
            .map_err(|_| shutdown_overran())?
    }
}

pub async fn start_worker(settings: &Settings) -> anyhow::Result<RunningWorker> {
    let (shutdown, stop) = watch::channel(false);
    let audit = crate::reload::AuditStore::default();
    let (policies, watcher) = reloadable_policies(settings, &stop, &audit)?;
    let store = open_store(settings).await?;
    let _ = audit.set(store.clone());
    let agent = crate::agent::build(settings, store.clone()).await?;
    let slack = slack(settings, &store, &policies, &agent)
        .await?
        .map(|(service, _)| service);
    let triage = triage_worker(&store, &agent, slack.as_ref());
    let alerts = alert_embedding_worker(&store, &agent);
    let slack = slack.map(SlackWorker::new);
    let worker = Worker::new(
        store,
        policies.clone(),
        settings.worker.to_app(),
        Arc::new(Notify::new()),
        agent.enricher.clone(),
    );
    let triage = triage.with_breaker(worker.breaker());
    let task = spawn_workers(worker, triage, alerts, slack, stop);
    Ok(RunningWorker {
        policies,
        _watcher: watcher,
        shutdown,
        task,
    })
}

/// The triage worker; with Slack, each run's progress is shown in its ticket's thread.
fn triage_worker(
    store: &Arc<dyn Store>,
    agent: &crate::agent::AgentParts,
    slack: Option<&SlackService>,
) -> TriageWorker {
    let worker = TriageWorker::new(
        store.clone(),
        agent.embedder.clone(),
        agent.triage.clone(),
        agent.triage_settings.clone(),
        Arc::new(Notify::new()),
    );
    match slack {
        Some(slack) => worker.with_progress(Arc::new(slack.clone())),
        None => worker,
    }
}

/// Slack, when a bot token and a signing secret are configured: the token is checked
/// (`auth.test`) here, so a bad one stops the start with a clear error.
async fn slack(
    settings: &Settings,
    store: &Arc<dyn Store>,
    policies: &PolicyHandle,
    agent: &crate::agent::AgentParts,
) -> anyhow::Result<Option<(SlackService, Arc<dyn heron_core::slack::RequestVerifier>)>> {
    let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let (token, secret) = match (
        set(&settings.slack_bot_token),
        set(&settings.slack_signing_secret),
    ) {
        (Some(token), Some(secret)) => (token, secret),
        (None, None) => return Ok(None),
        _ => bail!("slack_bot_token and slack_signing_secret are set together, or neither"),
    };
    let channel = settings
        .slack_channel
        .clone()
        .filter(|c| !c.trim().is_empty())
        .context("Slack is configured: slack_channel (the default channel) is required too")?;
    let policy = match settings.slack_authorization.as_str() {
        "allowlist" | "allow-list" | "" => false,
        "policy" => true,
        other => bail!("slack_authorization must be allowlist or policy, got {other:?}"),
    };
    let client = heron_slack::SlackClient::new(&heron_slack::SlackClientSettings {
        bot_token: token,
        base_url: settings.slack_base_url.clone(),
    })?;
    let service = SlackService::connect(
        store.clone(),
        Arc::new(client),
        agent.chat.clone(),
        policies.clone(),
        heron_app::SlackSettings {
            default_channel: channel,
            dashboard_url: settings.public_url.clone(),
            access: heron_app::SlackAccess {
                users: settings.slack_allowed_users.clone(),
                channels: settings.slack_allowed_channels.clone(),
                policy,
            },
            ..heron_app::SlackSettings::default()
        },
    )
    .await
    .context("cannot start Slack")?;
    Ok(Some((
        service,
        Arc::new(heron_slack::SigningSecret::new(secret)),
    )))
}

/// Dashboard sign-in, when an issuer is configured; the other OIDC settings are then
/// required.
fn oidc(settings: &Settings) -> anyhow::Result<Option<Arc<heron_server::Oidc>>> {
    let Some(issuer) = &settings.oidc_issuer else {
        return Ok(None);
    };
    let required = |value: &Option<String>, key: &str| {
        value
            .clone()
            .with_context(|| format!("oidc_issuer is set: {key} is required too"))
    };
    let session_secret = required(&settings.session_secret, "session_secret")?;
    let oidc = heron_server::Oidc::new(heron_server::OidcSettings {
        issuer: issuer.clone(),
        client_id: required(&settings.oidc_client_id, "oidc_client_id")?,
        client_secret: settings.oidc_client_secret.clone(),
        redirect_url: required(&settings.oidc_redirect_url, "oidc_redirect_url")?,
        session_secret: session_secret.into_bytes(),
        secure_cookies: !settings.addr.ip().is_loopback(),
    })?;
    Ok(Some(oidc))
}

fn alert_embedding_worker(
    store: &Arc<dyn Store>,
    agent: &crate::agent::AgentParts,
) -> AlertEmbeddingWorker {
    AlertEmbeddingWorker::new(
        store.clone(),
        agent.embedder.clone(),
        AlertEmbeddingSettings::default(),
    )
}

/// The event worker, the triage worker and the alert embedder as one task: all stop on
/// `stop`, and the task ends (so the process notices and exits) as soon as one ends on its
/// own.
fn spawn_workers(
    worker: Worker,
    triage: TriageWorker,
    alerts: AlertEmbeddingWorker,
    slack: Option<SlackWorker>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let stopping = stop.clone();
    tokio::spawn(async move {
        let mut loops = tokio::task::JoinSet::new();
        let (triage_stop, alerts_stop) = (stop.clone(), stop.clone());
        if let Some(slack) = slack {
            let slack_stop = stop.clone();
            loops.spawn(async move { slack.run(slack_stop).await });
        }
        loops.spawn(async move { worker.run(stop).await });
        loops.spawn(async move { triage.run(triage_stop).await });
        loops.spawn(async move { alerts.run(alerts_stop).await });
        let Some(first) = loops.join_next().await else {
            return;
        };
        if *stopping.borrow() {
            while loops.join_next().await.is_some() {}
        } else {
            loops.abort_all();
        }
        if let Err(e) = first
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Policy roots, defaulting to `./policies`.
pub fn policy_roots(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from("policies")]
    } else {
        paths.to_vec()
    }
}
