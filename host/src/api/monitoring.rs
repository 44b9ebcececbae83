//! Health, readiness and Prometheus metrics.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

use super::error::ApiResult;
use crate::engine::Readiness;
use crate::internal_events::describe::{describe_metrics, HISTOGRAMS};
use super::AppState;

/// `/healthz` and `/readyz` (no token).
pub fn public_router() -> Router<Arc<AppState>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// `/metrics` (the admin token when tokens are set).
pub fn admin_router() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(prometheus))
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

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `{"status": "ready", "store", "durable"}`; 503 `store_unavailable` (the
/// store does not answer) or `store_reset` (the catalog vanished under
/// this process: restore it with `sluice catalog restore`).
async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    Ok(match state.engine.readiness().await? {
        Readiness::Ready { store, durable } => Json(json!({"status": "ready", "store": store, "durable": durable})).into_response(),
        Readiness::StoreReset => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "store_reset", "message": "the store lost its catalog (a Redis restarted empty?): this process keeps running \
                its last known pipelines; restore the catalog with `sluice catalog restore DIR`"})),
        )
            .into_response(),
    })
}

async fn prometheus(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render())
}
