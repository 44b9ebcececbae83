//! The Redis backend: Redis Streams with one consumer group per pipeline for
//! the queue, streams for outputs and the DLQ, a sorted set for retries, and
//! Lua scripts wherever a step must be atomic.
//!
//! Key layout (`P` = the key prefix, e.g. `sluice`; `{id}` is a Redis Cluster
//! hash tag, so all keys of one pipeline live in one slot):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{id}:queue` | stream, group `workers` | one entry per chunk: `e` = JSON array of queued events, `n` = count |
//! | `P:{id}:depth` | string (int) | events accepted and not yet finished |
//! | `P:{id}:counters` | hash | `accepted`, `rejected`, `processed`, `emitted` |
//! | `P:{id}:output` | stream | one entry per completed queue entry with outputs: `n` = count, `e` = JSON array of the output events (downstream consumers read this); trimmed by age (`XTRIM MINID`, the output retention) |
//! | `P:{id}:dlq` | stream | one entry per failed event: `e` = event JSON, `s` = stage (JSON string), `m` = the rest (JSON) |
//! | `P:{id}:retry` | sorted set | score = due time (ms), member = `<random hex>|<queued event JSON>` |
//! | `P:{_catalog}:plugin-meta` | hash | `name/version` → plugin version JSON |
//! | `P:{_catalog}:plugin-bytes` | hash | `name/version` → component bytes |
//! | `P:{_catalog}:plugin-sha` | hash | `name/sha256` → version (dedup) |
//! | `P:{_catalog}:plugin-next` | hash | `name` → last version handed out |
//! | `P:{_catalog}:pipelines` | hash | id → spec JSON |
//! | `P:{_catalog}:pipelines-version` | string (int) | bumped on every spec change |
//! | `P:{_catalog}:tables` | hash | name → table JSON object |
//! | `P:{_catalog}:tables-version` | string (int) | bumped on every table change |
//!
//! Connections: one shared multiplexed connection for everything that does
//! not block (dropped and re-made on I/O errors and timeouts, so the store
//! recovers when Redis comes back), and a small pool of dedicated
//! connections for blocking `XREADGROUP` calls, which would otherwise stall
//! every command queued behind them.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use ::redis::{AsyncConnectionConfig, Client, RedisError, RedisResult, Script, Value};
use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{
    AlertRecord, CloseCommit, CompleteReport, Counters, DirtyMark, DistinctQuery, PaneRow, WindowClock, WindowRecord, Delivery, DlqEntry, DlqSelector, Enqueued, EntryResult, Page, PluginVersion, PutPlugin,
    QueuedEvent, ReplayReport, Store, StoreError, StoreResult,
};
use crate::event::Event;
use crate::runtime::ErrorKind;

mod windows;

/// The consumer group every worker of a pipeline joins.
const GROUP: &str = "workers";
/// How long to wait for a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long to wait for an answer to one (non-blocking) command or script.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(2000);
/// DLQ entries moved per script run when replaying many (each run is atomic).
const REPLAY_BATCH: usize = 1000;
/// Most events put into one queue entry by a DLQ replay.
const REPLAY_CHUNK: usize = 500;
/// Dedicated connections kept for blocking reads.
const BLOCKING_POOL: usize = 32;

/// The Redis-backed [`Store`].
pub struct RedisStore {
    client: Client,
    prefix: String,
    shared: Mutex<Option<MultiplexedConnection>>,
    blocking: Mutex<Vec<MultiplexedConnection>>,
    scripts: Scripts,
}

struct Scripts {
    enqueue: Script,
    complete: Script,
    begin_close: Script,
    finish_close: Script,
    put_alert: Script,
    promote: Script,
    replay: Script,
    dlq_delete_oldest: Script,
    dlq_delete_all: Script,
    put_plugin: Script,
    delete_plugin: Script,
    put_pipeline: Script,
    delete_pipeline: Script,
}

/// The keys of one pipeline.
struct Keys {
    queue: String,
    depth: String,
    counters: String,
    output: String,
    dlq: String,
    retry: String,
    /// The event-time clock (hash: `wm`, `maxts`, `last`, `gate`).
    clock: String,
    alerts: String,
    /// Prefix of every window key: `P:{id}:w:`.
    windows: String,
}

