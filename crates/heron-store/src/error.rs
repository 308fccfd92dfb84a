//! Mapping of database errors onto [`StoreError`]: what a caller can act on.
//!
//! - cannot reach or talk to the database, lock contention, serialization failures →
//!   `Unavailable` (worth retrying);
//! - a unique violation → `Conflict` (a duplicate id or key: the stored state disagrees);
//! - a value the database cannot hold (PostgreSQL SQLSTATE class 22, "data exception", e.g.
//!   U+0000 in `text` or `jsonb`; SQLite's "too big") → `Invalid`: permanent, storing the same
//!   data again fails the same way;
//! - anything else, including rows that do not decode → `Backend`.

use heron_core::ports::StoreError;

pub(crate) fn corrupt(message: String) -> StoreError {
    StoreError::Backend(message)
}

/// SQLite result codes (primary code in the low byte) that mean "busy, try again".
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

pub(crate) fn map(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_owned());
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
            if is_transient(&code, sqlite) {
                StoreError::Unavailable(error.to_string())
            } else if is_data_error(&code, sqlite) {
                StoreError::Invalid(error.to_string())
            } else {
                StoreError::Backend(error.to_string())
            }
        }
        _ => StoreError::Backend(error.to_string()),
    }
}

/// Whether a database error code (SQLSTATE on PostgreSQL, extended result code on SQLite)
/// names a condition that goes away by itself.
fn is_transient(code: &str, sqlite: bool) -> bool {
    if sqlite {
        return code
            .parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED));
    }
    // 08: connection exception; 53: insufficient resources; 57P0x: shutting down or
    // restarting; 40001/40P01: serialization failure or deadlock, retried as a whole.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code == "40001"
        || code == "40P01"
}

/// SQLite's "string or blob too big".
const SQLITE_TOOBIG: i32 = 18;

/// Whether a database error code says the data itself cannot be stored.
fn is_data_error(code: &str, sqlite: bool) -> bool {
    if sqlite {
        return code.parse::<i32>().is_ok_and(|c| c & 0xff == SQLITE_TOOBIG);
    }
    code.starts_with("22")
}

pub(crate) fn map_migrate(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::Execute(inner) => map(inner),
        other => StoreError::Backend(format!("migration failed: {other}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_connection_codes_are_transient() {
        assert!(is_transient("5", true));
        assert!(is_transient("517", true), "SQLITE_BUSY_SNAPSHOT");
        assert!(!is_transient("19", true), "SQLITE_CONSTRAINT");
        assert!(is_transient("08006", false));
        assert!(is_transient("57P01", false));
        assert!(is_transient("40P01", false));
        assert!(!is_transient("23503", false), "foreign key violation");
    }

    #[test]
    fn postgres_data_exceptions_are_data_errors_and_constraint_violations_are_not() {
        assert!(
            is_data_error("22P05", false),
            "unsupported Unicode escape (jsonb U+0000)"
        );
        assert!(
            is_data_error("22021", false),
            "invalid byte sequence (text U+0000)"
        );
        assert!(!is_data_error("23503", false), "foreign key violation");
        assert!(!is_data_error("40P01", false), "deadlock");
        assert!(is_data_error("18", true), "SQLITE_TOOBIG");
        assert!(
            !is_data_error("22", true),
            "a SQLite code is not a SQLSTATE"
        );
    }

    #[test]
    fn pool_exhaustion_is_unavailable() {
        assert!(matches!(
            map(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}
