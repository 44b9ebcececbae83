//! The dead letter queue on Redis: a stream per pipeline, one entry per
//! failed event (`e` event, `s` where a replay starts, `m` the rest);
//! replays run in atomic batches of the `replay` script; a sink's failure
//! whose sink is gone stays, rewritten by `dlq_rewrite` to say so.

use ::redis::streams::StreamId;
use async_trait::async_trait;

use super::*;
use crate::domain::{replay_refused_entry, DlqEntry, DlqSelector, ErrorKind, Event, FailedAt, Page, ReplayReport};
use crate::store::shared::{unique_ids, REPLAY_CHUNK};
use crate::store::DeadLetters;

/// DLQ entries moved per script run when replaying many (each run is atomic).
const REPLAY_BATCH: usize = 1000;

/// What a DLQ stream entry carries in `m` (the event and the stage have
/// their own fields so a replay can rebuild a queued event without JSON
/// parsing in Lua).
#[derive(Serialize, Deserialize)]
pub(super) struct DlqMeta {
    error: String,
    error_kind: ErrorKind,
    stage: String,
    plugin: String,
    plugin_version: u32,
    attempts: u32,
    first_failed_at: i64,
    last_failed_at: i64,
}

impl DlqMeta {
    /// The `m` field of a DLQ entry about to be written.
    pub(super) fn of(dead: &DlqEntry) -> DlqMeta {
        DlqMeta {
            error: dead.error.clone(),
            error_kind: dead.error_kind,
            stage: dead.failed_at.stage_field(),
            plugin: dead.failed_at.plugin().to_string(),
            plugin_version: dead.failed_at.plugin_version(),
            attempts: dead.attempts,
            first_failed_at: dead.first_failed_at,
            last_failed_at: dead.last_failed_at,
        }
    }
}

