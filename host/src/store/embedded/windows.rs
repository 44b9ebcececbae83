//! Window state on redb: the clock and the close gate, panes, distinct
//! counts, dirty marks, a closer's commit, finals and results streams.

use async_trait::async_trait;
use hyperloglogplus::HyperLogLog;
use redb::ReadableTable;

use super::sketch::{new_sketch, parse_sketch};
use super::*;
use crate::domain::{CloseCommit, CloseLease, CloseOutcome, DirtyMark, DistinctQuery, Page, PaneAgg, PaneRow, WindowClock, WindowRecord, NO_WATERMARK};
use crate::internal_events::{emit, BadPaneRowSkipped};
use crate::store::WindowState;

/// A stored pane row, or `None` (reported through `internal_events`) when
/// it cannot be read or holds a number that is not finite (earlier
/// versions stored an infinite sum as `null`): read as missing, so one bad
/// row cannot make every later read or closer pass fail.
pub(super) fn parse_pane(bytes: &[u8], window: &str, pane: i64, group: &str) -> Option<PaneAgg> {
    let reason = match serde_json::from_slice::<PaneAgg>(bytes) {
        Ok(agg) => match agg.non_finite() {
            None => return Some(agg),
            Some((i, part)) => format!("aggregate {i} has a {part} that is not finite"),
        },
        Err(e) => format!("bad JSON: {e}"),
    };
    emit(BadPaneRowSkipped { window, pane, group, reason: &reason });
    None
}

/// The smallest string greater than `s`: with it as the next key part, a
/// range covers every key whose part equals `s`, whatever follows.
fn successor(s: &str) -> String {
    format!("{s}\0")
}

/// Keys `(pipeline, window, x, group)` with `from <= x <= to`, every group
/// (`window_next` is [`successor`] of `window`). Callers check `from <= to`.
fn span<'a>(
    pipeline: &'a str,
    window: &'a str,
    window_next: &'a str,
    from: i64,
    to: i64,
) -> std::ops::Range<(&'a str, &'a str, i64, &'a str)> {
    let end = match to.checked_add(1) {
        Some(next) => (pipeline, window, next, ""),
        None => (pipeline, window_next, i64::MIN, ""),
    };
    (pipeline, window, from, "")..end
}

/// The stored clock fields of `pipeline`: (watermark, max_event_ts, last_event_at).
pub(super) fn stored_clock(t: &impl ReadableTable<&'static str, (i64, i64, i64)>, pipeline: &str) -> StoreResult<(i64, i64, i64)> {
    Ok(t.get(pipeline).map_err(db_err)?.map(|v| v.value()).unwrap_or((NO_WATERMARK, NO_WATERMARK, 0)))
}

