//! Sinks on redb: records in SINKS, redelivery lists in SINK_REPLAY (moved
//! back to the DLQ when the sink is forgotten), window lag from
//! RESULTS_APPENDED, the leases in memory (one process owns the file, so a
//! lease only orders runners inside it; it is checked while holding redb's
//! write transaction).

use async_trait::async_trait;
use redb::ReadableTable;

use super::*;
use crate::domain::{removed_sink_entry, Event, SinkCommit, SinkLag, SinkPosition, SinkRecord, SinkReplay, SinkSource};
use crate::store::SinkState;

fn parse_record(sink: &str, bytes: &[u8]) -> StoreResult<SinkRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("the stored record of sink `{sink}` cannot be read: {e}")))
}

/// Whether `holder` holds `sink`'s lease now.
fn holds(state: &PipeState, sink: &str, holder: &str) -> bool {
    state.sink_leases.lock().get(sink).is_some_and(|(h, _)| h == holder)
}

/// The lowest output seq a sink of the output still waits for (`None`:
/// no sink of the output), read in `txn`: what output retention stops at.
pub(super) fn output_floor(txn: &WriteTransaction, pipeline: &str) -> StoreResult<Option<u64>> {
    let sinks = txn.open_table(SINKS).map_err(db_err)?;
    let mut floor: Option<u64> = None;
    for item in sinks.range((pipeline, "")..).map_err(db_err)? {
        let (key, value) = item.map_err(db_err)?;
        let (p, name) = key.value();
        if p != pipeline {
            break;
        }
        let record = parse_record(name, value.value())?;
        if record.from == "output" {
            let next = parse_cursor(&record.position.cursor)?.saturating_add(1);
            floor = Some(floor.map_or(next, |f| f.min(next)));
        }
    }
    Ok(floor)
}

/// Appends DLQ entries (JSON) for `pipeline` in `txn`, counting them in
/// the DLQ size: a given-up batch, or a removed sink's waiting replays.
fn append_dlq(txn: &WriteTransaction, pipeline: &str, entries: &[Vec<u8>]) -> StoreResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let mut seq = Seq::load(&meta)?;
    let mut dlq = txn.open_table(DLQ).map_err(db_err)?;
    for entry in entries {
        dlq.insert((pipeline, seq.take()), entry.as_slice()).map_err(db_err)?;
    }
    seq.save(&mut meta)?;
    add(&mut txn.open_table(COUNTERS).map_err(db_err)?, pipeline, DLQ_SIZE, entries.len() as i64)?;
    Ok(())
}

