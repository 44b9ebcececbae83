//! `?latest=true` on `GET .../windows/{window}` (API.md v1.1 "Windows"):
//! only the newest window per group, so "users online now" is one result
//! instead of client code over hundreds of overlapping sliding windows.
//!
//! Which window is "newest", per group:
//! - tumbling and session windows: the one with the latest `start`;
//! - sliding windows: the one *ending* at the end of the group's newest pane
//!   with data (`start = newest pane + slide - size`), i.e. the full window
//!   over the last `size` ms up to the newest data, not the one starting at
//!   the newest pane (which covers a single slide). When filters (`from`,
//!   `to`) cut that window out, the one with the latest `end` before it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::spec::{Shape, WindowSpec};

/// A result object's `start`, `end` (ms) and group key (its JSON text).
fn bounds(result: &Value) -> Option<(i64, i64, String)> {
    let start = result.get("start")?.as_i64()?;
    let end = result.get("end")?.as_i64()?;
    let group = result.get("group").map(Value::to_string).unwrap_or_else(|| "null".into());
    Some((start, end, group))
}

/// Keeps only the newest window per group of `results` (rendered result
/// objects of `def`), in the order they came (by start, then group).
pub fn latest_per_group(def: &WindowSpec, results: Vec<Value>) -> Vec<Value> {
    // Per group: the newest start (which, for panes, is the newest pane with data).
    let mut newest_start: BTreeMap<String, i64> = BTreeMap::new();
    for (start, _, group) in results.iter().filter_map(bounds) {
        let entry = newest_start.entry(group).or_insert(start);
        *entry = (*entry).max(start);
    }
    // Per group: the latest end a kept window may have.
    let end_limit = |group: &str| -> i64 {
        let start = newest_start.get(group).copied().unwrap_or(i64::MAX);
        match def.shape() {
            Shape::Panes { slide, .. } => start.saturating_add(slide),
            Shape::Session { .. } => i64::MAX,
        }
    };
    // Per group: the chosen window. Within the limit, the latest end (then
    // start) wins; a window past the limit only when none is within it (the
    // filters cut the preferred one out), and then the earliest end.
    let mut chosen: BTreeMap<String, ((bool, i64, i64), usize)> = BTreeMap::new();
    for (index, (start, end, group)) in results.iter().enumerate().filter_map(|(i, r)| bounds(r).map(|b| (i, b))) {
        let within = end <= end_limit(&group);
        let rank = (within, if within { end } else { -end }, start);
        if chosen.get(&group).map_or(true, |&(best, _)| rank > best) {
            chosen.insert(group, (rank, index));
        }
    }
    let keep: std::collections::BTreeSet<usize> = chosen.values().map(|&(_, i)| i).collect();
    results.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> WindowSpec {
        serde_json::from_value(value).expect("window spec")
    }

    fn window(group: Value, start: i64, end: i64) -> Value {
        json!({"group": group, "start": start, "end": end, "count": 1})
    }

    #[test]
    fn sliding_keeps_the_window_ending_at_the_newest_pane_per_group() {
        let def = spec(json!({"name": "w", "kind": "sliding", "size_ms": 3000, "slide_ms": 1000, "aggregates": []}));
        // "a": data in panes 3000 and 5000; "b": data in pane 3000 only.
        let results = vec![
            window(json!("a"), 1000, 4000),
            window(json!("b"), 1000, 4000),
            window(json!("a"), 2000, 5000),
            window(json!("b"), 2000, 5000),
            window(json!("a"), 3000, 6000),
            window(json!("b"), 3000, 6000),
            window(json!("a"), 4000, 7000),
            window(json!("a"), 5000, 8000),
        ];
        let latest = latest_per_group(&def, results);
        assert_eq!(latest, vec![window(json!("b"), 1000, 4000), window(json!("a"), 3000, 6000)]);
    }

    #[test]
    fn tumbling_keeps_the_latest_start_per_group_including_null() {
        let def = spec(json!({"name": "w", "kind": "tumbling", "size_ms": 1000, "aggregates": []}));
        let results = vec![window(Value::Null, 0, 1000), window(Value::Null, 2000, 3000), window(json!(7), 1000, 2000)];
        assert_eq!(latest_per_group(&def, results), vec![window(Value::Null, 2000, 3000), window(json!(7), 1000, 2000)]);
    }

    #[test]
    fn sliding_cut_by_filters_falls_back_to_the_earliest_end() {
        let def = spec(json!({"name": "w", "kind": "sliding", "size_ms": 3000, "slide_ms": 1000, "aggregates": []}));
        // `from` removed the window ending at 6000 (start 3000).
        let results = vec![window(json!("a"), 4000, 7000), window(json!("a"), 5000, 8000)];
        assert_eq!(latest_per_group(&def, results), vec![window(json!("a"), 4000, 7000)]);
    }
}
