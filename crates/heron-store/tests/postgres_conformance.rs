//! The conformance suite against PostgreSQL (feature `postgres-tests`): each test gets its own
//! database `heron_test_<random>`, created through `HERON_TEST_DATABASE_URL` and dropped when
//! the test passed (a failed test leaves its database for inspection).

#![cfg(feature = "postgres-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use heron_core::TicketId;
use heron_core::ports::{AlertBinding, Disposition, PlannedAlert, Store};
use heron_core::testing::StoreFixture;
use heron_core::testing::conformance::{new_alert, new_event, new_ticket_for, us};
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

/// A ticket opened through the queue at `now`, as the worker opens them.
async fn open_ticket(
    store: &Arc<dyn Store>,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> TicketId {
    let id = store
        .accept_event(new_event("falco", None, now))
        .await
        .unwrap()
        .event_id;
    let leased = store
        .lease_events(1, now, now + chrono::Duration::seconds(60), 5)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(leased.event.id, id);
    let alert = new_alert(id, "falco", key, now);
    let ticket = new_ticket_for(&alert);
    let bindings = store
        .complete_event(
            &leased.lease,
            vec![PlannedAlert {
                alert,
                disposition: Disposition::Open {
                    ticket,
                    seen_since: now - chrono::Duration::hours(1),
                },
            }],
            now,
        )
        .await
        .unwrap();
    match bindings.as_slice() {
        [AlertBinding::Opened(id)] => *id,
        other => panic!("expected one opened ticket, got {other:?}"),
    }
}

async fn index_exists(url: &str, name: &str) -> bool {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// HNSW needs a fixed dimension: the first embedding of a dimension creates that dimension's
/// partial index, a search is written so that the planner can use it, and opening the store
/// recreates an index that went missing.
#[tokio::test]
async fn each_dimension_gets_its_hnsw_index_and_searches_can_use_it() {
    let (url, database) = fresh_database().await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url, 4).await.unwrap());
    let now = store.now().await.unwrap();
    let a = open_ticket(&store, "a", now).await;
    let b = open_ticket(&store, "b", now).await;
    assert!(!index_exists(&url, "ticket_embeddings_hnsw_8").await);
    let v8: Vec<f32> = (0..8).map(|i| i as f32).collect();
    store.put_ticket_embedding(a, "m", &v8).await.unwrap();
    store.put_ticket_embedding(b, "m", &v8[..3]).await.unwrap();
    assert!(index_exists(&url, "ticket_embeddings_hnsw_8").await);
    assert!(index_exists(&url, "ticket_embeddings_hnsw_3").await);

    // With a handful of rows the planner rightly prefers a scan; forbidding scans shows that
    // the search's expression and predicate match the index.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN {}",
        heron_store::similar_sql(8, 10)
    )))
    .bind("m")
    .bind(pgvector::Vector::from(v8.clone()))
    .bind(None::<uuid::Uuid>)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("ticket_embeddings_hnsw_8"), "{plan}");
    let found = store.similar_tickets("m", &v8, 10, None).await.unwrap();
    assert_eq!(
        found.iter().map(|s| s.ticket_id).collect::<Vec<_>>(),
        vec![a]
    );

    sqlx::query("DROP INDEX ticket_embeddings_hnsw_8")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let reopened = PgStore::connect(&url, 1).await.unwrap();
    assert!(index_exists(&url, "ticket_embeddings_hnsw_8").await);
    let explained = reopened.explain_similar("m", &v8, 10).await.unwrap();
    assert!(explained.contains("Limit"), "{explained}");
    reopened.close().await;
    drop(store);
    PgFixture {
        store: Arc::new(PgStore::connect(&url, 1).await.unwrap()),
        database,
    }
    .teardown()
    .await;
}

/// As for events (ADR 0004): a triage due time handed in by a host whose clock runs ahead
/// is capped at the database's clock.
#[tokio::test]
async fn triage_due_times_from_a_clock_running_ahead_are_capped_at_the_database_clock() {
    let fixture = fresh_store().await;
    let store = fixture.store();
    let ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = open_ticket(&store, "ahead", ahead).await;
    let job = store.get_triage_job(id).await.unwrap().unwrap();
    assert_eq!(job.created_at, us(ahead), "the time is kept as given");
    let db_now = store.now().await.unwrap();
    let leased = store
        .lease_triage(10, db_now, db_now + chrono::Duration::seconds(60), 5)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.ticket_id).collect::<Vec<_>>(),
        vec![id],
        "due at once by the database's clock"
    );
    store.fail_triage(&leased[0], "boom", None).await.unwrap();
    store.requeue_triage(id, ahead).await.unwrap();
    let db_now = store.now().await.unwrap();
    let again = store
        .lease_triage(10, db_now, db_now + chrono::Duration::seconds(60), 5)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        1,
        "a requeue from a clock ahead is due at once"
    );
    fixture.teardown().await;
}
