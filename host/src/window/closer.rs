//! The closer: one pass per tick per pipeline (in whichever process takes
//! the store's close gate). It moves the watermark, emits every window that
//! closed, re-emits closed windows that late updates touched, stores the
//! results of windows that became final and drops the panes no window needs
//! any more, all in one atomic commit. The commit carries the lease's
//! fencing token: a pass that outlived its lease (another closer took the
//! gate since, or a window apply revoked it) writes nothing, so it can
//! neither move the watermark nor emit a window a second time.

use std::collections::{BTreeSet, HashSet};

use super::compute::{fill_distinct, pane_windows, render, sessions, starts_covering, WindowValue};
use super::spec::{Shape, WindowSpec};
use crate::store::{Store, StoreResult};
use crate::domain::{CloseCommit, CloseOutcome, DirtyMark, PaneRef, WindowClock, WindowRecord, NO_WATERMARK};

/// How the closer moves the watermark.
#[derive(Debug, Clone, Copy)]
pub struct CloserConfig {
    /// After this long without events, the watermark advances with
    /// processing time (so a quiet pipeline still closes its windows).
    pub idle_ms: i64,
    /// How long a closer may hold the gate before another may take it.
    pub lease_ms: i64,
    /// The watermark never passes the server's clock plus this (the spec's
    /// `max_future_ms`), whatever event times are stored.
    pub max_future_ms: i64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    /// The watermark after the pass (`None`: the gate was held elsewhere,
    /// or the pass was fenced).
    pub watermark: Option<i64>,
    /// The result records appended to the results streams.
    pub emitted: Vec<WindowRecord>,
    /// How many windows became final.
    pub finalized: usize,
    /// The pass outlived its lease and the store refused its commit
    /// (nothing written; the gate's current holder decides again).
    pub fenced: bool,
}

/// The watermark a pass moves to: the newest event time, or further once
/// the pipeline has been idle for `idle_ms`, but never past `now_ms +
/// max_future_ms` (a far-future event time, or a watermark stored past
/// that horizon, cannot make every later event late). Otherwise never
/// backwards.
pub fn next_watermark(clock: &WindowClock, now_ms: i64, idle_ms: i64, max_future_ms: i64) -> i64 {
    let horizon = now_ms.saturating_add(max_future_ms);
    if clock.max_event_ts == NO_WATERMARK {
        return if clock.watermark == NO_WATERMARK { clock.watermark } else { clock.watermark.min(horizon) };
    }
    let mut wm = clock.watermark.max(clock.max_event_ts);
    let idle = now_ms.saturating_sub(clock.last_event_at);
    if idle_ms > 0 && clock.last_event_at > 0 && idle > idle_ms {
        wm = wm.max(clock.max_event_ts.saturating_add(idle - idle_ms));
    }
    wm.min(horizon)
}

/// One closer pass over `defs` of `pipeline`.
pub async fn close_pass(
    store: &dyn Store,
    pipeline: &str,
    defs: &[WindowSpec],
    now_ms: i64,
    config: CloserConfig,
) -> StoreResult<PassReport> {
    // Nothing to do (the watermark stays, no late updates to re-emit): no
    // gate taken, so workers are not held up.
    let peek = store.window_clock(pipeline).await?;
    if next_watermark(&peek, now_ms, config.idle_ms, config.max_future_ms) == peek.watermark {
        let mut dirty = false;
        for def in defs {
            dirty |= !store.dirty_marks(pipeline, &def.name).await?.is_empty();
        }
        if !dirty {
            return Ok(PassReport { watermark: Some(peek.watermark), ..Default::default() });
        }
    }
    let Some(lease) = store.begin_close(pipeline, now_ms, config.lease_ms).await? else {
        return Ok(PassReport::default());
    };
    let clock = lease.clock;
    let result = plan(store, pipeline, defs, &clock, now_ms, config).await;
    let mut commit = match result {
        Ok(commit) => commit,
        Err(e) => {
            // Give the gate back unchanged so workers are not held up.
            let release = CloseCommit { token: lease.token, watermark: clock.watermark, ..Default::default() };
            let _ = store.finish_close(pipeline, &release).await;
            return Err(e);
        }
    };
    commit.token = lease.token;
    commit.horizon = Some(now_ms.saturating_add(config.max_future_ms));
    match store.finish_close(pipeline, &commit).await? {
        CloseOutcome::Committed => {
            let watermark = Some(commit.watermark_over(clock.watermark));
            Ok(PassReport { watermark, finalized: commit.finals.len(), emitted: commit.emit, fenced: false })
        }
        CloseOutcome::Fenced => Ok(PassReport { fenced: true, ..Default::default() }),
    }
}

