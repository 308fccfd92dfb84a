//! The Slack port on SQLite: the shared queries of [`crate::slack`], and the parts that touch
//! tickets and comments.

use super::{SqliteStore, agent, id_text, insert_ticket};
use crate::error::map;
use crate::rows::{CommentRow, TicketRow, comment_columns, micros, ticket_columns};
use heron_core::ports::{StoreError, StoreResult};
use heron_core::slack::MessageRef;
use heron_core::ticket::NewTicket;
use heron_core::{Comment, CommentId, Ticket, Timestamp};

crate::slack::slack_store!(SqliteStore, "");

async fn discover(store: &SqliteStore, since: Timestamp, now: Timestamp) -> StoreResult<u64> {
    // Nothing new is the common case: a plain read, without the write lock.
    let any_new: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tickets t WHERE t.created_at >= $1 \
             AND NOT EXISTS (SELECT 1 FROM slack_threads s WHERE s.subject_id = t.id)) \
         OR EXISTS (SELECT 1 FROM notices n WHERE n.created_at >= $1 \
             AND NOT EXISTS (SELECT 1 FROM slack_threads s WHERE s.subject_id = n.id))",
    )
    .bind(micros(since))
    .fetch_one(&store.pool)
    .await
    .map_err(map)?;
    if !any_new {
        return Ok(0);
    }
    let mut tx = store.write().await?;
    let done = sqlx::query(
        "INSERT INTO slack_threads (subject_id, kind, state, attempts, next_attempt_at, \
         generation, created_at, updated_at) \
         SELECT id, kind, 'pending', 0, $2, 1, $2, $2 FROM ( \
             SELECT id, 'ticket' AS kind FROM tickets WHERE created_at >= $1 \
             UNION ALL SELECT id, 'notice' AS kind FROM notices WHERE created_at >= $1) \
         WHERE true ON CONFLICT DO NOTHING",
    )
    .bind(micros(since))
    .bind(micros(now))
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    tx.commit().await.map_err(map)?;
    Ok(done.rows_affected())
}

async fn open_thread_ticket(
    store: &SqliteStore,
    ticket: NewTicket,
    thread: &MessageRef,
    now: Timestamp,
) -> StoreResult<Ticket> {
    let mut tx = store.write().await?;
    insert_ticket(&mut tx, &ticket, ticket.created_at).await?;
    sqlx::query("UPDATE tickets SET alert_count = 0 WHERE id = $1")
        .bind(id_text(ticket.id))
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    agent::enqueue_triage(&mut tx, ticket.id, ticket.created_at).await?;
    sqlx::query(
        "INSERT INTO slack_threads (subject_id, kind, channel, thread_ts, state, attempts, \
         next_attempt_at, generation, created_at, updated_at) \
         VALUES ($1, 'ticket', $2, $3, 'pending', 0, $4, 1, $4, $4)",
    )
    .bind(id_text(ticket.id))
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
    .bind(id_text(ticket.id))
    .fetch_one(&mut *tx)
    .await
    .map_err(map)?;
    tx.commit().await.map_err(map)?;
    Ticket::try_from(row)
}

async fn edit_comment(store: &SqliteStore, id: CommentId, text: &str) -> StoreResult<Comment> {
    let row: Option<CommentRow> = sqlx::query_as(concat!(
        "UPDATE comments SET text = $2 WHERE id = $1 RETURNING ",
        comment_columns!()
    ))
    .bind(id_text(id))
    .bind(text)
    .fetch_optional(&store.pool)
    .await
    .map_err(map)?;
    row.ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?
        .try_into()
}

async fn delete_comment(store: &SqliteStore, id: CommentId) -> StoreResult<()> {
    let mut tx = store.write().await?;
    for sql in [
        "DELETE FROM slack_messages WHERE comment_id = $1",
        "DELETE FROM comments WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(id_text(id))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
    }
    tx.commit().await.map_err(map)?;
    Ok(())
}
