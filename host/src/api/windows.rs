//! Windows (API.md "Windows"): results, the results stream, spike alerts and
//! the live Server-Sent Events feed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::pipelines::{cursor_error, stored_spec, PageQuery};
use super::AppState;
use crate::engine::spec::PipelineSpec;
use crate::store::NO_WATERMARK;
use crate::window::query::{window_results, WindowQuery};
use crate::window::{Shape, WindowSpec};

/// How often the live feed looks for changes.
const LIVE_POLL: Duration = Duration::from_millis(500);

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/pipelines/{id}/windows/{window}", get(results))
        .route("/v1/pipelines/{id}/windows/{window}/results", get(results_stream))
        .route("/v1/pipelines/{id}/windows/{window}/live", get(live))
        .route("/v1/pipelines/{id}/alerts", get(alerts))
}

/// `group`, `from`, `to` (ms, on `start`).
#[derive(Deserialize)]
struct ResultsParams {
    group: Option<String>,
    from: Option<String>,
    to: Option<String>,
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

/// The window definition `window` of pipeline `id` (404 if either is unknown).
async fn window_spec(state: &AppState, id: &str, window: &str) -> ApiResult<WindowSpec> {
    let spec = stored_spec(state, id).await?;
    let spec = PipelineSpec::parse(spec.as_bytes()).map_err(ApiError::Internal)?;
    spec.windows.into_iter().find(|w| w.name == window).ok_or_else(|| ApiError::NotFound(format!("pipeline `{id}` has no window `{window}`")))
}

fn watermark_value(wm: i64) -> Value {
    if wm == NO_WATERMARK { Value::Null } else { wm.into() }
}

async fn results(
    State(state): State<Arc<AppState>>,
    Path((id, window)): Path<(String, String)>,
    Query(params): Query<ResultsParams>,
) -> ApiResult<Json<Value>> {
    let def = window_spec(&state, &id, &window).await?;
    let query = WindowQuery { group: params.group, from: parse_ms("from", &params.from)?, to: parse_ms("to", &params.to)? };
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            return Err(ApiError::bad_request("invalid_query", format!("`from` ({from}) is after `to` ({to})")));
        }
    }
    let store = state.engine.store.as_ref();
    let clock = store.window_clock(&id).await?;
    let results = window_results(store, &id, &def, &query).await?;
    Ok(Json(json!({"results": results, "watermark": watermark_value(clock.watermark)})))
}

/// The window-results stream: one record per closed window (and per
/// re-emit after a late update), oldest first.
async fn results_stream(
    State(state): State<Arc<AppState>>,
    Path((id, window)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Value>> {
    window_spec(&state, &id, &window).await?;
    let page = state.engine.store.read_window_results(&id, &window, page.cursor(), page.limit()?).await.map_err(cursor_error)?;
    let entries: Vec<Value> = page.items.iter().map(|r| serde_json::from_str(&r.json).unwrap_or(Value::Null)).collect();
    Ok(Json(json!({"entries": entries, "next_cursor": page.next_cursor})))
}

async fn alerts(State(state): State<Arc<AppState>>, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Json<Value>> {
    stored_spec(&state, &id).await?;
    let page = state.engine.store.read_alerts(&id, page.cursor(), page.limit()?).await.map_err(cursor_error)?;
    let entries: Vec<Value> = page.items.iter().map(|a| serde_json::from_str(&a.json).unwrap_or(Value::Null)).collect();
    Ok(Json(json!({"entries": entries, "next_cursor": page.next_cursor})))
}

/// The windows a live view shows: the newest window (sliding: the one
/// covering the last `size_ms` up to the newest event), or the open sessions.
fn current_query(def: &WindowSpec, newest: i64) -> WindowQuery {
    match def.shape() {
        Shape::Panes { size, slide } => {
            let start = newest.div_euclid(slide) * slide - size + slide;
            WindowQuery { group: None, from: Some(start), to: Some(start) }
        }
        Shape::Session { .. } => WindowQuery::default(),
    }
}

struct LiveState {
    state: Arc<AppState>,
    id: String,
    def: WindowSpec,
    last_update: String,
    results_cursor: String,
    alerts_cursor: String,
    first: bool,
}

/// One look: new result records, new alerts of this window, and the current
/// windows if they changed.
async fn live_step(mut s: LiveState) -> Option<(Vec<Result<SseEvent, Infallible>>, LiveState)> {
    if !s.first {
        tokio::time::sleep(LIVE_POLL).await;
    }
    s.first = false;
    let store = s.state.engine.store.as_ref();
    let mut events = Vec::new();
    let error = |e: crate::store::StoreError| Ok(SseEvent::default().event("error").data(json!({"message": e.to_string()}).to_string()));
    match store.read_window_results(&s.id, &s.def.name, &s.results_cursor, 1000).await {
        Ok(page) => {
            for record in &page.items {
                events.push(Ok(SseEvent::default().event("result").data(record.json.clone())));
            }
            s.results_cursor = page.next_cursor;
        }
        Err(e) => events.push(error(e)),
    }
    match store.read_alerts(&s.id, &s.alerts_cursor, 1000).await {
        Ok(page) => {
            for alert in page.items.iter().filter(|a| a.window == s.def.name) {
                events.push(Ok(SseEvent::default().event("alert").data(alert.json.clone())));
            }
            s.alerts_cursor = page.next_cursor;
        }
        Err(e) => events.push(error(e)),
    }
    match store.window_clock(&s.id).await {
        Ok(clock) if clock.max_event_ts != NO_WATERMARK => {
            let newest = clock.max_event_ts.max(clock.watermark);
            match window_results(store, &s.id, &s.def, &current_query(&s.def, newest)).await {
                Ok(results) => {
                    let update = json!({"window": s.def.name, "watermark": watermark_value(clock.watermark), "results": results}).to_string();
                    if update != s.last_update {
                        events.push(Ok(SseEvent::default().event("update").data(update.clone())));
                        s.last_update = update;
                    }
                }
                Err(e) => events.push(error(e)),
            }
        }
        Ok(_) => {}
        Err(e) => events.push(error(e)),
    }
    Some((events, s))
}

/// `GET .../windows/{window}/live`: `update` events (the current windows,
/// whenever they change, checked twice a second), `result` events (each
/// closed-window record) and `alert` events (this window's spike alerts).
/// Records and alerts already stored when the feed opens are skipped.
async fn live(
    State(state): State<Arc<AppState>>,
    Path((id, window)): Path<(String, String)>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let def = window_spec(&state, &id, &window).await?;
    let store = state.engine.store.as_ref();
    let results_cursor = store.tail_cursor(&id, Some(&window)).await?;
    let alerts_cursor = store.tail_cursor(&id, None).await?;
    let start = LiveState { state, id, def, last_update: String::new(), results_cursor, alerts_cursor, first: true };
    let stream = stream::unfold(start, live_step).flat_map(stream::iter);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}
