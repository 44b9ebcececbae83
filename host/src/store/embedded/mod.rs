//! The embedded backend: one redb file in a directory, every method one
//! durable transaction, run on tokio's blocking pool. This file opens the
//! database and holds its tables and helpers; each capability is in its own
//! file (`catalog`, `queue`, `dlq`, `outputs`, `windows`, `alerts`, and
//! `sketch` for the distinct-count sketches, `ingest_once` for idempotency
//! records and de-duplication by id, written in the enqueue's transaction). May use `crate::domain`,
//! `super` (the store traits and shared rules) and external crates.
//!
//! Queue entries, outputs and DLQ entries are keyed by (pipeline, seq), where
//! seq comes from one counter for the whole database, so ids never repeat,
//! not even after a pipeline is deleted and made again. Which entries are
//! handed out ("pending") is kept in memory only: after a restart everything
//! not completed is delivered again, which at-least-once delivery allows and
//! idempotent completion makes harmless.
//!
//! Windows: pane rows, their HyperLogLog sketches (serde JSON of
//! `hyperloglogplus`' HLL++ at precision 14, values hashed by
//! `value_hash`), dirty marks, final results, each window's results stream
//! and the alerts live in their own tables, keyed by pipeline first so a
//! pipeline's data is one key range. `complete_windowed` applies deltas in
//! the same write transaction that acknowledges the entry. The clock's
//! watermark, newest event time and last apply time are stored; the close
//! gate is kept in memory (one process owns the file, and a gate lost in a
//! crash only means the next closer need not wait), with its fencing token
//! (a process restart ends every pass of the old one). The gate is checked and
//! taken while holding redb's single write transaction, so an apply that
//! passed the check is committed before a closer can take the gate.

mod alerts;
mod catalog;
mod dlq;
mod ingest_once;
mod outputs;
mod queue;
mod sinks;
mod sketch;
mod windows;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};
use tokio::sync::Notify;

use super::shared::{invalid_cursor, join_json};
use super::{Health, StoreError, StoreResult};
use crate::domain::StoreHealth;

/// The database file inside the store directory.
const FILE_NAME: &str = "sluice.redb";