impl RedisStore {
    /// Replays DLQ entries oldest first, in atomic batches, up to `end`
    /// (an id: entries a batch moves to the DLQ's end are not read again),
    /// at most `limit` of them.
    /// `sinks` is the pipeline's sink records hash.
    async fn replay_range(&self, keys: &Keys, sinks: &str, end: &str, limit: usize) -> StoreResult<ReplayReport> {
        let mut report = ReplayReport::default();
        let mut left = limit;
        while left > 0 {
            let batch = left.min(REPLAY_BATCH);
            let (n, _failed, gone): (u64, u64, Vec<String>) = self
                .run(|mut c| async move {
                    self.scripts
                        .replay
                        .key(&keys.dlq)
                        .key(&keys.queue)
                        .key(&keys.depth)
                        .key(&keys.bytes)
                        .key(sinks)
                        .arg("range")
                        .arg(REPLAY_CHUNK)
                        .arg("-")
                        .arg(end)
                        .arg(batch)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            self.refuse_gone_sinks(keys, &gone).await?;
            report.failed += gone.len() as u64;
            report.replayed += n;
            let taken = n as usize + gone.len();
            left = left.saturating_sub(taken);
            if taken < batch {
                break;
            }
        }
        Ok(report)
    }

    /// Rewrites the DLQ entries `ids` (failures of sinks that no longer
    /// exist, left in place by a replay) with an error saying so, at the
    /// DLQ's end. Each rewrite is atomic (an entry taken meanwhile is left
    /// alone); one that cannot be read stays as it is.
    async fn refuse_gone_sinks(&self, keys: &Keys, ids: &[String]) -> StoreResult<()> {
        let now = crate::domain::now_ms();
        for id in ids {
            let found: StreamRangeReply =
                self.run(|mut c| async move { ::redis::cmd("XRANGE").arg(&keys.dlq).arg(id).arg(id).query_async(&mut c).await }).await?;
            let Some(Ok(entry)) = found.ids.first().map(dlq_entry) else { continue };
            let FailedAt::Sink { sink } = &entry.failed_at else { continue };
            let sink = sink.clone();
            let entry = replay_refused_entry(entry, &sink, now);
            let fields = [to_json(&entry.event)?, to_json(&entry.failed_at.replay_start())?, to_json(&DlqMeta::of(&entry))?];
            let fields = &fields;
            let _rewritten: i64 = self
                .run(|mut c| async move {
                    self.scripts.dlq_rewrite.key(&keys.dlq).arg(id).arg(&fields[0]).arg(&fields[1]).arg(&fields[2]).invoke_async(&mut c).await
                })
                .await?;
        }
        Ok(())
    }

    /// The id of the newest DLQ entry, if any.
    async fn dlq_last_id(&self, keys: &Keys) -> StoreResult<Option<String>> {
        let reply: StreamRangeReply = self
            .run(|mut c| async move {
                ::redis::cmd("XREVRANGE").arg(&keys.dlq).arg("+").arg("-").arg("COUNT").arg(1).query_async(&mut c).await
            })
            .await?;
        Ok(reply.ids.into_iter().next().map(|entry| entry.id))
    }
}

fn dlq_entry(entry: &StreamId) -> StoreResult<DlqEntry> {
    let event: Event = json_field(entry, "e")?;
    let meta: DlqMeta = json_field(entry, "m")?;
    Ok(DlqEntry {
        dlq_id: entry.id.clone(),
        event,
        error: meta.error,
        error_kind: meta.error_kind,
        failed_at: FailedAt::from_fields(meta.stage, meta.plugin, meta.plugin_version),
        attempts: meta.attempts,
        first_failed_at: meta.first_failed_at,
        last_failed_at: meta.last_failed_at,
    })
}

#[async_trait]
impl DeadLetters for RedisStore {
    async fn dlq_list(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<DlqEntry>> {
        let k = self.keys(pipeline);
        let (entries, next_cursor) = self.xrange_page(&k.dlq, cursor, limit).await?;
        let items = entries.iter().map(dlq_entry).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn dlq_replay(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<ReplayReport> {
        let k = self.keys(pipeline);
        match selector {
            DlqSelector::Ids(ids) => {
                let ids = unique_ids(ids);
                let valid: Vec<&str> = ids.iter().copied().filter(|id| is_stream_id(id)).collect();
                let mut report = ReplayReport { replayed: 0, failed: (ids.len() - valid.len()) as u64 };
                if valid.is_empty() {
                    return Ok(report);
                }
                let valid = &valid;
                let k = &k;
                let sinks = self.sink_records_key(pipeline);
                let sinks = &sinks;
                let (n, failed, gone): (u64, u64, Vec<String>) = self
                    .run(|mut c| async move {
                        let mut invocation = self.scripts.replay.prepare_invoke();
                        invocation.key(&k.dlq).key(&k.queue).key(&k.depth).key(&k.bytes).key(sinks).arg("ids").arg(REPLAY_CHUNK);
                        for id in valid {
                            invocation.arg(*id);
                        }
                        invocation.invoke_async(&mut c).await
                    })
                    .await?;
                report.replayed = n;
                self.refuse_gone_sinks(k, &gone).await?;
                report.failed += failed + gone.len() as u64;
                Ok(report)
            }
            DlqSelector::Oldest(_) | DlqSelector::All => {
                // Everything there now; entries failing meanwhile wait for the next replay.
                let Some(last) = self.dlq_last_id(&k).await? else { return Ok(ReplayReport::default()) };
                let limit = if let DlqSelector::Oldest(n) = selector { *n } else { usize::MAX };
                self.replay_range(&k, &self.sink_records_key(pipeline), &last, limit).await
            }
        }
    }

    async fn dlq_delete(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<u64> {
        let k = self.keys(pipeline);
        let dlq = &k.dlq;
        match selector {
            DlqSelector::Ids(ids) => {
                let valid: Vec<&str> = unique_ids(ids).into_iter().filter(|id| is_stream_id(id)).collect();
                if valid.is_empty() {
                    return Ok(0);
                }
                let valid = &valid;
                self.run(|mut c| async move { ::redis::cmd("XDEL").arg(dlq).arg(valid).query_async(&mut c).await }).await
            }
            DlqSelector::Oldest(n) => {
                if *n == 0 {
                    return Ok(0);
                }
                self.run(|mut c| async move { self.scripts.dlq_delete_oldest.key(dlq).arg(*n).invoke_async(&mut c).await })
                    .await
            }
            DlqSelector::All => {
                self.run(|mut c| async move { self.scripts.dlq_delete_all.key(dlq).invoke_async(&mut c).await }).await
            }
        }
    }
}
