#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fuzzing (proptest, ignored by default; docs/development.md#fuzzing): the alert webhooks
//! through the real router, with raw bodies, Pub/Sub envelopes and SNS messages, well-formed
//! and not. Every answer is a documented client error or `202`; a `202` stored exactly one
//! event whose body the worker's parser reads as a JSON object without U+0000; nothing
//! panics, nothing is a 5xx, and nothing leaves the machine (no SNS certificate host is
//! allowed, so no certificate is fetched).

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use heron_app::{Intake, PolicyHandle};
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::Store;
use heron_core::testing::InMemoryStore;
use heron_core::testing::fuzz::fuzz;
use heron_core::{EventId, SchemaName};
use heron_server::{AuthConfig, AuthMode, ServerSettings, ServerState, SnsSettings};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::Notify;
use tower::ServiceExt;

struct NoPolicies;

impl PolicyEngine for NoPolicies {
    fn ingest(&self, _: &SchemaName, _: &Value) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput::default())
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo::default()
    }
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Bytes a sender might post: JSON (whole, cut short, or with a byte flipped), NDJSON,
/// deep nesting, escapes, or noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json().prop_map(|v| v.to_string().into_bytes()),
        (json(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let text = v.to_string().into_bytes();
            let cut = i.index(text.len() + 1);
            text[..cut].to_vec()
        }),
        (json(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, i, b)| {
            let mut text = v.to_string().into_bytes();
            if !text.is_empty() {
                let at = i.index(text.len());
                text[at] = b;
            }
            text
        }),
        prop::collection::vec(json(), 0..5).prop_map(|lines| {
            lines
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        }),
        (1usize..300).prop_map(|depth| {
            format!("{}{}", "{\"a\":[".repeat(depth), "]}".repeat(depth)).into_bytes()
        }),
        prop_oneof![
            Just(r#"{"a":"\u0000"}"#.to_owned()),
            Just(r#"{"a":"\ud800"}"#.to_owned()),
            Just(r#"{"a":1e999}"#.to_owned()),
            Just(r#"{"\u0000":1}"#.to_owned()),
        ]
        .prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_owned())),
        Just(Some("application/x-ndjson".to_owned())),
        Just(Some(
            "application/cloudevents+json; charset=utf-8".to_owned()
        )),
        Just(Some("text/plain".to_owned())),
        "[ -~]{0,30}".prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    body: Vec<u8>,
}

fn pubsub_envelope() -> impl Strategy<Value = Vec<u8>> {
    (
        body(),
        json(),
        proptest::option::of("[ -~]{0,20}"),
        proptest::option::of("[ -~]{0,20}"),
        any::<bool>(),
    )
        .prop_map(|(data, attributes, id, subscription, encode)| {
            let data = if encode {
                Value::from(base64::engine::general_purpose::STANDARD.encode(data))
            } else {
                Value::from(String::from_utf8_lossy(&data).into_owned())
            };
            json!({
                "message": {"data": data, "attributes": attributes, "messageId": id},
                "subscription": subscription,
            })
            .to_string()
            .into_bytes()
        })
}

fn sns_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("Notification".to_owned()),
            Just("SubscriptionConfirmation".to_owned()),
            Just("UnsubscribeConfirmation".to_owned()),
            "[A-Za-z]{0,12}",
        ],
        body(),
        prop_oneof![
            Just("https://sns.us-east-1.amazonaws.com/cert.pem".to_owned()),
            "[ -~]{0,40}",
        ],
        prop_oneof![Just("1".to_owned()), Just("2".to_owned()), "[0-9]{0,2}"],
        "[A-Za-z0-9+/=]{0,40}",
    )
        .prop_map(|(kind, message, cert, version, signature)| {
            json!({
                "Type": kind,
                "MessageId": "m-1",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
                "Message": String::from_utf8_lossy(&message),
                "Timestamp": "2026-01-01T00:00:00.000Z",
                "SignatureVersion": version,
                "Signature": signature,
                "SigningCertURL": cert,
                "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            })
            .to_string()
            .into_bytes()
        })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    let schema = prop_oneof![Just("falco".to_owned()), "[ -~]{0,10}"];
    let key = proptest::option::of("[ -~]{0,300}");
    prop_oneof![
        (schema.clone(), content_type(), key.clone(), body()).prop_map(|(s, c, k, b)| Delivery {
            path: format!("/hooks/alert/raw/{}", url_segment(&s)),
            content_type: c,
            idempotency_key: k,
            body: b,
        }),
        (
            schema.clone(),
            content_type(),
            key.clone(),
            prop_oneof![pubsub_envelope(), body()]
        )
            .prop_map(|(s, c, k, b)| Delivery {
                path: format!("/hooks/alert/pubsub/{}", url_segment(&s)),
                content_type: c,
                idempotency_key: k,
                body: b,
            }),
        (schema, content_type(), prop_oneof![sns_message(), body()]).prop_map(|(s, c, b)| {
            Delivery {
                path: format!("/hooks/alert/sns/{}", url_segment(&s)),
                content_type: c,
                idempotency_key: None,
                body: b,
            }
        }),
    ]
}

fn url_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
#[ignore = "fuzzing: run with --ignored (docs/development.md#fuzzing)"]
fn fuzz_webhook_bodies_get_a_client_error_or_are_stored_parseable() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let settings = ServerSettings {
        auth: AuthMode::Tokens(AuthConfig {
            tokens: vec!["t".into()],
            ..AuthConfig::default()
        }),
        sns: SnsSettings {
            allowed_hosts: Vec::new(),
            ..SnsSettings::default()
        },
        max_body_bytes: 64 * 1024,
        ..ServerSettings::default()
    };
    let app = runtime.block_on(async {
        let state = ServerState::new(
            store.clone(),
            Intake::new(store.clone(), Arc::new(Notify::new())),
            PolicyHandle::new(Arc::new(NoPolicies)),
            settings,
            None,
        )
        .unwrap();
        heron_server::router(state)
    });
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    fuzz("webhook bodies", delivery(), |d| {
        let (status, answer) = runtime.block_on(async {
            let mut request = Request::post(&d.path).header("authorization", "Bearer t");
            if let Some(c) = &d.content_type
                && let Ok(value) = axum::http::HeaderValue::from_str(c)
            {
                request = request.header("content-type", value);
            }
            if let Some(k) = &d.idempotency_key
                && let Ok(value) = axum::http::HeaderValue::from_str(k)
            {
                request = request.header("idempotency-key", value);
            }
            let Ok(request) = request.body(Body::from(d.body.clone())) else {
                return (0, Value::Null);
            };
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        });
        if status == 0 {
            return Ok(()); // not a valid HTTP request (the path); nothing to send
        }
        prop_assert!(
            [202, 400, 401, 403, 404, 413, 415].contains(&status),
            "status {status} for {d:?}: {answer}"
        );
        if status != 202 {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert!(answer["error"]["code"].is_string(), "error shape: {answer}");
            return Ok(());
        }
        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<String> = match answer.get("events") {
            Some(events) => events
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_owned())
                .collect(),
            None => vec![answer["event_id"].as_str().unwrap().to_owned()],
        };
        for id in ids {
            let id: EventId = id.parse().unwrap();
            let event = runtime.block_on(store.get_event(id)).unwrap();
            let event = event.expect("an acknowledged event is stored");
            let parsed: Value = serde_json::from_str(&event.body)
                .map_err(|e| TestCaseError::fail(format!("stored body unparseable: {e}")))?;
            prop_assert!(parsed.is_object());
            prop_assert!(!event.body.contains('\0'));
        }
        Ok(())
    });
    eprintln!(
        "webhook bodies: {} acknowledged and checked, {} refused",
        accepted.into_inner(),
        refused.into_inner()
    );
}
