//! Alert webhooks: `/hooks/alert/{raw,pubsub,sns}/{schema}`.
//!
//! Every check (token, schema name, media type, size, JSON shape) happens before anything is
//! stored; a batch is validated whole, then stored in one transaction.
//!
//! Invariant: intake acknowledges only what the worker can process. An event body is parsed
//! with the same parser and limits the worker uses (nesting depth, number range, valid
//! UTF-16 escapes), so nothing answered 202 can fail later for being unparseable; and no
//! stored text carries U+0000, which PostgreSQL cannot hold in `text` or `jsonb`.
//!
//! Idempotency keys are namespaced by how the event arrived (`raw:`, `ndjson:`, `pubsub:`,
//! `sns:`), so a Pub/Sub message id can never collide with a sender's own key.

use crate::sns::SnsEnvelope;
use crate::state::ServerState;
use crate::{ApiError, error::ErrorBody};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use chrono::Utc;
use heron_core::{Accepted, EventId, EventSource, NewEvent, SchemaName};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY: usize = 256;
/// Events per NDJSON request; a larger batch is 413 (split it).
pub const MAX_BATCH_EVENTS: usize = 1_000;

pub(crate) fn routes(_state: &ServerState) -> OpenApiRouter<ServerState> {
    OpenApiRouter::new()
        .routes(routes!(raw))
        .routes(routes!(pubsub))
        .routes(routes!(sns))
}

/// The answer to one accepted delivery.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AcceptedBody {
    event_id: EventId,
    /// Present and true when this was a re-delivery of an already stored event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

impl From<Accepted> for AcceptedBody {
    fn from(a: Accepted) -> Self {
        Self {
            event_id: a.event_id,
            duplicate: a.duplicate,
        }
    }
}

/// The answer to an NDJSON batch: one entry per line, in order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchAcceptedBody {
    count: usize,
    events: Vec<AcceptedBody>,
}

enum MediaType {
    Json,
    Ndjson,
}

fn media_type(headers: &HeaderMap) -> Result<MediaType, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // Many senders omit it; the body must still parse as JSON.
        return Ok(MediaType::Json);
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/json" => Ok(MediaType::Json),
        e if e.ends_with("+json") => Ok(MediaType::Json),
        "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" => {
            Ok(MediaType::Ndjson)
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not JSON; send application/json (or application/x-ndjson for a batch)"
        ))),
    }
}

async fn read_body(
    state: &ServerState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = state.inner.settings.max_body_bytes;
    let too_large =
        || ApiError::PayloadTooLarge(format!("the body is larger than the {limit}-byte limit"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}

/// Parses one JSON object, with the parse position in the error.
fn parse_object(bytes: &[u8], what: &str) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidJson(format!("{what} is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(format!(
            "{what} must be a JSON object, got {}",
            json_kind(&value)
        )));
    }
    Ok(value)
}

