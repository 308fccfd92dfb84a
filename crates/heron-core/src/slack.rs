//! Slack: the port Heron posts through ([`ChatPlatform`]), what it posts ([`Post`], [`View`]),
//! and what the store keeps of it ([`SlackStore`]): each ticket's (or notice's) thread and its
//! sync state, the links between Slack messages and comments, and the inbox of deliveries.
//!
//! Invariants every [`SlackStore`] keeps:
//! - a delivery id (Slack's `event_id`, or a digest of an interaction's body) is accepted once,
//!   forever: a retried delivery is answered `false` and stores nothing;
//! - a thread's sync is leased like a job (token, expiry, attempts, due time); a request for a
//!   sync while one runs is not lost: the finishing holder sees a newer generation and the
//!   thread stays due;
//! - a Slack message (channel, ts) links to at most one comment and a comment to at most one
//!   message, so nothing is posted twice and a reply is stored once.

use crate::ports::StoreResult;
use crate::{Comment, CommentId, Notice, NoticeId, Ticket, TicketId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A posted message: its channel id and Slack timestamp.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

/// What Heron posts; the adapter renders it (Block Kit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Post {
    /// The ticket's message: title, severity, status, assignee, finding, attributes, alert
    /// count, a dashboard link and the buttons that fit its status.
    Ticket {
        ticket: Box<Ticket>,
        dashboard_url: Option<String>,
        /// Shown above the card (e.g. why it is not in the policy's channel).
        note: Option<String>,
    },
    /// A notice: title, severity and an Escalate button while it is not escalated.
    Notice {
        notice: Notice,
        dashboard_url: Option<String>,
        note: Option<String>,
    },
    /// A line of text (mrkdwn) in a thread.
    Text { text: String },
}

impl Post {
    pub fn text(text: impl Into<String>) -> Self {
        Post::Text { text: text.into() }
    }

    /// The plain text Slack shows in notifications.
    pub fn fallback_text(&self) -> String {
        match self {
            Post::Ticket { ticket, .. } => {
                format!("[{}] {} ({})", ticket.severity, ticket.title, ticket.status)
            }
            Post::Notice { notice, .. } => format!("🔔 [{}] {}", notice.severity, notice.title),
            Post::Text { text } => text.clone(),
        }
    }
}

/// A modal Heron opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum View {
    /// Resolve a ticket: a conclusion and a reason.
    Resolve { ticket_id: TicketId, title: String },
}

/// The bot's own identity (`auth.test`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotIdentity {
    pub user_id: String,
    pub team: String,
}

/// A workspace member (`users.info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUser {
    pub id: String,
    /// Display name, else real name, else the id.
    pub name: String,
    pub email: Option<String>,
    pub is_bot: bool,
}

/// A message of a thread (`conversations.replies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMessage {
    pub ts: String,
    pub user: Option<String>,
    pub bot: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// `ratelimited` (HTTP 429); `Retry-After` when Slack gave one.
    #[error("rate limited by Slack")]
    RateLimited(Option<Duration>),
    #[error("channel not found: {0}")]
    ChannelNotFound(String),
    /// `invalid_auth`, `not_authed`, `account_inactive`, `token_revoked`…
    #[error("Slack refused the bot token: {0}")]
    InvalidAuth(String),
    /// Any other `ok: false` answer.
    #[error("Slack answered {0}")]
    Api(String),
    /// Slack could not be reached or answered nonsense; worth retrying.
    #[error("Slack is unreachable: {0}")]
    Unavailable(String),
}

impl ChatError {
    /// Whether trying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ChatError::RateLimited(_) | ChatError::Unavailable(_))
    }
}

/// The Slack Web API as Heron uses it. Implementations: `heron_slack::SlackClient` and, with
/// feature `testing`, [`crate::testing::RecordingChat`].
#[async_trait]
pub trait ChatPlatform: Send + Sync {
    /// `auth.test`: whether the token works, and whose it is.
    async fn identity(&self) -> Result<BotIdentity, ChatError>;
    /// `chat.postMessage`, in a thread when `thread_ts` is given.
    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        post: &Post,
    ) -> Result<MessageRef, ChatError>;
    /// `chat.update` of a message Heron posted.
    async fn update(&self, message: &MessageRef, post: &Post) -> Result<(), ChatError>;
    /// `views.open` (the trigger id of an interaction lives 3 seconds).
    async fn open_view(&self, trigger_id: &str, view: &View) -> Result<(), ChatError>;
    /// `users.info`.
    async fn user(&self, id: &str) -> Result<ChatUser, ChatError>;
    /// `conversations.replies`: the thread's messages, oldest first, its root included.
    async fn replies(&self, thread: &MessageRef) -> Result<Vec<ThreadMessage>, ChatError>;
}

