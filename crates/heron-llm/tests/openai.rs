//! The OpenAI adapters against `heron_llm::testing::FakeOpenAi`, a local server speaking the
//! chat-completions and embeddings wire formats, scripted per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use heron_core::llm::{
    ChatMessage, ChatModel, ChatRequest, Embedder, FinishReason, LlmError, ToolCall, ToolSpec,
};
use heron_llm::testing::{FakeOpenAi, Reply};
use heron_llm::{AzureSettings, LlmSettings, OpenAiChat, OpenAiEmbedder};
use serde_json::json;
use std::time::{Duration, Instant};

fn settings(base: &str) -> LlmSettings {
    let mut s = LlmSettings::new(base, "gpt-test");
    s.api_key = Some("sk-test".into());
    s.timeout = Duration::from_millis(500);
    s.max_retries = 2;
    s
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

fn chat(fake: &FakeOpenAi) -> OpenAiChat {
    OpenAiChat::new(settings(&fake.base_url())).unwrap()
}

fn embedder(base: &str, dimensions: u32) -> OpenAiEmbedder {
    let mut s = settings(base);
    s.embedding_model = Some("embed-test".into());
    s.embedding_dimensions = Some(dimensions);
    OpenAiEmbedder::new(s).unwrap()
}

#[tokio::test]
async fn a_multi_step_tool_conversation_round_trips_calls_results_and_usage() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::tool_calls(
        &[
            ("call_1", "otx_ipv4", r#"{"target":"203.0.113.9"}"#),
            ("call_2", "otx_ipv4", r#"{"target":"198.51.100.7"}"#),
        ],
        (120, 30),
    ))
    .push_chat(Reply::text("Benign scanner.", (300, 12)));
    let chat = chat(&fake);
    let mut request = request_with_tools();
    let first = chat.chat(request.clone()).await.unwrap();
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(first.content, None);
    assert_eq!(
        first.tool_calls,
        vec![
            ToolCall {
                id: "call_1".into(),
                name: "otx_ipv4".into(),
                arguments: r#"{"target":"203.0.113.9"}"#.into()
            },
            ToolCall {
                id: "call_2".into(),
                name: "otx_ipv4".into(),
                arguments: r#"{"target":"198.51.100.7"}"#.into()
            }
        ]
    );
    let usage = first.usage;
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (120, 30, 150)
    );
    assert_eq!(first.model, "fake-model-2026");

    request.messages.push(ChatMessage::Assistant {
        content: None,
        tool_calls: first.tool_calls.clone(),
    });
    for (id, answer) in [("call_1", "no pulses"), ("call_2", "3 pulses")] {
        request.messages.push(ChatMessage::Tool {
            tool_call_id: id.into(),
            content: answer.into(),
        });
    }
    let second = chat.chat(request).await.unwrap();
    assert_eq!(second.content.as_deref(), Some("Benign scanner."));
    assert_eq!(second.finish_reason, FinishReason::Stop);
    assert_eq!(second.usage.total_tokens, 312);

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].headers["authorization"], "Bearer sk-test");
    let first_body = &requests[0].body;
    assert_eq!(first_body["model"], "gpt-test");
    assert_eq!(first_body["tools"][0]["type"], "function");
    assert_eq!(first_body["tools"][0]["function"]["name"], "otx_ipv4");
    assert_eq!(
        first_body["tools"][0]["function"]["parameters"]["required"],
        json!(["target"])
    );
    assert_eq!(first_body["tool_choice"], "auto");
    assert_eq!(first_body["max_completion_tokens"], 800);
    let sent = &requests[1].body["messages"];
    assert_eq!(sent[2]["role"], "assistant");
    assert_eq!(sent[2]["tool_calls"][1]["id"], "call_2");
    assert_eq!(
        sent[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"target":"203.0.113.9"}"#
    );
    assert_eq!(sent[3]["role"], "tool");
    assert_eq!(sent[3]["tool_call_id"], "call_1");
    assert_eq!(sent[4]["content"], "3 pulses");
}

#[tokio::test]
async fn malformed_tool_arguments_reach_the_caller_untouched() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::tool_calls(
        &[
            ("call_9", "otx_ipv4", r#"{"target": 203.0.113"#),
            ("call_10", "otx_ipv4", "invalid_arguments_format"),
        ],
        (10, 5),
    ));
    let response = chat(&fake).chat(request_with_tools()).await.unwrap();
    assert_eq!(response.tool_calls[0].arguments, r#"{"target": 203.0.113"#);
    assert_eq!(response.tool_calls[1].arguments, "invalid_arguments_format");
}

