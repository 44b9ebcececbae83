//! Windows as the API asks for them: a window's results (finals and open
//! windows merged on the spot), its results stream, the spike alerts, and
//! the polls of the live feed.

use serde_json::{json, Value};

use super::{Engine, EngineError};
use crate::domain::{AlertRecord, Page, WindowRecord, NO_WATERMARK};
use crate::window::query::{window_results, TooMany, WindowQuery};
use crate::window::{Shape, WindowSpec};

/// A window query's answer.
#[derive(Debug, Clone)]
pub struct WindowAnswer {
    /// API result objects, by start then group.
    pub results: Vec<Value>,
    /// The pipeline's watermark ([`NO_WATERMARK`] before any event).
    pub watermark: i64,
}

/// Where a live feed is in a window's results stream and the alerts, and
/// what it showed last.
#[derive(Debug, Clone)]
pub struct LiveCursor {
    results: String,
    alerts: String,
    last_update: String,
}

/// One poll of a live feed: what is new since the last one.
#[derive(Debug, Default)]
pub struct LiveNews {
    /// Closed-window records (JSON objects as text).
    pub results: Vec<String>,
    /// This window's new spike alerts (JSON objects as text).
    pub alerts: Vec<String>,
    /// The current windows, when they changed (JSON object as text).
    pub update: Option<String>,
    /// Store errors met on the way (the feed reports them and goes on).
    pub errors: Vec<String>,
}

/// `null` before any event, else the watermark.
pub fn watermark_value(wm: i64) -> Value {
    if wm == NO_WATERMARK { Value::Null } else { wm.into() }
}

impl Engine {
    /// The definition of window `window` of pipeline `id` (404 if either is unknown).
    pub async fn window_def(&self, id: &str, window: &str) -> Result<WindowSpec, EngineError> {
        let spec = self.pipeline_spec(id).await?;
        spec.windows
            .iter()
            .find(|w| w.name == window)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("pipeline `{id}` has no window `{window}`")))
    }

    /// The results of window `def` of pipeline `id` matching `query`.
    pub async fn window_answer(&self, id: &str, def: &WindowSpec, query: &WindowQuery) -> Result<WindowAnswer, EngineError> {
        let clock = self.store.window_clock(id).await?;
        let results = window_results(self.store.as_ref(), id, def, query).await?.map_err(|TooMany(max)| {
            EngineError::InvalidQuery(format!(
                "more than {max} stored windows of `{}` match this query; narrow `from`/`to` (ms, on the window start)",
                def.name
            ))
        })?;
        Ok(WindowAnswer { results, watermark: clock.watermark })
    }

    /// A page of window `window`'s results stream (one record per closed
    /// window and per re-emit), oldest first.
    pub async fn window_records(&self, id: &str, window: &str, cursor: &str, limit: usize) -> Result<Page<WindowRecord>, EngineError> {
        self.window_def(id, window).await?;
        Ok(self.store.read_window_results(id, window, cursor, limit).await?)
    }

    /// A page of pipeline `id`'s spike alerts, oldest first.
    pub async fn alerts_page(&self, id: &str, cursor: &str, limit: usize) -> Result<Page<AlertRecord>, EngineError> {
        self.pipeline_spec(id).await?;
        Ok(self.store.read_alerts(id, cursor, limit).await?)
    }

    /// Where a live feed of `window` starts: past everything stored so far.
    pub async fn live_start(&self, id: &str, window: &str) -> Result<LiveCursor, EngineError> {
        let results = self.store.tail_cursor(id, Some(window)).await?;
        let alerts = self.store.tail_cursor(id, None).await?;
        Ok(LiveCursor { results, alerts, last_update: String::new() })
    }

    /// One poll of a live feed: new result records, new alerts of this
    /// window, and the current windows if they changed.
    pub async fn live_poll(&self, id: &str, def: &WindowSpec, cursor: &mut LiveCursor) -> LiveNews {
        let store = self.store.as_ref();
        let mut news = LiveNews::default();
        match store.read_window_results(id, &def.name, &cursor.results, 1000).await {
            Ok(page) => {
                news.results = page.items.into_iter().map(|r| r.json).collect();
                cursor.results = page.next_cursor;
            }
            Err(e) => news.errors.push(e.to_string()),
        }
        match store.read_alerts(id, &cursor.alerts, 1000).await {
            Ok(page) => {
                news.alerts = page.items.into_iter().filter(|a| a.window == def.name).map(|a| a.json).collect();
                cursor.alerts = page.next_cursor;
            }
            Err(e) => news.errors.push(e.to_string()),
        }
        match store.window_clock(id).await {
            Ok(clock) if clock.max_event_ts != NO_WATERMARK => {
                let newest = clock.max_event_ts.max(clock.watermark);
                match window_results(store, id, def, &current_query(def, newest)).await {
                    Ok(Err(TooMany(max))) => news.errors.push(format!("more than {max} stored windows match the live view")),
                    Ok(Ok(results)) => {
                        let update = json!({"window": def.name, "watermark": watermark_value(clock.watermark), "results": results}).to_string();
                        if update != cursor.last_update {
                            cursor.last_update = update.clone();
                            news.update = Some(update);
                        }
                    }
                    Err(e) => news.errors.push(e.to_string()),
                }
            }
            Ok(_) => {}
            Err(e) => news.errors.push(e.to_string()),
        }
        news
    }
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
