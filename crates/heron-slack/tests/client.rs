//! `SlackClient` against the fake Slack Web API: the chat conformance suite, Slack's errors,
//! and Block Kit that Slack's own types accept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::slack::{ChatError, ChatPlatform, Post, View};
use heron_core::{Severity, Ticket, TicketId, TicketStatus};
use heron_slack::testing::{BOT_USER_ID, FakeFailure, FakeSlack};
use heron_slack::{SlackClient, SlackClientSettings};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "xoxb-test-token";

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn client() -> (FakeSlack, SlackClient) {
    install_ring();
    let fake = FakeSlack::start(TOKEN, &["CHERON", "CPOLICY"])
        .await
        .unwrap();
    let client = SlackClient::new(&SlackClientSettings {
        bot_token: TOKEN.into(),
        base_url: Some(fake.url.clone()),
    })
    .unwrap();
    (fake, client)
}

mod conformance {
    use super::*;

    // The fake must outlive the case: leak it (one per case, a few per test binary).
    async fn platform() -> Arc<dyn ChatPlatform> {
        let (fake, client) = client().await;
        std::mem::forget(fake);
        Arc::new(client)
    }

    heron_core::chat_conformance_tests!(platform().await);
}

fn ticket() -> Ticket {
    let now = chrono::Utc::now();
    Ticket {
        id: TicketId::new(),
        title: "Reverse shell in pod <web-1> & friends".into(),
        description: "Falco saw `bash -i` connect out <to 1.2.3.4> & more.".into(),
        schema: heron_core::SchemaName::parse("falco").unwrap(),
        status: TicketStatus::Open,
        severity: Severity::High,
        conclusion: None,
        reason: None,
        assignee: None,
        tags: vec![],
        attributes: vec![heron_core::Attribute {
            key: "pod".into(),
            value: "web-1".into(),
            link: Some("https://k8s.example/pods/web-1".into()),
        }],
        channel: None,
        fingerprint: heron_core::Fingerprint::from_stored("f".into()),
        finding: Some(serde_json::json!({
            "severity": "high", "verdict": "true_positive", "confidence": 0.9,
            "summary": "An attacker shell.", "reason": "r", "recommendation": "Isolate the pod.",
            "evidence": []
        })),
        alert_count: 3,
        first_seen: now,
        last_seen: now,
        acked_at: None,
        resolved_at: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

#[tokio::test]
async fn a_ticket_card_is_posted_as_block_kit_with_its_buttons_and_updated_in_place() {
    let (fake, client) = client().await;
    let t = ticket();
    let post = Post::Ticket {
        ticket: Box::new(t.clone()),
        dashboard_url: Some("https://heron.example".into()),
        note: None,
    };
    let at = client.post("CHERON", None, &post).await.unwrap();
    let sent = &fake.calls_of("chat.postMessage")[0].params;
    let blocks = sent["blocks"].as_array().unwrap();
    let actions: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap())
        .map(|e| e["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["heron_ack", "heron_assign_me", "heron_resolve"]);
    let all = serde_json::to_string(blocks).unwrap();
    assert!(
        all.contains("&lt;to 1.2.3.4&gt; &amp; more"),
        "mrkdwn is escaped: {all}"
    );
    assert!(
        all.contains("<https://k8s.example/pods/web-1|web-1>"),
        "{all}"
    );
    assert!(all.contains("*Alerts*\\n3"), "{all}");
    assert!(all.contains("An attacker shell."), "{all}");
    assert!(all.contains(&format!("https://heron.example/tickets/{}", t.id)));

    let mut resolved = t.clone();
    resolved.status = TicketStatus::Resolved;
    resolved.conclusion = Some(heron_core::Conclusion::FalsePositive);
    client
        .update(
            &at,
            &Post::Ticket {
                ticket: Box::new(resolved),
                dashboard_url: None,
                note: None,
            },
        )
        .await
        .unwrap();
    let message = &fake.messages()[0];
    assert_eq!(message.updates, 1);
    let all = message.blocks.to_string();
    assert!(
        !all.contains("heron_ack"),
        "no buttons once resolved: {all}"
    );
    assert!(all.contains("False positive"), "{all}");
}

#[tokio::test]
async fn the_resolve_modal_is_opened_with_a_conclusion_select_and_a_reason() {
    let (fake, client) = client().await;
    let id = TicketId::new();
    client
        .open_view(
            "trigger-1",
            &View::Resolve {
                ticket_id: id,
                title: "t".into(),
            },
        )
        .await
        .unwrap();
    let view = &fake.calls_of("views.open")[0].params["view"];
    assert_eq!(view["callback_id"], "heron_resolve_submit");
    assert_eq!(view["private_metadata"], id.to_string());
    assert!(view.to_string().contains("false_positive"));
}

#[tokio::test]
async fn a_429_is_rate_limited_with_its_retry_after() {
    let (fake, client) = client().await;
    fake.fail_next(
        "chat.postMessage",
        FakeFailure::RateLimited {
            retry_after_secs: 7,
        },
    );
    let error = client
        .post("CHERON", None, &Post::text("x"))
        .await
        .unwrap_err();
    assert_eq!(error, ChatError::RateLimited(Some(Duration::from_secs(7))));
    assert!(error.is_transient());
    fake.fail_next("chat.update", FakeFailure::Down);
    let at = client.post("CHERON", None, &Post::text("x")).await.unwrap();
    let error = client.update(&at, &Post::text("y")).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn a_bad_token_is_invalid_auth_at_auth_test() {
    install_ring();
    let fake = FakeSlack::start(TOKEN, &["CHERON"]).await.unwrap();
    let client = SlackClient::new(&SlackClientSettings {
        bot_token: "xoxb-wrong".into(),
        base_url: Some(fake.url.clone()),
    })
    .unwrap();
    assert!(matches!(
        client.identity().await,
        Err(ChatError::InvalidAuth(code)) if code == "invalid_auth"
    ));
    let (_, good) = client_pair(&fake);
    assert_eq!(good.identity().await.unwrap().user_id, BOT_USER_ID);
}

fn client_pair(fake: &FakeSlack) -> ((), SlackClient) {
    (
        (),
        SlackClient::new(&SlackClientSettings {
            bot_token: TOKEN.into(),
            base_url: Some(fake.url.clone()),
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn users_are_named_by_their_display_name_and_threads_read_back() {
    let (fake, client) = client().await;
    fake.add_user("U1", "Alice", Some("alice@example.com"));
    let user = client.user("U1").await.unwrap();
    assert_eq!(
        (user.name.as_str(), user.email.as_deref()),
        ("Alice", Some("alice@example.com"))
    );
    let root = client
        .post("CHERON", None, &Post::text("root"))
        .await
        .unwrap();
    fake.say("CHERON", Some(&root.ts), "U1", "human reply");
    let thread = client.replies(&root).await.unwrap();
    assert_eq!(thread.len(), 2);
    assert!(thread[0].bot);
    assert_eq!(
        (
            thread[1].user.as_deref(),
            thread[1].text.as_str(),
            thread[1].bot
        ),
        (Some("U1"), "human reply", false)
    );
}

#[test]
fn a_plain_http_base_url_is_refused_unless_it_is_loopback() {
    install_ring();
    assert!(
        SlackClient::new(&SlackClientSettings {
            bot_token: TOKEN.into(),
            base_url: Some("http://slack.example/api".into()),
        })
        .is_err()
    );
}
