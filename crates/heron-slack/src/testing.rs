//! [`FakeSlack`]: a local Slack Web API for tests. It records every call and answers in
//! Slack's own formats: `auth.test`, `chat.postMessage`, `chat.update`, `views.open`,
//! `users.info` and `conversations.replies`; a wrong token is `invalid_auth`, an unknown
//! channel `channel_not_found`, and queued failures give `ratelimited` (HTTP 429 with
//! `Retry-After`) or any error code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The bot's identity in `auth.test`.
pub const BOT_USER_ID: &str = "UHERONBOT";
pub const BOT_ID: &str = "BHERONBOT";
pub const TEAM_ID: &str = "T0HERON01";

/// One call Heron made: the method and its parameters (query and body merged).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCall {
    pub method: String,
    pub params: Value,
}

/// A message in the fake workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: String,
    pub bot: bool,
    pub text: String,
    pub blocks: Value,
    /// How many times `chat.update` changed it.
    pub updates: u32,
}

/// What the next call of a method answers instead.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeFailure {
    /// HTTP 429, `Retry-After: secs`, `{"ok": false, "error": "ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// HTTP 200 `{"ok": false, "error": code}`.
    Error(String),
    /// HTTP 503 with no JSON.
    Down,
}

#[derive(Debug, Default)]
struct FakeState {
    token: String,
    channels: HashSet<String>,
    users: HashMap<String, Value>,
    calls: Vec<FakeCall>,
    messages: Vec<FakeMessage>,
    failures: HashMap<String, VecDeque<FakeFailure>>,
    seq: u64,
}

/// See the module documentation. Dropping it stops the server.
#[derive(Debug, Clone)]
pub struct FakeSlack {
    /// The Web API root (`http://127.0.0.1:…/api`), for `SlackClientSettings::base_url`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    _server: Arc<ServerGuard>,
}

#[derive(Debug)]
struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FakeSlack {
    /// Serves on a free loopback port; `token` is the only bot token accepted; `channels`
    /// exist.
    pub async fn start(token: &str, channels: &[&str]) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(FakeState {
            token: token.to_owned(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            ..FakeState::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/api/{method}", axum::routing::any(handle))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}/api"),
            state,
            _server: Arc::new(ServerGuard(task)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A workspace member `users.info` knows.
    pub fn add_user(&self, id: &str, display_name: &str, email: Option<&str>) {
        self.lock().users.insert(
            id.to_owned(),
            json!({
                "id": id,
                "team_id": TEAM_ID,
                "name": display_name.to_lowercase(),
                "real_name": display_name,
                "is_bot": false,
                "profile": {
                    "display_name": display_name,
                    "real_name": display_name,
                    "email": email,
                },
            }),
        );
    }

    /// A human writes in a channel (in a thread when `thread_ts` is given); answers its ts.
    /// The caller then delivers the matching event to Heron.
    pub fn say(&self, channel: &str, thread_ts: Option<&str>, user: &str, text: &str) -> String {
        let mut s = self.lock();
        let ts = next_ts(&mut s);
        s.messages.push(FakeMessage {
            channel: channel.to_owned(),
            ts: ts.clone(),
            thread_ts: thread_ts.map(str::to_owned),
            user: user.to_owned(),
            bot: false,
            text: text.to_owned(),
            blocks: Value::Null,
            updates: 0,
        });
        ts
    }

    /// The next call of `method` fails so.
    pub fn fail_next(&self, method: &str, failure: FakeFailure) {
        self.lock()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back(failure);
    }

    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// Calls of one method.
    pub fn calls_of(&self, method: &str) -> Vec<FakeCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    pub fn messages(&self) -> Vec<FakeMessage> {
        self.lock().messages.clone()
    }

    /// The bot's messages in the thread rooted at `ts` (the root included), oldest first.
    pub fn thread(&self, channel: &str, ts: &str) -> Vec<FakeMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.channel == channel && (m.ts == ts || m.thread_ts.as_deref() == Some(ts)))
            .collect()
    }
}

fn next_ts(s: &mut FakeState) -> String {
    s.seq += 1;
    format!("1700000{:03}.{:06}", s.seq / 1000, s.seq)
}

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    axum::Json(body).into_response()
}

