//! The Redis backend: Redis Streams with one consumer group per pipeline for
//! the queue, streams for outputs and the DLQ, a sorted set for retries, and
//! Lua scripts wherever a step must be atomic.
//!
//! This file holds the connection, the key layout and the helpers; each
//! capability is in its own file (`catalog`, `queue`, `complete`, `dlq`,
//! `outputs`, `windows`, `alerts`, `sinks`, `health`), and the Lua scripts in `lua/*.lua`,
//! each opening with what its KEYS and ARGV are. May use `crate::domain`,
//! `super` (the store traits and shared rules) and external crates.
//!
//! Key layout (`P` = the key prefix, e.g. `sluice`; `{id}` is a Redis Cluster
//! hash tag, so all keys of one pipeline live in one slot):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{id}:queue` | stream, group `workers` | one entry per chunk: `e` = JSON array of queued events, `n` = count |
//! | `P:{id}:depth` | string (int) | events accepted and not yet finished |
//! | `P:{id}:bytes` | string (int) | their stored bytes: queue entries' `e` and waiting retries' event JSON (`max_queue_bytes`) |
//! | `P:{id}:counters` | hash | `accepted`, `rejected`, `processed`, `emitted` |
//! | `P:{id}:output` | stream | one entry per completed queue entry with outputs: `n` = count, `e` = JSON array of the output events (downstream consumers read this); trimmed by age (`XTRIM MINID`, the output retention) |
//! | `P:{id}:dlq` | stream | one entry per failed event: `e` = event JSON, `s` = where a replay starts (JSON string: the stage, or `window:<name>`), `m` = the rest (JSON) |
//! | `P:{id}:retry` | sorted set | score = due time (ms), member = `<random hex>|<queued event JSON>` |
//! | `P:{id}:idem:<sha256 of the key>` | hash, 24 h TTL | an ingest request's idempotency record: `d` = body SHA-256, `n` = duplicates its step dropped, `a` = its answer |
//! | `P:{id}:sinks` | hash | sink name → its record JSON (position, delivered, failed, last error) |
//! | `P:{id}:sinklease` | hash | sink name → `<holder>|<expires ms>`: the one runner of that sink |
//! | `P:{id}:sink:<name>:replay` | stream | events a DLQ replay sent back to that sink only (`e` = event JSON) |
//! | `P:{id}:seen` | sorted set, TTL = the dedup window | ids accepted within `dedup_window_ms`: score = when (ms); older ones are removed by each enqueue |
//! | `P:{_catalog}:plugin-meta` | hash | `name/version` → plugin version JSON |
//! | `P:{_catalog}:plugin-bytes` | hash | `name/version` → component bytes |
//! | `P:{_catalog}:plugin-sha` | hash | `name/sha256` → version (dedup) |
//! | `P:{_catalog}:plugin-next` | hash | `name` → last version handed out |
//! | `P:{_catalog}:pipelines` | hash | id → spec JSON |
//! | `P:{_catalog}:pipelines-version` | string (int) | bumped on every spec change |
//! | `P:{_catalog}:tables` | hash | name → table JSON object |
//! | `P:{_catalog}:tables-version` | string (int) | bumped on every table change |
//! | `P:{_catalog}:marker` | string | a random token written when the store is first used; gone after a Redis restarted empty (`health.rs`) |
//!
//! Connections (`conn.rs`: one Redis or a Redis Cluster behind one type,
//! [`Conn`]): one shared multiplexed connection for everything that does
//! not block (dropped and re-made on I/O errors and timeouts, so the store
//! recovers when Redis comes back), and a small pool of dedicated
//! connections for blocking `XREADGROUP` calls, which would otherwise stall
//! every command queued behind them. A capability runs its commands with
//! `self.run(|mut c| async move { … .query_async(&mut c).await })`, or
//! `self.run_replicated(…)` for a step that must reach
//! `--redis-wait-replicas` replicas before it counts (enqueue, completion).
//!
//! On a cluster every script touches the keys of one slot only: a
//! pipeline's keys share the hash tag `{id}`, the catalog's `{_catalog}`,
//! and no script or multi-key command mixes the two (deleting a pipeline
//! is two steps for that reason). `SCAN` goes to the master of the slot it
//! looks in (`Conn::on_master_of`), the health checks to every master.

mod alerts;
mod catalog;
mod complete;
mod conn;
mod dlq;
mod health;
mod outputs;
mod queue;
mod sinks;
mod windows;

use std::future::Future;
use std::time::Duration;

