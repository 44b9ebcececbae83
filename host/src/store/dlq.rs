//! The dead letter queue capability.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{DlqEntry, DlqSelector, Page, ReplayReport};

/// A pipeline's failed events: list, replay, delete.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Oldest first; `cursor` is the `next_cursor` of the previous page ("" = start).
    async fn dlq_list(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<DlqEntry>>;
    /// Puts the selected entries back on the queue, each restarting where it
    /// failed ([`crate::domain::FailedAt::replay_start`]) with attempt 1, and
    /// removes them from the DLQ in the same step.
    async fn dlq_replay(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<ReplayReport>;
    /// Removes the selected entries; answers how many.
    async fn dlq_delete(&self, pipeline: &str, selector: &DlqSelector) -> StoreResult<u64>;
}
