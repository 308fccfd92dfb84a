use heron_core::ports::StoreError;
use heron_core::ticket::LifecycleError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::NotFound(what),
            StoreError::Conflict(what) => AppError::Conflict(what),
            StoreError::LeaseLost(id) => AppError::Conflict(format!("lease on event {id} lost")),
            StoreError::TriageLeaseLost(id) => {
                AppError::Conflict(format!("triage lease on ticket {id} lost"))
            }
            StoreError::Unavailable(what) => AppError::Unavailable(what),
            StoreError::Invalid(what) => AppError::Invalid(what),
            StoreError::Backend(what) => AppError::Internal(what),
        }
    }
}
