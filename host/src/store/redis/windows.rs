//! Window state on Redis: the event-time clock and its close gate, panes,
//! HyperLogLogs, dirty marks, results, finals (window deltas are applied in
//! `complete.rs`, alerts are in `alerts.rs`; the key layout of all three is
//! here).
//!
//! Keys (`W` = `P:{id}:w:<window>:`, all in the pipeline's hash slot; the
//! scripts build pane and HyperLogLog key names from `W`, which Redis
//! Cluster accepts because the hash tag pins them to the script's slot):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{id}:wclock` | hash | `wm` watermark, `maxts` newest event time, `last` wall ms of the last apply, `gate` close lease deadline, `tok` the lease's fencing token (the last one handed out) |
//! | `W panes` | sorted set | pane starts (score = member) |
//! | `W p:<pane>` | hash | `k\|` aggregates per row; `c\|<group>` count; per aggregate `i`: `s\|<i>\|<group>` + `si\|…` sum (float + integer part), `mn\|…`, `mx\|…`, `m\|…` missing (values taken = count − missing), `h\|…` a HyperLogLog exists |
//! | `W h:<pane>:<i>:<group>` | HyperLogLog | `count_distinct` aggregate `i` |
//! | `W dirty` | set | `<pane>\|<group>`: closed windows updated since they were emitted |
//! | `W results` | stream | emitted results: `s` start, `g` group, `j` record JSON (the window-results stream) |
//! | `W resultsidx` | sorted set | stream ids by window start (results expire by start) |
//! | `W final` / `W finalh` | sorted set (score start) / hash | `<start>\|<group>` → final record JSON |
//! | `W alerted:<start>` | set | groups already alerted for that window |
//! | `P:{id}:alerts` | stream | spike alerts: `w`, `s`, `g`, `j` |

use ::redis::streams::StreamId;
use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::domain::{
    CloseCommit, CloseLease, CloseOutcome, DirtyMark, DistinctQuery, FieldAgg, Page, PaneAgg, PaneRow, WindowClock, WindowRecord, MAX_AGGREGATES, NO_WATERMARK,
};
use crate::internal_events::{emit, BadPaneRowSkipped};
use crate::store::WindowState;

impl RedisStore {

    pub(super) async fn clock(&self, pipeline: &str) -> StoreResult<WindowClock> {
        let k = self.keys(pipeline);
        let key = &k.clock;
        let values: Vec<Option<String>> = self
            .run(|mut c| async move {
                ::redis::cmd("HMGET").arg(key).arg("wm").arg("maxts").arg("last").arg("gate").query_async(&mut c).await
            })
            .await?;
        Ok(parse_clock(&values))
    }

