//! [`SlackStore`] for [`InMemoryStore`].

use super::{InMemoryStore, State, micros, open_ticket};
use crate::ports::{StoreError, StoreResult};
use crate::slack::{
    DeliveryKind, MessageRef, NewSlackDelivery, Posted, SlackDelivery, SlackMessageLink,
    SlackStore, SlackSubject, SlackSyncLease, SlackSyncState, SlackThread,
};
use crate::ticket::NewTicket;
use crate::{Comment, CommentId, Ticket, TicketId, Timestamp};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

#[derive(Debug, Default)]
pub(super) struct SlackMem {
    threads: BTreeMap<Uuid, StoredThread>,
    links: HashMap<(String, String), SlackMessageLink>,
    deliveries: BTreeMap<String, StoredDelivery>,
    /// Agent chats by thread: holder, last renewal, asked to stop.
    chats: HashMap<(String, String), (Uuid, Timestamp, bool)>,
}

#[derive(Debug, Clone)]
struct StoredThread {
    thread: SlackThread,
    generation: i64,
    lease: Option<(Uuid, Timestamp)>,
}

#[derive(Debug, Clone)]
struct StoredDelivery {
    kind: DeliveryKind,
    payload: serde_json::Value,
    state: &'static str,
    attempts: u32,
    received_at: Timestamp,
    next_attempt_at: Timestamp,
    lease: Option<(Uuid, Timestamp)>,
    seq: u64,
}

fn pending(subject: SlackSubject, now: Timestamp) -> StoredThread {
    StoredThread {
        thread: SlackThread {
            subject,
            channel: None,
            ts: None,
            thread_ts: None,
            state: SlackSyncState::Pending,
            attempts: 0,
            last_error: None,
            next_attempt_at: Some(micros(now)),
            updated_at: micros(now),
        },
        generation: 1,
        lease: None,
    }
}

impl State {
    fn held_sync(&mut self, lease: &SlackSyncLease) -> StoreResult<&mut StoredThread> {
        match self.slack.threads.get_mut(&lease.thread.subject.id()) {
            Some(t)
                if t.thread.state == SlackSyncState::Syncing
                    && t.lease.is_some_and(|(token, _)| token == lease.token) =>
            {
                Ok(t)
            }
            _ => Err(StoreError::Conflict(format!(
                "the Slack sync lease on {} {} is no longer held",
                lease.thread.subject.kind(),
                lease.thread.subject.id()
            ))),
        }
    }
}

