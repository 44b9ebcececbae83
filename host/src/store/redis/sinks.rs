//! Sinks on Redis: every sink's record in one hash per pipeline
//! (`P:{id}:sinks`, sink → record JSON), leases in `P:{id}:sinklease`
//! (sink → `<holder>|<expires ms>`), and per sink a redelivery stream
//! `P:{id}:sink:<name>:replay` that a DLQ replay fills (`e` = event JSON)
//! while the sink has a record, and a forget moves back to the DLQ.
//! All under the pipeline's hash tag; each script touches one pipeline.

use async_trait::async_trait;

use super::dlq::DlqMeta;
use super::*;
use crate::domain::{removed_sink_entry, Event, SinkCommit, SinkLag, SinkPosition, SinkRecord, SinkReplay, SinkSource};
use crate::store::SinkState;

/// The keys of one sink.
struct SinkKeys {
    records: String,
    leases: String,
    replay: String,
}

impl RedisStore {
    fn sink_keys(&self, pipeline: &str, sink: &str) -> SinkKeys {
        let base = format!("{}:{{{}}}", self.prefix, pipeline);
        SinkKeys { records: format!("{base}:sinks"), leases: format!("{base}:sinklease"), replay: format!("{base}:sink:{sink}:replay") }
    }

    /// The hash of the pipeline's sink records: a DLQ replay sends a sink
    /// its failures only while the sink has a record there.
    pub(super) fn sink_records_key(&self, pipeline: &str) -> String {
        self.sink_keys(pipeline, "").records
    }

    /// Deletes every sink key of a deleted pipeline.
    pub(super) async fn delete_sink_keys(&self, pipeline: &str) -> StoreResult<()> {
        let s = self.sink_keys(pipeline, "");
        let (records, leases) = (&s.records, &s.leases);
        let _: i64 = self.run(|mut c| async move { ::redis::cmd("UNLINK").arg(records).arg(leases).query_async(&mut c).await }).await?;
        let replays = s.replay.trim_end_matches(":replay").to_string();
        self.delete_keys_under(&replays).await
    }
}

fn parse_record(sink: &str, json: &str) -> StoreResult<SinkRecord> {
    serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("the stored record of sink `{sink}` cannot be read: {e}")))
}

/// The stream entry an output cursor (`<entry>` or `<entry>.<taken>`)
/// points into or after, and whether that entry is only partly read.
pub(super) fn cursor_entry(cursor: &str) -> Option<(&str, bool)> {
    match cursor.split_once('.') {
        _ if cursor.is_empty() => None,
        Some((entry, _)) => Some((entry, true)),
        None => Some((cursor, false)),
    }
}

/// The ms part of a stream id.
fn id_ms(id: &str) -> Option<i64> {
    id.split('-').next().and_then(|ms| ms.parse().ok())
}

#[async_trait]
impl SinkState for RedisStore {
    async fn sink_open(&self, pipeline: &str, sink: &str, source: &SinkSource) -> StoreResult<SinkRecord> {
        let (k, s) = (self.keys(pipeline), self.sink_keys(pipeline, sink));
        let from = source.as_spec();
        let epoch = crate::store::shared::new_epoch();
        let (k, s, from, epoch) = (&k, &s, &from, &epoch);
        let json: String = self
            .run(|mut c| async move {
                self.scripts.sink_open.key(&s.records).key(&k.output).key(&k.counters).arg(sink).arg(from).arg(epoch).invoke_async(&mut c).await
            })
            .await?;
        parse_record(sink, &json)
    }

    async fn sink_records(&self, pipeline: &str) -> StoreResult<Vec<(String, SinkRecord)>> {
        let s = self.sink_keys(pipeline, "");
        let records = &s.records;
        let all: Vec<(String, String)> =
            self.run(|mut c| async move { ::redis::cmd("HGETALL").arg(records).query_async(&mut c).await }).await?;
        all.into_iter().map(|(name, json)| parse_record(&name, &json).map(|r| (name, r))).collect()
    }

