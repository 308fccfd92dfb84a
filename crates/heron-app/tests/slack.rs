//! Slack use cases on the in-memory store and the recording chat platform: where tickets
//! are posted, what Slack failures do, notices, help, and authorization.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use heron_app::{PolicyHandle, SlackAccess, SlackService, SlackSettings, SlackWorker};
use heron_core::policy::PolicyEngine;
use heron_core::ports::{
    Disposition, EventLog, EventQueue, NoticeRepository, PlannedAlert, TicketRepository,
};
use heron_core::slack::{
    ChatError, ChatUser, DeliveryKind, MessageRef, Post, SlackStore, SlackSubject, SlackSyncState,
};
use heron_core::testing::conformance::{new_alert, new_event, new_ticket_for};
use heron_core::testing::{ChatCall, InMemoryStore, RecordingChat};
use heron_core::{NoticeId, TicketId, TicketStatus};
use heron_policy::{LoadOptions, PolicySet};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT: &str = "CDEFAULT";

fn policies(source: &str) -> PolicyHandle {
    let set = PolicySet::from_sources(
        vec![("p.rego".into(), source.into())],
        &LoadOptions::default(),
    )
    .unwrap();
    PolicyHandle::new(Arc::new(set) as Arc<dyn PolicyEngine>)
}

struct Fixture {
    store: Arc<InMemoryStore>,
    chat: Arc<RecordingChat>,
    slack: SlackService,
    worker: SlackWorker,
}

async fn fixture(access: SlackAccess, policy: &str) -> Fixture {
    let store = Arc::new(InMemoryStore::new());
    let chat = Arc::new(RecordingChat::new().with_channels(&[DEFAULT, "CSEC"]));
    for (id, name) in [("U1", "Alice"), ("U2", "Mallory")] {
        chat.add_user(ChatUser {
            id: id.into(),
            name: name.into(),
            email: Some(format!("{}@example.com", name.to_lowercase())),
            is_bot: false,
        });
    }
    let slack = SlackService::connect(
        store.clone(),
        chat.clone(),
        None,
        policies(policy),
        SlackSettings {
            default_channel: DEFAULT.into(),
            access,
            update_interval: Duration::from_millis(0),
            discover_interval: Duration::from_millis(0),
            ..SlackSettings::default()
        },
    )
    .await
    .unwrap();
    Fixture {
        store,
        chat,
        worker: SlackWorker::new(slack.clone()),
        slack,
    }
}

/// Opens a ticket (its policy channel `#alerts`) or a notice through the event queue.
async fn make(store: &InMemoryStore, notice: bool) -> uuid::Uuid {
    let now = store.now().await.unwrap();
    let id = store
        .accept_event(new_event("guardduty", None, now))
        .await
        .unwrap()
        .event_id;
    let leased = store
        .lease_events(1, now, now + chrono::Duration::seconds(60), 5)
        .await
        .unwrap();
    let alert = new_alert(id, "guardduty", &uuid::Uuid::new_v4().to_string(), now);
    let (disposition, subject) = if notice {
        let notice_id = NoticeId::new();
        (
            Disposition::Notice {
                notice_id,
                title: "quiet probe".into(),
                channel: None,
            },
            notice_id.as_uuid(),
        )
    } else {
        let ticket = new_ticket_for(&alert);
        let id = ticket.id.as_uuid();
        (
            Disposition::Open {
                ticket,
                seen_since: now - chrono::Duration::hours(1),
            },
            id,
        )
    };
    store
        .complete_event(
            &leased[0].lease,
            vec![PlannedAlert { alert, disposition }],
            now,
        )
        .await
        .unwrap();
    subject
}

