//! The window capabilities: the event-time clock and close gate, panes,
//! distinct counts, dirty marks, finals, the results stream, and alerts.
//! (Window deltas are applied with an entry's completion: see
//! [`Queue::complete_windowed`](super::Queue::complete_windowed).)

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{AlertRecord, CloseCommit, CloseLease, CloseOutcome, DirtyMark, DistinctQuery, Page, PaneRow, WindowClock, WindowRecord};

/// What the closer and the window queries read and commit.
#[async_trait]
pub trait WindowState: Send + Sync {
    /// The pipeline's event-time clock.
    async fn window_clock(&self, pipeline: &str) -> StoreResult<WindowClock>;
    /// Takes the close gate until `now_ms + lease_ms` unless someone holds
    /// it; answers the clock and a fencing token greater than any handed out
    /// before for `pipeline`, or `None` when the gate is taken.
    async fn begin_close(&self, pipeline: &str, now_ms: i64, lease_ms: i64) -> StoreResult<Option<CloseLease>>;
    /// Pane rows of `window` with `from <= pane <= to`, all groups, by pane.
    async fn read_panes(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<PaneRow>>;
    /// One union cardinality per query.
    async fn distinct_counts(&self, pipeline: &str, window: &str, queries: &[DistinctQuery]) -> StoreResult<Vec<u64>>;
    /// The window's dirty marks (closed windows updated since they were emitted).
    async fn dirty_marks(&self, pipeline: &str, window: &str) -> StoreResult<Vec<DirtyMark>>;
    /// Applies a closer pass and releases the gate, atomically, if
    /// `commit.token` is still the stored lease's token and the gate is
    /// still held (a lease commits once); otherwise writes nothing and
    /// answers [`CloseOutcome::Fenced`] (checked before the first write).
    /// Never moves the watermark backwards (see [`CloseCommit::watermark_over`]).
    async fn finish_close(&self, pipeline: &str, commit: &CloseCommit) -> StoreResult<CloseOutcome>;
    /// Stored final results of `window` with `from <= start <= to`, by
    /// start then group: the first `max` of them, and whether there were
    /// more (a query reads a bounded amount whatever the range).
    async fn final_results_at_most(&self, pipeline: &str, window: &str, from: i64, to: i64, max: usize) -> StoreResult<(Vec<WindowRecord>, bool)>;
    /// Every stored final result of `window` with `from <= start <= to`.
    async fn final_results(&self, pipeline: &str, window: &str, from: i64, to: i64) -> StoreResult<Vec<WindowRecord>> {
        Ok(self.final_results_at_most(pipeline, window, from, to, usize::MAX).await?.0)
    }
    /// The window's results stream, oldest first, after `cursor`.
    async fn read_window_results(&self, pipeline: &str, window: &str, cursor: &str, limit: usize) -> StoreResult<Page<WindowRecord>>;
    /// A cursor past everything stored so far in `window`'s results stream
    /// (or, with `None`, the alerts): a live feed starts reading there.
    async fn tail_cursor(&self, pipeline: &str, window: Option<&str>) -> StoreResult<String>;
}

/// Spike alerts raised by the closer.
#[async_trait]
pub trait Alerts: Send + Sync {
    /// Appends an alert unless one was already raised for its (window,
    /// start, group); answers whether it was appended. Alerts older than
    /// `retention_ms` are trimmed.
    async fn put_alert(&self, pipeline: &str, alert: &AlertRecord, now_ms: i64, retention_ms: i64) -> StoreResult<bool>;
    /// Alerts, oldest first, after `cursor`.
    async fn read_alerts(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<AlertRecord>>;
}
