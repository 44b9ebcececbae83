//! What an enqueue may carry besides its events so producers can retry
//! safely (API.md v1.1): an idempotency record written in the same store
//! step as the events, and de-duplication by event id within a window.

use super::Enqueued;

/// How long an idempotency record is kept (API.md: 24 h), so a producer's
/// retries within a day get the first answer again.
pub const IDEMPOTENCY_TTL_MS: u64 = 86_400_000;

/// Longest `dedup_window_ms` (24 h): the store keeps every id accepted
/// within the window, so the window bounds that memory.
pub const MAX_DEDUP_WINDOW_MS: u64 = 86_400_000;

/// The idempotency record of one ingest request. The store checks for it
/// first and writes it with the events, in one atomic step, so a request
/// that timed out can never have queued events without its record (or the
/// reverse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 (hex) of the producer's key: what the record is found by
    /// (fixed length and charset whatever the key).
    pub key_sha: String,
    /// SHA-256 (hex) of the request body: the same key with another body is
    /// refused, not replayed.
    pub body_sha: String,
    /// The 202 answer's body as computed before the step (every valid event
    /// counted as accepted, no `duplicates`), replayed to later requests
    /// with the same key; the store keeps its step's duplicate count beside
    /// it, which the caller applies.
    pub answer: String,
    /// How long the record is kept (ms).
    pub ttl_ms: u64,
}

/// Extras of one enqueue, all checked and written in the same atomic step
/// as the append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Check for this record first (a hit does nothing else); write it with
    /// the events when the step appends (or only counts rejections).
    pub idempotency: Option<IdempotencyRecord>,
    /// When > 0, an event whose id was accepted into the pipeline less than
    /// this many ms ago (or earlier in the same request) is dropped, not
    /// queued, and counted as a duplicate.
    pub dedup_window_ms: u64,
    /// The step's clock (ms since the epoch): records expire and the window
    /// is measured by it.
    pub now_ms: i64,
}

/// What an enqueue with [`EnqueueOptions`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// The step ran: `enqueued` says whether the events that are not
    /// duplicates were appended (when `Full`, nothing was written at all);
    /// `duplicates` of them were dropped as already accepted.
    Ran {
        /// Appended, or refused as full.
        enqueued: Enqueued,
        /// Events dropped as already accepted within the window.
        duplicates: u64,
    },
    /// A record with the key and the same body digest exists: nothing was
    /// done. The stored answer and the duplicate count of its step.
    Replayed {
        /// [`IdempotencyRecord::answer`] as stored.
        answer: String,
        /// The duplicates that step dropped.
        duplicates: u64,
    },
    /// A record with the key exists for another body: nothing was done.
    KeyReused,
}
