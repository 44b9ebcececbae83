//! The queue on Redis: a stream with one consumer group per pipeline
//! (blocking reads on dedicated connections), retries in a sorted set, and
//! the counters. Completion is in `complete.rs`.

use ::redis::streams::{StreamAutoClaimReply, StreamReadReply};
use async_trait::async_trait;

use super::*;
use crate::domain::{CompleteReport, Counters, Delivery, EnqueueOptions, EnqueueOutcome, Enqueued, EntryResult, QueueLimits, QueuedEvent};
use crate::store::shared::{event_json, queue_json};
use crate::store::Queue;

impl RedisStore {
    /// A blocking `XREADGROUP` on a dedicated connection.
    async fn read_blocking(&self, keys: &Keys, consumer: &str, count: usize, block_ms: u64) -> StoreResult<Vec<Delivery>> {
        let pooled = self.blocking.lock().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect_with(&AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT), true).await?,
        };
        let deadline = Duration::from_millis(block_ms) + RESPONSE_TIMEOUT;
        let result = tokio::time::timeout(deadline, xreadgroup(&mut conn, &keys.queue, consumer, count, Some(block_ms))).await;
        match result {
            Ok(Ok(reply)) => {
                let mut pool = self.blocking.lock();
                if pool.len() < BLOCKING_POOL {
                    pool.push(conn);
                }
                drop(pool);
                deliveries(reply)
            }
            // The stream was deleted (its pipeline too) while we waited.
            Ok(Err(e)) if e.code() == Some("UNBLOCKED") => Ok(Vec::new()),
            Ok(Err(e)) => {
                let err = map_err(&e);
                if !matches!(err, StoreError::Unavailable(_)) && !e.is_unrecoverable_error() {
                    let mut pool = self.blocking.lock();
                    if pool.len() < BLOCKING_POOL {
                        pool.push(conn);
                    }
                }
                Err(err)
            }
            Err(_) => Err(StoreError::Unavailable("Redis did not answer a blocking read in time".into())),
        }
    }
}

/// `XREADGROUP`, making the group (and stream) first if it is missing.
async fn xreadgroup(
    conn: &mut Conn,
    queue: &str,
    consumer: &str,
    count: usize,
    block_ms: Option<u64>,
) -> RedisResult<Option<StreamReadReply>> {
    let cmd = || {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(GROUP).arg(consumer).arg("COUNT").arg(count);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(queue).arg(">");
        cmd
    };
    match cmd().query_async(conn).await {
        Err(e) if e.code() == Some("NOGROUP") => {
            create_group(conn, queue).await?;
            cmd().query_async(conn).await
        }
        other => other,
    }
}

