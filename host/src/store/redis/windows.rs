//! Windows on Redis: completion with window deltas, the event-time clock and
//! its close gate, panes, HyperLogLogs, results, finals and alerts.
//!
//! Keys (`W` = `P:{id}:w:<window>:`, all in the pipeline's hash slot; the
//! scripts build pane and HyperLogLog key names from `W`, which Redis
//! Cluster accepts because the hash tag pins them to the script's slot):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{id}:wclock` | hash | `wm` watermark, `maxts` newest event time, `last` wall ms of the last apply, `gate` close lease deadline |
//! | `W panes` | sorted set | pane starts (score = member) |
//! | `W p:<pane>` | hash | `k\|` aggregates per row; `c\|<group>` count; per aggregate `i`: `s\|<i>\|<group>` + `si\|…` sum (float + integer part), `mn\|…`, `mx\|…`, `m\|…` missing (values taken = count − missing), `h\|…` a HyperLogLog exists |
//! | `W h:<pane>:<i>:<group>` | HyperLogLog | `count_distinct` aggregate `i` |
//! | `W dirty` | set | `<pane>\|<group>`: closed windows updated since they were emitted |
//! | `W results` | stream | emitted results: `s` start, `g` group, `j` record JSON (the window-results stream) |
//! | `W resultsidx` | sorted set | stream ids by window start (results expire by start) |
//! | `W final` / `W finalh` | sorted set (score start) / hash | `<start>\|<group>` → final record JSON |
//! | `W alerted:<start>` | set | groups already alerted for that window |
//! | `P:{id}:alerts` | stream | spike alerts: `w`, `s`, `g`, `j` |

use std::collections::HashSet;

use ::redis::streams::StreamId;
use serde_json::json;

use super::{is_stream_id, to_json, DlqMeta, RedisStore, GROUP};
use crate::store::{
    AlertRecord, CloseCommit, CompleteReport, DirtyMark, DistinctQuery, EntryResult, FieldAgg, PaneAgg, PaneRow, Page,
    StoreError, StoreResult, WindowClock, WindowRecord, NO_WATERMARK,
};

/// Panes and HyperLogLogs expire this long after their last update even if
/// no closer ever drops them (a deleted window definition, say).
const PANE_TTL_MS: i64 = 8 * 86_400_000;

