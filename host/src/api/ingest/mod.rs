//! `POST /v1/pipelines/{id}/events`: split the body into events, validate
//! each, append the valid ones durably (one store step that also checks the
//! queue bound, drops ids seen within the dedup window and keeps the answer
//! for the request's `Idempotency-Key`), answer.

mod checks;
pub mod parse;
/// Public so the ingest fuzz test (`host/tests/ingest_fuzz.rs`) can compare
/// it with serde_json; the route is its only caller in the crate.
pub mod split;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, ErrorBody, NoSuchPipeline, Unavailable};
use super::extract::Path;
use super::{AppState, Body};
use crate::domain::{now_ms, EnqueueOutcome, Enqueued, QueuedEvent};
use crate::engine::idempotency::IdempotencyKey;
use crate::engine::EngineError;
use crate::store::StoreError;
use parse::parse_ingest;

/// The request header that makes a retry safe (API.md v1.1).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Seconds a producer should wait after a 429.
const BACKPRESSURE_RETRY_AFTER_S: u64 = 1;

/// The ingest route (behind the ingest tokens' layer).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(post_events))
}

/// A new event id: a UUIDv7 (time-ordered) from the thread's fast random
/// generator (`Uuid::now_v7` asks the kernel for randomness on every call).
fn new_event_id(now_ms: i64) -> String {
    let random: [u8; 10] = rand::random();
    uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &random).into_uuid().to_string()
}

/// At most this many refused events are listed in an answer (API.md v1.1);
/// the rest are counted in `errors_truncated`.
const MAX_LISTED_ERRORS: usize = 1000;

/// One refused event of a request, in the 202 answer.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
struct ItemError {
    /// Its place in the request, from 0.
    index: usize,
    /// Why it was refused.
    error: String,
}

/// One event as clients send it (API.md "Ingest"); parsed by
/// [`parse::parse_ingest`], which this describes.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IngestEvent)]
#[allow(dead_code)]
struct IngestEventDoc {
    /// Required, not empty.
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    kind: String,
    /// 1 to 256 characters; assigned (a UUIDv7) when absent.
    id: Option<String>,
    source: Option<String>,
    /// ms since the epoch (an integer ≥ 0) or RFC 3339 text; the receive time when absent.
    #[schema(value_type = Option<Value>)]
    timestamp: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// The ingest body as JSON: one event object or an array of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
#[schema(as = IngestBody)]
enum IngestBodyDoc {
    One(IngestEventDoc),
    Many(Vec<IngestEventDoc>),
}

/// The 202 answer (API.md). Also what an idempotency record keeps (as
/// computed before the store step: `duplicates` 0, every valid event
/// counted in `accepted`), read back to replay it.
#[derive(Serialize, Deserialize, ToSchema)]
struct Accepted<'a> {
    /// Events queued.
    accepted: u64,
    /// Events refused (listed in `errors`).
    rejected: u64,
    /// One per event sent: its id, `null` for a refused one.
    #[schema(value_type = Vec<Option<String>>)]
    ids: Vec<Option<Cow<'a, str>>>,
    /// The first 1,000 refused events.
    #[schema(value_type = Vec<ItemError>)]
    errors: Cow<'a, [ItemError]>,
    #[serde(default, skip_serializing_if = "is_zero")]
    errors_truncated: u64,
    /// Events not queued because their id was accepted within the
    /// pipeline's `dedup_window_ms` (API.md v1.1).
    #[serde(default, skip_serializing_if = "is_zero")]
    duplicates: u64,
}

impl Accepted<'_> {
    /// This answer once the store step dropped `duplicates` of its events.
    fn without_duplicates(mut self, duplicates: u64) -> Self {
        self.accepted = self.accepted.saturating_sub(duplicates);
        self.duplicates += duplicates;
        self
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The request's `Idempotency-Key`, checked (400 when it is not 1 to 128
/// printable ASCII characters, or given twice).
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<IdempotencyKey>> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request("invalid_idempotency_key", "the Idempotency-Key header is given more than once; send it once"));
    }
    IdempotencyKey::parse(value.as_bytes()).map(Some).map_err(|m| ApiError::bad_request("invalid_idempotency_key", m))
}

/// A store that does not answer the enqueue in time may still run it
/// later: the outcome is unknown, and only a retry with the same key is safe.
fn enqueue_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Store(StoreError::Unavailable(m)) => ApiError::OutcomeUnknown(m),
        other => other.into(),
    }
}