/// Checks that `bytes` hold one JSON object the worker will be able to process: parsed as the
/// worker parses it, and free of U+0000. Errors carry serde's line and column.
fn validate_object(bytes: &[u8], what: &str) -> Result<(), ApiError> {
    let value = parse_object(bytes, what)?;
    reject_nul(&value, what)
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`; refusing it here keeps both backends
/// answering the same way.
fn reject_nul(value: &Value, what: &str) -> Result<(), ApiError> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(value) {
        return Err(ApiError::BadRequest(format!(
            "{what} contains the character U+0000, which cannot be stored"
        )));
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn schema_of(raw: &str) -> Result<SchemaName, ApiError> {
    SchemaName::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be printable ASCII".into()))?
        .trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

fn new_event(
    schema: &SchemaName,
    source: EventSource,
    body: String,
    metadata: Value,
    idempotency_key: Option<String>,
) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        schema: schema.clone(),
        source,
        body,
        metadata,
        idempotency_key,
        received_at: Utc::now(),
    }
}

type Acknowledged = (StatusCode, Json<Value>);

fn acknowledged(body: impl Serialize) -> Result<Acknowledged, ApiError> {
    let value = serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(value)))
}

/// Ingest a raw JSON alert (or an NDJSON batch, one event per line).
#[utoipa::path(
    post,
    path = "/hooks/alert/raw/{schema}",
    tag = "webhooks",
    params(
        ("schema" = String, Path, description = "Selects `data.ingest.<schema>`; `[a-z0-9][a-z0-9_.-]{0,63}`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Re-deliveries with the same key are acknowledged once"),
    ),
    request_body(content = Object, description = "The product's alert as a JSON object", content_type = "application/json"),
    responses(
        (status = 202, description = "Stored; processing follows", body = AcceptedBody),
        (status = 400, description = "Invalid JSON, not an object, or bad schema name", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn raw(
    State(state): State<ServerState>,
    Path(schema): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Acknowledged, ApiError> {
    let schema = schema_of(&schema)?;
    let media = media_type(&headers)?;
    let key = idempotency_key(&headers)?;
    let bytes = read_body(&state, &headers, body).await?;
    match media {
        MediaType::Json => {
            validate_object(&bytes, "the body")?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::InvalidJson("the body is not UTF-8".into()))?;
            let key = key.map(|k| format!("raw:{k}"));
            let event = new_event(&schema, EventSource::Raw, text, json!({}), key);
            acknowledged(AcceptedBody::from(state.inner.intake.accept(event).await?))
        }
        MediaType::Ndjson => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ApiError::InvalidJson("the body is not UTF-8".into()))?;
            let mut lines = Vec::new();
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                if lines.len() == MAX_BATCH_EVENTS {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "the batch holds more than {MAX_BATCH_EVENTS} events; split it"
                    )));
                }
                validate_object(line.as_bytes(), &format!("line {}", index + 1))?;
                lines.push((index, line));
            }
            if lines.is_empty() {
                return Err(ApiError::BadRequest("the batch holds no events".into()));
            }
            let batch = lines
                .into_iter()
                .map(|(index, line)| {
                    let line_key = key.as_ref().map(|k| format!("ndjson:{k}:{index}"));
                    let metadata = json!({ "batch_line": index + 1 });
                    new_event(
                        &schema,
                        EventSource::Raw,
                        line.to_owned(),
                        metadata,
                        line_key,
                    )
                })
                .collect();
            let events: Vec<AcceptedBody> = state
                .inner
                .intake
                .accept_batch(batch)
                .await?
                .into_iter()
                .map(AcceptedBody::from)
                .collect();
            acknowledged(BatchAcceptedBody {
                count: events.len(),
                events,
            })
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PubsubPush {
    message: PubsubMessage,
    subscription: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PubsubMessage {
    /// Base64 of the alert JSON.
    data: Option<String>,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, Value>>,
    message_id: Option<String>,
    /// Pub/Sub sends both spellings.
    #[serde(rename = "message_id")]
    message_id_snake: Option<String>,
    publish_time: Option<String>,
}

/// Ingest a Google Cloud Pub/Sub push delivery; `message.messageId` is the idempotency key.
#[utoipa::path(
    post,
    path = "/hooks/alert/pubsub/{schema}",
    tag = "webhooks",
    params(("schema" = String, Path, description = "Selects `data.ingest.<schema>`")),
    request_body(content = PubsubPush, description = "Pub/Sub push envelope", content_type = "application/json"),
    responses(
        (status = 202, description = "Stored", body = AcceptedBody),
        (status = 400, description = "Bad envelope, data not base64 JSON object", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn pubsub(
    State(state): State<ServerState>,
    Path(schema): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Acknowledged, ApiError> {
    let schema = schema_of(&schema)?;
    if let MediaType::Ndjson = media_type(&headers)? {
        return Err(ApiError::UnsupportedMediaType(
            "Pub/Sub pushes one JSON envelope".into(),
        ));
    }
    let bytes = read_body(&state, &headers, body).await?;
    let envelope = parse_object(&bytes, "the Pub/Sub envelope")?;
    let push: PubsubPush = serde_json::from_value(envelope)
        .map_err(|e| ApiError::BadRequest(format!("not a Pub/Sub push envelope: {e}")))?;
    let message = push.message;
    let data = message
        .data
        .ok_or_else(|| ApiError::BadRequest("message.data is missing".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::BadRequest(format!("message.data is not base64: {e}")))?;
    validate_object(&decoded, "message.data (decoded)")?;
    let text = String::from_utf8(decoded)
        .map_err(|_| ApiError::InvalidJson("message.data is not UTF-8".into()))?;
    let message_id = message.message_id.or(message.message_id_snake);
    // A message id is unique within its subscription's topic, not across subscriptions.
    let key = match &message_id {
        Some(id) => Some(format!(
            "pubsub:{}:{id}",
            push.subscription.as_deref().unwrap_or("")
        )),
        None => idempotency_key(&headers)?.map(|k| format!("raw:{k}")),
    };
    let metadata = json!({
        "attributes": message.attributes.unwrap_or_default(),
        "message_id": message_id,
        "publish_time": message.publish_time,
        "subscription": push.subscription,
    });
    reject_nul(&metadata, "the Pub/Sub envelope")?;
    let event = new_event(&schema, EventSource::Pubsub, text, metadata, key);
    acknowledged(AcceptedBody::from(state.inner.intake.accept(event).await?))
}

/// Ingest an AWS SNS HTTP(S) notification; the signature is verified and `MessageId` is the
/// idempotency key. Subscription confirmations are followed only when enabled.
#[utoipa::path(
    post,
    path = "/hooks/alert/sns/{schema}",
    tag = "webhooks",
    params(("schema" = String, Path, description = "Selects `data.ingest.<schema>`")),
    request_body(content = SnsEnvelope, description = "SNS message", content_type = "text/plain"),
    responses(
        (status = 200, description = "Subscription confirmed, or unsubscribe acknowledged"),
        (status = 202, description = "Notification stored", body = AcceptedBody),
        (status = 400, description = "Not an SNS message, or Message is not a JSON object", body = ErrorBody),
        (status = 401, description = "Missing or invalid token, or bad signature", body = ErrorBody),
        (status = 403, description = "Subscription confirmation disabled", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn sns(
    State(state): State<ServerState>,
    Path(schema): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Acknowledged, ApiError> {
    let schema = schema_of(&schema)?;
    // SNS posts JSON as text/plain; the content type is not a signal here.
    let bytes = read_body(&state, &headers, body).await?;
    let value = parse_object(&bytes, "the SNS message")?;
    let envelope: SnsEnvelope = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("not an SNS message: {e}")))?;
    state.inner.sns.verify(&envelope).await?;
    match envelope.kind.as_str() {
        "Notification" => {
            validate_object(envelope.message.as_bytes(), "the SNS Message")?;
            let metadata = json!({
                "topic_arn": envelope.topic_arn,
                "subject": envelope.subject,
                "message_id": envelope.message_id,
                "timestamp": envelope.timestamp,
            });
            reject_nul(&metadata, "the SNS message")?;
            let key = Some(format!(
                "sns:{}:{}",
                envelope.topic_arn, envelope.message_id
            ));
            let event = new_event(&schema, EventSource::Sns, envelope.message, metadata, key);
            acknowledged(AcceptedBody::from(state.inner.intake.accept(event).await?))
        }
        "SubscriptionConfirmation" => {
            state.inner.sns.confirm(&envelope).await?;
            Ok((
                StatusCode::OK,
                Json(json!({ "confirmed": true, "topic_arn": envelope.topic_arn })),
            ))
        }
        "UnsubscribeConfirmation" => {
            tracing::info!(topic_arn = %envelope.topic_arn, "SNS unsubscribed this endpoint");
            Ok((StatusCode::OK, Json(json!({ "unsubscribed": true }))))
        }
        other => Err(ApiError::BadRequest(format!(
            "unknown SNS message type {other:?}"
        ))),
    }
}
