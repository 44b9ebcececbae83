//! `POST /v1/pipelines/{id}/events`: split the body into events, validate
//! each, append the valid ones durably (one store step that also checks the
//! queue bound), answer.

mod checks;
pub mod parse;
/// Public so the ingest fuzz test (`host/tests/ingest_fuzz.rs`) can compare
/// it with serde_json; the route is its only caller in the crate.
pub mod split;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::{AppState, Body};
use crate::domain::{now_ms, Enqueued, QueuedEvent};
use parse::parse_ingest;

/// Seconds a producer should wait after a 429.
const BACKPRESSURE_RETRY_AFTER_S: u64 = 1;

/// The ingest route (behind the ingest tokens' layer).
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/pipelines/{id}/events", post(post_events))
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
#[derive(Serialize)]
struct ItemError {
    index: usize,
    error: String,
}

/// The 202 answer (API.md).
#[derive(Serialize)]
struct Accepted<'a> {
    accepted: u64,
    rejected: u64,
    ids: Vec<Option<&'a str>>,
    errors: &'a [ItemError],
    #[serde(skip_serializing_if = "is_zero")]
    errors_truncated: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

async fn post_events(State(state): State<Arc<AppState>>, Path(pipeline): Path<String>, headers: HeaderMap, Body(body, _permit): Body) -> ApiResult<Response> {
    // The body is read before any refusal, so the client's keep-alive connection stays usable.
    let target = state.engine.ingest_target(&pipeline).await?;
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
    match state.engine.enqueue(&pipeline, &target, &events, rejected).await? {
        Enqueued::Accepted { .. } => {
            let ids = slots.iter().map(|slot| slot.map(|i| events[i].event.id.as_str())).collect();
            let errors_truncated = rejected as usize - errors.len();
            let body = Accepted { accepted, rejected, ids, errors: &errors, errors_truncated };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Enqueued::Full { depth, bytes } => Err(ApiError::Backpressure { queue_depth: depth, queue_bytes: bytes, retry_after_s: BACKPRESSURE_RETRY_AFTER_S }),
    }
}
