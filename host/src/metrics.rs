//! Every log line and metric the host emits, from one typed place.

use crate::runtime::{Attribution, ErrorKind};

/// A `host.log` line from a plugin.
pub fn plugin_log(who: &Attribution, level: u8, message: &str, fields: &str) {
    let (pipeline, stage, plugin, version) = (&who.pipeline, &who.stage, &who.plugin, who.plugin_version);
    match level {
        0 => tracing::trace!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        1 => tracing::debug!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        2 => tracing::info!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        3 => tracing::warn!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
        _ => tracing::error!(target: "sluice::plugin", pipeline, stage, plugin, version, fields, "{message}"),
    }
}

/// What a plugin printed to stdout/stderr during one call (capped).
pub fn plugin_output(who: &Attribution, stream: &str, text: &str, dropped_bytes: usize) {
    tracing::info!(target: "sluice::plugin", pipeline = %who.pipeline, stage = %who.stage, plugin = %who.plugin,
        version = who.plugin_version, stream, dropped_bytes, "{}", text.trim_end());
}

/// A plugin wrote more log lines in one call than allowed.
pub fn plugin_log_dropped(who: &Attribution, dropped: u32) {
    tracing::warn!(target: "sluice::plugin", pipeline = %who.pipeline, stage = %who.stage, plugin = %who.plugin,
        dropped, "plugin log lines dropped (over the per-call cap)");
}

/// A stage call trapped on an event; the instance was replaced.
pub fn stage_trap(who: &Attribution, event_id: &str, kind: ErrorKind, message: &str) {
    tracing::warn!(target: "sluice::runtime", pipeline = %who.pipeline, stage = %who.stage, plugin = %who.plugin,
        version = who.plugin_version, event_id, kind = kind.as_str(), "stage trapped: {message}");
}

/// A stored pipeline could not be started here (bad spec, plugin problem).
pub fn pipeline_unavailable(pipeline: &str, error: &str) {
    tracing::error!(target: "sluice::engine", pipeline, "pipeline not started: {error}");
    metrics::counter!("sluice_pipeline_start_failures_total", "pipeline" => pipeline.to_string()).increment(1);
}

/// A store operation failed (it is retried; nothing is lost).
pub fn store_error(operation: &'static str, pipeline: &str, error: &crate::store::StoreError) {
    tracing::warn!(target: "sluice::store", operation, pipeline, "store error: {error}");
    metrics::counter!("sluice_store_errors_total", "operation" => operation).increment(1);
}

/// Entries a silent worker left pending were taken over.
pub fn reclaimed(pipeline: &str, entries: usize) {
    tracing::info!(target: "sluice::engine", pipeline, entries, "reclaimed pending entries");
    metrics::counter!("sluice_reclaimed_entries_total", "pipeline" => pipeline.to_string()).increment(entries as u64);
}

/// A batch went through the stages and was completed in the store.
pub fn batch_done(pipeline: &str, stages: &[String], tallies: &[crate::engine::chain::StageTally], processed: u64, emitted: u64, dead: u64) {
    let p = pipeline.to_string();
    metrics::counter!("sluice_events_processed_total", "pipeline" => p.clone()).increment(processed);
    metrics::counter!("sluice_events_emitted_total", "pipeline" => p.clone()).increment(emitted);
    metrics::counter!("sluice_events_dead_lettered_total", "pipeline" => p.clone()).increment(dead);
    for (name, tally) in stages.iter().zip(tallies) {
        let labels = [("pipeline", p.clone()), ("stage", name.clone())];
        metrics::counter!("sluice_stage_calls_total", &labels).increment(tally.calls);
        metrics::counter!("sluice_stage_events_total", &labels).increment(tally.events);
        metrics::counter!("sluice_stage_errors_total", &labels).increment(tally.errors);
        metrics::counter!("sluice_stage_retries_total", &labels).increment(tally.retries);
        metrics::counter!("sluice_stage_fuel_total", &labels).increment(tally.fuel);
        for us in &tally.call_us {
            metrics::histogram!("sluice_stage_call_seconds", &labels).record(*us as f64 / 1e6);
        }
    }
}

/// An ingest request was answered.
pub fn ingest(pipeline: &str, accepted: u64, rejected: u64, refused: bool) {
    let p = pipeline.to_string();
    metrics::counter!("sluice_ingest_accepted_total", "pipeline" => p.clone()).increment(accepted);
    metrics::counter!("sluice_ingest_rejected_total", "pipeline" => p.clone()).increment(rejected);
    if refused {
        metrics::counter!("sluice_ingest_backpressure_total", "pipeline" => p).increment(1);
    }
}

/// An API request failed on our side (500).
pub fn api_internal_error(message: &str) {
    tracing::error!(target: "sluice::api", "internal error: {message}");
}

/// Redis did not answer at start-up; `serve` retries.
pub fn store_not_ready(store: &str, error: &str) {
    tracing::warn!(target: "sluice::store", store, "store not reachable yet ({error}); retrying");
}

/// Running a batch through the stages failed outside the sandbox (a bug);
/// the entries stay pending and are reclaimed.
pub fn chain_failed(pipeline: &str, error: &str) {
    tracing::error!(target: "sluice::engine", pipeline, "stage chain failed unexpectedly: {error}");
    metrics::counter!("sluice_chain_failures_total", "pipeline" => pipeline.to_string()).increment(1);
}

/// A compiled-plugin cache file could not be used or written (it is only a cache).
pub fn plugin_cache_problem(path: &std::path::Path, what: &str, error: &str) {
    tracing::warn!(target: "sluice::runtime", path = %path.display(), "{what}: {error}");
}

/// A closer pass emitted `emitted` window results and finalized `finalized`.
pub fn windows_closed(pipeline: &str, emitted: usize, finalized: usize) {
    if emitted > 0 || finalized > 0 {
        tracing::debug!(target: "sluice::windows", pipeline, emitted, finalized, "windows closed");
        let p = pipeline.to_string();
        metrics::counter!("sluice_window_results_emitted_total", "pipeline" => p.clone()).increment(emitted as u64);
        metrics::counter!("sluice_windows_finalized_total", "pipeline" => p).increment(finalized as u64);
    }
}

/// A spike rule fired.
pub fn spike_alert(pipeline: &str, window: &str, group: &str, start: i64) {
    tracing::warn!(target: "sluice::windows", pipeline, window, group, start, "spike alert");
    metrics::counter!("sluice_spike_alerts_total", "pipeline" => pipeline.to_string(), "window" => window.to_string()).increment(1);
}

/// A worker has waited `rounds` times for the watermark to settle (a closer
/// holding the gate for long, or a watermark moving very fast).
pub fn window_apply_waiting(pipeline: &str, rounds: u32) {
    tracing::warn!(target: "sluice::windows", pipeline, rounds, "window updates waiting for the close gate");
}