/// What a Slack thread belongs to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum SlackSubject {
    Ticket(TicketId),
    Notice(NoticeId),
}

impl SlackSubject {
    pub fn kind(&self) -> &'static str {
        match self {
            SlackSubject::Ticket(_) => "ticket",
            SlackSubject::Notice(_) => "notice",
        }
    }

    pub fn id(&self) -> uuid::Uuid {
        match self {
            SlackSubject::Ticket(t) => t.as_uuid(),
            SlackSubject::Notice(n) => n.as_uuid(),
        }
    }

    /// From the stored kind and id.
    pub fn from_parts(kind: &str, id: uuid::Uuid) -> Option<Self> {
        match kind {
            "ticket" => Some(SlackSubject::Ticket(TicketId::from_uuid(id))),
            "notice" => Some(SlackSubject::Notice(NoticeId::from_uuid(id))),
            _ => None,
        }
    }
}

/// Where a thread's sync stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackSyncState {
    /// Changes wait to be posted (first post, or an update).
    Pending,
    /// Being posted now.
    Syncing,
    /// Slack shows the subject as it is.
    Synced,
    /// Gave up after repeated errors (see `last_error`); the next change tries again.
    Failed,
}

crate::event::str_enum!(SlackSyncState {
    Pending => "pending",
    Syncing => "syncing",
    Synced => "synced",
    Failed => "failed",
});

/// A ticket's (or notice's) Slack state, as the API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackThread {
    pub subject: SlackSubject,
    /// The channel holding the message, once posted.
    pub channel: Option<String>,
    /// The ticket's message, once posted.
    pub ts: Option<String>,
    /// The thread's root: `ts`, unless the message was posted into an existing thread (a ticket
    /// made from a thread).
    pub thread_ts: Option<String>,
    pub state: SlackSyncState,
    /// Failed attempts since the last success.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl SlackThread {
    /// The thread, once its message is posted.
    pub fn thread(&self) -> Option<MessageRef> {
        Some(MessageRef {
            channel: self.channel.clone()?,
            ts: self.thread_ts.clone().or_else(|| self.ts.clone())?,
        })
    }

    /// The subject's own message, once posted.
    pub fn message(&self) -> Option<MessageRef> {
        Some(MessageRef {
            channel: self.channel.clone()?,
            ts: self.ts.clone()?,
        })
    }
}

/// A held sync: only this token can finish or fail it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackSyncLease {
    pub thread: SlackThread,
    pub token: uuid::Uuid,
    /// The generation of sync requests this lease covers.
    pub generation: i64,
}

/// Where a first post landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: String,
}

/// A Slack message that is (or made) a ticket's comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackMessageLink {
    pub channel: String,
    pub ts: String,
    pub ticket_id: TicketId,
    pub comment_id: CommentId,
}

/// What a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// An Events API `event_callback`.
    Event,
    /// An interactivity payload (`block_actions`, `view_submission`).
    Interaction,
}

crate::event::str_enum!(DeliveryKind {
    Event => "event",
    Interaction => "interaction",
});

/// A verified delivery from Slack, stored before Slack gets its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSlackDelivery {
    /// Slack's `event_id`, or `interaction:` and a digest of the body.
    pub id: String,
    pub kind: DeliveryKind,
    pub payload: serde_json::Value,
    pub received_at: Timestamp,
}

/// A leased delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackDelivery {
    pub id: String,
    pub kind: DeliveryKind,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub token: uuid::Uuid,
    pub received_at: Timestamp,
}

