//! What happens at sinks: batches delivered, retried, given up on (to the
//! DLQ), and each sink's lag as last measured.

use super::InternalEvent;

/// A sink delivered a batch (and its position moved past it).
pub struct SinkDelivered<'a> {
    pub pipeline: &'a str,
    pub sink: &'a str,
    pub events: u64,
}

impl InternalEvent for SinkDelivered<'_> {
    fn emit(self) {
        tracing::debug!(target: "sluice::sink", pipeline = self.pipeline, sink = self.sink, events = self.events, "batch delivered");
        metrics::counter!("sluice_sink_delivered_total", "pipeline" => self.pipeline.to_string(), "sink" => self.sink.to_string())
            .increment(self.events);
    }
}

/// A delivery failed and will be tried again (or, at `attempt` 0, the sink
/// could not be set up or its position read). The error never holds a
/// secret: kinds strip URLs and credentials from it.
pub struct SinkRetrying<'a> {
    pub pipeline: &'a str,
    pub sink: &'a str,
    pub attempt: u32,
    pub error: &'a str,
}

impl InternalEvent for SinkRetrying<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::sink", pipeline = self.pipeline, sink = self.sink, attempt = self.attempt, "sink delivery failed, retrying: {}", self.error);
        metrics::counter!("sluice_sink_retries_total", "pipeline" => self.pipeline.to_string(), "sink" => self.sink.to_string()).increment(1);
    }
}

/// A sink gave up on a batch (refused for good, or retries ran out): its
/// events went to the DLQ (`error_kind: "sink"`).
pub struct SinkDeadLettered<'a> {
    pub pipeline: &'a str,
    pub sink: &'a str,
    pub events: u64,
}

impl InternalEvent for SinkDeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(target: "sluice::sink", pipeline = self.pipeline, sink = self.sink, events = self.events, "sink gave up on a batch: its events went to the DLQ");
        metrics::counter!("sluice_sink_failed_total", "pipeline" => self.pipeline.to_string(), "sink" => self.sink.to_string()).increment(self.events);
    }
}

/// A sink's lag as just measured (events waiting, age of the oldest).
pub struct SinkLagMeasured<'a> {
    pub pipeline: &'a str,
    pub sink: &'a str,
    pub events: u64,
    pub oldest_age_ms: u64,
}

impl InternalEvent for SinkLagMeasured<'_> {
    fn emit(self) {
        let labels = [("pipeline", self.pipeline.to_string()), ("sink", self.sink.to_string())];
        metrics::gauge!("sluice_sink_lag_events", &labels).set(self.events as f64);
        metrics::gauge!("sluice_sink_oldest_undelivered_age_seconds", &labels).set(self.oldest_age_ms as f64 / 1000.0);
    }
}

/// Ingest was refused because a sink's lag passed `max_sink_lag`.
pub struct SinkBackpressure<'a> {
    pub pipeline: &'a str,
    pub sink: &'a str,
}

impl InternalEvent for SinkBackpressure<'_> {
    fn emit(self) {
        metrics::counter!("sluice_sink_backpressure_total", "pipeline" => self.pipeline.to_string(), "sink" => self.sink.to_string()).increment(1);
    }
}
