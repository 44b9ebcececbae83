//! `/v1/pipelines`: specs, and each pipeline's DLQ, outputs and metrics.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{read_body, AppState};
use crate::engine::spec::valid_name;
use crate::store::DlqSelector;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/pipelines", get(list))
        .route("/v1/pipelines/{id}", get(show).put(put).delete(remove))
        .route("/v1/pipelines/{id}/events", post(super::ingest::post_events))
        .route("/v1/pipelines/{id}/dlq", get(dlq_list).delete(dlq_delete))
        .route("/v1/pipelines/{id}/dlq/replay", post(dlq_replay))
        .route("/v1/pipelines/{id}/output", get(output))
        .route("/v1/pipelines/{id}/metrics", get(metrics))
}

async fn put(State(state): State<Arc<AppState>>, Path(id): Path<String>, request: Request) -> ApiResult<Response> {
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    if !valid_name(&id) {
        return Err(ApiError::bad_request("invalid_name", format!("pipeline id {id:?} must match [a-z0-9-]{{1,64}}")));
    }
    let (created, spec) = state.engine.put_pipeline(&id, &body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"id": id, "spec": spec}))).into_response())
}

fn spec_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let pipelines: Vec<Value> =
        state.engine.store.list_pipelines().await?.into_iter().map(|(id, spec)| json!({"id": id, "spec": spec_value(&spec)})).collect();
    Ok(Json(json!({"pipelines": pipelines})))
}

/// The stored spec of `id`, or 404.
pub async fn stored_spec(state: &AppState, id: &str) -> ApiResult<String> {
    state.engine.store.get_pipeline(id).await?.ok_or_else(|| ApiError::NotFound(format!("no pipeline `{id}`")))
}

async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let spec = stored_spec(&state, &id).await?;
    Ok(Json(json!({"id": id, "spec": spec_value(&spec)})))
}

async fn remove(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    if state.engine.delete_pipeline(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no pipeline `{id}`")))
    }
}

/// `limit` and `cursor` of a paged list (API.md: default 100, at most 1000).
#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> ApiResult<usize> {
        match &self.limit {
            None => Ok(100),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request("invalid_limit", format!("limit {text:?} must be an integer from 1 to 1000"))),
            },
        }
    }
    pub fn cursor(&self) -> &str {
        self.cursor.as_deref().unwrap_or("")
    }
}

async fn dlq_list(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Json<Value>> {
    stored_spec(&state, &id).await?;
    let page = state.engine.store.dlq_list(&id, page.cursor(), page.limit()?).await.map_err(cursor_error)?;
    Ok(Json(json!({"entries": page.items, "next_cursor": page.next_cursor})))
}

/// A cursor the store cannot read is the client's mistake (400), not ours.
pub fn cursor_error(e: crate::store::StoreError) -> ApiError {
    match e {
        e @ crate::store::StoreError::InvalidCursor(_) => {
            ApiError::bad_request("invalid_cursor", format!("{e}; pass back a `next_cursor` exactly as it was answered"))
        }
        other => other.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Selection {
    ids: Option<Vec<String>>,
    limit: Option<usize>,
}

fn selection(body: &[u8], allow_limit: bool) -> ApiResult<DlqSelector> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(DlqSelector::All);
    }
    let selection: Selection = serde_json::from_slice(body).map_err(|e| {
        let expected = if allow_limit { r#"{"ids": [...]}, {"limit": n} or {}"# } else { r#"{"ids": [...]} or nothing"# };
        ApiError::bad_request("invalid_body", format!("expected {expected}: {e}"))
    })?;
    match (selection.ids, selection.limit) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("invalid_body", "give either `ids` or `limit`, not both")),
        (Some(ids), None) => Ok(DlqSelector::Ids(ids)),
        (None, Some(_)) if !allow_limit => Err(ApiError::bad_request("invalid_body", "`limit` is not accepted here; give `ids` or nothing")),
        (None, Some(0)) => Err(ApiError::bad_request("invalid_body", "`limit` must be at least 1")),
        (None, Some(n)) => Ok(DlqSelector::Oldest(n)),
        (None, None) => Ok(DlqSelector::All),
    }
}

async fn dlq_replay(State(state): State<Arc<AppState>>, Path(id): Path<String>, request: Request) -> ApiResult<Json<Value>> {
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    stored_spec(&state, &id).await?;
    let report = state.engine.store.dlq_replay(&id, &selection(&body, true)?).await?;
    Ok(Json(json!({"replayed": report.replayed, "failed": report.failed})))
}

async fn dlq_delete(State(state): State<Arc<AppState>>, Path(id): Path<String>, request: Request) -> ApiResult<Json<Value>> {
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    stored_spec(&state, &id).await?;
    let deleted = state.engine.store.dlq_delete(&id, &selection(&body, false)?).await?;
    Ok(Json(json!({"deleted": deleted})))
}

async fn output(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Json<Value>> {
    stored_spec(&state, &id).await?;
    let page = state.engine.store.read_output(&id, page.cursor(), page.limit()?).await.map_err(cursor_error)?;
    let entries: Vec<Value> = page.items.iter().map(|event| json!({"event": event})).collect();
    Ok(Json(json!({"entries": entries, "next_cursor": page.next_cursor})))
}

async fn metrics(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let spec = stored_spec(&state, &id).await?;
    let names: Vec<String> = serde_json::from_str::<crate::engine::spec::PipelineSpec>(&spec)
        .map(|s| s.stages.into_iter().map(|s| s.name).collect())
        .unwrap_or_default();
    let c = state.engine.store.counters(&id).await?;
    Ok(Json(json!({
        "accepted": c.accepted, "rejected": c.rejected, "processed": c.processed, "emitted": c.emitted,
        "dlq_size": c.dlq_size, "queue_depth": c.queue_depth,
        "throughput_per_s": state.engine.stats.throughput(&id),
        "stages": state.engine.stats.stages(&id, &names),
    })))
}
