//! Windows (API.md "Windows"): results, the results stream, spike alerts and
//! the live Server-Sent Events feed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult, BadPage, ErrorBody, NoSuchPipeline, Unavailable};
use super::extract::{Path, Query};
use super::pipelines::{PageAnswer, PageQuery};
use super::AppState;
use crate::engine::{watermark_value, LiveCursor};
use crate::window::latest::latest_per_group;
use crate::window::query::WindowQuery;
use crate::window::WindowSpec;

/// How often the live feed looks for changes.
const LIVE_POLL: Duration = Duration::from_millis(500);

/// The window routes (behind the admin layer).
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(results)).routes(routes!(results_stream)).routes(routes!(alerts))
}

/// The live feed (behind the admin layer that also takes `?access_token=`).
pub fn live_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(live))
}

/// `group`, `from`, `to` (ms, on `start`), `latest` (v1.1).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ResultsParams {
    /// Only this group.
    group: Option<String>,
    /// Windows starting at or after this (ms since the epoch).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Windows starting at or before this (ms since the epoch).
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// `true`: only the newest window per group.
    #[param(value_type = Option<bool>)]
    latest: Option<String>,
}

/// One window's result (open windows show their partial values); besides
/// the fields named, one per aggregate: `<op>_<field>` (e.g.
/// `avg_data.ms`) and `missing_<field>`.
#[derive(ToSchema)]
#[schema(as = WindowResult)]
#[allow(dead_code)] // The results are built as JSON by the window code; this describes them.
pub struct WindowResultDoc {
    /// The group's value; `null` for an ungrouped window.
    group: Option<Value>,
    /// ms since the epoch (the window is `[start, end)`).
    start: i64,
    end: i64,
    closed: bool,
    count: u64,
}

/// A window's results.
#[derive(Serialize, ToSchema)]
pub struct WindowResults {
    /// By start, then group.
    #[schema(value_type = Vec<WindowResultDoc>)]
    results: Vec<Value>,
    /// The pipeline's watermark (ms); `null` before any event.
    #[schema(value_type = Option<i64>)]
    watermark: Value,
}

/// A page of the window-results stream or of the alerts, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)] // The answer is the stored records, passed through; this describes it.
pub struct RecordPage {
    /// The records as stored: window results (`WindowResult`) or spike
    /// alerts (`{"window", "group", "start", "count", "baseline", "factor", "at"}`).
    entries: Vec<Value>,
    /// Pass it as `cursor` for the next page (an empty page: nothing newer yet).
    next_cursor: String,
}

/// `?latest=`: `true` or `false` (absent or empty = false).
fn parse_latest(value: &Option<String>) -> ApiResult<bool> {
    match value.as_deref() {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(text) => Err(ApiError::bad_request("invalid_query", format!("`latest` must be `true` or `false`, not {text:?}"))),
    }
}

fn parse_ms(name: &str, value: &Option<String>) -> ApiResult<Option<i64>> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request("invalid_query", format!("`{name}` must be an integer (ms since the epoch), not {text:?}"))),
    }
}

#[utoipa::path(get, path = "/v1/pipelines/{id}/windows/{window}", operation_id = "get_window_results", tag = "windows", summary = "A window's results",
    params(("id" = String, Path, description = "The pipeline's id"), ("window" = String, Path, description = "The window's name"), ResultsParams),
    responses(
        (status = 200, description = "The results", body = WindowResults),
        (status = 400, description = "`invalid_query`: `from`/`to` not integers, `from` after `to`, `latest` not `true`/`false`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such pipeline or window", body = ErrorBody),
        Unavailable,
    ))]
async fn results(
    State(state): State<Arc<AppState>>,
    Path((id, window)): Path<(String, String)>,
    Query(params): Query<ResultsParams>,
) -> ApiResult<Json<WindowResults>> {
    let def = state.engine.window_def(&id, &window).await?;
    let latest = parse_latest(&params.latest)?;
    let query = WindowQuery { group: params.group, from: parse_ms("from", &params.from)?, to: parse_ms("to", &params.to)? };
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            return Err(ApiError::bad_request("invalid_query", format!("`from` ({from}) is after `to` ({to})")));
        }
    }
    let answer = state.engine.window_answer(&id, &def, &query).await?;
    let results = if latest { latest_per_group(&def, answer.results) } else { answer.results };
    Ok(Json(WindowResults { results, watermark: watermark_value(answer.watermark) }))
}

