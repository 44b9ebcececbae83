//! What flows through a pipeline, as the API asks for it: ingest into the
//! queue (bounded), the dead letter queue, the outputs and the pipeline's
//! figures.

use std::sync::Arc;

use super::spec::PipelineSpec;
use super::stats::StageStats;
use super::{Engine, EngineError};
use crate::domain::{
    now_ms, Counters, DlqEntry, DlqSelector, EnqueueOptions, EnqueueOutcome, Enqueued, Event, IdempotencyRecord, Page, QueueLimits, QueuedEvent,
    ReplayReport,
};
use super::sinks::SinkGate;
use crate::internal_events::{emit, IngestAnswered, PipelineMetrics, SinkBackpressure};

/// What ingest into one pipeline needs: its bounds and metric handles.
pub struct IngestTarget {
    spec: Arc<PipelineSpec>,
    metrics: Arc<PipelineMetrics>,
    /// Set where the pipeline runs here (its lag watch feeds it).
    sink_gate: Option<Arc<SinkGate>>,
    pipeline: String,
}

impl IngestTarget {
    /// The spec's `max_queue_depth`: events queued and not finished.
    pub fn max_depth(&self) -> u64 {
        self.spec.max_queue_depth
    }

    /// The spec's `max_queue_bytes`.
    pub fn max_bytes(&self) -> u64 {
        self.spec.max_queue_bytes
    }

    /// The spec's `max_future_ms`: how far ahead of the clock an event may be.
    pub fn max_future_ms(&self) -> u64 {
        self.spec.max_future_ms
    }

    /// The spec's `max_sink_lag`.
    pub fn max_sink_lag(&self) -> u64 {
        self.spec.max_sink_lag
    }

    /// The sink whose lag is past the spec's `max_sink_lag` (and that lag),
    /// if any: ingest answers 429 naming it.
    pub fn sink_over_lag(&self) -> Option<(String, u64)> {
        let over = self.sink_gate.as_ref()?.over()?;
        emit(SinkBackpressure { pipeline: &self.pipeline, sink: &over.0 });
        Some(over)
    }
}

/// A pipeline's figures (API.md's `GET /v1/pipelines/{id}/metrics`).
#[derive(Debug, Clone)]
pub struct PipelineReport {
    /// Global counts, from the store.
    pub counters: Counters,
    /// Events finished per second here over the last few seconds.
    pub throughput_per_s: f64,
    /// Per stage, in spec order; latency and fuel as seen by this process.
    pub stages: Vec<StageStats>,
}

impl Engine {
    /// What ingest into pipeline `id` needs to know (404 if there is no
    /// such pipeline): from memory when it runs here, else from the store.
    pub async fn ingest_target(&self, id: &str) -> Result<IngestTarget, EngineError> {
        Ok(match self.running_with_gate(id) {
            Some((p, gate)) => IngestTarget { spec: p.spec.clone(), metrics: p.metrics.clone(), sink_gate: Some(gate), pipeline: id.to_string() },
            None => {
                let spec = self.pipeline_spec(id).await?;
                let metrics = Arc::new(PipelineMetrics::register(id, &spec.stage_names()));
                IngestTarget { spec, metrics, sink_gate: None, pipeline: id.to_string() }
            }
        })
    }

    /// Appends `events` to pipeline `id`'s queue as one entry, durably, if
    /// the queue stays within the spec's `max_queue_depth` and
    /// `max_queue_bytes` (else nothing), counting `rejected` more refused
    /// ones; with the spec's `dedup_window_ms`, events whose id was accepted
    /// within it are dropped (counted as duplicates). With `idempotency`,
    /// its key is looked up first (a stored answer is replayed, another
    /// body's key is refused) and the record is stored in the same step.
    pub async fn enqueue(
        &self,
        id: &str,
        target: &IngestTarget,
        events: &[QueuedEvent],
        rejected: u64,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<EnqueueOutcome, EngineError> {
        let limits = QueueLimits { max_depth: target.max_depth(), max_bytes: target.max_bytes() };
        let options = EnqueueOptions { idempotency, dedup_window_ms: target.spec.dedup_window_ms, now_ms: now_ms() };
        let answer = self.store.enqueue_with(id, events, rejected, limits, &options).await?;
        if let EnqueueOutcome::Ran { enqueued, duplicates } = &answer {
            let accepted = matches!(enqueued, Enqueued::Accepted { .. });
            let (a, r) = if accepted { ((events.len() as u64).saturating_sub(*duplicates), rejected) } else { (0, 0) };
            emit(IngestAnswered { metrics: &target.metrics, accepted: a, rejected: r, refused: !accepted });
        }
        Ok(answer)
    }

    /// A page of pipeline `id`'s DLQ, oldest first.
    pub async fn dlq_page(&self, id: &str, cursor: &str, limit: usize) -> Result<Page<DlqEntry>, EngineError> {
        self.pipeline_spec(id).await?;
        Ok(self.store.dlq_list(id, cursor, limit).await?)
    }

    /// Puts the selected DLQ entries back on the queue.
    pub async fn dlq_replay(&self, id: &str, selector: &DlqSelector) -> Result<ReplayReport, EngineError> {
        self.pipeline_spec(id).await?;
        Ok(self.store.dlq_replay(id, selector).await?)
    }

    /// Deletes the selected DLQ entries; answers how many.
    pub async fn dlq_delete(&self, id: &str, selector: &DlqSelector) -> Result<u64, EngineError> {
        self.pipeline_spec(id).await?;
        Ok(self.store.dlq_delete(id, selector).await?)
    }

    /// A page of the events that left pipeline `id`'s last stage.
    pub async fn output_page(&self, id: &str, cursor: &str, limit: usize) -> Result<Page<Event>, EngineError> {
        self.pipeline_spec(id).await?;
        Ok(self.store.read_output(id, cursor, limit).await?)
    }

    /// Pipeline `id`'s counters and this process's stage figures.
    pub async fn pipeline_report(&self, id: &str) -> Result<PipelineReport, EngineError> {
        let spec = self.pipeline_spec(id).await?;
        let counters = self.store.counters(id).await?;
        Ok(PipelineReport {
            counters,
            throughput_per_s: self.stats.throughput(id),
            stages: self.stats.stages(id, &spec.stage_names()),
        })
    }
}