#[async_trait]
impl SlackStore for InMemoryStore {
    async fn discover_slack_subjects(&self, since: Timestamp, now: Timestamp) -> StoreResult<u64> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut subjects: Vec<SlackSubject> = state
            .tickets
            .values()
            .filter(|t| t.created_at >= since)
            .map(|t| SlackSubject::Ticket(t.id))
            .collect();
        subjects.extend(
            state
                .notices
                .values()
                .filter(|n| n.created_at >= since)
                .map(|n| SlackSubject::Notice(n.id)),
        );
        let mut added = 0;
        for subject in subjects {
            if let std::collections::btree_map::Entry::Vacant(e) =
                state.slack.threads.entry(subject.id())
            {
                e.insert(pending(subject, now));
                added += 1;
            }
        }
        Ok(added)
    }

    async fn request_slack_sync(&self, subject: SlackSubject, now: Timestamp) -> StoreResult<()> {
        let mut state = self.lock();
        if let Some(t) = state.slack.threads.get_mut(&subject.id()) {
            t.generation += 1;
            match t.thread.state {
                SlackSyncState::Synced | SlackSyncState::Failed => {
                    t.thread.state = SlackSyncState::Pending;
                    t.thread.next_attempt_at = Some(micros(now));
                }
                SlackSyncState::Pending if t.thread.attempts == 0 => {
                    t.thread.next_attempt_at = Some(micros(now));
                }
                SlackSyncState::Pending | SlackSyncState::Syncing => {}
            }
        }
        Ok(())
    }

    async fn open_thread_ticket(
        &self,
        ticket: NewTicket,
        thread: &MessageRef,
        now: Timestamp,
    ) -> StoreResult<Ticket> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.tickets.contains_key(&ticket.id) {
            return Err(StoreError::Conflict(format!(
                "ticket {} already exists",
                ticket.id
            )));
        }
        if state.slack.threads.values().any(|t| {
            t.thread.channel.as_deref() == Some(thread.channel.as_str())
                && t.thread.thread_ts.as_deref() == Some(thread.ts.as_str())
        }) {
            return Err(StoreError::Conflict(format!(
                "the Slack thread {} already belongs to a ticket",
                thread.ts
            )));
        }
        let mut opened = open_ticket(&ticket, ticket.created_at);
        opened.alert_count = 0;
        state.enqueue_triage(opened.id, opened.created_at);
        state.tickets.insert(opened.id, opened.clone());
        let mut stored = pending(SlackSubject::Ticket(opened.id), now);
        stored.thread.channel = Some(thread.channel.clone());
        stored.thread.thread_ts = Some(thread.ts.clone());
        state.slack.threads.insert(opened.id.as_uuid(), stored);
        Ok(opened)
    }

    async fn lease_slack_syncs(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<SlackSyncLease>> {
        let mut state = self.lock();
        let mut due: Vec<(Timestamp, Uuid)> = state
            .slack
            .threads
            .iter()
            .filter(|(_, t)| match t.thread.state {
                SlackSyncState::Pending => t.thread.next_attempt_at.is_some_and(|at| at <= now),
                SlackSyncState::Syncing => t.lease.is_some_and(|(_, until)| until < now),
                _ => false,
            })
            .map(|(id, t)| (t.thread.next_attempt_at.unwrap_or(now), *id))
            .collect();
        due.sort();
        let mut leased = Vec::new();
        for (_, id) in due.into_iter().take(limit.max(1)) {
            if let Some(t) = state.slack.threads.get_mut(&id) {
                let token = Uuid::new_v4();
                t.thread.state = SlackSyncState::Syncing;
                t.thread.attempts += 1;
                t.thread.updated_at = micros(now);
                t.lease = Some((token, micros(lease_until)));
                leased.push(SlackSyncLease {
                    thread: t.thread.clone(),
                    token,
                    generation: t.generation,
                });
            }
        }
        Ok(leased)
    }

    async fn finish_slack_sync(
        &self,
        lease: &SlackSyncLease,
        posted: Option<&Posted>,
        next_due: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let t = state.held_sync(lease)?;
        if let Some(p) = posted {
            t.thread.channel = Some(p.channel.clone());
            t.thread.ts = Some(p.ts.clone());
            t.thread.thread_ts = Some(p.thread_ts.clone());
        }
        t.lease = None;
        t.thread.attempts = 0;
        t.thread.last_error = None;
        t.thread.updated_at = micros(now);
        if t.generation != lease.generation {
            t.thread.state = SlackSyncState::Pending;
            t.thread.next_attempt_at = Some(micros(next_due));
        } else {
            t.thread.state = SlackSyncState::Synced;
            t.thread.next_attempt_at = None;
        }
        Ok(())
    }

    async fn fail_slack_sync(
        &self,
        lease: &SlackSyncLease,
        posted: Option<&Posted>,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let t = state.held_sync(lease)?;
        if let Some(p) = posted {
            t.thread.channel = Some(p.channel.clone());
            t.thread.ts = Some(p.ts.clone());
            t.thread.thread_ts = Some(p.thread_ts.clone());
        }
        t.lease = None;
        t.thread.last_error = Some(error.to_owned());
        t.thread.updated_at = micros(now);
        t.thread.next_attempt_at = retry_at.map(micros);
        t.thread.state = if retry_at.is_some() {
            SlackSyncState::Pending
        } else {
            SlackSyncState::Failed
        };
        Ok(())
    }

    async fn get_slack_thread(&self, subject: SlackSubject) -> StoreResult<Option<SlackThread>> {
        Ok(self
            .lock()
            .slack
            .threads
            .get(&subject.id())
            .map(|t| t.thread.clone()))
    }

    async fn find_slack_thread(&self, thread: &MessageRef) -> StoreResult<Option<SlackThread>> {
        Ok(self
            .lock()
            .slack
            .threads
            .values()
            .find(|t| {
                t.thread.channel.as_deref() == Some(thread.channel.as_str())
                    && t.thread.thread_ts.as_deref() == Some(thread.ts.as_str())
            })
            .map(|t| t.thread.clone()))
    }

    async fn link_slack_message(&self, link: &SlackMessageLink) -> StoreResult<bool> {
        let mut state = self.lock();
        let key = (link.channel.clone(), link.ts.clone());
        if state.slack.links.contains_key(&key)
            || state
                .slack
                .links
                .values()
                .any(|l| l.comment_id == link.comment_id)
        {
            return Ok(false);
        }
        state.slack.links.insert(key, link.clone());
        Ok(true)
    }

    async fn find_slack_message(
        &self,
        message: &MessageRef,
    ) -> StoreResult<Option<SlackMessageLink>> {
        Ok(self
            .lock()
            .slack
            .links
            .get(&(message.channel.clone(), message.ts.clone()))
            .cloned())
    }

    async fn slack_linked_comments(&self, ticket: TicketId) -> StoreResult<Vec<CommentId>> {
        Ok(self
            .lock()
            .slack
            .links
            .values()
            .filter(|l| l.ticket_id == ticket)
            .map(|l| l.comment_id)
            .collect())
    }

    async fn edit_comment(&self, id: CommentId, text: &str) -> StoreResult<Comment> {
        let mut state = self.lock();
        let comment = state
            .comments
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("comment {id}")))?;
        comment.text = text.to_owned();
        Ok(comment.clone())
    }

    async fn delete_comment(&self, id: CommentId) -> StoreResult<()> {
        let mut state = self.lock();
        state.comments.remove(&id);
        state.slack.links.retain(|_, l| l.comment_id != id);
        Ok(())
    }

    async fn accept_slack_delivery(&self, delivery: &NewSlackDelivery) -> StoreResult<bool> {
        let mut state = self.lock();
        if state.slack.deliveries.contains_key(&delivery.id) {
            return Ok(false);
        }
        let seq = state.slack.deliveries.len() as u64;
        state.slack.deliveries.insert(
            delivery.id.clone(),
            StoredDelivery {
                kind: delivery.kind,
                payload: delivery.payload.clone(),
                state: "pending",
                attempts: 0,
                received_at: micros(delivery.received_at),
                next_attempt_at: micros(delivery.received_at),
                lease: None,
                seq,
            },
        );
        Ok(true)
    }

    async fn lease_slack_deliveries(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<SlackDelivery>> {
        let mut state = self.lock();
        let mut due: Vec<(u64, String)> = state
            .slack
            .deliveries
            .iter()
            .filter(|(_, d)| match d.state {
                "pending" => d.next_attempt_at <= now,
                "processing" => d.lease.is_some_and(|(_, until)| until < now),
                _ => false,
            })
            .map(|(id, d)| (d.seq, id.clone()))
            .collect();
        due.sort();
        let mut leased = Vec::new();
        for (_, id) in due.into_iter().take(limit.max(1)) {
            if let Some(d) = state.slack.deliveries.get_mut(&id) {
                let token = Uuid::new_v4();
                d.state = "processing";
                d.attempts += 1;
                d.lease = Some((token, micros(lease_until)));
                leased.push(SlackDelivery {
                    id: id.clone(),
                    kind: d.kind,
                    payload: d.payload.clone(),
                    attempts: d.attempts,
                    token,
                    received_at: d.received_at,
                });
            }
        }
        Ok(leased)
    }

    async fn finish_slack_delivery(
        &self,
        delivery: &SlackDelivery,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
        _now: Timestamp,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let Some(d) = state.slack.deliveries.get_mut(&delivery.id) else {
            return Err(StoreError::NotFound(format!(
                "Slack delivery {}",
                delivery.id
            )));
        };
        if d.state != "processing" || d.lease.is_none_or(|(token, _)| token != delivery.token) {
            return Err(StoreError::Conflict(format!(
                "the lease on Slack delivery {} is no longer held",
                delivery.id
            )));
        }
        d.lease = None;
        match (error, retry_at) {
            (None, _) => d.state = "done",
            (Some(_), Some(at)) => {
                d.state = "pending";
                d.next_attempt_at = micros(at);
            }
            (Some(_), None) => d.state = "failed",
        }
        Ok(())
    }

    async fn claim_slack_chat(
        &self,
        thread: &MessageRef,
        holder: Uuid,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<bool> {
        let mut state = self.lock();
        let key = (thread.channel.clone(), thread.ts.clone());
        match state.slack.chats.get(&key) {
            Some((_, renewed, _)) if *renewed >= stale_before => Ok(false),
            _ => {
                state.slack.chats.insert(key, (holder, now, false));
                Ok(true)
            }
        }
    }

    async fn renew_slack_chat(
        &self,
        thread: &MessageRef,
        holder: Uuid,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut state = self.lock();
        let key = (thread.channel.clone(), thread.ts.clone());
        match state.slack.chats.get_mut(&key) {
            Some((h, renewed, aborted)) if *h == holder => {
                *renewed = now;
                Ok(!*aborted)
            }
            _ => Ok(false),
        }
    }

    async fn abort_slack_chat(&self, thread: &MessageRef) -> StoreResult<bool> {
        let mut state = self.lock();
        let key = (thread.channel.clone(), thread.ts.clone());
        match state.slack.chats.get_mut(&key) {
            Some((_, _, aborted)) => {
                *aborted = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn release_slack_chat(&self, thread: &MessageRef, holder: Uuid) -> StoreResult<()> {
        let mut state = self.lock();
        let key = (thread.channel.clone(), thread.ts.clone());
        if state
            .slack
            .chats
            .get(&key)
            .is_some_and(|(h, _, _)| *h == holder)
        {
            state.slack.chats.remove(&key);
        }
        Ok(())
    }
}