/// `seq`, `pipelines_version`, `tables_version`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (name, version) → plugin version JSON.
const PLUGIN_META: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("plugin_meta");
/// (name, version) → component bytes.
const PLUGIN_BYTES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("plugin_bytes");
/// (name, sha256) → version.
const PLUGIN_SHA: TableDefinition<(&str, &str), u32> = TableDefinition::new("plugin_sha");
/// name → last version handed out.
const PLUGIN_NEXT: TableDefinition<&str, u32> = TableDefinition::new("plugin_next");
/// id → spec JSON.
const PIPELINES: TableDefinition<&str, &str> = TableDefinition::new("pipelines");
/// name → table JSON object.
const TABLES: TableDefinition<&str, &str> = TableDefinition::new("tables");
/// (pipeline, counter name) → value.
const COUNTERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("counters");
/// (pipeline, seq) → JSON array of queued events.
const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// (pipeline, seq) → event JSON.
const OUTPUT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("output");
/// (pipeline, second as ms) → the newest output seq appended in that second
/// (what `trim_output` deletes by).
const OUTPUT_MARKS: TableDefinition<(&str, i64), u64> = TableDefinition::new("output_marks");
/// (pipeline, seq) → DLQ entry JSON (its `dlq_id` is the seq).
const DLQ: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dlq");
/// (pipeline, due ms, seq) → queued event JSON.
const RETRY: TableDefinition<(&str, i64, u64), &[u8]> = TableDefinition::new("retry");
/// pipeline → (watermark, max_event_ts, last_event_at): the durable part of
/// the window clock (the gate is in memory, see [`PipeState`]).
const WINDOW_CLOCK: TableDefinition<&str, (i64, i64, i64)> = TableDefinition::new("window_clock");
/// (pipeline, window, pane, group) → pane aggregate JSON; key order is the
/// order `read_panes` answers in.
const PANES: TableDefinition<(&str, &str, i64, &str), &[u8]> = TableDefinition::new("window_panes");
/// (pipeline, window, pane, group, aggregate index) → HyperLogLog sketch
/// JSON, for `count_distinct` aggregates.
const SKETCHES: TableDefinition<(&str, &str, i64, &str, u32), &[u8]> = TableDefinition::new("window_sketches");
/// (pipeline, window, pane, group): dirty marks (a set; no value).
const DIRTY: TableDefinition<(&str, &str, i64, &str), ()> = TableDefinition::new("window_dirty");
/// (pipeline, window, start, group) → final result (the API's JSON text).
const FINALS: TableDefinition<(&str, &str, i64, &str), &str> = TableDefinition::new("window_finals");
/// (pipeline, window, seq) → window record JSON: each window's results stream.
const RESULTS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("window_results");
/// (pipeline, window, start, seq): RESULTS by window start, so expiry deletes
/// a key range instead of reading the whole stream.
const RESULTS_BY_START: TableDefinition<(&str, &str, i64, u64), ()> = TableDefinition::new("window_results_by_start");
/// (pipeline, window, seq) → when RESULTS' entry was appended (ms, this
/// process's clock, like Redis's stream ids): a window sink's
/// `oldest_undelivered_at`. Results written before this table existed have
/// no time (their sink's age reads as unknown).
const RESULTS_APPENDED: TableDefinition<(&str, &str, u64), i64> = TableDefinition::new("window_results_appended");
/// (pipeline, seq) → alert JSON with its append time ([`StoredAlert`]).
const ALERTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alerts");
/// (pipeline, window, start, group) → seq of the alert raised for it, so an
/// alert is raised once (until it is trimmed).
const ALERT_KEYS: TableDefinition<(&str, &str, i64, &str), u64> = TableDefinition::new("alert_keys");
/// (pipeline, SHA-256 of an idempotency key) → the record ([`ingest_once`]).
const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");
/// (pipeline, expires at ms, key SHA-256): IDEMPOTENCY by expiry, so purging
/// reads only what expired.
const IDEMPOTENCY_EXPIRY: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("idempotency_expiry");
/// (pipeline, sink) → the sink's record JSON ([`crate::domain::SinkRecord`]).
const SINKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sinks");
/// (pipeline, sink, seq) → event JSON: events a DLQ replay sent back to that sink only.
const SINK_REPLAY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("sink_replay");
/// (pipeline, event id) → when it was accepted (ms): the dedup window's ids.
const SEEN_IDS: TableDefinition<(&str, &str), i64> = TableDefinition::new("seen_ids");
/// (pipeline, accepted at ms, event id): SEEN_IDS by time, for purging.
const SEEN_BY_TIME: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("seen_by_time");

const DEPTH: &str = "depth";
const ACCEPTED: &str = "accepted";
const REJECTED: &str = "rejected";
const PROCESSED: &str = "processed";
const EMITTED: &str = "emitted";
const DLQ_SIZE: &str = "dlq_size";
/// Queued bytes: queue entries' stored JSON and waiting retries' event JSON.
const QUEUE_BYTES: &str = "queue_bytes";
const COUNTER_NAMES: [&str; 7] = [DEPTH, ACCEPTED, REJECTED, PROCESSED, EMITTED, DLQ_SIZE, QUEUE_BYTES];

/// The redb-backed [`Store`](crate::store::Store).
pub struct EmbeddedStore {
    db: Arc<Database>,
    pipes: Mutex<HashMap<String, Arc<PipeState>>>,
}

/// In-memory state of one pipeline's queue and close gate.
#[derive(Default)]
struct PipeState {
    mem: Mutex<PipeMem>,
    /// Woken whenever entries are added to the queue.
    notify: Notify,
    /// The close gate. Read and written only while holding a redb write
    /// transaction, which orders it with window applies.
    gate: Mutex<Gate>,
    /// Sink leases: sink → (holder, until ms).
    sink_leases: Mutex<HashMap<String, (String, i64)>>,
}

