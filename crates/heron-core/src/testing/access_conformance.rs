//! Conformance cases for [`crate::access::AccessStore`]: API tokens and the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::conformance::{at, us};
use crate::access::{
    AuditEntry, AuditQuery, AuditSource, NewApiToken, Scope, TokenRef, token_hash,
};
use crate::ports::{Store, StoreError};
use crate::{AuditId, TicketId, Timestamp, TokenId};
use serde_json::json;
use std::sync::Arc;

type Shared = Arc<dyn Store>;

fn new_token(name: &str, secret: &str, created: Timestamp) -> NewApiToken {
    NewApiToken {
        id: TokenId::new(),
        name: name.into(),
        hash: token_hash(secret),
        scopes: vec![Scope::Ingest, Scope::Read],
        created_at: created,
        expires_at: Some(created + chrono::Duration::days(30)),
    }
}

fn entry(action: &str, actor: &str, when: Timestamp, ticket: Option<TicketId>) -> AuditEntry {
    AuditEntry {
        id: AuditId::new(),
        at: when,
        actor: actor.into(),
        source: AuditSource::Cli,
        remote: Some("192.0.2.7".into()),
        action: action.into(),
        ticket_id: ticket,
        target: Some("target".into()),
        details: json!({"k": [1, "two"]}),
    }
}

async fn audit_actions(store: &Shared) -> Vec<String> {
    store
        .list_audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

pub async fn a_token_is_found_by_the_hash_of_its_secret_and_listed_without_it(store: Shared) {
    let new = new_token("siem", "s3cret-one", at(1));
    let created = store
        .create_api_token(new.clone(), entry("token.create", "cli", at(1), None))
        .await
        .unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.name, "siem");
    assert_eq!(created.scopes, vec![Scope::Ingest, Scope::Read]);
    assert_eq!(created.created_at, us(at(1)));
    assert_eq!(
        created.expires_at,
        Some(us(at(1) + chrono::Duration::days(30)))
    );
    assert_eq!(created.last_used_at, None);
    assert_eq!(created.revoked_at, None);
    let found = store
        .find_api_token(&token_hash("s3cret-one"))
        .await
        .unwrap();
    assert_eq!(found.as_ref(), Some(&created));
    assert_eq!(
        store
            .find_api_token(&token_hash("s3cret-two"))
            .await
            .unwrap(),
        None,
        "another secret finds nothing"
    );
    store
        .create_api_token(
            NewApiToken {
                expires_at: None,
                ..new_token("forever", "s3cret-two", at(2))
            },
            entry("token.create", "cli", at(2), None),
        )
        .await
        .unwrap();
    let listed = store.list_api_tokens().await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["siem", "forever"],
        "oldest first"
    );
    assert_eq!(listed[1].expires_at, None);
}

