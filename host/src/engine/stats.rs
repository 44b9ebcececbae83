//! Process-local figures behind `GET /v1/pipelines/{id}/metrics`: per-stage
//! call latency percentiles and fuel, and the recent throughput. (Counts that
//! must agree across processes live in the store.)

use std::collections::HashMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

use super::chain::StageTally;

/// One stage's figures, as the metrics endpoint shows them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StageStats {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub retries: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub fuel_per_event: u64,
}

struct StageAcc {
    calls: u64,
    errors: u64,
    retries: u64,
    events: u64,
    fuel: u64,
    latency_us: Histogram<u64>,
}

impl StageAcc {
    fn new() -> Self {
        StageAcc { calls: 0, errors: 0, retries: 0, events: 0, fuel: 0, latency_us: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds") }
    }
}

#[derive(Default)]
struct PipelineAcc {
    stages: HashMap<String, StageAcc>,
    /// (when, events processed) samples of the last few seconds.
    recent: Vec<(Instant, u64)>,
}

/// All pipelines' process-local stats.
#[derive(Default)]
pub struct Stats {
    pipelines: Mutex<HashMap<String, PipelineAcc>>,
}

const THROUGHPUT_WINDOW_S: f64 = 5.0;

impl Stats {
    pub fn record(&self, pipeline: &str, stage_names: &[String], tallies: &[StageTally], processed: u64) {
        let mut all = self.pipelines.lock();
        let acc = all.entry(pipeline.to_string()).or_default();
        for (name, tally) in stage_names.iter().zip(tallies) {
            let stage = acc.stages.entry(name.clone()).or_insert_with(StageAcc::new);
            stage.calls += tally.calls;
            stage.errors += tally.errors;
            stage.retries += tally.retries;
            stage.events += tally.events;
            stage.fuel += tally.fuel;
            for us in &tally.call_us {
                stage.latency_us.saturating_record((*us).max(1));
            }
        }
        let now = Instant::now();
        acc.recent.push((now, processed));
        acc.recent.retain(|(t, _)| now.duration_since(*t).as_secs_f64() <= THROUGHPUT_WINDOW_S);
    }

    /// Events per second processed here over the last few seconds.
    pub fn throughput(&self, pipeline: &str) -> f64 {
        let mut all = self.pipelines.lock();
        let Some(acc) = all.get_mut(pipeline) else { return 0.0 };
        let now = Instant::now();
        acc.recent.retain(|(t, _)| now.duration_since(*t).as_secs_f64() <= THROUGHPUT_WINDOW_S);
        let total: u64 = acc.recent.iter().map(|(_, n)| n).sum();
        total as f64 / THROUGHPUT_WINDOW_S
    }

    /// Figures for the stages named, in that order (zeros for unseen ones).
    pub fn stages(&self, pipeline: &str, names: &[String]) -> Vec<StageStats> {
        let all = self.pipelines.lock();
        names
            .iter()
            .map(|name| match all.get(pipeline).and_then(|p| p.stages.get(name)) {
                Some(s) => StageStats {
                    name: name.clone(),
                    calls: s.calls,
                    errors: s.errors,
                    retries: s.retries,
                    p50_us: s.latency_us.value_at_quantile(0.5),
                    p99_us: s.latency_us.value_at_quantile(0.99),
                    fuel_per_event: if s.events == 0 { 0 } else { s.fuel / s.events },
                },
                None => StageStats { name: name.clone(), calls: 0, errors: 0, retries: 0, p50_us: 0, p99_us: 0, fuel_per_event: 0 },
            })
            .collect()
    }

    pub fn forget(&self, pipeline: &str) {
        self.pipelines.lock().remove(pipeline);
    }
}
