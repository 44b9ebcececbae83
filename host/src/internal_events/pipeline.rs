//! The per-pipeline counters and histograms of the hot paths (ingest and
//! batches), registered once when a pipeline is installed.

use metrics::{Counter, Histogram};

use super::InternalEvent;

/// Handles of one pipeline's metrics (labels `pipeline` and, per stage, `stage`).
pub struct PipelineMetrics {
    processed: Counter,
    emitted: Counter,
    dead_lettered: Counter,
    ingest_accepted: Counter,
    ingest_rejected: Counter,
    ingest_backpressure: Counter,
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
            ingest_backpressure: metrics::counter!("sluice_ingest_backpressure_total", "pipeline" => p),
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
}

impl InternalEvent for BatchProcessed<'_> {
    fn emit(self) {
        let m = self.metrics;
        m.processed.increment(self.processed);
        m.emitted.increment(self.emitted);
        m.dead_lettered.increment(self.dead);
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
