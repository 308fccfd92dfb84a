//! [`SlackClient`]: the [`ChatPlatform`] port over the Slack Web API (slack-morphism over
//! hyper with rustls and ring, the process's one TLS provider).

use crate::render;
use async_trait::async_trait;
use heron_core::slack::{
    BotIdentity, ChatError, ChatPlatform, ChatUser, MessageRef, Post, ThreadMessage, View,
};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::sync::Arc;

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// Where and how to reach Slack.
#[derive(Clone)]
pub struct SlackClientSettings {
    /// `xoxb-…`.
    pub bot_token: String,
    /// The Web API root; `https://slack.com/api` unless testing. A plain `http://` root is
    /// accepted only for a loopback fake.
    pub base_url: Option<String>,
}

impl std::fmt::Debug for SlackClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClientSettings")
            .field("bot_token", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlackSetupError {
    #[error("cannot load the system's root certificates: {0}")]
    Roots(std::io::Error),
    #[error("the Slack base URL {0:?} is not https (plain http is only for a loopback fake)")]
    InsecureUrl(String),
}

/// The Slack Web API client. `Debug` does not show the token.
#[derive(Clone)]
pub struct SlackClient {
    client: Arc<slack_morphism::SlackClient<Connector>>,
    token: SlackApiToken,
}

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackClient { token: <redacted> }")
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
}

impl SlackClient {
    pub fn new(settings: &SlackClientSettings) -> Result<Self, SlackSetupError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(SlackSetupError::Roots)?;
        let https = match settings.base_url.as_deref() {
            Some(url) if url.starts_with("http://") => {
                if !is_loopback(url) {
                    return Err(SlackSetupError::InsecureUrl(url.to_owned()));
                }
                builder.https_or_http().enable_http1().build()
            }
            _ => builder.https_only().enable_http1().enable_http2().build(),
        };
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(url) = &settings.base_url {
            connector = connector.with_slack_api_url(url.trim_end_matches('/'));
        }
        Ok(Self {
            client: Arc::new(slack_morphism::SlackClient::new(connector)),
            token: SlackApiToken::new(settings.bot_token.clone().into()),
        })
    }

    fn content(post: &Post) -> Result<SlackMessageContent, ChatError> {
        let blocks: Vec<SlackBlock> =
            serde_json::from_value(serde_json::Value::Array(render::blocks(post)))
                .map_err(|e| ChatError::Api(format!("cannot build the message blocks: {e}")))?;
        Ok(SlackMessageContent::new()
            .with_text(post.fallback_text())
            .with_blocks(blocks))
    }
}

/// Slack's error codes, as Heron's.
fn chat_error(error: SlackClientError) -> ChatError {
    match error {
        SlackClientError::RateLimitError(e) => ChatError::RateLimited(e.retry_after),
        SlackClientError::ApiError(e) => match e.code.as_str() {
            "ratelimited" => ChatError::RateLimited(None),
            "channel_not_found" | "not_in_channel" | "is_archived" => {
                ChatError::ChannelNotFound(e.code)
            }
            "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
            | "token_expired" | "no_permission" | "missing_scope" => ChatError::InvalidAuth(e.code),
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                ChatError::Unavailable(e.code)
            }
            _ => ChatError::Api(e.code),
        },
        SlackClientError::HttpError(e) if e.status_code.is_server_error() => {
            ChatError::Unavailable(format!("HTTP {}", e.status_code))
        }
        SlackClientError::HttpError(e) => ChatError::Api(format!("HTTP {}", e.status_code)),
        other => ChatError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl ChatPlatform for SlackClient {
    async fn identity(&self) -> Result<BotIdentity, ChatError> {
        let session = self.client.open_session(&self.token);
        let me = session.auth_test().await.map_err(chat_error)?;
        Ok(BotIdentity {
            user_id: me.user_id.to_string(),
            team: me.team,
        })
    }

    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        post: &Post,
    ) -> Result<MessageRef, ChatError> {
        let session = self.client.open_session(&self.token);
        let mut request =
            SlackApiChatPostMessageRequest::new(channel.to_owned().into(), Self::content(post)?);
        if let Some(ts) = thread_ts {
            request = request.with_thread_ts(ts.to_owned().into());
        }
        let answer = session
            .chat_post_message(&request)
            .await
            .map_err(chat_error)?;
        Ok(MessageRef {
            channel: answer.channel.to_string(),
            ts: answer.ts.to_string(),
        })
    }

    async fn update(&self, message: &MessageRef, post: &Post) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        let request = SlackApiChatUpdateRequest::new(
            message.channel.clone().into(),
            Self::content(post)?,
            message.ts.clone().into(),
        );
        session.chat_update(&request).await.map_err(chat_error)?;
        Ok(())
    }

    async fn open_view(&self, trigger_id: &str, view: &View) -> Result<(), ChatError> {
        let session = self.client.open_session(&self.token);
        let view: SlackView = serde_json::from_value(render::view(view))
            .map_err(|e| ChatError::Api(format!("cannot build the modal: {e}")))?;
        session
            .views_open(&SlackApiViewsOpenRequest::new(
                trigger_id.to_owned().into(),
                view,
            ))
            .await
            .map_err(chat_error)?;
        Ok(())
    }

    async fn user(&self, id: &str) -> Result<ChatUser, ChatError> {
        let session = self.client.open_session(&self.token);
        let answer = session
            .users_info(&SlackApiUsersInfoRequest::new(id.to_owned().into()))
            .await
            .map_err(chat_error)?;
        let user = answer.user;
        let profile = user.profile.as_ref();
        let name = profile
            .and_then(|p| p.display_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| user.real_name.clone().filter(|n| !n.is_empty()))
            .or_else(|| user.name.clone())
            .unwrap_or_else(|| id.to_owned());
        Ok(ChatUser {
            id: user.id.to_string(),
            name,
            email: profile.and_then(|p| p.email.as_ref()).map(|e| e.0.clone()),
            is_bot: user.flags.is_bot.unwrap_or(false),
        })
    }

    async fn replies(&self, thread: &MessageRef) -> Result<Vec<ThreadMessage>, ChatError> {
        let session = self.client.open_session(&self.token);
        let answer = session
            .conversations_replies(
                &SlackApiConversationsRepliesRequest::new(
                    thread.channel.clone().into(),
                    thread.ts.clone().into(),
                )
                .with_limit(200),
            )
            .await
            .map_err(chat_error)?;
        Ok(answer
            .messages
            .into_iter()
            .map(|m| ThreadMessage {
                ts: m.origin.ts.to_string(),
                bot: m.sender.bot_id.is_some(),
                user: m.sender.user.map(|u| u.to_string()),
                text: m.content.text.unwrap_or_default(),
            })
            .collect())
    }
}
