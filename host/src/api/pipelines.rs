//! `/v1/pipelines`: specs, and each pipeline's DLQ, outputs and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, BadPage, BodyTooLarge, ErrorBody, NoSuchPipeline, Unavailable};
use super::extract::{Path, Query};
use super::sinks::SinkAnswer;
use super::{AppState, Body};
use crate::domain::{write_json_str, DlqEntrySchema, DlqSelector, EventSchema};
use crate::engine::spec::{valid_name, PipelineSpec};
use crate::engine::stats::StageStats;

/// The pipeline routes (behind the admin layer).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, put, remove))
        .routes(routes!(dlq_list, dlq_delete))
        .routes(routes!(dlq_replay))
        .routes(routes!(output))
        .routes(routes!(metrics))
}

/// A pipeline and its stored spec (each stage's `version` resolved).
#[derive(Serialize, ToSchema)]
pub struct PipelineAnswer {
    id: String,
    /// `null` in the listing for a stored spec this version cannot read.
    #[schema(value_type = Option<PipelineSpec>)]
    #[serde(serialize_with = "shared_spec")]
    spec: Option<Arc<PipelineSpec>>,
}

/// Serializes the shared spec as the spec itself.
fn shared_spec<S: serde::Serializer>(spec: &Option<Arc<PipelineSpec>>, serializer: S) -> Result<S::Ok, S::Error> {
    spec.as_deref().serialize(serializer)
}

/// `GET /v1/pipelines`'s answer.
#[derive(Serialize, ToSchema)]
pub struct PipelineList {
    /// By id.
    pipelines: Vec<PipelineAnswer>,
}

#[utoipa::path(put, path = "/v1/pipelines/{id}", operation_id = "put_pipeline", tag = "pipelines", summary = "Create or replace a pipeline",
    params(("id" = String, Path, description = "The pipeline's id, `[a-z0-9-]{1,64}`")),
    request_body(content = PipelineSpec, content_type = "application/json", description = "The pipeline spec (API.md)"),
    responses(
        (status = 201, description = "Created", body = PipelineAnswer),
        (status = 200, description = "Replaced (its stages swapped without losing queued events)", body = PipelineAnswer),
        (status = 400, description = "`invalid_name`, or `invalid_spec`: an invalid spec, an unknown plugin or version, a plugin whose `init` refused its config, an unset environment variable", body = ErrorBody),
        BodyTooLarge,
        Unavailable,
    ))]
async fn put(State(state): State<Arc<AppState>>, Path(id): Path<String>, Body(body, _permit): Body) -> ApiResult<Response> {
    if !valid_name(&id) {
        return Err(ApiError::bad_request("invalid_name", format!("pipeline id {id:?} must match [a-z0-9-]{{1,64}}")));
    }
    let (created, spec) = state.engine.put_pipeline(&id, &body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(PipelineAnswer { id, spec: Some(spec) })).into_response())
}

#[utoipa::path(get, path = "/v1/pipelines", operation_id = "list_pipelines", tag = "pipelines", summary = "Every pipeline with its spec",
    responses((status = 200, description = "The pipelines", body = PipelineList), Unavailable))]
async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<PipelineList>> {
    let pipelines = state.engine.pipeline_specs().await?.into_iter().map(|(id, spec)| PipelineAnswer { id, spec }).collect();
    Ok(Json(PipelineList { pipelines }))
}

#[utoipa::path(get, path = "/v1/pipelines/{id}", operation_id = "get_pipeline", tag = "pipelines", summary = "One pipeline's spec",
    params(("id" = String, Path, description = "The pipeline's id")),
    responses(
        (status = 200, description = "The pipeline", body = PipelineAnswer),
        NoSuchPipeline,
        Unavailable,
    ))]
async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<PipelineAnswer>> {
    let spec = state.engine.pipeline_spec(&id).await?;
    Ok(Json(PipelineAnswer { id, spec: Some(spec) }))
}

#[utoipa::path(delete, path = "/v1/pipelines/{id}", operation_id = "delete_pipeline", tag = "pipelines", summary = "Stop and delete a pipeline and its data",
    params(("id" = String, Path, description = "The pipeline's id")),
    responses(
        (status = 204, description = "Deleted"),
        NoSuchPipeline,
        Unavailable,
    ))]
