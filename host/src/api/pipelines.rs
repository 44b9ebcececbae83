//! `/v1/pipelines`: specs, and each pipeline's DLQ, outputs and metrics.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::{AppState, Body};
use crate::domain::{write_json_str, DlqSelector};
use crate::engine::spec::valid_name;

/// The pipeline routes (behind the admin layer).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/pipelines", get(list))
        .route("/v1/pipelines/{id}", get(show).put(put).delete(remove))
        .route("/v1/pipelines/{id}/dlq", get(dlq_list).delete(dlq_delete))
        .route("/v1/pipelines/{id}/dlq/replay", post(dlq_replay))
        .route("/v1/pipelines/{id}/output", get(output))
        .route("/v1/pipelines/{id}/metrics", get(metrics))
}

async fn put(State(state): State<Arc<AppState>>, Path(id): Path<String>, Body(body, _permit): Body) -> ApiResult<Response> {
    if !valid_name(&id) {
        return Err(ApiError::bad_request("invalid_name", format!("pipeline id {id:?} must match [a-z0-9-]{{1,64}}")));
    }
    let (created, spec) = state.engine.put_pipeline(&id, &body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"id": id, "spec": spec.as_ref()}))).into_response())
}

async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let pipelines: Vec<Value> = state.engine.pipeline_specs().await?.into_iter().map(|(id, spec)| json!({"id": id, "spec": spec.as_deref()})).collect();
    Ok(Json(json!({"pipelines": pipelines})))
}

async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let spec = state.engine.pipeline_spec(&id).await?;
    Ok(Json(json!({"id": id, "spec": spec.as_ref()})))
}

async fn remove(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.engine.delete_pipeline(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `limit` and `cursor` of a paged list (API.md: default 100, at most 1000).
#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl PageQuery {
    /// The page size asked for, checked.
    pub fn limit(&self) -> ApiResult<usize> {
        match &self.limit {
            None => Ok(100),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request("invalid_limit", format!("limit {text:?} must be an integer from 1 to 1000"))),
            },
        }
    }

    /// Where the page starts ("" = the beginning).
    pub fn cursor(&self) -> &str {
        self.cursor.as_deref().unwrap_or("")
    }
}

/// A page as API.md answers it, serialized straight from the stored
/// records (no JSON tree is built, so no stored text can fail to become one).
#[derive(serde::Serialize)]
pub struct PageAnswer<'a, T: serde::Serialize> {
    pub entries: &'a [T],
    pub next_cursor: &'a str,
}

async fn dlq_list(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Response> {
    let page = state.engine.dlq_page(&id, page.cursor(), page.limit()?).await?;
    Ok(Json(PageAnswer { entries: &page.items, next_cursor: &page.next_cursor }).into_response())
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

async fn dlq_replay(State(state): State<Arc<AppState>>, Path(id): Path<String>, Body(body, _permit): Body) -> ApiResult<Json<Value>> {
    state.engine.pipeline_spec(&id).await?;
    let report = state.engine.dlq_replay(&id, &selection(&body, true)?).await?;
    Ok(Json(json!({"replayed": report.replayed, "failed": report.failed})))
}

async fn dlq_delete(State(state): State<Arc<AppState>>, Path(id): Path<String>, Body(body, _permit): Body) -> ApiResult<Json<Value>> {
    state.engine.pipeline_spec(&id).await?;
    let deleted = state.engine.dlq_delete(&id, &selection(&body, false)?).await?;
    Ok(Json(json!({"deleted": deleted})))
}

/// The outputs page, written by hand like the stored output itself: each
/// event's `data` is copied as the text it is (checked when it was made).
async fn output(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Response> {
    let page = state.engine.output_page(&id, page.cursor(), page.limit()?).await?;
    let mut body = Vec::with_capacity(page.items.iter().map(|e| e.byte_size() + 96).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"entries\":[");
    for (i, event) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"event\":");
        event.write_json(&mut body);
        body.push(b'}');
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    write_json_str(&mut body, &page.next_cursor);
    body.push(b'}');
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn metrics(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let report = state.engine.pipeline_report(&id).await?;
    let sinks = state.engine.sink_statuses(&id).await?;
    let c = report.counters;
    Ok(Json(json!({
        "accepted": c.accepted, "rejected": c.rejected, "processed": c.processed, "emitted": c.emitted,
        "dlq_size": c.dlq_size, "queue_depth": c.queue_depth, "queue_bytes": c.queue_bytes,
        "throughput_per_s": report.throughput_per_s,
        "stages": report.stages,
        "sinks": sinks.iter().map(super::sinks::sink_json).collect::<Vec<_>>(),
    })))
}