/// A pipeline's close gate, in memory.
#[derive(Default)]
struct Gate {
    /// The clock's `gate_until` (0: free).
    until: i64,
    /// The last fencing token handed out by `begin_close`; `finish_close`
    /// applies only a commit carrying it. Never reset (not even when the
    /// pipeline is deleted), so a token is never handed out twice.
    token: u64,
}

#[derive(Default)]
struct PipeMem {
    /// The newest seq handed out by `read` (like a consumer group's last id).
    last_delivered: u64,
    /// Entries handed out and not completed: seq → (consumer, since).
    pending: BTreeMap<u64, (String, Instant)>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create store directory {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Internal(format!("{} is already open (another sluice process?)", path.display()))
            }
            other => db_err(other),
        })?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(META).map_err(db_err)?;
            txn.open_table(PLUGIN_META).map_err(db_err)?;
            txn.open_table(PLUGIN_BYTES).map_err(db_err)?;
            txn.open_table(PLUGIN_SHA).map_err(db_err)?;
            txn.open_table(PLUGIN_NEXT).map_err(db_err)?;
            txn.open_table(PIPELINES).map_err(db_err)?;
            txn.open_table(TABLES).map_err(db_err)?;
            txn.open_table(COUNTERS).map_err(db_err)?;
            txn.open_table(QUEUE).map_err(db_err)?;
            txn.open_table(OUTPUT).map_err(db_err)?;
            txn.open_table(OUTPUT_MARKS).map_err(db_err)?;
            txn.open_table(DLQ).map_err(db_err)?;
            txn.open_table(RETRY).map_err(db_err)?;
            txn.open_table(WINDOW_CLOCK).map_err(db_err)?;
            txn.open_table(PANES).map_err(db_err)?;
            txn.open_table(SKETCHES).map_err(db_err)?;
            txn.open_table(DIRTY).map_err(db_err)?;
            txn.open_table(FINALS).map_err(db_err)?;
            txn.open_table(RESULTS).map_err(db_err)?;
            txn.open_table(RESULTS_BY_START).map_err(db_err)?;
            txn.open_table(RESULTS_APPENDED).map_err(db_err)?;
            txn.open_table(ALERTS).map_err(db_err)?;
            txn.open_table(ALERT_KEYS).map_err(db_err)?;
            txn.open_table(IDEMPOTENCY).map_err(db_err)?;
            txn.open_table(IDEMPOTENCY_EXPIRY).map_err(db_err)?;
            txn.open_table(SEEN_IDS).map_err(db_err)?;
            txn.open_table(SEEN_BY_TIME).map_err(db_err)?;
            txn.open_table(SINKS).map_err(db_err)?;
            txn.open_table(SINK_REPLAY).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(EmbeddedStore { db: Arc::new(db), pipes: Mutex::new(HashMap::new()) })
    }

    fn state(&self, pipeline: &str) -> Arc<PipeState> {
        self.pipes.lock().entry(pipeline.to_string()).or_default().clone()
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }


    /// A cursor-paged read of OUTPUT or DLQ.
    async fn page(
        &self,
        table: TableDefinition<'static, (&'static str, u64), &'static [u8]>,
        pipeline: &str,
        cursor: &str,
        limit: usize,
    ) -> StoreResult<(Vec<(u64, Vec<u8>)>, String)> {
        let after = parse_cursor(cursor)?;
        let empty_cursor = if cursor.is_empty() { "0".to_string() } else { cursor.to_string() };
        if limit == 0 {
            return Ok((Vec::new(), empty_cursor));
        }
        let pipeline = pipeline.to_string();
        let items = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(db_err)?;
                let t = txn.open_table(table).map_err(db_err)?;
                let Some(start) = after.checked_add(1) else { return Ok(Vec::new()) };
                let mut items = Vec::new();
                for item in t.range((pipeline.as_str(), start)..=(pipeline.as_str(), u64::MAX)).map_err(db_err)?.take(limit) {
                    let (key, value) = item.map_err(db_err)?;
                    items.push((key.value().1, value.value().to_vec()));
                }
                Ok(items)
            })
            .await?;
        let next = items.last().map(|(seq, _)| seq.to_string()).unwrap_or(empty_cursor);
        Ok((items, next))
    }
}