#[async_trait]
pub trait SlackStore: Send + Sync {
    /// Gives every ticket and notice created at or after `since` that has no Slack thread yet a
    /// pending one, due at `now`; answers how many.
    async fn discover_slack_subjects(&self, since: Timestamp, now: Timestamp) -> StoreResult<u64>;
    /// Marks a subject's thread as needing a sync (due at `now`, unless it is backing off after
    /// an error). A subject without a thread is left alone: Slack is not in use for it.
    async fn request_slack_sync(&self, subject: SlackSubject, now: Timestamp) -> StoreResult<()>;
    /// Atomically opens `ticket` from a Slack thread (no alert: `alert_count` 0; not a
    /// deduplication target; with its triage job) and gives it a pending thread rooted at
    /// `thread`, so its message is posted into that thread.
    async fn open_thread_ticket(
        &self,
        ticket: crate::ticket::NewTicket,
        thread: &MessageRef,
        now: Timestamp,
    ) -> StoreResult<Ticket>;
    /// Leases up to `limit` due syncs (pending ones due by `now`, and syncing ones whose lease
    /// expired), oldest due first; each becomes `syncing` until `lease_until`, attempts + 1.
    async fn lease_slack_syncs(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<SlackSyncLease>>;
    /// Records a successful sync: `posted` on the first post. The thread becomes `synced`, or
    /// stays `pending` (due at `next_due`) when a sync was requested meanwhile. A lease no
    /// longer held: `Conflict`, and nothing changes.
    async fn finish_slack_sync(
        &self,
        lease: &SlackSyncLease,
        posted: Option<&Posted>,
        next_due: Timestamp,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Records a failed sync: `pending` due at `retry_at`, or `failed` without one. `posted`
    /// when the first post succeeded before the failure (so it is not posted again).
    async fn fail_slack_sync(
        &self,
        lease: &SlackSyncLease,
        posted: Option<&Posted>,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn get_slack_thread(&self, subject: SlackSubject) -> StoreResult<Option<SlackThread>>;
    /// The subject whose thread is rooted at (channel, thread_ts).
    async fn find_slack_thread(&self, thread: &MessageRef) -> StoreResult<Option<SlackThread>>;
    /// Links a Slack message and a comment; a link already stored for either side is kept and
    /// the call answers `false`.
    async fn link_slack_message(&self, link: &SlackMessageLink) -> StoreResult<bool>;
    async fn find_slack_message(
        &self,
        message: &MessageRef,
    ) -> StoreResult<Option<SlackMessageLink>>;
    /// The comments of `ticket` that are linked to a Slack message.
    async fn slack_linked_comments(&self, ticket: TicketId) -> StoreResult<Vec<CommentId>>;
    /// Replaces a comment's text (an edit in Slack). `NotFound` for an unknown comment.
    async fn edit_comment(&self, id: CommentId, text: &str) -> StoreResult<Comment>;
    /// Deletes a comment and its link (a deletion in Slack). Unknown ids are no error.
    async fn delete_comment(&self, id: CommentId) -> StoreResult<()>;
    /// Stores a delivery once: `false` (and nothing stored) when its id was seen before.
    async fn accept_slack_delivery(&self, delivery: &NewSlackDelivery) -> StoreResult<bool>;
    /// Leases up to `limit` due deliveries, oldest first (pending ones due by `now` and
    /// processing ones whose lease expired), until `lease_until`, attempts + 1.
    async fn lease_slack_deliveries(
        &self,
        limit: usize,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Vec<SlackDelivery>>;
    /// Ends a delivery: `done` without an error; with one, `pending` due at `retry_at` or
    /// `failed` without it.
    async fn finish_slack_delivery(
        &self,
        delivery: &SlackDelivery,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Claims `thread` for one agent chat held by `holder`: `false` when another chat holds
    /// it, unless that claim was last renewed before `stale_before` (its process died), in
    /// which case it is taken over. Across processes, one chat per thread.
    async fn claim_slack_chat(
        &self,
        thread: &MessageRef,
        holder: uuid::Uuid,
        now: Timestamp,
        stale_before: Timestamp,
    ) -> StoreResult<bool>;
    /// Renews `holder`'s claim at `now`: `false` when the chat was asked to stop or its claim
    /// is gone (taken over), so it must stop.
    async fn renew_slack_chat(
        &self,
        thread: &MessageRef,
        holder: uuid::Uuid,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Asks the chat running in `thread` (in any process) to stop: `false` when none runs.
    async fn abort_slack_chat(&self, thread: &MessageRef) -> StoreResult<bool>;
    /// Ends `holder`'s claim (another holder's is left alone).
    async fn release_slack_chat(&self, thread: &MessageRef, holder: uuid::Uuid) -> StoreResult<()>;
}

/// Why a request did not come from Slack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Slack-Signature or X-Slack-Request-Timestamp header is missing")]
    Missing,
    #[error("the request timestamp is malformed")]
    Malformed,
    #[error("the request timestamp is more than 5 minutes from now")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks that a request was signed by Slack (`v0` HMAC-SHA256 of `v0:{timestamp}:{body}`
/// with the signing secret) within 5 minutes of `now`. Implementation:
/// `heron_slack::SigningSecret`.
pub trait RequestVerifier: Send + Sync {
    fn verify(
        &self,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), SignatureError>;
}