pub async fn a_token_name_is_taken_until_its_token_is_revoked(store: Shared) {
    let first = store
        .create_api_token(
            new_token("siem", "one", at(1)),
            entry("token.create", "cli", at(1), None),
        )
        .await
        .unwrap();
    let again = store
        .create_api_token(
            new_token("siem", "two", at(2)),
            entry("token.create", "cli", at(2), None),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        audit_actions(&store).await,
        ["token.create"],
        "a refused creation records no audit entry"
    );
    let revoked = store
        .revoke_api_token(
            &TokenRef::Name("siem".into()),
            at(3),
            entry("token.revoke", "cli", at(3), None),
        )
        .await
        .unwrap();
    assert_eq!(revoked.id, first.id);
    assert_eq!(revoked.revoked_at, Some(us(at(3))));
    assert_eq!(
        store
            .find_api_token(&token_hash("one"))
            .await
            .unwrap()
            .and_then(|t| t.revoked_at),
        Some(us(at(3))),
        "a revoked token is still found, marked revoked"
    );
    let second = store
        .create_api_token(
            new_token("siem", "two", at(4)),
            entry("token.create", "cli", at(4), None),
        )
        .await
        .unwrap();
    assert_ne!(second.id, first.id, "the name is free again");
    let twice = store
        .revoke_api_token(
            &TokenRef::Id(first.id),
            at(5),
            entry("token.revoke", "cli", at(5), None),
        )
        .await;
    assert!(matches!(twice, Err(StoreError::Conflict(_))), "{twice:?}");
    let unknown = store
        .revoke_api_token(
            &TokenRef::Name("nobody".into()),
            at(5),
            entry("token.revoke", "cli", at(5), None),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    let by_id = store
        .revoke_api_token(
            &TokenRef::Id(second.id),
            at(6),
            entry("token.revoke", "cli", at(6), None),
        )
        .await
        .unwrap();
    assert_eq!(by_id.revoked_at, Some(us(at(6))));
    assert_eq!(
        audit_actions(&store).await,
        [
            "token.revoke",
            "token.create",
            "token.revoke",
            "token.create"
        ],
        "each change that happened has its entry, newest first; refused ones none"
    );
}

pub async fn token_use_moves_last_used_forward_only(store: Shared) {
    let token = store
        .create_api_token(
            new_token("siem", "one", at(1)),
            entry("token.create", "cli", at(1), None),
        )
        .await
        .unwrap();
    store
        .touch_api_tokens(&[(token.id, at(100)), (TokenId::new(), at(100))])
        .await
        .unwrap();
    store.touch_api_tokens(&[(token.id, at(50))]).await.unwrap();
    let found = store
        .find_api_token(&token_hash("one"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.last_used_at,
        Some(us(at(100))),
        "an older use does not move it back"
    );
    store
        .touch_api_tokens(&[(token.id, at(160))])
        .await
        .unwrap();
    let listed = store.list_api_tokens().await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(us(at(160))));
}

pub async fn audit_entries_list_newest_first_filtered_and_paged(store: Shared) {
    let ticket = TicketId::new();
    let mut written = Vec::new();
    for (i, (action, actor, on_ticket)) in [
        ("ticket.update", "alice", true),
        ("ticket.comment", "bob", true),
        ("policy.reload", "system", false),
        ("ticket.update", "bob", true),
        ("event.retry", "alice", false),
    ]
    .into_iter()
    .enumerate()
    {
        let e = entry(
            action,
            actor,
            at(10 * i as i64),
            on_ticket.then_some(ticket),
        );
        store.record_audit(e.clone()).await.unwrap();
        written.push(e);
    }
    let all = store
        .list_audit(&AuditQuery {
            limit: 50,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_cursor, None);
    let newest = &all.items[0];
    assert_eq!(newest.id, written[4].id);
    assert_eq!(newest.at, us(at(40)));
    assert_eq!(newest.actor, "alice");
    assert_eq!(newest.source, AuditSource::Cli);
    assert_eq!(newest.remote.as_deref(), Some("192.0.2.7"));
    assert_eq!(newest.target.as_deref(), Some("target"));
    assert_eq!(newest.details, json!({"k": [1, "two"]}));
    assert_eq!(all.items[1].ticket_id, Some(ticket));
    let ids =
        |page: &crate::ports::Page<AuditEntry>| page.items.iter().map(|e| e.id).collect::<Vec<_>>();
    let by = |q: AuditQuery| {
        let store = store.clone();
        async move {
            store
                .list_audit(&AuditQuery { limit: 50, ..q })
                .await
                .unwrap()
        }
    };
    assert_eq!(
        ids(&by(AuditQuery {
            actor: Some("bob".into()),
            ..AuditQuery::default()
        })
        .await),
        [written[3].id, written[1].id]
    );
    assert_eq!(
        ids(&by(AuditQuery {
            action: Some("ticket.update".into()),
            ..AuditQuery::default()
        })
        .await),
        [written[3].id, written[0].id]
    );
    assert_eq!(
        ids(&by(AuditQuery {
            ticket: Some(ticket),
            ..AuditQuery::default()
        })
        .await),
        [written[3].id, written[1].id, written[0].id]
    );
    assert_eq!(
        ids(&by(AuditQuery {
            since: Some(at(10)),
            until: Some(at(30)),
            ..AuditQuery::default()
        })
        .await),
        [written[2].id, written[1].id],
        "since is inclusive, until exclusive"
    );
    let first = store
        .list_audit(&AuditQuery {
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&first), [written[4].id, written[3].id]);
    let cursor: AuditId = first.next_cursor.as_deref().unwrap().parse().unwrap();
    let second = store
        .list_audit(&AuditQuery {
            limit: 2,
            before: Some(cursor),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&second), [written[2].id, written[1].id]);
    let third = store
        .list_audit(&AuditQuery {
            limit: 2,
            before: second.next_cursor.as_deref().map(|c| c.parse().unwrap()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&third), [written[0].id]);
    assert_eq!(third.next_cursor, None);
}
