//! `POST /v1/pipelines/{id}/events`: parse, validate per event, append
//! durably (one store step that also checks the queue bound), answer.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

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

/// Splits a body into event values; an item that is not valid JSON becomes an
/// `Err` at its index. A body with nothing parseable is a 400.
fn split(format: Format, body: &[u8]) -> ApiResult<Vec<Result<Value, String>>> {
    match format {
        Format::Json => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e} (line {}, column {})", e.line(), e.column())))?;
            match value {
                Value::Array(items) => Ok(items.into_iter().map(Ok).collect()),
                object @ Value::Object(_) => Ok(vec![Ok(object)]),
                _ => Err(ApiError::bad_request("invalid_json", "the body must be an event object, an array of event objects, or NDJSON")),
            }
        }
        Format::NdJson => {
            let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request("invalid_ndjson", format!("the body is not UTF-8: {e}")))?;
            let mut items = Vec::new();
            let mut first_error = None;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(value) => items.push(Ok(value)),
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
    let mut ids: Vec<Value> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(|value| parse_ingest(value, now, || uuid::Uuid::now_v7().to_string())) {
            Ok(event) => {
                ids.push(Value::String(event.id.clone()));
                events.push(QueuedEvent::new(event));
            }
            Err(error) => {
                ids.push(Value::Null);
                errors.push(json!({"index": index, "error": error}));
            }
        }
    }
    let (accepted, rejected) = (events.len() as u64, errors.len() as u64);
    match state.engine.store.enqueue(&pipeline, &events, rejected, max_depth).await? {
        Enqueued::Accepted { .. } => {
            crate::metrics::ingest(&pipeline, accepted, rejected, false);
            let body = json!({"accepted": accepted, "rejected": rejected, "ids": ids, "errors": errors});
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Enqueued::Full { depth } => {
            crate::metrics::ingest(&pipeline, 0, 0, true);
            Err(ApiError::Backpressure { queue_depth: depth, retry_after_s: BACKPRESSURE_RETRY_AFTER_S })
        }
    }
}