use ::redis::streams::{StreamId, StreamRangeReply};
use ::redis::{AsyncConnectionConfig, RedisError, RedisResult, Script, Value};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::shared::invalid_cursor;
use super::{Health, StoreError, StoreResult};
use conn::{Target, Wait};
pub use conn::{connect_url, Conn, CLUSTER_SCHEME, CLUSTER_TLS_SCHEME};

/// The consumer group every worker of a pipeline joins.
const GROUP: &str = "workers";
/// How long to wait for a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long to wait for an answer to one (non-blocking) command or script.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(2000);
/// Dedicated connections kept for blocking reads.
const BLOCKING_POOL: usize = 32;
/// How long a `WAIT` for replicas may take (below [`RESPONSE_TIMEOUT`], so
/// its answer, not a timeout, says how many replicas have the write).
const WAIT_TIMEOUT_MS: u64 = 1000;

/// How the Redis store behaves beyond where it connects.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisOptions {
    /// Replicas each enqueue and each completion must reach (`WAIT`) before
    /// it counts as done: 0 answers as soon as the master has it.
    pub wait_replicas: u32,
}

/// The Redis-backed [`Store`](crate::store::Store).
pub struct RedisStore {
    target: Target,
    prefix: String,
    shared: Mutex<Option<Conn>>,
    blocking: Mutex<Vec<Conn>>,
    /// What `run_replicated` waits for (`None`: nothing).
    wait: Option<Wait>,
    scripts: Scripts,
    /// The catalog marker this process adopted (see `health.rs`).
    catalog_token: Mutex<Option<String>>,
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
    touch: Script,
    sink_open: Script,
    sink_lease: Script,
    sink_commit: Script,
    sink_forget: Script,
    dlq_rewrite: Script,
}

/// The keys of one pipeline.
struct Keys {
    queue: String,
    depth: String,
    /// Queued bytes (string, int).
    bytes: String,
    counters: String,
    output: String,
    dlq: String,
    retry: String,
    /// The event-time clock (hash: `wm`, `maxts`, `last`, `gate`, `tok`).
    clock: String,
    alerts: String,
    /// Prefix of every window key: `P:{id}:w:`.
    windows: String,
    /// Prefix of every idempotency record: `P:{id}:idem:`.
    idempotency: String,
    /// Ids accepted within the dedup window (sorted set by time).
    seen: String,
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`, or a cluster:
    /// `redis+cluster://host:port[,host:port…]`); every key starts with
    /// `key_prefix` (e.g. `sluice`).
    pub async fn connect(url: &str, key_prefix: &str) -> StoreResult<Self> {
        Self::open(url, key_prefix, RedisOptions::default()).await
    }