    pub(super) async fn take_gate(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<CloseLease>> {
        let k = self.keys(pipeline);
        let key = &k.clock;
        let reply: Option<Vec<Option<String>>> = self
            .run(|mut c| async move {
                self.scripts.begin_close.key(key).arg(now_ms).arg(now_ms + lease_ms).invoke_async(&mut c).await
            })
            .await?;
        reply
            .map(|values| {
                let token = values.get(4).and_then(|v| v.as_deref()).unwrap_or_default();
                let token = token.parse().map_err(|_| corrupt("close token", token))?;
                Ok(CloseLease { clock: parse_clock(&values), token })
            })
            .transpose()
    }

    pub(super) async fn panes(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<PaneRow>> {
        let base = format!("{}{window}:", self.keys(pipeline).windows);
        let index = format!("{base}panes");
        let (index, base) = (&index, &base);
        let panes: Vec<i64> = self
            .run(|mut c| async move {
                ::redis::cmd("ZRANGEBYSCORE").arg(index).arg(from).arg(to).query_async(&mut c).await
            })
            .await?;
        let mut rows = Vec::new();
        for chunk in panes.chunks(64) {
            let hashes: Vec<Vec<(String, String)>> = self
                .run(|mut c| async move {
                    let mut pipe = ::redis::pipe();
                    for pane in chunk {
                        pipe.cmd("HGETALL").arg(format!("{base}p:{pane}"));
                    }
                    pipe.query_async(&mut c).await
                })
                .await?;
            for (pane, fields) in chunk.iter().zip(hashes) {
                rows.extend(parse_pane(window, *pane, fields));
            }
        }
        Ok(rows)
    }

    pub(super) async fn pfcounts(&self, pipeline: &str, window: &str, queries: &[DistinctQuery]) -> StoreResult<Vec<u64>> {
        let base = format!("{}{window}:", self.keys(pipeline).windows);
        let base = &base;
        let mut counts = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(256) {
            let got: Vec<u64> = self
                .run(|mut c| async move {
                    let mut pipe = ::redis::pipe();
                    for q in chunk {
                        let cmd = pipe.cmd("PFCOUNT");
                        for pane in &q.panes {
                            cmd.arg(format!("{base}h:{pane}:{}:{}", q.agg, q.group));
                        }
                        if q.panes.is_empty() {
                            cmd.arg(format!("{base}h:none"));
                        }
                    }
                    pipe.query_async(&mut c).await
                })
                .await?;
            counts.extend(got);
        }
        Ok(counts)
    }

    pub(super) async fn dirty(&self, pipeline: &str, window: &str) -> StoreResult<Vec<DirtyMark>> {
        let key = format!("{}{window}:dirty", self.keys(pipeline).windows);
        let key = &key;
        let members: Vec<String> =
            self.run(|mut c| async move { ::redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }).await?;
        let mut marks = Vec::with_capacity(members.len());
        for member in members {
            let (pane, group) = member.split_once('|').ok_or_else(|| corrupt("dirty mark", &member))?;
            let pane = pane.parse().map_err(|_| corrupt("dirty mark", &member))?;
            marks.push(DirtyMark { window: window.to_string(), pane, group: group.to_string() });
        }
        marks.sort();
        Ok(marks)
    }

    pub(super) async fn commit_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<CloseOutcome> {
        let k = self.keys(pipeline);
        let record = |r: &WindowRecord| json!([r.window, r.start.to_string(), r.group, r.json]);
        let payload = json!({
            "wm": commit.watermark.to_string(),
            "horizon": commit.horizon.map(|h| h.to_string()),
            "emit": commit.emit.iter().map(record).collect::<Vec<_>>(),
            "finals": commit.finals.iter().map(record).collect::<Vec<_>>(),
            "drop": commit.drop_panes.iter().map(|p| json!([p.window, p.pane.to_string(), p.group])).collect::<Vec<_>>(),
            "dirty": commit.dirty_done.iter().map(|d| json!([d.window, format!("{}|{}", d.pane, d.group)])).collect::<Vec<_>>(),
            "expire": commit.expire.iter().map(|(w, cutoff)| json!([w, cutoff.to_string()])).collect::<Vec<_>>(),
        })
        .to_string();
        let (k, payload) = (&k, &payload);
        let token = commit.token.to_string();
        let token = &token;
        let applied: i64 = self
            .run(|mut c| async move {
                self.scripts.finish_close.key(&k.clock).arg(&k.windows).arg(payload).arg(token).invoke_async(&mut c).await
            })
            .await?;
        Ok(if applied == 1 { CloseOutcome::Committed } else { CloseOutcome::Fenced })
    }

    pub(super) async fn finals(&self, pipeline: &str, window: &str, from: i64, to: i64, max: usize) -> StoreResult<(Vec<WindowRecord>, bool)> {
        let base = format!("{}{window}:", self.keys(pipeline).windows);
        let (index, hash) = (format!("{base}final"), format!("{base}finalh"));
        let (index, hash) = (&index, &hash);
        // One more than asked for says whether there are more.
        let count = i64::try_from(max).unwrap_or(i64::MAX).saturating_add(1);
        let mut members: Vec<String> = self
            .run(|mut c| async move {
                ::redis::cmd("ZRANGEBYSCORE").arg(index).arg(from).arg(to).arg("LIMIT").arg(0).arg(count).query_async(&mut c).await
            })
            .await?;
        let more = members.len() > max;
        members.truncate(max);
        let mut records = Vec::with_capacity(members.len());
        for chunk in members.chunks(1000) {
            let values: Vec<Option<String>> =
                self.run(|mut c| async move { ::redis::cmd("HMGET").arg(hash).arg(chunk).query_async(&mut c).await }).await?;
            for (member, json) in chunk.iter().zip(values) {
                let Some(json) = json else { continue };
                let (start, group) = member.split_once('|').ok_or_else(|| corrupt("final member", member))?;
                let start = start.parse().map_err(|_| corrupt("final member", member))?;
                records.push(WindowRecord { window: window.to_string(), start, group: group.to_string(), json });
            }
        }
        records.sort_by(|a, b| (a.start, &a.group).cmp(&(b.start, &b.group)));
        Ok((records, more))
    }

    pub(super) async fn results_page(
        &self,
        pipeline: &str,
        window: &str,
        cursor: &str,
        limit: usize,
    ) -> StoreResult<Page<WindowRecord>> {
        let key = format!("{}{window}:results", self.keys(pipeline).windows);
        let (entries, next_cursor) = self.xrange_page(&key, cursor, limit).await?;
        let items = entries.iter().map(|e| record_entry(window, e)).collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }

    /// The newest id of the window's results stream (or the alerts), ""
    /// when empty.
    pub(super) async fn stream_tail(&self, pipeline: &str, window: Option<&str>) -> StoreResult<String> {
        let k = self.keys(pipeline);
        let key = match window {
            Some(w) => format!("{}{w}:results", k.windows),
            None => k.alerts,
        };
        let key = &key;
        let reply: ::redis::streams::StreamRangeReply = self
            .run(|mut c| async move { ::redis::cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(1).query_async(&mut c).await })
            .await?;
        Ok(reply.ids.into_iter().next().map(|e| e.id).unwrap_or_default())
    }

    /// Deletes every window key of a pipeline (they are named dynamically,
    /// so they are found with `SCAN`).
    pub(super) async fn delete_window_keys(&self, pipeline: &str) -> StoreResult<()> {
        self.delete_keys_under(&self.keys(pipeline).windows).await
    }

    /// Deletes every key starting with `prefix` (`SCAN`, then `UNLINK`).
    pub(super) async fn delete_keys_under(&self, prefix: &str) -> StoreResult<()> {
        let pattern = format!("{}*", glob_escape(prefix));
        let pattern = &pattern;
        let mut cursor: u64 = 0;
        loop {
            // On a cluster: on the master of the prefix's slot (a prefix
            // under a pipeline's hash tag has all its keys there).
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut c| async move {
                    let scan = ::redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).clone();
                    ::redis::from_owned_redis_value(c.on_master_of(prefix, &scan).await?)
                })
                .await?;
            if !keys.is_empty() {
                let keys = &keys;
                let _: i64 = self.run(|mut c| async move { ::redis::cmd("UNLINK").arg(keys).query_async(&mut c).await }).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl WindowState for RedisStore {
    async fn window_clock(&self, pipeline: &str) -> StoreResult<WindowClock> {
        self.clock(pipeline).await
    }

    async fn begin_close(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<CloseLease>> {
        self.take_gate(pipeline, now_ms, lease_ms).await
    }

    async fn read_panes(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<PaneRow>> {
        self.panes(pipeline, window, from, to).await
    }

    async fn distinct_counts(&self, pipeline: &str, window: &str, queries: &[DistinctQuery]) -> StoreResult<Vec<u64>> {
        self.pfcounts(pipeline, window, queries).await
    }

    async fn dirty_marks(&self, pipeline: &str, window: &str) -> StoreResult<Vec<DirtyMark>> {
        self.dirty(pipeline, window).await
    }

    async fn finish_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<CloseOutcome> {
        self.commit_close(pipeline, commit).await
    }

    async fn final_results_at_most(&self, pipeline: &str, window: &str, from: i64, to: i64, max: usize) -> StoreResult<(Vec<WindowRecord>, bool)> {
        self.finals(pipeline, window, from, to, max).await
    }

    async fn read_window_results(&self, pipeline: &str, window: &str, cursor: &str, limit: usize) -> StoreResult<Page<WindowRecord>> {
        self.results_page(pipeline, window, cursor, limit).await
    }

    async fn tail_cursor(&self, pipeline: &str, window: Option<&str>) -> StoreResult<String> {
        self.stream_tail(pipeline, window).await
    }
}

fn parse_clock(values: &[Option<String>]) -> WindowClock {
    let num = |i: usize, default: i64| values.get(i).and_then(|v| v.as_deref()).and_then(|v| v.parse().ok()).unwrap_or(default);
    WindowClock { watermark: num(0, NO_WATERMARK), max_event_ts: num(1, NO_WATERMARK), last_event_at: num(2, 0), gate_until: num(3, 0) }
}

/// Turns a pane hash into rows, one per group. A field that cannot be read
/// (not a finite number where one belongs, an unknown name) drops its
/// group's row, reported through `internal_events`: a row read as missing
/// instead of a window whose every read fails.
fn parse_pane(window: &str, pane: i64, fields: Vec<(String, String)>) -> Vec<PaneRow> {
    let mut groups: std::collections::BTreeMap<String, PaneAgg> = Default::default();
    let mut bad: std::collections::BTreeMap<String, String> = Default::default();
    let mut aggregates = 0usize;
    for (name, value) in fields {
        let Some((kind, rest)) = name.split_once('|') else {
            skipped(window, pane, "", &format!("field {name:?}"));
            continue;
        };
        if kind == "k" {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_AGGREGATES => aggregates = n,
                _ => skipped(window, pane, "", &format!("aggregates {value:?}")),
            }
            continue;
        }
        if kind == "h" {
            continue; // marks that a HyperLogLog exists
        }
        let (index, group) = match kind {
            "c" => (None, rest),
            _ => match rest.split_once('|').map(|(i, g)| (i.parse::<usize>(), g)) {
                Some((Ok(i), g)) if i < MAX_AGGREGATES => (Some(i), g),
                Some((_, g)) => {
                    bad.insert(g.to_string(), format!("field {name:?}"));
                    continue;
                }
                None => {
                    skipped(window, pane, "", &format!("field {name:?}"));
                    continue;
                }
            },
        };
        if let Err(reason) = parse_field(groups.entry(group.to_string()).or_default(), kind, index, &value) {
            bad.insert(group.to_string(), format!("field {name:?} = {value:?}: {reason}"));
        }
    }
    for (group, reason) in &bad {
        groups.remove(group);
        skipped(window, pane, group, reason);
    }
    groups
        .into_iter()
        .map(|(group, mut agg)| {
            let count = agg.count;
            if agg.fields.len() < aggregates {
                agg.fields.resize(aggregates, FieldAgg::default());
            }
            for field in &mut agg.fields {
                field.n = count.saturating_sub(field.missing);
            }
            PaneRow { pane, group, agg }
        })
        .collect()
}

/// Adds one stored field to its row.
fn parse_field(agg: &mut PaneAgg, kind: &str, index: Option<usize>, value: &str) -> Result<(), &'static str> {
    let Some(index) = index else {
        agg.count = value.parse().map_err(|_| "not a count")?;
        return Ok(());
    };
    if agg.fields.len() <= index {
        agg.fields.resize(index + 1, FieldAgg::default());
    }
    let field = &mut agg.fields[index];
    let number = || value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or("not a finite number");
    match kind {
        // Written by earlier versions; derived from count - missing now.
        "n" => {}
        "s" => field.sum += number()?,
        // Integer sums; a float-looking one (written by a bad step) still counts.
        "si" => field.sum += value.parse::<i64>().map(|v| v as f64).or_else(|_| number())?,
        "mn" => field.min = Some(number()?),
        "mx" => field.max = Some(number()?),
        "m" => field.missing = value.parse().map_err(|_| "not a count")?,
        _ => return Err("unknown field"),
    }
    if !field.sum.is_finite() {
        return Err("the sum is not finite");
    }
    Ok(())
}

fn skipped(window: &str, pane: i64, group: &str, reason: &str) {
    emit(BadPaneRowSkipped { window, pane, group, reason });
}

fn record_entry(window: &str, e: &StreamId) -> StoreResult<WindowRecord> {
    let text = |name: &str| -> StoreResult<String> {
        e.get::<String>(name).ok_or_else(|| StoreError::Internal(format!("window result {} lacks `{name}`", e.id)))
    };
    Ok(WindowRecord {
        window: window.to_string(),
        start: text("s")?.parse().map_err(|_| corrupt("result start", &e.id))?,
        group: text("g")?,
        json: text("j")?,
    })
}

pub(super) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Internal(format!("corrupt {what} in Redis: {value:?}"))
}

/// Escapes `SCAN MATCH` glob characters (`{` is literal already).
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
