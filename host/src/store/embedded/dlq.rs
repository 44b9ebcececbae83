//! The dead letter queue on redb: list, replay (back onto the queue, in
//! chunks, or onto a sink's redelivery list while that sink exists), delete.

use async_trait::async_trait;
use redb::ReadableTable;

use super::*;
use crate::domain::{replay_refused_entry, DlqEntry, DlqSelector, FailedAt, Page, QueuedEvent, ReplayReport};
use crate::store::shared::{unique_ids, REPLAY_CHUNK};
use crate::store::DeadLetters;

fn parse_dlq(seq: u64, bytes: &[u8]) -> StoreResult<DlqEntry> {
    let mut entry: DlqEntry = serde_json::from_slice(bytes).map_err(json_err)?;
    entry.dlq_id = seq.to_string();
    Ok(entry)
}

/// The DLQ seqs a selector picks; ids not in the DLQ are counted as failed.
fn select_dlq(
    dlq: &Table<(&'static str, u64), &'static [u8]>,
    pipeline: &str,
    selector: &DlqSelector,
) -> StoreResult<(Vec<u64>, u64)> {
    let mut picked = Vec::new();
    let mut failed = 0u64;
    match selector {
        DlqSelector::Ids(ids) => {
            for id in unique_ids(ids) {
                match id.parse::<u64>() {
                    Ok(seq) if dlq.get((pipeline, seq)).map_err(db_err)?.is_some() => picked.push(seq),
                    _ => failed += 1,
                }
            }
        }
        DlqSelector::Oldest(n) => {
            for item in dlq.range((pipeline, 0)..=(pipeline, u64::MAX)).map_err(db_err)?.take(*n) {
                picked.push(item.map_err(db_err)?.0.value().1);
            }
        }
        DlqSelector::All => {
            for item in dlq.range((pipeline, 0)..=(pipeline, u64::MAX)).map_err(db_err)? {
                picked.push(item.map_err(db_err)?.0.value().1);
            }
        }
    }
    Ok((picked, failed))
}

#[async_trait]
impl DeadLetters for EmbeddedStore {
    async fn dlq_list(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<DlqEntry>> {
        let (items, next_cursor) = self.page(DLQ, pipeline, cursor, limit).await?;
        let items = items.iter().map(|(seq, bytes)| parse_dlq(*seq, bytes)).collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn dlq_replay(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<ReplayReport> {
        let (p, selector) = (pipeline.to_string(), selector.clone());
        let report = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                let report = {
                    let mut dlq = txn.open_table(DLQ).map_err(db_err)?;
                    let (picked, mut failed) = select_dlq(&dlq, p, &selector)?;
                    if picked.is_empty() {
                        return Ok(ReplayReport { replayed: 0, failed });
                    }
                    let mut events = Vec::with_capacity(picked.len());
                    // A sink's failures go back to that sink's redelivery list
                    // only, while the sink exists; else they stay, saying why.
                    let mut to_sinks = Vec::new();
                    let mut refused = Vec::new();
                    let sinks = txn.open_table(SINKS).map_err(db_err)?;
                    let now = crate::domain::now_ms();
                    for s in &picked {
                        let Some(bytes) = dlq.remove((p, *s)).map_err(db_err)? else { continue };
                        let entry = parse_dlq(*s, bytes.value())?;
                        if let FailedAt::Sink { sink } = &entry.failed_at {
                            if sinks.get((p, sink.as_str())).map_err(db_err)?.is_none() {
                                let sink = sink.clone();
                                refused.push(to_json(&replay_refused_entry(entry, &sink, now))?);
                                continue;
                            }
                            to_sinks.push((sink.clone(), to_json(&entry.event)?));
                            continue;
                        }
                        let start = entry.failed_at.replay_start();
                        let queued = QueuedEvent { event: entry.event, start_stage: Some(start), attempt: 1, first_failed_at: None };
                        events.push(to_json(&queued)?);
                    }
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let mut queue = txn.open_table(QUEUE).map_err(db_err)?;
                    let bytes = append_chunks(&mut queue, &mut seq, p, &events, REPLAY_CHUNK)?;
                    let mut replays = txn.open_table(SINK_REPLAY).map_err(db_err)?;
                    for (sink, event) in &to_sinks {
                        replays.insert((p, sink.as_str(), seq.take()), event.as_slice()).map_err(db_err)?;
                    }
                    // At the DLQ's end under a new id, like a failure written now.
                    for entry in &refused {
                        dlq.insert((p, seq.take()), entry.as_slice()).map_err(db_err)?;
                    }
                    failed += refused.len() as u64;
                    seq.save(&mut meta)?;
                    let n = events.len() as i64;
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    add(&mut counters, p, DEPTH, n)?;
                    add(&mut counters, p, QUEUE_BYTES, bytes as i64)?;
                    add(&mut counters, p, DLQ_SIZE, -(n + to_sinks.len() as i64))?;
                    ReplayReport { replayed: (n as u64) + to_sinks.len() as u64, failed }
                };
                txn.commit().map_err(db_err)?;
                Ok(report)
            })
            .await?;
        if report.replayed > 0 {
            self.state(pipeline).notify.notify_waiters();
        }
        Ok(report)
    }

    async fn dlq_delete(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<u64> {
        let (p, selector) = (pipeline.to_string(), selector.clone());
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            let deleted = {
                let mut dlq = txn.open_table(DLQ).map_err(db_err)?;
                let (picked, _) = select_dlq(&dlq, p, &selector)?;
                if picked.is_empty() {
                    return Ok(0);
                }
                for s in &picked {
                    dlq.remove((p, *s)).map_err(db_err)?;
                }
                let n = picked.len() as i64;
                add(&mut txn.open_table(COUNTERS).map_err(db_err)?, p, DLQ_SIZE, -n)?;
                n as u64
            };
            txn.commit().map_err(db_err)?;
            Ok(deleted)
        })
        .await
    }
}
