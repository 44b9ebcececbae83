//! A pipeline's life in this process: the engine starts, picks up specs and
//! tables changed by other processes sharing the store, builds a spec's
//! stages, installs them (starting the pipeline's tasks the first time,
//! swapping the stages afterwards) and stops a deleted pipeline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::chain::ChainStage;
use super::spec::PipelineSpec;
use super::stats::Stats;
use super::sinks::SinkGate;
use super::{closer, maintenance, sinks, worker, Engine, EngineConfig, EngineError, KnownSpec, Pipeline};
use crate::internal_events::{emit, PipelineMetrics, PipelineNotStarted};
use crate::runtime::{MemoryTables, Runtime, StageRunner, StageSetupError, StageSpec};
use crate::store::{Store, StoreError};
use crate::domain::NO_WATERMARK;
use crate::window::WindowSet;

/// A pipeline's running state in this process.
pub(super) struct Running {
    current: Arc<RwLock<Arc<Pipeline>>>,
    /// The sink holding ingest back, as this process's lag watch last saw.
    pub(super) sink_gate: Arc<SinkGate>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a pipeline's tasks share.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) engine: Arc<Engine>,
    pub(super) id: String,
    pub(super) current: Arc<RwLock<Arc<Pipeline>>>,
    /// The watermark this process last saw in the store (workers decide
    /// lateness with it; the store refuses a stale one).
    pub(super) watermark: Arc<AtomicI64>,
    /// Entries whose results the store refused (id → its error): each runs
    /// alone when reclaimed, and goes to the DLQ if refused again.
    pub(super) suspects: Arc<parking_lot::Mutex<HashMap<String, String>>>,
}

impl Shared {
    /// The pipeline as it is now (stages are swapped in place by a new spec).
    pub(super) fn pipeline(&self) -> Arc<Pipeline> {
        self.current.read().clone()
    }
}

impl Engine {
    /// Loads tables and pipelines from the store and starts their workers.
    pub async fn start(store: Arc<dyn Store>, runtime: Arc<Runtime>, config: EngineConfig) -> anyhow::Result<Arc<Engine>> {
        let engine = Arc::new(Engine {
            store,
            runtime,
            tables: Arc::new(MemoryTables::new()),
            stats: Stats::default(),
            config,
            pipelines: RwLock::new(HashMap::new()),
            specs: RwLock::new(HashMap::new()),
            catalog_reset: AtomicBool::new(false),
        });
        engine.sync_tables().await?;
        engine.sync_pipelines().await?;
        let weak = Arc::downgrade(&engine);
        tokio::spawn(async move {
            let (mut pipelines_seen, mut tables_seen) = (None, None);
            loop {
                let Some(engine) = weak.upgrade() else { break };
                let interval = engine.config.sync_interval;
                if engine.catalog_reset() {
                    let _ = engine.check_catalog().await; // notices the catalog is back
                }
                if let Ok(v) = engine.store.tables_version().await {
                    if tables_seen != Some(v) && engine.sync_tables().await.is_ok() {
                        tables_seen = Some(v);
                    }
                }
                if let Ok(v) = engine.store.pipelines_version().await {
                    if pipelines_seen != Some(v) && engine.sync_pipelines().await.is_ok() {
                        pipelines_seen = Some(v);
                    }
                }
                drop(engine);
                tokio::time::sleep(interval).await;
            }
        });
        Ok(engine)
    }

    async fn sync_tables(&self) -> Result<(), StoreError> {
        for (name, entries) in self.store.list_tables().await? {
            self.tables.put(&name, entries.into_iter().collect());
        }
        Ok(())
    }

    /// The spec stored as `json` for `id`, parsed only when the text changed.
    pub(super) fn known_spec(&self, id: &str, json: String) -> Result<Arc<PipelineSpec>, EngineError> {
        if let Some(known) = self.specs.read().get(id).filter(|k| k.json == json) {
            return known.spec.clone().map_err(EngineError::Unreadable);
        }
        let spec = PipelineSpec::parse(json.as_bytes())
            .map(Arc::new)
            .map_err(|e| format!("the stored spec of pipeline `{id}` cannot be read: {e}"));
        self.specs.write().insert(id.to_string(), KnownSpec { json, spec: spec.clone() });
        spec.map_err(EngineError::Unreadable)
    }

    /// Installs specs that changed in the store, stops deleted pipelines;
    /// while the store lost its catalog (see [`super::health`]) it stops
    /// nothing and keeps the last known specs.
    async fn sync_pipelines(self: &Arc<Self>) -> Result<(), StoreError> {
        let stored = self.store.list_pipelines().await?;
        let ids: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
        for (id, json) in stored {
            let running = self.pipelines.read().get(&id).map(|r| r.current.read().spec.clone());
            let unchanged = self.specs.read().get(&id).is_some_and(|k| k.json == json);
            if unchanged && running.is_some() {
                continue;
            }
            if unchanged && self.specs.read().get(&id).is_some_and(|k| k.spec.is_err()) {
                continue; // reported when it was first seen
            }
            match self.known_spec(&id, json) {
                Ok(spec) => match self.build(&id, spec).await {
                    Ok(pipeline) => self.install(pipeline),
                    Err(e) => emit(PipelineNotStarted { pipeline: &id, error: &e.to_string() }),
                },
                Err(e) => emit(PipelineNotStarted { pipeline: &id, error: &e.to_string() }),
            }
        }
        let gone: Vec<String> = self.pipelines.read().keys().filter(|id| !ids.contains(id)).cloned().collect();
        let forgotten = self.specs.read().keys().any(|id| !ids.contains(id));
        if (!gone.is_empty() || forgotten) && !self.check_catalog().await?.catalog_intact {
            return Ok(());
        }
        for id in gone {
            self.stop(&id).await;
        }
        self.specs.write().retain(|id, _| ids.contains(id));
        Ok(())
    }

