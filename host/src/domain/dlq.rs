//! The dead letter queue as every layer sees it: what failed for good,
//! where, and why, and how to pick entries to replay or delete.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::event::Event;
use super::queue::ReplayStart;

/// Why an event failed for good: the `error_kind` of a DLQ entry (API.md).
/// The stored and answered text is [`ErrorKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The stage said "try again" and attempts ran out.
    Retryable,
    /// The stage rejected the event for good.
    Rejected,
    /// Out of fuel.
    Fuel,
    /// The memory cap was hit.
    Memory,
    /// The wall-clock deadline passed.
    Timeout,
    /// The wasm stack overflowed.
    Stack,
    /// The guest panicked.
    Panic,
    /// Any other trap (e.g. `unreachable`, a bad memory access, a broken contract).
    Trap,
    /// The input produced more events or bytes than the stage's caps.
    OutputLimit,
    /// The event came too late for its window (windows, not stages).
    Late,
    /// The host could not complete the event's entry (a completion that kept
    /// failing), not the stage's fault.
    Internal,
    /// A sink could not deliver the event (a permanent refusal, or retries
    /// ran out): `stage` is `sink:<name>`.
    Sink,
}

impl ErrorKind {
    /// The text stored and answered in `error_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Fuel => "fuel",
            ErrorKind::Memory => "memory",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Stack => "stack",
            ErrorKind::Panic => "panic",
            ErrorKind::Trap => "trap",
            ErrorKind::OutputLimit => "output_limit",
            ErrorKind::Late => "late",
            ErrorKind::Internal => "internal",
            ErrorKind::Sink => "sink",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event failed: a stage (with the plugin that ran it) or a window
/// (a late event). Stored and answered flat, as `stage`, `plugin` and
/// `plugin_version`; a window reads `"stage": "window:<name>"`, `"plugin": ""`,
/// `"plugin_version": 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedAt {
    /// In a stage of the pipeline.
    Stage {
        /// The stage's name in the spec.
        stage: String,
        /// The plugin (and version) it ran, as the spec named it then.
        plugin: String,
        /// See `plugin`.
        plugin_version: u32,
    },
    /// At a window the event came too late for.
    Window {
        /// The window's name in the spec.
        window: String,
    },
    /// At a sink that could not deliver it (stored as `sink:<name>`).
    Sink {
        /// The sink's name in the spec.
        sink: String,
    },
}

impl FailedAt {
    /// Reads the flat stored fields back (a `window:` stage is a window).
    pub fn from_fields(stage: String, plugin: String, plugin_version: u32) -> FailedAt {
        match ReplayStart::parse(&stage) {
            ReplayStart::Window(window) => FailedAt::Window { window },
            ReplayStart::Sink(sink) => FailedAt::Sink { sink },
            ReplayStart::Stage(stage) => FailedAt::Stage { stage, plugin, plugin_version },
        }
    }

    /// Where a replay of the entry starts: the failed stage, the window, or
    /// the sink.
    pub fn replay_start(&self) -> ReplayStart {
        match self {
            FailedAt::Stage { stage, .. } => ReplayStart::Stage(stage.clone()),
            FailedAt::Window { window } => ReplayStart::Window(window.clone()),
            FailedAt::Sink { sink } => ReplayStart::Sink(sink.clone()),
        }
    }

    /// The stored `stage` field.
    pub fn stage_field(&self) -> String {
        self.replay_start().to_stored()
    }

    /// The stored `plugin` field ("" for a window).
    pub fn plugin(&self) -> &str {
        match self {
            FailedAt::Stage { plugin, .. } => plugin,
            FailedAt::Window { .. } | FailedAt::Sink { .. } => "",
        }
    }

    /// The stored `plugin_version` field (0 for a window).
    pub fn plugin_version(&self) -> u32 {
        match self {
            FailedAt::Stage { plugin_version, .. } => *plugin_version,
            FailedAt::Window { .. } | FailedAt::Sink { .. } => 0,
        }
    }
}

/// A failed event with its full context, as API.md's DLQ lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqEntry {
    /// Assigned by the store when the entry is written; ignored on input.
    pub dlq_id: String,
    /// The event as it reached the failing stage.
    pub event: Event,
    /// The stage's (or the host's) message, with context.
    pub error: String,
    /// Why it failed (what an operator filters the DLQ by).
    pub error_kind: ErrorKind,
    /// Where it failed; replaying starts there.
    pub failed_at: FailedAt,
    /// Attempts made at the failing stage.
    pub attempts: u32,
    /// When it first failed at that stage, ms (retries keep the first).
    pub first_failed_at: i64,
    /// When it failed for good, ms.
    pub last_failed_at: i64,
}

