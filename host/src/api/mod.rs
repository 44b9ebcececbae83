//! The HTTP API of API.md: one router per resource, one error type.
//!
//! - [`ingest`]: `POST /v1/pipelines/{id}/events`
//! - [`plugins`]: `/v1/plugins...`
//! - [`pipelines`]: `/v1/pipelines...` with the DLQ, outputs and metrics
//! - [`tables`]: `/v1/tables/{name}`
//! - [`monitoring`]: `/healthz`, `/readyz`, `/metrics`

pub mod auth;
pub mod error;
pub mod ingest;
pub mod monitoring;
pub mod pipelines;
pub mod plugins;
pub mod tables;

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
        .merge(monitoring::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint (see API.md)".into()) })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(Arc::new(tokens), auth::require))
}

/// Reads a body up to `limit` bytes; over it is a 413.
pub async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit as usize).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::bad_request("invalid_body", format!("could not read the body: {e}"))
        }
    })
}