async fn plan(
    store: &dyn Store,
    pipeline: &str,
    defs: &[WindowSpec],
    clock: &WindowClock,
    now_ms: i64,
    config: CloserConfig,
) -> StoreResult<CloseCommit> {
    let old = clock.watermark;
    let new = next_watermark(clock, now_ms, config.idle_ms, config.max_future_ms);
    let mut commit = CloseCommit { watermark: new, ..Default::default() };
    if new == NO_WATERMARK {
        return Ok(commit);
    }
    for def in defs {
        let dirty = store.dirty_marks(pipeline, &def.name).await?;
        if new == old && dirty.is_empty() {
            continue;
        }
        match def.shape() {
            Shape::Panes { size, slide } => plan_panes(store, pipeline, def, size, slide, old, new, &dirty, &mut commit).await?,
            Shape::Session { .. } => plan_sessions(store, pipeline, def, old, new, &dirty, &mut commit).await?,
        }
        commit.dirty_done.extend(dirty);
        commit.expire.push((def.name.clone(), new.saturating_sub(def.retention_ms as i64)));
    }
    Ok(commit)
}

fn record(def: &WindowSpec, value: &WindowValue, closed: bool) -> WindowRecord {
    WindowRecord {
        window: def.name.clone(),
        start: value.start,
        group: value.group.clone(),
        json: render(def, value, closed).to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn plan_panes(
    store: &dyn Store,
    pipeline: &str,
    def: &WindowSpec,
    size: i64,
    slide: i64,
    old: i64,
    new: i64,
    dirty: &[DirtyMark],
    commit: &mut CloseCommit,
) -> StoreResult<()> {
    let lateness = def.lateness();
    let closed = |s: i64| s.saturating_add(size) <= new;
    let final_now = |s: i64| s.saturating_add(size).saturating_add(lateness) <= new;
    let was_closed = |s: i64| old != NO_WATERMARK && s.saturating_add(size) <= old;
    let was_final = |s: i64| old != NO_WATERMARK && s.saturating_add(size).saturating_add(lateness) <= old;
    // The first window starts (aligned to the slide) that close, or become
    // final, in this pass: nothing to read unless one exists or a dirty mark
    // asks for a re-emit.
    let aligned_after = |x: i64| (x.div_euclid(slide) + 1).saturating_mul(slide);
    let mut lo = i64::MAX;
    if old == NO_WATERMARK {
        lo = i64::MIN;
    } else {
        let first_close = aligned_after(old.saturating_sub(size));
        if first_close <= new.saturating_sub(size) {
            lo = lo.min(first_close);
        }
        let first_final = aligned_after(old.saturating_sub(size).saturating_sub(lateness));
        if first_final <= new.saturating_sub(size).saturating_sub(lateness) {
            lo = lo.min(first_final);
        }
    }
    if let Some(first) = dirty.iter().map(|d| d.pane).min() {
        lo = lo.min(first.saturating_sub(size));
    }
    if lo == i64::MAX {
        return Ok(());
    }
    let rows = store.read_panes(pipeline, &def.name, lo, new.saturating_sub(1)).await?;
    let mut dirty_windows: HashSet<(i64, String)> = HashSet::new();
    for d in dirty {
        for s in starts_covering(d.pane, size, slide) {
            if closed(s) && !was_final(s) {
                dirty_windows.insert((s, d.group.clone()));
            }
        }
    }
    let mut starts = BTreeSet::new();
    let panes: BTreeSet<i64> = rows.iter().map(|r| r.pane).collect();
    for &pane in &panes {
        for s in starts_covering(pane, size, slide) {
            let newly_closed = closed(s) && !was_closed(s);
            let newly_final = final_now(s) && !was_final(s);
            if newly_closed || newly_final {
                starts.insert(s);
            }
        }
    }
    starts.extend(dirty_windows.iter().map(|(s, _)| *s));
    let mut values = pane_windows(def, &rows, &starts, |s, g| {
        let newly = (closed(s) && !was_closed(s)) || (final_now(s) && !was_final(s));
        newly || dirty_windows.contains(&(s, g.to_string()))
    });
    fill_distinct(store, pipeline, def, &mut values).await?;
    for v in &values {
        let newly_closed = closed(v.start) && !was_closed(v.start);
        let is_dirty = dirty_windows.contains(&(v.start, v.group.clone()));
        if newly_closed || is_dirty {
            commit.emit.push(record(def, v, true));
        }
        if final_now(v.start) && !was_final(v.start) {
            commit.finals.push(record(def, v, true));
        }
    }
    for pane in panes {
        // The newest window covering the pane starts at the pane.
        if final_now(pane) {
            commit.drop_panes.push(PaneRef { window: def.name.clone(), pane, group: None });
        }
    }
    Ok(())
}

async fn plan_sessions(
    store: &dyn Store,
    pipeline: &str,
    def: &WindowSpec,
    old: i64,
    new: i64,
    dirty: &[DirtyMark],
    commit: &mut CloseCommit,
) -> StoreResult<()> {
    let lateness = def.lateness();
    let rows = store.read_panes(pipeline, &def.name, i64::MIN, i64::MAX).await?;
    let dirty_groups: HashSet<&str> = dirty.iter().map(|d| d.group.as_str()).collect();
    let mut values: Vec<WindowValue> = sessions(def, &rows)
        .into_iter()
        .filter(|s| {
            let closed = s.end <= new;
            let newly_closed = closed && (old == NO_WATERMARK || s.end > old);
            let final_now = s.end.saturating_add(lateness) <= new;
            newly_closed || final_now || (closed && dirty_groups.contains(s.group.as_str()))
        })
        .collect();
    fill_distinct(store, pipeline, def, &mut values).await?;
    for v in &values {
        let closed = v.end <= new;
        let newly_closed = closed && (old == NO_WATERMARK || v.end > old);
        if newly_closed || (closed && dirty_groups.contains(v.group.as_str())) {
            commit.emit.push(record(def, v, true));
        }
        if v.end.saturating_add(lateness) <= new {
            commit.finals.push(record(def, v, true));
            for &pane in &v.panes {
                commit.drop_panes.push(PaneRef { window: def.name.clone(), pane, group: Some(v.group.clone()) });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn watermark_follows_events_then_processing_time_when_idle() {
        let clock = WindowClock { watermark: 500, max_event_ts: 1000, last_event_at: 10_000, gate_until: 0 };
        assert_eq!(next_watermark(&clock, 10_500, 5000, HOUR), 1000);
        assert_eq!(next_watermark(&clock, 15_000, 5000, HOUR), 1000);
        assert_eq!(next_watermark(&clock, 17_000, 5000, HOUR), 3000);
        let ahead = WindowClock { watermark: 9000, ..clock };
        assert_eq!(next_watermark(&ahead, 10_500, 5000, HOUR), 9000, "never backwards");
        assert_eq!(next_watermark(&WindowClock::default(), 99, 5000, HOUR), NO_WATERMARK);
        // A far-future event time, or a watermark stored past the horizon,
        // holds the watermark at the server's clock plus `max_future_ms`.
        let far = WindowClock { watermark: 1000, max_event_ts: 4_102_444_800_000, last_event_at: 10_000, gate_until: 0 };
        assert_eq!(next_watermark(&far, 20_000, 5000, HOUR), 20_000 + HOUR);
        let stored_far = WindowClock { watermark: i64::MAX - 1, max_event_ts: i64::MAX, last_event_at: 10_000, gate_until: 0 };
        assert_eq!(next_watermark(&stored_far, 20_000, 5000, HOUR), 20_000 + HOUR);
    }
}
