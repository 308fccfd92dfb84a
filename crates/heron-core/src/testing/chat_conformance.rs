//! What every [`ChatPlatform`] must do: [`RecordingChat`](super::RecordingChat) and
//! `heron_slack::SlackClient` (against the fake Slack Web API) both pass these cases. The
//! platform under test must know channel `CHERON` and no channel `CMISSING`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::slack::{ChatError, ChatPlatform, Post};
use std::sync::Arc;

type Shared = Arc<dyn ChatPlatform>;

pub async fn a_post_and_its_thread_reply_can_be_updated_and_read_back(chat: Shared) {
    let root = chat
        .post("CHERON", None, &Post::text("ticket message"))
        .await
        .unwrap();
    assert_eq!(root.channel, "CHERON");
    let reply = chat
        .post("CHERON", Some(&root.ts), &Post::text("a reply"))
        .await
        .unwrap();
    assert_ne!(reply.ts, root.ts);
    chat.update(&root, &Post::text("ticket message, updated"))
        .await
        .unwrap();
    let thread = chat.replies(&root).await.unwrap();
    let texts: Vec<&str> = thread.iter().map(|m| m.text.as_str()).collect();
    assert!(texts.contains(&"a reply"), "{texts:?}");
    assert_eq!(thread[0].ts, root.ts, "the root comes first");
}

pub async fn posting_to_an_unknown_channel_is_channel_not_found(chat: Shared) {
    let error = chat
        .post("CMISSING", None, &Post::text("x"))
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::ChannelNotFound(_)), "{error:?}");
    assert!(!error.is_transient());
}

pub async fn the_bot_knows_who_it_is(chat: Shared) {
    let me = chat.identity().await.unwrap();
    assert!(!me.user_id.is_empty());
}

/// One `#[tokio::test]` per case, with `$chat` evaluated per case.
#[macro_export]
macro_rules! chat_conformance_tests {
    ($chat:expr) => {
        $crate::chat_conformance_tests!(@cases $chat;
            a_post_and_its_thread_reply_can_be_updated_and_read_back,
            posting_to_an_unknown_channel_is_channel_not_found,
            the_bot_knows_who_it_is,
        );
    };
    (@cases $chat:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let chat: std::sync::Arc<dyn $crate::slack::ChatPlatform> = $chat;
                $crate::testing::chat_conformance::$case(chat).await;
            }
        )*
    };
}

#[cfg(test)]
mod recording_chat_conformance {
    use crate::testing::RecordingChat;
    use std::sync::Arc;

    crate::chat_conformance_tests!(Arc::new(RecordingChat::new().with_channels(&["CHERON"])));
}
