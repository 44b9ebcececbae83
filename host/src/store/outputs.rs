//! The outputs capability: what left the last stage.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{Event, Page};

/// A pipeline's output stream.
#[async_trait]
pub trait Outputs: Send + Sync {
    /// Events that left the last stage, oldest first, after `cursor`.
    async fn read_output(&self, pipeline: &str, cursor: &str, limit: usize) -> StoreResult<Page<Event>>;

    /// Deletes the outputs appended before `before_ms` (ms since the epoch:
    /// the pipeline's output retention). Answers how many stored entries
    /// went (on Redis an entry holds one finished queue entry's outputs).
    /// A cursor from before the trim still reads on, from what is left.
    async fn trim_output(&self, pipeline: &str, before_ms: i64) -> StoreResult<u64>;
}
