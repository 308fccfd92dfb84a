//! The conformance suite against SQLite: a fresh database file per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::ports::Store;
use heron_core::testing::StoreFixture;
use heron_store::SqliteStore;
use std::sync::Arc;

struct SqliteFixture {
    store: Arc<SqliteStore>,
    /// Deleted when the fixture drops, after the test.
    _dir: tempfile::TempDir,
}

impl StoreFixture for SqliteFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    async fn teardown(self) {
        self.store.close().await;
    }
}

async fn fresh_store() -> SqliteFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("heron.db"))
        .await
        .expect("open SQLite store");
    SqliteFixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

heron_core::conformance_tests!(fresh_store().await);
