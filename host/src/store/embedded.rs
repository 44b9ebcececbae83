//! The embedded backend: one redb file in a directory, every method one
//! durable transaction, run on tokio's blocking pool.
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
//! crash only means the next closer need not wait). The gate is checked and
//! taken while holding redb's single write transaction, so an apply that
//! passed the check is committed before a closer can take the gate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use parking_lot::Mutex;
use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    AlertRecord, CloseCommit, CompleteReport, Counters, Delivery, DirtyMark, DistinctQuery, DlqEntry, DlqSelector, Enqueued, EntryResult,
    Page, PaneAgg, PaneDelta, PaneRow, PluginVersion, PutPlugin, QueuedEvent, ReplayReport, Store, StoreError, StoreResult, WindowClock,
    WindowRecord, NO_WATERMARK,
};
use crate::event::Event;

/// The database file inside the store directory.
const FILE_NAME: &str = "sluice.redb";
/// Most events put into one queue entry by a DLQ replay.
const REPLAY_CHUNK: usize = 500;

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
/// (pipeline, seq) → alert JSON with its append time ([`StoredAlert`]).
const ALERTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alerts");
/// (pipeline, window, start, group) → seq of the alert raised for it, so an
/// alert is raised once (until it is trimmed).
const ALERT_KEYS: TableDefinition<(&str, &str, i64, &str), u64> = TableDefinition::new("alert_keys");

/// Precision of the distinct-count sketches: 2^14 registers, a standard
/// error of about 0.8 %.
const SKETCH_PRECISION: u8 = 14;

const DEPTH: &str = "depth";
const ACCEPTED: &str = "accepted";
const REJECTED: &str = "rejected";
const PROCESSED: &str = "processed";
const EMITTED: &str = "emitted";
const DLQ_SIZE: &str = "dlq_size";
const COUNTER_NAMES: [&str; 6] = [DEPTH, ACCEPTED, REJECTED, PROCESSED, EMITTED, DLQ_SIZE];

/// The redb-backed [`Store`].
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
    /// The clock's `gate_until` (0: free). Read and written only while
    /// holding a redb write transaction, which orders it with window applies.
    gate: Mutex<i64>,
}

#[derive(Default)]
struct PipeMem {
    /// The newest seq handed out by `read` (like a consumer group's last id).
    last_delivered: u64,
    /// Entries handed out and not completed: seq → (consumer, since).
    pending: BTreeMap<u64, (String, Instant)>,
}

/// One entry's results, serialized before the transaction starts.
struct Prepared {
    seq: Option<u64>,
    finished: u64,
    outputs: Vec<Vec<u8>>,
    dead: Vec<Vec<u8>>,
    retries: Vec<(i64, Vec<u8>)>,
    window_deltas: Vec<PaneDelta>,
    dirty: Vec<DirtyMark>,
    max_event_ts: Option<i64>,
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
            txn.open_table(ALERTS).map_err(db_err)?;
            txn.open_table(ALERT_KEYS).map_err(db_err)?;
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
                out.push((seq, parse_chunk(seq, value.value())?));
            }
            let now = Instant::now();
            let deliveries = out
                .into_iter()
                .map(|(seq, events)| {
                    mem.pending.insert(seq, (consumer.clone(), now));
                    mem.last_delivered = mem.last_delivered.max(seq);
                    Delivery { id: seq.to_string(), events }
                })
                .collect();
            Ok(deliveries)
        })
        .await
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

fn parse_chunk(seq: u64, bytes: &[u8]) -> StoreResult<Vec<QueuedEvent>> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad queue entry {seq}: {e}")))
}

fn parse_cursor(cursor: &str) -> StoreResult<u64> {
    if cursor.is_empty() {
        return Ok(0);
    }
    cursor.parse().map_err(|_| StoreError::Internal(format!("invalid cursor {cursor:?}")))
}

