//! A sink's durable state as every layer sees it: where it reads from, how
//! far it got, what it counted, and one step of progress to record.

use serde::{Deserialize, Serialize};

use super::dlq::DlqEntry;
use super::event::Event;

/// What a sink reads: the pipeline's outputs, or one window's results stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkSource {
    /// The events that left the last stage (`"from": "output"`).
    Output,
    /// The results stream of this window (`"from": "window:<name>"`).
    Window(String),
}

impl SinkSource {
    /// What the spec's `from` says.
    pub fn as_spec(&self) -> String {
        match self {
            SinkSource::Output => "output".to_string(),
            SinkSource::Window(window) => format!("window:{window}"),
        }
    }
}

/// How far a sink got in its source: the source cursor after the last
/// item it passed (delivered or dead-lettered), and how many source items
/// that is in all (`seq`: on the output, comparable with the `emitted`
/// counter, so lag = emitted − seq).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkPosition {
    /// A cursor of the source's paged read ("" = from its start).
    pub cursor: String,
    /// Source items passed up to `cursor`.
    pub seq: u64,
}

/// A sink's stored record: its position and figures (what `GET …/sinks`
/// answers besides the lag).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkRecord {
    /// The source, as the spec writes it (`output` or `window:<name>`):
    /// output retention only waits for sinks reading the output.
    pub from: String,
    /// A random token written when the record is made: a destination that
    /// keeps its own position (Postgres) keys it by this too, so a pipeline
    /// deleted and made again (or a store that lost its data) starts fresh
    /// there instead of at a position in a stream that is gone.
    #[serde(default)]
    pub epoch: String,
    /// Where the next read starts.
    pub position: SinkPosition,
    /// Events delivered in all (source and replays).
    pub delivered: u64,
    /// Events sent to the DLQ in all.
    pub failed: u64,
    /// The last delivery error (retryable or not), `None` once a delivery
    /// went through after it.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// An event replayed from the DLQ to one sink, waiting on that sink's
/// redelivery list.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkReplay {
    /// Its id on the redelivery list (what [`SinkCommit::replayed`] names).
    pub id: String,
    /// The event as it failed at the sink.
    pub event: Event,
}

/// One step of a sink's progress, recorded atomically by the store and only
/// while the committing runner still holds the sink's lease (checked first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkCommit {
    /// The record to store (position and figures after this step).
    pub record: SinkRecord,
    /// Events the sink gave up on, to the DLQ in the same step.
    pub dead: Vec<DlqEntry>,
    /// Redelivery-list ids this step dealt with (removed in the same step).
    pub replayed: Vec<String>,
}

/// A sink's lag: source items not yet passed, and when the oldest of them
/// was appended (ms; `None` when nothing waits or the source cannot say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkLag {
    /// Items waiting (for a window source, counted up to a bound).
    pub events: u64,
    /// Append time of the oldest waiting item, ms.
    pub oldest_at: Option<i64>,
}
