//! The currently loaded policy set, swappable at runtime (reload) while workers hold the
//! snapshot they started an event with.
//!
//! A reload ([`PolicyHandle::reload`]) asks the [`PolicyLoader`] for a fresh set, which it
//! only hands out once the set compiled and its own `test_*` rules passed; the set is then
//! swapped in atomically (readers never wait, never see half a set). A refused set leaves the
//! old one in force and its error in [`ReloadStatus`], the log and the metrics, until a
//! later reload succeeds. Reloads are serialised: two triggers at once load twice, one after
//! the other, and the later one wins.

use crate::metrics::{POLICY_GENERATION, POLICY_RELOAD_FAILING, POLICY_RELOADS};
use arc_swap::ArcSwap;
use heron_core::Timestamp;
use heron_core::policy::{PolicyEngine, PolicyLoadFailure, PolicyLoader};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// What the last reloads did, for `GET /api/v1/policies` and `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadStatus {
    /// Sets loaded so far, the one at start included (1 after start).
    pub generation: u64,
    /// When the set in force was loaded.
    pub loaded_at: Option<Timestamp>,
    /// The last reload attempt: when, what triggered it, and its error if it was refused.
    pub last_attempt_at: Option<Timestamp>,
    pub last_trigger: Option<String>,
    /// Set while the newest policies on disk are refused (the previous set stays in force).
    pub last_error: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

#[derive(Clone)]
pub struct PolicyHandle {
    current: Arc<ArcSwap<Arc<dyn PolicyEngine>>>,
    loader: Option<Arc<dyn PolicyLoader>>,
    status: Arc<Mutex<ReloadStatus>>,
    /// Serialises reloads.
    reloading: Arc<Mutex<()>>,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("info", &self.current().info())
            .field("reloadable", &self.loader.is_some())
            .finish()
    }
}

/// Why [`PolicyHandle::reload`] did not swap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("policies cannot be reloaded: this process was started without a policy folder")]
    NotReloadable,
    #[error("the new policies were refused, the previous set stays in force: {0}")]
    Refused(#[from] PolicyLoadFailure),
}

impl PolicyHandle {
    /// A fixed set (tests, tools): [`reload`](Self::reload) answers `NotReloadable`.
    pub fn new(engine: Arc<dyn PolicyEngine>) -> Self {
        Self::build(engine, None)
    }

    /// A set that `loader` can load afresh.
    pub fn reloadable(engine: Arc<dyn PolicyEngine>, loader: Arc<dyn PolicyLoader>) -> Self {
        Self::build(engine, Some(loader))
    }

    fn build(engine: Arc<dyn PolicyEngine>, loader: Option<Arc<dyn PolicyLoader>>) -> Self {
        metrics::gauge!(POLICY_GENERATION).set(1.0);
        metrics::gauge!(POLICY_RELOAD_FAILING).set(0.0);
        Self {
            current: Arc::new(ArcSwap::from_pointee(engine)),
            loader,
            status: Arc::new(Mutex::new(ReloadStatus {
                generation: 1,
                loaded_at: Some(chrono::Utc::now()),
                ..ReloadStatus::default()
            })),
            reloading: Arc::new(Mutex::new(())),
        }
    }

    /// The policy set in force now; callers keep it for the whole of one event.
    pub fn current(&self) -> Arc<dyn PolicyEngine> {
        Arc::clone(&self.current.load())
    }

    /// Swaps in `engine` unconditionally.
    pub fn replace(&self, engine: Arc<dyn PolicyEngine>) {
        self.current.store(Arc::new(engine));
        let mut status = lock(&self.status);
        status.generation += 1;
        status.loaded_at = Some(chrono::Utc::now());
        metrics::gauge!(POLICY_GENERATION).set(status.generation as f64);
    }

    pub fn status(&self) -> ReloadStatus {
        lock(&self.status).clone()
    }

    pub fn is_reloadable(&self) -> bool {
        self.loader.is_some()
    }

    /// Loads the policies afresh and swaps them in if they compile and pass their own tests;
    /// otherwise keeps the set in force and records why. `trigger` says what asked
    /// (`watch`, `api`, `sighup`). Blocking: compiles and runs tests.
    pub fn reload(&self, trigger: &str) -> Result<ReloadStatus, ReloadError> {
        let Some(loader) = &self.loader else {
            return Err(ReloadError::NotReloadable);
        };
        let _serial = lock(&self.reloading);
        let started = chrono::Utc::now();
        let loaded = loader.load();
        let mut status = lock(&self.status);
        status.last_attempt_at = Some(started);
        status.last_trigger = Some(trigger.to_owned());
        match loaded {
            Ok(engine) => {
                self.current.store(Arc::new(engine));
                status.generation += 1;
                status.loaded_at = Some(chrono::Utc::now());
                status.last_error = None;
                status.reloads_ok += 1;
                metrics::counter!(POLICY_RELOADS, "result" => "ok").increment(1);
                metrics::gauge!(POLICY_GENERATION).set(status.generation as f64);
                metrics::gauge!(POLICY_RELOAD_FAILING).set(0.0);
                tracing::info!(trigger, generation = status.generation, "policies reloaded");
                Ok(status.clone())
            }
            Err(failure) => {
                status.last_error = Some(failure.0.clone());
                status.reloads_failed += 1;
                metrics::counter!(POLICY_RELOADS, "result" => "refused").increment(1);
                metrics::gauge!(POLICY_RELOAD_FAILING).set(1.0);
                tracing::error!(
                    trigger,
                    generation = status.generation,
                    error = %failure,
                    "policy reload refused; the previous set stays in force"
                );
                Err(ReloadError::Refused(failure))
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        // Nothing here panics while holding the lock with a half-written value.
        Err(poisoned) => poisoned.into_inner(),
    }
}
