//! Reloading the policy folders while serving: the loader behind [`PolicyHandle::reload`]
//! (compile, then the set's own `test_*` rules), a debounced watch of the folders, and SIGHUP.
//!
//! Every trigger goes through the same [`PolicyHandle::reload`], which serialises reloads,
//! swaps atomically and keeps the old set when the new one is refused.

use crate::runtime::load_policies;
use crate::settings::Settings;
use heron_app::PolicyHandle;
use heron_core::policy::{
    PolicyEngine, PolicyLoadFailure, PolicyLoader, PolicyTrial, PolicyWorkbench,
};
use heron_policy::testing::Outcome;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Loads the configured folders and runs their tests; only a set whose tests all pass is
/// handed out.
pub struct FolderLoader {
    settings: Settings,
}

impl FolderLoader {
    pub fn new(settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
        }
    }
}

impl PolicyLoader for FolderLoader {
    fn load(&self) -> Result<Arc<dyn PolicyEngine>, PolicyLoadFailure> {
        let set = load_policies(&self.settings).map_err(|e| PolicyLoadFailure(format!("{e:#}")))?;
        tested(set).map(|(set, _)| set as Arc<dyn PolicyEngine>)
    }
}

/// Tuning drafts are tried on the configured folders, with their files placed under the
/// first one.
impl PolicyWorkbench for FolderLoader {
    fn trial(&self, extra: &[(String, String)]) -> Result<PolicyTrial, PolicyLoadFailure> {
        let root = self
            .settings
            .policies
            .first()
            .cloned()
            .unwrap_or_else(|| std::path::PathBuf::from("policies"));
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(path, text)| (root.join(path).to_string_lossy().into_owned(), text.clone()))
            .collect();
        let options = heron_policy::LoadOptions {
            version: crate::runtime::rego_version(&self.settings)
                .map_err(|e| PolicyLoadFailure(format!("{e:#}")))?,
            eval_timeout: Duration::from_millis(self.settings.policy_timeout_ms.max(1)),
        };
        let set =
            heron_policy::PolicySet::load_with_extra(&self.settings.policies, &extra, &options)
                .map_err(|e| PolicyLoadFailure(e.to_string()))?;
        let (set, total) = tested(set)?;
        Ok(PolicyTrial {
            engine: set,
            tests_passed: total,
            tests_total: total,
        })
    }
}

/// The set if all its tests pass (with how many ran), else which ones do not.
fn tested(
    set: heron_policy::PolicySet,
) -> Result<(Arc<heron_policy::PolicySet>, usize), PolicyLoadFailure> {
    {
        let report = heron_policy::testing::run(&set, |_| true);
        if !report.passed() {
            let failing: Vec<String> = report
                .results
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error))
                .map(|r| {
                    let detail = r
                        .output
                        .last()
                        .map(|o| format!(": {o}"))
                        .unwrap_or_default();
                    format!(
                        "{}:{}: data.{}.{} {}{detail}",
                        r.file,
                        r.row,
                        r.package,
                        r.name,
                        r.outcome.label()
                    )
                })
                .collect();
            return Err(PolicyLoadFailure(format!(
                "{} of {} policy tests do not pass: {}",
                failing.len(),
                report.results.len(),
                failing.join("; ")
            )));
        }
        Ok((Arc::new(set), report.count(Outcome::Pass)))
    }
}

/// Whether a file-system event is a change worth reloading for: a create, write, rename or
/// removal of a file that is not hidden nor an editor's scratch file. Reads (access events)
/// and metadata changes are not: a reload reads every file, and must not trigger another.
fn relevant(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    let kind = matches!(
        event.kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            | EventKind::Any
    );
    kind && event.paths.iter().any(|p| !scratch(p))
}

fn scratch(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp")
}

/// Watches the policy folders and reloads once per burst of changes (after `debounce` of
/// quiet). The returned watcher must be kept alive for as long as watching should last.
pub fn watch_folders(
    roots: &[std::path::PathBuf],
    handle: PolicyHandle,
    debounce: Duration,
    mut stop: watch::Receiver<bool>,
    audit: AuditStore,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if relevant(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "policy folder watch error"),
        })?;
    for root in roots {
        watcher.watch(root, RecursiveMode::Recursive).map_err(|e| {
            anyhow::anyhow!("cannot watch the policy folder {}: {e}", root.display())
        })?;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Gather the rest of the burst: an editor's save or a `git pull` is many events.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reload_in_background(&handle, "watch", &audit).await;
        }
    });
    Ok(watcher)
}

/// Reloads on SIGHUP until `stop`. The handler is installed before this returns, so a SIGHUP
/// sent once the server is up never falls back to the default action (exit). Must be called
/// inside the runtime.
pub fn reload_on_sighup(handle: PolicyHandle, mut stop: watch::Receiver<bool>, audit: AuditStore) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload via the API instead");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    got = hangup.recv() => if got.is_none() { return },
                }
                reload_in_background(&handle, "sighup", &audit).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (handle, stop, audit);
}

/// Where reloads that no one asked for over the API (watch, SIGHUP) are audited: set once the
/// store is open (policies load before it).
pub type AuditStore = Arc<std::sync::OnceLock<Arc<dyn heron_core::ports::Store>>>;

async fn reload_in_background(handle: &PolicyHandle, trigger: &'static str, audit: &AuditStore) {
    let handle = handle.clone();
    // The outcome is logged and recorded by the handle itself, and audited here.
    match tokio::task::spawn_blocking(move || handle.reload(trigger)).await {
        Err(e) => tracing::error!(error = %e, "policy reload task failed"),
        Ok(outcome) => {
            let details = match &outcome {
                Ok(status) => serde_json::json!({ "ok": true, "generation": status.generation }),
                Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
            };
            if let Some(store) = audit.get() {
                heron_app::audit::record(
                    store.as_ref(),
                    &heron_app::Actor::system(trigger),
                    "policy.reload",
                    None,
                    Some(trigger.to_owned()),
                    details,
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, EventKind, ModifyKind};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(path.into())
    }

    #[test]
    fn writes_creates_and_removals_count_but_reads_and_scratch_files_do_not() {
        assert!(relevant(&event(
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            "/p/triage.rego"
        )));
        assert!(relevant(&event(
            EventKind::Create(CreateKind::File),
            "/p/ingest/new.rego"
        )));
        assert!(!relevant(&event(
            EventKind::Access(AccessKind::Any),
            "/p/triage.rego"
        )));
        assert!(!relevant(&event(
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            "/p/.triage.rego.swp"
        )));
        assert!(!relevant(&event(
            EventKind::Create(CreateKind::File),
            "/p/triage.rego~"
        )));
    }
}
