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
//! - [`openapi`]: `GET /openapi.json`, the document assembled from the
//!   routes' annotations
//!
//! Every route is added with `utoipa_axum::routes!` from its handler's
//! `#[utoipa::path]` annotation, so the router and the OpenAPI document
//! are built from one list.
//!
//! Handlers reach everything through [`Engine`]'s methods. May use:
//! `domain`, `internal_events`, `engine`, `window` (query types), `runtime`
//! (names only).

pub mod auth;
mod body;
pub mod dashboard;
pub mod error;
mod extract;
pub mod ingest;
pub mod monitoring;
mod open_mode;
pub mod openapi;
pub mod pipelines;
pub mod plugins;
pub mod sinks;
pub mod tables;
pub mod windows;

use std::sync::Arc;

use axum::{Extension, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::Engine;
use auth::{Access, Role, Tokens};
pub use body::{Body, PluginBody};
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub prometheus: PrometheusHandle,
    pub limits: ApiLimits,
    /// Request body bytes being read or handled right now.
    inflight: body::InflightBytes,
    /// Open live feeds (Server-Sent Events) of this process.
    live_feeds: Arc<tokio::sync::Semaphore>,
}

/// What one process takes on at once (`sluice serve` flags).
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest request body (`--max-body-bytes`).
    pub max_body_bytes: u64,
    /// Largest plugin upload (`--max-plugin-bytes`): components of stages
    /// written in Python or JavaScript carry their language's runtime and
    /// weigh 12-20 MB, past the general limit.
    pub max_plugin_bytes: u64,
    /// Request body bytes in flight over all requests
    /// (`--max-inflight-bytes`); beyond it a request is answered 503.
    pub max_inflight_bytes: u64,
    /// Open live feeds (`--max-live-feeds`); beyond it 503.
    pub max_live_feeds: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits { max_body_bytes: 16 << 20, max_plugin_bytes: 64 << 20, max_inflight_bytes: 256 << 20, max_live_feeds: 64 }
    }
}

impl AppState {
    /// The state every handler sees.
    pub fn new(engine: Arc<Engine>, prometheus: PrometheusHandle, limits: ApiLimits) -> Self {
        AppState {
            engine,
            prometheus,
            limits,
            inflight: body::InflightBytes::new(limits.max_inflight_bytes),
            live_feeds: Arc::new(tokio::sync::Semaphore::new(limits.max_live_feeds)),
        }
    }
}

/// The routes of the whole API with their descriptions: public routes,
/// the ingest route behind ingest (or admin) tokens, everything else behind
/// the admin token (the live feed also taking it as `?access_token=`).
/// Each guarded group's description names the tokens its layer takes.
pub fn routes(tokens: Arc<Tokens>) -> OpenApiRouter<Arc<AppState>> {
    let guarded = |routes: OpenApiRouter<Arc<AppState>>, role: Role| {
        let mut routes = routes.route_layer(axum::middleware::from_fn_with_state(Access::new(tokens.clone(), role), auth::require));
        openapi::require_role(routes.get_openapi_mut(), role);
        routes
    };
    let admin = OpenApiRouter::new()
        .merge(plugins::router())
        .merge(pipelines::router())
        .merge(tables::router())
        .merge(sinks::router())
        .merge(windows::router())
        .merge(monitoring::admin_router());
    OpenApiRouter::new()
        .merge(monitoring::public_router())
        .merge(dashboard::router())
        .routes(routes!(openapi::openapi_json))
        .merge(guarded(ingest::router(), Role::Ingest))
        .merge(guarded(windows::live_router(), Role::AdminOrQueryToken))
        .merge(guarded(admin, Role::Admin))
}

/// The OpenAPI document of the API (what `GET /openapi.json` answers).
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::document(routes(Arc::new(Tokens::default())).into_openapi())
}

/// The whole API, serving its own OpenAPI document; with no tokens, behind
/// open mode's checks.
pub fn router(state: Arc<AppState>, tokens: Tokens) -> Router {
    let open = tokens.open();
    let (router, paths) = routes(Arc::new(tokens)).split_for_parts();
    let document = openapi::DocumentJson::new(&openapi::document(paths));
    let router = router
        .layer(Extension(document))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed("this path does not take this method (see /openapi.json)".into()) })
        .fallback(|| async { ApiError::NotFound("no such endpoint (see API.md)".into()) })
        .with_state(state);
    if open {
        router.layer(axum::middleware::from_fn(open_mode::guard))
    } else {
        router
    }
}
