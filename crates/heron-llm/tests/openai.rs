//! The OpenAI adapters against a local server speaking the chat-completions and embeddings
//! wire formats, scripted per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use heron_core::llm::{
    ChatMessage, ChatModel, ChatRequest, Embedder, FinishReason, LlmError, ToolCall, ToolSpec,
};
use heron_llm::{LlmSettings, OpenAiChat, OpenAiEmbedder};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    delay: Duration,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        headers: Vec::new(),
        body,
        delay: Duration::ZERO,
    }
}

fn error(status: u16, kind: &str, code: Option<&str>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: json!({"error": {"message": format!("scripted {status}"), "type": kind, "param": null, "code": code}}),
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<(Instant, HeaderMap, Value)>>,
}

async fn answer(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    script
        .requests
        .lock()
        .unwrap()
        .push((Instant::now(), headers, body));
    let reply = script.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        Json(reply.body),
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn fake(replies: Vec<Reply>) -> (String, Arc<Script>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let script = Arc::new(Script {
        replies: Mutex::new(replies.into()),
        requests: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(answer))
        .route("/v1/embeddings", axum::routing::post(answer))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), script)
}

fn settings(base: &str) -> LlmSettings {
    let mut s = LlmSettings::new(base, "gpt-test");
    s.api_key = Some("sk-test".into());
    s.timeout = Duration::from_millis(500);
    s.max_retries = 2;
    s
}

fn completion(message: Value, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_763_000_000, "model": "gpt-test-2026",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    })
}

fn tool_call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

fn request_with_tools() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::System {
                content: "You triage alerts.".into(),
            },
            ChatMessage::User {
                content: "Investigate ticket 1.".into(),
            },
        ],
        tools: vec![ToolSpec {
            name: "otx_ipv4".into(),
            description: "Look an IPv4 address up in AlienVault OTX".into(),
            parameters: json!({"type": "object", "properties": {"target": {"type": "string"}},
                               "required": ["target"], "additionalProperties": false}),
        }],
        max_tokens: Some(800),
    }
}

