//! SQLite-specific behaviour: durability across reopening, backend selection, corrupt rows,
//! idle polling beside a writer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::EventState;
use heron_core::ports::{EventLog, EventQuery, EventQueue, StoreError};
use heron_core::testing::conformance::{at, new_event};
use heron_store::{SqliteStore, open_store};
use sqlx::Connection;
use std::time::Duration;

#[tokio::test]
async fn accepted_events_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/heron.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            store
                .accept_event(new_event("falco", Some(&format!("k{i}")), at(i)))
                .await
                .unwrap()
                .event_id,
        );
    }
    drop(store);

    let reopened = SqliteStore::open(&path).await.unwrap();
    for id in &ids {
        let event = reopened.get_event(*id).await.unwrap().expect("still there");
        assert_eq!(event.state, EventState::Pending);
    }
    // The idempotency keys survived too.
    let again = reopened
        .accept_event(new_event("falco", Some("k3"), at(99)))
        .await
        .unwrap();
    assert_eq!((again.event_id, again.duplicate), (ids[3], true));
    reopened.close().await;
}

#[tokio::test]
async fn open_store_picks_sqlite_without_a_url_or_with_a_sqlite_url() {
    let dir = tempfile::tempdir().unwrap();
    let default = open_store(None, dir.path(), 4).await.unwrap();
    assert_eq!(default.backend(), "sqlite");
    default.ping().await.unwrap();
    assert!(dir.path().join("heron.db").exists());

    let explicit = dir.path().join("other.db");
    let url = format!("sqlite://{}", explicit.display());
    let store = open_store(Some(&url), dir.path(), 4).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(explicit.exists());
    assert_eq!(
        heron_store::migrate(Some(&url), dir.path()).await.unwrap(),
        "sqlite"
    );

    assert!(matches!(
        open_store(Some("mysql://localhost/x"), dir.path(), 4)
            .await
            .map(|_| ()),
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn a_corrupt_row_is_a_backend_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heron.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let id = store
        .accept_event(new_event("falco", None, at(0)))
        .await
        .unwrap()
        .event_id;

    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE events SET state = 'exploded'")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;

    assert!(matches!(
        store.get_event(id).await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(
        store
            .list_events(&EventQuery {
                limit: 10,
                ..EventQuery::default()
            })
            .await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn an_idle_poll_answers_without_waiting_for_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heron.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let now = store.now().await.unwrap();
    // Pending, but not due for an hour.
    let later = store
        .accept_event(new_event("falco", None, now + chrono::Duration::hours(1)))
        .await
        .unwrap()
        .event_id;

    // Another writer (intake, a long completion) holds the write lock.
    let mut writer = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    let leased = tokio::time::timeout(
        Duration::from_secs(5),
        store.lease_events(10, now, now + chrono::Duration::seconds(60), 5),
    )
    .await
    .expect("an idle poll must not queue behind the writer (busy_timeout is 30 s)")
    .unwrap();
    assert!(leased.is_empty());
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
    writer.close().await.unwrap();

    // Once due, the event is leased as usual.
    let due = now + chrono::Duration::hours(1);
    let leased = store
        .lease_events(10, due, due + chrono::Duration::seconds(60), 5)
        .await
        .unwrap();
    assert_eq!(
        leased.iter().map(|l| l.event.id).collect::<Vec<_>>(),
        vec![later]
    );
    store.close().await;
}
