//! The queue on redb: enqueue, hand out (pending entries are kept in memory,
//! see the module above), complete with window deltas in the same write
//! transaction, retries and counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyperloglogplus::HyperLogLog;
use redb::ReadableTable;

use super::ingest_once;
use super::sketch::{new_sketch, parse_sketch, value_hash};
use super::windows::{parse_pane, stored_clock};
use super::*;
use crate::domain::{
    CompleteReport, Counters, Delivery, DirtyMark, EnqueueOptions, EnqueueOutcome, Enqueued, EntryResult, PaneAgg, PaneDelta, QueueLimits, QueuedEvent,
};
use crate::store::shared::{check_finite, event_json, join_json, queue_json};
use crate::store::Queue;

/// One entry's results, serialized before the transaction starts.
struct Prepared {
    seq: Option<u64>,
    finished: u64,
    /// The stored size of its waiting retries (what they add to the queued bytes).
    retry_bytes: u64,
    outputs: Vec<Vec<u8>>,
    dead: Vec<Vec<u8>>,
    retries: Vec<(i64, Vec<u8>)>,
    window_deltas: Vec<PaneDelta>,
    dirty: Vec<DirtyMark>,
    max_event_ts: Option<i64>,
}

impl EmbeddedStore {
    /// Hands out up to `max` entries not yet delivered.
    async fn take_new(&self, state: Arc<PipeState>, pipeline: &str, consumer: &str, max: usize) -> StoreResult<Vec<Delivery>> {
        let (pipeline, consumer) = (pipeline.to_string(), consumer.to_string());
        self.blocking(move |db| {
            let mut mem = state.mem.lock();
            let txn = db.begin_read().map_err(db_err)?;
            let queue = txn.open_table(QUEUE).map_err(db_err)?;
            let Some(start) = mem.last_delivered.checked_add(1) else { return Ok(Vec::new()) };
            let mut out = Vec::new();
            for item in queue.range((pipeline.as_str(), start)..=(pipeline.as_str(), u64::MAX)).map_err(db_err)?.take(max) {
                let (key, value) = item.map_err(db_err)?;
                let seq = key.value().1;
                out.push((seq, parse_chunk(seq, value.value())?, value.value().len() as u64));
            }
            let now = Instant::now();
            let deliveries = out
                .into_iter()
                .map(|(seq, events, bytes)| {
                    mem.pending.insert(seq, (consumer.clone(), now));
                    mem.last_delivered = mem.last_delivered.max(seq);
                    Delivery { id: seq.to_string(), events, bytes }
                })
                .collect();
            Ok(deliveries)
        })
        .await
    }
}

fn parse_chunk(seq: u64, bytes: &[u8]) -> StoreResult<Vec<QueuedEvent>> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad queue entry {seq}: {e}")))
}

