//! The Slack port on PostgreSQL: the shared queries of [`crate::slack`] (leases with
//! `FOR UPDATE SKIP LOCKED`), and the parts that touch tickets and comments.

use super::{PgStore, agent, insert_ticket};
use crate::error::map;
use crate::rows::{CommentRow, TicketRow, comment_columns, micros, ticket_columns};
use heron_core::ports::{StoreError, StoreResult};
use heron_core::slack::MessageRef;
use heron_core::ticket::NewTicket;
use heron_core::{Comment, CommentId, Ticket, Timestamp};

crate::slack::slack_store!(PgStore, " FOR UPDATE SKIP LOCKED");

async fn discover(store: &PgStore, since: Timestamp, now: Timestamp) -> StoreResult<u64> {
    let done = sqlx::query(
        "INSERT INTO slack_threads (subject_id, kind, state, attempts, next_attempt_at, \
         generation, created_at, updated_at) \
         SELECT id, kind, 'pending', 0, $2, 1, $2, $2 FROM ( \
             SELECT id::text AS id, 'ticket' AS kind FROM tickets WHERE created_at >= $1 \
             UNION ALL SELECT id::text, 'notice' FROM notices WHERE created_at >= $1) s \
         ON CONFLICT DO NOTHING",
    )
    .bind(since)
    .bind(micros(now))
    .execute(&store.pool)
    .await
    .map_err(map)?;
    Ok(done.rows_affected())
}

async fn open_thread_ticket(
    store: &PgStore,
    ticket: NewTicket,
    thread: &MessageRef,
    now: Timestamp,
) -> StoreResult<Ticket> {
    let mut tx = store.pool.begin().await.map_err(map)?;
    insert_ticket(&mut tx, &ticket, ticket.created_at).await?;
    sqlx::query("UPDATE tickets SET alert_count = 0 WHERE id = $1")
        .bind(ticket.id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    agent::enqueue_triage(&mut tx, &[ticket.id], ticket.created_at).await?;
    sqlx::query(
        "INSERT INTO slack_threads (subject_id, kind, channel, thread_ts, state, attempts, \
         next_attempt_at, generation, created_at, updated_at) \
         VALUES ($1, 'ticket', $2, $3, 'pending', 0, $4, 1, $4, $4)",
    )
    .bind(ticket.id.to_string())
    .bind(&thread.channel)
    .bind(&thread.ts)
    .bind(micros(now))
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    let row: TicketRow = sqlx::query_as(concat!(
        "SELECT ",
        ticket_columns!(),
        " FROM tickets WHERE id = $1"
    ))
    .bind(ticket.id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .map_err(map)?;
    tx.commit().await.map_err(map)?;
    Ticket::try_from(row)
}

async fn edit_comment(store: &PgStore, id: CommentId, text: &str) -> StoreResult<Comment> {
    let row: Option<CommentRow> = sqlx::query_as(concat!(
        "UPDATE comments SET text = $2 WHERE id = $1 RETURNING ",
        comment_columns!()
    ))
    .bind(id.as_uuid())
    .bind(text)
    .fetch_optional(&store.pool)
    .await
    .map_err(map)?;
    row.ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?
        .try_into()
}

async fn delete_comment(store: &PgStore, id: CommentId) -> StoreResult<()> {
    let mut tx = store.pool.begin().await.map_err(map)?;
    sqlx::query("DELETE FROM slack_messages WHERE comment_id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    sqlx::query("DELETE FROM comments WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    tx.commit().await.map_err(map)?;
    Ok(())
}
