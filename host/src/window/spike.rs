//! Spike alerts: while a tumbling window fills, a group whose count passes
//! `factor` × the mean count of its previous `baseline_windows` windows (and
//! `min_count`) raises one alert for that window.
//!
//! Windows without events count as 0 in the mean; a group with no events in
//! any of its baseline windows (baseline 0) does not alert: there is nothing
//! to compare a surge with.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;

use super::query::{window_results_within, WindowQuery};
use super::spec::{Shape, WindowSpec};
use crate::store::{Store, StoreResult};
use crate::domain::{AlertRecord, NO_WATERMARK};

/// Baselines are recomputed this often (late updates may change them).
const BASELINE_TTL: Duration = Duration::from_secs(5);

/// Per-pipeline memory of baselines and alerts already raised.
#[derive(Default)]
pub struct SpikeWatch {
    /// (window, start) → (group → mean count, computed at).
    baselines: HashMap<(String, i64), (HashMap<String, f64>, Instant)>,
    raised: HashSet<(String, i64, String)>,
}

impl SpikeWatch {
    /// Checks the open windows of every spike rule; answers the alerts raised.
    pub async fn check(&mut self, store: &dyn Store, pipeline: &str, defs: &[WindowSpec], now_ms: i64) -> StoreResult<Vec<AlertRecord>> {
        let mut raised = Vec::new();
        let clock = store.window_clock(pipeline).await?;
        if clock.max_event_ts == NO_WATERMARK {
            return Ok(raised);
        }
        for def in defs {
            let (Some(rule), Shape::Panes { size, .. }) = (&def.spike, def.shape()) else { continue };
            // Open windows: those the newest event time falls in, or later.
            let wm = clock.watermark.max(clock.max_event_ts);
            let first_open = wm.div_euclid(size) * size;
            let rows = store.read_panes(pipeline, &def.name, first_open.saturating_sub(size), i64::MAX).await?;
            for row in rows.iter().filter(|r| r.agg.count >= rule.min_count.max(1)) {
                let start = row.pane;
                if self.raised.contains(&(def.name.clone(), start, row.group.clone())) {
                    continue;
                }
                let key = (def.name.clone(), start);
                let stale = self.baselines.get(&key).is_none_or(|(_, at)| at.elapsed() > BASELINE_TTL);
                if stale {
                    let baseline = baseline(store, pipeline, def, start, rule.baseline_windows).await?;
                    self.baselines.insert(key.clone(), (baseline, Instant::now()));
                }
                let mean = self.baselines[&key].0.get(&row.group).copied().unwrap_or(0.0);
                if mean <= 0.0 || (row.agg.count as f64) <= rule.factor * mean {
                    continue;
                }
                let group: serde_json::Value = serde_json::from_str(&row.group).unwrap_or(serde_json::Value::Null);
                let alert = AlertRecord {
                    window: def.name.clone(),
                    start,
                    group: row.group.clone(),
                    json: json!({
                        "window": def.name, "group": group, "start": start, "count": row.agg.count,
                        "baseline": mean, "factor": rule.factor, "at": now_ms,
                    })
                    .to_string(),
                };
                if store.put_alert(pipeline, &alert, now_ms, def.retention_ms as i64).await? {
                    raised.push(alert);
                }
                self.raised.insert((def.name.clone(), start, row.group.clone()));
            }
        }
        let horizon = clock.max_event_ts.saturating_sub(86_400_000);
        self.baselines.retain(|(_, start), _| *start >= horizon);
        self.raised.retain(|(_, start, _)| *start >= horizon);
        Ok(raised)
    }
}

/// Per group: the mean count of the `n` windows before `start`.
async fn baseline(store: &dyn Store, pipeline: &str, def: &WindowSpec, start: i64, n: u32) -> StoreResult<HashMap<String, f64>> {
    let Shape::Panes { size, .. } = def.shape() else { return Ok(HashMap::new()) };
    let query = WindowQuery { group: None, from: Some(start.saturating_sub(size * n as i64)), to: Some(start - 1) };
    let mut sums: HashMap<String, f64> = HashMap::new();
    let results = window_results_within(store, pipeline, def, &query, usize::MAX).await?.unwrap_or_default();
    for result in results {
        let group = result["group"].to_string();
        *sums.entry(group).or_default() += result["count"].as_f64().unwrap_or(0.0);
    }
    sums.values_mut().for_each(|v| *v /= n as f64);
    Ok(sums)
}
