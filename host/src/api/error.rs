//! The API's one error type: every failure answers JSON
//! `{"error": "<code>", "message": "<text>"}` with API.md's status code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::EngineError;
use crate::internal_events::{emit, ApiInternalError};
use crate::store::StoreError;

/// Every way a request fails, by status code.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a machine code (`invalid_json`, `invalid_spec`, `invalid_plugin`, ...).
    BadRequest { code: &'static str, message: String },
    Unauthorized(String),
    Forbidden(String),
    /// 403 in open mode: the `Host` is not a loopback name.
    ForbiddenHost(String),
    /// 403 in open mode: a change from another site's page.
    CrossOrigin(String),
    NotFound(String),
    Conflict(String),
    /// The limit, and the flag that sets it.
    PayloadTooLarge(u64, &'static str),
    /// 413 `too_many_events`: more events or bytes than the pipeline can
    /// ever queue (no `Retry-After`: retrying cannot help).
    TooManyEvents(String),
    UnsupportedMediaType(String),
    /// 429: the pipeline's queue is at its bound (events or bytes).
    Backpressure { queue_depth: u64, queue_bytes: u64, retry_after_s: u64 },
    /// 429: a sink's lag is past the pipeline's `max_sink_lag`.
    SinkBackpressure { sink: String, lag: u64, max_sink_lag: u64, retry_after_s: u64 },
    /// 503: the store is unreachable.
    Unavailable(String),
    /// 503 on ingest: the store did not answer the enqueue in time, and
    /// may still run it (a Redis that was slow, not gone): whether the
    /// events were queued is unknown, so the message says to retry with the
    /// same `Idempotency-Key`.
    OutcomeUnknown(String),
    /// 422 `idempotency_key_reused`: the key was used for another body.
    IdempotencyKeyReused(String),
    /// 503 `overloaded`: this process holds as much as it may at once
    /// (request bytes in flight, live feeds); retry shortly.
    Overloaded(String),
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            e @ StoreError::InvalidCursor(_) => {
                ApiError::bad_request("invalid_cursor", format!("{e}; pass back a `next_cursor` exactly as it was answered"))
            }
            StoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::NotFound(m),
            EngineError::InvalidSpec(m) => ApiError::bad_request("invalid_spec", m),
            EngineError::InvalidQuery(m) => ApiError::bad_request("invalid_query", m),
            EngineError::InvalidPlugin(m) => ApiError::bad_request("invalid_plugin", m),
            EngineError::InUse(m) => ApiError::Conflict(m),
            EngineError::Unreadable(m) => ApiError::Internal(m),
            EngineError::Store(e) => e.into(),
        }
    }
}

/// Seconds a client should wait after a 503.
const UNAVAILABLE_RETRY_AFTER_S: u64 = 2;
/// Seconds a client should wait after an `overloaded` 503.
const OVERLOADED_RETRY_AFTER_S: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body, retry_after) = match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, json!({"error": code, "message": message}), None),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({"error": "unauthorized", "message": m}), None),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({"error": "forbidden", "message": m}), None),
            ApiError::ForbiddenHost(m) => (StatusCode::FORBIDDEN, json!({"error": "forbidden_host", "message": m}), None),
            ApiError::CrossOrigin(m) => (StatusCode::FORBIDDEN, json!({"error": "cross_origin", "message": m}), None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({"error": "not_found", "message": m}), None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({"error": "conflict", "message": m}), None),
            ApiError::PayloadTooLarge(limit, flag) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "payload_too_large", "message": format!("the body is over the limit of {limit} bytes ({flag})")}),
                None,
            ),
            ApiError::TooManyEvents(m) => (StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "too_many_events", "message": m}), None),
            ApiError::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({"error": "unsupported_media_type", "message": m}), None)
            }
            ApiError::Backpressure { queue_depth, queue_bytes, retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "backpressure", "message": format!("the pipeline's queue is full ({queue_depth} events, {queue_bytes} bytes queued; see max_queue_depth and max_queue_bytes); nothing from this request was queued, retry after {retry_after_s} s"),
                       "queue_depth": queue_depth, "queue_bytes": queue_bytes, "retry_after_s": retry_after_s}),
                Some(retry_after_s),
            ),
            ApiError::SinkBackpressure { sink, lag, max_sink_lag, retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "backpressure", "message": format!("sink `{sink}` has {lag} events waiting, past the pipeline's max_sink_lag of {max_sink_lag}; nothing from this request was queued, retry after {retry_after_s} s"),
                       "sink": sink, "sink_lag": lag, "retry_after_s": retry_after_s}),
                Some(retry_after_s),
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store_unavailable", "message": format!("{m}; nothing was written, retry later"), "retry_after_s": UNAVAILABLE_RETRY_AFTER_S}),
                Some(UNAVAILABLE_RETRY_AFTER_S),
            ),
            ApiError::OutcomeUnknown(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "store_unavailable", "message": format!(
                    "{m}; the outcome is unknown: the events may or may not have been queued. Retry with the same \
                     Idempotency-Key to have them queued exactly once (a retry without one may queue them twice)"),
                    "retry_after_s": UNAVAILABLE_RETRY_AFTER_S}),
                Some(UNAVAILABLE_RETRY_AFTER_S),
            ),
            ApiError::IdempotencyKeyReused(m) => {
                (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": "idempotency_key_reused", "message": m}), None)
            }
            ApiError::Overloaded(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "overloaded", "message": m, "retry_after_s": OVERLOADED_RETRY_AFTER_S}),
                Some(OVERLOADED_RETRY_AFTER_S),
            ),
            ApiError::Internal(m) => {
                emit(ApiInternalError { message: &m });
                (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "internal", "message": m}), None)
            }
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A handler's answer.
pub type ApiResult<T> = Result<T, ApiError>;
