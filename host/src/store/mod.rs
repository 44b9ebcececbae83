//! Durable state: the catalog (plugins, pipeline specs, lookup tables), each
//! pipeline's queue, retries, dead letter queue, outputs and counters.
//!
//! One trait, [`Store`], two backends: [`redis::RedisStore`] (production,
//! scale-out: several `sluice serve` processes share one Redis) and
//! [`embedded::EmbeddedStore`] (a redb file, the default: nothing else to
//! install, nothing accepted lost on restart). The same conformance suite
//! (`host/tests/store_conformance.rs`) runs against both.
//!
//! The queue holds *chunks*: one entry per ingest request (or retry/replay
//! group), carrying many events. Workers read, process and complete whole
//! entries; completion is atomic per entry and idempotent, so an entry
//! redelivered after a crash never duplicates an output.

pub mod embedded;
pub mod redis;
pub mod window;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::runtime::ErrorKind;
pub use window::{
    AlertRecord, CloseCommit, DirtyMark, DistinctQuery, FieldAgg, PaneAgg, PaneDelta, PaneRef, PaneRow, WindowClock, WindowRecord,
    NO_WATERMARK,
};

/// Errors from a store. `Unavailable` maps to HTTP 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (connection refused, timeout, I/O).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt data, a bug): 500.
    #[error("store error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An event waiting in a pipeline's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub event: Event,
    /// The stage (by name) to start at; `None` = the first stage. Set for
    /// retries and DLQ replays; if the name is gone from the current spec the
    /// engine starts from the first stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_stage: Option<String>,
    /// The attempt number at `start_stage` (1 = first try).
    #[serde(default = "one")]
    pub attempt: u32,
    /// When this event first failed at `start_stage` (retries only), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<i64>,
}

fn one() -> u32 {
    1
}

impl QueuedEvent {
    /// A freshly ingested event.
    pub fn new(event: Event) -> Self {
        QueuedEvent { event, start_stage: None, attempt: 1, first_failed_at: None }
    }

    /// Appends the queued event's JSON (the same text as its `Serialize`;
    /// see [`Event::write_json`]) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\":");
        self.event.write_json(out);
        if let Some(stage) = &self.start_stage {
            out.extend_from_slice(b",\"start_stage\":");
            crate::event::write_json_str(out, stage);
        }
        out.extend_from_slice(b",\"attempt\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.attempt).as_bytes());
        if let Some(at) = self.first_failed_at {
            out.extend_from_slice(b",\"first_failed_at\":");
            out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        }
        out.push(b'}');
    }

    /// A JSON array of queued events: what a queue entry holds.
    pub fn json_array(events: &[QueuedEvent]) -> Vec<u8> {
        let mut out = Vec::with_capacity(events.iter().map(|q| q.event.byte_size() + 96).sum::<usize>() + 2);
        out.push(b'[');
        for (i, queued) in events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            queued.write_json(&mut out);
        }
        out.push(b']');
        out
    }
}

/// One queue entry handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The entry's id (a Redis stream id, or the embedded sequence number).
    pub id: String,
    pub events: Vec<QueuedEvent>,
}

/// A failed event with its full context, as API.md's DLQ lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    /// Assigned by the store when the entry is written; ignored on input.
    #[serde(default)]
    pub dlq_id: String,
    /// The event as it reached the failing stage.
    pub event: Event,
    pub error: String,
    pub error_kind: ErrorKind,
    pub stage: String,
    pub plugin: String,
    pub plugin_version: u32,
    pub attempts: u32,
    pub first_failed_at: i64,
    pub last_failed_at: i64,
}

/// An event to try again at `due_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    pub event: QueuedEvent,
    pub due_at_ms: i64,
}

/// Everything that became of one delivered entry. Applied atomically and
/// only if the entry is still pending (not yet completed by anyone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryResult {
    pub delivery_id: String,
    /// Events that left the last stage, to the output stream.
    pub outputs: Vec<Event>,
    /// Events that failed for good, to the DLQ.
    pub dead: Vec<DlqEntry>,
    /// Events to try again later (they stay counted in the queue depth).
    pub retries: Vec<Retry>,
    /// Input events that finished here (emitted, filtered out or
    /// dead-lettered): the queue depth drops and `processed` grows by this.
    pub finished: u64,
    /// Window updates from this entry's outputs (applied only with its ack).
    pub window_deltas: Vec<PaneDelta>,
    /// Dirty marks to add whatever the watermark (deltas also carry their
    /// own `dirty_at`).
    pub dirty: Vec<DirtyMark>,
    /// The newest event time among `window_deltas`.
    pub max_event_ts: Option<i64>,
}

