//! [`heron_core::slack::SlackStore`] on both databases. The Slack tables keep ids as TEXT and
//! times as unix microseconds on both backends, so one set of queries (this macro) serves
//! both; what touches tickets and comments (whose column types differ) is written per
//! backend (`discover`, `open_thread_ticket`, `edit_comment`, `delete_comment`).
//!
//! Leasing is one `UPDATE … WHERE id IN (SELECT … LIMIT n)`: on PostgreSQL the inner select
//! takes `FOR UPDATE SKIP LOCKED`, so concurrent workers never get the same row; SQLite has
//! one writer.

use heron_core::Timestamp;
use heron_core::ports::{StoreError, StoreResult};
use heron_core::slack::{SlackSubject, SlackSyncLease, SlackSyncState, SlackThread};

macro_rules! thread_columns {
    () => {
        "subject_id, kind, channel, ts, thread_ts, state, attempts, last_error, \
         next_attempt_at, updated_at, generation, lease_token"
    };
}
pub(crate) use thread_columns;

pub(crate) type ThreadRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    Option<String>,
);

pub(crate) fn time(us: i64) -> StoreResult<Timestamp> {
    chrono::DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Backend(format!("timestamp {us} out of range")))
}

pub(crate) fn thread(row: ThreadRow) -> StoreResult<(SlackThread, i64, Option<String>)> {
    let (
        id,
        kind,
        channel,
        ts,
        thread_ts,
        state,
        attempts,
        last_error,
        next,
        updated,
        generation,
        token,
    ) = row;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|e| StoreError::Backend(format!("slack thread id {id:?}: {e}")))?;
    let subject = SlackSubject::from_parts(&kind, id)
        .ok_or_else(|| StoreError::Backend(format!("unknown slack subject kind {kind:?}")))?;
    let state: SlackSyncState = state
        .parse()
        .map_err(|e| StoreError::Backend(format!("{e}")))?;
    Ok((
        SlackThread {
            subject,
            channel,
            ts,
            thread_ts,
            state,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error,
            next_attempt_at: next.map(time).transpose()?,
            updated_at: time(updated)?,
        },
        generation,
        token,
    ))
}

pub(crate) fn lease_lost(lease: &SlackSyncLease) -> StoreError {
    StoreError::Conflict(format!(
        "the Slack sync lease on {} {} is no longer held",
        lease.thread.subject.kind(),
        lease.thread.subject.id()
    ))
}

