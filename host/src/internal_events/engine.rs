//! What happens around the stages: pipelines starting, store trouble,
//! reclaimed entries, windows closing, spikes, and errors on our side.

use super::InternalEvent;

/// A stored pipeline could not be started here (bad spec, plugin problem).
pub struct PipelineNotStarted<'a> {
    pub pipeline: &'a str,
    pub error: &'a str,
}

impl InternalEvent for PipelineNotStarted<'_> {
    fn emit(self) {
        tracing::error!(target: "sluice::engine", pipeline = self.pipeline, "pipeline not started: {}", self.error);
        metrics::counter!("sluice_pipeline_start_failures_total", "pipeline" => self.pipeline.to_string()).increment(1);
    }
}

/// A store operation failed (it is retried; nothing is lost).
pub struct StoreFailed<'a> {
    pub operation: &'static str,
    pub pipeline: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for StoreFailed<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::store", operation = self.operation, pipeline = self.pipeline, "store error: {}", self.error);
        metrics::counter!("sluice_store_errors_total", "operation" => self.operation).increment(1);
    }
}

/// Entries a silent worker left pending were taken over.
pub struct EntriesReclaimed<'a> {
    pub pipeline: &'a str,
    pub entries: usize,
}

impl InternalEvent for EntriesReclaimed<'_> {
    fn emit(self) {
        tracing::info!(target: "sluice::engine", pipeline = self.pipeline, entries = self.entries, "reclaimed pending entries");
        metrics::counter!("sluice_reclaimed_entries_total", "pipeline" => self.pipeline.to_string()).increment(self.entries as u64);
    }
}

/// Running a batch through the stages failed outside the sandbox (a bug);
/// the entries stay pending and are reclaimed.
pub struct ChainFailed<'a> {
    pub pipeline: &'a str,
    pub error: &'a str,
}

impl InternalEvent for ChainFailed<'_> {
    fn emit(self) {
        tracing::error!(target: "sluice::engine", pipeline = self.pipeline, "stage chain failed unexpectedly: {}", self.error);
        metrics::counter!("sluice_chain_failures_total", "pipeline" => self.pipeline.to_string()).increment(1);
    }
}

/// A batch could not be completed in the store after every try; its entries
/// stay pending and are reclaimed (and so run again) later.
pub struct CompletionGaveUp<'a> {
    pub pipeline: &'a str,
    pub entries: usize,
    pub tries: u32,
    pub error: &'a str,
}

impl InternalEvent for CompletionGaveUp<'_> {
    fn emit(self) {
        tracing::error!(target: "sluice::engine", pipeline = self.pipeline, entries = self.entries, tries = self.tries,
            "could not complete a batch; its entries stay pending and will be reclaimed: {}", self.error);
        metrics::counter!("sluice_completion_failures_total", "pipeline" => self.pipeline.to_string()).increment(1);
    }
}

/// A worker has waited `rounds` times for the watermark to settle (a closer
/// holding the gate for long, or a watermark moving very fast).
pub struct WindowApplyWaiting<'a> {
    pub pipeline: &'a str,
    pub rounds: u32,
}

impl InternalEvent for WindowApplyWaiting<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::windows", pipeline = self.pipeline, rounds = self.rounds, "window updates waiting for the close gate");
    }
}

/// A closer pass emitted `emitted` window results and finalized `finalized`.
pub struct WindowsClosed<'a> {
    pub pipeline: &'a str,
    pub emitted: usize,
    pub finalized: usize,
}

impl InternalEvent for WindowsClosed<'_> {
    fn emit(self) {
        if self.emitted == 0 && self.finalized == 0 {
            return;
        }
        tracing::debug!(target: "sluice::windows", pipeline = self.pipeline, emitted = self.emitted, finalized = self.finalized, "windows closed");
        let p = self.pipeline.to_string();
        metrics::counter!("sluice_window_results_emitted_total", "pipeline" => p.clone()).increment(self.emitted as u64);
        metrics::counter!("sluice_windows_finalized_total", "pipeline" => p).increment(self.finalized as u64);
    }
}

/// A closer pass outlived its lease and the store refused its commit
/// (nothing written): another closer took the gate, or a window apply
/// revoked the lease that ran out. Worth a warning: passes should take
/// milliseconds, not the lease's seconds.
pub struct CloseFenced<'a> {
    pub pipeline: &'a str,
}

impl InternalEvent for CloseFenced<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::windows", pipeline = self.pipeline,
            "a window closer pass outlived its lease and was fenced: nothing it decided was written");
        metrics::counter!("sluice_close_fenced_total", "pipeline" => self.pipeline.to_string()).increment(1);
    }
}

/// A spike rule fired.
pub struct SpikeAlerted<'a> {
    pub pipeline: &'a str,
    pub window: &'a str,
    pub group: &'a str,
    pub start: i64,
}

impl InternalEvent for SpikeAlerted<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::windows", pipeline = self.pipeline, window = self.window, group = self.group, start = self.start,
            "spike alert");
        metrics::counter!("sluice_spike_alerts_total", "pipeline" => self.pipeline.to_string(), "window" => self.window.to_string())
            .increment(1);
    }
}

/// The store did not answer at start-up; `serve` retries.
pub struct StoreNotReady<'a> {
    pub store: &'a str,
    pub error: &'a str,
}

impl InternalEvent for StoreNotReady<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::store", store = self.store, "store not reachable yet ({}); retrying", self.error);
    }
}

/// An API request failed on our side (500).
pub struct ApiInternalError<'a> {
    pub message: &'a str,
}

impl InternalEvent for ApiInternalError<'_> {
    fn emit(self) {
        tracing::error!(target: "sluice::api", "internal error: {}", self.message);
        metrics::counter!("sluice_api_internal_errors_total").increment(1);
    }
}

/// The store refused an entry's results even on its own: its input events
/// went to the DLQ as `internal`, so the entry cannot be retried forever.
pub struct EntryDeadLettered<'a> {
    pub pipeline: &'a str,
    pub entry: &'a str,
    pub events: usize,
    pub error: &'a str,
}

impl InternalEvent for EntryDeadLettered<'_> {
    fn emit(self) {
        tracing::error!(target: "sluice::engine", pipeline = self.pipeline, entry = self.entry, events = self.events,
            "the store refused this entry's results; its events went to the DLQ as `internal`: {}", self.error);
        metrics::counter!("sluice_entries_dead_lettered_total", "pipeline" => self.pipeline.to_string()).increment(1);
    }
}