/// The stored and answered form of a [`DlqEntry`] (field order included);
/// the API's document describes DLQ entries with this type.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DlqEntry)]
pub struct DlqEntryOut<'a> {
    dlq_id: &'a str,
    /// The event as it reached the failing stage.
    #[schema(value_type = super::event::EventSchema)]
    event: &'a Event,
    error: &'a str,
    error_kind: ErrorKind,
    stage: &'a str,
    plugin: &'a str,
    plugin_version: u32,
    attempts: u32,
    first_failed_at: i64,
    last_failed_at: i64,
}

/// [`DlqEntryOut`] where a type without a lifetime is needed (the OpenAPI document).
pub type DlqEntrySchema = DlqEntryOut<'static>;

#[derive(Deserialize)]
struct DlqEntryIn {
    #[serde(default)]
    dlq_id: String,
    event: Event,
    error: String,
    error_kind: ErrorKind,
    stage: String,
    plugin: String,
    plugin_version: u32,
    attempts: u32,
    first_failed_at: i64,
    last_failed_at: i64,
}

impl Serialize for DlqEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DlqEntryOut {
            dlq_id: &self.dlq_id,
            event: &self.event,
            error: &self.error,
            error_kind: self.error_kind,
            stage: &self.failed_at.stage_field(),
            plugin: self.failed_at.plugin(),
            plugin_version: self.failed_at.plugin_version(),
            attempts: self.attempts,
            first_failed_at: self.first_failed_at,
            last_failed_at: self.last_failed_at,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DlqEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let e = DlqEntryIn::deserialize(deserializer)?;
        Ok(DlqEntry {
            dlq_id: e.dlq_id,
            event: e.event,
            error: e.error,
            error_kind: e.error_kind,
            failed_at: FailedAt::from_fields(e.stage, e.plugin, e.plugin_version),
            attempts: e.attempts,
            first_failed_at: e.first_failed_at,
            last_failed_at: e.last_failed_at,
        })
    }
}

/// Which DLQ entries to replay or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelector {
    /// Every entry there now.
    All,
    /// These ids (repeats count once; unknown ones are reported as failed).
    Ids(Vec<String>),
    /// The oldest `n`.
    Oldest(usize),
}

/// The result of a DLQ replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries put back on the queue (or on their sink's redelivery list).
    pub replayed: u64,
    /// Requested ids that were not in the DLQ, and entries of a sink that
    /// no longer exists (those stay in the DLQ, moved to its end with an
    /// error saying so: see [`super::replay_refused_entry`]).
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(failed_at: FailedAt) -> DlqEntry {
        let event = Event { id: "a".into(), kind: "v".into(), source: "s".into(), timestamp: 3, data: "{}".into() };
        DlqEntry {
            dlq_id: "7".into(),
            event,
            error: "late".into(),
            error_kind: ErrorKind::Late,
            failed_at,
            attempts: 1,
            first_failed_at: 5,
            last_failed_at: 6,
        }
    }

    #[test]
    fn failed_at_is_stored_flat() {
        let late = entry(FailedAt::Window { window: "per-minute".into() });
        let text = serde_json::to_string(&late).unwrap();
        assert_eq!(
            text,
            r#"{"dlq_id":"7","event":{"id":"a","type":"v","source":"s","timestamp":3,"data":{}},"error":"late","error_kind":"late","stage":"window:per-minute","plugin":"","plugin_version":0,"attempts":1,"first_failed_at":5,"last_failed_at":6}"#
        );
        assert_eq!(serde_json::from_str::<DlqEntry>(&text).unwrap(), late);
        assert_eq!(late.failed_at.replay_start(), ReplayStart::Window("per-minute".into()));
        let failed = entry(FailedAt::Stage { stage: "enrich".into(), plugin: "geo".into(), plugin_version: 2 });
        let text = serde_json::to_string(&failed).unwrap();
        assert!(text.contains(r#""stage":"enrich","plugin":"geo","plugin_version":2"#), "{text}");
        assert_eq!(serde_json::from_str::<DlqEntry>(&text).unwrap(), failed);
    }
}
