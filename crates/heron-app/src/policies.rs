//! The currently loaded policy set, swappable at runtime (reload) while workers hold the
//! snapshot they started an event with.

use heron_core::policy::PolicyEngine;
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct PolicyHandle {
    current: Arc<RwLock<Arc<dyn PolicyEngine>>>,
}

impl std::fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHandle")
            .field("info", &self.current().info())
            .finish()
    }
}

impl PolicyHandle {
    pub fn new(engine: Arc<dyn PolicyEngine>) -> Self {
        Self {
            current: Arc::new(RwLock::new(engine)),
        }
    }

    /// The policy set in force now; callers keep it for the whole of one event.
    pub fn current(&self) -> Arc<dyn PolicyEngine> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            // A panic while swapping cannot leave a half-written Arc: use it as is.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, engine: Arc<dyn PolicyEngine>) {
        match self.current.write() {
            Ok(mut guard) => *guard = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}
