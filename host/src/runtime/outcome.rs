//! How each event fared in a stage.

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Why an event failed in a stage: the `error_kind` of a DLQ entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The stage said "try again"; `retryable` in the DLQ once attempts run out.
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
}

impl ErrorKind {
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
        }
    }

    /// Whether this came from a trap (the instance was thrown away).
    pub fn is_trap(self) -> bool {
        !matches!(self, ErrorKind::Retryable | ErrorKind::Rejected | ErrorKind::Late)
    }
}

/// What a stage's failure is called in a DLQ entry (the names are the same).
impl From<ErrorKind> for crate::domain::ErrorKind {
    fn from(kind: ErrorKind) -> Self {
        use crate::domain::ErrorKind as Dlq;
        match kind {
            ErrorKind::Retryable => Dlq::Retryable,
            ErrorKind::Rejected => Dlq::Rejected,
            ErrorKind::Fuel => Dlq::Fuel,
            ErrorKind::Memory => Dlq::Memory,
            ErrorKind::Timeout => Dlq::Timeout,
            ErrorKind::Stack => Dlq::Stack,
            ErrorKind::Panic => Dlq::Panic,
            ErrorKind::Trap => Dlq::Trap,
            ErrorKind::OutputLimit => Dlq::OutputLimit,
            ErrorKind::Late => Dlq::Late,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one input event in one stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Passes on unchanged.
    Keep,
    /// Filtered out.
    Drop,
    /// Replaced by these events (one for a transform, several for a fan-out,
    /// none counts as filtered).
    Emitted(Vec<Event>),
    /// Failed; `message` is the stage's or the trap's, with context.
    Failed { kind: ErrorKind, message: String },
}

/// One input's outcome and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct EventResult {
    pub outcome: Outcome,
    /// Fuel burned on this event (0 when unknown, e.g. a trap during setup).
    pub fuel: u64,
}

impl EventResult {
    pub(crate) fn failed(kind: ErrorKind, message: impl Into<String>, fuel: u64) -> Self {
        EventResult { outcome: Outcome::Failed { kind, message: message.into() }, fuel }
    }
}