fn parse_dlq(seq: u64, bytes: &[u8]) -> StoreResult<DlqEntry> {
    let mut entry: DlqEntry = serde_json::from_slice(bytes).map_err(json_err)?;
    entry.dlq_id = seq.to_string();
    Ok(entry)
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

/// Appends `events` (QueuedEvent JSON each) to the queue in chunks.
fn append_chunks(
    queue: &mut Table<(&'static str, u64), &'static [u8]>,
    seq: &mut Seq,
    pipeline: &str,
    events: &[Vec<u8>],
    chunk: usize,
) -> StoreResult<()> {
    for part in events.chunks(chunk.max(1)) {
        let mut json = Vec::with_capacity(part.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        json.push(b'[');
        for (i, event) in part.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(event);
        }
        json.push(b']');
        queue.insert((pipeline, seq.take()), json.as_slice()).map_err(db_err)?;
    }
    Ok(())
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
            let mut seen = HashSet::new();
            for id in ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
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

// ---- windows ----------------------------------------------------------------

/// A distinct-count sketch as stored: HLL++ over pre-hashed values.
type Sketch = HyperLogLogPlus<u64, PreHashed>;

/// Hashes a `count_distinct` value for the sketches: FNV-1a over the UTF-8
/// bytes, then MurmurHash3's 64-bit finalizer so every output bit depends on
/// every input bit (HLL takes the top bits as the register index and counts
/// zeros in the rest). Spelled out here instead of std's `DefaultHasher`
/// because sketches are stored: std does not promise its algorithm across
/// releases, and a changed hash would count every value seen before an
/// upgrade a second time.
fn value_hash(value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The sketches' `BuildHasher`. Values reach the sketch already hashed by
/// [`value_hash`], so its hasher passes the `u64` through. A unit struct, so
/// a sketch serializes (and deserializes) with no state of its own.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct PreHashed;

/// The hasher of [`PreHashed`]: `finish` answers the `u64` written.
struct PreHashedHasher(u64);

impl BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;

    fn build_hasher(&self) -> PreHashedHasher {
        PreHashedHasher(0)
    }
}

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    /// Only `u64`s are hashed; should std ever hash one as its bytes, the
    /// answer stays the same.
    fn write(&mut self, bytes: &[u8]) {
        self.0 = match <[u8; 8]>::try_from(bytes) {
            Ok(b) => u64::from_ne_bytes(b),
            Err(_) => bytes.iter().fold(self.0, |h, b| h.rotate_left(8) ^ u64::from(*b)),
        };
    }
}

fn new_sketch() -> Sketch {
    // Only fails for a precision outside 4..=18.
    Sketch::new(SKETCH_PRECISION, PreHashed).expect("SKETCH_PRECISION is a valid HLL precision")
}

fn parse_sketch(bytes: &[u8], what: impl FnOnce() -> String) -> StoreResult<Sketch> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad stored sketch {}: {e}", what())))
}

fn parse_pane(bytes: &[u8], window: &str, pane: i64, group: &str) -> StoreResult<PaneAgg> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad stored pane {window}/{pane}/{group}: {e}")))
}

/// An alert as ALERTS keeps it: the record plus when it was appended, which
/// is what retention trims by.
#[derive(Serialize, Deserialize)]
struct StoredAlert {
    window: String,
    start: i64,
    group: String,
    json: String,
    /// `now_ms` of the `put_alert` that appended it.
    at: i64,
}

/// The smallest string greater than `s`: with it as the next key part, a
/// range covers every key whose part equals `s`, whatever follows.
fn successor(s: &str) -> String {
    format!("{s}\0")
}

/// Keys `(pipeline, window, x, group)` with `from <= x <= to`, every group
/// (`window_next` is [`successor`] of `window`). Callers check `from <= to`.
fn span<'a>(
    pipeline: &'a str,
    window: &'a str,
    window_next: &'a str,
    from: i64,
    to: i64,
) -> std::ops::Range<(&'a str, &'a str, i64, &'a str)> {
    let end = match to.checked_add(1) {
        Some(next) => (pipeline, window, next, ""),
        None => (pipeline, window_next, i64::MIN, ""),
    };
    (pipeline, window, from, "")..end
}

/// The stored clock fields of `pipeline`: (watermark, max_event_ts, last_event_at).
fn stored_clock(t: &impl ReadableTable<&'static str, (i64, i64, i64)>, pipeline: &str) -> StoreResult<(i64, i64, i64)> {
    Ok(t.get(pipeline).map_err(db_err)?.map(|v| v.value()).unwrap_or((NO_WATERMARK, NO_WATERMARK, 0)))
}

