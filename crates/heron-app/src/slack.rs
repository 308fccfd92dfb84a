//! Slack: every ticket (and notice) a message with a thread, the thread the ticket's
//! conversation, the agent answering in it, and buttons that act on the ticket, for those
//! allowed to.
//!
//! Invariants:
//! - deliveries from Slack are stored (deduplicated by event id) before Slack gets its answer
//!   and acted on by [`SlackWorker`], so a retried delivery acts once;
//! - a ticket's Slack message is rendered from the ticket as it is now, so a sync can be
//!   repeated or coalesced freely; a thread's sync is a leased job retried with backoff,
//!   whose state the API shows, and Slack being down never blocks or loses a ticket;
//! - comments that came from Slack are never posted back, and a comment posted to Slack is
//!   linked to its message first thing, so nothing is posted twice;
//! - the agent only answers in the ticket thread it was asked in, only about that ticket,
//!   and only for users allowed by the allow-lists or the `auth.agent` policy; every action
//!   taken from Slack is recorded under the Slack user's name and id.

use crate::chat::ChatService;
use crate::triage::{TriageProgress, TriageWatch};
use crate::{Actor, AppError, AppResult, PolicyHandle, TicketService};
use heron_core::agent::{AgentRun, AgentStep, RunStatus, StepKind};
use heron_core::ports::{Store, StoreError};
use heron_core::slack::{
    ChatError, ChatPlatform, DeliveryKind, MessageRef, NewSlackDelivery, Post, Posted,
    SlackDelivery, SlackMessageLink, SlackSubject, SlackSyncLease, View,
};
use heron_core::ticket::NewTicket;
use heron_core::{
    CommentSource, Conclusion, Fingerprint, NoticeId, SchemaName, Severity, TicketChange, TicketId,
    TicketStatus,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Action ids of the buttons Heron renders (see `heron_slack::render::actions`).
pub mod actions {
    pub const ACK: &str = "heron_ack";
    pub const ASSIGN_ME: &str = "heron_assign_me";
    pub const RESOLVE: &str = "heron_resolve";
    pub const ESCALATE: &str = "heron_escalate";
    pub const RESOLVE_SUBMIT: &str = "heron_resolve_submit";
}

/// Who may drive the agent and press the buttons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlackAccess {
    /// Slack user ids (`U…`) or e-mail addresses; empty: any user.
    pub users: Vec<String>,
    /// Channel ids (`C…`); empty: any channel.
    pub channels: Vec<String>,
    /// Ask `data.auth.agent` (when loaded) instead of the lists.
    pub policy: bool,
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    /// Where tickets go when their policy names no channel, or that channel fails.
    pub default_channel: String,
    /// The dashboard's public address, for links.
    pub dashboard_url: Option<String>,
    pub access: SlackAccess,
    /// Tickets and notices created this long before now without a Slack message get one.
    pub horizon: Duration,
    /// Attempts of one sync before it is given up (until the next change).
    pub max_attempts: u32,
    /// Least time between two updates of one message.
    pub update_interval: Duration,
    /// Idle poll of the inbox and the sync queue.
    pub poll_interval: Duration,
    /// How often new tickets and notices are looked for (a ticket is posted within about
    /// this long of being opened).
    pub discover_interval: Duration,
    /// Lease of a delivery or a sync.
    pub lease: Duration,
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            default_channel: String::new(),
            dashboard_url: None,
            access: SlackAccess::default(),
            horizon: Duration::from_secs(24 * 3600),
            max_attempts: 8,
            update_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(500),
            discover_interval: Duration::from_secs(2),
            lease: Duration::from_secs(60),
        }
    }
}

/// The help `@heron help` answers.
pub const HELP: &str = "*Heron* — in a ticket's thread:\n\
    • `@heron <question>` asks the agent about this ticket (one question at a time per thread)\n\
    • `@heron abort` stops the running answer\n\
    In any other thread:\n\
    • `@heron ticket [title]` makes a ticket of the thread\n\
    • `@heron help` shows this";

/// Slack as Heron uses it: accepting deliveries (for the HTTP handlers) and the worker's
/// use cases. Cheap to clone.
#[derive(Clone)]
pub struct SlackService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    platform: Arc<dyn ChatPlatform>,
    tickets: TicketService,
    chat: Option<ChatService>,
    policies: PolicyHandle,
    settings: SlackSettings,
    bot_user_id: String,
    wake: Notify,
}

impl std::fmt::Debug for SlackService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackService")
            .field("default_channel", &self.inner.settings.default_channel)
            .field("bot_user_id", &self.inner.bot_user_id)
            .finish()
    }
}

/// What went wrong handling a delivery or a sync, and whether to try again.
#[derive(Debug)]
enum Failure {
    Chat(ChatError),
    App(AppError),
}

impl From<ChatError> for Failure {
    fn from(e: ChatError) -> Self {
        Failure::Chat(e)
    }
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::App(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::App(e.into())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Chat(ChatError::ChannelNotFound(c)) => write!(f, "channel_not_found ({c})"),
            Failure::Chat(ChatError::RateLimited(_)) => f.write_str("ratelimited"),
            Failure::Chat(e) => write!(f, "{e}"),
            Failure::App(e) => write!(f, "{e}"),
        }
    }
}

impl Failure {
    fn transient(&self) -> bool {
        match self {
            Failure::Chat(e) => e.is_transient(),
            Failure::App(AppError::Unavailable(_)) => true,
            Failure::App(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Chat(ChatError::RateLimited(after)) => *after,
            _ => None,
        }
    }
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(8)).min(Duration::from_secs(300))
}