    /// The running pipeline `id`, if any.
    pub(super) fn running(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.pipelines.read().get(id).map(|r| r.current.read().clone())
    }

    /// The running pipeline `id` with its sink gate, if it runs here.
    pub(super) fn running_with_gate(&self, id: &str) -> Option<(Arc<Pipeline>, Arc<SinkGate>)> {
        self.pipelines.read().get(id).map(|r| (r.current.read().clone(), r.sink_gate.clone()))
    }

    /// Makes the stages of a spec (plugin bytes from the store, compiled by
    /// the runtime, `init` run on the config).
    pub(super) async fn build(&self, id: &str, spec: Arc<PipelineSpec>) -> Result<Pipeline, EngineError> {
        let mut stages = Vec::with_capacity(spec.stages.len());
        for (i, decl) in spec.stages.iter().enumerate() {
            let version = decl.version.ok_or_else(|| EngineError::InvalidSpec(format!("stages[{i}]: version unresolved")))?;
            let bytes = self.store.plugin_bytes(&decl.plugin, version).await?.ok_or_else(|| {
                EngineError::InvalidSpec(format!("stages[{i}]: plugin `{}` version {version} does not exist", decl.plugin))
            })?;
            let runtime = self.runtime.clone();
            let tables = self.tables.clone();
            let stage_spec = StageSpec {
                pipeline: id.to_string(),
                stage: decl.name.clone(),
                plugin_name: decl.plugin.clone(),
                plugin_version: version,
                config: decl.config.to_string(),
                limits: decl.limits.clone(),
            };
            let plugin_name = decl.plugin.clone();
            let runner = tokio::task::spawn_blocking(move || -> Result<StageRunner, String> {
                let plugin = runtime.load(&bytes).map_err(|e| format!("plugin `{plugin_name}` version {version}: {e}"))?;
                StageRunner::new(plugin, stage_spec, tables).map_err(|e| match e {
                    StageSetupError::InitRejected { plugin, message } => format!("plugin `{plugin}` rejected its config: {message}"),
                    other => other.to_string(),
                })
            })
            .await
            .map_err(|e| EngineError::InvalidSpec(format!("stages[{i}]: {e}")))?
            .map_err(|e| EngineError::InvalidSpec(format!("stages[{i}] ({}): {e}", decl.name)))?;
            stages.push(ChainStage {
                name: decl.name.clone(),
                plugin: decl.plugin.clone(),
                plugin_version: version,
                retry: decl.retry.clone(),
                runner: Arc::new(runner),
            });
        }
        let windows = Arc::new(WindowSet::new(spec.windows.clone()));
        let stage_names = spec.stage_names();
        let metrics = Arc::new(PipelineMetrics::register(id, &stage_names));
        Ok(Pipeline { id: id.to_string(), spec, stages: Arc::new(stages), windows, metrics, stage_names })
    }

    /// Swaps a built pipeline in; starts its tasks the first time.
    pub(super) fn install(self: &Arc<Self>, pipeline: Pipeline) {
        let id = pipeline.id.clone();
        let pipeline = Arc::new(pipeline);
        let mut running = self.pipelines.write();
        if let Some(existing) = running.get(&id) {
            // Workers pick the new stages up at their next batch; the queue is untouched.
            *existing.current.write() = pipeline;
            return;
        }
        let current = Arc::new(RwLock::new(pipeline));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let shared = Shared { engine: self.clone(), id: id.clone(), current: current.clone(), watermark: Arc::new(AtomicI64::new(NO_WATERMARK)),
            suspects: Arc::default(),
        };
        // `workers: 0` is an API-only process: no background work at all.
        for n in 0..self.config.workers {
            let consumer = format!("{}-w{n}", self.config.consumer_prefix);
            tasks.push(tokio::spawn(worker::run(shared.clone(), consumer, stopped.clone())));
        }
        let sink_gate = Arc::new(SinkGate::default());
        tasks.push(tokio::spawn(sinks::watch_lag(shared.clone(), sink_gate.clone(), stopped.clone())));
        if self.config.workers > 0 {
            tasks.push(tokio::spawn(maintenance::run(shared.clone(), stopped.clone())));
            tasks.push(tokio::spawn(sinks::supervise(shared.clone(), stopped.clone())));
            tasks.push(tokio::spawn(closer::run(shared, stopped)));
        }
        running.insert(id, Running { current, sink_gate, stop, tasks });
    }

    /// Stops the pipeline's tasks here (they finish their current batch).
    pub(super) async fn stop(&self, id: &str) {
        let running = self.pipelines.write().remove(id);
        if let Some(running) = running {
            let _ = running.stop.send(true);
            for task in running.tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
        }
        self.stats.forget(id);
    }

    /// Stops every pipeline's workers (they finish their current batch).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.pipelines.read().keys().cloned().collect();
        for id in ids {
            self.stop(&id).await;
        }
    }
}