#[tokio::test]
async fn a_multi_step_tool_conversation_round_trips_calls_results_and_usage() {
    let (base, script) = fake(vec![
        ok(completion(
            json!({"role": "assistant", "content": null,
                   "tool_calls": [tool_call("call_1", "otx_ipv4", "{\"target\":\"203.0.113.9\"}")]}),
            "tool_calls",
        )),
        ok(completion(
            json!({"role": "assistant", "content": "Benign scanner."}),
            "stop",
        )),
    ])
    .await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let mut request = request_with_tools();
    let first = chat.chat(request.clone()).await.unwrap();
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        first.tool_calls,
        vec![ToolCall {
            id: "call_1".into(),
            name: "otx_ipv4".into(),
            arguments: "{\"target\":\"203.0.113.9\"}".into()
        }]
    );
    assert_eq!(first.usage.total_tokens, 150);
    assert_eq!(first.model, "gpt-test-2026");

    request.messages.push(ChatMessage::Assistant {
        content: None,
        tool_calls: first.tool_calls.clone(),
    });
    request.messages.push(ChatMessage::Tool {
        tool_call_id: "call_1".into(),
        content: "no pulses".into(),
    });
    let second = chat.chat(request).await.unwrap();
    assert_eq!(second.content.as_deref(), Some("Benign scanner."));
    assert_eq!(second.finish_reason, FinishReason::Stop);

    let requests = script.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let (_, headers, first_body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(first_body["model"], "gpt-test");
    assert_eq!(first_body["tools"][0]["function"]["name"], "otx_ipv4");
    assert_eq!(first_body["max_completion_tokens"], 800);
    let sent = &requests[1].2["messages"];
    assert_eq!(sent[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(sent[3]["role"], "tool");
    assert_eq!(sent[3]["tool_call_id"], "call_1");
}

#[tokio::test]
async fn malformed_tool_arguments_reach_the_caller_untouched() {
    let (base, _) = fake(vec![ok(completion(
        json!({"role": "assistant", "content": null,
               "tool_calls": [tool_call("call_9", "otx_ipv4", "{\"target\": 203.0.113")]}),
        "tool_calls",
    ))])
    .await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let response = chat.chat(request_with_tools()).await.unwrap();
    assert_eq!(response.tool_calls[0].arguments, "{\"target\": 203.0.113");
}

#[tokio::test]
async fn rate_limited_call_waits_for_retry_after_then_succeeds() {
    let mut limited = error(429, "rate_limit_error", None);
    limited.headers.push(("retry-after", "1".into()));
    let (base, script) = fake(vec![
        limited,
        ok(completion(
            json!({"role": "assistant", "content": "ok"}),
            "stop",
        )),
    ])
    .await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let response = chat.chat(request_with_tools()).await.unwrap();
    assert_eq!(response.content.as_deref(), Some("ok"));
    let requests = script.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].0 - requests[0].0;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
}

#[tokio::test]
async fn server_error_is_retried_and_the_next_answer_used() {
    let (base, script) = fake(vec![
        error(500, "server_error", None),
        ok(completion(
            json!({"role": "assistant", "content": "ok"}),
            "stop",
        )),
    ])
    .await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    assert!(chat.chat(request_with_tools()).await.is_ok());
    assert_eq!(script.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn persistent_server_errors_end_as_transient_after_the_retries() {
    let (base, script) = fake(vec![error(503, "server_error", None); 5]).await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let error = chat.chat(request_with_tools()).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(
        script.requests.lock().unwrap().len(),
        3,
        "1 attempt + 2 retries"
    );
}

#[tokio::test]
async fn bad_credentials_are_not_retried() {
    let (base, script) = fake(vec![
        error(401, "invalid_request_error", Some("invalid_api_key")),
        ok(completion(
            json!({"role": "assistant", "content": "never"}),
            "stop",
        )),
    ])
    .await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let error = chat.chat(request_with_tools()).await.unwrap_err();
    assert!(matches!(error, LlmError::Auth(_)), "{error:?}");
    assert_eq!(script.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let (base, script) = fake(vec![error(400, "invalid_request_error", None); 3]).await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let error = chat.chat(request_with_tools()).await.unwrap_err();
    assert!(matches!(error, LlmError::BadRequest(_)), "{error:?}");
    assert_eq!(script.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_after_the_retries_instead_of_hanging() {
    let mut hang = ok(completion(
        json!({"role": "assistant", "content": "late"}),
        "stop",
    ));
    hang.delay = Duration::from_secs(30);
    let (base, script) = fake(vec![hang; 3]).await;
    let chat = OpenAiChat::new(settings(&base)).unwrap();
    let started = Instant::now();
    let error = chat.chat(request_with_tools()).await.unwrap_err();
    assert!(matches!(error, LlmError::Timeout(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        script.requests.lock().unwrap().len(),
        3,
        "1 attempt + 2 retries"
    );
}

#[tokio::test]
async fn embeddings_come_back_in_input_order_with_the_configured_dimensions() {
    let (base, script) = fake(vec![ok(json!({
        "object": "list", "model": "embed-test",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0, 0.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0, 0.0]}
        ],
        "usage": {"prompt_tokens": 8, "total_tokens": 8}
    }))])
    .await;
    let mut s = settings(&base);
    s.embedding_model = Some("embed-test".into());
    s.embedding_dimensions = Some(3);
    let embedder = OpenAiEmbedder::new(s).unwrap();
    let out = embedder
        .embed(&["first".into(), "second".into()])
        .await
        .unwrap();
    assert_eq!(out.vectors, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]);
    assert_eq!(out.usage.total_tokens, 8);
    let requests = script.requests.lock().unwrap();
    assert_eq!(requests[0].2["dimensions"], 3);
    assert_eq!(requests[0].2["input"], json!(["first", "second"]));
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_a_protocol_error() {
    let (base, _) = fake(vec![ok(json!({
        "object": "list", "model": "embed-test",
        "data": [{"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}
    }))])
    .await;
    let mut s = settings(&base);
    s.embedding_model = Some("embed-test".into());
    s.embedding_dimensions = Some(3);
    let error = OpenAiEmbedder::new(s)
        .unwrap()
        .embed(&["x".into()])
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Protocol(_)), "{error:?}");
}

#[test]
fn an_embedder_without_model_or_dimensions_is_a_setup_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = settings("http://127.0.0.1:9/v1");
    assert!(OpenAiEmbedder::new(s.clone()).is_err());
    let mut no_dims = s;
    no_dims.embedding_model = Some("m".into());
    assert!(OpenAiEmbedder::new(no_dims).is_err());
}

#[test]
fn settings_debug_output_redacts_the_api_key() {
    let shown = format!("{:?}", settings("http://x/v1"));
    assert!(
        !shown.contains("sk-test") && shown.contains("<redacted>"),
        "{shown}"
    );
}
