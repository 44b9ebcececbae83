//! Health, readiness and Prometheus metrics.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiResult, ErrorBody};
use crate::engine::Readiness;
use crate::internal_events::describe::{describe_metrics, HISTOGRAMS};
use super::AppState;

/// `/healthz` and `/readyz` (no token).
pub fn public_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

/// `/metrics` (the admin token when tokens are set).
pub fn admin_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(prometheus))
}

/// How often the recorder folds recorded histogram samples into its
/// buckets (without it, samples pile up in memory between scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once): histograms with
/// buckets (Prometheus can aggregate those across processes), every
/// family described (`# HELP`), and an upkeep thread.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in HISTOGRAMS {
                builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets).expect("the bucket lists are not empty");
            }
            let handle = builder.install_recorder().expect("the Prometheus recorder installs once per process");
            describe_metrics();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .expect("a thread starts");
            handle
        })
        .clone()
}

/// `/healthz`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "monitoring", summary = "The process is up (no token)",
    responses((status = 200, description = "The process answers", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `/readyz`'s answer while the store answers.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    status: &'static str,
    /// The store's kind: `redis` or `embedded`.
    store: &'static str,
    /// The store keeps what it acknowledged across its own restart.
    durable: bool,
}

/// `{"status": "ready", "store", "durable"}`; 503 `store_unavailable` (the
/// store does not answer) or `store_reset` (the catalog vanished under
/// this process: restore it with `sluice catalog restore`).
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "monitoring", summary = "The store answers (no token)",
    responses(
        (status = 200, description = "The store answers", body = Ready),
        (status = 503, description = "`store_unavailable` (with `Retry-After`) or `store_reset` (the catalog vanished under this process)",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait (`store_unavailable` only)"))),
    ))]
async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    Ok(match state.engine.readiness().await? {
        Readiness::Ready { store, durable } => Json(Ready { status: "ready", store, durable }).into_response(),
        Readiness::StoreReset => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ErrorBody::new("store_reset", "the store lost its catalog (a Redis restarted empty?): this process keeps running \
                its last known pipelines; restore the catalog with `sluice catalog restore DIR`")),
        )
            .into_response(),
    })
}

/// The content type of `/metrics` (Prometheus text format 0.0.4).
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

#[utoipa::path(get, path = "/metrics", operation_id = "prometheus_metrics", tag = "monitoring", summary = "Prometheus metrics (README lists the families)",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)))]
async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, PROMETHEUS_TEXT)], state.prometheus.render())
}