/// A stored record's JSON text, passed through as it is (it was rendered
/// by this host); text that is not JSON at all shows as `null`.
fn stored_json(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

/// The window-results stream: one record per closed window (and per
/// re-emit after a late update), oldest first.
#[utoipa::path(get, path = "/v1/pipelines/{id}/windows/{window}/results", operation_id = "list_window_records", tag = "windows", summary = "A page of a window's closed results",
    params(("id" = String, Path, description = "The pipeline's id"), ("window" = String, Path, description = "The window's name"), PageQuery),
    responses(
        (status = 200, description = "A page of result records, oldest first", body = RecordPage),
        BadPage,
        (status = 404, description = "`not_found`: no such pipeline or window", body = ErrorBody),
        Unavailable,
    ))]
async fn results_stream(
    State(state): State<Arc<AppState>>,
    Path((id, window)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Response> {
    let page = state.engine.window_records(&id, &window, page.cursor(), page.limit()?).await?;
    let entries: Vec<Box<RawValue>> = page.items.iter().map(|r| stored_json(&r.json)).collect();
    Ok(Json(PageAnswer { entries: &entries, next_cursor: &page.next_cursor }).into_response())
}

#[utoipa::path(get, path = "/v1/pipelines/{id}/alerts", operation_id = "list_alerts", tag = "windows", summary = "A page of spike alerts",
    params(("id" = String, Path, description = "The pipeline's id"), PageQuery),
    responses(
        (status = 200, description = "A page of alerts, oldest first", body = RecordPage),
        BadPage,
        NoSuchPipeline,
        Unavailable,
    ))]
async fn alerts(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Response> {
    let page = state.engine.alerts_page(&id, page.cursor(), page.limit()?).await?;
    let entries: Vec<Box<RawValue>> = page.items.iter().map(|a| stored_json(&a.json)).collect();
    Ok(Json(PageAnswer { entries: &entries, next_cursor: &page.next_cursor }).into_response())
}

/// A live feed between two polls.
struct Feed {
    /// This feed's place among the process's live feeds, given back when the client goes.
    _slot: tokio::sync::OwnedSemaphorePermit,
    state: Arc<AppState>,
    id: String,
    def: WindowSpec,
    cursor: LiveCursor,
    first: bool,
}

/// One poll, as SSE events.
async fn poll(mut feed: Feed) -> Option<(Vec<Result<SseEvent, Infallible>>, Feed)> {
    if !feed.first {
        tokio::time::sleep(LIVE_POLL).await;
    }
    feed.first = false;
    let news = feed.state.engine.live_poll(&feed.id, &feed.def, &mut feed.cursor).await;
    let mut events = Vec::new();
    for record in news.results {
        events.push(Ok(SseEvent::default().event("result").data(record)));
    }
    for alert in news.alerts {
        events.push(Ok(SseEvent::default().event("alert").data(alert)));
    }
    if let Some(update) = news.update {
        events.push(Ok(SseEvent::default().event("update").data(update)));
    }
    for message in news.errors {
        events.push(Ok(SseEvent::default().event("error").data(json!({"message": message}).to_string())));
    }
    Some((events, feed))
}

/// `GET .../windows/{window}/live`: `update` events (the current windows,
/// whenever they change, checked twice a second), `result` events (each
/// closed-window record) and `alert` events (this window's spike alerts).
/// Records and alerts already stored when the feed opens are skipped.
#[utoipa::path(get, path = "/v1/pipelines/{id}/windows/{window}/live", operation_id = "live_window_feed", tag = "windows", summary = "A window's live feed (Server-Sent Events)",
    params(("id" = String, Path, description = "The pipeline's id"), ("window" = String, Path, description = "The window's name")),
    responses(
        (status = 200, description = "Server-Sent Events: `update` (the current windows), `result` (a closed-window record), `alert`, `error`", content_type = "text/event-stream", body = String),
        (status = 404, description = "`not_found`: no such pipeline or window", body = ErrorBody),
        Unavailable,
    ))]
async fn live(
    State(state): State<Arc<AppState>>,
    Path((id, window)): Path<(String, String)>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let def = state.engine.window_def(&id, &window).await?;
    let slot = state.live_feeds.clone().try_acquire_owned().map_err(|_| {
        ApiError::Overloaded(format!(
            "this server already serves {} live feeds (--max-live-feeds); retry shortly or poll the window instead",
            state.limits.max_live_feeds
        ))
    })?;
    let cursor = state.engine.live_start(&id, &window).await?;
    let feed = Feed { _slot: slot, state, id, def, cursor, first: true };
    let stream = stream::unfold(feed, poll).flat_map(stream::iter);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}
