//! Completion on Redis: one `complete` script run acknowledges entries and
//! applies, per entry still pending, its outputs, DLQ entries, retries and
//! window deltas (or, when the watermark moved on, nothing at all). The
//! script reads and checks everything before its first write (see
//! `lua/complete.lua`), and deltas carrying a number that is not finite are
//! refused here before it runs, so a completion is applied whole or not at
//! all.

use std::collections::HashSet;

use super::dlq::DlqMeta;
use super::*;
use crate::domain::{CompleteReport, EntryResult};
use crate::store::shared::{check_finite, output_json};

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
        check_finite(results)?;
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
            args.push(result.entry_bytes.to_string().into_bytes());
            let retries: Vec<String> = result.retries.iter().map(|retry| to_json(&retry.event)).collect::<StoreResult<_>>()?;
            // A waiting retry counts its event JSON (what a promotion joins).
            args.push(retries.iter().map(String::len).sum::<usize>().to_string().into_bytes());
            args.push(result.outputs.len().to_string().into_bytes());
            args.push(result.dead.len().to_string().into_bytes());
            args.push(result.retries.len().to_string().into_bytes());
            push_window_args(&mut args, result);
            if !result.outputs.is_empty() {
                // One output stream entry per queue entry: a JSON array.
                args.push(output_json(&result.outputs));
            }
            for dead in &result.dead {
                args.push(to_json(&dead.event)?.into_bytes());
                // Where a replay starts: the `replay` script copies it into the queued event.
                args.push(to_json(&dead.failed_at.replay_start())?.into_bytes());
                args.push(to_json(&DlqMeta::of(dead))?.into_bytes());
            }
            for (retry, json) in result.retries.iter().zip(&retries) {
                args.push(retry.due_at_ms.to_string().into_bytes());
                let member = format!("{:032x}|{json}", rand::random::<u128>());
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
            .run_replicated(|mut c| async move {
                let mut invocation = self.scripts.complete.prepare_invoke();
                invocation
                    .key(&k.queue)
                    .key(&k.output)
                    .key(&k.dlq)
                    .key(&k.retry)
                    .key(&k.depth)
                    .key(&k.counters)
                    .key(&k.clock)
                    .key(&k.bytes)
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
}

/// Appends one entry's window operations to the script's arguments, flat
/// and ready to apply (the script builds no field names and decodes no
/// JSON): the count of items that follow; the newest event time (or "");
/// the explicit dirty marks (`n`, then window, pane, group each); then one
/// block per (window, pane): window, pane, dirty-at (or ""), aggregates per
/// row, the groups (`n`, then each; marked dirty when the watermark has
/// reached dirty-at), integer additions (`n`, then field, amount each:
/// counts and missing), integer sums (`si|`, kept exact up to 2^53, then
/// moved on in the float sum), float sums, minima, maxima (same shape) and
/// HyperLogLogs (`n`, then key suffix, value count, values each).
fn push_window_args(args: &mut Vec<Vec<u8>>, result: &EntryResult) {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    #[derive(Default)]
    struct Block<'a> {
        dirty_at: Option<i64>,
        aggregates: usize,
        groups: Vec<&'a str>,
        ints: Vec<(String, String)>,
        int_sums: Vec<(String, String)>,
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
                    b.int_sums.push((format!("si|{i}|{g}"), (f.sum as i64).to_string()));
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
        pairs(args, b.int_sums);
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