impl RedisStore {
    /// Acknowledges and applies entries; see `Store::complete_windowed`.
    pub(super) async fn complete_entries(
        &self,
        pipeline: &str,
        results: &[EntryResult],
        valid_below: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<CompleteReport> {
        let k = self.keys(pipeline);
        let mut skipped = 0usize;
        let mut args: Vec<Vec<u8>> = Vec::new();
        let mut entries = 0usize;
        let mut seen = HashSet::new();
        for result in results {
            // An id Redis would reject cannot be pending; a repeated id in
            // the same call can only be applied once.
            if !is_stream_id(&result.delivery_id) || !seen.insert(result.delivery_id.as_str()) {
                skipped += 1;
                continue;
            }
            entries += 1;
            args.push(result.delivery_id.clone().into_bytes());
            args.push(result.finished.to_string().into_bytes());
            args.push(result.outputs.len().to_string().into_bytes());
            args.push(result.dead.len().to_string().into_bytes());
            args.push(result.retries.len().to_string().into_bytes());
            push_window_args(&mut args, result);
            if !result.outputs.is_empty() {
                // One output stream entry per queue entry: a JSON array.
                let mut json = Vec::with_capacity(result.outputs.iter().map(|e| e.byte_size() + 64).sum());
                json.push(b'[');
                for (i, event) in result.outputs.iter().enumerate() {
                    if i > 0 {
                        json.push(b',');
                    }
                    event.write_json(&mut json);
                }
                json.push(b']');
                args.push(json);
            }
            for dead in &result.dead {
                let meta = DlqMeta {
                    error: dead.error.clone(),
                    error_kind: dead.error_kind,
                    stage: dead.stage.clone(),
                    plugin: dead.plugin.clone(),
                    plugin_version: dead.plugin_version,
                    attempts: dead.attempts,
                    first_failed_at: dead.first_failed_at,
                    last_failed_at: dead.last_failed_at,
                };
                args.push(to_json(&dead.event)?.into_bytes());
                args.push(to_json(&dead.stage)?.into_bytes());
                args.push(to_json(&meta)?.into_bytes());
            }
            for retry in &result.retries {
                args.push(retry.due_at_ms.to_string().into_bytes());
                let member = format!("{:032x}|{}", rand::random::<u128>(), to_json(&retry.event)?);
                args.push(member.into_bytes());
            }
        }
        if entries == 0 {
            return Ok(CompleteReport { applied: 0, skipped, stale: false });
        }
        let expected = match valid_below {
            None => String::new(),
            Some(v) => v.to_string(),
        };
        let (args, expected) = (&args, &expected);
        let (applied, skipped_here): (i64, i64) = self
            .run(|mut c| async move {
                let mut invocation = self.scripts.complete.prepare_invoke();
                invocation
                    .key(&k.queue)
                    .key(&k.output)
                    .key(&k.dlq)
                    .key(&k.retry)
                    .key(&k.depth)
                    .key(&k.counters)
                    .key(&k.clock)
                    .arg(GROUP)
                    .arg(entries)
                    .arg(expected.as_str())
                    .arg(now_ms)
                    .arg(&k.windows)
                    .arg(PANE_TTL_MS);
                for arg in args {
                    invocation.arg(arg.as_slice());
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
        if applied < 0 {
            return Ok(CompleteReport { applied: 0, skipped, stale: true });
        }
        Ok(CompleteReport { applied: applied as usize, skipped: skipped + skipped_here as usize, stale: false })
    }

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

    pub(super) async fn take_gate(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<WindowClock>> {
        let k = self.keys(pipeline);
        let key = &k.clock;
        let reply: Option<Vec<Option<String>>> = self
            .run(|mut c| async move {
                self.scripts.begin_close.key(key).arg(now_ms).arg(now_ms + lease_ms).invoke_async(&mut c).await
            })
            .await?;
        Ok(reply.map(|values| parse_clock(&values)))
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
                rows.extend(parse_pane(*pane, fields)?);
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

    pub(super) async fn commit_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<()> {
        let k = self.keys(pipeline);
        let record = |r: &WindowRecord| json!([r.window, r.start.to_string(), r.group, r.json]);
        let payload = json!({
            "wm": commit.watermark.to_string(),
            "emit": commit.emit.iter().map(record).collect::<Vec<_>>(),
            "finals": commit.finals.iter().map(record).collect::<Vec<_>>(),
            "drop": commit.drop_panes.iter().map(|p| json!([p.window, p.pane.to_string(), p.group])).collect::<Vec<_>>(),
            "dirty": commit.dirty_done.iter().map(|d| json!([d.window, format!("{}|{}", d.pane, d.group)])).collect::<Vec<_>>(),
            "expire": commit.expire.iter().map(|(w, cutoff)| json!([w, cutoff.to_string()])).collect::<Vec<_>>(),
        })
        .to_string();
        let (k, payload) = (&k, &payload);
        let _: i64 = self
            .run(|mut c| async move {
                self.scripts.finish_close.key(&k.clock).arg(&k.windows).arg(payload).invoke_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    pub(super) async fn finals(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<WindowRecord>> {
        let base = format!("{}{window}:", self.keys(pipeline).windows);
        let (index, hash) = (format!("{base}final"), format!("{base}finalh"));
        let (index, hash) = (&index, &hash);
        let members: Vec<String> = self
            .run(|mut c| async move { ::redis::cmd("ZRANGEBYSCORE").arg(index).arg(from).arg(to).query_async(&mut c).await })
            .await?;
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
        Ok(records)
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

    pub(super) async fn alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool> {
        let k = self.keys(pipeline);
        let alerted = format!("{}{}:alerted:{}", k.windows, alert.window, alert.start);
        let (k, alerted) = (&k, &alerted);
        let added: i64 = self
            .run(|mut c| async move {
                self.scripts
                    .put_alert
                    .key(&k.alerts)
                    .key(alerted)
                    .arg(&alert.group)
                    .arg(&alert.window)
                    .arg(alert.start)
                    .arg(&alert.json)
                    .arg(now_ms - retention_ms)
                    .arg(retention_ms)
                    .arg(now_ms.max(0))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(added == 1)
    }

    pub(super) async fn alerts_page(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>> {
        let key = self.keys(pipeline).alerts;
        let (entries, next_cursor) = self.xrange_page(&key, cursor, limit).await?;
        let mut items = Vec::with_capacity(entries.len());
        for e in &entries {
            let text = |name: &str| -> StoreResult<String> {
                e.get::<String>(name).ok_or_else(|| StoreError::Internal(format!("alert {} lacks `{name}`", e.id)))
            };
            items.push(AlertRecord {
                window: text("w")?,
                start: text("s")?.parse().map_err(|_| corrupt("alert start", &e.id))?,
                group: text("g")?,
                json: text("j")?,
            });
        }
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
        let pattern = format!("{}*", glob_escape(&self.keys(pipeline).windows));
        let pattern = &pattern;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut c| async move {
                    ::redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query_async(&mut c).await
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

/// Appends one entry's window operations to the script's arguments, flat
/// and ready to apply (the script builds no field names and decodes no
/// JSON): the count of items that follow; the newest event time (or "");
/// the explicit dirty marks (`n`, then window, pane, group each); then one
/// block per (window, pane): window, pane, dirty-at (or ""), aggregates per
/// row, the groups (`n`, then each; marked dirty when the watermark has
/// reached dirty-at), `HINCRBY`s (`n`, then field, amount each),
/// `HINCRBYFLOAT`s, minima, maxima (same shape) and HyperLogLogs (`n`, then
/// key suffix, value count, values each).
fn push_window_args(args: &mut Vec<Vec<u8>>, result: &EntryResult) {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    #[derive(Default)]
    struct Block<'a> {
        dirty_at: Option<i64>,
        aggregates: usize,
        groups: Vec<&'a str>,
        ints: Vec<(String, String)>,
        floats: Vec<(String, String)>,
        mins: Vec<(String, String)>,
        maxs: Vec<(String, String)>,
        sketches: Vec<(String, &'a [String])>,
    }
    let mut blocks: BTreeMap<(&str, i64), Block> = BTreeMap::new();
    for d in &result.window_deltas {
        let b = blocks.entry((d.window.as_str(), d.pane)).or_default();
        b.dirty_at = b.dirty_at.or(d.dirty_at);
        b.aggregates = b.aggregates.max(d.agg.fields.len());
        b.groups.push(&d.group);
        let g = &d.group;
        b.ints.push((format!("c|{g}"), d.agg.count.to_string()));
        for (i, f) in d.agg.fields.iter().enumerate() {
            // `n` is count - missing: only missing is kept.
            if f.missing > 0 {
                b.ints.push((format!("m|{i}|{g}"), f.missing.to_string()));
            }
            if f.sum != 0.0 {
                // `HINCRBY` is cheaper than `HINCRBYFLOAT`: integer sums go apart.
                if f.sum.fract() == 0.0 && f.sum.abs() < 9.0e15 {
                    b.ints.push((format!("si|{i}|{g}"), (f.sum as i64).to_string()));
                } else {
                    b.floats.push((format!("s|{i}|{g}"), format!("{:?}", f.sum)));
                }
            }
            if let Some(v) = f.min {
                b.mins.push((format!("mn|{i}|{g}"), format!("{v:?}")));
            }
            if let Some(v) = f.max {
                b.maxs.push((format!("mx|{i}|{g}"), format!("{v:?}")));
            }
        }
        for (i, values) in d.distinct.iter().enumerate() {
            if !values.is_empty() {
                b.sketches.push((format!("{i}:{g}"), values.as_slice()));
            }
        }
    }
    let at = args.len();
    args.push(Vec::new());
    let text = |v: Option<String>| v.unwrap_or_default().into_bytes();
    args.push(text(result.max_event_ts.map(|t| t.to_string())));
    args.push(result.dirty.len().to_string().into_bytes());
    for m in &result.dirty {
        args.push(m.window.clone().into_bytes());
        args.push(m.pane.to_string().into_bytes());
        args.push(m.group.clone().into_bytes());
    }
    args.push(blocks.len().to_string().into_bytes());
    let pairs = |args: &mut Vec<Vec<u8>>, list: Vec<(String, String)>| {
        args.push(list.len().to_string().into_bytes());
        for (field, value) in list {
            args.push(field.into_bytes());
            args.push(value.into_bytes());
        }
    };
    for ((window, pane), b) in blocks {
        args.push(window.as_bytes().to_vec());
        args.push(pane.to_string().into_bytes());
        args.push(text(b.dirty_at.map(|v| v.to_string())));
        args.push(b.aggregates.to_string().into_bytes());
        args.push(b.groups.len().to_string().into_bytes());
        args.extend(b.groups.iter().map(|g| g.as_bytes().to_vec()));
        pairs(args, b.ints);
        pairs(args, b.floats);
        pairs(args, b.mins);
        pairs(args, b.maxs);
        args.push(b.sketches.len().to_string().into_bytes());
        for (suffix, values) in b.sketches {
            let mut key = String::with_capacity(suffix.len() + 24);
            let _ = write!(key, "h:{pane}:{suffix}");
            args.push(key.into_bytes());
            args.push(values.len().to_string().into_bytes());
            args.extend(values.iter().map(|v| v.as_bytes().to_vec()));
        }
    }
    args[at] = (args.len() - at - 1).to_string().into_bytes();
}

fn parse_clock(values: &[Option<String>]) -> WindowClock {
    let num = |i: usize, default: i64| values.get(i).and_then(|v| v.as_deref()).and_then(|v| v.parse().ok()).unwrap_or(default);
    WindowClock { watermark: num(0, NO_WATERMARK), max_event_ts: num(1, NO_WATERMARK), last_event_at: num(2, 0), gate_until: num(3, 0) }
}

/// Turns a pane hash into rows, one per group.
fn parse_pane(pane: i64, fields: Vec<(String, String)>) -> StoreResult<Vec<PaneRow>> {
    let mut groups: std::collections::BTreeMap<String, PaneAgg> = Default::default();
    let mut aggregates = 0usize;
    for (name, value) in fields {
        let bad = || corrupt("pane field", &name);
        let (kind, rest) = name.split_once('|').ok_or_else(bad)?;
        if kind == "k" {
            aggregates = value.parse().map_err(|_| bad())?;
            if aggregates > crate::window::spec::MAX_AGGREGATES {
                return Err(bad());
            }
            continue;
        }
        if kind == "h" {
            continue; // marks that a HyperLogLog exists
        }
        if kind == "c" {
            groups.entry(rest.to_string()).or_default().count = value.parse().map_err(|_| bad())?;
            continue;
        }
        let (index, group) = rest.split_once('|').ok_or_else(bad)?;
        let index: usize = index.parse().map_err(|_| bad())?;
        if index >= crate::window::spec::MAX_AGGREGATES {
            return Err(bad());
        }
        let agg = groups.entry(group.to_string()).or_default();
        if agg.fields.len() <= index {
            agg.fields.resize(index + 1, FieldAgg::default());
        }
        let field = &mut agg.fields[index];
        let number = || value.parse::<f64>().map_err(|_| bad());
        match kind {
            // Written by earlier versions; derived from count - missing now.
            "n" => {}
            "s" => field.sum += number()?,
            "si" => field.sum += value.parse::<i64>().map_err(|_| bad())? as f64,
            "mn" => field.min = Some(number()?),
            "mx" => field.max = Some(number()?),
            "m" => field.missing = value.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    Ok(groups
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
        .collect())
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

fn corrupt(what: &str, value: &str) -> StoreError {
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

/// KEYS: queue, output, dlq, retry, depth, counters, clock.
/// ARGV: group, entry count, valid-below watermark ("" = no check), now,
/// window key prefix, pane TTL, then per entry: id, finished, #outputs,
/// #dead, #retries, the window operations (see `push_window_args`), the
/// outputs (when #outputs > 0: one JSON array of the events, appended as one
/// output stream entry), the dead (event JSON, stage JSON, meta JSON), the
/// retries (due, member).
/// Answers {applied, skipped}, or {-1, -1} when the stored watermark has
/// reached the valid-below one or the gate is held (then nothing was done).
pub(super) const COMPLETE_LUA: &str = r#"
local group = ARGV[1]
local count = tonumber(ARGV[2])
local now = tonumber(ARGV[4])
local wbase = ARGV[5]
local ttl = tonumber(ARGV[6])
local clock = redis.call('HMGET', KEYS[7], 'wm', 'gate')
-- No watermark yet reads as the smallest one (i64::MIN, as a double).
local wm = tonumber(clock[1] or '-9223372036854775808')
if ARGV[3] ~= '' then
  if wm >= tonumber(ARGV[3]) or (clock[2] and tonumber(clock[2]) > now) then
    return {-1, -1}
  end
end
local touched = {}
-- Applies one entry's window operations, read from ARGV from index j on
-- (see `push_window_args`); answers the entry's newest event time or nil.
local function apply_windows(j)
  local t = tonumber(ARGV[j])
  j = j + 1
  local nx = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, nx do
    redis.call('SADD', wbase .. ARGV[j] .. ':dirty', ARGV[j + 1] .. '|' .. ARGV[j + 2])
    j = j + 3
  end
  local nb = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, nb do
    local base = wbase .. ARGV[j] .. ':'
    local pane, dirty_at = ARGV[j + 1], ARGV[j + 2]
    local hk = base .. 'p:' .. pane
    if not touched[hk] then
      touched[hk] = true
      redis.call('ZADD', base .. 'panes', pane, pane)
      -- How many aggregates each row has (one window per pane hash).
      redis.call('HSET', hk, 'k|', ARGV[j + 3])
    end
    local ng = tonumber(ARGV[j + 4])
    j = j + 5
    if dirty_at ~= '' and wm >= tonumber(dirty_at) then
      for k = j, j + ng - 1 do
        redis.call('SADD', base .. 'dirty', pane .. '|' .. ARGV[k])
      end
    end
    j = j + ng
    local n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      redis.call('HINCRBY', hk, ARGV[k], ARGV[k + 1])
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      redis.call('HINCRBYFLOAT', hk, ARGV[k], ARGV[k + 1])
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      local old = redis.call('HGET', hk, ARGV[k])
      if not old or tonumber(old) > tonumber(ARGV[k + 1]) then redis.call('HSET', hk, ARGV[k], ARGV[k + 1]) end
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    for k = j + 1, j + 2 * n, 2 do
      local old = redis.call('HGET', hk, ARGV[k])
      if not old or tonumber(old) < tonumber(ARGV[k + 1]) then redis.call('HSET', hk, ARGV[k], ARGV[k + 1]) end
    end
    j = j + 1 + 2 * n
    n = tonumber(ARGV[j])
    j = j + 1
    for _ = 1, n do
      local suffix, nv = ARGV[j], tonumber(ARGV[j + 1])
      j = j + 2
      local key = base .. suffix
      for s = j, j + nv - 1, 4000 do
        redis.call('PFADD', key, unpack(ARGV, s, math.min(s + 3999, j + nv - 1)))
      end
      j = j + nv
      redis.call('PEXPIRE', key, ttl)
      -- 'h:<pane>:<i>:<group>' → the row's marker 'h|<i>|<group>'.
      local rest = string.sub(suffix, string.len(pane) + 4)
      local colon = string.find(rest, ':', 1, true)
      redis.call('HSET', hk, 'h|' .. string.sub(rest, 1, colon - 1) .. '|' .. string.sub(rest, colon + 1), 1)
    end
  end
  return t
end
local i = 7
local applied, skipped, finished, emitted = 0, 0, 0, 0
local maxts = nil
for _ = 1, count do
  local id = ARGV[i]
  local fin = tonumber(ARGV[i + 1])
  local nout = tonumber(ARGV[i + 2])
  local ndead = tonumber(ARGV[i + 3])
  local nretry = tonumber(ARGV[i + 4])
  local wstart, nw = i + 6, tonumber(ARGV[i + 5])
  i = i + 6 + nw
  local nouts = 0
  if nout > 0 then nouts = 1 end
  if redis.call('XACK', KEYS[1], group, id) == 1 then
    if nout > 0 then
      redis.call('XADD', KEYS[2], '*', 'n', nout, 'e', ARGV[i])
    end
    i = i + nouts
    for j = 0, ndead - 1 do
      local b = i + 3 * j
      redis.call('XADD', KEYS[3], '*', 'e', ARGV[b], 's', ARGV[b + 1], 'm', ARGV[b + 2])
    end
    i = i + 3 * ndead
    for j = 0, nretry - 1 do
      redis.call('ZADD', KEYS[4], ARGV[i + 2 * j], ARGV[i + 2 * j + 1])
    end
    i = i + 2 * nretry
    if nw > 0 then
      local t = apply_windows(wstart)
      if t and (maxts == nil or t > maxts) then maxts = t end
    end
    redis.call('XDEL', KEYS[1], id)
    finished = finished + fin
    emitted = emitted + nout
    applied = applied + 1
  else
    i = i + nouts + 3 * ndead + 2 * nretry
    skipped = skipped + 1
  end
end
if finished > 0 then
  if redis.call('DECRBY', KEYS[5], finished) < 0 then
    redis.call('SET', KEYS[5], 0)
  end
  redis.call('HINCRBY', KEYS[6], 'processed', finished)
end
if emitted > 0 then
  redis.call('HINCRBY', KEYS[6], 'emitted', emitted)
end
for hk, _ in pairs(touched) do
  redis.call('PEXPIRE', hk, ttl)
end
if maxts ~= nil then
  local old = redis.call('HGET', KEYS[7], 'maxts')
  if not old or tonumber(old) < maxts then
    redis.call('HSET', KEYS[7], 'maxts', string.format('%d', maxts))
  end
  redis.call('HSET', KEYS[7], 'last', ARGV[4])
end
return {applied, skipped}
"#;

/// KEYS: clock. ARGV: now, gate deadline. Answers {wm, maxts, last, gate}
/// after taking the gate, or nil if someone holds it.
pub(super) const BEGIN_CLOSE_LUA: &str = r#"
local gate = redis.call('HGET', KEYS[1], 'gate')
if gate and tonumber(gate) > tonumber(ARGV[1]) then
  return nil
end
redis.call('HSET', KEYS[1], 'gate', ARGV[2])
return redis.call('HMGET', KEYS[1], 'wm', 'maxts', 'last', 'gate')
"#;

/// KEYS: clock. ARGV: window key prefix, commit JSON (see `commit_close`).
pub(super) const FINISH_CLOSE_LUA: &str = r#"
local wbase = ARGV[1]
local c = cjson.decode(ARGV[2])
for _, r in ipairs(c.emit) do
  local id = redis.call('XADD', wbase .. r[1] .. ':results', '*', 's', r[2], 'g', r[3], 'j', r[4])
  redis.call('ZADD', wbase .. r[1] .. ':resultsidx', r[2], id)
end
for _, r in ipairs(c.finals) do
  local base = wbase .. r[1] .. ':'
  local member = r[2] .. '|' .. r[3]
  redis.call('ZADD', base .. 'final', r[2], member)
  redis.call('HSET', base .. 'finalh', member, r[4])
end
local function drop_group(base, pane, g)
  local hk = base .. 'p:' .. pane
  redis.call('HDEL', hk, 'c|' .. g)
  for i = 0, 15 do
    local suffix = '|' .. i .. '|' .. g
    redis.call('HDEL', hk, 'n' .. suffix, 's' .. suffix, 'si' .. suffix, 'mn' .. suffix, 'mx' .. suffix, 'm' .. suffix)
    if redis.call('HDEL', hk, 'h' .. suffix) == 1 then
      redis.call('UNLINK', base .. 'h:' .. pane .. ':' .. i .. ':' .. g)
    end
  end
  local left = redis.call('HLEN', hk)
  if left == 0 or (left == 1 and redis.call('HEXISTS', hk, 'k|') == 1) then
    redis.call('UNLINK', hk)
    redis.call('ZREM', base .. 'panes', pane)
  end
end
for _, p in ipairs(c.drop) do
  local base = wbase .. p[1] .. ':'
  local pane = p[2]
  if p[3] == cjson.null or p[3] == nil then
    local hk = base .. 'p:' .. pane
    local fields = redis.call('HKEYS', hk)
    for _, f in ipairs(fields) do
      if string.sub(f, 1, 2) == 'h|' then
        local rest = string.sub(f, 3)
        local bar = string.find(rest, '|', 1, true)
        redis.call('UNLINK', base .. 'h:' .. pane .. ':' .. string.sub(rest, 1, bar - 1) .. ':' .. string.sub(rest, bar + 1))
      end
    end
    redis.call('UNLINK', hk)
    redis.call('ZREM', base .. 'panes', pane)
  else
    drop_group(base, pane, p[3])
  end
end
for _, d in ipairs(c.dirty) do
  redis.call('SREM', wbase .. d[1] .. ':dirty', d[2])
end
for _, e in ipairs(c.expire) do
  local base = wbase .. e[1] .. ':'
  local old = redis.call('ZRANGEBYSCORE', base .. 'final', '-inf', '(' .. e[2])
  for s = 1, #old, 1000 do
    redis.call('HDEL', base .. 'finalh', unpack(old, s, math.min(s + 999, #old)))
  end
  redis.call('ZREMRANGEBYSCORE', base .. 'final', '-inf', '(' .. e[2])
  local ids = redis.call('ZRANGEBYSCORE', base .. 'resultsidx', '-inf', '(' .. e[2])
  for s = 1, #ids, 1000 do
    redis.call('XDEL', base .. 'results', unpack(ids, s, math.min(s + 999, #ids)))
  end
  redis.call('ZREMRANGEBYSCORE', base .. 'resultsidx', '-inf', '(' .. e[2])
end
redis.call('HSET', KEYS[1], 'wm', c.wm, 'gate', '0')
return 1
"#;

/// KEYS: alerts stream, the window's alerted set. ARGV: group, window,
/// start, alert JSON, trim-before ms, retention ms, now. Answers 1 if appended.
pub(super) const PUT_ALERT_LUA: &str = r#"
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
-- Ids carry the caller's clock so retention is measured in it; a clock
-- behind the stream's last id falls back to Redis's own.
local ok = pcall(redis.call, 'XADD', KEYS[1], ARGV[7] .. '-*', 'w', ARGV[2], 's', ARGV[3], 'g', ARGV[1], 'j', ARGV[4])
if not ok then
  redis.call('XADD', KEYS[1], '*', 'w', ARGV[2], 's', ARGV[3], 'g', ARGV[1], 'j', ARGV[4])
end
if tonumber(ARGV[5]) > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[5])
end
return 1
"#;
