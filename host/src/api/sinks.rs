//! `GET /v1/pipelines/{id}/sinks`: each sink's figures and lag (API.md,
//! "Sinks"). Never a secret: sinks are shown by name, kind and source.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiResult, NoSuchPipeline, Unavailable};
use super::extract::Path;
use super::AppState;
use crate::engine::SinkStatus;
use crate::sinks::spec::SinkKind;

/// The sink routes (behind the admin layer).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One sink as answered (also in the pipeline's metrics).
#[derive(Serialize, ToSchema)]
pub struct SinkAnswer {
    name: String,
    kind: SinkKind,
    /// `output` or `window:<name>`.
    from: String,
    /// Events delivered in all (source and replays).
    delivered: u64,
    /// Events given up on (to the DLQ) in all.
    failed: u64,
    /// Events (or window results) waiting.
    lag: u64,
    /// When the oldest waiting one was appended (ms); `null` when nothing waits.
    oldest_undelivered_at: Option<i64>,
    /// The last delivery error; `null` once a delivery went through after it.
    last_error: Option<String>,
}

impl SinkAnswer {
    /// The answer for one sink's status.
    pub fn of(status: &SinkStatus) -> Self {
        SinkAnswer {
            name: status.spec.name.clone(),
            kind: status.spec.kind,
            from: status.spec.from.clone(),
            delivered: status.record.delivered,
            failed: status.record.failed,
            lag: status.lag.events,
            oldest_undelivered_at: status.lag.oldest_at,
            last_error: status.record.last_error.clone(),
        }
    }
}

/// `GET …/sinks`'s answer.
#[derive(Serialize, ToSchema)]
pub struct SinkList {
    /// In spec order.
    sinks: Vec<SinkAnswer>,
}

#[utoipa::path(get, path = "/v1/pipelines/{id}/sinks", operation_id = "list_sinks", tag = "pipelines", summary = "Each sink's figures and lag",
    params(("id" = String, Path, description = "The pipeline's id")),
    responses(
        (status = 200, description = "The pipeline's sinks", body = SinkList),
        NoSuchPipeline,
        Unavailable,
    ))]
async fn list(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<SinkList>> {
    let sinks = state.engine.sink_statuses(&id).await?;
    Ok(Json(SinkList { sinks: sinks.iter().map(SinkAnswer::of).collect() }))
}
