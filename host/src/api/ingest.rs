//! `POST /v1/pipelines/{id}/events`: parse, validate per event, append
//! durably (one store step that also checks the queue bound), answer.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;

use super::error::{ApiError, ApiResult};
use super::{read_body, AppState};
use crate::event::{now_ms, parse_ingest};
use crate::store::{Enqueued, QueuedEvent};

/// Seconds a producer should wait after a 429.
const BACKPRESSURE_RETRY_AFTER_S: u64 = 1;

enum Format {
    Json,
    NdJson,
}

fn format_of(request: &Request) -> ApiResult<Format> {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else { return Ok(Format::Json) };
    let content_type = content_type.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "application/json" | "" => Ok(Format::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::NdJson),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not supported: send application/json (an object or an array of objects) or application/x-ndjson"
        ))),
    }
}

/// Splits a body into the JSON text of each event; an NDJSON line that is
/// not valid JSON becomes an `Err` at its index. A body with nothing
/// parseable is a 400. Nothing is parsed into a tree: each item is checked
/// and converted by [`parse_ingest`].
fn split(format: Format, body: &[u8]) -> ApiResult<Vec<Result<&str, String>>> {
    let text = std::str::from_utf8(body).map_err(|e| match format {
        Format::Json => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: it is not UTF-8 ({e})")),
        Format::NdJson => ApiError::bad_request("invalid_ndjson", format!("the body is not UTF-8: {e}")),
    })?;
    match format {
        Format::Json => {
            let invalid = |e: serde_json::Error| {
                ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e} (line {}, column {})", e.line(), e.column()))
            };
            match text.trim_start().as_bytes().first() {
                Some(b'[') => {
                    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid)?;
                    Ok(items.into_iter().map(|item| Ok(item.get())).collect())
                }
                Some(b'{') => {
                    let object: &RawValue = serde_json::from_str(text).map_err(invalid)?;
                    Ok(vec![Ok(object.get())])
                }
                _ => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Err(e) => Err(invalid(e)),
                    Ok(_) => Err(ApiError::bad_request("invalid_json", "the body must be an event object, an array of event objects, or NDJSON")),
                },
            }
        }
        Format::NdJson => {
            let mut items = Vec::new();
            let mut first_error = None;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<&RawValue>(line) {
                    Ok(value) => items.push(Ok(value.get())),
                    Err(e) => {
                        let message = format!("line {} is not valid JSON: {e}", n + 1);
                        first_error.get_or_insert_with(|| message.clone());
                        items.push(Err(message));
                    }
                }
            }
            if items.is_empty() {
                return Err(ApiError::bad_request("invalid_ndjson", "the body has no events"));
            }
            if items.iter().all(|i| i.is_err()) {
                return Err(ApiError::bad_request("invalid_ndjson", format!("the body is not NDJSON: {}", first_error.unwrap_or_default())));
            }
            Ok(items)
        }
    }
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

pub async fn post_events(State(state): State<Arc<AppState>>, Path(pipeline): Path<String>, request: Request) -> ApiResult<Response> {
    // Read the body before any refusal, so the client's keep-alive connection stays usable.
    let format = format_of(&request);
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    let max_depth = match state.engine.pipeline(&pipeline) {
        Some(p) => p.spec.max_queue_depth,
        None => {
            let spec = state.engine.store.get_pipeline(&pipeline).await?;
            let spec = spec.ok_or_else(|| ApiError::NotFound(format!("no pipeline `{pipeline}`")))?;
            serde_json::from_str::<crate::engine::spec::PipelineSpec>(&spec).map(|s| s.max_queue_depth).unwrap_or(crate::engine::spec::DEFAULT_MAX_QUEUE_DEPTH)
        }
    };
    let format = format?;
    let items = split(format, &body)?;
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
    match state.engine.store.enqueue(&pipeline, &events, rejected, max_depth).await? {
        Enqueued::Accepted { .. } => {
            crate::metrics::ingest(&pipeline, accepted, rejected, false);
            let ids = slots.iter().map(|slot| slot.map(|i| events[i].event.id.as_str())).collect();
            let body = Accepted { accepted, rejected, ids, errors };
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Enqueued::Full { depth } => {
            crate::metrics::ingest(&pipeline, 0, 0, true);
            Err(ApiError::Backpressure { queue_depth: depth, retry_after_s: BACKPRESSURE_RETRY_AFTER_S })
        }
    }
}
