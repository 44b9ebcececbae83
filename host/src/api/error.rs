//! The API's one error type: every failure answers JSON
//! `{"error": "<code>", "message": "<text>"}` with API.md's status code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

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
    /// 405: the path exists, the method does not.
    MethodNotAllowed(String),
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

/// Every error answer's body (API.md: `{"error": "<machine code>",
/// "message": "<human text>", ...}`), typed so that the OpenAPI document
/// describes exactly what [`ApiError`] answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The machine code: `invalid_json`, `invalid_spec`, `unauthorized`,
    /// `not_found`, `backpressure`, `store_unavailable`, ... (README, "HTTP API").
    pub error: &'static str,
    /// What went wrong, for a human.
    pub message: String,
    /// 429 `backpressure` (queue full): events accepted and not finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// 429 `backpressure` (queue full): the stored bytes of those events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_bytes: Option<u64>,
    /// 429 `backpressure` (a sink's lag): the sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// 429 `backpressure` (a sink's lag): the events it has waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink_lag: Option<u64>,
    /// 429 and 503: seconds to wait before retrying (also `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

impl ErrorBody {
    /// A body with only the code and the message.
    pub fn new(error: &'static str, message: impl Into<String>) -> Self {
        ErrorBody { error, message: message.into(), queue_depth: None, queue_bytes: None, sink: None, sink_lag: None, retry_after_s: None }
    }

    /// The same body telling the client when to retry.
    fn retry_after(self, seconds: u64) -> Self {
        ErrorBody { retry_after_s: Some(seconds), ..self }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, ErrorBody::new(code, message)),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, ErrorBody::new("unauthorized", m)),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, ErrorBody::new("forbidden", m)),
            ApiError::ForbiddenHost(m) => (StatusCode::FORBIDDEN, ErrorBody::new("forbidden_host", m)),
            ApiError::CrossOrigin(m) => (StatusCode::FORBIDDEN, ErrorBody::new("cross_origin", m)),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, ErrorBody::new("not_found", m)),
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, ErrorBody::new("method_not_allowed", m)),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, ErrorBody::new("conflict", m)),
            ApiError::PayloadTooLarge(limit, flag) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody::new("payload_too_large", format!("the body is over the limit of {limit} bytes ({flag})")),
            ),
            ApiError::TooManyEvents(m) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorBody::new("too_many_events", m)),
            ApiError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorBody::new("unsupported_media_type", m)),
            ApiError::Backpressure { queue_depth, queue_bytes, retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody {
                    queue_depth: Some(queue_depth),
                    queue_bytes: Some(queue_bytes),
                    ..ErrorBody::new("backpressure", format!("the pipeline's queue is full ({queue_depth} events, {queue_bytes} bytes queued; see max_queue_depth and max_queue_bytes); nothing from this request was queued, retry after {retry_after_s} s"))
                }
                .retry_after(retry_after_s),
            ),
            ApiError::SinkBackpressure { sink, lag, max_sink_lag, retry_after_s } => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody {
                    message: format!("sink `{sink}` has {lag} events waiting, past the pipeline's max_sink_lag of {max_sink_lag}; nothing from this request was queued, retry after {retry_after_s} s"),
                    sink: Some(sink),
                    sink_lag: Some(lag),
                    ..ErrorBody::new("backpressure", "")
                }
                .retry_after(retry_after_s),
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new("store_unavailable", format!("{m}; nothing was written, retry later")).retry_after(UNAVAILABLE_RETRY_AFTER_S),
            ),
            ApiError::OutcomeUnknown(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new("store_unavailable", format!(
                    "{m}; the outcome is unknown: the events may or may not have been queued. Retry with the same \
                     Idempotency-Key to have them queued exactly once (a retry without one may queue them twice)"))
                .retry_after(UNAVAILABLE_RETRY_AFTER_S),
            ),
            ApiError::IdempotencyKeyReused(m) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorBody::new("idempotency_key_reused", m)),
            ApiError::Overloaded(m) => (StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new("overloaded", m).retry_after(OVERLOADED_RETRY_AFTER_S)),
            ApiError::Internal(m) => {
                emit(ApiInternalError { message: &m });
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::new("internal", m))
            }
        };
        let retry_after = body.retry_after_s;
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The 503 any route that reads the store or a request body may answer
/// (`store_unavailable`, or `overloaded` when the process holds its bound
/// of bytes in flight or live feeds), for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "`store_unavailable` (the store did not answer) or `overloaded` (the process holds its bound of request bytes in flight or of live feeds); retry after `Retry-After` seconds",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
#[allow(dead_code)] // Never built: it only describes the answer.
pub struct Unavailable(ErrorBody);

/// The 404 of a route under `/v1/pipelines/{id}` whose pipeline does not exist.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "`not_found`: no such pipeline")]
#[allow(dead_code)] // Never built: it only describes the answer.
pub struct NoSuchPipeline(ErrorBody);

/// The 413 of a route that reads a JSON body ([`super::Body`]).
#[derive(utoipa::IntoResponses)]
#[response(status = 413, description = "`payload_too_large`: over `--max-body-bytes`")]
#[allow(dead_code)] // Never built: it only describes the answer.
pub struct BodyTooLarge(ErrorBody);

/// The 400 of a paged list ([`super::pipelines::PageQuery`]).
#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "`invalid_limit`, `invalid_cursor` or `invalid_query`")]
#[allow(dead_code)] // Never built: it only describes the answer.
pub struct BadPage(ErrorBody);

/// A handler's answer.
pub type ApiResult<T> = Result<T, ApiError>;