    /// [`RedisStore::connect`] with options.
    pub async fn open(url: &str, key_prefix: &str, options: RedisOptions) -> StoreResult<Self> {
        let target = Target::open(url, CONNECT_TIMEOUT, RESPONSE_TIMEOUT)?;
        let store = RedisStore {
            target,
            prefix: key_prefix.to_string(),
            shared: Mutex::new(None),
            blocking: Mutex::new(Vec::new()),
            wait: (options.wait_replicas > 0).then_some(Wait { replicas: options.wait_replicas, timeout_ms: WAIT_TIMEOUT_MS }),
            scripts: Scripts::new(),
            catalog_token: Mutex::new(None),
        };
        store.ping().await?;
        store.adopt_catalog().await?;
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
            bytes: format!("{base}:bytes"),
            counters: format!("{base}:counters"),
            output: format!("{base}:output"),
            dlq: format!("{base}:dlq"),
            retry: format!("{base}:retry"),
            clock: format!("{base}:wclock"),
            alerts: format!("{base}:alerts"),
            windows: format!("{base}:w:"),
            idempotency: format!("{base}:idem:"),
            seen: format!("{base}:seen"),
        }
    }

    fn catalog(&self, what: &str) -> String {
        format!("{}:{{_catalog}}:{what}", self.prefix)
    }

    /// Whether this store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// The shared connection, made if there is none.
    async fn conn(&self) -> StoreResult<Conn> {
        if let Some(conn) = self.shared.lock().clone() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let conn = self.connect_with(&config, false).await?;
        let mut slot = self.shared.lock();
        Ok(slot.get_or_insert(conn).clone())
    }

    /// A new connection (`blocking`: for blocking reads, without a
    /// response timeout on a cluster; the caller bounds the wait).
    async fn connect_with(&self, config: &AsyncConnectionConfig, blocking: bool) -> StoreResult<Conn> {
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.target.connect(config, blocking)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(map_err(&e)),
            Err(_) => Err(StoreError::Unavailable("timed out connecting to Redis".into())),
        }
    }

    /// Runs `f` on the shared connection with a deadline; a broken or slow
    /// connection is thrown away so the next call makes a fresh one.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_on(self.conn().await?, f).await
    }

    /// [`RedisStore::run`] for a step that counts only once it reached the
    /// replicas `--redis-wait-replicas` asks for: each script call `f`
    /// makes is followed by `WAIT` on the node that ran it, and fewer
    /// replicas than asked is an `Unavailable` error (the write is on the
    /// master; a caller that retries finds it there: every script is safe
    /// to run again).
    async fn run_replicated<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_on(self.conn().await?.waiting(self.wait), f).await
    }

    async fn run_on<T, F, Fut>(&self, conn: Conn, f: F) -> StoreResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match tokio::time::timeout(RESPONSE_TIMEOUT + Duration::from_millis(500), f(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                // Only a connection that broke is thrown away: an answer
                // such as LOADING, TRYAGAIN or CLUSTERDOWN came over a
                // working one.
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || e.is_unrecoverable_error() {
                    self.shared.lock().take();
                }
                Err(map_err(&e))
            }
            Err(_) => {
                self.shared.lock().take();
                Err(StoreError::Unavailable("Redis did not answer in time".into()))
            }
        }
    }

    async fn xrange_page(&self, key: &str, cursor: &str, limit: usize) -> StoreResult<(Vec<StreamId>, String)> {
        let start = match cursor {
            "" => "-".to_string(),
            c if is_stream_id(c) => match start_after(c) {
                Some(start) => start,
                None => return Ok((Vec::new(), c.to_string())),
            },
            c => return Err(invalid_cursor(c)),
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

/// `123-4` or `123` (what Redis accepts as a stream id).
/// The last stream id there can be: nothing comes after it.
const LAST_STREAM_ID: &str = "18446744073709551615-18446744073709551615";

/// The `XRANGE` start just after stream id `id` (`(id`), or `None` when `id`
/// is the last one there can be: Redis refuses to range after it ("invalid
/// start ID for the interval"), and the page after it is empty.
fn start_after(id: &str) -> Option<String> {
    (id != LAST_STREAM_ID).then(|| format!("({id}"))
}

/// A stream id's two numbers (`123` is `123-0`), to compare ids.
fn stream_id_parts(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

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
/// `Unavailable` (503 on ingest); anything else is `Internal`. On a cluster
/// that includes a slot without a master (`CLUSTERDOWN`, no connection to
/// the slot's node, redirections still pointing at a node that is gone once
/// the client's retries ran out) and a write not acknowledged by enough
/// replicas (`TryAgain` from `conn.rs`).
fn map_err(e: &RedisError) -> StoreError {
    use ::redis::ErrorKind as K;
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            K::BusyLoadingError | K::TryAgain | K::ClusterDown | K::MasterDown | K::ReadOnly | K::Moved | K::Ask | K::ClusterConnectionNotFound
        )
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

impl Scripts {
    fn new() -> Self {
        Scripts {
            enqueue: Script::new(include_str!("lua/enqueue.lua")),
            complete: Script::new(include_str!("lua/complete.lua")),
            begin_close: Script::new(include_str!("lua/begin_close.lua")),
            finish_close: Script::new(include_str!("lua/finish_close.lua")),
            put_alert: Script::new(include_str!("lua/put_alert.lua")),
            promote: Script::new(include_str!("lua/promote.lua")),
            replay: Script::new(include_str!("lua/replay.lua")),
            dlq_delete_oldest: Script::new(include_str!("lua/dlq_delete_oldest.lua")),
            dlq_delete_all: Script::new(include_str!("lua/dlq_delete_all.lua")),
            put_plugin: Script::new(include_str!("lua/put_plugin.lua")),
            delete_plugin: Script::new(include_str!("lua/delete_plugin.lua")),
            put_pipeline: Script::new(include_str!("lua/put_pipeline.lua")),
            delete_pipeline: Script::new(include_str!("lua/delete_pipeline.lua")),
            touch: Script::new(include_str!("lua/touch.lua")),
            sink_open: Script::new(include_str!("lua/sink_open.lua")),
            sink_lease: Script::new(include_str!("lua/sink_lease.lua")),
            sink_commit: Script::new(include_str!("lua/sink_commit.lua")),
            sink_forget: Script::new(include_str!("lua/sink_forget.lua")),
            dlq_rewrite: Script::new(include_str!("lua/dlq_rewrite.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_stream_id;

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