#[tokio::test]
async fn rate_limited_call_waits_for_retry_after_then_succeeds() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(
        Reply::error(429, "requests", Some("rate_limit_exceeded")).with_header("retry-after", "1"),
    )
    .push_chat(Reply::text("ok", (5, 1)));
    let response = chat(&fake).chat(request_with_tools()).await.unwrap();
    assert_eq!(response.content.as_deref(), Some("ok"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_in_call_limit_is_returned_at_once_for_the_caller_to_schedule() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::error(429, "requests", None).with_header("retry-after", "600"));
    let started = Instant::now();
    let error = chat(&fake).chat(request_with_tools()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match error {
        LlmError::Transient { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(600)));
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn server_error_is_retried_and_the_next_answer_used() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::error(500, "server_error", None))
        .push_chat(Reply::text("ok", (5, 1)));
    let response = chat(&fake).chat(request_with_tools()).await.unwrap();
    assert_eq!(response.content.as_deref(), Some("ok"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    // The backoff before the first retry is drawn from [100 ms, 200 ms].
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(100), "waited {waited:?}");
}

#[tokio::test]
async fn persistent_server_errors_end_as_transient_after_the_retries() {
    let fake = FakeOpenAi::start().await;
    for _ in 0..5 {
        fake.push_chat(Reply::error(503, "server_error", None));
    }
    let error = chat(&fake).chat(request_with_tools()).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Transient { message, .. } if message.contains("503")),
        "{error:?}"
    );
    assert_eq!(fake.requests().len(), 3, "1 attempt + 2 retries");
}

#[tokio::test]
async fn bad_credentials_are_not_retried() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::error(
        401,
        "invalid_request_error",
        Some("invalid_api_key"),
    ))
    .push_chat(Reply::text("never", (1, 1)));
    let error = chat(&fake).chat(request_with_tools()).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Auth(message) if message.contains("401")),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn bad_requests_forbidden_and_unknown_models_are_not_retried() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
    ] {
        let fake = FakeOpenAi::start().await;
        for _ in 0..3 {
            fake.push_chat(Reply::error(status, kind, None));
        }
        let error = chat(&fake).chat(request_with_tools()).await.unwrap_err();
        assert!(!error.is_transient(), "{status}: {error:?}");
        if status == 403 {
            assert!(matches!(error, LlmError::Auth(_)), "{error:?}");
        } else {
            assert!(matches!(error, LlmError::BadRequest(_)), "{error:?}");
        }
        assert_eq!(fake.requests().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn exhausted_quota_is_not_retried_even_though_it_is_a_429() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::error(
        429,
        "insufficient_quota",
        Some("insufficient_quota"),
    ))
    .push_chat(Reply::text("never", (1, 1)));
    let error = chat(&fake).chat(request_with_tools()).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Auth(message) if message.contains("quota")),
        "{error:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_hanging_endpoint_times_out_after_the_retries_instead_of_hanging() {
    let fake = FakeOpenAi::start().await;
    for _ in 0..3 {
        fake.push_chat(Reply::text("late", (1, 1)).with_delay(Duration::from_secs(30)));
    }
    let started = Instant::now();
    let error = chat(&fake).chat(request_with_tools()).await.unwrap_err();
    assert!(
        matches!(error, LlmError::Timeout(after) if after == Duration::from_millis(500)),
        "{error:?}"
    );
    assert!(error.is_transient());
    let elapsed = started.elapsed();
    // Three attempts of 500 ms, plus two backoffs of at most 200 and 400 ms.
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(fake.requests().len(), 3, "1 attempt + 2 retries");
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported_as_transient() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chat = OpenAiChat::new(settings(&format!("http://127.0.0.1:{port}/v1"))).unwrap();
    let started = Instant::now();
    let error = chat.chat(request_with_tools()).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Transient { message, .. } if message.contains("reach")),
        "{error:?}"
    );
    // Two backoffs happened: at least 100 + 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn embeddings_come_back_in_input_order_with_the_configured_dimensions() {
    let fake = FakeOpenAi::start().await;
    fake.push_embeddings(Reply::json(
        200,
        json!({
            "object": "list", "model": "embed-test",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [0.0, 1.0, 0.0]},
                {"object": "embedding", "index": 0, "embedding": [1.0, 0.0, 0.0]}
            ],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}
        }),
    ));
    let embedder = embedder(&fake.base_url(), 3);
    assert_eq!(embedder.dimensions(), 3);
    assert_eq!(embedder.name(), "embed-test");
    let out = embedder
        .embed(&["first".into(), "second".into()])
        .await
        .unwrap();
    assert_eq!(out.vectors, vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]);
    assert_eq!((out.usage.prompt_tokens, out.usage.total_tokens), (8, 8));
    let requests = fake.requests();
    assert_eq!(requests[0].path, "/v1/embeddings");
    assert_eq!(requests[0].body["model"], "embed-test");
    assert_eq!(requests[0].body["dimensions"], 3);
    assert_eq!(requests[0].body["encoding_format"], "float");
    assert_eq!(requests[0].body["input"], json!(["first", "second"]));
}

