//! A pipeline's sinks in this process: the supervisor that keeps one
//! runner per sink of the current spec (each runner then holds the sink's
//! lease, so one process at a time delivers it), the lag watch that feeds
//! ingest's `max_sink_lag` check and the gauges, and `GET …/sinks`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::lifecycle::Shared;
use super::{Engine, EngineError};
use crate::domain::{now_ms, SinkLag, SinkRecord, SinkSource};
use crate::internal_events::{emit, SinkLagMeasured, StoreFailed};
use crate::sinks::runner::{self, RunnerContext};
use crate::sinks::spec::SinkSpec;
use crate::store::{Store, StoreResult};

/// How often the supervisor compares runners with the spec.
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);
/// How often each sink's lag is measured (what ingest's check reads).
const LAG_EVERY: Duration = Duration::from_millis(200);
/// A window sink's lag is counted up to this many results.
const WINDOW_LAG_COUNTED: usize = 10_000;

/// The sink whose lag is past `max_sink_lag`, as last measured here:
/// ingest refuses with 429 while there is one.
#[derive(Default)]
pub struct SinkGate {
    over: Mutex<Option<(String, u64)>>,
}

impl SinkGate {
    /// The sink (and its lag) holding ingest back, if any.
    pub fn over(&self) -> Option<(String, u64)> {
        self.over.lock().clone()
    }
}

/// One sink as `GET …/sinks` answers it.
#[derive(Debug, Clone)]
pub struct SinkStatus {
    /// The spec's sink.
    pub spec: Arc<SinkSpec>,
    /// Its stored record (defaults before its runner first opened it).
    pub record: SinkRecord,
    /// What waits.
    pub lag: SinkLag,
}

/// A sink's lag in the store.
async fn measure(store: &dyn Store, pipeline: &str, spec: &SinkSpec, record: &SinkRecord) -> StoreResult<SinkLag> {
    match spec.source() {
        SinkSource::Output => store.output_lag(pipeline, &record.position).await,
        SinkSource::Window(window) => store.window_lag(pipeline, &window, &record.position, WINDOW_LAG_COUNTED).await,
    }
}

impl Engine {
    /// Every sink of pipeline `id` with its record and lag (404 for no pipeline).
    pub async fn sink_statuses(&self, id: &str) -> Result<Vec<SinkStatus>, EngineError> {
        let spec = self.pipeline_spec(id).await?;
        Ok(statuses(self.store.as_ref(), id, &spec.sinks).await?)
    }
}

async fn statuses(store: &dyn Store, id: &str, sinks: &[SinkSpec]) -> StoreResult<Vec<SinkStatus>> {
    if sinks.is_empty() {
        return Ok(Vec::new());
    }
    let records: HashMap<String, SinkRecord> = store.sink_records(id).await?.into_iter().collect();
    let mut out = Vec::with_capacity(sinks.len());
    for spec in sinks {
        let (record, lag) = match records.get(&spec.name) {
            Some(record) => (record.clone(), measure(store, id, spec, record).await?),
            // Not opened yet: nothing was read, nothing is known to wait.
            None => (SinkRecord { from: spec.from.clone(), ..Default::default() }, SinkLag::default()),
        };
        out.push(SinkStatus { spec: Arc::new(spec.clone()), record, lag });
    }
    Ok(out)
}

/// Measures every sink's lag every [`LAG_EVERY`] and sets the gate (in
/// every process that serves the pipeline, so an API-only process pushes
/// back too) until stopped.
pub(super) async fn watch_lag(shared: Shared, gate: Arc<SinkGate>, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, shared.id.as_str());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LAG_EVERY) => {}
            _ = stop.changed() => break,
        }
        let pipeline = shared.pipeline();
        let spec = &pipeline.spec;
        match statuses(engine.store.as_ref(), id, &spec.sinks).await {
            Ok(list) => {
                let now = now_ms();
                let mut over = None;
                for status in &list {
                    let age = status.lag.oldest_at.map_or(0, |at| now.saturating_sub(at).max(0) as u64);
                    emit(SinkLagMeasured { pipeline: id, sink: &status.spec.name, events: status.lag.events, oldest_age_ms: age });
                    if status.lag.events > spec.max_sink_lag && over.is_none() {
                        over = Some((status.spec.name.clone(), status.lag.events));
                    }
                }
                *gate.over.lock() = over;
            }
            Err(e) => emit(StoreFailed { operation: "sink_lag", pipeline: id, error: &e }),
        }
    }
}

/// A runner of this process.
struct Running {
    spec: Arc<SinkSpec>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keeps one runner per sink of the current spec: starts new ones,
/// restarts changed ones, stops (and forgets in the store) removed ones.
/// Every process running the sink forgets it once its own runner stopped,
/// so the last forget comes after the last runner, whatever their order.
pub(super) async fn supervise(shared: Shared, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, shared.id.as_str());
    let holder = format!("{}-sinks", engine.config.consumer_prefix);
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let pipeline = shared.pipeline();
        let wanted: HashMap<&str, &SinkSpec> = pipeline.spec.sinks.iter().map(|s| (s.name.as_str(), s)).collect();
        let stale: Vec<String> =
            running.iter().filter(|(name, r)| wanted.get(name.as_str()).is_none_or(|spec| **spec != *r.spec)).map(|(name, _)| name.clone()).collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                let _ = r.stop.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
            }
            if !wanted.contains_key(name.as_str()) {
                // What waits on its redelivery list goes back to the DLQ.
                if let Err(e) = engine.store.sink_forget(id, &name, now_ms()).await {
                    emit(StoreFailed { operation: "sink_forget", pipeline: id, error: &e });
                }
            }
        }
        for (name, spec) in wanted {
            if running.contains_key(name) {
                continue;
            }
            let spec = Arc::new(spec.clone());
            let (tx, rx) = watch::channel(false);
            let ctx = RunnerContext { store: engine.store.clone(), pipeline: id.to_string(), spec: spec.clone(), holder: holder.clone() };
            running.insert(name.to_string(), Running { spec, stop: tx, task: tokio::spawn(runner::run(ctx, rx)) });
        }
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, r) in running {
        let _ = r.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
    }
}
