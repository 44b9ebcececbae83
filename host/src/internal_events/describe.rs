//! The `# HELP` text of every metric family (API.md v1.1: `/metrics` passes
//! `promtool check metrics`, which wants HELP on each), and the histogram
//! buckets, in one table so a new metric is described where the others are.

/// Bucket upper bounds (seconds) of `sluice_stage_call_seconds`: one
/// `process` call of a stage on one batch, 100 µs to 10 s.
pub const STAGE_CALL_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Bucket upper bounds (seconds) of `sluice_event_to_output_seconds`, 1 ms to 5 min.
pub const EVENT_TO_OUTPUT_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The histogram families and their buckets.
pub const HISTOGRAMS: &[(&str, &[f64])] =
    &[("sluice_stage_call_seconds", STAGE_CALL_BUCKETS), ("sluice_event_to_output_seconds", EVENT_TO_OUTPUT_BUCKETS)];

/// What a family is, for [`METRICS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family the host emits: name, kind, help text.
pub const METRICS: &[(&str, Family, &str)] = &[
    ("sluice_ingest_accepted_total", Family::Counter, "Events accepted by ingest (queued), per pipeline."),
    ("sluice_ingest_rejected_total", Family::Counter, "Events rejected one by one by ingest (the errors[] of an answer), per pipeline."),
    ("sluice_ingest_backpressure_total", Family::Counter, "Ingest requests refused with 429 (queue depth, queued bytes or sink lag), per pipeline."),
    ("sluice_events_processed_total", Family::Counter, "Events that finished the stages (emitted, filtered out or dead-lettered), per pipeline."),
    ("sluice_events_emitted_total", Family::Counter, "Events that left the last stage into the output, per pipeline."),
    ("sluice_events_dead_lettered_total", Family::Counter, "Events that went to the DLQ from the stages or windows, per pipeline."),
    ("sluice_event_to_output_seconds", Family::Histogram, "Seconds from an output event's timestamp (event time) to the commit of the batch that emitted it, per pipeline."),
    ("sluice_stage_calls_total", Family::Counter, "Calls of a stage's process function, per pipeline and stage."),
    ("sluice_stage_events_total", Family::Counter, "Events given to a stage, per pipeline and stage."),
    ("sluice_stage_errors_total", Family::Counter, "Events a stage failed on (each try), per pipeline and stage."),
    ("sluice_stage_retries_total", Family::Counter, "Events scheduled for another try at a stage, per pipeline and stage."),
    ("sluice_stage_fuel_total", Family::Counter, "WASM fuel a stage consumed, per pipeline and stage."),
    ("sluice_stage_call_seconds", Family::Histogram, "Seconds of one call of a stage's process function on a batch, per pipeline and stage."),
    ("sluice_sink_delivered_total", Family::Counter, "Events a sink delivered, per pipeline and sink."),
    ("sluice_sink_failed_total", Family::Counter, "Events a sink gave up on (to the DLQ), per pipeline and sink."),
    ("sluice_sink_retries_total", Family::Counter, "Sink deliveries that failed and are tried again, per pipeline and sink."),
    ("sluice_sink_backpressure_total", Family::Counter, "Ingest requests refused because a sink's lag passed max_sink_lag, per pipeline and sink."),
    ("sluice_sink_lag_events", Family::Gauge, "Events waiting for a sink, as last measured, per pipeline and sink."),
    ("sluice_sink_oldest_undelivered_age_seconds", Family::Gauge, "Age of the oldest event (or window result) waiting for a sink, as last measured, per pipeline and sink."),
    ("sluice_window_results_emitted_total", Family::Counter, "Window results emitted (closed windows and re-emits), per pipeline."),
    ("sluice_windows_finalized_total", Family::Counter, "Windows made final (result stored, panes dropped), per pipeline."),
    ("sluice_spike_alerts_total", Family::Counter, "Spike alerts raised, per pipeline and window."),
    ("sluice_close_fenced_total", Family::Counter, "Window closer passes fenced for outliving their lease, per pipeline."),
    ("sluice_pipeline_start_failures_total", Family::Counter, "Stored pipelines this process could not start, per pipeline."),
    ("sluice_reclaimed_entries_total", Family::Counter, "Pending queue entries taken over from a silent worker, per pipeline."),
    ("sluice_chain_failures_total", Family::Counter, "Batches whose stage chain failed outside the sandbox (entries stay pending), per pipeline."),
    ("sluice_completion_failures_total", Family::Counter, "Batches that could not be completed in the store after every try, per pipeline."),
    ("sluice_entries_dead_lettered_total", Family::Counter, "Queue entries sent whole to the DLQ because the store refused their results, per pipeline."),
    ("sluice_store_errors_total", Family::Counter, "Store operations that failed (and are retried), per operation."),
    ("sluice_store_bad_pane_rows_total", Family::Counter, "Stored window pane rows skipped because they could not be read."),
    ("sluice_store_resets_total", Family::Counter, "Times the store's catalog was found gone under a running process."),
    ("sluice_api_internal_errors_total", Family::Counter, "API requests answered 500."),
    ("sluice_compiled_plugin_rejected_total", Family::Counter, "Cached compiled plugins refused (recompiled from the WASM)."),
    ("sluice_plugin_log_lines_dropped_total", Family::Counter, "Plugin log lines dropped over the per-call limit."),
];

/// Registers the help text of every family with the installed recorder.
pub fn describe_metrics() {
    for &(name, family, help) in METRICS {
        match family {
            Family::Counter => metrics::describe_counter!(name, help),
            Family::Gauge => metrics::describe_gauge!(name, help),
            Family::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Grafana dashboard (deploy/grafana/sluice.json) only queries
    /// families this table describes, so a renamed metric breaks this test,
    /// not a panel in production.
    #[test]
    fn the_grafana_dashboard_uses_described_families() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/sluice.json");
        let text = std::fs::read_to_string(&path).expect("the dashboard file");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let mut used = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("an expression");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("sluice_")) {
                    let family = word.strip_suffix("_bucket").unwrap_or(word);
                    let described = METRICS.iter().find(|(name, ..)| *name == family);
                    assert!(described.is_some(), "the dashboard queries {word}, which no family is");
                    if word.ends_with("_bucket") {
                        assert_eq!(described.map(|d| d.1), Some(Family::Histogram), "{word}");
                    }
                    used += 1;
                }
            }
        }
        assert!(used >= 10, "{used}");
    }

    #[test]
    fn names_are_unique_and_counters_end_in_total() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        for (name, family, help) in METRICS {
            assert_eq!(*family == Family::Counter, name.ends_with("_total"), "{name}");
            assert!(!help.is_empty());
        }
        for (name, _) in HISTOGRAMS {
            assert!(METRICS.iter().any(|m| m.0 == *name && m.1 == Family::Histogram), "{name}");
        }
    }
}
