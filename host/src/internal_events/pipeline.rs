//! The per-pipeline counters and histograms of the hot paths (ingest and
//! batches), registered once when a pipeline is installed.

use metrics::{Counter, Histogram};

use super::describe::EVENT_TO_OUTPUT_BUCKETS;
use super::InternalEvent;

/// Handles of one pipeline's metrics (labels `pipeline` and, per stage, `stage`).
pub struct PipelineMetrics {
    processed: Counter,
    emitted: Counter,
    dead_lettered: Counter,
    ingest_accepted: Counter,
    ingest_rejected: Counter,
    ingest_backpressure: Counter,
    event_to_output: Histogram,
    /// In the order of the spec's stages.
    stages: Vec<StageMetrics>,
}

struct StageMetrics {
    calls: Counter,
    events: Counter,
    errors: Counter,
    retries: Counter,
    fuel: Counter,
    call_seconds: Histogram,
}

impl PipelineMetrics {
    /// Registers the handles for `pipeline` and its stages.
    pub fn register(pipeline: &str, stages: &[String]) -> Self {
        let p = pipeline.to_string();
        let stages = stages
            .iter()
            .map(|stage| {
                let labels = [("pipeline", p.clone()), ("stage", stage.clone())];
                StageMetrics {
                    calls: metrics::counter!("sluice_stage_calls_total", &labels),
                    events: metrics::counter!("sluice_stage_events_total", &labels),
                    errors: metrics::counter!("sluice_stage_errors_total", &labels),
                    retries: metrics::counter!("sluice_stage_retries_total", &labels),
                    fuel: metrics::counter!("sluice_stage_fuel_total", &labels),
                    call_seconds: metrics::histogram!("sluice_stage_call_seconds", &labels),
                }
            })
            .collect();
        PipelineMetrics {
            processed: metrics::counter!("sluice_events_processed_total", "pipeline" => p.clone()),
            emitted: metrics::counter!("sluice_events_emitted_total", "pipeline" => p.clone()),
            dead_lettered: metrics::counter!("sluice_events_dead_lettered_total", "pipeline" => p.clone()),
            ingest_accepted: metrics::counter!("sluice_ingest_accepted_total", "pipeline" => p.clone()),
            ingest_rejected: metrics::counter!("sluice_ingest_rejected_total", "pipeline" => p.clone()),
            ingest_backpressure: metrics::counter!("sluice_ingest_backpressure_total", "pipeline" => p.clone()),
            event_to_output: metrics::histogram!("sluice_event_to_output_seconds", "pipeline" => p),
            stages,
        }
    }
}

/// One stage's figures from one batch, as plain values.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageBatch<'a> {
    pub calls: u64,
    pub events: u64,
    pub errors: u64,
    pub retries: u64,
    pub fuel: u64,
    /// µs of each `process` call.
    pub call_us: &'a [u64],
}

/// A batch went through the stages and was completed in the store.
pub struct BatchProcessed<'a> {
    pub metrics: &'a PipelineMetrics,
    /// Per stage, in the order the metrics were registered with.
    pub stages: &'a [StageBatch<'a>],
    pub processed: u64,
    pub emitted: u64,
    pub dead: u64,
    /// Event-to-output latencies of the emitted events, already folded per
    /// histogram bucket (see [`LatencyFold`]).
    pub latency: &'a LatencyFold,
}

/// A batch's event-to-output latencies folded per bucket of
/// `sluice_event_to_output_seconds`: (events, sum of seconds) per bucket,
/// recorded as one sample per bucket (the bucket's mean, `count` times), so
/// the hot path records a handful of samples per batch, not one per event,
/// and the histogram's counts and sum stay exact.
#[derive(Debug, Clone)]
pub struct LatencyFold {
    per_bucket: Vec<(u64, f64)>,
}

impl Default for LatencyFold {
    fn default() -> Self {
        LatencyFold { per_bucket: vec![(0, 0.0); EVENT_TO_OUTPUT_BUCKETS.len() + 1] }
    }
}

impl LatencyFold {
    /// Adds one event's latency (negative = a timestamp from the future: 0).
    pub fn add(&mut self, seconds: f64) {
        let seconds = seconds.max(0.0);
        let bucket = EVENT_TO_OUTPUT_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(EVENT_TO_OUTPUT_BUCKETS.len());
        let slot = &mut self.per_bucket[bucket];
        slot.0 += 1;
        slot.1 += seconds;
    }

    fn record(&self, histogram: &Histogram) {
        for &(count, sum) in self.per_bucket.iter().filter(|(count, _)| *count > 0) {
            histogram.record_many(sum / count as f64, count as usize);
        }
    }
}

impl InternalEvent for BatchProcessed<'_> {
    fn emit(self) {
        let m = self.metrics;
        m.processed.increment(self.processed);
        m.emitted.increment(self.emitted);
        m.dead_lettered.increment(self.dead);
        self.latency.record(&m.event_to_output);
        for (handles, figures) in m.stages.iter().zip(self.stages) {
            handles.calls.increment(figures.calls);
            handles.events.increment(figures.events);
            handles.errors.increment(figures.errors);
            handles.retries.increment(figures.retries);
            handles.fuel.increment(figures.fuel);
            for us in figures.call_us {
                handles.call_seconds.record(*us as f64 / 1e6);
            }
        }
    }
}

/// An ingest request was answered (`refused`: 429, nothing queued).
pub struct IngestAnswered<'a> {
    pub metrics: &'a PipelineMetrics,
    pub accepted: u64,
    pub rejected: u64,
    pub refused: bool,
}

impl InternalEvent for IngestAnswered<'_> {
    fn emit(self) {
        let m = self.metrics;
        m.ingest_accepted.increment(self.accepted);
        m.ingest_rejected.increment(self.rejected);
        if self.refused {
            m.ingest_backpressure.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_counts_and_sums_per_bucket() {
        let mut fold = LatencyFold::default();
        for s in [0.0005, 0.001, 0.02, 0.03, 400.0, -1.0] {
            fold.add(s);
        }
        // ≤ 1 ms: 0.0005, 0.001 and the clamped -1; ≤ 25 ms: 0.02; ≤ 50 ms: 0.03; past the last: 400.
        assert_eq!(fold.per_bucket[0], (3, 0.0015));
        assert_eq!(fold.per_bucket[4], (1, 0.02));
        assert_eq!(fold.per_bucket[5], (1, 0.03));
        assert_eq!(fold.per_bucket[EVENT_TO_OUTPUT_BUCKETS.len()], (1, 400.0));
        let mean_of_first = fold.per_bucket[0].1 / 3.0;
        assert!(mean_of_first <= EVENT_TO_OUTPUT_BUCKETS[0], "a bucket's mean stays in the bucket");
    }
}