/// What `complete` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompleteReport {
    /// Entries acknowledged and applied.
    pub applied: usize,
    /// Entries skipped because they were no longer pending (already done).
    pub skipped: usize,
    /// Nothing was applied: the watermark moved past what the caller's
    /// lateness decisions allow (or a closer holds the gate). Decide again.
    pub stale: bool,
}

/// The answer to an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// All events were appended durably; `depth` is the queue depth after.
    Accepted { depth: u64 },
    /// Nothing was appended: it would cross `max_depth`.
    Full { depth: u64 },
}

/// Which DLQ entries to replay or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelector {
    All,
    Ids(Vec<String>),
    /// The oldest `n`.
    Oldest(usize),
}

/// The result of a DLQ replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: u64,
    /// Requested ids that were not in the DLQ.
    pub failed: u64,
}

/// One page of a cursor-paged list. `next_cursor` is always a string to pass
/// next time (API.md); an empty page means nothing newer yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: String,
}

/// Per-pipeline counters (API.md's pipeline metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub accepted: u64,
    pub rejected: u64,
    /// Input events that finished the stages (emitted, filtered, DLQ'd).
    pub processed: u64,
    /// Events appended to the output stream.
    pub emitted: u64,
    pub dlq_size: u64,
    /// Events accepted and not yet finished (in flight and retrying included).
    pub queue_depth: u64,
}

/// One stored plugin version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersion {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub size: u64,
    pub uploaded_at: i64,
}

/// Where an uploaded plugin landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPlugin {
    pub version: PluginVersion,
    /// false when identical bytes were already stored under this name.
    pub created: bool,
}

