//! `POST /v1/pipelines/{id}/events`: split the body into events, validate
//! each, append the valid ones durably (one store step that also checks the
//! queue bound), answer.

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
    errors: Vec<ItemError>,
}

async fn post_events(State(state): State<Arc<AppState>>, Path(pipeline): Path<String>, headers: HeaderMap, Body(body): Body) -> ApiResult<Response> {
    // The body is read before any refusal, so the client's keep-alive connection stays usable.
    let target = state.engine.ingest_target(&pipeline).await?;
    let items = split::split(split::format_of(&headers)?, &body)?;
    let now = now_ms();
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    // Per item: the index of its event in `events`, or `None` if refused.
    let mut slots = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(|text| parse_ingest(text, now, || new_event_id(now))) {
            Ok(event) => {
                slots.push(Some(events.len()));
                events.push(QueuedEvent::new(event));
            }
            Err(error) => {
                slots.push(None);
                errors.push(ItemError { index, error });
            }
        }
    }
    let (accepted, rejected) = (events.len() as u64, errors.len() as u64);
    match state.engine.enqueue(&pipeline, &target, &events, rejected).await? {
        Enqueued::Accepted { .. } => {
            let ids = slots.iter().map(|slot| slot.map(|i| events[i].event.id.as_str())).collect();
            let body = Accepted { accepted, rejected, ids, errors };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Enqueued::Full { depth } => Err(ApiError::Backpressure { queue_depth: depth, retry_after_s: BACKPRESSURE_RETRY_AFTER_S }),
    }
}
