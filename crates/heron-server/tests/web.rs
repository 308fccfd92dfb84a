#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The dashboard pages through the router, on the in-memory store: what they show, what
//! they escape, who may see them.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use heron_app::{Intake, PolicyHandle};
use heron_core::agent::{AgentStep, RunPurpose, RunStatus, StepKind};
use heron_core::llm::TokenUsage;
use heron_core::policy::{
    IngestOutput, PolicyEngine, PolicyError, PolicyInfo, TriageDecision, TriageInput,
};
use heron_core::ports::*;
use heron_core::testing::InMemoryStore;
use heron_core::testing::conformance::{agent_run, new_alert, new_event, new_ticket_for};
use heron_core::*;
use heron_server::{AuthConfig, AuthMode, ServerSettings, ServerState};
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio::sync::Notify;
use tower::ServiceExt;

const HOSTILE: &str = "<script>alert('x')</script>";

struct NoPolicies;

impl PolicyEngine for NoPolicies {
    fn ingest(&self, _: &SchemaName, _: &serde_json::Value) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput::default())
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo::default()
    }
}

async fn app(auth: AuthMode) -> (axum::Router, TicketId) {
    let (app, _, id) = app_and_store(auth).await;
    (app, id)
}

/// Opens one more plain ticket.
async fn open_ticket(store: &Arc<dyn Store>, key: &str) -> TicketId {
    let now = Utc::now();
    let accepted = store
        .accept_event(new_event("guardduty", None, now))
        .await
        .unwrap();
    let leased = store
        .lease_events(1, now, now + Duration::seconds(60), 5)
        .await
        .unwrap()
        .remove(0);
    let alert = new_alert(accepted.event_id, "guardduty", key, now);
    let ticket = new_ticket_for(&alert);
    let id = ticket.id;
    store
        .complete_event(
            &leased.lease,
            vec![PlannedAlert {
                alert,
                disposition: Disposition::Open {
                    ticket,
                    seen_since: now - Duration::hours(1),
                },
            }],
            now,
        )
        .await
        .unwrap();
    id
}

async fn app_and_store(auth: AuthMode) -> (axum::Router, Arc<dyn Store>, TicketId) {
    let (state, store, id) = state_and_store(auth).await;
    (heron_server::router(state), store, id)
}

async fn state_and_store(auth: AuthMode) -> (ServerState, Arc<dyn Store>, TicketId) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    // One ticket whose alert carries hostile text everywhere an analyst will look.
    let now = Utc::now() - Duration::seconds(5);
    let accepted = store
        .accept_event(new_event("guardduty", None, now))
        .await
        .unwrap();
    let leased = store
        .lease_events(1, now, now + Duration::seconds(60), 5)
        .await
        .unwrap()
        .remove(0);
    let mut alert = new_alert(accepted.event_id, "guardduty", "hostile", now);
    alert.title = format!("Port probe {HOSTILE}");
    alert.attributes[0].value = HOSTILE.to_owned();
    alert.data = serde_json::json!({"note": HOSTILE});
    let mut ticket = new_ticket_for(&alert);
    ticket.title = alert.title.clone();
    let ticket_id = ticket.id;
    store
        .complete_event(
            &leased.lease,
            vec![PlannedAlert {
                alert,
                disposition: Disposition::Open {
                    ticket,
                    seen_since: now - Duration::hours(1),
                },
            }],
            now,
        )
        .await
        .unwrap();
    store
        .add_comment(Comment {
            id: CommentId::new(),
            ticket_id,
            source: CommentSource::Api,
            author: "mallory".into(),
            text: format!("see {HOSTILE}"),
            created_at: now,
        })
        .await
        .unwrap();
    let mut run = agent_run(ticket_id, now, 500);
    run.purpose = RunPurpose::Triage;
    run.status = RunStatus::Completed;
    run.steps.push(AgentStep {
        index: 3,
        kind: StepKind::Tool,
        tool: Some("otx_ipv4".into()),
        arguments: Some(serde_json::json!({"target": HOSTILE})),
        result: Some(format!("pulse named {HOSTILE}")),
        error: None,
        latency_ms: 42,
        tokens: TokenUsage::default(),
        bytes_processed: Some(1024),
    });
    store.save_agent_run(&run).await.unwrap();
    let mut finished = store.get_ticket(ticket_id).await.unwrap().unwrap();
    finished.finding = serde_json::to_value(run.finding.clone()).ok();
    store.update_ticket(&finished).await.unwrap();

    let settings = ServerSettings {
        auth,
        ..ServerSettings::default()
    };
    let intake = Intake::new(store.clone(), Arc::new(Notify::new()));
    let state = ServerState::new(
        store.clone(),
        intake,
        PolicyHandle::new(Arc::new(NoPolicies)),
        settings,
        None,
    )
    .unwrap();
    (state, store, ticket_id)
}