fn chrono_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl SlackService {
    /// Checks the bot token (`auth.test`): a refused token is a clear error, not a Heron that
    /// silently posts nothing.
    pub async fn connect(
        store: Arc<dyn Store>,
        platform: Arc<dyn ChatPlatform>,
        chat: Option<ChatService>,
        policies: PolicyHandle,
        settings: SlackSettings,
    ) -> AppResult<Self> {
        if settings.default_channel.trim().is_empty() {
            return Err(AppError::Invalid(
                "Slack needs a default channel (slack_channel)".into(),
            ));
        }
        let me = platform.identity().await.map_err(|e| match e {
            ChatError::InvalidAuth(code) => AppError::Invalid(format!(
                "Slack refused the bot token (auth.test answered {code}); check slack_bot_token"
            )),
            other => AppError::Unavailable(format!("cannot reach Slack (auth.test): {other}")),
        })?;
        tracing::info!(bot_user_id = %me.user_id, team = %me.team, channel = %settings.default_channel, "connected to Slack");
        if settings.access.users.is_empty()
            && settings.access.channels.is_empty()
            && !settings.access.policy
        {
            tracing::warn!(
                "no Slack allow-list and no auth.agent policy: every member of the workspace may drive the agent and press the buttons"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                tickets: TicketService::new(store.clone()),
                store,
                platform,
                chat,
                policies,
                settings,
                bot_user_id: me.user_id,
                wake: Notify::new(),
            }),
        })
    }

    /// Stores a verified delivery for the worker; `false` when it was delivered before.
    /// `payload` is an Events API `event_callback` or an interactivity payload.
    pub async fn accept(&self, kind: DeliveryKind, payload: Value) -> AppResult<bool> {
        let id = delivery_id(kind, &payload)?;
        let now = self.inner.store.now().await?;
        let new = self
            .inner
            .store
            .accept_slack_delivery(&NewSlackDelivery {
                id,
                kind,
                payload,
                received_at: now,
            })
            .await?;
        if new {
            self.inner.wake.notify_one();
        }
        Ok(new)
    }

    async fn say(&self, thread: &MessageRef, message: &str) -> Result<MessageRef, ChatError> {
        self.inner
            .platform
            .post(&thread.channel, Some(&thread.ts), &Post::text(message))
            .await
    }

    async fn user_name(&self, id: &str) -> (String, Option<String>) {
        match self.inner.platform.user(id).await {
            Ok(u) => (u.name, u.email),
            Err(e) => {
                tracing::debug!(user = %id, error = %e, "users.info failed; using the id");
                (id.to_owned(), None)
            }
        }
    }

    fn actor(name: &str, user: &str, channel: &str) -> Actor {
        Actor {
            name: if channel.is_empty() {
                format!("{name} (Slack {user})")
            } else {
                format!("{name} (Slack {user} in {channel})")
            },
            source: CommentSource::Slack,
            remote: None,
        }
    }

    /// Whether `user` may drive the agent or press a button in `channel` about `ticket`.
    async fn allowed(
        &self,
        user: &str,
        email: Option<&str>,
        channel: &str,
        message: &str,
        ticket: Option<TicketId>,
    ) -> bool {
        let access = &self.inner.settings.access;
        if access.policy {
            let input = json!({
                "message": message,
                "user": {"id": user, "email": email},
                "channel": channel,
                "ticket": ticket.map(|t| t.to_string()),
                "auth": {"slack": {"id": user}},
            });
            match self.inner.policies.current().authorize_agent(&input) {
                Ok(Some(allowed)) => return allowed,
                Ok(None) => {
                    tracing::warn!(
                        "slack_authorization is policy but no auth.agent package is loaded: denying"
                    );
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "auth.agent failed: denying");
                    return false;
                }
            }
        }
        let user_ok = access.users.is_empty()
            || access
                .users
                .iter()
                .any(|u| u == user || email.is_some_and(|e| e.eq_ignore_ascii_case(u)));
        let channel_ok = access.channels.is_empty() || access.channels.iter().any(|c| c == channel);
        user_ok && channel_ok
    }

    async fn refuse(&self, thread: &MessageRef, user: &str) -> Result<(), Failure> {
        tracing::warn!(user = %user, channel = %thread.channel, "a Slack user who is not allowed tried to drive the agent or press a button");
        self.say(
            thread,
            &format!(
                "Sorry <@{user}>, you are not allowed to do that here. Ask your Heron admin to add you to the allow-list."
            ),
        )
        .await?;
        Ok(())
    }

    // --- deliveries -------------------------------------------------------------------

    async fn handle(&self, delivery: &SlackDelivery) -> Result<(), Failure> {
        match delivery.kind {
            DeliveryKind::Event => {
                let event = &delivery.payload["event"];
                match event["type"].as_str() {
                    Some("app_mention") => self.mention(event).await,
                    Some("message") => self.message(event).await,
                    _ => Ok(()),
                }
            }
            DeliveryKind::Interaction => match delivery.payload["type"].as_str() {
                Some("block_actions") => self.block_actions(&delivery.payload).await,
                Some("view_submission") => self.view_submission(&delivery.payload).await,
                _ => Ok(()),
            },
        }
    }

    fn is_from_a_bot(&self, m: &Value) -> bool {
        m.get("bot_id").is_some_and(|b| !b.is_null())
            || m["subtype"] == "bot_message"
            || text(m, "user") == self.inner.bot_user_id
    }

    async fn ticket_of(&self, thread: &MessageRef) -> Result<Option<TicketId>, Failure> {
        Ok(match self.inner.store.find_slack_thread(thread).await? {
            Some(t) => match t.subject {
                SlackSubject::Ticket(id) => Some(id),
                SlackSubject::Notice(_) => None,
            },
            None => None,
        })
    }

    /// A message in a channel: thread replies become comments; edits and deletions follow.
    async fn message(&self, event: &Value) -> Result<(), Failure> {
        let channel = text(event, "channel");
        match event["subtype"].as_str() {
            None | Some("thread_broadcast") | Some("file_share") => {
                if self.is_from_a_bot(event) {
                    return Ok(());
                }
                let (ts, root) = (text(event, "ts"), text(event, "thread_ts"));
                let said = text(event, "text");
                if root.is_empty()
                    || root == ts
                    || said.contains(&format!("<@{}>", self.inner.bot_user_id))
                {
                    // Not a reply, or a mention (its own app_mention event handles it).
                    return Ok(());
                }
                let thread = MessageRef {
                    channel: channel.clone(),
                    ts: root,
                };
                let Some(ticket) = self.ticket_of(&thread).await? else {
                    return Ok(());
                };
                let here = MessageRef {
                    channel: channel.clone(),
                    ts: ts.clone(),
                };
                if self.inner.store.find_slack_message(&here).await?.is_some() {
                    return Ok(());
                }
                let user = text(event, "user");
                let (name, _) = self.user_name(&user).await;
                let comment = self
                    .inner
                    .tickets
                    .add_comment(
                        ticket,
                        &Actor {
                            name,
                            source: CommentSource::Slack,
                            remote: None,
                        },
                        &said,
                    )
                    .await?;
                self.inner
                    .store
                    .link_slack_message(&SlackMessageLink {
                        channel,
                        ts,
                        ticket_id: ticket,
                        comment_id: comment.id,
                    })
                    .await?;
                Ok(())
            }
            Some("message_changed") => {
                let m = &event["message"];
                if self.is_from_a_bot(m) {
                    return Ok(());
                }
                let here = MessageRef {
                    channel,
                    ts: text(m, "ts"),
                };
                if let Some(link) = self.inner.store.find_slack_message(&here).await? {
                    let new_text = text(m, "text");
                    if !new_text.trim().is_empty() {
                        self.inner
                            .store
                            .edit_comment(link.comment_id, new_text.trim())
                            .await?;
                    }
                }
                Ok(())
            }
            Some("message_deleted") => {
                let here = MessageRef {
                    channel,
                    ts: text(event, "deleted_ts"),
                };
                if let Some(link) = self.inner.store.find_slack_message(&here).await? {
                    let from_slack = self
                        .inner
                        .store
                        .list_comments(link.ticket_id)
                        .await?
                        .iter()
                        .any(|c| c.id == link.comment_id && c.source == CommentSource::Slack);
                    // Only what was said in Slack is unsaid there; a deleted copy of a web
                    // comment leaves the comment alone.
                    if from_slack {
                        self.inner.store.delete_comment(link.comment_id).await?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `@heron …`.
    async fn mention(&self, event: &Value) -> Result<(), Failure> {
        if self.is_from_a_bot(event) {
            return Ok(());
        }
        let channel = text(event, "channel");
        let user = text(event, "user");
        let ts = text(event, "ts");
        let root = Some(text(event, "thread_ts"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| ts.clone());
        let thread = MessageRef {
            channel: channel.clone(),
            ts: root,
        };
        let said = text(event, "text").replace(&format!("<@{}>", self.inner.bot_user_id), "");
        let said = said.trim();
        let (command, rest) = said.split_once(char::is_whitespace).unwrap_or((said, ""));
        let command = command.to_lowercase();
        if command.is_empty() {
            self.say(&thread, "Tell me what you want to do (`@heron help`).")
                .await?;
            return Ok(());
        }
        if command == "help" {
            self.say(&thread, HELP).await?;
            return Ok(());
        }
        let ticket = self.ticket_of(&thread).await?;
        let (name, email) = self.user_name(&user).await;
        if !self
            .allowed(&user, email.as_deref(), &channel, said, ticket)
            .await
        {
            return self.refuse(&thread, &user).await;
        }
        match command.as_str() {
            "abort" | "stop" => {
                // The chat may run in another process: it sees the request when it next
                // renews its claim (every `CHAT_RENEW`) and stops.
                if self.inner.store.abort_slack_chat(&thread).await? {
                    tracing::info!(user = %user, channel = %channel, "agent chat aborted from Slack");
                    self.say(
                        &thread,
                        &format!("🛑 Stopping the agent (asked by <@{user}>)."),
                    )
                    .await?;
                } else {
                    self.say(&thread, "Nothing is running in this thread.")
                        .await?;
                }
                Ok(())
            }
            "ticket" | "t" => match ticket {
                Some(id) => {
                    self.say(&thread, &format!("This thread already is ticket `{id}`."))
                        .await?;
                    Ok(())
                }
                None => self.ticket_from_thread(&thread, &user, &name, rest).await,
            },
            _ => match ticket {
                None => {
                    self.say(
                        &thread,
                        "I answer questions in a ticket's thread. `@heron ticket` makes a ticket of this thread; `@heron help` lists the commands.",
                    )
                    .await?;
                    Ok(())
                }
                Some(id) => self.ask(thread, id, &user, &name, said.to_owned()).await,
            },
        }
    }

    async fn ticket_from_thread(
        &self,
        thread: &MessageRef,
        user: &str,
        name: &str,
        title: &str,
    ) -> Result<(), Failure> {
        let messages = self.inner.platform.replies(thread).await?;
        let mut names: HashMap<String, String> = HashMap::new();
        let mut transcript = String::new();
        for m in messages.iter().filter(|m| !m.bot) {
            let said = m
                .text
                .replace(&format!("<@{}>", self.inner.bot_user_id), "@heron");
            let who = match &m.user {
                Some(id) => match names.get(id) {
                    Some(n) => n.clone(),
                    None => {
                        let (n, _) = self.user_name(id).await;
                        names.insert(id.clone(), n.clone());
                        n
                    }
                },
                None => "someone".to_owned(),
            };
            transcript.push_str(&format!("{who}: {}\n", said.trim()));
        }
        let title = if title.trim().is_empty() {
            messages
                .iter()
                .find(|m| !m.bot)
                .map(|m| heron_core::tool::clip(m.text.trim(), 120).0)
                .unwrap_or_else(|| "Ticket from Slack".to_owned())
        } else {
            title.trim().to_owned()
        };
        let now = self.inner.store.now().await?;
        let schema = SchemaName::parse("slack")
            .map_err(|e| AppError::Internal(format!("schema name: {e}")))?;
        let ticket = self
            .inner
            .store
            .open_thread_ticket(
                NewTicket {
                    id: TicketId::new(),
                    title,
                    description: heron_core::tool::clip(&transcript, 16 * 1024).0,
                    schema,
                    severity: Severity::Medium,
                    assignee: None,
                    tags: vec!["slack".into()],
                    attributes: vec![],
                    channel: Some(thread.channel.clone()),
                    fingerprint: Fingerprint::from_stored(format!(
                        "slack:{}:{}",
                        thread.channel, thread.ts
                    )),
                    created_at: now,
                },
                thread,
                now,
            )
            .await?;
        self.inner
            .tickets
            .add_comment(
                ticket.id,
                &Actor {
                    name: name.to_owned(),
                    source: CommentSource::System,
                    remote: None,
                },
                &format!(
                    "{} made this ticket from a Slack thread",
                    Self::actor(name, user, &thread.channel).name
                ),
            )
            .await?;
        tracing::info!(ticket_id = %ticket.id, user = %user, channel = %thread.channel, "ticket made from a Slack thread");
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Runs the agent chat about `ticket` in the background, its progress and answer in
    /// `thread`. One chat per thread at a time, across processes (a claim in the store).
    async fn ask(
        &self,
        thread: MessageRef,
        ticket: TicketId,
        user: &str,
        name: &str,
        question: String,
    ) -> Result<(), Failure> {
        let Some(chat) = self.inner.chat.clone() else {
            self.say(
                &thread,
                "The agent is not enabled (no model is configured).",
            )
            .await?;
            return Ok(());
        };
        let holder = uuid::Uuid::now_v7();
        let now = self.inner.store.now().await?;
        let store = &self.inner.store;
        if !store
            .claim_slack_chat(&thread, holder, now, now - chrono_of(CHAT_STALE))
            .await?
        {
            self.say(
                &thread,
                "⏳ I am still answering the previous question in this thread; please wait (or `@heron abort`).",
            )
            .await?;
            return Ok(());
        }
        let progress = match self.say(&thread, "🤔 Looking into it…").await {
            Ok(progress) => progress,
            Err(e) => {
                // The delivery is retried: leave the thread free for it.
                if let Err(e) = store.release_slack_chat(&thread, holder).await {
                    tracing::warn!(error = %e, "could not release a Slack chat claim");
                }
                return Err(e.into());
            }
        };
        let actor = Actor {
            name: name.to_owned(),
            source: CommentSource::Slack,
            remote: None,
        };
        tracing::info!(ticket_id = %ticket, user = %user, channel = %thread.channel, "agent chat asked from Slack");
        let this = self.clone();
        tokio::spawn(async move {
            let (steps_tx, steps_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let updater = tokio::spawn(progress_updater(
                this.inner.platform.clone(),
                progress.clone(),
                vec!["🤔 Looking into it…".into()],
                steps_rx,
                this.inner.settings.update_interval,
            ));
            let on_step = move |step: &AgentStep| {
                if let Some(line) = step_line(step) {
                    let _ = steps_tx.send(line);
                }
            };
            let closing = {
                let answer = chat.ask(ticket, &actor, &question, &on_step);
                tokio::pin!(answer);
                let mut renew = tokio::time::interval(CHAT_RENEW);
                renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        result = &mut answer => break closing_line(&result),
                        _ = renew.tick() => {
                            if !this.keep_chat(&thread, holder).await {
                                tracing::info!(ticket_id = %ticket, "agent chat stopped");
                                break "🛑 Stopped.".to_owned();
                            }
                        }
                    }
                }
            };
            drop(on_step);
            let _ = updater.await;
            if let Err(e) = this
                .inner
                .platform
                .update(&progress, &Post::text(closing))
                .await
            {
                tracing::warn!(error = %e, "could not update the progress message");
            }
            if let Err(e) = this.inner.store.release_slack_chat(&thread, holder).await {
                tracing::warn!(error = %e, "could not release a Slack chat claim");
            }
            // The answer is a comment by the agent: the thread's sync posts it.
            if let Ok(now) = this.inner.store.now().await
                && let Err(e) = this
                    .inner
                    .store
                    .request_slack_sync(SlackSubject::Ticket(ticket), now)
                    .await
            {
                tracing::warn!(error = %e, "could not request a Slack sync");
            }
            this.inner.wake.notify_one();
        });
        Ok(())
    }

    /// Renews a chat's claim on its thread: `false` when it must stop (aborted, or taken
    /// over). A store error keeps the chat going: the claim goes stale at worst.
    async fn keep_chat(&self, thread: &MessageRef, holder: uuid::Uuid) -> bool {
        let store = &self.inner.store;
        let renewed = match store.now().await {
            Ok(now) => store.renew_slack_chat(thread, holder, now).await,
            Err(e) => Err(e),
        };
        renewed.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not renew a Slack chat claim");
            true
        })
    }

    // --- interactions -----------------------------------------------------------------

    async fn block_actions(&self, payload: &Value) -> Result<(), Failure> {
        let user = text(&payload["user"], "id");
        let channel = text(&payload["channel"], "id");
        let message_ts = text(&payload["container"], "message_ts");
        let message_ts = if message_ts.is_empty() {
            text(&payload["message"], "ts")
        } else {
            message_ts
        };
        let root = Some(text(&payload["message"], "thread_ts"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| message_ts.clone());
        let thread = MessageRef {
            channel: channel.clone(),
            ts: root,
        };
        let Some(action) = payload["actions"].as_array().and_then(|a| a.first()) else {
            return Ok(());
        };
        let action_id = text(action, "action_id");
        let value = text(action, "value");
        let (name, email) = self.user_name(&user).await;
        let ticket: Option<TicketId> = value.parse().ok();
        let subject_ticket = if action_id == actions::ESCALATE {
            None
        } else {
            ticket
        };
        if !self
            .allowed(
                &user,
                email.as_deref(),
                &channel,
                &format!("button {action_id}"),
                subject_ticket,
            )
            .await
        {
            return self.refuse(&thread, &user).await;
        }
        let actor = Self::actor(&name, &user, &channel);
        let outcome = match action_id.as_str() {
            actions::ACK | actions::ASSIGN_ME | actions::RESOLVE => {
                let Some(id) = ticket else { return Ok(()) };
                match action_id.as_str() {
                    actions::ACK => self
                        .inner
                        .tickets
                        .update(
                            id,
                            TicketChange {
                                status: Some(TicketStatus::Acknowledged),
                                ..TicketChange::default()
                            },
                            &actor,
                        )
                        .await
                        .map(|_| ()),
                    actions::ASSIGN_ME => self
                        .inner
                        .tickets
                        .update(
                            id,
                            TicketChange {
                                assignee: Some(Some(name.clone())),
                                ..TicketChange::default()
                            },
                            &actor,
                        )
                        .await
                        .map(|_| ()),
                    _ => {
                        let title = self
                            .inner
                            .store
                            .get_ticket(id)
                            .await?
                            .map(|t| t.title)
                            .unwrap_or_default();
                        self.inner
                            .platform
                            .open_view(
                                &text(payload, "trigger_id"),
                                &View::Resolve {
                                    ticket_id: id,
                                    title,
                                },
                            )
                            .await?;
                        Ok(())
                    }
                }
            }
            actions::ESCALATE => {
                let Ok(notice) = value.parse::<NoticeId>() else {
                    return Ok(());
                };
                let result = self
                    .inner
                    .tickets
                    .escalate_notice(notice, &actor)
                    .await
                    .map(|_| ());
                if result.is_ok() {
                    let now = self.inner.store.now().await?;
                    self.inner
                        .store
                        .request_slack_sync(SlackSubject::Notice(notice), now)
                        .await?;
                }
                result
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => {
                self.inner.wake.notify_one();
                Ok(())
            }
            Err(
                e @ (AppError::Conflict(_)
                | AppError::Invalid(_)
                | AppError::NotFound(_)
                | AppError::Lifecycle(_)),
            ) => {
                self.say(&thread, &format!("<@{user}>: that did not work: {e}"))
                    .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn view_submission(&self, payload: &Value) -> Result<(), Failure> {
        let view = &payload["view"];
        if view["callback_id"] != actions::RESOLVE_SUBMIT {
            return Ok(());
        }
        let Ok(id) = text(view, "private_metadata").parse::<TicketId>() else {
            return Ok(());
        };
        let values = &view["state"]["values"];
        let conclusion = values["conclusion"]["value"]["selected_option"]["value"]
            .as_str()
            .and_then(|c| c.parse::<Conclusion>().ok());
        let reason = values["reason"]["value"]["value"]
            .as_str()
            .map(str::to_owned)
            .filter(|r| !r.trim().is_empty());
        let user = text(&payload["user"], "id");
        let (name, email) = self.user_name(&user).await;
        let thread = self
            .inner
            .store
            .get_slack_thread(SlackSubject::Ticket(id))
            .await?;
        let channel = thread
            .as_ref()
            .and_then(|t| t.channel.clone())
            .unwrap_or_default();
        let reply_to = thread.as_ref().and_then(|t| t.thread());
        if !self
            .allowed(&user, email.as_deref(), &channel, "resolve", Some(id))
            .await
        {
            return match reply_to {
                Some(t) => self.refuse(&t, &user).await,
                None => Ok(()),
            };
        }
        let Some(conclusion) = conclusion else {
            // The modal requires one; a payload without it is answered, not dropped.
            if let Some(t) = reply_to {
                self.say(
                    &t,
                    &format!("<@{user}>: could not resolve: no conclusion was chosen"),
                )
                .await?;
            }
            return Ok(());
        };
        let result = self
            .inner
            .tickets
            .update(
                id,
                TicketChange {
                    status: Some(TicketStatus::Resolved),
                    conclusion: Some(conclusion),
                    reason,
                    ..TicketChange::default()
                },
                &Self::actor(&name, &user, &channel),
            )
            .await;
        match (result, reply_to) {
            (Ok(_), _) => {
                self.inner.wake.notify_one();
                Ok(())
            }
            (
                Err(e @ (AppError::Conflict(_) | AppError::Lifecycle(_) | AppError::Invalid(_))),
                Some(t),
            ) => {
                self.say(&t, &format!("<@{user}>: could not resolve: {e}"))
                    .await?;
                Ok(())
            }
            (Err(e), _) => Err(e.into()),
        }
    }

    // --- sync -------------------------------------------------------------------------

    /// Posts or updates the subject's message, then posts the ticket's comments not yet in
    /// the thread. Answers where the first post landed, when it happened now.
    async fn sync(&self, lease: &SlackSyncLease) -> (Option<Posted>, Result<(), Failure>) {
        let mut posted = None;
        let result = self.sync_inner(lease, &mut posted).await;
        (posted, result)
    }

    async fn sync_inner(
        &self,
        lease: &SlackSyncLease,
        posted: &mut Option<Posted>,
    ) -> Result<(), Failure> {
        let settings = &self.inner.settings;
        let thread = &lease.thread;
        let (post, wanted_channel, ticket) = match thread.subject {
            SlackSubject::Ticket(id) => {
                let Some(t) = self.inner.store.get_ticket(id).await? else {
                    return Ok(());
                };
                let channel = t.channel.clone();
                (
                    Post::Ticket {
                        ticket: Box::new(t),
                        dashboard_url: settings.dashboard_url.clone(),
                        note: None,
                    },
                    channel,
                    Some(id),
                )
            }
            SlackSubject::Notice(id) => {
                let Some(n) = self.inner.store.get_notice(id).await? else {
                    return Ok(());
                };
                let channel = n.channel.clone();
                (
                    Post::Notice {
                        notice: n,
                        dashboard_url: settings.dashboard_url.clone(),
                        note: None,
                    },
                    channel,
                    None,
                )
            }
        };
        let thread_ref = match thread.message() {
            Some(message) => {
                self.inner.platform.update(&message, &post).await?;
                thread.thread().unwrap_or(message)
            }
            None => {
                let first = self
                    .first_post(
                        thread.channel.clone(),
                        thread.thread_ts.clone(),
                        wanted_channel,
                        post,
                    )
                    .await?;
                let root = MessageRef {
                    channel: first.channel.clone(),
                    ts: first.thread_ts.clone(),
                };
                *posted = Some(first);
                root
            }
        };
        if let Some(ticket) = ticket {
            self.post_comments(ticket, &thread_ref).await?;
        }
        Ok(())
    }

    /// The first post: into the bound thread, else the policy's channel, else the default
    /// one; a policy channel that fails falls back to the default with a note.
    async fn first_post(
        &self,
        bound_channel: Option<String>,
        bound_thread: Option<String>,
        wanted: Option<String>,
        post: Post,
    ) -> Result<Posted, Failure> {
        let default = self.inner.settings.default_channel.clone();
        if let (Some(channel), Some(root)) = (bound_channel, bound_thread) {
            let at = self
                .inner
                .platform
                .post(&channel, Some(&root), &post)
                .await?;
            return Ok(Posted {
                channel: at.channel,
                ts: at.ts,
                thread_ts: root,
            });
        }
        let target = wanted
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| default.clone());
        match self.inner.platform.post(&target, None, &post).await {
            Ok(at) => Ok(Posted {
                channel: at.channel,
                thread_ts: at.ts.clone(),
                ts: at.ts,
            }),
            Err(e) if !e.is_transient() && target != default => {
                tracing::warn!(channel = %target, error = %e, "cannot post to the policy's channel; using the default channel");
                let note =
                    format!("⚠️ Could not post to channel {target} ({e}); posted here instead.");
                let post = match post {
                    Post::Ticket {
                        ticket,
                        dashboard_url,
                        ..
                    } => Post::Ticket {
                        ticket,
                        dashboard_url,
                        note: Some(note),
                    },
                    Post::Notice {
                        notice,
                        dashboard_url,
                        ..
                    } => Post::Notice {
                        notice,
                        dashboard_url,
                        note: Some(note),
                    },
                    other => other,
                };
                let at = self.inner.platform.post(&default, None, &post).await?;
                Ok(Posted {
                    channel: at.channel,
                    thread_ts: at.ts.clone(),
                    ts: at.ts,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn post_comments(&self, ticket: TicketId, thread: &MessageRef) -> Result<(), Failure> {
        let linked: HashSet<_> = self
            .inner
            .store
            .slack_linked_comments(ticket)
            .await?
            .into_iter()
            .collect();
        // The triage agent's work: one line per tool call and its finding, once per run (the
        // run's id stands in the link for a comment's).
        for run in self.inner.store.list_agent_runs(ticket).await? {
            let key = heron_core::CommentId::from_uuid(run.id);
            if run.purpose != heron_core::agent::RunPurpose::Triage
                || run.status == RunStatus::Running
                || linked.contains(&key)
            {
                continue;
            }
            let at = self.say(thread, &triage_summary(&run)).await?;
            self.inner
                .store
                .link_slack_message(&SlackMessageLink {
                    channel: at.channel,
                    ts: at.ts,
                    ticket_id: ticket,
                    comment_id: key,
                })
                .await?;
        }
        for c in self.inner.store.list_comments(ticket).await? {
            if linked.contains(&c.id) || c.source == CommentSource::Slack {
                continue;
            }
            let line = match c.source {
                CommentSource::System => format!("› {}", c.text),
                CommentSource::Agent => format!("🤖 *{}*: {}", c.author, c.text),
                source => format!("💬 *{}* ({source}): {}", c.author, c.text),
            };
            let at = self.say(thread, &line).await?;
            self.inner
                .store
                .link_slack_message(&SlackMessageLink {
                    channel: at.channel,
                    ts: at.ts,
                    ticket_id: ticket,
                    comment_id: c.id,
                })
                .await?;
        }
        Ok(())
    }
}

const TRIAGE_HEADER: &str = "🤖 *Triage agent*";
/// How long a triage run's progress waits for its ticket's message to be posted (tickets are
/// discovered every `discover_interval`); after that the thread's sync sums the run up.
const TRIAGE_THREAD_WAIT: Duration = Duration::from_secs(120);
/// How long the end of a triage run waits for its progress message to be linked to it, so
/// the thread's sync does not post the summary a second time.
const TRIAGE_LINK_WAIT: Duration = Duration::from_secs(3);

enum TriageEvent {
    Step(String),
    Finished(Box<AgentRun>, tokio::sync::oneshot::Sender<()>),
}

/// A triage run's progress, shown by [`SlackService::show_triage`].
struct SlackTriageWatch {
    events: tokio::sync::mpsc::UnboundedSender<TriageEvent>,
}

impl TriageProgress for SlackService {
    fn started(&self, ticket: TicketId) -> Box<dyn TriageWatch> {
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(self.clone().show_triage(ticket, received));
        Box::new(SlackTriageWatch { events })
    }
}

#[async_trait::async_trait]
impl TriageWatch for SlackTriageWatch {
    fn step(&self, step: &AgentStep) {
        if let Some(line) = step_line(step) {
            let _ = self.events.send(TriageEvent::Step(line));
        }
    }

    async fn finished(self: Box<Self>, run: &AgentRun) {
        let (done, linked) = tokio::sync::oneshot::channel();
        if self
            .events
            .send(TriageEvent::Finished(Box::new(run.clone()), done))
            .is_ok()
        {
            let _ = tokio::time::timeout(TRIAGE_LINK_WAIT, linked).await;
        }
    }
}

impl SlackService {
    /// Shows a triage run in its ticket's thread: one message, a line per tool call, updated
    /// in place, which becomes the run's summary when it ends. Lines wait until the ticket's
    /// message is posted; a run that ends before then is summed up by the thread's sync.
    async fn show_triage(
        self,
        ticket: TicketId,
        mut events: tokio::sync::mpsc::UnboundedReceiver<TriageEvent>,
    ) {
        let mut lines = vec![format!("{TRIAGE_HEADER} is investigating…")];
        let waiting_since = std::time::Instant::now();
        let thread = loop {
            match self
                .inner
                .store
                .get_slack_thread(SlackSubject::Ticket(ticket))
                .await
            {
                Ok(found) => {
                    if let Some(thread) = found.and_then(|t| t.message().and(t.thread())) {
                        break thread;
                    }
                }
                Err(e) => {
                    tracing::debug!(ticket_id = %ticket, error = %e, "cannot read the Slack thread")
                }
            }
            if waiting_since.elapsed() > TRIAGE_THREAD_WAIT {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(250), events.recv()).await {
                Ok(Some(TriageEvent::Step(line))) => lines.push(line),
                Ok(Some(TriageEvent::Finished(..)) | None) => return,
                Err(_) => {}
            }
        };
        let message = match self.say(&thread, &shown(&lines)).await {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(ticket_id = %ticket, error = %e, "cannot post triage progress");
                return;
            }
        };
        while let Some(event) = events.recv().await {
            let line = match event {
                TriageEvent::Step(line) => line,
                TriageEvent::Finished(run, done) => {
                    return self.end_triage_message(ticket, &message, &run, done).await;
                }
            };
            lines.push(line);
            // Coalesce the steps of one interval into one update.
            tokio::time::sleep(self.inner.settings.update_interval).await;
            while let Ok(more) = events.try_recv() {
                match more {
                    TriageEvent::Step(line) => lines.push(line),
                    TriageEvent::Finished(run, done) => {
                        return self.end_triage_message(ticket, &message, &run, done).await;
                    }
                }
            }
            if let Err(e) = self
                .inner
                .platform
                .update(&message, &Post::text(shown(&lines)))
                .await
            {
                tracing::debug!(error = %e, "could not update the triage progress message");
            }
        }
    }

    /// Makes the progress message the run's summary: linked to the run first (so the sync
    /// does not post it again), unless the sync already posted it.
    async fn end_triage_message(
        &self,
        ticket: TicketId,
        message: &MessageRef,
        run: &AgentRun,
        done: tokio::sync::oneshot::Sender<()>,
    ) {
        let linked = self
            .inner
            .store
            .link_slack_message(&SlackMessageLink {
                channel: message.channel.clone(),
                ts: message.ts.clone(),
                ticket_id: ticket,
                comment_id: heron_core::CommentId::from_uuid(run.id),
            })
            .await;
        let _ = done.send(());
        let text = match linked {
            Ok(true) => triage_summary(run),
            Ok(false) => format!("{TRIAGE_HEADER} finished; its finding is below."),
            Err(e) => {
                tracing::warn!(ticket_id = %ticket, error = %e, "could not link the triage message");
                format!("{TRIAGE_HEADER} finished; its finding is below.")
            }
        };
        if let Err(e) = self.inner.platform.update(message, &Post::text(text)).await {
            tracing::warn!(ticket_id = %ticket, error = %e, "could not update the triage message");
        }
    }
}

/// The last lines of a progress message (Slack messages have a size limit).
fn shown(lines: &[String]) -> String {
    let skip = lines.len().saturating_sub(20);
    lines[skip..].join("\n")
}

/// The triage run as a thread message: its tool calls, one a line, and its finding.
fn triage_summary(run: &heron_core::agent::AgentRun) -> String {
    let mut lines = vec![TRIAGE_HEADER.to_owned()];
    lines.extend(run.steps.iter().filter_map(step_line));
    let label = |v: serde_json::Result<Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default()
    };
    match &run.finding {
        Some(f) => lines.push(format!(
            "*Finding*: {} (severity {}, confidence {:.0}%)\n{}\n💡 {}",
            label(serde_json::to_value(f.verdict)),
            label(serde_json::to_value(f.severity)),
            f.confidence * 100.0,
            f.summary,
            f.recommendation
        )),
        None => lines.push(format!(
            "The investigation ended without a finding ({}).",
            match run.status {
                RunStatus::BudgetExhausted => "its budget ran out",
                _ => "it failed",
            }
        )),
    }
    lines.join("\n")
}

/// How often a running chat renews its claim on its thread (and so how soon `@heron abort`
/// from any process stops it).
const CHAT_RENEW: Duration = Duration::from_secs(1);
/// A claim not renewed for this long belongs to a process that died: it is taken over.
const CHAT_STALE: Duration = Duration::from_secs(30);

/// A tool call as a progress line.
fn step_line(step: &AgentStep) -> Option<String> {
    (step.kind == StepKind::Tool).then(|| {
        let tool = step.tool.as_deref().unwrap_or("tool");
        let mark = if step.error.is_some() {
            "⚠️"
        } else {
            "🔧"
        };
        format!("{mark} `{tool}`")
    })
}

/// How a chat's progress message ends.
fn closing_line(result: &Result<crate::ChatReply, AppError>) -> String {
    match result {
        Ok(reply) if reply.answer.is_some() => {
            format!("✅ Answered ({} steps)", reply.run.steps.len())
        }
        Ok(reply) => format!(
            "⚠️ The agent stopped without an answer ({}).",
            match reply.run.status {
                RunStatus::BudgetExhausted => "its budget ran out",
                RunStatus::Failed => "it failed",
                _ => "no answer",
            }
        ),
        Err(e) => format!("⚠️ The agent could not answer: {e}"),
    }
}

/// Keeps the progress message to one line per tool call after `lines`, updated at most once
/// per `interval`; ends when the run's sender is dropped.
async fn progress_updater(
    platform: Arc<dyn ChatPlatform>,
    message: MessageRef,
    mut lines: Vec<String>,
    mut steps: tokio::sync::mpsc::UnboundedReceiver<String>,
    interval: Duration,
) {
    while let Some(line) = steps.recv().await {
        lines.push(line);
        tokio::time::sleep(interval).await;
        while let Ok(more) = steps.try_recv() {
            lines.push(more);
        }
        if let Err(e) = platform.update(&message, &Post::text(shown(&lines))).await {
            tracing::debug!(error = %e, "could not update the progress message");
        }
    }
}

/// Slack's `event_id`, or for an interaction what identifies it (a retried interaction
/// carries the same).
fn delivery_id(kind: DeliveryKind, payload: &Value) -> AppResult<String> {
    match kind {
        DeliveryKind::Event => {
            let id = text(payload, "event_id");
            if id.is_empty() {
                return Err(AppError::Invalid("the event has no event_id".into()));
            }
            Ok(id)
        }
        DeliveryKind::Interaction => {
            let user = text(&payload["user"], "id");
            match payload["type"].as_str() {
                Some("block_actions") => {
                    let action = payload["actions"]
                        .as_array()
                        .and_then(|a| a.first())
                        .cloned()
                        .unwrap_or_default();
                    Ok(format!(
                        "interaction:{user}:{}:{}",
                        text(&action, "action_ts"),
                        text(&action, "action_id")
                    ))
                }
                Some("view_submission") => Ok(format!(
                    "interaction:{user}:{}:{}",
                    text(&payload["view"], "id"),
                    text(&payload["view"], "hash")
                )),
                _ => Ok(format!("interaction:{}", uuid::Uuid::new_v4())),
            }
        }
    }
}

/// Works the Slack inbox and the sync queue until stopped.
pub struct SlackWorker {
    slack: SlackService,
    /// When new tickets and notices were last looked for.
    last_discovery: Mutex<Option<heron_core::Timestamp>>,
}

impl SlackWorker {
    pub fn new(slack: SlackService) -> Self {
        Self {
            slack,
            last_discovery: Mutex::new(None),
        }
    }

    /// One pass: find new subjects, act on due deliveries, run due syncs. Answers how much
    /// it did.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let inner = &self.slack.inner;
        let store = &inner.store;
        let settings = &inner.settings;
        let now = store.now().await?;
        let due = self
            .last_discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|last| now >= last + chrono_of(settings.discover_interval));
        if due {
            store
                .discover_slack_subjects(now - chrono_of(settings.horizon), now)
                .await?;
            *self
                .last_discovery
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
        let lease_until = now + chrono_of(settings.lease);
        let mut done = 0;
        for delivery in store.lease_slack_deliveries(16, now, lease_until).await? {
            done += 1;
            let result = self.slack.handle(&delivery).await;
            let now = store.now().await?;
            let (error, retry_at) = match &result {
                Ok(()) => (None, None),
                Err(f) if f.transient() && delivery.attempts < settings.max_attempts => {
                    let delay = f
                        .retry_after()
                        .unwrap_or_else(|| backoff(delivery.attempts));
                    (Some(f.to_string()), Some(now + chrono_of(delay)))
                }
                Err(f) => (Some(f.to_string()), None),
            };
            if let Some(e) = &error {
                tracing::warn!(delivery = %delivery.id, error = %e, retry = retry_at.is_some(), "a Slack delivery failed");
            }
            if let Err(e) = store
                .finish_slack_delivery(&delivery, error.as_deref(), retry_at, now)
                .await
            {
                tracing::warn!(delivery = %delivery.id, error = %e, "could not record a Slack delivery's outcome");
            }
        }
        let now = store.now().await?;
        for lease in store
            .lease_slack_syncs(16, now, now + chrono_of(settings.lease))
            .await?
        {
            done += 1;
            let (posted, result) = self.slack.sync(&lease).await;
            let now = store.now().await?;
            let outcome = match result {
                Ok(()) => {
                    store
                        .finish_slack_sync(
                            &lease,
                            posted.as_ref(),
                            now + chrono_of(settings.update_interval),
                            now,
                        )
                        .await
                }
                Err(f) => {
                    let attempts = lease.thread.attempts;
                    let retry_at = (f.transient() || matches!(f, Failure::Chat(ChatError::Api(_))))
                        .then_some(())
                        .filter(|_| attempts < settings.max_attempts)
                        .map(|_| {
                            now + chrono_of(f.retry_after().unwrap_or_else(|| backoff(attempts)))
                        });
                    tracing::warn!(subject = ?lease.thread.subject, attempt = attempts, error = %f, retry = retry_at.is_some(), "Slack sync failed");
                    store
                        .fail_slack_sync(&lease, posted.as_ref(), &f.to_string(), retry_at, now)
                        .await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(subject = ?lease.thread.subject, error = %e, "could not record a Slack sync's outcome");
            }
        }
        Ok(done)
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let poll = self.slack.inner.settings.poll_interval;
        loop {
            if *stop.borrow() {
                return;
            }
            let busy = match self.run_once().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "the Slack worker cannot reach the store");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.slack.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}