#[tokio::test]
async fn the_fake_answers_unscripted_embeddings_with_vectors_of_the_requested_size() {
    let fake = FakeOpenAi::start().await;
    let texts = ["a".to_owned(), "b".to_owned(), "a".to_owned()];
    let out = embedder(&fake.base_url(), 5).embed(&texts).await.unwrap();
    assert_eq!(out.vectors.len(), 3);
    assert!(out.vectors.iter().all(|v| v.len() == 5));
    assert_eq!(out.vectors[0], out.vectors[2]);
    assert_ne!(out.vectors[0], out.vectors[1]);
}

#[tokio::test]
async fn no_texts_make_no_request() {
    let fake = FakeOpenAi::start().await;
    let out = embedder(&fake.base_url(), 3).embed(&[]).await.unwrap();
    assert!(out.vectors.is_empty());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_a_protocol_error() {
    let fake = FakeOpenAi::start().await;
    fake.push_embeddings(Reply::embeddings(&[vec![1.0, 0.0]], 1));
    let error = embedder(&fake.base_url(), 3)
        .embed(&["x".into()])
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Protocol(_)), "{error:?}");
}

#[tokio::test]
async fn an_embedding_error_body_is_reported_with_its_message_and_not_retried() {
    let fake = FakeOpenAi::start().await;
    fake.push_embeddings(Reply::json(
        400,
        json!({"error": {"message": "-42 is less than the minimum of 1 - 'dimensions'",
                         "type": "invalid_request_error", "param": null, "code": null}}),
    ));
    let error = embedder(&fake.base_url(), 3)
        .embed(&["x".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::BadRequest(m) if m.contains("less than the minimum")),
        "{error:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn azure_requests_address_the_deployment_with_api_version_and_api_key() {
    let fake = FakeOpenAi::start().await;
    fake.push_chat(Reply::text("from azure", (3, 2)));
    let mut s = settings(&fake.root_url());
    s.azure = Some(AzureSettings {
        api_version: "2024-10-21".into(),
        deployment: "triage-gpt".into(),
        embedding_deployment: Some("embed-small".into()),
    });
    s.embedding_model = Some("text-embedding-3-small".into());
    s.embedding_dimensions = Some(4);
    let response = OpenAiChat::new(s.clone())
        .unwrap()
        .chat(request_with_tools())
        .await
        .unwrap();
    assert_eq!(response.content.as_deref(), Some("from azure"));
    let out = OpenAiEmbedder::new(s)
        .unwrap()
        .embed(&["x".into()])
        .await
        .unwrap();
    assert_eq!(out.vectors[0].len(), 4);

    let requests = fake.requests();
    assert_eq!(
        requests[0].path,
        "/openai/deployments/triage-gpt/chat/completions"
    );
    assert_eq!(requests[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(requests[0].headers["api-key"], "sk-test");
    assert!(requests[0].headers.get("authorization").is_none());
    assert_eq!(
        requests[1].path,
        "/openai/deployments/embed-small/embeddings"
    );
}

#[test]
fn azure_without_a_deployment_for_what_is_asked_is_a_setup_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut s = settings("https://example.openai.azure.com");
    s.embedding_model = Some("m".into());
    s.embedding_dimensions = Some(3);
    s.azure = Some(AzureSettings {
        api_version: "2024-10-21".into(),
        deployment: "chat".into(),
        embedding_deployment: None,
    });
    assert!(OpenAiChat::new(s.clone()).is_ok());
    assert!(OpenAiEmbedder::new(s.clone()).is_err());
    let mut no_version = s;
    no_version.azure = Some(AzureSettings {
        api_version: " ".into(),
        deployment: "chat".into(),
        embedding_deployment: None,
    });
    assert!(OpenAiChat::new(no_version).is_err());
}

#[test]
fn an_api_key_that_is_not_a_valid_header_is_refused_instead_of_panicking_later() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut s = settings("http://127.0.0.1:9/v1");
    s.api_key = Some("sk-test\n".into());
    let error = OpenAiChat::new(s).unwrap_err();
    assert!(error.to_string().contains("API key"), "{error}");
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
