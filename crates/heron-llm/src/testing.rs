//! [`FakeOpenAi`]: a local OpenAI-compatible server for tests (feature `testing`).
//!
//! It listens on `127.0.0.1` (a free port), answers `POST /v1/chat/completions` and
//! `POST /v1/embeddings` — and the Azure forms `/openai/deployments/{name}/…` — from scripts
//! given per test, in the real wire format, and records every request (path, query, headers,
//! JSON body, arrival time) so tests can assert on what was sent and when.
//!
//! - Chat requests take the next [`Reply`] of the chat script; with the script empty they get
//!   a 500 error body, so a test that under-scripts fails loudly rather than hanging.
//! - Embedding requests take the next reply of the embeddings script; with it empty they get
//!   deterministic vectors of the requested `dimensions` (8 by default), so tests that only
//!   need *some* embeddings need no script.
//!
//! The server lives as long as the runtime that started it. The process must have a rustls
//! provider installed before an adapter is built; [`FakeOpenAi::start`] installs ring.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// Wait this long before answering (past the client's timeout: a hang).
    pub delay: Duration,
    /// Answer only once this is notified (a test holds a run at a chosen step).
    pub gate: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
            gate: None,
        }
    }

    /// A `chat.completion` with one choice carrying `message`, and `(prompt, completion)`
    /// token usage.
    pub fn completion(message: Value, finish_reason: &str, usage: (u32, u32)) -> Self {
        Self::json(
            200,
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_763_900_000,
                "model": "fake-model-2026",
                "choices": [{"index": 0, "message": message, "logprobs": null,
                             "finish_reason": finish_reason}],
                "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1,
                          "total_tokens": usage.0 + usage.1},
                "service_tier": "default"
            }),
        )
    }

    /// An assistant answer in plain text (`finish_reason` `stop`).
    pub fn text(content: &str, usage: (u32, u32)) -> Self {
        Self::completion(
            json!({"role": "assistant", "content": content, "refusal": null, "annotations": []}),
            "stop",
            usage,
        )
    }

    /// An assistant answer calling functions: `(id, name, raw arguments)` each.
    pub fn tool_calls(calls: &[(&str, &str, &str)], usage: (u32, u32)) -> Self {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({"id": id, "type": "function",
                       "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        Self::completion(
            json!({"role": "assistant", "content": null, "tool_calls": calls}),
            "tool_calls",
            usage,
        )
    }

    /// An embeddings list; vector `i` gets index `i` (use [`Reply::json`] to send them out of
    /// order).
    pub fn embeddings(vectors: &[Vec<f32>], prompt_tokens: u32) -> Self {
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
            .collect();
        Self::json(
            200,
            json!({"object": "list", "data": data, "model": "fake-embedding",
                   "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}),
        )
    }

    /// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
    pub fn error(status: u16, kind: &str, code: Option<&str>) -> Self {
        Self::json(
            status,
            json!({"error": {"message": format!("fake {status} ({kind})"), "type": kind,
                             "param": null, "code": code}}),
        )
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Holds the answer until `gate` is notified (`notify_one`, before or after the request).
    pub fn held_until(mut self, gate: std::sync::Arc<tokio::sync::Notify>) -> Self {
        self.gate = Some(gate);
        self
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Debug, Default)]
struct Scripts {
    /// Chat replies in order, each for the first request that contains its needle (any
    /// request when it has none).
    chat: VecDeque<(Option<String>, Reply)>,
    embeddings: VecDeque<Reply>,
    requests: Vec<Recorded>,
}

#[derive(Debug, Clone)]
pub struct FakeOpenAi {
    root: String,
    state: Arc<Mutex<Scripts>>,
}

impl FakeOpenAi {
    /// Starts a server with empty scripts. Panics if it cannot bind (tests only).
    #[allow(clippy::expect_used)]
    pub async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let state = Arc::new(Mutex::new(Scripts::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route(
                "/openai/deployments/{deployment}/chat/completions",
                post(azure_chat),
            )
            .route(
                "/openai/deployments/{deployment}/embeddings",
                post(azure_embeddings),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake OpenAI server");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            root: format!("http://{addr}"),
            state,
        }
    }

    /// The OpenAI-style base URL (with `/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root)
    }

    /// The server root, the base URL for Azure settings.
    pub fn root_url(&self) -> String {
        self.root.clone()
    }

    pub fn push_chat(&self, reply: Reply) -> &Self {
        self.lock().chat.push_back((None, reply));
        self
    }

    /// Queues a chat reply for the first request whose JSON body contains `needle`: scripts
    /// for model calls that run concurrently (enrich tasks, triage) stay deterministic.
    pub fn push_chat_for(&self, needle: &str, reply: Reply) -> &Self {
        self.lock().chat.push_back((Some(needle.to_owned()), reply));
        self
    }

    pub fn push_embeddings(&self, reply: Reply) -> &Self {
        self.lock().embeddings.push_back(reply);
        self
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Scripts> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<Scripts>) -> MutexGuard<'_, Scripts> {
    // Pushes and pops cannot be left half done; a panicking test must not wedge the others.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

type Shared = State<Arc<Mutex<Scripts>>>;

async fn chat(
    State(state): Shared,
    uri: axum::http::Uri,
    query: RawQuery,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    answer(&state, Kind::Chat, uri, query, headers, body).await
}

async fn embeddings(
    State(state): Shared,
    uri: axum::http::Uri,
    query: RawQuery,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    answer(&state, Kind::Embeddings, uri, query, headers, body).await
}

async fn azure_chat(
    State(state): Shared,
    Path(_deployment): Path<String>,
    uri: axum::http::Uri,
    query: RawQuery,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    answer(&state, Kind::Chat, uri, query, headers, body).await
}

async fn azure_embeddings(
    State(state): Shared,
    Path(_deployment): Path<String>,
    uri: axum::http::Uri,
    query: RawQuery,
    headers: HeaderMap,
    body: Json<Value>,
) -> Response {
    answer(&state, Kind::Embeddings, uri, query, headers, body).await
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Embeddings,
}

async fn answer(
    state: &Mutex<Scripts>,
    kind: Kind,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = {
        let mut scripts = lock(state);
        scripts.requests.push(Recorded {
            at: Instant::now(),
            path: uri.path().to_owned(),
            query,
            headers,
            body: body.clone(),
        });
        match kind {
            Kind::Chat => next_chat_reply(&mut scripts.chat, &body).unwrap_or_else(|| {
                Reply::json(
                    500,
                    json!({"error": {"message": "the fake's chat script is exhausted",
                                     "type": "server_error", "param": null, "code": null}}),
                )
            }),
            Kind::Embeddings => scripts
                .embeddings
                .pop_front()
                .unwrap_or_else(|| default_embeddings(&body)),
        }
    };
    if let Some(gate) = &reply.gate {
        gate.notified().await;
    }
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(reply.body)).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn next_chat_reply(queue: &mut VecDeque<(Option<String>, Reply)>, body: &Value) -> Option<Reply> {
    let text = body.to_string();
    let at = queue
        .iter()
        .position(|(needle, _)| needle.as_ref().is_none_or(|n| text.contains(n.as_str())))?;
    queue.remove(at).map(|(_, reply)| reply)
}

/// Deterministic unit vectors (one per input) of the requested dimensions.
fn default_embeddings(body: &Value) -> Reply {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let dimensions = body["dimensions"]
        .as_u64()
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(8)
        .clamp(1, 4096);
    let vectors: Vec<Vec<f32>> = inputs
        .iter()
        .map(|text| {
            let seed = text
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31) ^ u32::from(b));
            let raw: Vec<f32> = (0..dimensions)
                .map(|i| {
                    let mixed = seed.wrapping_add((i as u32).wrapping_mul(2_654_435_761));
                    (mixed % 1000) as f32 - 500.0
                })
                .collect();
            let norm = raw
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::EPSILON);
            raw.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let tokens = u32::try_from(inputs.len()).unwrap_or(u32::MAX);
    Reply::embeddings(&vectors, tokens)
}
