//! [`RecordingChat`]: an in-memory [`ChatPlatform`] that records what Heron posts.

use crate::slack::{
    BotIdentity, ChatError, ChatPlatform, ChatUser, MessageRef, Post, ThreadMessage, View,
};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One call Heron made.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatCall {
    Post {
        at: MessageRef,
        thread_ts: Option<String>,
        post: Post,
    },
    Update {
        at: MessageRef,
        post: Post,
    },
    OpenView {
        trigger_id: String,
        view: View,
    },
}

/// Posts get timestamps `1700000000.000001`, `…002`…; channels not in `channels` (when any are
/// declared) answer `channel_not_found`; queued failures answer the next calls.
#[derive(Debug, Default)]
pub struct RecordingChat {
    state: Mutex<ChatState>,
}

#[derive(Debug, Default)]
struct ChatState {
    calls: Vec<ChatCall>,
    seq: u64,
    channels: HashSet<String>,
    users: HashMap<String, ChatUser>,
    failures: VecDeque<ChatError>,
    /// Messages by thread root, in order, for `replies`.
    threads: HashMap<MessageRef, Vec<ThreadMessage>>,
}

impl RecordingChat {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, ChatState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Only these channels exist (otherwise every channel does).
    pub fn with_channels(self, channels: &[&str]) -> Self {
        self.lock().channels = channels.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    pub fn add_user(&self, user: ChatUser) {
        self.lock().users.insert(user.id.clone(), user);
    }

    /// The next call fails with `error`.
    pub fn fail_next(&self, error: ChatError) {
        self.lock().failures.push_back(error);
    }

    /// A human message in a thread, as `replies` will show it.
    pub fn add_thread_message(&self, thread: &MessageRef, message: ThreadMessage) {
        self.lock()
            .threads
            .entry(thread.clone())
            .or_default()
            .push(message);
    }

    pub fn calls(&self) -> Vec<ChatCall> {
        self.lock().calls.clone()
    }

    /// The texts of every post (fallback text for cards).
    pub fn posted_texts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ChatCall::Post { post, .. } => Some(post.fallback_text()),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl ChatPlatform for RecordingChat {
    async fn identity(&self) -> Result<BotIdentity, ChatError> {
        if let Some(e) = self.lock().failures.pop_front() {
            return Err(e);
        }
        Ok(BotIdentity {
            user_id: "UHERON".into(),
            team: "Heron test".into(),
        })
    }

    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        post: &Post,
    ) -> Result<MessageRef, ChatError> {
        let mut s = self.lock();
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        if !s.channels.is_empty() && !s.channels.contains(channel) {
            return Err(ChatError::ChannelNotFound(channel.to_owned()));
        }
        s.seq += 1;
        let at = MessageRef {
            channel: channel.to_owned(),
            ts: format!("1700000000.{:06}", s.seq),
        };
        let root = MessageRef {
            channel: channel.to_owned(),
            ts: thread_ts.map_or_else(|| at.ts.clone(), str::to_owned),
        };
        s.threads.entry(root).or_default().push(ThreadMessage {
            ts: at.ts.clone(),
            user: Some("UHERON".into()),
            bot: true,
            text: post.fallback_text(),
        });
        s.calls.push(ChatCall::Post {
            at: at.clone(),
            thread_ts: thread_ts.map(str::to_owned),
            post: post.clone(),
        });
        Ok(at)
    }

    async fn update(&self, message: &MessageRef, post: &Post) -> Result<(), ChatError> {
        let mut s = self.lock();
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        if let Some(m) = s
            .threads
            .values_mut()
            .flat_map(|t| t.iter_mut())
            .find(|m| m.ts == message.ts)
        {
            m.text = post.fallback_text();
        }
        s.calls.push(ChatCall::Update {
            at: message.clone(),
            post: post.clone(),
        });
        Ok(())
    }

    async fn open_view(&self, trigger_id: &str, view: &View) -> Result<(), ChatError> {
        let mut s = self.lock();
        if let Some(e) = s.failures.pop_front() {
            return Err(e);
        }
        s.calls.push(ChatCall::OpenView {
            trigger_id: trigger_id.to_owned(),
            view: view.clone(),
        });
        Ok(())
    }

    async fn user(&self, id: &str) -> Result<ChatUser, ChatError> {
        let s = self.lock();
        Ok(s.users.get(id).cloned().unwrap_or_else(|| ChatUser {
            id: id.to_owned(),
            name: id.to_owned(),
            email: None,
            is_bot: false,
        }))
    }

    async fn replies(&self, thread: &MessageRef) -> Result<Vec<ThreadMessage>, ChatError> {
        let s = self.lock();
        s.threads
            .get(thread)
            .cloned()
            .ok_or_else(|| ChatError::Api("thread_not_found".into()))
    }
}
