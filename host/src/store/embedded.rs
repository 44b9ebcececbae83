//! The embedded backend: one redb file in a directory, every method one
//! durable transaction, run on tokio's blocking pool.
//!
//! Queue entries, outputs and DLQ entries are keyed by (pipeline, seq), where
//! seq comes from one counter for the whole database, so ids never repeat,
//! not even after a pipeline is deleted and made again. Which entries are
//! handed out ("pending") is kept in memory only: after a restart everything
//! not completed is delivered again, which at-least-once delivery allows and
//! idempotent completion makes harmless.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};
use tokio::sync::Notify;

use super::{
    AlertRecord, CloseCommit, CompleteReport, Counters, DirtyMark, DistinctQuery, PaneRow, WindowClock, WindowRecord, Delivery, DlqEntry, DlqSelector, Enqueued, EntryResult, Page, PluginVersion, PutPlugin,
    QueuedEvent, ReplayReport, Store, StoreError, StoreResult,
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
/// (pipeline, seq) → DLQ entry JSON (its `dlq_id` is the seq).
const DLQ: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dlq");
/// (pipeline, due ms, seq) → queued event JSON.
const RETRY: TableDefinition<(&str, i64, u64), &[u8]> = TableDefinition::new("retry");

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

/// In-memory state of one pipeline's queue.
#[derive(Default)]
struct PipeState {
    mem: Mutex<PipeMem>,
    /// Woken whenever entries are added to the queue.
    notify: Notify,
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
            txn.open_table(DLQ).map_err(db_err)?;
            txn.open_table(RETRY).map_err(db_err)?;
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
                txn.commit().map_err(db_err)?;
                Ok(existed)
            })
            .await?;
        self.state(id).mem.lock().pending.clear();
        Ok(existed)
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
        let json = if n > 0 { to_json(events)? } else { Vec::new() };
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

    async fn complete_windowed(&self, pipeline: &str, results: &[EntryResult], watermark: Option<i64>, now_ms: i64) -> StoreResult<CompleteReport> { let _ = (watermark, now_ms); self.complete_plain(pipeline, results).await }
    async fn window_clock(&self, _pipeline: &str) -> StoreResult<WindowClock> { todo!("window_clock") }
    async fn begin_close(&self, _pipeline: &str, _now_ms: i64, _lease_ms: i64) -> StoreResult<Option<WindowClock>> { todo!() }
    async fn read_panes(&self, _pipeline: &str, _window: &str, _from: i64, _to: i64) -> StoreResult<Vec<PaneRow>> { todo!() }
    async fn distinct_counts(&self, _pipeline: &str, _window: &str, _queries: &[DistinctQuery]) -> StoreResult<Vec<u64>> { todo!() }
    async fn dirty_marks(&self, _pipeline: &str, _window: &str) -> StoreResult<Vec<DirtyMark>> { todo!() }
    async fn finish_close(&self, _pipeline: &str, _commit: &CloseCommit) -> StoreResult<()> { todo!() }
    async fn final_results(&self, _pipeline: &str, _window: &str, _from: i64, _to: i64) -> StoreResult<Vec<WindowRecord>> { todo!() }
    async fn read_window_results(&self, _pipeline: &str, _window: &str, _cursor: &str, _limit: usize) -> StoreResult<Page<WindowRecord>> { todo!() }
    async fn put_alert(&self, _pipeline: &str, _alert: &AlertRecord, _now_ms: i64, _retention_ms: i64) -> StoreResult<bool> { todo!() }
    async fn read_alerts(&self, _pipeline: &str, _cursor: &str, _limit: usize) -> StoreResult<Page<AlertRecord>> { todo!() }

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

    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>> {
        let (items, next_cursor) = self.page(OUTPUT, pipeline, cursor, limit).await?;
        let items = items.iter().map(|(_, bytes)| serde_json::from_slice(bytes).map_err(json_err)).collect::<StoreResult<_>>()?;
        Ok(Page { items, next_cursor })
    }
}

impl EmbeddedStore {
    async fn complete_plain(&self, pipeline: &str, results: &[EntryResult]) -> StoreResult<CompleteReport> {
        let mut prepared = Vec::with_capacity(results.len());
        for r in results {
            prepared.push(Prepared {
                seq: r.delivery_id.parse().ok(),
                finished: r.finished,
                outputs: r.outputs.iter().map(to_json).collect::<StoreResult<_>>()?,
                dead: r.dead.iter().map(to_json).collect::<StoreResult<_>>()?,
                retries: r.retries.iter().map(|t| Ok((t.due_at_ms, to_json(&t.event)?))).collect::<StoreResult<_>>()?,
            });
        }
        let seqs: Vec<u64> = prepared.iter().filter_map(|p| p.seq).collect();
        let p = pipeline.to_string();
        let report = self
            .blocking(move |db| {
                let p = p.as_str();
                let txn = db.begin_write().map_err(db_err)?;
                let mut report = CompleteReport::default();
                {
                    let mut queue = txn.open_table(QUEUE).map_err(db_err)?;
                    let mut output = txn.open_table(OUTPUT).map_err(db_err)?;
                    let mut dlq = txn.open_table(DLQ).map_err(db_err)?;
                    let mut retry = txn.open_table(RETRY).map_err(db_err)?;
                    let mut meta = txn.open_table(META).map_err(db_err)?;
                    let mut seq = Seq::load(&meta)?;
                    let (mut finished, mut emitted, mut dead) = (0u64, 0u64, 0u64);
                    for entry in &prepared {
                        let still_queued = match entry.seq {
                            Some(s) => queue.remove((p, s)).map_err(db_err)?.is_some(),
                            None => false,
                        };
                        if !still_queued {
                            report.skipped += 1;
                            continue;
                        }
                        for event in &entry.outputs {
                            output.insert((p, seq.take()), event.as_slice()).map_err(db_err)?;
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
                    }
                    if report.applied == 0 {
                        return Ok(report);
                    }
                    seq.save(&mut meta)?;
                    let mut counters = txn.open_table(COUNTERS).map_err(db_err)?;
                    add(&mut counters, p, DEPTH, -(finished as i64))?;
                    add(&mut counters, p, PROCESSED, finished as i64)?;
                    add(&mut counters, p, EMITTED, emitted as i64)?;
                    add(&mut counters, p, DLQ_SIZE, dead as i64)?;
                }
                txn.commit().map_err(db_err)?;
                Ok(report)
            })
            .await?;
        let state = self.state(pipeline);
        let mut mem = state.mem.lock();
        for s in seqs {
            mem.pending.remove(&s);
        }
        Ok(report)
    }
}
