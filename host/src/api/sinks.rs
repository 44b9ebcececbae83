//! `GET /v1/pipelines/{id}/sinks`: each sink's figures and lag (API.md,
//! "Sinks"). Never a secret: sinks are shown by name, kind and source.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::ApiResult;
use super::AppState;
use crate::engine::SinkStatus;

/// The sink routes (behind the admin layer).
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/pipelines/{id}/sinks", get(list))
}

/// One sink as answered (also in the pipeline's metrics).
pub fn sink_json(status: &SinkStatus) -> Value {
    json!({
        "name": status.spec.name,
        "kind": status.spec.kind.as_str(),
        "from": status.spec.from,
        "delivered": status.record.delivered,
        "failed": status.record.failed,
        "lag": status.lag.events,
        "oldest_undelivered_at": status.lag.oldest_at,
        "last_error": status.record.last_error,
    })
}

async fn list(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let sinks = state.engine.sink_statuses(&id).await?;
    Ok(Json(json!({"sinks": sinks.iter().map(sink_json).collect::<Vec<_>>()})))
}