/// Deletes every sink record and redelivery list of a deleted pipeline.
pub(super) fn delete_all(txn: &WriteTransaction, pipeline: &str) -> StoreResult<()> {
    let mut sinks = txn.open_table(SINKS).map_err(db_err)?;
    let mut names: Vec<String> = Vec::new();
    for item in sinks.range((pipeline, "")..).map_err(db_err)? {
        let (key, _) = item.map_err(db_err)?;
        let (p, name) = key.value();
        if p != pipeline {
            break;
        }
        names.push(name.to_string());
    }
    let mut replays = txn.open_table(SINK_REPLAY).map_err(db_err)?;
    for name in &names {
        sinks.remove((pipeline, name.as_str())).map_err(db_err)?;
        replays.retain_in((pipeline, name.as_str(), 0)..=(pipeline, name.as_str(), u64::MAX), |_, _| false).map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl SinkState for EmbeddedStore {
    async fn sink_open(&self, pipeline: &str, sink: &str, source: &SinkSource) -> StoreResult<SinkRecord> {
        let (p, s, from) = (pipeline.to_string(), sink.to_string(), source.as_spec());
        self.blocking(move |db| {
            let (p, s) = (p.as_str(), s.as_str());
            let txn = db.begin_write().map_err(db_err)?;
            let record = {
                let mut sinks = txn.open_table(SINKS).map_err(db_err)?;
                if let Some(stored) = sinks.get((p, s)).map_err(db_err)? {
                    return parse_record(s, stored.value());
                }
                let mut position = SinkPosition::default();
                if from == "output" {
                    let output = txn.open_table(OUTPUT).map_err(db_err)?;
                    if let Some(last) = output.range((p, 0)..=(p, u64::MAX)).map_err(db_err)?.next_back() {
                        position.cursor = last.map_err(db_err)?.0.value().1.to_string();
                    }
                    position.seq = counter(&txn.open_table(COUNTERS).map_err(db_err)?, p, EMITTED)?;
                }
                let record = SinkRecord { from, epoch: crate::store::shared::new_epoch(), position, ..Default::default() };
                sinks.insert((p, s), to_json(&record)?.as_slice()).map_err(db_err)?;
                record
            };
            txn.commit().map_err(db_err)?;
            Ok(record)
        })
        .await
    }

    async fn sink_records(&self, pipeline: &str) -> StoreResult<Vec<(String, SinkRecord)>> {
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let sinks = txn.open_table(SINKS).map_err(db_err)?;
            let mut out = Vec::new();
            for item in sinks.range((p.as_str(), "")..).map_err(db_err)? {
                let (key, value) = item.map_err(db_err)?;
                let (owner, name) = key.value();
                if owner != p {
                    break;
                }
                out.push((name.to_string(), parse_record(name, value.value())?));
            }
            Ok(out)
        })
        .await
    }

    async fn sink_lease(&self, pipeline: &str, sink: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<bool> {
        let state = self.state(pipeline);
        let mut leases = state.sink_leases.lock();
        match leases.get(sink) {
            Some((other, until)) if other != holder && *until > now_ms => Ok(false),
            _ => {
                leases.insert(sink.to_string(), (holder.to_string(), now_ms.saturating_add(ttl_ms)));
                Ok(true)
            }
        }
    }

    async fn sink_commit(&self, pipeline: &str, sink: &str, holder: &str, commit: &SinkCommit) -> StoreResult<bool> {
        let (p, s, h, commit) = (pipeline.to_string(), sink.to_string(), holder.to_string(), commit.clone());
        let state = self.state(pipeline);
        self.blocking(move |db| {
            let (p, s) = (p.as_str(), s.as_str());
            let record = to_json(&commit.record)?;
            let dead: Vec<Vec<u8>> = commit.dead.iter().map(|d| to_json(d)).collect::<StoreResult<_>>()?;
            let replayed: Vec<u64> = commit.replayed.iter().filter_map(|id| id.parse().ok()).collect();
            let txn = db.begin_write().map_err(db_err)?;
            // Checked while holding the one write transaction: no other commit runs meanwhile.
            if !holds(&state, s, &h) {
                return Ok(false);
            }
            {
                append_dlq(&txn, p, &dead)?;
                txn.open_table(SINKS).map_err(db_err)?.insert((p, s), record.as_slice()).map_err(db_err)?;
                let mut replays = txn.open_table(SINK_REPLAY).map_err(db_err)?;
                for id in replayed {
                    replays.remove((p, s, id)).map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn sink_replays(&self, pipeline: &str, sink: &str, limit: usize) -> StoreResult<Vec<SinkReplay>> {
        let (p, s) = (pipeline.to_string(), sink.to_string());
        self.blocking(move |db| {
            let (p, s) = (p.as_str(), s.as_str());
            let txn = db.begin_read().map_err(db_err)?;
            let replays = txn.open_table(SINK_REPLAY).map_err(db_err)?;
            let mut out = Vec::new();
            for item in replays.range((p, s, 0)..=(p, s, u64::MAX)).map_err(db_err)?.take(limit) {
                let (key, value) = item.map_err(db_err)?;
                let event: Event = serde_json::from_slice(value.value()).map_err(json_err)?;
                out.push(SinkReplay { id: key.value().2.to_string(), event });
            }
            Ok(out)
        })
        .await
    }

    async fn output_lag(&self, pipeline: &str, position: &SinkPosition) -> StoreResult<SinkLag> {
        let (p, position) = (pipeline.to_string(), position.clone());
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_read().map_err(db_err)?;
            let emitted = counter(&txn.open_table(COUNTERS).map_err(db_err)?, p, EMITTED)?;
            let events = emitted.saturating_sub(position.seq);
            if events == 0 {
                return Ok(SinkLag::default());
            }
            // The first second whose newest output is past the cursor holds
            // the oldest waiting one: walk back from the newest second (marks
            // grow with time), so the cost follows the lag, not the retention.
            let after = parse_cursor(&position.cursor)?;
            let marks = txn.open_table(OUTPUT_MARKS).map_err(db_err)?;
            let mut oldest_at = None;
            for item in marks.range((p, i64::MIN)..=(p, i64::MAX)).map_err(db_err)?.rev().take(MARKS_SCANNED) {
                let (key, seq) = item.map_err(db_err)?;
                if seq.value() <= after {
                    break;
                }
                oldest_at = Some(key.value().1);
            }
            Ok(SinkLag { events, oldest_at })
        })
        .await
    }

    async fn window_lag(&self, pipeline: &str, window: &str, position: &SinkPosition, count_up_to: usize) -> StoreResult<SinkLag> {
        let after = parse_cursor(&position.cursor)?;
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let (p, w) = (p.as_str(), w.as_str());
            let Some(start) = after.checked_add(1) else { return Ok(SinkLag::default()) };
            let txn = db.begin_read().map_err(db_err)?;
            let results = txn.open_table(RESULTS).map_err(db_err)?;
            let mut waiting = results.range((p, w, start)..=(p, w, u64::MAX)).map_err(db_err)?.take(count_up_to);
            let Some(first) = waiting.next() else { return Ok(SinkLag::default()) };
            let oldest = first.map_err(db_err)?.0.value().2;
            let events = 1 + waiting.count() as u64;
            let oldest_at = txn.open_table(RESULTS_APPENDED).map_err(db_err)?.get((p, w, oldest)).map_err(db_err)?.map(|at| at.value());
            Ok(SinkLag { events, oldest_at })
        })
        .await
    }

    async fn sink_reset(&self, pipeline: &str, sink: &str) -> StoreResult<()> {
        let (p, s) = (pipeline.to_string(), sink.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(SINKS).map_err(db_err)?.remove((p.as_str(), s.as_str())).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn sink_forget(&self, pipeline: &str, sink: &str, now_ms: i64) -> StoreResult<()> {
        let (p, s) = (pipeline.to_string(), sink.to_string());
        self.state(pipeline).sink_leases.lock().remove(sink);
        self.blocking(move |db| {
            let (p, s) = (p.as_str(), s.as_str());
            let txn = db.begin_write().map_err(db_err)?;
            {
                txn.open_table(SINKS).map_err(db_err)?.remove((p, s)).map_err(db_err)?;
                // What waits for redelivery goes back to the DLQ, in the same step.
                let mut replays = txn.open_table(SINK_REPLAY).map_err(db_err)?;
                let mut back = Vec::new();
                for item in replays.range((p, s, 0)..=(p, s, u64::MAX)).map_err(db_err)? {
                    let (key, value) = item.map_err(db_err)?;
                    // Nothing is dropped: an entry that cannot be read keeps the forget from happening.
                    let event: Event = serde_json::from_slice(value.value()).map_err(|e| {
                        StoreError::Internal(format!("sink `{s}`'s redelivery entry {} cannot be read: {e}", key.value().2))
                    })?;
                    back.push(to_json(&removed_sink_entry(event, s, now_ms))?);
                }
                append_dlq(&txn, p, &back)?;
                replays.retain_in((p, s, 0)..=(p, s, u64::MAX), |_, _| false).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

/// Seconds of output marks read to find when the oldest waiting output was
/// appended (a lag spanning more seconds answers the oldest of those read).
const MARKS_SCANNED: usize = 100_000;