async fn get(app: &axum::Router, path: &str, auth: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(path);
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_queue_lists_tickets_with_counts_and_escapes_hostile_titles() {
    let (app, ticket_id) = app(AuthMode::Disabled).await;
    let (status, html) = get(&app, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("href=\"/tickets/{ticket_id}\"")),
        "{html}"
    );
    assert!(html.contains("open <strong>1</strong>"), "{html}");
    assert!(
        !html.contains(HOSTILE),
        "raw markup must never reach the page"
    );
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );

    let (status, html) = get(&app, "/?status=resolved", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No tickets match."), "{html}");
    let (status, html) = get(&app, "/?q=probe&severity=high", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&ticket_id.to_string()));
    let (status, html) = get(&app, "/?status=bogus", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("unknown status"), "{html}");
}

#[tokio::test]
async fn the_ticket_page_shows_alerts_conversation_and_agent_steps_escaped() {
    let (app, ticket_id) = app(AuthMode::Disabled).await;
    let (status, html) = get(&app, &format!("/tickets/{ticket_id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains(HOSTILE),
        "raw markup must never reach the page"
    );
    for shown in [
        "Port probe",
        "mallory",
        "otx_ipv4",
        "42 ms",
        "1024",
        "id=\"step-2\"",
        "href=\"#step-2\"",
        "Raw JSON",
        "true_positive",
    ] {
        assert!(html.contains(shown), "{shown} missing:\n{html}");
    }

    let (status, _) = get(&app, &format!("/tickets/{}", TicketId::new()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, "/tickets/not-an-id", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pages_need_an_api_token_as_the_basic_password_when_auth_is_on() {
    use base64::Engine as _;
    let auth = AuthMode::Tokens(AuthConfig {
        tokens: vec!["page-token".into()],
        ..AuthConfig::default()
    });
    let (app, _) = app(auth).await;
    let response = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let basic = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"))
        )
    };
    assert_eq!(
        get(&app, "/", Some(&basic("page-token"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/", Some(&basic("wrong"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The stylesheet is public: the sign-in page needs it.
    let (status, css) = get(&app, "/static/heron.css", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("prefers-color-scheme: dark"));
}

#[tokio::test]
async fn an_open_queue_hears_of_tickets_newer_than_its_newest() {
    let (app, store, first) = app_and_store(AuthMode::Disabled).await;
    let (_, html) = get(&app, "/", None).await;
    assert!(
        html.contains(&format!("data-live-after=\"{first}\"")),
        "{html}"
    );
    let (_, older_page) = get(&app, &format!("/?before={first}"), None).await;
    assert!(
        !older_page.contains("data-live-after"),
        "no live updates on older pages"
    );

    let response = app
        .clone()
        .oneshot(
            Request::get(format!("/live/tickets?after={first}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let newer = open_ticket(&store, "newer").await;
    let mut body = response.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let frame = body.frame().await.expect("a frame").expect("no error");
            if let Ok(data) = frame.into_data() {
                let text = String::from_utf8_lossy(&data).into_owned();
                if text.contains("event: tickets") {
                    return text;
                }
            }
        }
    })
    .await
    .expect("an event within the poll interval");
    assert!(frame.contains("data: 1"), "{frame}");
    assert!(
        frame.contains(&format!("id: {newer}")),
        "the event names the newest ticket, to count from next: {frame}"
    );
}

#[tokio::test]
async fn failed_events_and_unbound_alerts_have_their_pages_with_errors_escaped() {
    let (app, store, _) = app_and_store(AuthMode::Disabled).await;
    let now = Utc::now();
    let mut event = new_event("okta", None, now);
    event.body = format!(r#"{{"note": "{HOSTILE}"}}"#);
    let accepted = store.accept_event(event).await.unwrap();
    let leased = store
        .lease_events(1, now, now + Duration::seconds(60), 5)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(leased.event.id, accepted.event_id);
    store
        .fail_event(&leased.lease, &format!("policy error near {HOSTILE}"), None)
        .await
        .unwrap();

    let (status, html) = get(&app, "/events", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&accepted.event_id.to_string()), "{html}");
    assert!(html.contains("policy error near"), "{html}");
    assert!(
        !html.contains(HOSTILE),
        "raw markup must never reach the page"
    );
    let (status, html) = get(&app, "/events?state=processed", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(&accepted.event_id.to_string()));
    let (status, _) = get(&app, "/events?state=lost", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, html) = get(&app, "/alerts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No notices."), "{html}");
    assert!(html.contains("Every alert is on a ticket."), "{html}");
}

#[tokio::test]
async fn the_ticket_page_lists_similar_past_tickets_with_their_conclusions() {
    let (state, store, first) = state_and_store(AuthMode::Disabled).await;
    let embedder = Arc::new(heron_core::testing::FakeEmbedder::new(4));
    let state = state.with_agent(heron_server::AgentState {
        embedder: heron_app::SimilarityEmbedder::new(embedder.clone()),
        chat: None,
        enabled: false,
        tools: Vec::new(),
    });
    let app = heron_server::router(state);
    let past = open_ticket(&store, "past").await;
    let mut resolved = store.get_ticket(past).await.unwrap().unwrap();
    resolved
        .apply(
            &TicketChange {
                status: Some(TicketStatus::Resolved),
                conclusion: Some(Conclusion::FalsePositive),
                reason: Some("scanner".into()),
                ..TicketChange::default()
            },
            Utc::now(),
        )
        .unwrap();
    store.update_ticket(&resolved).await.unwrap();
    let model = heron_core::llm::Embedder::name(embedder.as_ref()).to_owned();
    store
        .put_ticket_embedding(first, &model, &[1.0, 0.0, 0.0, 0.0])
        .await
        .unwrap();
    store
        .put_ticket_embedding(past, &model, &[0.9, 0.1, 0.0, 0.0])
        .await
        .unwrap();

    let (status, html) = get(&app, &format!("/tickets/{first}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("href=\"/tickets/{past}\"")),
        "{html}"
    );
    assert!(
        html.contains("false_positive"),
        "the past ticket's conclusion"
    );
    assert!(html.contains("0.99"), "its similarity");
}

async fn post_form(app: &axum::Router, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = app
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn actions_on_the_ticket_page_need_the_pages_csrf_token_and_follow_the_lifecycle() {
    let (app, store, id) = app_and_store(AuthMode::Disabled).await;
    let (_, html) = get(&app, &format!("/tickets/{id}"), None).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("action forms with a CSRF token")
        .to_owned();
    let path = format!("/tickets/{id}/actions");

    let (status, _) = post_form(
        &app,
        &path,
        &[("csrf", "forged"), ("action", "acknowledge")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a form from elsewhere does nothing"
    );
    assert_eq!(
        store.get_ticket(id).await.unwrap().unwrap().status,
        TicketStatus::Open
    );

    let (status, _) = post_form(&app, &path, &[("csrf", &csrf), ("action", "acknowledge")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = post_form(
        &app,
        &path,
        &[("csrf", &csrf), ("action", "assign"), ("assignee", "bob")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, html) = post_form(
        &app,
        &path,
        &[("csrf", &csrf), ("action", "resolve"), ("conclusion", "")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    let (status, _) = post_form(
        &app,
        &path,
        &[
            ("csrf", &csrf),
            ("action", "resolve"),
            ("conclusion", "false_positive"),
            ("reason", "scanner"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, html) =
        post_form(&app, &path, &[("csrf", &csrf), ("action", "acknowledge")]).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a resolved ticket cannot be acknowledged: {html}"
    );
    let (status, _) = post_form(
        &app,
        &path,
        &[
            ("csrf", &csrf),
            ("action", "comment"),
            ("text", "closing: <b>scanner</b>"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let ticket = store.get_ticket(id).await.unwrap().unwrap();
    assert_eq!(ticket.status, TicketStatus::Resolved);
    assert_eq!(ticket.conclusion, Some(Conclusion::FalsePositive));
    assert_eq!(ticket.assignee.as_deref(), Some("bob"));
    let comments = store.list_comments(id).await.unwrap();
    assert!(
        comments.iter().any(|c| c.source == CommentSource::Web
            && c.author == "local"
            && c.text.contains("scanner")),
        "{comments:?}"
    );
    assert!(
        comments
            .iter()
            .any(|c| c.source == CommentSource::System && c.author == "local"),
        "each change is recorded with who made it"
    );
    let (_, html) = get(&app, &format!("/tickets/{id}"), None).await;
    assert!(
        html.contains("&#60;b&#62;scanner") || html.contains("&lt;b&gt;scanner"),
        "comments are escaped"
    );
    assert!(
        html.contains("Reopen"),
        "a resolved ticket offers to reopen"
    );
}

#[tokio::test]
async fn an_api_token_viewer_reads_but_cannot_act_from_the_pages() {
    use base64::Engine as _;
    let auth = AuthMode::Tokens(AuthConfig {
        tokens: vec!["page-token".into()],
        ..AuthConfig::default()
    });
    let (app, _, id) = app_and_store(auth).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:page-token")
    );
    let (status, html) = get(&app, &format!("/tickets/{id}"), Some(&basic)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains("/actions"),
        "no action forms for a Basic viewer"
    );
    let response = app
        .clone()
        .oneshot(
            Request::post(format!("/tickets/{id}/actions"))
                .header("authorization", &basic)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("csrf=&action=acknowledge"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_question_on_the_chat_page_is_answered_with_or_without_javascript() {
    use heron_core::testing::ScriptedChatModel;
    let (state, store, id) = state_and_store(AuthMode::Disabled).await;
    let model = Arc::new(ScriptedChatModel::new(vec![
        ScriptedChatModel::text("It is a port probe from a scanner.", 30),
        ScriptedChatModel::text("Nothing else happened.", 20),
    ]));
    let daily = Arc::new(heron_app::StoreDailyTokens::new(1_000_000));
    let chat = heron_app::ChatService::new(
        store.clone(),
        Arc::new(heron_agent::Agent::new(
            model,
            Vec::new(),
            heron_agent::Budgets::default(),
            daily.clone(),
        )),
        daily,
    );
    let app = heron_server::router(state.with_agent(heron_server::AgentState {
        embedder: heron_app::SimilarityEmbedder::new(Arc::new(
            heron_core::testing::FakeEmbedder::new(4),
        )),
        chat: Some(chat),
        enabled: true,
        tools: Vec::new(),
    }));
    let (status, html) = get(&app, &format!("/tickets/{id}/chat"), None).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a question form")
        .to_owned();

    // Without JavaScript: a form post, then the conversation.
    let (status, _) = post_form(
        &app,
        &format!("/tickets/{id}/chat"),
        &[("csrf", &csrf), ("question", "What is <this>?")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, html) = get(&app, &format!("/tickets/{id}/chat"), None).await;
    assert!(
        html.contains("It is a port probe from a scanner."),
        "{html}"
    );
    assert!(!html.contains("What is <this>?"), "the question is escaped");

    // With JavaScript: the stream of the same events as the API.
    let (status, _) = get(
        &app,
        &format!("/tickets/{id}/chat/stream?question=more&csrf=forged"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("question", "Anything else?")
        .append_pair("csrf", &csrf)
        .finish();
    let (status, events) = get(&app, &format!("/tickets/{id}/chat/stream?{query}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(events.contains("event: answer"), "{events}");
    assert!(events.contains("Nothing else happened."), "{events}");
    assert!(events.contains("event: done"), "{events}");
    let comments = store.list_comments(id).await.unwrap();
    assert!(
        comments
            .iter()
            .any(|c| c.author == "local" && c.text == "Anything else?"),
        "the question is recorded under the viewer: {comments:?}"
    );
}

/// The CSRF token of the first form on a page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with a CSRF token")
        .to_owned()
}

/// A POST's status and Location header.
async fn post_for_location(
    app: &axum::Router,
    path: &str,
    form: &[(&str, &str)],
    auth: Option<&str>,
) -> (StatusCode, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), location)
}

/// Stores an event whose one alert becomes a notice (`notice`) or is discarded.
async fn unbound_alert(store: &Arc<dyn Store>, title: &str, notice: bool) -> (AlertId, NoticeId) {
    let now = Utc::now();
    let accepted = store
        .accept_event(new_event("guardduty", None, now))
        .await
        .unwrap();
    let leased = store
        .lease_events(1, now, now + Duration::seconds(60), 5)
        .await
        .unwrap()
        .remove(0);
    let mut alert = new_alert(accepted.event_id, "guardduty", title, now);
    alert.title = title.to_owned();
    let (alert_id, notice_id) = (alert.id, NoticeId::new());
    let disposition = if notice {
        Disposition::Notice {
            notice_id,
            title: title.to_owned(),
            channel: None,
        }
    } else {
        Disposition::Discard
    };
    store
        .complete_event(
            &leased.lease,
            vec![PlannedAlert { alert, disposition }],
            now,
        )
        .await
        .unwrap();
    (alert_id, notice_id)
}

fn basic(token: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{token}"))
    )
}

#[tokio::test]
async fn the_metrics_page_draws_accessible_charts_with_their_data_tables() {
    let (app, _) = app(AuthMode::Disabled).await;
    let (status, html) = get(&app, "/stats", None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for shown in [
        "Alerts per day",
        "Tickets by status",
        "Tickets by severity",
        "Conclusions",
        "Time to acknowledge, per week",
        "Time to resolve, per week",
        "LLM tokens per day",
        "BigQuery bytes per day",
        "role=\"img\"",
        "aria-label=\"Bar chart of alerts: ",
        " bars, 1 in all, the most 1 (",
        "<title>",
        "<caption class=\"visually-hidden\">LLM tokens per day</caption>",
        // The fixture's run: 500 tokens and 1.2 TB of BigQuery scans today.
        "<td>500</td>",
        "<td>1.2 TB</td>",
        "How each figure is counted",
    ] {
        assert!(html.contains(shown), "{shown} missing:\n{html}");
    }
    assert!(
        !html.contains(HOSTILE),
        "raw markup must never reach the page"
    );
    assert_eq!(html.matches("role=\"img\"").count(), 8, "eight charts");

    let (status, html) = get(&app, "/stats?weeks=2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("aria-label=\"Bar chart of alerts: "),
        "{html}"
    );
    for bad in ["/stats?weeks=0", "/stats?weeks=27", "/stats?weeks=many"] {
        assert_eq!(
            get(&app, bad, None).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

struct RefusingLoader;

impl heron_core::policy::PolicyLoader for RefusingLoader {
    fn load(&self) -> Result<Arc<dyn PolicyEngine>, heron_core::policy::PolicyLoadFailure> {
        Err(heron_core::policy::PolicyLoadFailure(format!(
            "test_probe failed near {HOSTILE}"
        )))
    }
}

struct NamedPolicies;

impl PolicyEngine for NamedPolicies {
    fn ingest(&self, _: &SchemaName, _: &serde_json::Value) -> Result<IngestOutput, PolicyError> {
        Ok(IngestOutput::default())
    }
    fn triage(&self, _: &TriageInput) -> Result<TriageDecision, PolicyError> {
        Ok(TriageDecision::default())
    }
    fn info(&self) -> PolicyInfo {
        PolicyInfo {
            packages: vec!["ingest.guardduty".into(), format!("triage.{HOSTILE}")],
            ingest_schemas: vec!["guardduty".into()],
            has_triage: true,
            files: 3,
        }
    }
}

async fn app_with_policies(policies: PolicyHandle, auth: AuthMode) -> axum::Router {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let intake = Intake::new(store.clone(), Arc::new(Notify::new()));
    let state = ServerState::new(
        store,
        intake,
        policies,
        ServerSettings {
            auth,
            ..ServerSettings::default()
        },
        None,
    )
    .unwrap();
    heron_server::router(state)
}

#[tokio::test]
async fn the_policies_page_shows_the_set_in_force_and_a_refused_reload_with_its_error_escaped() {
    let app = app_with_policies(
        PolicyHandle::reloadable(Arc::new(NamedPolicies), Arc::new(RefusingLoader)),
        AuthMode::Disabled,
    )
    .await;
    let (status, html) = get(&app, "/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "ingest.guardduty",
        "guardduty",
        "generation 1",
        "Reload from disk",
    ] {
        assert!(html.contains(shown), "{shown} missing:\n{html}");
    }
    assert!(!html.contains(HOSTILE), "package names are escaped");
    let csrf = csrf_of(&html);

    let (status, _) =
        post_for_location(&app, "/policies/reload", &[("csrf", "forged")], None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a form from elsewhere does nothing"
    );
    let (_, html) = get(&app, "/policies", None).await;
    assert!(html.contains("0 taken, 0 refused"), "{html}");

    let (status, location) =
        post_for_location(&app, "/policies/reload", &[("csrf", &csrf)], None).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/policies")
    );
    let (_, html) = get(&app, "/policies", None).await;
    assert!(html.contains("were refused"), "{html}");
    assert!(html.contains("test_probe failed near"), "{html}");
    assert!(html.contains("0 taken, 1 refused"), "{html}");
    assert!(
        html.contains("(web)"),
        "the trigger is the dashboard: {html}"
    );
    assert!(!html.contains(HOSTILE), "the error is escaped");

    // A process without a policy folder says so and has nothing to reload.
    let fixed = app_with_policies(
        PolicyHandle::new(Arc::new(NamedPolicies)),
        AuthMode::Disabled,
    )
    .await;
    let (_, html) = get(&fixed, "/policies", None).await;
    assert!(html.contains("cannot reload"), "{html}");
    assert!(!html.contains("Reload from disk"));
    let (status, _) = post_for_location(&fixed, "/policies/reload", &[("csrf", &csrf)], None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn alerts_are_bound_and_notices_escalated_from_the_alerts_page_under_the_viewers_name() {
    let (app, store, ticket_id) = app_and_store(AuthMode::Disabled).await;
    let (discarded, _) = unbound_alert(&store, &format!("Noise {HOSTILE}"), false).await;
    let (noticed, notice_id) = unbound_alert(&store, "Heads-up", true).await;
    let (status, html) = get(&app, "/alerts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !html.contains(HOSTILE),
        "raw markup must never reach the page"
    );
    assert!(
        html.contains(&format!("action=\"/alerts/{discarded}/bind\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!("action=\"/notices/{notice_id}/escalate\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!("<option value=\"{ticket_id}\">")),
        "active tickets are offered: {html}"
    );
    let csrf = csrf_of(&html);

    let bind = format!("/alerts/{discarded}/bind");
    let id = ticket_id.to_string();
    let (status, _) =
        post_for_location(&app, &bind, &[("csrf", "forged"), ("ticket", &id)], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        store.get_alert(discarded).await.unwrap().unwrap().ticket_id,
        None
    );
    let (status, _) =
        post_for_location(&app, &bind, &[("csrf", &csrf), ("ticket", "nope")], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, location) =
        post_for_location(&app, &bind, &[("csrf", &csrf), ("ticket", &id)], None).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/alerts")
    );
    assert_eq!(
        store.get_alert(discarded).await.unwrap().unwrap().ticket_id,
        Some(ticket_id)
    );
    assert_eq!(
        store
            .get_ticket(ticket_id)
            .await
            .unwrap()
            .unwrap()
            .alert_count,
        2
    );
    let (status, _) =
        post_for_location(&app, &bind, &[("csrf", &csrf), ("ticket", &id)], None).await;
    assert_eq!(status, StatusCode::CONFLICT, "an alert is bound once");
    let comments = store.list_comments(ticket_id).await.unwrap();
    assert!(
        comments.iter().any(|c| c.source == CommentSource::System
            && c.author == "local"
            && c.text.contains(&format!("bound alert {discarded}"))),
        "{comments:?}"
    );

    let escalate = format!("/notices/{notice_id}/escalate");
    let (status, _) = post_for_location(&app, &escalate, &[("csrf", "forged")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, location) = post_for_location(&app, &escalate, &[("csrf", &csrf)], None).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/alerts")
    );
    let notice = store.get_notice(notice_id).await.unwrap().unwrap();
    let opened = notice.ticket_id.expect("escalated to a ticket");
    assert_eq!(
        store.get_alert(noticed).await.unwrap().unwrap().ticket_id,
        Some(opened)
    );
    assert!(
        store
            .list_comments(opened)
            .await
            .unwrap()
            .iter()
            .any(|c| c.author == "local" && c.text.contains("escalated notice")),
        "the escalation is recorded under the viewer"
    );
    let (status, _) = post_for_location(&app, &escalate, &[("csrf", &csrf)], None).await;
    assert_eq!(status, StatusCode::CONFLICT, "a notice is escalated once");
    let (_, html) = get(&app, "/alerts", None).await;
    assert!(
        html.contains(&format!("href=\"/tickets/{opened}\"")),
        "{html}"
    );
    assert!(html.contains("Every alert is on a ticket."), "{html}");
}

#[tokio::test]
async fn a_failed_event_is_retried_from_the_events_page() {
    let (app, store, _) = app_and_store(AuthMode::Disabled).await;
    let now = Utc::now();
    let accepted = store
        .accept_event(new_event("okta", None, now))
        .await
        .unwrap();
    let leased = store
        .lease_events(1, now, now + Duration::seconds(60), 5)
        .await
        .unwrap()
        .remove(0);
    store
        .fail_event(&leased.lease, "policy error", None)
        .await
        .unwrap();
    let (_, html) = get(&app, "/events", None).await;
    let retry = format!("/events/{}/retry", accepted.event_id);
    assert!(html.contains(&format!("action=\"{retry}\"")), "{html}");
    let csrf = csrf_of(&html);

    let (status, _) = post_for_location(&app, &retry, &[("csrf", "forged")], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, location) =
        post_for_location(&app, &retry, &[("csrf", &csrf), ("state", "failed")], None).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/events?state=failed")
    );
    let event = store.get_event(accepted.event_id).await.unwrap().unwrap();
    assert_eq!((event.state, event.attempts), (EventState::Pending, 0));
    let (status, _) = post_for_location(&app, &retry, &[("csrf", &csrf)], None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a pending event is not retried"
    );
    let (_, html) = get(&app, "/events", None).await;
    assert!(html.contains("No failed events."), "{html}");
}

#[tokio::test]
async fn the_queue_sorts_by_severity_or_update_either_way_and_pages_in_that_order() {
    let (app, store, first) = app_and_store(AuthMode::Disabled).await;
    let mut opened = Vec::new();
    for i in 0..55 {
        opened.push(open_ticket(&store, &format!("t{i}")).await);
    }
    // One critical ticket among high ones; the oldest is made low.
    let mut critical = store.get_ticket(opened[10]).await.unwrap().unwrap();
    critical.severity = Severity::Critical;
    store.update_ticket(&critical).await.unwrap();
    let mut low = store.get_ticket(first).await.unwrap().unwrap();
    low.severity = Severity::Low;
    low.updated_at = Utc::now() + Duration::seconds(1);
    store.update_ticket(&low).await.unwrap();
    let position = |html: &str, id: TicketId| html.find(&format!("data-ticket=\"{id}\""));

    let (status, html) = get(&app, "/?sort=severity", None).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<&str> = html.split("data-ticket=\"").skip(1).collect();
    assert_eq!(rows.len(), 50);
    assert!(
        rows[0].starts_with(&opened[10].to_string()),
        "the critical one first"
    );
    assert!(
        position(&html, first).is_none(),
        "the low one is on the last page"
    );
    assert!(html.contains("aria-sort=\"descending\""), "{html}");
    assert!(html.contains("Tickets, most severe first"), "{html}");
    let next = html
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an older page")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(
        next.contains("sort=severity&order=desc&before=severity%3Ahigh%3A"),
        "{next}"
    );
    let (status, html) = get(&app, &next, None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let rows: Vec<&str> = html.split("data-ticket=\"").skip(1).collect();
    assert_eq!(rows.len(), 6);
    assert!(rows[5].starts_with(&first.to_string()), "the low one last");

    let (_, html) = get(&app, "/?sort=severity&order=asc", None).await;
    let rows: Vec<&str> = html.split("data-ticket=\"").skip(1).collect();
    assert!(rows[0].starts_with(&first.to_string()), "the low one first");
    assert!(html.contains("aria-sort=\"ascending\""), "{html}");

    let (_, html) = get(&app, "/?sort=updated", None).await;
    let rows: Vec<&str> = html.split("data-ticket=\"").skip(1).collect();
    assert!(
        rows[0].starts_with(&first.to_string()),
        "the last updated first"
    );

    for bad in [
        "/?sort=loudness",
        "/?order=sideways",
        // A cursor of another order.
        &format!("/?sort=updated&before={first}"),
    ] {
        assert_eq!(
            get(&app, bad, None).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_api_token_viewer_can_neither_bind_escalate_retry_nor_reload() {
    let auth = AuthMode::Tokens(AuthConfig {
        tokens: vec!["page-token".into()],
        ..AuthConfig::default()
    });
    let (app, store, ticket_id) = app_and_store(auth).await;
    let (discarded, _) = unbound_alert(&store, "Noise", false).await;
    let (_, notice_id) = unbound_alert(&store, "Heads-up", true).await;
    let viewer = basic("page-token");
    for page in ["/alerts", "/events?state=ignored", "/policies", "/stats"] {
        let (status, html) = get(&app, page, Some(&viewer)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            !html.contains("name=\"csrf\""),
            "no forms on {page} for a Basic viewer"
        );
    }
    let id = ticket_id.to_string();
    for (path, form) in [
        (
            format!("/alerts/{discarded}/bind"),
            vec![("csrf", ""), ("ticket", id.as_str())],
        ),
        (format!("/notices/{notice_id}/escalate"), vec![("csrf", "")]),
        (
            format!("/events/{}/retry", EventId::new()),
            vec![("csrf", "")],
        ),
        ("/policies/reload".to_owned(), vec![("csrf", "")]),
    ] {
        let (status, _) = post_for_location(&app, &path, &form, Some(&viewer)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        store.get_alert(discarded).await.unwrap().unwrap().ticket_id,
        None
    );
    assert_eq!(
        store
            .get_notice(notice_id)
            .await
            .unwrap()
            .unwrap()
            .ticket_id,
        None
    );
}

#[tokio::test]
async fn a_stored_token_with_the_read_scope_opens_the_pages_and_one_without_it_does_not() {
    use base64::Engine as _;
    use heron_core::access::{AuditEntry, AuditSource, NewApiToken, Scope, TokenRef, token_hash};
    let auth = AuthMode::Tokens(AuthConfig {
        tokens: vec!["configured".into()],
        ..AuthConfig::default()
    });
    let (app, store, _) = app_and_store(auth).await;
    let audit = || AuditEntry {
        id: heron_core::AuditId::new(),
        at: Utc::now(),
        actor: "test".into(),
        source: AuditSource::Cli,
        remote: None,
        action: "token.create".into(),
        ticket_id: None,
        target: None,
        details: serde_json::json!({}),
    };
    for (name, secret, scopes) in [
        ("reader", "heron_reader-secret", vec![Scope::Read]),
        ("sender", "heron_sender-secret", vec![Scope::Ingest]),
    ] {
        store
            .create_api_token(
                NewApiToken {
                    id: TokenId::new(),
                    name: name.into(),
                    hash: token_hash(secret),
                    scopes,
                    created_at: Utc::now(),
                    expires_at: None,
                },
                audit(),
            )
            .await
            .unwrap();
    }
    let basic = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x:{password}"))
        )
    };
    let (status, html) = get(&app, "/", Some(&basic("heron_reader-secret"))).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(
        get(&app, "/", Some(&basic("heron_sender-secret"))).await.0,
        StatusCode::UNAUTHORIZED,
        "an ingest-only token cannot read the pages"
    );
    store
        .revoke_api_token(&TokenRef::Name("reader".into()), Utc::now(), audit())
        .await
        .unwrap();
    assert_eq!(
        get(&app, "/", Some(&basic("heron_reader-secret"))).await.0,
        StatusCode::UNAUTHORIZED,
        "a revoked token no longer opens them"
    );
}