fn posts(chat: &RecordingChat) -> Vec<(MessageRef, Option<String>, Post)> {
    chat.calls()
        .into_iter()
        .filter_map(|c| match c {
            ChatCall::Post {
                at,
                thread_ts,
                post,
            } => Some((at, thread_ts, post)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_policy_channel_that_fails_falls_back_to_the_default_channel_with_a_note() {
    let f = fixture(SlackAccess::default(), "package triage\n").await;
    let id = TicketId::from_uuid(make(&f.store, false).await);
    f.worker.run_once().await.unwrap();
    let posts = posts(&f.chat);
    let (at, thread, post) = &posts[0];
    assert_eq!((at.channel.as_str(), thread), (DEFAULT, &None));
    let Post::Ticket { note, ticket, .. } = post else {
        panic!("a ticket card: {post:?}")
    };
    assert_eq!(ticket.id, id);
    assert!(
        note.as_deref()
            .is_some_and(|n| n.contains("#alerts") && n.contains("channel not found")),
        "{note:?}"
    );
    let thread = f
        .store
        .get_slack_thread(SlackSubject::Ticket(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(thread.state, SlackSyncState::Synced);
    assert_eq!(thread.channel.as_deref(), Some(DEFAULT));
}

#[tokio::test]
async fn slack_rate_limiting_or_outage_never_loses_a_ticket_it_retries_with_backoff_and_shows_its_state()
 {
    let f = fixture(SlackAccess::default(), "package triage\n").await;
    let id = TicketId::from_uuid(make(&f.store, false).await);
    let subject = SlackSubject::Ticket(id);
    // The policy channel is missing (fallback), then Slack rate-limits for 30 s.
    f.chat
        .fail_next(ChatError::ChannelNotFound("#alerts".into()));
    f.chat
        .fail_next(ChatError::RateLimited(Some(Duration::from_secs(30))));
    f.worker.run_once().await.unwrap();
    let thread = f.store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(thread.state, SlackSyncState::Pending);
    assert_eq!(thread.last_error.as_deref(), Some("ratelimited"));
    assert_eq!(thread.attempts, 1);
    let now = f.store.now().await.unwrap();
    let due = thread.next_attempt_at.unwrap();
    assert!(
        due >= now + chrono::Duration::seconds(29),
        "Retry-After is honoured: {due} vs {now}"
    );
    f.worker.run_once().await.unwrap();
    assert!(posts(&f.chat).is_empty(), "not before it is due");
    // Slack is down at the next attempt too: backoff, still pending.
    f.store.advance_clock(chrono::Duration::seconds(31));
    f.chat.fail_next(ChatError::Unavailable("503".into()));
    f.worker.run_once().await.unwrap();
    let thread = f.store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(
        (thread.state, thread.attempts),
        (SlackSyncState::Pending, 2)
    );
    f.store.advance_clock(chrono::Duration::seconds(600));
    f.worker.run_once().await.unwrap();
    let thread = f.store.get_slack_thread(subject).await.unwrap().unwrap();
    assert_eq!(thread.state, SlackSyncState::Synced);
    assert_eq!((thread.attempts, thread.last_error), (0, None));
    assert_eq!(posts(&f.chat).len(), 1, "posted exactly once");
    // The ticket itself was never held up.
    assert_eq!(
        f.store.get_ticket(id).await.unwrap().unwrap().status,
        TicketStatus::Open
    );
}

#[tokio::test]
async fn a_notice_is_posted_with_escalate_and_the_button_opens_a_ticket_recorded_under_the_clicker()
{
    let f = fixture(SlackAccess::default(), "package triage\n").await;
    let notice = NoticeId::from_uuid(make(&f.store, true).await);
    f.worker.run_once().await.unwrap();
    let (at, _, post) = posts(&f.chat).remove(0);
    assert!(matches!(post, Post::Notice { .. }), "{post:?}");
    let payload = json!({
        "type": "block_actions", "trigger_id": "t1",
        "user": {"id": "U1"}, "channel": {"id": at.channel},
        "container": {"message_ts": at.ts},
        "message": {"ts": at.ts},
        "actions": [{"action_id": "heron_escalate", "value": notice.to_string(), "action_ts": "1.1"}],
    });
    assert!(
        f.slack
            .accept(DeliveryKind::Interaction, payload.clone())
            .await
            .unwrap()
    );
    assert!(
        !f.slack
            .accept(DeliveryKind::Interaction, payload)
            .await
            .unwrap(),
        "a retried interaction is stored once"
    );
    f.worker.run_once().await.unwrap();
    f.worker.run_once().await.unwrap();
    let escalated = f
        .store
        .get_notice(notice)
        .await
        .unwrap()
        .unwrap()
        .ticket_id
        .expect("escalated");
    let comments = f.store.list_comments(escalated).await.unwrap();
    assert!(
        comments.iter().any(|c| c
            .text
            .contains("Alice (Slack U1 in CDEFAULT) escalated notice")),
        "{comments:?}"
    );
    // The notice's message lost its button; the new ticket got its own message.
    let updated = f.chat.calls().into_iter().any(|c| matches!(c,
        ChatCall::Update { post: Post::Notice { notice: n, .. }, .. } if n.ticket_id == Some(escalated)));
    assert!(updated);
    assert!(
        posts(&f.chat)
            .iter()
            .any(|(_, _, p)| matches!(p, Post::Ticket { ticket, .. } if ticket.id == escalated))
    );
}

async fn mention(f: &Fixture, user: &str, channel: &str, text: &str, thread: Option<&str>) {
    let ts = format!("1800000000.{:06}", fastrand_like(text));
    let mut event = json!({"type": "app_mention", "user": user, "channel": channel,
        "text": format!("<@UHERON> {text}"), "ts": ts});
    if let Some(t) = thread {
        event["thread_ts"] = json!(t);
    }
    let payload =
        json!({"type": "event_callback", "event_id": format!("Ev{ts}{user}"), "event": event});
    f.slack.accept(DeliveryKind::Event, payload).await.unwrap();
    f.worker.run_once().await.unwrap();
}

fn fastrand_like(text: &str) -> u32 {
    text.bytes().map(u32::from).sum::<u32>() % 999_999
}

#[tokio::test]
async fn help_lists_the_commands_to_anyone_and_questions_outside_a_ticket_thread_are_redirected() {
    let f = fixture(
        SlackAccess {
            users: vec!["U1".into()],
            ..SlackAccess::default()
        },
        "package triage\n",
    )
    .await;
    mention(&f, "U2", "CSEC", "help", None).await;
    mention(&f, "U1", "CSEC", "what is this?", None).await;
    let texts = f.chat.posted_texts();
    assert!(texts[0].contains("@heron ticket"), "{texts:?}");
    assert!(texts[1].contains("ticket's thread"), "{texts:?}");
}

#[tokio::test]
async fn the_channel_allow_list_and_the_auth_agent_policy_decide_who_may_act() {
    // Channel allow-list: Alice is refused outside #sec.
    let f = fixture(
        SlackAccess {
            channels: vec!["CSEC".into()],
            ..SlackAccess::default()
        },
        "package triage\n",
    )
    .await;
    mention(&f, "U1", DEFAULT, "ticket suspicious login", None).await;
    assert!(f.chat.posted_texts()[0].contains("not allowed"));
    assert!(
        f.store
            .list_tickets(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Policy: only alice@example.com, in any channel; Mallory is refused.
    let f = fixture(
        SlackAccess {
            policy: true,
            ..SlackAccess::default()
        },
        "package auth.agent\n\nallow if input.user.email == \"alice@example.com\"\n",
    )
    .await;
    let thread = MessageRef {
        channel: "CSEC".into(),
        ts: "1700000100.000001".into(),
    };
    f.chat.add_thread_message(
        &thread,
        heron_core::slack::ThreadMessage {
            ts: thread.ts.clone(),
            user: Some("U1".into()),
            bot: false,
            text: "I got a weird mail from ceo@examp1e.com".into(),
        },
    );
    mention(&f, "U2", "CSEC", "ticket", Some(&thread.ts)).await;
    assert!(f.chat.posted_texts()[0].contains("<@U2>"));
    assert!(
        f.store
            .list_tickets(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    mention(&f, "U1", "CSEC", "ticket Phishing report", Some(&thread.ts)).await;
    let tickets = f
        .store
        .list_tickets(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].title, "Phishing report");
    assert!(
        tickets[0].description.contains("Alice: I got a weird mail"),
        "{}",
        tickets[0].description
    );
    f.worker.run_once().await.unwrap();
    let (at, thread_ts, _) = posts(&f.chat)
        .into_iter()
        .find(|(_, _, p)| matches!(p, Post::Ticket { .. }))
        .expect("the ticket's card");
    assert_eq!(
        (at.channel.as_str(), thread_ts.as_deref()),
        ("CSEC", Some(thread.ts.as_str())),
        "the ticket's message goes into the thread it was made from"
    );
}

#[tokio::test]
async fn a_refused_bot_token_is_a_clear_error_at_start() {
    let store = Arc::new(InMemoryStore::new());
    let chat = Arc::new(RecordingChat::new());
    chat.fail_next(ChatError::InvalidAuth("invalid_auth".into()));
    let error = SlackService::connect(
        store,
        chat,
        None,
        policies("package triage\n"),
        SlackSettings {
            default_channel: DEFAULT.into(),
            ..SlackSettings::default()
        },
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("Slack refused the bot token") && message.contains("invalid_auth"),
        "{message}"
    );
}
