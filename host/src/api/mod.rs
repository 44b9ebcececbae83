//! The HTTP API of API.md: one router per resource, one error type, and
//! auth by router (the admin routes, the ingest route and the public ones
//! each sit behind their own layer).
//!
//! - [`ingest`]: `POST /v1/pipelines/{id}/events`
//! - [`plugins`]: `/v1/plugins...`
//! - [`pipelines`]: `/v1/pipelines...` with the DLQ, outputs and metrics
//! - [`tables`]: `/v1/tables/{name}`
//! - [`windows`]: `/v1/pipelines/{id}/windows/...` and `/alerts`
//! - [`dashboard`]: `GET /`, the live dashboard page
//! - [`monitoring`]: `/healthz`, `/readyz`, `/metrics`
//!
//! Handlers reach everything through [`Engine`]'s methods. May use:
//! `domain`, `internal_events`, `engine`, `window` (query types), `runtime`
//! (names only).

pub mod auth;
mod body;
pub mod dashboard;
pub mod error;
pub mod ingest;
pub mod monitoring;
pub mod pipelines;
pub mod plugins;
pub mod tables;
pub mod windows;

use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::Engine;
use auth::{Access, Role, Tokens};
pub use body::Body;
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub max_body_bytes: u64,
    pub prometheus: PrometheusHandle,
}

/// The whole API: public routes, the ingest route behind ingest (or admin)
/// tokens, everything else behind the admin token (the live feed also
/// taking it as `?access_token=`).
pub fn router(state: Arc<AppState>, tokens: Tokens) -> Router {
    let tokens = Arc::new(tokens);
    let layer = |role: Role| axum::middleware::from_fn_with_state(Access::new(tokens.clone(), role), auth::require);
    let admin = Router::new()
        .merge(plugins::router())
        .merge(pipelines::router())
        .merge(tables::router())
        .merge(windows::router())
        .merge(monitoring::admin_router())
        .route_layer(layer(Role::Admin));
    Router::new()
        .merge(monitoring::public_router())
        .merge(dashboard::router())
        .merge(ingest::router().route_layer(layer(Role::Ingest)))
        .merge(windows::live_router().route_layer(layer(Role::AdminOrQueryToken)))
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("no such endpoint (see API.md)".into()) })
        .with_state(state)
}