async fn remove(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.engine.delete_pipeline(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `limit` and `cursor` of a paged list (API.md: default 100, at most 1000).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Entries per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// A `next_cursor` as answered before (absent or empty: from the beginning).
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

#[utoipa::path(get, path = "/v1/pipelines/{id}/dlq", operation_id = "list_dlq", tag = "dlq", summary = "A page of the dead letter queue",
    params(("id" = String, Path, description = "The pipeline's id"), PageQuery),
    responses(
        (status = 200, description = "A page of entries, oldest first", body = DlqPage),
        BadPage,
        NoSuchPipeline,
        Unavailable,
    ))]
async fn dlq_list(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Response> {
    let page = state.engine.dlq_page(&id, page.cursor(), page.limit()?).await?;
    Ok(Json(PageAnswer { entries: &page.items, next_cursor: &page.next_cursor }).into_response())
}

/// A page of the DLQ, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)] // The answer is written from the stored entries; this describes it.
pub struct DlqPage {
    #[schema(value_type = Vec<DlqEntrySchema>)]
    entries: Vec<DlqEntrySchema>,
    /// Pass it as `cursor` for the next page (an empty page: nothing newer yet).
    next_cursor: String,
}

/// Which DLQ entries to replay (`{"ids": [...]}`, `{"limit": n}` or `{}`:
/// all) or delete (`{"ids": [...]}` or nothing: all).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// These entries.
    ids: Option<Vec<String>>,
    /// The oldest `limit` entries (replay only), at least 1.
    #[schema(minimum = 1)]
    limit: Option<usize>,
}

/// The entries a replay or delete body selects: no body (or JSON `null`)
/// is all of them; else it must be a JSON object (serde would also read a
/// struct from an array, and `[null, null]` would then select everything).
fn selection(body: &[u8], allow_limit: bool) -> ApiResult<DlqSelector> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(DlqSelector::All);
    }
    let expected = if allow_limit { r#"{"ids": [...]}, {"limit": n} or {}"# } else { r#"{"ids": [...]} or nothing"# };
    if !text.starts_with(b"{") {
        return Err(ApiError::bad_request("invalid_body", format!("expected a JSON object, {expected}")));
    }
    let selection: Selection =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_body", format!("expected {expected}: {e}")))?;
    match (selection.ids, selection.limit) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("invalid_body", "give either `ids` or `limit`, not both")),
        (Some(ids), None) => Ok(DlqSelector::Ids(ids)),
        (None, Some(_)) if !allow_limit => Err(ApiError::bad_request("invalid_body", "`limit` is not accepted here; give `ids` or nothing")),
        (None, Some(0)) => Err(ApiError::bad_request("invalid_body", "`limit` must be at least 1")),
        (None, Some(n)) => Ok(DlqSelector::Oldest(n)),
        (None, None) => Ok(DlqSelector::All),
    }
}

/// `POST …/dlq/replay`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Entries put back on the queue (and removed from the DLQ).
    replayed: u64,
    /// Entries that could not be (ids not in the DLQ count here).
    failed: u64,
}

#[utoipa::path(post, path = "/v1/pipelines/{id}/dlq/replay", operation_id = "replay_dlq", tag = "dlq", summary = "Put DLQ entries back on the queue",
    params(("id" = String, Path, description = "The pipeline's id")),
    request_body(content = Option<Selection>, content_type = "application/json", description = "`{\"ids\": [...]}`, `{\"limit\": n}`, or `{}`, `null` or no body: all"),
    responses(
        (status = 200, description = "Replayed", body = Replayed),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        NoSuchPipeline,
        BodyTooLarge,
        Unavailable,
    ))]
async fn dlq_replay(State(state): State<Arc<AppState>>, Path(id): Path<String>, Body(body, _permit): Body) -> ApiResult<Json<Replayed>> {
    state.engine.pipeline_spec(&id).await?;
    let report = state.engine.dlq_replay(&id, &selection(&body, true)?).await?;
    Ok(Json(Replayed { replayed: report.replayed, failed: report.failed }))
}

/// `DELETE …/dlq`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// Entries deleted.
    deleted: u64,
}

#[utoipa::path(delete, path = "/v1/pipelines/{id}/dlq", operation_id = "delete_dlq", tag = "dlq", summary = "Delete DLQ entries",
    params(("id" = String, Path, description = "The pipeline's id")),
    request_body(content = Option<Selection>, content_type = "application/json", description = "`{\"ids\": [...]}`, or `{}`, `null` or no body: all"),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        NoSuchPipeline,
        BodyTooLarge,
        Unavailable,
    ))]