fn db_err<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => StoreError::Unavailable(format!("store I/O error: {e}")),
        redb::Error::PreviousIo => StoreError::Unavailable("store I/O error earlier; reopen the store".into()),
        other => StoreError::Internal(other.to_string()),
    }
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Internal(format!("bad stored JSON: {e}"))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))
}

fn parse_cursor(cursor: &str) -> StoreResult<u64> {
    if cursor.is_empty() {
        return Ok(0);
    }
    cursor.parse().map_err(|_| invalid_cursor(cursor))
}

fn counter(t: &impl ReadableTable<(&'static str, &'static str), u64>, pipeline: &str, name: &str) -> StoreResult<u64> {
    Ok(t.get((pipeline, name)).map_err(db_err)?.map(|v| v.value()).unwrap_or(0))
}

fn add(t: &mut Table<(&'static str, &'static str), u64>, pipeline: &str, name: &str, delta: i64) -> StoreResult<u64> {
    let value = counter(t, pipeline, name)?.saturating_add_signed(delta);
    t.insert((pipeline, name), value).map_err(db_err)?;
    Ok(value)
}

/// Hands out sequence numbers from META's `seq` within one transaction.
struct Seq {
    next: u64,
}

impl Seq {
    fn load(meta: &Table<&'static str, u64>) -> StoreResult<Seq> {
        Ok(Seq { next: meta.get("seq").map_err(db_err)?.map(|v| v.value()).unwrap_or(0) + 1 })
    }

    fn take(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }

    fn save(self, meta: &mut Table<&'static str, u64>) -> StoreResult<()> {
        meta.insert("seq", self.next - 1).map_err(db_err)?;
        Ok(())
    }
}

fn bump(txn: &WriteTransaction, key: &str) -> StoreResult<()> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let v = meta.get(key).map_err(db_err)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(key, v + 1).map_err(db_err)?;
    Ok(())
}

fn read_u64(db: &Database, key: &str) -> StoreResult<u64> {
    let txn = db.begin_read().map_err(db_err)?;
    let meta = txn.open_table(META).map_err(db_err)?;
    Ok(meta.get(key).map_err(db_err)?.map(|v| v.value()).unwrap_or(0))
}

/// Appends `events` (QueuedEvent JSON each) to the queue in chunks;
/// answers the bytes stored (what they add to the queued bytes).
fn append_chunks(
    queue: &mut Table<(&'static str, u64), &'static [u8]>,
    seq: &mut Seq,
    pipeline: &str,
    events: &[Vec<u8>],
    chunk: usize,
) -> StoreResult<u64> {
    let mut bytes = 0u64;
    for part in events.chunks(chunk.max(1)) {
        let json = join_json(part);
        bytes += json.len() as u64;
        queue.insert((pipeline, seq.take()), json.as_slice()).map_err(db_err)?;
    }
    Ok(bytes)
}

#[async_trait]
impl Health for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    /// A redb file is durable (each step commits before it is answered),
    /// never evicts, and its catalog cannot vanish under the process that
    /// holds it open.
    async fn health(&self) -> StoreResult<StoreHealth> {
        self.ping().await?;
        Ok(StoreHealth { kind: "embedded", durable: true, persistence: "redb file".into(), eviction_policy: None, catalog_intact: true })
    }

    async fn adopt_catalog(&self) -> StoreResult<()> {
        Ok(())
    }
}
