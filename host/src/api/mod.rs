//! The HTTP API of API.md: one router per resource, one error type.
//!
//! - [`ingest`]: `POST /v1/pipelines/{id}/events`
//! - [`plugins`]: `/v1/plugins...`
//! - [`pipelines`]: `/v1/pipelines...` with the DLQ, outputs and metrics
//! - [`tables`]: `/v1/tables/{name}`
//! - [`windows`]: `/v1/pipelines/{id}/windows/...` and `/alerts`
//! - [`dashboard`]: `GET /`, the live dashboard page
//! - [`monitoring`]: `/healthz`, `/readyz`, `/metrics`

pub mod auth;
pub mod error;
pub mod ingest;
pub mod monitoring;
pub mod pipelines;
pub mod plugins;
pub mod tables;
pub mod windows;
pub mod dashboard;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::Engine;
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub max_body_bytes: u64,
    pub prometheus: PrometheusHandle,
}

/// The whole API, behind the auth layer.
pub fn router(state: Arc<AppState>, tokens: auth::Tokens) -> Router {
    Router::new()
        .merge(plugins::router())
        .merge(pipelines::router())
        .merge(tables::router())
        .merge(windows::router())
        .merge(dashboard::router())
        .merge(monitoring::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint (see API.md)".into()) })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(Arc::new(tokens), auth::require))
}

/// Bytes of an over-limit body still read (and thrown away) so the client
/// gets its 413 on a healthy connection rather than a reset mid-upload.
const DRAIN_AFTER_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads a body up to `limit` bytes; over it is a 413.
pub async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    use axum::body::HttpBody as _;
    let mut body = body;
    // The declared length, if any, sizes the buffer once (within the limit).
    let declared = body.size_hint().lower().min(limit);
    let mut kept = bytes::BytesMut::with_capacity(declared as usize);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request("invalid_body", format!("could not read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen <= limit {
                kept.extend_from_slice(&data);
            } else if seen > limit + DRAIN_AFTER_LIMIT {
                break;
            }
        }
    }
    if seen > limit {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(kept.freeze())
}