/// What a DLQ stream entry carries in `m` (the event and the stage have
/// their own fields so a replay can rebuild a queued event without JSON
/// parsing in Lua).
#[derive(Serialize, Deserialize)]
struct DlqMeta {
    error: String,
    error_kind: ErrorKind,
    stage: String,
    plugin: String,
    plugin_version: u32,
    attempts: u32,
    first_failed_at: i64,
    last_failed_at: i64,
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`); every key starts
    /// with `key_prefix` (e.g. `sluice`).
    pub async fn connect(url: &str, key_prefix: &str) -> StoreResult<Self> {
        let client = Client::open(url).map_err(|e| StoreError::Internal(format!("bad Redis URL {url:?}: {e}")))?;
        let store = RedisStore {
            client,
            prefix: key_prefix.to_string(),
            shared: Mutex::new(None),
            blocking: Mutex::new(Vec::new()),
            scripts: Scripts::new(),
        };
        store.ping().await?;
        Ok(store)
    }

    /// The stream downstream consumers read a pipeline's outputs from.
    pub fn output_stream_key(&self, pipeline: &str) -> String {
        self.keys(pipeline).output
    }

    fn keys(&self, pipeline: &str) -> Keys {
        let base = format!("{}:{{{}}}", self.prefix, pipeline);
        Keys {
            queue: format!("{base}:queue"),
            depth: format!("{base}:depth"),
            counters: format!("{base}:counters"),
            output: format!("{base}:output"),
            dlq: format!("{base}:dlq"),
            retry: format!("{base}:retry"),
            clock: format!("{base}:wclock"),
            alerts: format!("{base}:alerts"),
            windows: format!("{base}:w:"),
        }
    }

    fn catalog(&self, what: &str) -> String {
        format!("{}:{{_catalog}}:{what}", self.prefix)
    }

    /// The shared connection, made if there is none.
    async fn conn(&self) -> StoreResult<MultiplexedConnection> {
        if let Some(conn) = self.shared.lock().clone() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let conn = self.connect_with(&config).await?;
        let mut slot = self.shared.lock();
        Ok(slot.get_or_insert(conn).clone())
    }

    async fn connect_with(&self, config: &AsyncConnectionConfig) -> StoreResult<MultiplexedConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.client.get_multiplexed_async_connection_with_config(config))
            .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(map_err(&e)),
            Err(_) => Err(StoreError::Unavailable("timed out connecting to Redis".into())),
        }
    }

    /// Runs `f` on the shared connection with a deadline; a broken or slow
    /// connection is thrown away so the next call makes a fresh one.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(RESPONSE_TIMEOUT + Duration::from_millis(500), f(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let err = map_err(&e);
                if matches!(err, StoreError::Unavailable(_)) || e.is_unrecoverable_error() {
                    self.shared.lock().take();
                }
                Err(err)
            }
            Err(_) => {
                self.shared.lock().take();
                Err(StoreError::Unavailable("Redis did not answer in time".into()))
            }
        }
    }

    /// A blocking `XREADGROUP` on a dedicated connection.
    async fn read_blocking(&self, keys: &Keys, consumer: &str, count: usize, block_ms: u64) -> StoreResult<Vec<Delivery>> {
        let pooled = self.blocking.lock().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect_with(&AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT)).await?,
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

    /// Replays DLQ entries oldest first, in atomic batches, up to `end`
    /// (an id, or `+`), at most `limit` of them.
    async fn replay_range(&self, keys: &Keys, end: &str, limit: usize) -> StoreResult<u64> {
        let mut moved = 0u64;
        let mut left = limit;
        while left > 0 {
            let batch = left.min(REPLAY_BATCH);
            let (n, _failed): (u64, u64) = self
                .run(|mut c| async move {
                    self.scripts
                        .replay
                        .key(&keys.dlq)
                        .key(&keys.queue)
                        .key(&keys.depth)
                        .arg("range")
                        .arg(REPLAY_CHUNK)
                        .arg("-")
                        .arg(end)
                        .arg(batch)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            moved += n;
            left -= n as usize;
            if (n as usize) < batch {
                break;
            }
        }
        Ok(moved)
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

    async fn xrange_page(&self, key: &str, cursor: &str, limit: usize) -> StoreResult<(Vec<StreamId>, String)> {
        let start = match cursor {
            "" => "-".to_string(),
            c if is_stream_id(c) => format!("({c}"),
            c => return Err(StoreError::Internal(format!("invalid cursor {c:?}"))),
        };
        let empty_cursor = if cursor.is_empty() { "0-0".to_string() } else { cursor.to_string() };
        if limit == 0 {
            return Ok((Vec::new(), empty_cursor));
        }
        let reply: StreamRangeReply = self
            .run(|mut c| async move {
                ::redis::cmd("XRANGE").arg(key).arg(&start).arg("+").arg("COUNT").arg(limit).query_async(&mut c).await
            })
            .await?;
        let next = reply.ids.last().map(|entry| entry.id.clone()).unwrap_or(empty_cursor);
        Ok((reply.ids, next))
    }
}

/// A position in the output stream, whose entries hold a batch of events
/// each: after the first `taken` events of `entry` (`taken` 0: after all of
/// it). Written `<entry>` or `<entry>.<taken>`.
#[derive(Debug, PartialEq)]
struct OutputCursor {
    entry: String,
    taken: usize,
}

impl OutputCursor {
    /// `None` for the empty cursor (from the start).
    fn parse(cursor: &str) -> StoreResult<Option<OutputCursor>> {
        if cursor.is_empty() {
            return Ok(None);
        }
        let invalid = || StoreError::Internal(format!("invalid cursor {cursor:?}"));
        let (entry, taken) = match cursor.split_once('.') {
            None => (cursor, 0),
            Some((entry, taken)) => (entry, taken.parse::<usize>().ok().filter(|t| *t > 0 && taken.bytes().all(|b| b.is_ascii_digit())).ok_or_else(invalid)?),
        };
        if !is_stream_id(entry) {
            return Err(invalid());
        }
        Ok(Some(OutputCursor { entry: entry.to_string(), taken }))
    }
}

impl std::fmt::Display for OutputCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.taken {
            0 => f.write_str(&self.entry),
            taken => write!(f, "{}.{taken}", self.entry),
        }
    }
}

/// `XREADGROUP`, making the group (and stream) first if it is missing.
async fn xreadgroup(
    conn: &mut MultiplexedConnection,
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

async fn create_group(conn: &mut MultiplexedConnection, queue: &str) -> RedisResult<()> {
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
    Ok(Delivery { id: entry.id, events })
}

fn field_bytes<'a>(entry: &'a StreamId, name: &str) -> StoreResult<&'a [u8]> {
    match entry.map.get(name) {
        Some(Value::BulkString(bytes)) => Ok(bytes),
        Some(Value::SimpleString(text)) => Ok(text.as_bytes()),
        _ => Err(StoreError::Internal(format!("stream entry {} has no field {name:?}", entry.id))),
    }
}

fn json_field<T: for<'de> Deserialize<'de>>(entry: &StreamId, name: &str) -> StoreResult<T> {
    serde_json::from_slice(field_bytes(entry, name)?)
        .map_err(|e| StoreError::Internal(format!("stream entry {} field {name:?}: {e}", entry.id)))
}

fn dlq_entry(entry: &StreamId) -> StoreResult<DlqEntry> {
    let event: Event = json_field(entry, "e")?;
    let meta: DlqMeta = json_field(entry, "m")?;
    Ok(DlqEntry {
        dlq_id: entry.id.clone(),
        event,
        error: meta.error,
        error_kind: meta.error_kind,
        stage: meta.stage,
        plugin: meta.plugin,
        plugin_version: meta.plugin_version,
        attempts: meta.attempts,
        first_failed_at: meta.first_failed_at,
        last_failed_at: meta.last_failed_at,
    })
}

/// `123-4` or `123` (what Redis accepts as a stream id).
fn is_stream_id(text: &str) -> bool {
    let mut parts = text.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let ok = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
    ok(ms) && parts.next().is_none_or(ok)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))
}

/// Connection trouble, timeouts and a server that cannot serve right now are
/// `Unavailable`; anything else is `Internal`.
fn map_err(e: &RedisError) -> StoreError {
    use ::redis::ErrorKind as K;
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.kind(), K::BusyLoadingError | K::TryAgain | K::ClusterDown | K::MasterDown | K::ReadOnly)
        || matches!(e.code(), Some("OOM" | "MISCONF" | "BUSY" | "LOADING" | "MASTERDOWN"));
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

fn parse_u64(value: Option<String>) -> u64 {
    value.and_then(|v| v.parse::<i64>().ok()).map(|v| v.max(0) as u64).unwrap_or(0)
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        let _: String = self.run(|mut c| async move { ::redis::cmd("PING").query_async(&mut c).await }).await?;
        Ok(())
    }

    // ---- catalog ----------------------------------------------------------

    async fn put_plugin(&self, name: &str, sha256: &str, bytes: &[u8], now_ms: i64) -> StoreResult<PutPlugin> {
        let (meta_key, sha_key, next_key, bytes_key) =
            (self.catalog("plugin-meta"), self.catalog("plugin-sha"), self.catalog("plugin-next"), self.catalog("plugin-bytes"));
        let (created, meta): (i64, String) = self
            .run(|mut c| async move {
                self.scripts
                    .put_plugin
                    .key(&meta_key)
                    .key(&sha_key)
                    .key(&next_key)
                    .key(&bytes_key)
                    .arg(name)
                    .arg(sha256)
                    .arg(bytes.len())
                    .arg(now_ms)
                    .arg(bytes)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let version: PluginVersion =
            serde_json::from_str(&meta).map_err(|e| StoreError::Internal(format!("bad plugin metadata: {e}")))?;
        Ok(PutPlugin { version, created: created == 1 })
    }

    async fn list_plugins(&self) -> StoreResult<Vec<PluginVersion>> {
        let key = self.catalog("plugin-meta");
        let all: Vec<String> = self.run(|mut c| async move { ::redis::cmd("HVALS").arg(&key).query_async(&mut c).await }).await?;
        let mut versions = all
            .iter()
            .map(|meta| serde_json::from_str::<PluginVersion>(meta))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Internal(format!("bad plugin metadata: {e}")))?;
        versions.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
        Ok(versions)
    }

    async fn plugin_bytes(&self, name: &str, version: u32) -> StoreResult<Option<Vec<u8>>> {
        let key = self.catalog("plugin-bytes");
        let field = format!("{name}/{version}");
        self.run(|mut c| async move { ::redis::cmd("HGET").arg(&key).arg(&field).query_async(&mut c).await }).await
    }

    async fn delete_plugin_version(&self, name: &str, version: u32) -> StoreResult<bool> {
        let (meta_key, sha_key, bytes_key) = (self.catalog("plugin-meta"), self.catalog("plugin-sha"), self.catalog("plugin-bytes"));
        let deleted: i64 = self
            .run(|mut c| async move {
                self.scripts
                    .delete_plugin
                    .key(&meta_key)
                    .key(&sha_key)
                    .key(&bytes_key)
                    .arg(name)
                    .arg(version)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(deleted == 1)
    }

    async fn put_pipeline(&self, id: &str, spec_json: &str) -> StoreResult<bool> {
        let (specs, version) = (self.catalog("pipelines"), self.catalog("pipelines-version"));
        let created: i64 = self
            .run(|mut c| async move {
                self.scripts.put_pipeline.key(&specs).key(&version).arg(id).arg(spec_json).invoke_async(&mut c).await
            })
            .await?;
        Ok(created == 1)
    }

    async fn get_pipeline(&self, id: &str) -> StoreResult<Option<String>> {
        let key = self.catalog("pipelines");
        self.run(|mut c| async move { ::redis::cmd("HGET").arg(&key).arg(id).query_async(&mut c).await }).await
    }

    async fn list_pipelines(&self) -> StoreResult<Vec<(String, String)>> {
        let key = self.catalog("pipelines");
        let all: BTreeMap<String, String> =
            self.run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await }).await?;
        Ok(all.into_iter().collect())
    }

    async fn delete_pipeline(&self, id: &str) -> StoreResult<bool> {
        let (specs, version) = (self.catalog("pipelines"), self.catalog("pipelines-version"));
        let existed: i64 = self
            .run(|mut c| async move {
                self.scripts.delete_pipeline.key(&specs).key(&version).arg(id).invoke_async(&mut c).await
            })
            .await?;
        // The pipeline's data lives in its own hash slot: a second step.
        let k = self.keys(id);
        let _: i64 = self
            .run(|mut c| async move {
                ::redis::cmd("UNLINK")
                    .arg(&k.queue)
                    .arg(&k.depth)
                    .arg(&k.counters)
                    .arg(&k.output)
                    .arg(&k.dlq)
                    .arg(&k.retry)
                    .arg(&k.clock)
                    .arg(&k.alerts)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        self.delete_window_keys(id).await?;
        Ok(existed == 1)
    }

    async fn pipelines_version(&self) -> StoreResult<u64> {
        let key = self.catalog("pipelines-version");
        let v: Option<String> = self.run(|mut c| async move { ::redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        Ok(parse_u64(v))
    }

    async fn put_table(&self, name: &str, entries: &BTreeMap<String, String>) -> StoreResult<()> {
        let (tables, version) = (self.catalog("tables"), self.catalog("tables-version"));
        let json = to_json(entries)?;
        let _: () = self
            .run(|mut c| async move {
                ::redis::pipe().atomic().hset(&tables, name, &json).ignore().incr(&version, 1).ignore().query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    async fn get_table(&self, name: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
        let key = self.catalog("tables");
        let json: Option<String> =
            self.run(|mut c| async move { ::redis::cmd("HGET").arg(&key).arg(name).query_async(&mut c).await }).await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Internal(format!("bad table {name:?}: {e}"))))
            .transpose()
    }

    async fn list_tables(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        let key = self.catalog("tables");
        let all: BTreeMap<String, String> =
            self.run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await }).await?;
        all.into_iter()
            .map(|(name, json)| match serde_json::from_str(&json) {
                Ok(table) => Ok((name, table)),
                Err(e) => Err(StoreError::Internal(format!("bad table {name:?}: {e}"))),
            })
            .collect()
    }

    async fn tables_version(&self) -> StoreResult<u64> {
        let key = self.catalog("tables-version");
        let v: Option<String> = self.run(|mut c| async move { ::redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        Ok(parse_u64(v))
    }

    // ---- queue --------------------------------------------------------------

    async fn enqueue(&self, pipeline: &str, events: &[QueuedEvent], rejected: u64, max_depth: u64) -> StoreResult<Enqueued> {
        let k = self.keys(pipeline);
        let json = QueuedEvent::json_array(events);
        let n = events.len();
        let (accepted, depth): (i64, i64) = self
            .run(|mut c| async move {
                self.scripts
                    .enqueue
                    .key(&k.queue)
                    .key(&k.depth)
                    .key(&k.counters)
                    .arg(max_depth.to_string())
                    .arg(n)
                    .arg(rejected)
                    .arg(&json)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let depth = depth.max(0) as u64;
        Ok(if accepted == 1 { Enqueued::Accepted { depth } } else { Enqueued::Full { depth } })
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
    async fn window_clock(&self, pipeline: &str) -> StoreResult<WindowClock> {
        self.clock(pipeline).await
    }
    async fn begin_close(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<WindowClock>> {
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
    async fn finish_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<()> {
        self.commit_close(pipeline, commit).await
    }
    async fn final_results(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<WindowRecord>> {
        self.finals(pipeline, window, from, to).await
    }
    async fn read_window_results(&self, pipeline: &str, window: &str, cursor: &str, limit: usize) -> StoreResult<Page<WindowRecord>> {
        self.results_page(pipeline, window, cursor, limit).await
    }
    async fn put_alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool> {
        self.alert(pipeline, alert, now_ms, retention_ms).await
    }
    async fn tail_cursor(&self, pipeline: &str, window: Option<&str>) -> StoreResult<String> {
        self.stream_tail(pipeline, window).await
    }

    async fn read_alerts(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>> {
        self.alerts_page(pipeline, cursor, limit).await
    }

    async fn promote_retries(&self, pipeline: &str, now_ms: i64, max_events: usize) -> StoreResult<u64> {
        if max_events == 0 {
            return Ok(0);
        }
        let k = self.keys(pipeline);
        self.run(|mut c| async move {
            self.scripts.promote.key(&k.retry).key(&k.queue).arg(now_ms).arg(max_events).invoke_async(&mut c).await
        })
        .await
    }

    async fn counters(&self, pipeline: &str) -> StoreResult<Counters> {
        let k = self.keys(pipeline);
        let (depth, values, dlq_size): (Option<String>, Vec<Option<String>>, u64) = self
            .run(|mut c| async move {
                ::redis::pipe()
                    .get(&k.depth)
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
        })
    }

    // ---- dead letter queue ----------------------------------------------

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
                let mut seen = HashSet::new();
                let ids: Vec<&str> = ids.iter().map(String::as_str).filter(|id| seen.insert(*id)).collect();
                let valid: Vec<&str> = ids.iter().copied().filter(|id| is_stream_id(id)).collect();
                let mut report = ReplayReport { replayed: 0, failed: (ids.len() - valid.len()) as u64 };
                if valid.is_empty() {
                    return Ok(report);
                }
                let valid = &valid;
                let k = &k;
                let (n, failed): (u64, u64) = self
                    .run(|mut c| async move {
                        let mut invocation = self.scripts.replay.prepare_invoke();
                        invocation.key(&k.dlq).key(&k.queue).key(&k.depth).arg("ids").arg(REPLAY_CHUNK);
                        for id in valid {
                            invocation.arg(*id);
                        }
                        invocation.invoke_async(&mut c).await
                    })
                    .await?;
                report.replayed = n;
                report.failed += failed;
                Ok(report)
            }
            DlqSelector::Oldest(n) => Ok(ReplayReport { replayed: self.replay_range(&k, "+", *n).await?, failed: 0 }),
            DlqSelector::All => {
                // Everything there now; entries failing meanwhile wait for the next replay.
                let Some(last) = self.dlq_last_id(&k).await? else { return Ok(ReplayReport::default()) };
                Ok(ReplayReport { replayed: self.replay_range(&k, &last, usize::MAX).await?, failed: 0 })
            }
        }
    }

    async fn dlq_delete(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<u64> {
        let k = self.keys(pipeline);
        let dlq = &k.dlq;
        match selector {
            DlqSelector::Ids(ids) => {
                let mut seen = HashSet::new();
                let valid: Vec<&str> = ids.iter().map(String::as_str).filter(|id| is_stream_id(id) && seen.insert(*id)).collect();
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

    // ---- outputs ----------------------------------------------------------

    async fn trim_output(&self, pipeline: &str, before_ms: i64) -> StoreResult<u64> {
        let k = self.keys(pipeline);
        let output = &k.output;
        // Stream ids start with the append time (the Redis server's clock).
        let min_id = before_ms.max(0);
        self.run(|mut c| async move { ::redis::cmd("XTRIM").arg(output).arg("MINID").arg(min_id).query_async(&mut c).await })
            .await
    }

    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>> {
        let k = self.keys(pipeline);
        let position = OutputCursor::parse(cursor)?;
        let unchanged = if cursor.is_empty() { "0-0".to_string() } else { cursor.to_string() };
        if limit == 0 {
            return Ok(Page { items: Vec::new(), next_cursor: unchanged });
        }
        let mut start = match &position {
            None => "-".to_string(),
            Some(OutputCursor { entry, taken: 0 }) => format!("({entry}"),
            Some(OutputCursor { entry, .. }) => entry.clone(),
        };
        let output = &k.output;
        let mut items = Vec::new();
        let mut next_cursor = unchanged;
        // An entry holds anything from one event to a whole request's: read
        // a few entries, then twice as many each time, until the page is full.
        let mut count = 4usize;
        loop {
            let want = count.min(limit - items.len());
            let range_start = start.clone();
            let reply: StreamRangeReply = self
                .run(|mut c| async move {
                    ::redis::cmd("XRANGE").arg(output).arg(&range_start).arg("+").arg("COUNT").arg(want).query_async(&mut c).await
                })
                .await?;
            for entry in &reply.ids {
                if items.len() == limit {
                    // Full at an entry's end: the cursor is that entry's id.
                    break;
                }
                let events: Vec<Event> = json_field(entry, "e")?;
                let skip = match &position {
                    Some(p) if p.entry == entry.id => p.taken,
                    _ => 0,
                };
                for (index, event) in events.into_iter().enumerate().skip(skip) {
                    if items.len() == limit {
                        next_cursor = OutputCursor { entry: entry.id.clone(), taken: index }.to_string();
                        return Ok(Page { items, next_cursor });
                    }
                    items.push(event);
                }
                next_cursor = entry.id.clone();
            }
            if reply.ids.len() < want || items.len() == limit {
                break;
            }
            start = format!("({next_cursor}");
            count *= 2;
        }
        Ok(Page { items, next_cursor })
    }
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            enqueue: Script::new(ENQUEUE_LUA),
            complete: Script::new(windows::COMPLETE_LUA),
            begin_close: Script::new(windows::BEGIN_CLOSE_LUA),
            finish_close: Script::new(windows::FINISH_CLOSE_LUA),
            put_alert: Script::new(windows::PUT_ALERT_LUA),
            promote: Script::new(PROMOTE_LUA),
            replay: Script::new(REPLAY_LUA),
            dlq_delete_oldest: Script::new(DLQ_DELETE_OLDEST_LUA),
            dlq_delete_all: Script::new(DLQ_DELETE_ALL_LUA),
            put_plugin: Script::new(PUT_PLUGIN_LUA),
            delete_plugin: Script::new(DELETE_PLUGIN_LUA),
            put_pipeline: Script::new(PUT_PIPELINE_LUA),
            delete_pipeline: Script::new(DELETE_PIPELINE_LUA),
        }
    }
}

/// KEYS: queue, depth, counters. ARGV: max_depth, n, rejected, chunk JSON.
/// Answers {1 accepted | 0 full, depth}.
const ENQUEUE_LUA: &str = r#"
local depth = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = tonumber(ARGV[2])
local rejected = tonumber(ARGV[3])
if n > 0 then
  if depth + n > tonumber(ARGV[1]) then
    return {0, depth}
  end
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[4], 'n', ARGV[2])
  depth = redis.call('INCRBY', KEYS[2], n)
  redis.call('HINCRBY', KEYS[3], 'accepted', n)
end
if rejected > 0 then
  redis.call('HINCRBY', KEYS[3], 'rejected', rejected)
end
return {1, depth}
"#;

/// KEYS: retry, queue. ARGV: now, max events. Answers how many moved.
const PROMOTE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due == 0 then
  return 0
end
local parts = {}
for j, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  parts[j] = string.sub(member, sep + 1)
  redis.call('ZREM', KEYS[1], member)
end
redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #due)
return #due
"#;

/// KEYS: dlq, queue, depth. ARGV: mode, events per queue entry, then for
/// mode `ids` the ids, for mode `range` start, end, count.
/// Answers {replayed, failed}.
const REPLAY_LUA: &str = r#"
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end
local entries = {}
local failed = 0
if ARGV[1] == 'ids' then
  for j = 3, #ARGV do
    local found = redis.call('XRANGE', KEYS[1], ARGV[j], ARGV[j])
    if #found == 1 then
      entries[#entries + 1] = found[1]
    else
      failed = failed + 1
    end
  end
else
  entries = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[4], 'COUNT', tonumber(ARGV[5]))
end
local chunk = tonumber(ARGV[2])
local parts = {}
local n = 0
for _, entry in ipairs(entries) do
  local f = entry[2]
  parts[#parts + 1] = '{"event":' .. field(f, 'e') .. ',"start_stage":' .. field(f, 's') .. ',"attempt":1}'
  redis.call('XDEL', KEYS[1], entry[1])
  n = n + 1
  if #parts >= chunk then
    redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #parts)
    parts = {}
  end
end
if #parts > 0 then
  redis.call('XADD', KEYS[2], '*', 'e', '[' .. table.concat(parts, ',') .. ']', 'n', #parts)
end
if n > 0 then
  redis.call('INCRBY', KEYS[3], n)
end
return {n, failed}
"#;

/// KEYS: dlq. ARGV: n. Answers how many were deleted.
const DLQ_DELETE_OLDEST_LUA: &str = r#"
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
for _, entry in ipairs(entries) do
  redis.call('XDEL', KEYS[1], entry[1])
end
return #entries
"#;

/// KEYS: dlq. Answers how many were deleted.
const DLQ_DELETE_ALL_LUA: &str = r#"
local n = redis.call('XLEN', KEYS[1])
redis.call('UNLINK', KEYS[1])
return n
"#;

/// KEYS: meta, sha, next, bytes. ARGV: name, sha256, size, now, bytes.
/// Answers {1 created | 0 existing, metadata JSON}.
const PUT_PLUGIN_LUA: &str = r#"
local name = ARGV[1]
local shaf = name .. '/' .. ARGV[2]
local existing = redis.call('HGET', KEYS[2], shaf)
if existing then
  local meta = redis.call('HGET', KEYS[1], name .. '/' .. existing)
  if meta then return {0, meta} end
end
local v = redis.call('HINCRBY', KEYS[3], name, 1)
local f = name .. '/' .. v
local meta = '{"name":' .. cjson.encode(name) .. ',"version":' .. v .. ',"sha256":' .. cjson.encode(ARGV[2])
  .. ',"size":' .. ARGV[3] .. ',"uploaded_at":' .. ARGV[4] .. '}'
redis.call('HSET', KEYS[1], f, meta)
redis.call('HSET', KEYS[2], shaf, v)
redis.call('HSET', KEYS[4], f, ARGV[5])
return {1, meta}
"#;

/// KEYS: meta, sha, bytes. ARGV: name, version. Answers 1 if deleted.
const DELETE_PLUGIN_LUA: &str = r#"
local f = ARGV[1] .. '/' .. ARGV[2]
local meta = redis.call('HGET', KEYS[1], f)
if not meta then return 0 end
local shaf = ARGV[1] .. '/' .. cjson.decode(meta).sha256
redis.call('HDEL', KEYS[1], f)
redis.call('HDEL', KEYS[3], f)
if redis.call('HGET', KEYS[2], shaf) == ARGV[2] then
  redis.call('HDEL', KEYS[2], shaf)
end
return 1
"#;

/// KEYS: specs, version. ARGV: id, spec. Answers 1 if created.
const PUT_PIPELINE_LUA: &str = r#"
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return created
"#;

/// KEYS: specs, version. ARGV: id. Answers 1 if it existed.
const DELETE_PIPELINE_LUA: &str = r#"
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
if existed == 1 then
  redis.call('INCR', KEYS[2])
end
return existed
"#;

#[cfg(test)]
mod tests {
    use super::{is_stream_id, OutputCursor};

    #[test]
    fn output_cursors() {
        assert_eq!(OutputCursor::parse("").unwrap(), None);
        let at = |entry: &str, taken| Some(OutputCursor { entry: entry.into(), taken });
        assert_eq!(OutputCursor::parse("5-1").unwrap(), at("5-1", 0));
        assert_eq!(OutputCursor::parse("5-1.250").unwrap(), at("5-1", 250));
        assert_eq!(OutputCursor::parse("5-1.250").unwrap().unwrap().to_string(), "5-1.250");
        assert_eq!(OutputCursor::parse("5-1").unwrap().unwrap().to_string(), "5-1");
        for bad in ["x", "5-1.", "5-1.0", "5-1.-2", "5-1.+2", ".3", "5-1.2.3"] {
            assert!(OutputCursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_ids() {
        assert!(is_stream_id("0-0"));
        assert!(is_stream_id("1700000000000-12"));
        assert!(is_stream_id("17"));
        assert!(!is_stream_id(""));
        assert!(!is_stream_id("-1"));
        assert!(!is_stream_id("1-"));
        assert!(!is_stream_id("a-1"));
        assert!(!is_stream_id("1-2-3"));
        assert!(!is_stream_id("99999999999999999999999-1"));
    }
}