/// Deletes every window key of `pipeline` (panes, sketches, dirty marks,
/// finals, results, alerts, clock), inside `txn`.
pub(super) fn delete_window_data(txn: &WriteTransaction, p: &str) -> StoreResult<()> {
    let next = successor(p);
    let n = next.as_str();
    let all = || (p, "", i64::MIN, "")..(n, "", i64::MIN, "");
    txn.open_table(PANES).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(DIRTY).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(FINALS).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(ALERT_KEYS).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(SKETCHES)
        .map_err(db_err)?
        .retain_in((p, "", i64::MIN, "", 0)..(n, "", i64::MIN, "", 0), |_, _| false)
        .map_err(db_err)?;
    txn.open_table(RESULTS).map_err(db_err)?.retain_in((p, "", 0)..(n, "", 0), |_, _| false).map_err(db_err)?;
    txn.open_table(RESULTS_APPENDED).map_err(db_err)?.retain_in((p, "", 0)..(n, "", 0), |_, _| false).map_err(db_err)?;
    txn.open_table(RESULTS_BY_START)
        .map_err(db_err)?
        .retain_in((p, "", i64::MIN, 0)..(n, "", i64::MIN, 0), |_, _| false)
        .map_err(db_err)?;
    txn.open_table(ALERTS).map_err(db_err)?.retain_in((p, 0)..=(p, u64::MAX), |_, _| false).map_err(db_err)?;
    txn.open_table(WINDOW_CLOCK).map_err(db_err)?.remove(p).map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl WindowState for EmbeddedStore {
    async fn window_clock(&self, pipeline: &str) -> StoreResult<WindowClock> {
        let state = self.state(pipeline);
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let (watermark, max_event_ts, last_event_at) = stored_clock(&txn.open_table(WINDOW_CLOCK).map_err(db_err)?, &p)?;
            Ok(WindowClock { watermark, max_event_ts, last_event_at, gate_until: state.gate.lock().until })
        })
        .await
    }

    async fn begin_close(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<CloseLease>> {
        let state = self.state(pipeline);
        let p = pipeline.to_string();
        self.blocking(move |db| {
            // A write transaction though nothing is written: it waits until an
            // apply that already passed the gate check has committed.
            let txn = db.begin_write().map_err(db_err)?;
            let (watermark, max_event_ts, last_event_at) = stored_clock(&txn.open_table(WINDOW_CLOCK).map_err(db_err)?, &p)?;
            let lease = {
                let mut gate = state.gate.lock();
                if gate.until > now_ms {
                    return Ok(None);
                }
                gate.until = now_ms.saturating_add(lease_ms);
                gate.token += 1;
                let clock = WindowClock { watermark, max_event_ts, last_event_at, gate_until: gate.until };
                CloseLease { clock, token: gate.token }
            };
            txn.abort().map_err(db_err)?;
            Ok(Some(lease))
        })
        .await
    }

    async fn read_panes(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<PaneRow>> {
        if from > to {
            return Ok(Vec::new());
        }
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let w_next = successor(&w);
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PANES).map_err(db_err)?;
            let mut rows = Vec::new();
            for item in t.range(span(&p, &w, &w_next, from, to)).map_err(db_err)? {
                let (key, value) = item.map_err(db_err)?;
                let (_, _, pane, group) = key.value();
                if let Some(agg) = parse_pane(value.value(), &w, pane, group) {
                    rows.push(PaneRow { pane, group: group.to_string(), agg });
                }
            }
            Ok(rows)
        })
        .await
    }

    async fn distinct_counts(&self, pipeline: &str, window: &str, queries: &[DistinctQuery]) -> StoreResult<Vec<u64>> {
        let (p, w, queries) = (pipeline.to_string(), window.to_string(), queries.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(SKETCHES).map_err(db_err)?;
            let mut counts = Vec::with_capacity(queries.len());
            for q in &queries {
                // An index too big for the key was never stored: no values.
                let Ok(agg) = u32::try_from(q.agg) else {
                    counts.push(0);
                    continue;
                };
                let mut union = new_sketch();
                for pane in &q.panes {
                    let Some(bytes) = t.get((p.as_str(), w.as_str(), *pane, q.group.as_str(), agg)).map_err(db_err)? else { continue };
                    let sketch = parse_sketch(bytes.value(), || format!("{w}/{pane}/{}/{agg}", q.group))?;
                    union
                        .merge(&sketch)
                        .map_err(|e| StoreError::Internal(format!("cannot merge sketch {w}/{pane}/{}/{agg}: {e}", q.group)))?;
                }
                counts.push(union.count().round() as u64);
            }
            Ok(counts)
        })
        .await
    }

    async fn dirty_marks(&self, pipeline: &str, window: &str) -> StoreResult<Vec<DirtyMark>> {
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let w_next = successor(&w);
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(DIRTY).map_err(db_err)?;
            let mut marks = Vec::new();
            for item in t.range(span(&p, &w, &w_next, i64::MIN, i64::MAX)).map_err(db_err)? {
                let (key, _) = item.map_err(db_err)?;
                let (_, _, pane, group) = key.value();
                marks.push(DirtyMark { window: w.clone(), pane, group: group.to_string() });
            }
            Ok(marks)
        })
        .await
    }

    async fn finish_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<CloseOutcome> {
        let emit = commit
            .emit
            .iter()
            .map(|r| Ok((r.window.clone(), r.start, to_json(r)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let commit = commit.clone();
        let state = self.state(pipeline);
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            // Fenced before any write (another token, or a gate already open:
            // this lease committed). Under the write transaction the gate
            // cannot change between this check and the commit.
            let live = {
                let gate = state.gate.lock();
                gate.token == commit.token && gate.until != 0
            };
            if !live {
                txn.abort().map_err(db_err)?;
                return Ok(CloseOutcome::Fenced);
            }
            {
                let mut clock = txn.open_table(WINDOW_CLOCK).map_err(db_err)?;
                let (stored_watermark, max_event_ts, last_event_at) = stored_clock(&clock, p)?;
                clock.insert(p, (commit.watermark_over(stored_watermark), max_event_ts, last_event_at)).map_err(db_err)?;

                if !emit.is_empty() {
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let mut results = txn.open_table(RESULTS).map_err(db_err)?;
                    let mut by_start = txn.open_table(RESULTS_BY_START).map_err(db_err)?;
                    let mut appended = txn.open_table(RESULTS_APPENDED).map_err(db_err)?;
                    let now = crate::domain::now_ms();
                    for (window, start, json) in &emit {
                        let s = seq.take();
                        results.insert((p, window.as_str(), s), json.as_slice()).map_err(db_err)?;
                        by_start.insert((p, window.as_str(), *start, s), ()).map_err(db_err)?;
                        appended.insert((p, window.as_str(), s), now).map_err(db_err)?;
                    }
                    seq.save(&mut meta)?;
                }

                let mut finals = txn.open_table(FINALS).map_err(db_err)?;
                for r in &commit.finals {
                    finals.insert((p, r.window.as_str(), r.start, r.group.as_str()), r.json.as_str()).map_err(db_err)?;
                }

                let mut panes = txn.open_table(PANES).map_err(db_err)?;
                let mut sketches = txn.open_table(SKETCHES).map_err(db_err)?;
                for d in &commit.drop_panes {
                    let w = d.window.as_str();
                    match &d.group {
                        None => {
                            let w_next = successor(w);
                            panes.retain_in(span(p, w, &w_next, d.pane, d.pane), |_, _| false).map_err(db_err)?;
                            let end = match d.pane.checked_add(1) {
                                Some(next) => (p, w, next, "", 0),
                                None => (p, w_next.as_str(), i64::MIN, "", 0),
                            };
                            sketches.retain_in((p, w, d.pane, "", 0)..end, |_, _| false).map_err(db_err)?;
                        }
                        Some(g) => {
                            panes.remove((p, w, d.pane, g.as_str())).map_err(db_err)?;
                            sketches
                                .retain_in((p, w, d.pane, g.as_str(), 0)..=(p, w, d.pane, g.as_str(), u32::MAX), |_, _| false)
                                .map_err(db_err)?;
                        }
                    }
                }

                let mut dirty = txn.open_table(DIRTY).map_err(db_err)?;
                for m in &commit.dirty_done {
                    dirty.remove((p, m.window.as_str(), m.pane, m.group.as_str())).map_err(db_err)?;
                }

                // Last, so nothing this pass wrote survives its own cutoff.
                let mut results = txn.open_table(RESULTS).map_err(db_err)?;
                let mut by_start = txn.open_table(RESULTS_BY_START).map_err(db_err)?;
                let mut appended = txn.open_table(RESULTS_APPENDED).map_err(db_err)?;
                for (window, cutoff) in &commit.expire {
                    let w = window.as_str();
                    finals.retain_in((p, w, i64::MIN, "")..(p, w, *cutoff, ""), |_, _| false).map_err(db_err)?;
                    let mut old = Vec::new();
                    for item in by_start.range((p, w, i64::MIN, 0)..(p, w, *cutoff, 0)).map_err(db_err)? {
                        let (key, _) = item.map_err(db_err)?;
                        let (_, _, start, s) = key.value();
                        old.push((start, s));
                    }
                    for (start, s) in old {
                        by_start.remove((p, w, start, s)).map_err(db_err)?;
                        results.remove((p, w, s)).map_err(db_err)?;
                        appended.remove((p, w, s)).map_err(db_err)?;
                    }
                }
            }
            // The gate opens with the commit: held across it, an apply that
            // gets the write transaction next waits here and then sees it free.
            let mut gate = state.gate.lock();
            txn.commit().map_err(db_err)?;
            gate.until = 0;
            Ok(CloseOutcome::Committed)
        })
        .await
    }

    async fn final_results_at_most(&self, pipeline: &str, window: &str, from: i64, to: i64, max: usize) -> StoreResult<(Vec<WindowRecord>, bool)> {
        if from > to {
            return Ok((Vec::new(), false));
        }
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let w_next = successor(&w);
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(FINALS).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.range(span(&p, &w, &w_next, from, to)).map_err(db_err)?.take(max.saturating_add(1)) {
                let (key, value) = item.map_err(db_err)?;
                let (_, _, start, group) = key.value();
                out.push(WindowRecord { window: w.clone(), start, group: group.to_string(), json: value.value().to_string() });
            }
            let more = out.len() > max;
            out.truncate(max);
            Ok((out, more))
        })
        .await
    }

    async fn read_window_results(&self, pipeline: &str, window: &str, cursor: &str, limit: usize) -> StoreResult<Page<WindowRecord>> {
        let after = parse_cursor(cursor)?;
        let empty_cursor = if cursor.is_empty() { "0".to_string() } else { cursor.to_string() };
        if limit == 0 {
            return Ok(Page { items: Vec::new(), next_cursor: empty_cursor });
        }
        let (p, w) = (pipeline.to_string(), window.to_string());
        let items = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(db_err)?;
                let t = txn.open_table(RESULTS).map_err(db_err)?;
                let Some(start) = after.checked_add(1) else { return Ok(Vec::new()) };
                let mut items = Vec::new();
                for item in t.range((p.as_str(), w.as_str(), start)..=(p.as_str(), w.as_str(), u64::MAX)).map_err(db_err)?.take(limit) {
                    let (key, value) = item.map_err(db_err)?;
                    let s = key.value().2;
                    let record: WindowRecord = serde_json::from_slice(value.value())
                        .map_err(|e| StoreError::Internal(format!("bad stored result {w}/{s}: {e}")))?;
                    items.push((s, record));
                }
                Ok(items)
            })
            .await?;
        let next_cursor = items.last().map(|(s, _)| s.to_string()).unwrap_or(empty_cursor);
        Ok(Page { items: items.into_iter().map(|(_, r)| r).collect(), next_cursor })
    }

    async fn tail_cursor(&self, _pipeline: &str, _window: Option<&str>) -> StoreResult<String> {
        // Sequence numbers come from one counter: everything stored so far
        // is at or below its current value.
        self.blocking(|db| read_u64(db, "seq")).await.map(|seq| seq.to_string())
    }
}