async fn create_group(conn: &mut Conn, queue: &str) -> RedisResult<()> {
    let created: RedisResult<()> =
        ::redis::cmd("XGROUP").arg("CREATE").arg(queue).arg(GROUP).arg("0").arg("MKSTREAM").query_async(conn).await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

fn deliveries(reply: Option<StreamReadReply>) -> StoreResult<Vec<Delivery>> {
    let Some(reply) = reply else { return Ok(Vec::new()) };
    reply.keys.into_iter().flat_map(|key| key.ids).map(delivery).collect()
}

fn delivery(entry: StreamId) -> StoreResult<Delivery> {
    let events: Vec<QueuedEvent> = json_field(&entry, "e")?;
    let bytes = field_bytes(&entry, "e")?.len() as u64;
    Ok(Delivery { id: entry.id, events, bytes })
}

#[async_trait]
impl Queue for RedisStore {
    async fn enqueue_with(
        &self,
        pipeline: &str,
        events: &[QueuedEvent],
        rejected: u64,
        limits: QueueLimits,
        options: &EnqueueOptions,
    ) -> StoreResult<EnqueueOutcome> {
        let k = self.keys(pipeline);
        let dedup = options.dedup_window_ms > 0;
        // With a dedup window the script joins the chunk from the events that are not duplicates.
        let json = if dedup { Vec::new() } else { queue_json(events) };
        let pairs: Vec<(&str, Vec<u8>)> = if dedup { events.iter().map(|q| (q.event.id.as_str(), event_json(q))).collect() } else { Vec::new() };
        let record = options.idempotency.as_ref();
        let record_key = format!("{}{}", k.idempotency, record.map_or("", |r| r.key_sha.as_str()));
        let (k, json, pairs, record_key) = (&k, &json, &pairs, &record_key);
        let (status, depth, bytes, duplicates, answer): (i64, i64, i64, i64, String) = self
            .run_replicated(|mut c| async move {
                let mut call = self.scripts.enqueue.key(&k.queue);
                call.key(&k.depth).key(&k.counters).key(&k.bytes).key(record_key).key(&k.seen);
                call.arg(limits.max_depth.to_string())
                    .arg(events.len())
                    .arg(rejected)
                    .arg(json)
                    .arg(limits.max_bytes.to_string())
                    .arg(options.now_ms)
                    .arg(record.map_or("", |r| r.body_sha.as_str()))
                    .arg(record.map_or("", |r| r.answer.as_str()))
                    .arg(record.map_or(0, |r| r.ttl_ms.max(1)))
                    .arg(options.dedup_window_ms);
                for (id, event) in pairs {
                    call.arg(*id).arg(event);
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        let (depth, bytes, duplicates) = (depth.max(0) as u64, bytes.max(0) as u64, duplicates.max(0) as u64);
        Ok(match status {
            1 => EnqueueOutcome::Ran { enqueued: Enqueued::Accepted { depth }, duplicates },
            0 => EnqueueOutcome::Ran { enqueued: Enqueued::Full { depth, bytes }, duplicates: 0 },
            2 => EnqueueOutcome::Replayed { answer, duplicates },
            3 => EnqueueOutcome::KeyReused,
            other => return Err(StoreError::Internal(format!("the enqueue script of pipeline {pipeline} answered status {other}"))),
        })
    }

    async fn read(&self, pipeline: &str, consumer: &str, max_entries: usize, block_ms: u64) -> StoreResult<Vec<Delivery>> {
        if max_entries == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(pipeline);
        if block_ms == 0 {
            let queue = &k.queue;
            let reply = self.run(|mut c| async move { xreadgroup(&mut c, queue, consumer, max_entries, None).await }).await?;
            deliveries(reply)
        } else {
            self.read_blocking(&k, consumer, max_entries, block_ms).await
        }
    }

    async fn reclaim(&self, pipeline: &str, consumer: &str, min_idle_ms: u64, max_entries: usize) -> StoreResult<Vec<Delivery>> {
        if max_entries == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(pipeline);
        let queue = &k.queue;
        let reply: Option<StreamAutoClaimReply> = self
            .run(|mut c| async move {
                let claimed = ::redis::cmd("XAUTOCLAIM")
                    .arg(queue)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(min_idle_ms)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(max_entries)
                    .query_async(&mut c)
                    .await;
                match claimed {
                    // No group yet: nothing was ever delivered.
                    Err(e) if e.code() == Some("NOGROUP") => Ok(None),
                    other => other.map(Some),
                }
            })
            .await?;
        match reply {
            None => Ok(Vec::new()),
            Some(reply) => reply.claimed.into_iter().filter(|entry| !entry.map.is_empty()).map(delivery).collect(),
        }
    }

    async fn complete_windowed(&self, pipeline: &str, results: &[EntryResult], watermark: Option<i64>, now_ms: i64) -> StoreResult<CompleteReport> {
        self.complete_entries(pipeline, results, watermark, now_ms).await
    }

    async fn promote_retries(&self, pipeline: &str, now_ms: i64, max_events: usize) -> StoreResult<u64> {
        if max_events == 0 {
            return Ok(0);
        }
        let k = self.keys(pipeline);
        self.run(|mut c| async move {
            self.scripts.promote.key(&k.retry).key(&k.queue).key(&k.bytes).arg(now_ms).arg(max_events).invoke_async(&mut c).await
        })
        .await
    }

    async fn counters(&self, pipeline: &str) -> StoreResult<Counters> {
        let k = self.keys(pipeline);
        let (depth, bytes, values, dlq_size): (Option<String>, Option<String>, Vec<Option<String>>, u64) = self
            .run(|mut c| async move {
                ::redis::pipe()
                    .get(&k.depth)
                    .get(&k.bytes)
                    .cmd("HMGET")
                    .arg(&k.counters)
                    .arg(&["accepted", "rejected", "processed", "emitted"])
                    .xlen(&k.dlq)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let mut values = values.into_iter().map(parse_u64);
        let mut next = || values.next().unwrap_or(0);
        Ok(Counters {
            accepted: next(),
            rejected: next(),
            processed: next(),
            emitted: next(),
            dlq_size,
            queue_depth: parse_u64(depth),
            queue_bytes: parse_u64(bytes),
        })
    }

    async fn touch(&self, pipeline: &str, consumer: &str, ids: &[String]) -> StoreResult<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let k = self.keys(pipeline);
        let queue = &k.queue;
        self.run(|mut c| async move {
            self.scripts.touch.key(queue).arg(GROUP).arg(consumer).arg(ids).invoke_async(&mut c).await
        })
        .await
    }
}