    async fn sink_lease(&self, pipeline: &str, sink: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<bool> {
        let s = self.sink_keys(pipeline, sink);
        let leases = &s.leases;
        let held: i64 = self
            .run(|mut c| async move {
                self.scripts.sink_lease.key(leases).arg(sink).arg(holder).arg(now_ms).arg(ttl_ms).invoke_async(&mut c).await
            })
            .await?;
        Ok(held == 1)
    }

    async fn sink_commit(&self, pipeline: &str, sink: &str, holder: &str, commit: &SinkCommit) -> StoreResult<bool> {
        let (k, s) = (self.keys(pipeline), self.sink_keys(pipeline, sink));
        // Everything serialized before the script runs.
        let mut args: Vec<Vec<u8>> = vec![sink.into(), holder.into(), to_json(&commit.record)?.into_bytes(), commit.dead.len().to_string().into_bytes()];
        for dead in &commit.dead {
            args.push(to_json(&dead.event)?.into_bytes());
            args.push(to_json(&dead.failed_at.replay_start())?.into_bytes());
            args.push(to_json(&DlqMeta::of(dead))?.into_bytes());
        }
        args.extend(commit.replayed.iter().filter(|id| is_stream_id(id)).map(|id| id.clone().into_bytes()));
        let (k, s, args) = (&k, &s, &args);
        // Replicated like a completion: a failover must not lose a moved
        // position or the DLQ entries of a given-up batch.
        let done: i64 = self
            .run_replicated(|mut c| async move {
                let mut invocation = self.scripts.sink_commit.prepare_invoke();
                invocation.key(&s.leases).key(&s.records).key(&k.dlq).key(&s.replay);
                for arg in args {
                    invocation.arg(arg.as_slice());
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(done == 1)
    }

    async fn sink_replays(&self, pipeline: &str, sink: &str, limit: usize) -> StoreResult<Vec<SinkReplay>> {
        let s = self.sink_keys(pipeline, sink);
        let (entries, _) = self.xrange_page(&s.replay, "", limit).await?;
        entries.iter().map(|entry| Ok(SinkReplay { id: entry.id.clone(), event: json_field::<Event>(entry, "e")? })).collect()
    }

    async fn output_lag(&self, pipeline: &str, position: &SinkPosition) -> StoreResult<SinkLag> {
        let k = self.keys(pipeline);
        let (output, counters) = (&k.output, &k.counters);
        let emitted: Option<String> =
            self.run(|mut c| async move { ::redis::cmd("HGET").arg(counters).arg("emitted").query_async(&mut c).await }).await?;
        let events = parse_u64(emitted).saturating_sub(position.seq);
        if events == 0 {
            return Ok(SinkLag { events: 0, oldest_at: None });
        }
        // The oldest waiting entry: the one the cursor is inside, or the next.
        let start = match cursor_entry(&position.cursor) {
            None => "-".to_string(),
            Some((entry, true)) => entry.to_string(),
            Some((entry, false)) => match start_after(entry) {
                Some(start) => start,
                None => return Ok(SinkLag { events, oldest_at: None }),
            },
        };
        let start = &start;
        let next: StreamRangeReply = self
            .run(|mut c| async move { ::redis::cmd("XRANGE").arg(output).arg(start).arg("+").arg("COUNT").arg(1).query_async(&mut c).await })
            .await?;
        Ok(SinkLag { events, oldest_at: next.ids.first().and_then(|e| id_ms(&e.id)) })
    }

    async fn window_lag(&self, pipeline: &str, window: &str, position: &SinkPosition, count_up_to: usize) -> StoreResult<SinkLag> {
        let key = format!("{}{window}:results", self.keys(pipeline).windows);
        let (waiting, _) = self.xrange_page(&key, &position.cursor, count_up_to).await?;
        // The stream id's ms is when the closer appended the result.
        Ok(SinkLag { events: waiting.len() as u64, oldest_at: waiting.first().and_then(|e| id_ms(&e.id)) })
    }

    async fn sink_reset(&self, pipeline: &str, sink: &str) -> StoreResult<()> {
        let s = self.sink_keys(pipeline, sink);
        let records = &s.records;
        let _: i64 = self.run(|mut c| async move { ::redis::cmd("HDEL").arg(records).arg(sink).query_async(&mut c).await }).await?;
        Ok(())
    }

    async fn sink_forget(&self, pipeline: &str, sink: &str, now_ms: i64) -> StoreResult<()> {
        let (k, s) = (self.keys(pipeline), self.sink_keys(pipeline, sink));
        // The entries differ only in their event, which the script copies
        // from the list as it is: `s` and `m` are made once, from a template.
        let no_event = Event { id: String::new(), kind: String::new(), source: String::new(), timestamp: 0, data: "{}".into() };
        let entry = removed_sink_entry(no_event, sink, now_ms);
        let stage = to_json(&entry.failed_at.replay_start())?;
        let meta = to_json(&DlqMeta::of(&entry))?;
        let (k, s, stage, meta) = (&k, &s, &stage, &meta);
        // The record goes in the first run, so nothing is added to the list
        // after it; each run moves a bounded part of the list.
        for _ in 0..FORGET_RUNS {
            let left: i64 = self
                .run_replicated(|mut c| async move {
                    self.scripts
                        .sink_forget
                        .key(&s.records)
                        .key(&s.leases)
                        .key(&s.replay)
                        .key(&k.dlq)
                        .arg(sink)
                        .arg(stage)
                        .arg(meta)
                        .arg(FORGET_CHUNK)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            if left == 0 {
                return Ok(());
            }
        }
        Err(StoreError::Internal(format!(
            "sink `{sink}`'s redelivery list still holds events after {} moved back to the DLQ; the next forget moves on",
            FORGET_RUNS * FORGET_CHUNK
        )))
    }
}

/// Redelivery-list entries moved back to the DLQ per `sink_forget` script run.
const FORGET_CHUNK: usize = 1_000;
/// Most script runs of one `sink_forget` (a list of up to a million events).
const FORGET_RUNS: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::cursor_entry;

    #[test]
    fn cursor_entries() {
        assert_eq!(cursor_entry(""), None);
        assert_eq!(cursor_entry("5-1"), Some(("5-1", false)));
        assert_eq!(cursor_entry("5-1.3"), Some(("5-1", true)));
    }
}
