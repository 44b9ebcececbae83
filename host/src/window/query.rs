//! `GET /v1/pipelines/{id}/windows/{window}`: final windows from the stored
//! results, the others (open, or closed but still taking late updates)
//! merged from their panes on the spot.

use std::collections::BTreeSet;

use serde_json::Value;

use super::compute::{fill_distinct, pane_windows, render, sessions, starts_covering};
use super::spec::{Shape, WindowSpec};
use crate::store::{Store, StoreResult};
use crate::domain::NO_WATERMARK;

/// At most this many not-yet-final windows are merged for one query (the
/// newest); narrow `from`/`to` to see older ones.
pub const MAX_LIVE_WINDOWS: usize = 2000;

/// A query's filters (API.md: `group`, `from`, `to`; `from`/`to` on `start`).
#[derive(Debug, Clone, Default)]
pub struct WindowQuery {
    pub group: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Whether a stored group key (JSON text) matches the `group` filter: the
/// string's value for string groups, the JSON text otherwise.
fn group_matches(filter: &Option<String>, key: &str) -> bool {
    match filter {
        None => true,
        Some(want) => {
            key == want || serde_json::from_str::<Value>(key).ok().and_then(|v| v.as_str().map(|s| s == want)).unwrap_or(false)
        }
    }
}

/// At most this many stored final windows are read for one query; a
/// query matching more is refused (narrow `from`/`to` or `group`).
pub const MAX_FINAL_WINDOWS: usize = 10_000;

/// A query's answer, or why it would read too much.
pub type QueryAnswer = Result<Vec<Value>, TooMany>;

/// The query matches more than [`MAX_FINAL_WINDOWS`] stored windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany(pub usize);

/// The result objects of `def` matching `query`, by start then group,
/// reading at most [`MAX_FINAL_WINDOWS`] stored windows (what the API asks).
pub async fn window_results(store: &dyn Store, pipeline: &str, def: &WindowSpec, query: &WindowQuery) -> StoreResult<QueryAnswer> {
    window_results_within(store, pipeline, def, query, MAX_FINAL_WINDOWS).await
}

/// [`window_results`] reading at most `max_finals` stored windows (the
/// spike rules' baselines, bounded by their own `baseline_windows`, read them all).
pub async fn window_results_within(
    store: &dyn Store,
    pipeline: &str,
    def: &WindowSpec,
    query: &WindowQuery,
    max_finals: usize,
) -> StoreResult<QueryAnswer> {
    let clock = store.window_clock(pipeline).await?;
    let wm = clock.watermark;
    let from = query.from.unwrap_or(i64::MIN);
    let to = query.to.unwrap_or(i64::MAX);
    let lateness = def.lateness();
    let mut out: Vec<(i64, String, Value)> = Vec::new();
    let (finals, more) = store.final_results_at_most(pipeline, &def.name, from, to, max_finals).await?;
    if more {
        return Ok(Err(TooMany(max_finals)));
    }
    for record in finals {
        if group_matches(&query.group, &record.group) {
            let value = serde_json::from_str(&record.json).unwrap_or(Value::Null);
            out.push((record.start, record.group, value));
        }
    }
    let closed = |end: i64| wm != NO_WATERMARK && end <= wm;
    match def.shape() {
        Shape::Panes { size, slide } => {
            // Windows that are not final: start + size + lateness > wm.
            let lo = if wm == NO_WATERMARK { from } else { from.max(wm.saturating_sub(size).saturating_sub(lateness).saturating_add(1)) };
            let rows = store.read_panes(pipeline, &def.name, lo, to.saturating_add(size - 1)).await?;
            let mut starts = BTreeSet::new();
            for row in &rows {
                for s in starts_covering(row.pane, size, slide) {
                    if s >= lo && s <= to {
                        starts.insert(s);
                    }
                }
            }
            while starts.len() > MAX_LIVE_WINDOWS {
                starts.pop_first();
            }
            let mut values = pane_windows(def, &rows, &starts, |_, g| group_matches(&query.group, g));
            fill_distinct(store, pipeline, def, &mut values).await?;
            for v in &values {
                out.push((v.start, v.group.clone(), render(def, v, closed(v.end))));
            }
        }
        Shape::Session { .. } => {
            let rows = store.read_panes(pipeline, &def.name, i64::MIN, i64::MAX).await?;
            let mut values: Vec<_> = sessions(def, &rows)
                .into_iter()
                .filter(|s| s.start >= from && s.start <= to && group_matches(&query.group, &s.group))
                .collect();
            fill_distinct(store, pipeline, def, &mut values).await?;
            for v in &values {
                out.push((v.start, v.group.clone(), render(def, v, closed(v.end))));
            }
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(Ok(out.into_iter().map(|(_, _, v)| v).collect()))
}