#[async_trait]
impl Queue for EmbeddedStore {
    async fn enqueue_with(
        &self,
        pipeline: &str,
        events: &[QueuedEvent],
        rejected: u64,
        limits: QueueLimits,
        options: &EnqueueOptions,
    ) -> StoreResult<EnqueueOutcome> {
        let window = options.dedup_window_ms;
        // With a dedup window the chunk is joined in the transaction from the events that are not duplicates.
        let by_id: Vec<(String, Vec<u8>)> = if window > 0 { events.iter().map(|q| (q.event.id.clone(), event_json(q))).collect() } else { Vec::new() };
        let json = if window == 0 && !events.is_empty() { queue_json(events) } else { Vec::new() };
        let (n, p, options) = (events.len() as u64, pipeline.to_string(), options.clone());
        let answer = self
            .blocking(move |db| {
                let p = p.as_str();
                let now = options.now_ms;
                let txn = db.begin_write().map_err(db_err)?;
                if let Some(record) = &options.idempotency {
                    if let Some(stored) = ingest_once::stored_outcome(&txn, p, record, now)? {
                        return Ok(stored);
                    }
                }
                // Only the engine's steps carry a clock; purging needs one.
                let purged = now > 0 && ingest_once::purge_expired(&txn, p, window, now, by_id.len())?;
                let (json, n, duplicates) = if window > 0 {
                    let (kept, duplicates) = ingest_once::drop_seen(&txn, p, by_id, window, now)?;
                    (if kept.is_empty() { Vec::new() } else { join_json(&kept) }, kept.len() as u64, duplicates)
                } else {
                    (json, n, 0)
                };
                let depth = {
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    let mut depth = counter(&counters, p, DEPTH)?;
                    if n > 0 {
                        let bytes = counter(&counters, p, QUEUE_BYTES)?;
                        if depth.saturating_add(n) > limits.max_depth || bytes.saturating_add(json.len() as u64) > limits.max_bytes {
                            // Dropping the transaction undoes the ids recorded and the purge.
                            return Ok(EnqueueOutcome::Ran { enqueued: Enqueued::Full { depth, bytes }, duplicates: 0 });
                        }
                        let mut meta = txn.open_table(META).map_err(db_err)?;
                        let mut seq = Seq::load(&meta)?;
                        txn.open_table(QUEUE).map_err(db_err)?.insert((p, seq.take()), json.as_slice()).map_err(db_err)?;
                        seq.save(&mut meta)?;
                        depth = add(&mut counters, p, DEPTH, n as i64)?;
                        add(&mut counters, p, QUEUE_BYTES, json.len() as i64)?;
                        add(&mut counters, p, ACCEPTED, n as i64)?;
                    }
                    if rejected > 0 {
                        add(&mut counters, p, REJECTED, rejected as i64)?;
                    }
                    depth
                };
                if let Some(record) = &options.idempotency {
                    ingest_once::write_record(&txn, p, record, duplicates, now)?;
                }
                if n > 0 || rejected > 0 || duplicates > 0 || purged || options.idempotency.is_some() {
                    txn.commit().map_err(db_err)?;
                }
                Ok(EnqueueOutcome::Ran { enqueued: Enqueued::Accepted { depth }, duplicates })
            })
            .await?;
        if matches!(answer, EnqueueOutcome::Ran { enqueued: Enqueued::Accepted { .. }, .. }) {
            self.state(pipeline).notify.notify_waiters();
        }
        Ok(answer)
    }

    async fn read(&self, pipeline: &str, consumer: &str, max_entries: usize, block_ms: u64) -> StoreResult<Vec<Delivery>> {
        if max_entries == 0 {
            return Ok(Vec::new());
        }
        let state = self.state(pipeline);
        let deadline = Instant::now() + Duration::from_millis(block_ms);
        loop {
            // Registered before looking, so an enqueue in between is not missed.
            let notified = state.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.take_new(state.clone(), pipeline, consumer, max_entries).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout(deadline - now, notified).await;
        }
    }

