//! A pipeline's queue as every layer sees it: events as queued (with where a
//! retry or replay starts), the entries handed to workers, and everything
//! that became of an entry, applied in one atomic completion.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::dlq::DlqEntry;
use super::event::{write_json_str, Event};
use super::window::{DirtyMark, PaneDelta};

/// Where a retried or replayed event starts again. Stored as one string
/// (`start_stage` in a queued event's JSON): a stage's name, or
/// `window:<name>` for an event that already went through the stages and is
/// re-applied to that one window only (a replayed late event). Stage names
/// are `[a-z0-9-]` (API.md), so the two never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplayStart {
    /// Run the stages again from this one (by name; a name gone from the
    /// current spec restarts at the first stage).
    Stage(String),
    /// Skip the stages: apply the event to this window only.
    Window(String),
    /// Deliver to this sink only (a replayed sink failure). The store puts
    /// such a replay on the sink's own redelivery list, never on the queue.
    Sink(String),
}

impl ReplayStart {
    /// What the stored string of a [`ReplayStart::Window`] starts with.
    pub const WINDOW_PREFIX: &'static str = "window:";
    /// What the stored string of a [`ReplayStart::Sink`] starts with.
    pub const SINK_PREFIX: &'static str = "sink:";

    /// Reads the stored form (see the type's doc).
    pub fn parse(stored: &str) -> ReplayStart {
        if let Some(window) = stored.strip_prefix(Self::WINDOW_PREFIX) {
            return ReplayStart::Window(window.to_string());
        }
        match stored.strip_prefix(Self::SINK_PREFIX) {
            Some(sink) => ReplayStart::Sink(sink.to_string()),
            None => ReplayStart::Stage(stored.to_string()),
        }
    }

    /// The stored form (see the type's doc).
    pub fn to_stored(&self) -> String {
        match self {
            ReplayStart::Stage(stage) => stage.clone(),
            ReplayStart::Window(window) => format!("{}{window}", Self::WINDOW_PREFIX),
            ReplayStart::Sink(sink) => format!("{}{sink}", Self::SINK_PREFIX),
        }
    }
}

/// A plain name is a stage's: what retries (and most tests) start from.
impl From<&str> for ReplayStart {
    fn from(stage: &str) -> Self {
        ReplayStart::Stage(stage.to_string())
    }
}

impl Serialize for ReplayStart {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ReplayStart::Stage(stage) => serializer.serialize_str(stage),
            ReplayStart::Window(_) | ReplayStart::Sink(_) => serializer.serialize_str(&self.to_stored()),
        }
    }
}

impl<'de> Deserialize<'de> for ReplayStart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ReplayStart::parse(&stored))
    }
}

/// An event waiting in a pipeline's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    /// The event as it will enter `start_stage`.
    pub event: Event,
    /// Where to start; `None` = the first stage. Set for retries and DLQ
    /// replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_stage: Option<ReplayStart>,
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
    /// see [`Event::write_json`]) to `out`: ingest writes every event this
    /// way, so it skips serde's generic path.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\":");
        self.event.write_json(out);
        match &self.start_stage {
            None => {}
            Some(ReplayStart::Stage(stage)) => {
                out.extend_from_slice(b",\"start_stage\":");
                write_json_str(out, stage);
            }
            Some(start @ (ReplayStart::Window(_) | ReplayStart::Sink(_))) => {
                out.extend_from_slice(b",\"start_stage\":");
                write_json_str(out, &start.to_stored());
            }
        }
        out.extend_from_slice(b",\"attempt\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.attempt).as_bytes());
        if let Some(at) = self.first_failed_at {
            out.extend_from_slice(b",\"first_failed_at\":");
            out.extend_from_slice(itoa::Buffer::new().format(at).as_bytes());
        }
        out.push(b'}');
    }
}

/// One queue entry handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The entry's id (a Redis stream id, or the embedded sequence number).
    pub id: String,
    /// The entry's events, in the order they were queued.
    pub events: Vec<QueuedEvent>,
    /// The stored entry's size in bytes (what it counts in the queued
    /// bytes): copy it into [`EntryResult::entry_bytes`] so the completion
    /// takes exactly that off the count.
    pub bytes: u64,
}

/// An event to try again at `due_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    /// The event, with where and at which attempt it starts again.
    pub event: QueuedEvent,
    /// When it goes back into the queue, ms.
    pub due_at_ms: i64,
}

/// Everything that became of one delivered entry. Applied atomically and
/// only if the entry is still pending (not yet completed by anyone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryResult {
    /// The [`Delivery::id`] this is the result of.
    pub delivery_id: String,
    /// The [`Delivery::bytes`] of that entry: taken off the queued bytes
    /// when the entry is applied (retries add their own size back).
    pub entry_bytes: u64,
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

/// What a completion did.
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

/// The bounds of a pipeline's queue (its spec's `max_queue_depth` and
/// `max_queue_bytes`): an enqueue that would pass either appends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most events accepted and not finished.
    pub max_depth: u64,
    /// Most bytes of stored queue entries (and waiting retries) accepted and
    /// not finished.
    pub max_bytes: u64,
}

/// The answer to an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// All events were appended durably.
    Accepted {
        /// The queue depth after.
        depth: u64,
    },
    /// Nothing was appended: it would pass `max_depth` or `max_bytes` (the
    /// caller compares `depth` and `bytes` plus its request with its
    /// [`QueueLimits`] to say which).
    Full {
        /// The queue depth (unchanged).
        depth: u64,
        /// The queued bytes (unchanged).
        bytes: u64,
    },
}

/// Per-pipeline counters (API.md's pipeline metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Events accepted into the queue.
    pub accepted: u64,
    /// Events refused at ingest.
    pub rejected: u64,
    /// Input events that finished the stages (emitted, filtered, DLQ'd).
    pub processed: u64,
    /// Events appended to the output stream.
    pub emitted: u64,
    /// Entries in the dead letter queue.
    pub dlq_size: u64,
    /// Events accepted and not yet finished (in flight and retrying included).
    pub queue_depth: u64,
    /// The stored bytes of those events (queue entries and waiting
    /// retries): what `max_queue_bytes` bounds.
    pub queue_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_start_reads_and_writes_the_stored_string() {
        for (stored, start) in [
            ("enrich", ReplayStart::Stage("enrich".into())),
            ("window:per-minute", ReplayStart::Window("per-minute".into())),
            ("sink:warehouse", ReplayStart::Sink("warehouse".into())),
        ] {
            assert_eq!(ReplayStart::parse(stored), start);
            assert_eq!(start.to_stored(), stored);
            assert_eq!(serde_json::to_string(&start).unwrap(), format!("{stored:?}"));
            assert_eq!(serde_json::from_str::<ReplayStart>(&format!("{stored:?}")).unwrap(), start);
        }
    }
}