/// The store interface. Every method is one atomic step.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the backend answers (`/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    // ---- catalog ----------------------------------------------------------

    /// Stores a plugin's bytes as the next version of `name`, unless the same
    /// bytes (same `sha256`) are already a version of it: then answers that.
    async fn put_plugin(&self, name: &str, sha256: &str, bytes: &[u8], now_ms: i64) -> StoreResult<PutPlugin>;
    /// Every version of every plugin, by name then version.
    async fn list_plugins(&self) -> StoreResult<Vec<PluginVersion>>;
    async fn plugin_bytes(&self, name: &str, version: u32) -> StoreResult<Option<Vec<u8>>>;
    /// false if there was no such version.
    async fn delete_plugin_version(&self, name: &str, version: u32) -> StoreResult<bool>;

    /// Stores a pipeline spec (JSON text); true if it was created, false if replaced.
    async fn put_pipeline(&self, id: &str, spec_json: &str) -> StoreResult<bool>;
    async fn get_pipeline(&self, id: &str) -> StoreResult<Option<String>>;
    /// (id, spec JSON), by id.
    async fn list_pipelines(&self) -> StoreResult<Vec<(String, String)>>;
    /// Deletes the spec and all of the pipeline's data; false if unknown.
    async fn delete_pipeline(&self, id: &str) -> StoreResult<bool>;
    /// A number that changes whenever any pipeline spec changes (engines in
    /// other processes poll it to pick up new specs).
    async fn pipelines_version(&self) -> StoreResult<u64>;

    /// Replaces a lookup table whole.
    async fn put_table(&self, name: &str, entries: &BTreeMap<String, String>) -> StoreResult<()>;
    async fn get_table(&self, name: &str) -> StoreResult<Option<BTreeMap<String, String>>>;
    async fn list_tables(&self) -> StoreResult<Vec<(String, BTreeMap<String, String>)>>;
    /// A number that changes whenever any table changes.
    async fn tables_version(&self) -> StoreResult<u64>;

    // ---- queue --------------------------------------------------------------

    /// Appends `events` as one entry, durably, if the queue depth stays within
    /// `max_depth` (else appends nothing); counts them `accepted` and counts
    /// `rejected` more rejected ones, in the same step.
    async fn enqueue(&self, pipeline: &str, events: &[QueuedEvent], rejected: u64, max_depth: u64) -> StoreResult<Enqueued>;
    /// Up to `max_entries` entries not yet delivered to anyone, waiting up to
    /// `block_ms` for one to arrive. They stay pending for `consumer` until
    /// completed or reclaimed.
    async fn read(&self, pipeline: &str, consumer: &str, max_entries: usize, block_ms: u64) -> StoreResult<Vec<Delivery>>;
    /// Takes over entries pending for longer than `min_idle_ms` with any
    /// consumer (a crashed worker's), for `consumer`.
    async fn reclaim(&self, pipeline: &str, consumer: &str, min_idle_ms: u64, max_entries: usize) -> StoreResult<Vec<Delivery>>;
    /// Applies each entry's results atomically with its acknowledgement,
    /// skipping entries no longer pending. One round trip for all of them.
    async fn complete(&self, pipeline: &str, results: &[EntryResult]) -> StoreResult<CompleteReport> {
        self.complete_windowed(pipeline, results, None, 0).await
    }
    /// [`complete`](Self::complete), also applying each entry's window deltas
    /// and dirty marks with its acknowledgement. With `valid_below: Some(v)`
    /// nothing at all is applied (the answer is `stale`) if the stored
    /// watermark has reached `v` (some update the caller counted would now be
    /// late) or a closer holds the gate at `now_ms`.
    async fn complete_windowed(
        &self,
        pipeline: &str,
        results: &[EntryResult],
        valid_below: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<CompleteReport>;
    /// Moves retries due at `now_ms` back into the queue (as one entry);
    /// answers how many events moved.
    async fn promote_retries(&self, pipeline: &str, now_ms: i64, max_events: usize) -> StoreResult<u64>;
    async fn counters(&self, pipeline: &str) -> StoreResult<Counters>;

    // ---- dead letter queue ----------------------------------------------

    /// Oldest first; `cursor` is the `next_cursor` of the previous page ("" = start).
    async fn dlq_list(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<DlqEntry>>;
    /// Puts the selected entries back on the queue, each restarting at its
    /// failed stage with attempt 1, and removes them from the DLQ in the same
    /// step.
    async fn dlq_replay(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<ReplayReport>;
    /// Removes the selected entries; answers how many.
    async fn dlq_delete(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<u64>;

    // ---- outputs ----------------------------------------------------------

    /// Events that left the last stage, oldest first, after `cursor`.
    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>>;

    /// Deletes the outputs appended before `before_ms` (ms since the epoch:
    /// the pipeline's output retention). Answers how many stored entries
    /// went (on Redis an entry holds one finished queue entry's outputs).
    /// A cursor from before the trim still reads on, from what is left.
    async fn trim_output(&self, pipeline: &str, before_ms: i64) -> StoreResult<u64>;

    // ---- windows ----------------------------------------------------------

    async fn window_clock(&self, pipeline: &str) -> StoreResult<WindowClock>;
    /// Takes the close gate until `now_ms + lease_ms` unless someone holds
    /// it; answers the clock, or `None` when the gate is taken.
    async fn begin_close(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<WindowClock>>;
    /// Pane rows of `window` with `from <= pane <= to`, all groups, by pane.
    async fn read_panes(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<PaneRow>>;
    /// One union cardinality per query.
    async fn distinct_counts(&self, pipeline: &str, window: &str, queries: &[DistinctQuery]) -> StoreResult<Vec<u64>>;
    async fn dirty_marks(&self, pipeline: &str, window: &str) -> StoreResult<Vec<DirtyMark>>;
    /// Applies a closer pass and releases the gate, atomically.
    async fn finish_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<()>;
    /// Stored final results of `window` with `from <= start <= to`, by start.
    async fn final_results(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<WindowRecord>>;
    /// The window's results stream, oldest first, after `cursor`.
    async fn read_window_results(&self, pipeline: &str, window: &str, cursor: &str, limit: usize) -> StoreResult<Page<WindowRecord>>;
    /// Appends an alert unless one was already raised for its (window,
    /// start, group); answers whether it was appended. Alerts older than
    /// `retention_ms` are trimmed.
    async fn put_alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool>;
    /// Alerts, oldest first, after `cursor`.
    async fn read_alerts(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>>;
    /// A cursor past everything stored so far in `window`'s results stream
    /// (or, with `None`, the alerts): a live feed starts reading there.
    async fn tail_cursor(&self, pipeline: &str, window: Option<&str>) -> StoreResult<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_json_matches_serde() {
        let event = |id: &str| Event { id: id.into(), kind: "v".into(), source: "s".into(), timestamp: 3, data: r#"{"a":"\u00e9"}"#.into() };
        let events = vec![
            QueuedEvent::new(event("a")),
            QueuedEvent { event: event("b\"c"), start_stage: Some("st\\age".into()), attempt: 4, first_failed_at: Some(-7) },
            QueuedEvent { event: event("d"), start_stage: None, attempt: 2, first_failed_at: Some(12) },
        ];
        let fast = QueuedEvent::json_array(&events);
        assert_eq!(String::from_utf8(fast.clone()).unwrap(), serde_json::to_string(&events).unwrap());
        assert_eq!(serde_json::from_slice::<Vec<QueuedEvent>>(&fast).unwrap(), events);
        assert_eq!(QueuedEvent::json_array(&[]), b"[]");
    }
}