    async fn reclaim(&self, pipeline: &str, consumer: &str, min_idle_ms: u64, max_entries: usize) -> StoreResult<Vec<Delivery>> {
        if max_entries == 0 {
            return Ok(Vec::new());
        }
        let state = self.state(pipeline);
        let (p, consumer) = (pipeline.to_string(), consumer.to_string());
        let min_idle = Duration::from_millis(min_idle_ms);
        self.blocking(move |db| {
            let mut mem = state.mem.lock();
            let now = Instant::now();
            let idle: Vec<u64> = mem
                .pending
                .iter()
                .filter(|(_, (_, since))| now.duration_since(*since) >= min_idle)
                .map(|(seq, _)| *seq)
                .collect();
            if idle.is_empty() {
                return Ok(Vec::new());
            }
            let txn = db.begin_read().map_err(db_err)?;
            let queue = txn.open_table(QUEUE).map_err(db_err)?;
            let mut out = Vec::new();
            for seq in idle {
                if out.len() >= max_entries {
                    break;
                }
                match queue.get((p.as_str(), seq)).map_err(db_err)? {
                    // Completed meanwhile.
                    None => {
                        mem.pending.remove(&seq);
                    }
                    Some(value) => {
                        let events = parse_chunk(seq, value.value())?;
                        mem.pending.insert(seq, (consumer.clone(), now));
                        out.push(Delivery { id: seq.to_string(), events, bytes: value.value().len() as u64 });
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn complete_windowed(
        &self,
        pipeline: &str,
        results: &[EntryResult],
        valid_below: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<CompleteReport> {
        check_finite(results)?;
        let mut prepared = Vec::with_capacity(results.len());
        for r in results {
            let retries = r.retries.iter().map(|t| Ok((t.due_at_ms, to_json(&t.event)?))).collect::<StoreResult<Vec<_>>>()?;
            prepared.push(Prepared {
                retry_bytes: retries.iter().map(|(_, json)| json.len() as u64).sum(),
                seq: r.delivery_id.parse().ok(),
                finished: r.finished,
                outputs: r
                    .outputs
                    .iter()
                    .map(|event| {
                        let mut json = Vec::with_capacity(event.byte_size() + 64);
                        event.write_json(&mut json);
                        json
                    })
                    .collect(),
                dead: r.dead.iter().map(to_json).collect::<StoreResult<_>>()?,
                retries,
                window_deltas: r.window_deltas.clone(),
                dirty: r.dirty.clone(),
                max_event_ts: r.max_event_ts,
            });
        }
        let seqs: Vec<u64> = prepared.iter().filter_map(|p| p.seq).collect();
        let state = self.state(pipeline);
        let gate = state.clone();
        let p = pipeline.to_string();
        let report = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                // Checked inside the write transaction: `begin_close` needs it
                // too, so the gate cannot be taken between check and commit.
                let (stored_watermark, _, _) = stored_clock(&txn.open_table(WINDOW_CLOCK).map_err(db_err)?, p)?;
                if let Some(v) = valid_below {
                    let mut held = gate.gate.lock();
                    if stored_watermark >= v || held.until > now_ms {
                        return Ok(CompleteReport { stale: true, ..Default::default() });
                    }
                    // A lease that ran out is revoked: that pass read panes
                    // this apply changes, so its commit must be fenced.
                    if held.until != 0 {
                        held.until = 0;
                        held.token += 1;
                    }
                }
                let mut report = CompleteReport::default();
                {
                    let mut queue = txn.open_table(QUEUE).map_err(db_err)?;
                    let mut output = txn.open_table(OUTPUT).map_err(db_err)?;
                    let mut dlq = txn.open_table(DLQ).map_err(db_err)?;
                    let mut retry = txn.open_table(RETRY).map_err(db_err)?;
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let (mut finished, mut emitted, mut dead) = (0u64, 0u64, 0u64);
                    // Queued bytes: applied entries' stored size out, their retries' in.
                    let (mut bytes_out, mut bytes_in) = (0u64, 0u64);
                    let mut last_output = None;
                    // Window updates of the applied entries, summed per key
                    // so each stored row and sketch is rewritten once.
                    let mut pane_sums: BTreeMap<(String, i64, String), PaneAgg> = BTreeMap::new();
                    let mut distinct: BTreeMap<(String, i64, String, u32), Vec<String>> = BTreeMap::new();
                    let mut dirty_marks = Vec::new();
                    let (mut had_deltas, mut max_event_ts) = (false, None::<i64>);
                    for entry in prepared {
                        let removed = match entry.seq {
                            Some(s) => queue.remove((p, s)).map_err(db_err)?.map(|v| v.value().len() as u64),
                            None => None,
                        };
                        let Some(entry_bytes) = removed else {
                            report.skipped += 1;
                            continue;
                        };
                        bytes_out += entry_bytes;
                        bytes_in += entry.retry_bytes;
                        for event in &entry.outputs {
                            let at = seq.take();
                            output.insert((p, at), event.as_slice()).map_err(db_err)?;
                            last_output = Some(at);
                        }
                        for entry in &entry.dead {
                            dlq.insert((p, seq.take()), entry.as_slice()).map_err(db_err)?;
                        }
                        for (due, event) in &entry.retries {
                            retry.insert((p, *due, seq.take()), event.as_slice()).map_err(db_err)?;
                        }
                        finished += entry.finished;
                        emitted += entry.outputs.len() as u64;
                        dead += entry.dead.len() as u64;
                        report.applied += 1;

                        had_deltas |= !entry.window_deltas.is_empty();
                        max_event_ts = max_event_ts.max(entry.max_event_ts);
                        for d in entry.window_deltas {
                            if d.dirty_at.is_some_and(|at| stored_watermark >= at) {
                                dirty_marks.push(DirtyMark { window: d.window.clone(), pane: d.pane, group: d.group.clone() });
                            }
                            for (i, values) in d.distinct.into_iter().enumerate() {
                                if values.is_empty() {
                                    continue;
                                }
                                let i = u32::try_from(i)
                                    .map_err(|_| StoreError::Internal(format!("aggregate index {i} of window {} is too big", d.window)))?;
                                distinct.entry((d.window.clone(), d.pane, d.group.clone(), i)).or_default().extend(values);
                            }
                            pane_sums.entry((d.window, d.pane, d.group)).or_default().merge(&d.agg);
                        }
                        dirty_marks.extend(entry.dirty);
                    }
                    if report.applied == 0 {
                        return Ok(report);
                    }
                    seq.save(&mut meta)?;
                    if let Some(last) = last_output {
                        // When these outputs were appended (this process's clock, like Redis's stream ids).
                        let second = crate::domain::event::now_ms().div_euclid(1000) * 1000;
                        txn.open_table(OUTPUT_MARKS).map_err(db_err)?.insert((p, second), last).map_err(db_err)?;
                    }
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    add(&mut counters, p, DEPTH, -(finished as i64))?;
                    add(&mut counters, p, QUEUE_BYTES, bytes_in as i64 - bytes_out as i64)?;
                    add(&mut counters, p, PROCESSED, finished as i64)?;
                    add(&mut counters, p, EMITTED, emitted as i64)?;
                    add(&mut counters, p, DLQ_SIZE, dead as i64)?;

                    let mut panes = txn.open_table(PANES).map_err(db_err)?;
                    for ((w, pane, g), sum) in &pane_sums {
                        let key = (p, w.as_str(), *pane, g.as_str());
                        // A stored row that cannot be read counts as missing (reported).
                        let stored = panes.get(key).map_err(db_err)?.and_then(|v| parse_pane(v.value(), w, *pane, g));
                        let mut agg = stored.unwrap_or_default();
                        agg.merge(sum);
                        if let Some((i, part)) = agg.non_finite() {
                            // Returning drops the transaction: nothing of this call is written.
                            return Err(StoreError::Internal(format!(
                                "refused, nothing written: window {w:?} pane {pane} group {g} aggregate {i} would have a {part} that is not finite"
                            )));
                        }
                        panes.insert(key, to_json(&agg)?.as_slice()).map_err(db_err)?;
                    }
                    let mut sketches = txn.open_table(SKETCHES).map_err(db_err)?;
                    for ((w, pane, g, i), values) in &distinct {
                        let key = (p, w.as_str(), *pane, g.as_str(), *i);
                        let stored = sketches
                            .get(key)
                            .map_err(db_err)?
                            .map(|v| parse_sketch(v.value(), || format!("{w}/{pane}/{g}/{i}")))
                            .transpose()?;
                        let mut sketch = stored.unwrap_or_else(new_sketch);
                        for v in values {
                            sketch.insert(&value_hash(v));
                        }
                        sketches.insert(key, to_json(&sketch)?.as_slice()).map_err(db_err)?;
                    }
                    let mut dirty = txn.open_table(DIRTY).map_err(db_err)?;
                    for m in &dirty_marks {
                        dirty.insert((p, m.window.as_str(), m.pane, m.group.as_str()), ()).map_err(db_err)?;
                    }
                    if had_deltas || max_event_ts.is_some() {
                        let mut clock = txn.open_table(WINDOW_CLOCK).map_err(db_err)?;
                        let (watermark, stored_max, stored_last) = stored_clock(&clock, p)?;
                        let max = max_event_ts.map_or(stored_max, |m| m.max(stored_max));
                        let last = if had_deltas { now_ms } else { stored_last };
                        clock.insert(p, (watermark, max, last)).map_err(db_err)?;
                    }
                }
                txn.commit().map_err(db_err)?;
                Ok(report)
            })
            .await?;
        if !report.stale {
            let mut mem = state.mem.lock();
            for s in seqs {
                mem.pending.remove(&s);
            }
        }
        Ok(report)
    }

    async fn promote_retries(&self, pipeline: &str, now_ms: i64, max_events: usize) -> StoreResult<u64> {
        if max_events == 0 {
            return Ok(0);
        }
        let p = pipeline.to_string();
        let moved = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                let moved = {
                    let mut retry = txn.open_table(RETRY).map_err(db_err)?;
                    let mut due = Vec::new();
                    for item in retry.range((p, i64::MIN, 0)..=(p, now_ms, u64::MAX)).map_err(db_err)?.take(max_events) {
                        let (key, value) = item.map_err(db_err)?;
                        let (_, at, s) = key.value();
                        due.push(((at, s), value.value().to_vec()));
                    }
                    if due.is_empty() {
                        return Ok(0);
                    }
                    for ((at, s), _) in &due {
                        retry.remove((p, *at, *s)).map_err(db_err)?;
                    }
                    let events: Vec<Vec<u8>> = due.into_iter().map(|(_, e)| e).collect();
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let mut queue = txn.open_table(QUEUE).map_err(db_err)?;
                    let stored = append_chunks(&mut queue, &mut seq, p, &events, events.len())?;
                    seq.save(&mut meta)?;
                    // Waiting, they counted their own JSON; joined, the brackets and commas too.
                    let waiting: usize = events.iter().map(Vec::len).sum();
                    add(&mut txn.open_table(COUNTERS).map_err(db_err)?, p, QUEUE_BYTES, stored as i64 - waiting as i64)?;
                    events.len() as u64
                };
                txn.commit().map_err(db_err)?;
                Ok(moved)
            })
            .await?;
        if moved > 0 {
            self.state(pipeline).notify.notify_waiters();
        }
        Ok(moved)
    }

    async fn counters(&self, pipeline: &str) -> StoreResult<Counters> {
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(COUNTERS).map_err(db_err)?;
            Ok(Counters {
                accepted: counter(&t, p, ACCEPTED)?,
                rejected: counter(&t, p, REJECTED)?,
                processed: counter(&t, p, PROCESSED)?,
                emitted: counter(&t, p, EMITTED)?,
                dlq_size: counter(&t, p, DLQ_SIZE)?,
                queue_depth: counter(&t, p, DEPTH)?,
                queue_bytes: counter(&t, p, QUEUE_BYTES)?,
            })
        })
        .await
    }

    async fn touch(&self, pipeline: &str, consumer: &str, ids: &[String]) -> StoreResult<usize> {
        let state = self.state(pipeline);
        let mut mem = state.mem.lock();
        let now = Instant::now();
        let mut touched = 0;
        for seq in ids.iter().filter_map(|id| id.parse::<u64>().ok()) {
            if let Some((owner, since)) = mem.pending.get_mut(&seq) {
                if owner == consumer {
                    *since = now;
                    touched += 1;
                }
            }
        }
        Ok(touched)
    }
}
