//! A sink's durable state as every layer sees it: where it reads from, how
//! far it got, what it counted, one step of progress to record, and what
//! becomes of DLQ replays for a sink that was removed from the spec.

use serde::{Deserialize, Serialize};

use super::dlq::{DlqEntry, ErrorKind, FailedAt};
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

/// How every DLQ error about a sink gone from the spec starts (so a
/// message about it is never wrapped in another one).
fn sink_gone(sink: &str) -> String {
    format!("sink `{sink}` no longer exists in the pipeline's spec")
}

/// The DLQ entry for an event that waited on sink `sink`'s redelivery list
/// (a DLQ replay) when the sink was removed from the spec: it goes back to
/// the DLQ, where it came from, instead of waiting for a sink that will
/// never run. `now_ms` is when it failed (its first failure is not kept on
/// the redelivery list).
pub fn removed_sink_entry(event: Event, sink: &str, now_ms: i64) -> DlqEntry {
    DlqEntry {
        dlq_id: String::new(),
        event,
        error: format!("{}: it was removed while this replayed event waited for redelivery", sink_gone(sink)),
        error_kind: ErrorKind::Sink,
        failed_at: FailedAt::Sink { sink: sink.to_string() },
        attempts: 1,
        first_failed_at: now_ms,
        last_failed_at: now_ms,
    }
}

/// `entry` (a failure of sink `sink`), kept in the DLQ because a replay
/// found the sink gone from the spec: its error says so, keeping what the
/// delivery first failed with; `last_failed_at` is `now_ms`.
pub fn replay_refused_entry(mut entry: DlqEntry, sink: &str, now_ms: i64) -> DlqEntry {
    let gone = sink_gone(sink);
    if !entry.error.starts_with(&gone) {
        entry.error = format!("{gone}: replay refused (the delivery had failed with: {})", entry.error);
    }
    entry.last_failed_at = now_ms;
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> DlqEntry {
        let event = Event { id: "e1".into(), kind: "t".into(), source: "s".into(), timestamp: 1, data: "{}".into() };
        DlqEntry {
            dlq_id: "7".into(),
            event,
            error: "sink `hook` (http): the endpoint answered 400".into(),
            error_kind: ErrorKind::Sink,
            failed_at: FailedAt::Sink { sink: "hook".into() },
            attempts: 1,
            first_failed_at: 10,
            last_failed_at: 20,
        }
    }

    #[test]
    fn a_refused_replay_says_why_once_and_keeps_the_first_error() {
        let once = replay_refused_entry(failure(), "hook", 30);
        assert_eq!(once.error, "sink `hook` no longer exists in the pipeline's spec: replay refused (the delivery had failed with: sink `hook` (http): the endpoint answered 400)");
        assert_eq!((once.first_failed_at, once.last_failed_at, once.error_kind), (10, 30, ErrorKind::Sink));
        let twice = replay_refused_entry(once.clone(), "hook", 40);
        assert_eq!(twice.error, once.error, "not wrapped again");
        let removed = removed_sink_entry(failure().event, "hook", 50);
        assert!(removed.error.starts_with("sink `hook` no longer exists") && removed.failed_at == FailedAt::Sink { sink: "hook".into() });
        assert_eq!(replay_refused_entry(removed.clone(), "hook", 60).error, removed.error);
    }
}