async fn dlq_delete(State(state): State<Arc<AppState>>, Path(id): Path<String>, Body(body, _permit): Body) -> ApiResult<Json<Deleted>> {
    state.engine.pipeline_spec(&id).await?;
    let deleted = state.engine.dlq_delete(&id, &selection(&body, false)?).await?;
    Ok(Json(Deleted { deleted }))
}

/// A page of outputs, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)] // The answer is written by hand; this describes it.
pub struct OutputPage {
    entries: Vec<OutputEntry>,
    /// Pass it as `cursor` for the next page (an empty page: nothing newer yet).
    next_cursor: String,
}

/// One output: an event that left the last stage.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OutputEntry {
    #[schema(value_type = EventSchema)]
    event: EventSchema,
}

/// The outputs page, written by hand like the stored output itself: each
/// event's `data` is copied as the text it is (checked when it was made).
#[utoipa::path(get, path = "/v1/pipelines/{id}/output", operation_id = "list_outputs", tag = "pipelines", summary = "A page of the pipeline's outputs",
    params(("id" = String, Path, description = "The pipeline's id"), PageQuery),
    responses(
        (status = 200, description = "A page of output events, oldest first", body = OutputPage),
        BadPage,
        NoSuchPipeline,
        Unavailable,
    ))]
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

/// A pipeline's figures (API.md "Monitoring").
#[derive(Serialize, ToSchema)]
pub struct PipelineMetrics {
    /// Events queued.
    accepted: u64,
    /// Events refused one by one at ingest.
    rejected: u64,
    /// Events that finished the stages: emitted, filtered out or dead-lettered.
    processed: u64,
    /// Events appended to the outputs.
    emitted: u64,
    dlq_size: u64,
    /// Events accepted and not yet finished.
    queue_depth: u64,
    /// Their stored bytes (what `max_queue_bytes` bounds).
    queue_bytes: u64,
    /// Events finished per second over the last 5 s, in this process.
    throughput_per_s: f64,
    /// Per stage, in spec order.
    stages: Vec<StageStats>,
    /// Per sink, in spec order.
    sinks: Vec<SinkAnswer>,
}

#[utoipa::path(get, path = "/v1/pipelines/{id}/metrics", operation_id = "get_pipeline_metrics", tag = "pipelines", summary = "A pipeline's figures",
    params(("id" = String, Path, description = "The pipeline's id")),
    responses(
        (status = 200, description = "The figures", body = PipelineMetrics),
        NoSuchPipeline,
        Unavailable,
    ))]
async fn metrics(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<PipelineMetrics>> {
    let report = state.engine.pipeline_report(&id).await?;
    let sinks = state.engine.sink_statuses(&id).await?;
    let c = report.counters;
    Ok(Json(PipelineMetrics {
        accepted: c.accepted,
        rejected: c.rejected,
        processed: c.processed,
        emitted: c.emitted,
        dlq_size: c.dlq_size,
        queue_depth: c.queue_depth,
        queue_bytes: c.queue_bytes,
        throughput_per_s: report.throughput_per_s,
        stages: report.stages,
        sinks: sinks.iter().map(SinkAnswer::of).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str, allow_limit: bool) -> bool {
        matches!(selection(body.as_bytes(), allow_limit), Err(ApiError::BadRequest { code: "invalid_body", .. }))
    }

    #[test]
    fn a_selection_is_an_object_or_nothing() {
        assert_eq!(selection(b"", true).unwrap(), DlqSelector::All);
        assert_eq!(selection(b" null ", false).unwrap(), DlqSelector::All);
        assert_eq!(selection(b"{}", true).unwrap(), DlqSelector::All);
        assert_eq!(selection(br#"{"ids": ["a"]}"#, false).unwrap(), DlqSelector::Ids(vec!["a".into()]));
        assert_eq!(selection(br#"{"limit": 2}"#, true).unwrap(), DlqSelector::Oldest(2));
        // Found by schemathesis: serde reads a struct from an array too, so
        // `[null, null]` replayed the whole DLQ.
        for body in ["[null, null]", "[]", "[[\"a\"], 1]", "3", "\"ids\""] {
            assert!(refused(body, true), "{body} is not a selection");
        }
        assert!(refused(r#"{"limit": 2}"#, false), "delete takes no limit");
        assert!(refused(r#"{"limit": 0}"#, true));
        assert!(refused(r#"{"ids": [], "limit": 1}"#, true));
        assert!(refused(r#"{"id": []}"#, true));
    }
}