/// Deletes every window key of `pipeline` (panes, sketches, dirty marks,
/// finals, results, alerts, clock), inside `txn`.
fn delete_window_data(txn: &WriteTransaction, p: &str) -> StoreResult<()> {
    let next = successor(p);
    let n = next.as_str();
    let all = || (p, "", i64::MIN, "")..(n, "", i64::MIN, "");
    txn.open_table(PANES).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(DIRTY).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(FINALS).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(ALERT_KEYS).map_err(db_err)?.retain_in(all(), |_, _| false).map_err(db_err)?;
    txn.open_table(SKETCHES)
        .map_err(db_err)?
        .retain_in((p, "", i64::MIN, "", 0)..(n, "", i64::MIN, "", 0), |_, _| false)
        .map_err(db_err)?;
    txn.open_table(RESULTS).map_err(db_err)?.retain_in((p, "", 0)..(n, "", 0), |_, _| false).map_err(db_err)?;
    txn.open_table(RESULTS_BY_START)
        .map_err(db_err)?
        .retain_in((p, "", i64::MIN, 0)..(n, "", i64::MIN, 0), |_, _| false)
        .map_err(db_err)?;
    txn.open_table(ALERTS).map_err(db_err)?.retain_in((p, 0)..=(p, u64::MAX), |_, _| false).map_err(db_err)?;
    txn.open_table(WINDOW_CLOCK).map_err(db_err)?.remove(p).map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            Ok(())
        })
        .await
    }

    // ---- catalog ----------------------------------------------------------

    async fn put_plugin(&self, name: &str, sha256: &str, bytes: &[u8], now_ms: i64) -> StoreResult<PutPlugin> {
        let (name, sha256, bytes) = (name.to_string(), sha256.to_string(), bytes.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let put = {
                let mut metas = txn.open_table(PLUGIN_META).map_err(db_err)?;
                let mut shas = txn.open_table(PLUGIN_SHA).map_err(db_err)?;
                let existing = shas.get((name.as_str(), sha256.as_str())).map_err(db_err)?.map(|v| v.value());
                let existing = match existing {
                    Some(v) => metas.get((name.as_str(), v)).map_err(db_err)?.map(|m| m.value().to_vec()),
                    None => None,
                };
                if let Some(meta) = existing {
                    let version: PluginVersion = serde_json::from_slice(&meta).map_err(json_err)?;
                    return Ok(PutPlugin { version, created: false });
                }
                let mut next = txn.open_table(PLUGIN_NEXT).map_err(db_err)?;
                let v = next.get(name.as_str()).map_err(db_err)?.map(|v| v.value()).unwrap_or(0) + 1;
                next.insert(name.as_str(), v).map_err(db_err)?;
                let version =
                    PluginVersion { name: name.clone(), version: v, sha256: sha256.clone(), size: bytes.len() as u64, uploaded_at: now_ms };
                metas.insert((name.as_str(), v), to_json(&version)?.as_slice()).map_err(db_err)?;
                shas.insert((name.as_str(), sha256.as_str()), v).map_err(db_err)?;
                txn.open_table(PLUGIN_BYTES).map_err(db_err)?.insert((name.as_str(), v), bytes.as_slice()).map_err(db_err)?;
                PutPlugin { version, created: true }
            };
            txn.commit().map_err(db_err)?;
            Ok(put)
        })
        .await
    }

    async fn list_plugins(&self) -> StoreResult<Vec<PluginVersion>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let metas = txn.open_table(PLUGIN_META).map_err(db_err)?;
            let mut out = Vec::new();
            for item in metas.iter().map_err(db_err)? {
                let (_, meta) = item.map_err(db_err)?;
                out.push(serde_json::from_slice::<PluginVersion>(meta.value()).map_err(json_err)?);
            }
            Ok(out)
        })
        .await
    }

    async fn plugin_bytes(&self, name: &str, version: u32) -> StoreResult<Option<Vec<u8>>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PLUGIN_BYTES).map_err(db_err)?;
            Ok(t.get((name.as_str(), version)).map_err(db_err)?.map(|b| b.value().to_vec()))
        })
        .await
    }

    async fn delete_plugin_version(&self, name: &str, version: u32) -> StoreResult<bool> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut metas = txn.open_table(PLUGIN_META).map_err(db_err)?;
                let Some(meta) = metas.remove((name.as_str(), version)).map_err(db_err)?.map(|m| m.value().to_vec()) else {
                    return Ok(false);
                };
                let meta: PluginVersion = serde_json::from_slice(&meta).map_err(json_err)?;
                let mut shas = txn.open_table(PLUGIN_SHA).map_err(db_err)?;
                let key = (name.as_str(), meta.sha256.as_str());
                if shas.get(key).map_err(db_err)?.map(|v| v.value()) == Some(version) {
                    shas.remove(key).map_err(db_err)?;
                }
                txn.open_table(PLUGIN_BYTES).map_err(db_err)?.remove((name.as_str(), version)).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn put_pipeline(&self, id: &str, spec_json: &str) -> StoreResult<bool> {
        let (id, spec) = (id.to_string(), spec_json.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let created = txn.open_table(PIPELINES).map_err(db_err)?.insert(id.as_str(), spec.as_str()).map_err(db_err)?.is_none();
            bump(&txn, "pipelines_version")?;
            txn.commit().map_err(db_err)?;
            Ok(created)
        })
        .await
    }

    async fn get_pipeline(&self, id: &str) -> StoreResult<Option<String>> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PIPELINES).map_err(db_err)?;
            Ok(t.get(id.as_str()).map_err(db_err)?.map(|s| s.value().to_string()))
        })
        .await
    }

    async fn list_pipelines(&self) -> StoreResult<Vec<(String, String)>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PIPELINES).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(db_err)? {
                let (id, spec) = item.map_err(db_err)?;
                out.push((id.value().to_string(), spec.value().to_string()));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_pipeline(&self, id: &str) -> StoreResult<bool> {
        let p = id.to_string();
        let existed = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                let existed = txn.open_table(PIPELINES).map_err(db_err)?.remove(p).map_err(db_err)?.is_some();
                if existed {
                    bump(&txn, "pipelines_version")?;
                }
                for table in [QUEUE, OUTPUT, DLQ] {
                    txn.open_table(table).map_err(db_err)?.retain_in((p, 0)..=(p, u64::MAX), |_, _| false).map_err(db_err)?;
                }
                txn.open_table(OUTPUT_MARKS).map_err(db_err)?.retain_in((p, i64::MIN)..=(p, i64::MAX), |_, _| false).map_err(db_err)?;
                txn.open_table(RETRY)
                    .map_err(db_err)?
                    .retain_in((p, i64::MIN, 0)..=(p, i64::MAX, u64::MAX), |_, _| false)
                    .map_err(db_err)?;
                {
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    for name in COUNTER_NAMES {
                        counters.remove((p, name)).map_err(db_err)?;
                    }
                }
                delete_window_data(&txn, p)?;
                txn.commit().map_err(db_err)?;
                Ok(existed)
            })
            .await?;
        let state = self.state(id);
        state.mem.lock().pending.clear();
        *state.gate.lock() = 0;
        Ok(existed)
    }

    async fn tail_cursor(&self, _pipeline: &str, _window: Option<&str>) -> StoreResult<String> {
        // Sequence numbers come from one counter: everything stored so far
        // is at or below its current value.
        self.blocking(|db| read_u64(db, "seq")).await.map(|seq| seq.to_string())
    }

    async fn pipelines_version(&self) -> StoreResult<u64> {
        self.blocking(|db| read_u64(db, "pipelines_version")).await
    }

    async fn put_table(&self, name: &str, entries: &BTreeMap<String, String>) -> StoreResult<()> {
        let name = name.to_string();
        let json = serde_json::to_string(entries).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(TABLES).map_err(db_err)?.insert(name.as_str(), json.as_str()).map_err(db_err)?;
            bump(&txn, "tables_version")?;
            txn.commit().map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_table(&self, name: &str) -> StoreResult<Option<BTreeMap<String, String>>> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(TABLES).map_err(db_err)?;
            let Some(json) = t.get(name.as_str()).map_err(db_err)? else { return Ok(None) };
            Ok(Some(serde_json::from_str(json.value()).map_err(json_err)?))
        })
        .await
    }

    async fn list_tables(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(TABLES).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(db_err)? {
                let (name, json) = item.map_err(db_err)?;
                out.push((name.value().to_string(), serde_json::from_str(json.value()).map_err(json_err)?));
            }
            Ok(out)
        })
        .await
    }

    async fn tables_version(&self) -> StoreResult<u64> {
        self.blocking(|db| read_u64(db, "tables_version")).await
    }

    // ---- queue --------------------------------------------------------------

    async fn enqueue(&self, pipeline: &str, events: &[QueuedEvent], rejected: u64, max_depth: u64) -> StoreResult<Enqueued> {
        let n = events.len() as u64;
        let json = if n > 0 { QueuedEvent::json_array(events) } else { Vec::new() };
        let p = pipeline.to_string();
        let answer = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                let depth = {
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    let mut depth = counter(&counters, p, DEPTH)?;
                    if n > 0 {
                        if depth.saturating_add(n) > max_depth {
                            return Ok(Enqueued::Full { depth });
                        }
                        let mut meta = txn.open_table(META).map_err(db_err)?;
                        let mut seq = Seq::load(&meta)?;
                        txn.open_table(QUEUE).map_err(db_err)?.insert((p, seq.take()), json.as_slice()).map_err(db_err)?;
                        seq.save(&mut meta)?;
                        depth = add(&mut counters, p, DEPTH, n as i64)?;
                        add(&mut counters, p, ACCEPTED, n as i64)?;
                    }
                    if rejected > 0 {
                        add(&mut counters, p, REJECTED, rejected as i64)?;
                    }
                    depth
                };
                if n > 0 || rejected > 0 {
                    txn.commit().map_err(db_err)?;
                }
                Ok(Enqueued::Accepted { depth })
            })
            .await?;
        if n > 0 && matches!(answer, Enqueued::Accepted { .. }) {
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
                        out.push(Delivery { id: seq.to_string(), events });
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
        let mut prepared = Vec::with_capacity(results.len());
        for r in results {
            prepared.push(Prepared {
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
                retries: r.retries.iter().map(|t| Ok((t.due_at_ms, to_json(&t.event)?))).collect::<StoreResult<_>>()?,
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
                    if stored_watermark >= v || *gate.gate.lock() > now_ms {
                        return Ok(CompleteReport { stale: true, ..Default::default() });
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
                    let mut last_output = None;
                    // Window updates of the applied entries, summed per key
                    // so each stored row and sketch is rewritten once.
                    let mut pane_sums: BTreeMap<(String, i64, String), PaneAgg> = BTreeMap::new();
                    let mut distinct: BTreeMap<(String, i64, String, u32), Vec<String>> = BTreeMap::new();
                    let mut dirty_marks = Vec::new();
                    let (mut had_deltas, mut max_event_ts) = (false, None::<i64>);
                    for entry in prepared {
                        let still_queued = match entry.seq {
                            Some(s) => queue.remove((p, s)).map_err(db_err)?.is_some(),
                            None => false,
                        };
                        if !still_queued {
                            report.skipped += 1;
                            continue;
                        }
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
                        let second = crate::event::now_ms().div_euclid(1000) * 1000;
                        txn.open_table(OUTPUT_MARKS).map_err(db_err)?.insert((p, second), last).map_err(db_err)?;
                    }
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    add(&mut counters, p, DEPTH, -(finished as i64))?;
                    add(&mut counters, p, PROCESSED, finished as i64)?;
                    add(&mut counters, p, EMITTED, emitted as i64)?;
                    add(&mut counters, p, DLQ_SIZE, dead as i64)?;

                    let mut panes = txn.open_table(PANES).map_err(db_err)?;
                    for ((w, pane, g), sum) in &pane_sums {
                        let key = (p, w.as_str(), *pane, g.as_str());
                        let stored = panes.get(key).map_err(db_err)?.map(|v| parse_pane(v.value(), w, *pane, g)).transpose()?;
                        let mut agg = stored.unwrap_or_default();
                        agg.merge(sum);
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
                    append_chunks(&mut queue, &mut seq, p, &events, events.len())?;
                    seq.save(&mut meta)?;
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
            })
        })
        .await
    }

    // ---- dead letter queue ----------------------------------------------

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
                    let (picked, failed) = select_dlq(&dlq, p, &selector)?;
                    if picked.is_empty() {
                        return Ok(ReplayReport { replayed: 0, failed });
                    }
                    let mut events = Vec::with_capacity(picked.len());
                    for s in &picked {
                        let Some(bytes) = dlq.remove((p, *s)).map_err(db_err)? else { continue };
                        let entry = parse_dlq(*s, bytes.value())?;
                        let queued =
                            QueuedEvent { event: entry.event, start_stage: Some(entry.stage), attempt: 1, first_failed_at: None };
                        events.push(to_json(&queued)?);
                    }
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let mut queue = txn.open_table(QUEUE).map_err(db_err)?;
                    append_chunks(&mut queue, &mut seq, p, &events, REPLAY_CHUNK)?;
                    seq.save(&mut meta)?;
                    let n = events.len() as i64;
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    add(&mut counters, p, DEPTH, n)?;
                    add(&mut counters, p, DLQ_SIZE, -n)?;
                    ReplayReport { replayed: n as u64, failed }
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

    // ---- outputs ----------------------------------------------------------

    async fn trim_output(&self, pipeline: &str, before_ms: i64) -> StoreResult<u64> {
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            let deleted = {
                let mut marks = txn.open_table(OUTPUT_MARKS).map_err(db_err)?;
                // Seconds that ended by `before_ms`: every output in them is older.
                let done = (p, i64::MIN)..=(p, before_ms.saturating_sub(1000));
                let mut newest = None;
                for item in marks.range(done.clone()).map_err(db_err)? {
                    let (_, seq) = item.map_err(db_err)?;
                    newest = newest.max(Some(seq.value()));
                }
                let Some(newest) = newest else { return Ok(0) };
                marks.retain_in(done, |_, _| false).map_err(db_err)?;
                let mut output = txn.open_table(OUTPUT).map_err(db_err)?;
                let mut deleted = 0u64;
                output
                    .retain_in((p, 0)..=(p, newest), |_, _| {
                        deleted += 1;
                        false
                    })
                    .map_err(db_err)?;
                deleted
            };
            txn.commit().map_err(db_err)?;
            Ok(deleted)
        })
        .await
    }

    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>> {
        let (items, next_cursor) = self.page(OUTPUT, pipeline, cursor, limit).await?;
        let items = items.iter().map(|(_, bytes)| serde_json::from_slice(bytes).map_err(json_err)).collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }

    // ---- windows ----------------------------------------------------------

    async fn window_clock(&self, pipeline: &str) -> StoreResult<WindowClock> {
        let state = self.state(pipeline);
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let (watermark, max_event_ts, last_event_at) = stored_clock(&txn.open_table(WINDOW_CLOCK).map_err(db_err)?, &p)?;
            Ok(WindowClock { watermark, max_event_ts, last_event_at, gate_until: *state.gate.lock() })
        })
        .await
    }

    async fn begin_close(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<WindowClock>> {
        let state = self.state(pipeline);
        let p = pipeline.to_string();
        self.blocking(move |db| {
            // A write transaction though nothing is written: it waits until an
            // apply that already passed the gate check has committed.
            let txn = db.begin_write().map_err(db_err)?;
            let (watermark, max_event_ts, last_event_at) = stored_clock(&txn.open_table(WINDOW_CLOCK).map_err(db_err)?, &p)?;
            let clock = {
                let mut gate = state.gate.lock();
                if *gate > now_ms {
                    return Ok(None);
                }
                *gate = now_ms.saturating_add(lease_ms);
                WindowClock { watermark, max_event_ts, last_event_at, gate_until: *gate }
            };
            txn.abort().map_err(db_err)?;
            Ok(Some(clock))
        })
        .await
    }

    async fn read_panes(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<PaneRow>> {
        if from > to {
            return Ok(Vec::new());
        }
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let w_next = successor(&w);
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PANES).map_err(db_err)?;
            let mut rows = Vec::new();
            for item in t.range(span(&p, &w, &w_next, from, to)).map_err(db_err)? {
                let (key, value) = item.map_err(db_err)?;
                let (_, _, pane, group) = key.value();
                rows.push(PaneRow { pane, group: group.to_string(), agg: parse_pane(value.value(), &w, pane, group)? });
            }
            Ok(rows)
        })
        .await
    }

    async fn distinct_counts(&self, pipeline: &str, window: &str, queries: &[DistinctQuery]) -> StoreResult<Vec<u64>> {
        let (p, w, queries) = (pipeline.to_string(), window.to_string(), queries.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(SKETCHES).map_err(db_err)?;
            let mut counts = Vec::with_capacity(queries.len());
            for q in &queries {
                // An index too big for the key was never stored: no values.
                let Ok(agg) = u32::try_from(q.agg) else {
                    counts.push(0);
                    continue;
                };
                let mut union = new_sketch();
                for pane in &q.panes {
                    let Some(bytes) = t.get((p.as_str(), w.as_str(), *pane, q.group.as_str(), agg)).map_err(db_err)? else { continue };
                    let sketch = parse_sketch(bytes.value(), || format!("{w}/{pane}/{}/{agg}", q.group))?;
                    union
                        .merge(&sketch)
                        .map_err(|e| StoreError::Internal(format!("cannot merge sketch {w}/{pane}/{}/{agg}: {e}", q.group)))?;
                }
                counts.push(union.count().round() as u64);
            }
            Ok(counts)
        })
        .await
    }

    async fn dirty_marks(&self, pipeline: &str, window: &str) -> StoreResult<Vec<DirtyMark>> {
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let w_next = successor(&w);
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(DIRTY).map_err(db_err)?;
            let mut marks = Vec::new();
            for item in t.range(span(&p, &w, &w_next, i64::MIN, i64::MAX)).map_err(db_err)? {
                let (key, _) = item.map_err(db_err)?;
                let (_, _, pane, group) = key.value();
                marks.push(DirtyMark { window: w.clone(), pane, group: group.to_string() });
            }
            Ok(marks)
        })
        .await
    }

    async fn finish_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<()> {
        let emit = commit
            .emit
            .iter()
            .map(|r| Ok((r.window.clone(), r.start, to_json(r)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let commit = commit.clone();
        let state = self.state(pipeline);
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut clock = txn.open_table(WINDOW_CLOCK).map_err(db_err)?;
                let (_, max_event_ts, last_event_at) = stored_clock(&clock, p)?;
                clock.insert(p, (commit.watermark, max_event_ts, last_event_at)).map_err(db_err)?;

                if !emit.is_empty() {
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let mut results = txn.open_table(RESULTS).map_err(db_err)?;
                    let mut by_start = txn.open_table(RESULTS_BY_START).map_err(db_err)?;
                    for (window, start, json) in &emit {
                        let s = seq.take();
                        results.insert((p, window.as_str(), s), json.as_slice()).map_err(db_err)?;
                        by_start.insert((p, window.as_str(), *start, s), ()).map_err(db_err)?;
                    }
                    seq.save(&mut meta)?;
                }

                let mut finals = txn.open_table(FINALS).map_err(db_err)?;
                for r in &commit.finals {
                    finals.insert((p, r.window.as_str(), r.start, r.group.as_str()), r.json.as_str()).map_err(db_err)?;
                }

                let mut panes = txn.open_table(PANES).map_err(db_err)?;
                let mut sketches = txn.open_table(SKETCHES).map_err(db_err)?;
                for d in &commit.drop_panes {
                    let w = d.window.as_str();
                    match &d.group {
                        None => {
                            let w_next = successor(w);
                            panes.retain_in(span(p, w, &w_next, d.pane, d.pane), |_, _| false).map_err(db_err)?;
                            let end = match d.pane.checked_add(1) {
                                Some(next) => (p, w, next, "", 0),
                                None => (p, w_next.as_str(), i64::MIN, "", 0),
                            };
                            sketches.retain_in((p, w, d.pane, "", 0)..end, |_, _| false).map_err(db_err)?;
                        }
                        Some(g) => {
                            panes.remove((p, w, d.pane, g.as_str())).map_err(db_err)?;
                            sketches
                                .retain_in((p, w, d.pane, g.as_str(), 0)..=(p, w, d.pane, g.as_str(), u32::MAX), |_, _| false)
                                .map_err(db_err)?;
                        }
                    }
                }

                let mut dirty = txn.open_table(DIRTY).map_err(db_err)?;
                for m in &commit.dirty_done {
                    dirty.remove((p, m.window.as_str(), m.pane, m.group.as_str())).map_err(db_err)?;
                }

                // Last, so nothing this pass wrote survives its own cutoff.
                let mut results = txn.open_table(RESULTS).map_err(db_err)?;
                let mut by_start = txn.open_table(RESULTS_BY_START).map_err(db_err)?;
                for (window, cutoff) in &commit.expire {
                    let w = window.as_str();
                    finals.retain_in((p, w, i64::MIN, "")..(p, w, *cutoff, ""), |_, _| false).map_err(db_err)?;
                    let mut old = Vec::new();
                    for item in by_start.range((p, w, i64::MIN, 0)..(p, w, *cutoff, 0)).map_err(db_err)? {
                        let (key, _) = item.map_err(db_err)?;
                        let (_, _, start, s) = key.value();
                        old.push((start, s));
                    }
                    for (start, s) in old {
                        by_start.remove((p, w, start, s)).map_err(db_err)?;
                        results.remove((p, w, s)).map_err(db_err)?;
                    }
                }
            }
            // The gate opens with the commit: held across it, an apply that
            // gets the write transaction next waits here and then sees it free.
            let mut gate = state.gate.lock();
            txn.commit().map_err(db_err)?;
            *gate = 0;
            Ok(())
        })
        .await
    }

    async fn final_results(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<WindowRecord>> {
        if from > to {
            return Ok(Vec::new());
        }
        let (p, w) = (pipeline.to_string(), window.to_string());
        self.blocking(move |db| {
            let w_next = successor(&w);
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(FINALS).map_err(db_err)?;
            let mut out = Vec::new();
            for item in t.range(span(&p, &w, &w_next, from, to)).map_err(db_err)? {
                let (key, value) = item.map_err(db_err)?;
                let (_, _, start, group) = key.value();
                out.push(WindowRecord { window: w.clone(), start, group: group.to_string(), json: value.value().to_string() });
            }
            Ok(out)
        })
        .await
    }

    async fn read_window_results(&self, pipeline: &str, window: &str, cursor: &str, limit: usize) -> StoreResult<Page<WindowRecord>> {
        let after = parse_cursor(cursor)?;
        let empty_cursor = if cursor.is_empty() { "0".to_string() } else { cursor.to_string() };
        if limit == 0 {
            return Ok(Page { items: Vec::new(), next_cursor: empty_cursor });
        }
        let (p, w) = (pipeline.to_string(), window.to_string());
        let items = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(db_err)?;
                let t = txn.open_table(RESULTS).map_err(db_err)?;
                let Some(start) = after.checked_add(1) else { return Ok(Vec::new()) };
                let mut items = Vec::new();
                for item in t.range((p.as_str(), w.as_str(), start)..=(p.as_str(), w.as_str(), u64::MAX)).map_err(db_err)?.take(limit) {
                    let (key, value) = item.map_err(db_err)?;
                    let s = key.value().2;
                    let record: WindowRecord = serde_json::from_slice(value.value())
                        .map_err(|e| StoreError::Internal(format!("bad stored result {w}/{s}: {e}")))?;
                    items.push((s, record));
                }
                Ok(items)
            })
            .await?;
        let next_cursor = items.last().map(|(s, _)| s.to_string()).unwrap_or(empty_cursor);
        Ok(Page { items: items.into_iter().map(|(_, r)| r).collect(), next_cursor })
    }

    async fn put_alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool> {
        let stored = StoredAlert {
            window: alert.window.clone(),
            start: alert.start,
            group: alert.group.clone(),
            json: alert.json.clone(),
            at: now_ms,
        };
        let bytes = to_json(&stored)?;
        let p = pipeline.to_string();
        self.blocking(move |db| {
            let p = p.as_str();
            let txn = db.begin_write().map_err(db_err)?;
            let appended = {
                let mut alerts = txn.open_table(ALERTS).map_err(db_err)?;
                let mut keys = txn.open_table(ALERT_KEYS).map_err(db_err)?;
                // Trim first (oldest first, up to the first one still kept):
                // a trimmed alert no longer counts as raised.
                let cutoff = now_ms.saturating_sub(retention_ms);
                let mut old = Vec::new();
                for item in alerts.range((p, 0)..=(p, u64::MAX)).map_err(db_err)? {
                    let (key, value) = item.map_err(db_err)?;
                    let s = key.value().1;
                    let a: StoredAlert = serde_json::from_slice(value.value())
                        .map_err(|e| StoreError::Internal(format!("bad stored alert {s}: {e}")))?;
                    if a.at >= cutoff {
                        break;
                    }
                    old.push((s, a));
                }
                for (s, a) in &old {
                    alerts.remove((p, *s)).map_err(db_err)?;
                    let key = (p, a.window.as_str(), a.start, a.group.as_str());
                    if keys.get(key).map_err(db_err)?.map(|v| v.value()) == Some(*s) {
                        keys.remove(key).map_err(db_err)?;
                    }
                }
                let key = (p, stored.window.as_str(), stored.start, stored.group.as_str());
                if keys.get(key).map_err(db_err)?.is_some() {
                    false
                } else {
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let s = seq.take();
                    seq.save(&mut meta)?;
                    alerts.insert((p, s), bytes.as_slice()).map_err(db_err)?;
                    keys.insert(key, s).map_err(db_err)?;
                    true
                }
            };
            txn.commit().map_err(db_err)?;
            Ok(appended)
        })
        .await
    }

    async fn read_alerts(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>> {
        let (items, next_cursor) = self.page(ALERTS, pipeline, cursor, limit).await?;
        let items = items
            .iter()
            .map(|(s, bytes)| {
                let a: StoredAlert =
                    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad stored alert {s}: {e}")))?;
                Ok(AlertRecord { window: a.window, start: a.start, group: a.group, json: a.json })
            })
            .collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }
}
