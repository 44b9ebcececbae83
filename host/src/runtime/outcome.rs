//! How each event fared in a stage.

use crate::domain::Event;

/// Why an event failed in a stage, as the runtime sees it: the stage's own
/// answer or the limit that stopped it. The runtime's own vocabulary, so it
/// needs nothing from the layers above; the DLQ's `error_kind` is made from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The stage said "try again".
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
}

impl FailureKind {
    /// The kind's name, as the DLQ, the logs and `sluice plugin test` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Retryable => "retryable",
            FailureKind::Rejected => "rejected",
            FailureKind::Fuel => "fuel",
            FailureKind::Memory => "memory",
            FailureKind::Timeout => "timeout",
            FailureKind::Stack => "stack",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::OutputLimit => "output_limit",
        }
    }
}

/// What a stage's failure is called in a DLQ entry (the names are the same).
impl From<FailureKind> for crate::domain::ErrorKind {
    fn from(kind: FailureKind) -> Self {
        use crate::domain::ErrorKind as Dlq;
        match kind {
            FailureKind::Retryable => Dlq::Retryable,
            FailureKind::Rejected => Dlq::Rejected,
            FailureKind::Fuel => Dlq::Fuel,
            FailureKind::Memory => Dlq::Memory,
            FailureKind::Timeout => Dlq::Timeout,
            FailureKind::Stack => Dlq::Stack,
            FailureKind::Panic => Dlq::Panic,
            FailureKind::Trap => Dlq::Trap,
            FailureKind::OutputLimit => Dlq::OutputLimit,
        }
    }
}

impl std::fmt::Display for FailureKind {
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
    Failed { kind: FailureKind, message: String },
}

/// One input's outcome and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct EventResult {
    pub outcome: Outcome,
    /// Fuel burned on this event (0 when unknown, e.g. a trap during setup).
    pub fuel: u64,
}

impl EventResult {
    pub(crate) fn failed(kind: FailureKind, message: impl Into<String>, fuel: u64) -> Self {
        EventResult { outcome: Outcome::Failed { kind, message: message.into() }, fuel }
    }
}