fn error(code: &str) -> Response {
    axum::Json(json!({"ok": false, "error": code})).into_response()
}

fn params(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut out = Map::new();
    let mut add_form = |text: &str| {
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            out.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    };
    if let Some(q) = query {
        add_form(&q);
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json_body {
        if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
            out.extend(fields);
        }
    } else if let Ok(text) = std::str::from_utf8(body) {
        add_form(text);
    }
    Value::Object(out)
}

fn message_json(m: &FakeMessage) -> Value {
    let mut v = json!({"type": "message", "text": m.text, "ts": m.ts});
    if m.bot {
        v["bot_id"] = json!(BOT_ID);
        v["user"] = json!(BOT_USER_ID);
        v["blocks"] = m.blocks.clone();
    } else {
        v["user"] = json!(m.user);
    }
    if let Some(t) = &m.thread_ts {
        v["thread_ts"] = json!(t);
    }
    v
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(query, &headers, &body);
    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
    s.calls.push(FakeCall {
        method: method.clone(),
        params: p.clone(),
    });
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if bearer.as_deref() != Some(s.token.as_str()) {
        return error("invalid_auth");
    }
    if let Some(failure) = s.failures.get_mut(&method).and_then(VecDeque::pop_front) {
        return match failure {
            FakeFailure::RateLimited { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, retry_after_secs.to_string()),
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                ],
                json!({"ok": false, "error": "ratelimited"}).to_string(),
            )
                .into_response(),
            FakeFailure::Error(code) => error(&code),
            FakeFailure::Down => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        };
    }
    let text = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match method.as_str() {
        "auth.test" => ok(json!({
            "url": "https://heron-test.slack.com/",
            "team": "Heron Test",
            "user": "heron",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        })),
        "chat.postMessage" => {
            let channel = text("channel");
            if !s.channels.contains(&channel) {
                return error("channel_not_found");
            }
            let ts = next_ts(&mut s);
            let thread_ts = Some(text("thread_ts")).filter(|t| !t.is_empty());
            let message = FakeMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                user: BOT_USER_ID.to_owned(),
                bot: true,
                text: text("text"),
                blocks: p.get("blocks").cloned().unwrap_or(Value::Null),
                updates: 0,
            };
            let json = message_json(&message);
            s.messages.push(message);
            ok(json!({"channel": channel, "ts": ts, "message": json}))
        }
        "chat.update" => {
            let (channel, ts) = (text("channel"), text("ts"));
            let Some(m) = s
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return error("message_not_found");
            };
            m.text = text("text");
            m.blocks = p.get("blocks").cloned().unwrap_or(Value::Null);
            m.updates += 1;
            let json = message_json(m);
            ok(json!({"channel": channel, "ts": ts, "text": m.text, "message": json}))
        }
        "views.open" => {
            if text("trigger_id").is_empty() {
                return error("invalid_trigger_id");
            }
            let mut view = p.get("view").cloned().unwrap_or(Value::Null);
            if let Value::String(raw) = &view {
                view = serde_json::from_str(raw).unwrap_or(Value::Null);
            }
            view["id"] = json!("V0HERON01");
            view["team_id"] = json!(TEAM_ID);
            view["hash"] = json!("1700000000.abcdef");
            view["state"] = json!({"values": {}});
            ok(json!({"view": view}))
        }
        "users.info" => match s.users.get(&text("user")) {
            Some(user) => ok(json!({"user": user})),
            None => error("user_not_found"),
        },
        "conversations.replies" => {
            let (channel, ts) = (text("channel"), text("ts"));
            let messages: Vec<Value> = s
                .messages
                .iter()
                .filter(|m| {
                    m.channel == channel
                        && (m.ts == ts || m.thread_ts.as_deref() == Some(ts.as_str()))
                })
                .map(message_json)
                .collect();
            if messages.is_empty() {
                return error("thread_not_found");
            }
            ok(json!({"messages": messages, "has_more": false}))
        }
        _ => error("unknown_method"),
    }
}
