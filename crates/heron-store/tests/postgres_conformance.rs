//! The conformance suite against PostgreSQL (feature `postgres-tests`): each test gets its own
//! database `heron_test_<random>`, created through `HERON_TEST_DATABASE_URL` and dropped when
//! the test passed (a failed test leaves its database for inspection).

#![cfg(feature = "postgres-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use heron_core::ports::Store;
use heron_core::testing::StoreFixture;
use heron_core::testing::conformance::{new_event, us};
use heron_store::PgStore;
use sqlx::Connection;
use std::sync::Arc;

fn maintenance_url() -> String {
    std::env::var("HERON_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "HERON_TEST_DATABASE_URL is not set: the postgres-tests feature needs a PostgreSQL \
             server with pgvector, e.g. \
             HERON_TEST_DATABASE_URL=postgres://heron:heron@127.0.0.1:55432/heron \
             (scripts/postgres start)"
        )
    })
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let host = host_and_path.split('/').next().unwrap_or(host_and_path);
    format!("{}{host}/{database}{query}", &base[..scheme_end])
}

struct PgFixture {
    store: Arc<PgStore>,
    database: String,
}

impl StoreFixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    async fn teardown(self) {
        self.store.close().await;
        let mut admin = sqlx::PgConnection::connect(&maintenance_url())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

pub async fn fresh_database() -> (String, String) {
    let url = maintenance_url();
    // Only [0-9a-f] from a UUID: safe to splice into the statement.
    let database = format!("heron_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to HERON_TEST_DATABASE_URL: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    (with_database(&url, &database), database)
}

async fn fresh_store() -> PgFixture {
    let (url, database) = fresh_database().await;
    let store = PgStore::connect(&url, 8)
        .await
        .expect("connect and migrate");
    PgFixture {
        store: Arc::new(store),
        database,
    }
}

heron_core::conformance_tests!(fresh_store().await);

#[tokio::test]
async fn open_store_picks_postgres_for_a_postgres_url() {
    let (url, database) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let store = heron_store::open_store(Some(&url), dir.path(), 2)
        .await
        .unwrap();
    assert_eq!(store.backend(), "postgres");
    store.ping().await.unwrap();
    assert_eq!(
        heron_store::migrate(Some(&url), dir.path()).await.unwrap(),
        "postgres"
    );
    assert!(!dir.path().join("heron.db").exists());
    drop(store);
    PgFixture {
        store: Arc::new(PgStore::connect(&url, 1).await.unwrap()),
        database,
    }
    .teardown()
    .await;
}

#[test]
fn the_database_name_is_replaced_in_the_url() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/heron?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
}

/// Intake and API hosts stamp `received_at` and retry times with their own clocks; a clock
/// running ahead of the database's must not hold events back.
#[tokio::test]
async fn due_times_from_a_clock_running_ahead_are_capped_at_the_database_clock() {
    let fixture = fresh_store().await;
    let store = fixture.store();
    let ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let one = store
        .accept_event(new_event("falco", None, ahead))
        .await
        .unwrap()
        .event_id;
    let batch = store
        .accept_events(vec![new_event("falco", None, ahead)])
        .await
        .unwrap()[0]
        .event_id;
    let db_now = store.now().await.unwrap();
    for id in [one, batch] {
        let e = store.get_event(id).await.unwrap().unwrap();
        assert_eq!(
            e.received_at,
            us(ahead),
            "the arrival time is kept as given"
        );
        assert!(e.next_attempt_at.unwrap() <= db_now, "{e:?}");
    }
    let leased = store
        .lease_events(10, db_now, db_now + chrono::Duration::seconds(60), 5)
        .await
        .unwrap();
    assert_eq!(
        leased.len(),
        2,
        "both are due at once by the database's clock"
    );

    // A retry stamped by a host running ahead is due at once too.
    store
        .fail_event(&leased[0].lease, "boom", None)
        .await
        .unwrap();
    store.retry_event(leased[0].event.id, ahead).await.unwrap();
    let db_now = store.now().await.unwrap();
    let again = store
        .lease_events(10, db_now, db_now + chrono::Duration::seconds(60), 5)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![leased[0].event.id]
    );
    fixture.teardown().await;
}
