//! The queue capability: enqueue, read, reclaim, complete, retries, counters.

use async_trait::async_trait;

use super::{StoreError, StoreResult};
use crate::domain::{CompleteReport, Counters, Delivery, EnqueueOptions, EnqueueOutcome, Enqueued, EntryResult, QueueLimits, QueuedEvent};

/// A pipeline's queue of chunks, its retries and its counters.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Appends `events` as one entry, durably, if the queue depth and the
    /// queued bytes (the entry's stored size added) stay within `limits`
    /// (else appends nothing and answers [`Enqueued::Full`]); counts them
    /// `accepted` and counts `rejected` more rejected ones, in the same step.
    async fn enqueue(&self, pipeline: &str, events: &[QueuedEvent], rejected: u64, limits: QueueLimits) -> StoreResult<Enqueued> {
        match self.enqueue_with(pipeline, events, rejected, limits, &EnqueueOptions::default()).await? {
            EnqueueOutcome::Ran { enqueued, .. } => Ok(enqueued),
            other => Err(StoreError::Internal(format!("an enqueue without an idempotency record answered {other:?}"))),
        }
    }
    /// [`enqueue`](Self::enqueue) with the producer-retry extras, in the
    /// same atomic step: first, if `options` carries an idempotency record
    /// whose key is stored (and not expired), nothing else happens and the
    /// answer is [`EnqueueOutcome::Replayed`] (same body digest) or
    /// [`EnqueueOutcome::KeyReused`]; then, with a dedup window, events
    /// whose id was accepted within it (or earlier in `events`) are dropped
    /// and counted; the bounds are checked on what remains. When the step
    /// appends (or only counts rejections), the accepted ids and the record
    /// (with the duplicate count) are written with the entry; when it is
    /// full, nothing is. Expired records and ids are purged as it goes.
    async fn enqueue_with(
        &self,
        pipeline: &str,
        events: &[QueuedEvent],
        rejected: u64,
        limits: QueueLimits,
        options: &EnqueueOptions,
    ) -> StoreResult<EnqueueOutcome>;
    /// Up to `max_entries` entries not yet delivered to anyone, waiting up to
    /// `block_ms` for one to arrive. They stay pending for `consumer` until
    /// completed or reclaimed.
    async fn read(&self, pipeline: &str, consumer: &str, max_entries: usize, block_ms: u64) -> StoreResult<Vec<Delivery>>;
    /// Takes over entries pending for longer than `min_idle_ms` with any
    /// consumer (a crashed worker's), for `consumer`.
    async fn reclaim(&self, pipeline: &str, consumer: &str, min_idle_ms: u64, max_entries: usize) -> StoreResult<Vec<Delivery>>;
    /// Applies each entry's results atomically with its acknowledgement,
    /// skipping entries no longer pending. One round trip for all of them.
    /// Nothing at all is written when any check fails (a window delta
    /// carrying a number that is not finite, or a sum that would stop being
    /// finite once added to what is stored: `StoreError::Internal` naming
    /// the window, pane and field), so the same entries can be completed
    /// again with a clean result. Each applied entry's `entry_bytes` leave
    /// the queued bytes and its retries' stored size joins them.
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
    /// The pipeline's counters (API.md's pipeline metrics).
    async fn counters(&self, pipeline: &str) -> StoreResult<Counters>;
    /// Refreshes `consumer`'s claim on the entries `ids` it is still
    /// running: their idle time starts again, so `reclaim` does not take
    /// over an entry that runs longer than the reclaim time. Entries no
    /// longer pending for `consumer` (completed, or taken over already) are
    /// left alone; answers how many were refreshed.
    async fn touch(&self, pipeline: &str, consumer: &str, ids: &[String]) -> StoreResult<usize>;
}
