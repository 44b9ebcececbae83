//! The sinks capability: each sink's durable position and figures, its
//! lease (one runner per sink across processes), its DLQ redelivery list,
//! and its lag. A DLQ replay of a sink's failure goes to that sink's
//! redelivery list only while the sink has a record (it is in the spec);
//! otherwise the entry stays in the DLQ with an error saying the sink is
//! gone ([`crate::domain::replay_refused_entry`]).

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{SinkCommit, SinkLag, SinkPosition, SinkRecord, SinkReplay, SinkSource};

/// Where each sink of a pipeline is, and who runs it.
#[async_trait]
pub trait SinkState: Send + Sync {
    /// The sink's record, made first if there is none: a sink reading the
    /// output starts at its current end (outputs from before the sink was
    /// added are not delivered), one reading a window's results at the
    /// start of what is kept (re-delivering a window result is an upsert).
    async fn sink_open(&self, pipeline: &str, sink: &str, source: &SinkSource) -> StoreResult<SinkRecord>;
    /// Every sink record of the pipeline, by sink name.
    async fn sink_records(&self, pipeline: &str) -> StoreResult<Vec<(String, SinkRecord)>>;
    /// Takes the sink's lease for `holder` until `now_ms + ttl_ms`, or
    /// renews it; answers whether `holder` holds it (someone else's lease
    /// that has not run out is left alone).
    async fn sink_lease(&self, pipeline: &str, sink: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> StoreResult<bool>;
    /// Records a step (record, DLQ entries, redelivery ids done) if
    /// `holder` still holds the lease, checked before anything is written;
    /// answers whether it was recorded.
    async fn sink_commit(&self, pipeline: &str, sink: &str, holder: &str, commit: &SinkCommit) -> StoreResult<bool>;
    /// Events replayed from the DLQ to this sink, oldest first (at most `limit`).
    async fn sink_replays(&self, pipeline: &str, sink: &str, limit: usize) -> StoreResult<Vec<SinkReplay>>;
    /// The lag of a sink at `position` in the pipeline's output.
    async fn output_lag(&self, pipeline: &str, position: &SinkPosition) -> StoreResult<SinkLag>;
    /// The lag of a sink at `position` in `window`'s results stream: the
    /// results after it, counted up to `count_up_to`, and when the oldest
    /// of them was appended.
    async fn window_lag(&self, pipeline: &str, window: &str, position: &SinkPosition, count_up_to: usize) -> StoreResult<SinkLag>;
    /// Drops the sink's record (position and figures), so the next
    /// [`SinkState::sink_open`] starts afresh (the spec now reads another
    /// source); its lease and redelivery list stay.
    async fn sink_reset(&self, pipeline: &str, sink: &str) -> StoreResult<()>;
    /// Forgets a sink gone from the spec: its record and lease, so output
    /// retention no longer waits for it and a DLQ replay no longer sends it
    /// anything, and moves what waits on its redelivery list back to the
    /// DLQ ([`crate::domain::removed_sink_entry`], failed at `now_ms`).
    /// Nothing accepted is dropped; done again, it finishes what a forget
    /// cut short.
    async fn sink_forget(&self, pipeline: &str, sink: &str, now_ms: i64) -> StoreResult<()>;
}

