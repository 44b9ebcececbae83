//! The types every layer passes around: events (as ingested, queued and
//! output), DLQ entries and error kinds, entry results, catalog records,
//! counters, pages and window state.
//!
//! Owns no behaviour beyond (de)serializing these types. May use external
//! crates only: nothing else in the crate (`store`, `runtime`, `engine`,
//! `window`, `api` all build on it, never the other way round).

#![warn(missing_docs)]

pub mod catalog;
pub mod dlq;
pub mod event;
pub mod health;
pub mod ingest;
pub mod queue;
pub mod sink;
pub mod window;

pub use catalog::{PluginVersion, PutPlugin};
pub use dlq::{DlqEntry, DlqEntrySchema, DlqSelector, ErrorKind, FailedAt, ReplayReport};
pub use event::{now_ms, write_json_str, Event, EventSchema};
pub use health::StoreHealth;
pub use ingest::{EnqueueOptions, EnqueueOutcome, IdempotencyRecord, IDEMPOTENCY_TTL_MS, MAX_DEDUP_WINDOW_MS};
pub use sink::{removed_sink_entry, replay_refused_entry, SinkCommit, SinkLag, SinkPosition, SinkRecord, SinkReplay, SinkSource};
pub use queue::{CompleteReport, Counters, Delivery, Enqueued, EntryResult, QueueLimits, QueuedEvent, ReplayStart, Retry};
pub use window::{
    AlertRecord, CloseCommit, CloseLease, CloseOutcome, DirtyMark, DistinctQuery, FieldAgg, PaneAgg, PaneDelta, PaneRef, PaneRow, WindowClock, WindowRecord,
    MAX_AGGREGATES, NO_WATERMARK,
};

/// One page of a cursor-paged list. `next_cursor` is always a string to pass
/// next time (API.md); an empty page means nothing newer yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Oldest first.
    pub items: Vec<T>,
    /// Pass it back for the next page.
    pub next_cursor: String,
}
