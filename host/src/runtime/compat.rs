//! Transitional: the DLQ's `error_kind`, kept here only so the layers above
//! (store, engine, metrics) compile until `crate::domain::ErrorKind` takes its
//! place. The runtime itself speaks [`FailureKind`]; nothing in `runtime/`
//! uses this type. At the merge: delete this file, move the `From` impl next
//! to `domain::ErrorKind`, and point its users there.

use serde::{Deserialize, Serialize};

use super::outcome::FailureKind;

/// Why an event went to the DLQ: a stage's failure, or `late` for a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Any other trap.
    Trap,
    /// The input produced more events or bytes than the stage's caps.
    OutputLimit,
    /// The event came too late for its window (windows, not stages).
    Late,
}

impl ErrorKind {
    /// The kind's name as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Late => "late",
            ErrorKind::Retryable => FailureKind::Retryable.as_str(),
            ErrorKind::Rejected => FailureKind::Rejected.as_str(),
            ErrorKind::Fuel => FailureKind::Fuel.as_str(),
            ErrorKind::Memory => FailureKind::Memory.as_str(),
            ErrorKind::Timeout => FailureKind::Timeout.as_str(),
            ErrorKind::Stack => FailureKind::Stack.as_str(),
            ErrorKind::Panic => FailureKind::Panic.as_str(),
            ErrorKind::Trap => FailureKind::Trap.as_str(),
            ErrorKind::OutputLimit => FailureKind::OutputLimit.as_str(),
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage's failure as the DLQ records it.
impl From<FailureKind> for ErrorKind {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Retryable => ErrorKind::Retryable,
            FailureKind::Rejected => ErrorKind::Rejected,
            FailureKind::Fuel => ErrorKind::Fuel,
            FailureKind::Memory => ErrorKind::Memory,
            FailureKind::Timeout => ErrorKind::Timeout,
            FailureKind::Stack => ErrorKind::Stack,
            FailureKind::Panic => ErrorKind::Panic,
            FailureKind::Trap => ErrorKind::Trap,
            FailureKind::OutputLimit => ErrorKind::OutputLimit,
        }
    }
}
