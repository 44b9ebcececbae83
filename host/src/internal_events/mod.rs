//! Every log line and metric the host emits, as typed internal events (the
//! way Vector's `src/internal_events` does it): one type per thing that
//! happens, whose [`InternalEvent::emit`] logs it and counts it in one place.
//!
//! Counters and histograms that are hit per batch are registered once per
//! pipeline and stage ([`PipelineMetrics`], when the engine installs a
//! pipeline) so the hot path only adds to handles it already holds.
//!
//! This module sits at the bottom of the crate with `domain`: it takes plain
//! values and imports nothing else from the crate, so every layer (runtime,
//! store, engine, api, cli) may emit through it.

pub mod describe;
mod engine;
mod pipeline;
mod plugin;
mod sink;
mod store;

pub use engine::{
    ApiInternalError, ChainFailed, CloseFenced, CompletionGaveUp, EntriesReclaimed, EntryDeadLettered, PipelineNotStarted, SpikeAlerted, StoreFailed, StoreNotReady,
    WindowApplyWaiting, WindowsClosed,
};
pub use pipeline::{BatchProcessed, IngestAnswered, LatencyFold, PipelineMetrics, StageBatch};
pub use sink::{SinkBackpressure, SinkDeadLettered, SinkDelivered, SinkLagMeasured, SinkRetrying};
pub use store::{BadPaneRowSkipped, CatalogReset, CatalogRestored, StoreNotDurable, TooFewReplicas};
pub use plugin::{CompiledPluginRejected, PluginCacheProblem, PluginLogDropped, PluginLogged, PluginPrinted, PluginRef, StageTrapped};

/// Something that happened inside the host, worth a log line, a metric or both.
pub trait InternalEvent {
    /// Logs and counts the event.
    fn emit(self);
}

/// Emits `event` (reads better at call sites than `event.emit()`).
pub fn emit(event: impl InternalEvent) {
    event.emit();
}