/// Implements `SlackStore` for `$store`, whose backend module provides `slack_tx`,
/// `discover`, `open_thread_ticket`, `edit_comment` and `delete_comment`; `$lock` is appended
/// to the selects that pick rows to lease.
macro_rules! slack_store {
    ($store:ty, $lock:literal) => {
        #[async_trait::async_trait]
        impl heron_core::slack::SlackStore for $store {
            async fn discover_slack_subjects(
                &self,
                since: heron_core::Timestamp,
                now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<u64> {
                discover(self, since, now).await
            }

            async fn request_slack_sync(
                &self,
                subject: heron_core::slack::SlackSubject,
                now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<()> {
                sqlx::query(
                    "UPDATE slack_threads SET generation = generation + 1, \
                     next_attempt_at = CASE \
                         WHEN state IN ('synced', 'failed') THEN $2 \
                         WHEN state = 'pending' AND attempts = 0 THEN $2 \
                         ELSE next_attempt_at END, \
                     state = CASE WHEN state IN ('synced', 'failed') THEN 'pending' \
                         ELSE state END \
                     WHERE subject_id = $1",
                )
                .bind(subject.id().to_string())
                .bind(crate::rows::micros(now))
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(())
            }

            async fn open_thread_ticket(
                &self,
                ticket: heron_core::ticket::NewTicket,
                thread: &heron_core::slack::MessageRef,
                now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<heron_core::Ticket> {
                open_thread_ticket(self, ticket, thread, now).await
            }

            async fn lease_slack_syncs(
                &self,
                limit: usize,
                now: heron_core::Timestamp,
                lease_until: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<Vec<heron_core::slack::SlackSyncLease>> {
                // An idle poll is a plain read (SQLite: no write lock).
                let any_due: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM slack_threads \
                         WHERE (state = 'pending' AND next_attempt_at <= $1) \
                            OR (state = 'syncing' AND lease_expires_at < $1))",
                )
                .bind(crate::rows::micros(now))
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::map)?;
                if !any_due {
                    return Ok(Vec::new());
                }
                let token = uuid::Uuid::new_v4().to_string();
                let sql = concat!(
                    "UPDATE slack_threads SET state = 'syncing', attempts = attempts + 1, \
                     lease_token = $3, lease_expires_at = $4, updated_at = $1 \
                     WHERE subject_id IN (SELECT subject_id FROM slack_threads \
                         WHERE (state = 'pending' AND next_attempt_at <= $1) \
                            OR (state = 'syncing' AND lease_expires_at < $1) \
                         ORDER BY next_attempt_at, subject_id LIMIT $2",
                    $lock,
                    ") RETURNING ",
                    crate::slack::thread_columns!()
                );
                let rows: Vec<crate::slack::ThreadRow> = sqlx::query_as(sql)
                    .bind(crate::rows::micros(now))
                    .bind(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
                    .bind(&token)
                    .bind(crate::rows::micros(lease_until))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::error::map)?;
                let mut leases = Vec::with_capacity(rows.len());
                for row in rows {
                    let (thread, generation, _) = crate::slack::thread(row)?;
                    leases.push(heron_core::slack::SlackSyncLease {
                        thread,
                        token: uuid::Uuid::parse_str(&token)
                            .map_err(|e| heron_core::ports::StoreError::Backend(e.to_string()))?,
                        generation,
                    });
                }
                leases.sort_by_key(|l| (l.thread.next_attempt_at, l.thread.subject.id()));
                Ok(leases)
            }

            async fn finish_slack_sync(
                &self,
                lease: &heron_core::slack::SlackSyncLease,
                posted: Option<&heron_core::slack::Posted>,
                next_due: heron_core::Timestamp,
                now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE slack_threads SET \
                     channel = COALESCE($3, channel), ts = COALESCE($4, ts), \
                     thread_ts = COALESCE($5, thread_ts), \
                     state = CASE WHEN generation = $6 THEN 'synced' ELSE 'pending' END, \
                     next_attempt_at = CASE WHEN generation = $6 THEN NULL ELSE $7 END, \
                     attempts = 0, last_error = NULL, lease_token = NULL, \
                     lease_expires_at = NULL, updated_at = $8 \
                     WHERE subject_id = $1 AND state = 'syncing' AND lease_token = $2",
                )
                .bind(lease.thread.subject.id().to_string())
                .bind(lease.token.to_string())
                .bind(posted.map(|p| p.channel.clone()))
                .bind(posted.map(|p| p.ts.clone()))
                .bind(posted.map(|p| p.thread_ts.clone()))
                .bind(lease.generation)
                .bind(crate::rows::micros(next_due))
                .bind(crate::rows::micros(now))
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                if done.rows_affected() == 0 {
                    return Err(crate::slack::lease_lost(lease));
                }
                Ok(())
            }

            async fn fail_slack_sync(
                &self,
                lease: &heron_core::slack::SlackSyncLease,
                posted: Option<&heron_core::slack::Posted>,
                error: &str,
                retry_at: Option<heron_core::Timestamp>,
                now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE slack_threads SET \
                     channel = COALESCE($6, channel), ts = COALESCE($7, ts), \
                     thread_ts = COALESCE($8, thread_ts), \
                     state = CASE WHEN $4 IS NULL THEN 'failed' ELSE 'pending' END, \
                     next_attempt_at = $4, last_error = $3, lease_token = NULL, \
                     lease_expires_at = NULL, updated_at = $5 \
                     WHERE subject_id = $1 AND state = 'syncing' AND lease_token = $2",
                )
                .bind(lease.thread.subject.id().to_string())
                .bind(lease.token.to_string())
                .bind(error)
                .bind(retry_at.map(crate::rows::micros))
                .bind(crate::rows::micros(now))
                .bind(posted.map(|p| p.channel.clone()))
                .bind(posted.map(|p| p.ts.clone()))
                .bind(posted.map(|p| p.thread_ts.clone()))
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                if done.rows_affected() == 0 {
                    return Err(crate::slack::lease_lost(lease));
                }
                Ok(())
            }

            async fn get_slack_thread(
                &self,
                subject: heron_core::slack::SlackSubject,
            ) -> heron_core::ports::StoreResult<Option<heron_core::slack::SlackThread>> {
                let sql = concat!(
                    "SELECT ",
                    crate::slack::thread_columns!(),
                    " FROM slack_threads WHERE subject_id = $1"
                );
                let row: Option<crate::slack::ThreadRow> = sqlx::query_as(sql)
                    .bind(subject.id().to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::error::map)?;
                row.map(|r| crate::slack::thread(r).map(|t| t.0)).transpose()
            }

            async fn find_slack_thread(
                &self,
                thread: &heron_core::slack::MessageRef,
            ) -> heron_core::ports::StoreResult<Option<heron_core::slack::SlackThread>> {
                let sql = concat!(
                    "SELECT ",
                    crate::slack::thread_columns!(),
                    " FROM slack_threads WHERE channel = $1 AND thread_ts = $2"
                );
                let row: Option<crate::slack::ThreadRow> = sqlx::query_as(sql)
                    .bind(&thread.channel)
                    .bind(&thread.ts)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::error::map)?;
                row.map(|r| crate::slack::thread(r).map(|t| t.0)).transpose()
            }

            async fn link_slack_message(
                &self,
                link: &heron_core::slack::SlackMessageLink,
            ) -> heron_core::ports::StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO slack_messages (channel, ts, ticket_id, comment_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&link.channel)
                .bind(&link.ts)
                .bind(link.ticket_id.to_string())
                .bind(link.comment_id.to_string())
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(done.rows_affected() == 1)
            }

            async fn find_slack_message(
                &self,
                message: &heron_core::slack::MessageRef,
            ) -> heron_core::ports::StoreResult<Option<heron_core::slack::SlackMessageLink>>
            {
                let row: Option<(String, String, String, String)> = sqlx::query_as(
                    "SELECT channel, ts, ticket_id, comment_id FROM slack_messages \
                     WHERE channel = $1 AND ts = $2",
                )
                .bind(&message.channel)
                .bind(&message.ts)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::map)?;
                let Some((channel, ts, ticket, comment)) = row else {
                    return Ok(None);
                };
                let bad = |e: uuid::Error| heron_core::ports::StoreError::Backend(e.to_string());
                Ok(Some(heron_core::slack::SlackMessageLink {
                    channel,
                    ts,
                    ticket_id: ticket.parse().map_err(bad)?,
                    comment_id: comment.parse().map_err(bad)?,
                }))
            }

            async fn slack_linked_comments(
                &self,
                ticket: heron_core::TicketId,
            ) -> heron_core::ports::StoreResult<Vec<heron_core::CommentId>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT comment_id FROM slack_messages WHERE ticket_id = $1")
                        .bind(ticket.to_string())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::error::map)?;
                rows.into_iter()
                    .map(|(id,)| {
                        id.parse()
                            .map_err(|e: uuid::Error| heron_core::ports::StoreError::Backend(e.to_string()))
                    })
                    .collect()
            }

            async fn edit_comment(
                &self,
                id: heron_core::CommentId,
                text: &str,
            ) -> heron_core::ports::StoreResult<heron_core::Comment> {
                edit_comment(self, id, text).await
            }

            async fn delete_comment(
                &self,
                id: heron_core::CommentId,
            ) -> heron_core::ports::StoreResult<()> {
                delete_comment(self, id).await
            }

            async fn accept_slack_delivery(
                &self,
                delivery: &heron_core::slack::NewSlackDelivery,
            ) -> heron_core::ports::StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO slack_deliveries (id, kind, payload, state, attempts, \
                     next_attempt_at, received_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&delivery.id)
                .bind(delivery.kind.as_str())
                .bind(delivery.payload.to_string())
                .bind(crate::rows::micros(delivery.received_at))
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(done.rows_affected() == 1)
            }

            async fn lease_slack_deliveries(
                &self,
                limit: usize,
                now: heron_core::Timestamp,
                lease_until: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<Vec<heron_core::slack::SlackDelivery>> {
                let any_due: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM slack_deliveries \
                         WHERE (state = 'pending' AND next_attempt_at <= $1) \
                            OR (state = 'processing' AND lease_expires_at < $1))",
                )
                .bind(crate::rows::micros(now))
                .fetch_one(&self.pool)
                .await
                .map_err(crate::error::map)?;
                if !any_due {
                    return Ok(Vec::new());
                }
                let token = uuid::Uuid::new_v4();
                let sql = concat!(
                    "UPDATE slack_deliveries SET state = 'processing', attempts = attempts + 1, \
                     lease_token = $3, lease_expires_at = $4 \
                     WHERE id IN (SELECT id FROM slack_deliveries \
                         WHERE (state = 'pending' AND next_attempt_at <= $1) \
                            OR (state = 'processing' AND lease_expires_at < $1) \
                         ORDER BY received_at, id LIMIT $2",
                    $lock,
                    ") RETURNING id, kind, payload, attempts, received_at"
                );
                let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(sql)
                    .bind(crate::rows::micros(now))
                    .bind(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
                    .bind(token.to_string())
                    .bind(crate::rows::micros(lease_until))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::error::map)?;
                let mut out = Vec::with_capacity(rows.len());
                for (id, kind, payload, attempts, received) in rows {
                    let bad = |e: String| heron_core::ports::StoreError::Backend(e);
                    out.push(heron_core::slack::SlackDelivery {
                        id,
                        kind: kind.parse().map_err(|e| bad(format!("{e}")))?,
                        payload: serde_json::from_str(&payload).map_err(|e| bad(e.to_string()))?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        token,
                        received_at: crate::slack::time(received)?,
                    });
                }
                out.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
                Ok(out)
            }

            async fn finish_slack_delivery(
                &self,
                delivery: &heron_core::slack::SlackDelivery,
                error: Option<&str>,
                retry_at: Option<heron_core::Timestamp>,
                _now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<()> {
                let state = match (error, retry_at) {
                    (None, _) => "done",
                    (Some(_), Some(_)) => "pending",
                    (Some(_), None) => "failed",
                };
                let done = sqlx::query(
                    "UPDATE slack_deliveries SET state = $3, last_error = $4, \
                     next_attempt_at = COALESCE($5, next_attempt_at), lease_token = NULL, \
                     lease_expires_at = NULL \
                     WHERE id = $1 AND state = 'processing' AND lease_token = $2",
                )
                .bind(&delivery.id)
                .bind(delivery.token.to_string())
                .bind(state)
                .bind(error)
                .bind(retry_at.map(crate::rows::micros))
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                if done.rows_affected() == 0 {
                    return Err(heron_core::ports::StoreError::Conflict(format!(
                        "the lease on Slack delivery {} is no longer held",
                        delivery.id
                    )));
                }
                Ok(())
            }

            async fn claim_slack_chat(
                &self,
                thread: &heron_core::slack::MessageRef,
                holder: uuid::Uuid,
                now: heron_core::Timestamp,
                stale_before: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO slack_chats \
                     (channel, thread_ts, holder, renewed_at, abort_requested) \
                     VALUES ($1, $2, $3, $4, FALSE) \
                     ON CONFLICT (channel, thread_ts) DO UPDATE SET holder = excluded.holder, \
                     renewed_at = excluded.renewed_at, abort_requested = FALSE \
                     WHERE slack_chats.renewed_at < $5",
                )
                .bind(&thread.channel)
                .bind(&thread.ts)
                .bind(holder.to_string())
                .bind(crate::rows::micros(now))
                .bind(crate::rows::micros(stale_before))
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(done.rows_affected() == 1)
            }

            async fn renew_slack_chat(
                &self,
                thread: &heron_core::slack::MessageRef,
                holder: uuid::Uuid,
                now: heron_core::Timestamp,
            ) -> heron_core::ports::StoreResult<bool> {
                let aborted: Option<bool> = sqlx::query_scalar(
                    "UPDATE slack_chats SET renewed_at = $4 \
                     WHERE channel = $1 AND thread_ts = $2 AND holder = $3 \
                     RETURNING abort_requested",
                )
                .bind(&thread.channel)
                .bind(&thread.ts)
                .bind(holder.to_string())
                .bind(crate::rows::micros(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(aborted == Some(false))
            }

            async fn abort_slack_chat(
                &self,
                thread: &heron_core::slack::MessageRef,
            ) -> heron_core::ports::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE slack_chats SET abort_requested = TRUE \
                     WHERE channel = $1 AND thread_ts = $2",
                )
                .bind(&thread.channel)
                .bind(&thread.ts)
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_slack_chat(
                &self,
                thread: &heron_core::slack::MessageRef,
                holder: uuid::Uuid,
            ) -> heron_core::ports::StoreResult<()> {
                sqlx::query(
                    "DELETE FROM slack_chats \
                     WHERE channel = $1 AND thread_ts = $2 AND holder = $3",
                )
                .bind(&thread.channel)
                .bind(&thread.ts)
                .bind(holder.to_string())
                .execute(&self.pool)
                .await
                .map_err(crate::error::map)?;
                Ok(())
            }
        }
    };
}

pub(crate) use slack_store;