#[utoipa::path(post, path = "/v1/pipelines/{id}/events", operation_id = "ingest_events", tag = "ingest", summary = "Send events",
    params(
        ("id" = String, Path, description = "The pipeline's id"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[ -~]+$", description = "1 to 128 printable ASCII characters: a retry with the same key and body gets the first answer again and queues nothing"),
    ),
    request_body(description = "One event object, an array of them, or NDJSON (one event per line)", content(
        (IngestBodyDoc = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 202, description = "The valid events are durably queued; each invalid one is listed with its index and reason", body = Accepted),
        (status = 400, description = "`invalid_json` / `invalid_ndjson` (the body has no event at all), `invalid_idempotency_key`", body = ErrorBody),
        NoSuchPipeline,
        (status = 413, description = "`payload_too_large` (over `--max-body-bytes`) or `too_many_events` (more than the pipeline can ever queue; no `Retry-After`)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key was used for another body", body = ErrorBody),
        (status = 429, description = "`backpressure`: the queue is at its bound, or a sink's lag past `max_sink_lag` (`sink` names it); nothing was queued", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        Unavailable,
    ))]
async fn post_events(State(state): State<Arc<AppState>>, Path(pipeline): Path<String>, headers: HeaderMap, Body(body, _permit): Body) -> ApiResult<Response> {
    // The body is read before any refusal, so the client's keep-alive connection stays usable.
    let target = state.engine.ingest_target(&pipeline).await?;
    let key = idempotency_key(&headers)?;
    // A slow sink pushes back like a full queue (checked first: nothing is parsed or queued).
    if let Some((sink, lag)) = target.sink_over_lag() {
        return Err(ApiError::SinkBackpressure { sink, lag, max_sink_lag: target.max_sink_lag(), retry_after_s: BACKPRESSURE_RETRY_AFTER_S });
    }
    let never_fits = |what: String| {
        ApiError::TooManyEvents(format!(
            "this request has {what}; pipeline `{pipeline}` queues at most {} events (max_queue_depth) and {} bytes (max_queue_bytes), \
             so it can never be accepted: split it",
            target.max_depth(),
            target.max_bytes()
        ))
    };
    if body.len() as u64 > target.max_bytes() {
        return Err(never_fits(format!("{} bytes", body.len())));
    }
    let max_items = usize::try_from(target.max_depth()).unwrap_or(usize::MAX);
    let items = split::split(split::format_of(&headers)?, &body, max_items, |max| never_fits(format!("more than {max} events")))?;
    let now = now_ms();
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    // Per item: the index of its event in `events`, or `None` if refused.
    let mut slots = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let checked = item.and_then(|text| parse_ingest(text, now, || new_event_id(now))).and_then(|event| {
            if checks::nests_deeper_than(&event.data, checks::MAX_DATA_DEPTH) {
                Err(checks::too_deep())
            } else if event.timestamp.saturating_sub(now) > target.max_future_ms() as i64 {
                Err(checks::too_far_ahead(event.timestamp, now, target.max_future_ms()))
            } else {
                Ok(event)
            }
        });
        match checked {
            Ok(event) => {
                slots.push(Some(events.len()));
                events.push(QueuedEvent::new(event));
            }
            Err(error) => {
                slots.push(None);
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(ItemError { index, error });
                }
            }
        }
    }
    let accepted = events.len() as u64;
    let rejected = (slots.len() - events.len()) as u64;
    let ids = slots.iter().map(|slot| slot.map(|i| Cow::Borrowed(events[i].event.id.as_str()))).collect();
    let errors_truncated = rejected - errors.len() as u64;
    let answer = Accepted { accepted, rejected, ids, errors: Cow::Borrowed(&errors), errors_truncated, duplicates: 0 };
    let record = match &key {
        Some(key) => Some(key.record(&body, serde_json::to_string(&answer).map_err(|e| ApiError::Internal(format!("cannot serialize the answer: {e}")))?)),
        None => None,
    };
    match state.engine.enqueue(&pipeline, &target, &events, rejected, record).await.map_err(enqueue_error)? {
        EnqueueOutcome::Ran { enqueued: Enqueued::Accepted { .. }, duplicates } => {
            Ok((StatusCode::ACCEPTED, Json(answer.without_duplicates(duplicates))).into_response())
        }
        EnqueueOutcome::Ran { enqueued: Enqueued::Full { depth, bytes }, .. } => {
            Err(ApiError::Backpressure { queue_depth: depth, queue_bytes: bytes, retry_after_s: BACKPRESSURE_RETRY_AFTER_S })
        }
        EnqueueOutcome::Replayed { answer, duplicates } => {
            let stored: Accepted = serde_json::from_str(&answer)
                .map_err(|e| ApiError::Internal(format!("the stored answer of this Idempotency-Key cannot be read: {e}")))?;
            Ok((StatusCode::ACCEPTED, Json(stored.without_duplicates(duplicates))).into_response())
        }
        EnqueueOutcome::KeyReused => Err(ApiError::IdempotencyKeyReused(format!(
            "this Idempotency-Key was used within the last 24 h on pipeline `{pipeline}` for a request with another body; \
             nothing was queued. Use a new key for new events"
        ))),
    }
}
