//! The engine: turns stored pipeline specs into running stages and workers.
//!
//! Workers read queue entries, run them through the stages ([`chain`]) on a
//! blocking thread, and complete them in one atomic store step. A maintenance
//! task per pipeline promotes due retries and reclaims entries a crashed
//! worker (in any process) left pending. A sync task picks up specs and
//! lookup tables changed by other processes sharing the store.

pub mod chain;
pub mod spec;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::runtime::{MemoryTables, Runtime, StageRunner, StageSetupError, StageSpec};
use crate::store::{Delivery, DlqEntry, EntryResult, Store, StoreError, NO_WATERMARK};
use crate::window::closer::{close_pass, CloserConfig};
use crate::window::spike::SpikeWatch;
use crate::window::WindowSet;
use chain::{run_chain, ChainRun, ChainStage};
use spec::PipelineSpec;
use stats::Stats;

/// How the engine runs (per process).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker tasks per pipeline (each runs stages on its own blocking
    /// thread); 0: this process only serves the API.
    pub workers: usize,
    /// Queue entries one worker takes at a time.
    pub read_entries: usize,
    /// An entry pending this long with a silent worker is taken over.
    pub reclaim_idle_ms: u64,
    /// Identifies this process's consumers in the store.
    pub consumer_prefix: String,
    /// How often specs and tables changed elsewhere are picked up.
    pub sync_interval: Duration,
    /// How often the closer moves watermarks and emits closed windows (and
    /// spike rules are checked).
    pub window_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "host".into());
        EngineConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            read_entries: 8,
            reclaim_idle_ms: 30_000,
            consumer_prefix: format!("{host}-{}", std::process::id()),
            sync_interval: Duration::from_millis(500),
            window_tick: Duration::from_millis(200),
        }
    }
}

/// Why a pipeline spec was refused (400 in the API).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pipeline as this process runs it.
pub struct Pipeline {
    pub id: String,
    /// The stored spec, versions resolved.
    pub spec: PipelineSpec,
    stages: Arc<Vec<ChainStage>>,
    pub windows: Arc<WindowSet>,
}

impl Pipeline {
    pub fn stage_names(&self) -> Vec<String> {
        self.spec.stages.iter().map(|s| s.name.clone()).collect()
    }
}

struct Running {
    current: Arc<RwLock<Arc<Pipeline>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The engine of one `sluice serve` process.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub tables: Arc<MemoryTables>,
    pub stats: Arc<Stats>,
    config: EngineConfig,
    pipelines: RwLock<HashMap<String, Running>>,
    /// Spec JSON last installed per pipeline (to notice changes made elsewhere).
    installed: RwLock<HashMap<String, String>>,
}

impl Engine {
    /// Loads tables and pipelines from the store and starts their workers.
    pub async fn start(store: Arc<dyn Store>, runtime: Arc<Runtime>, config: EngineConfig) -> anyhow::Result<Arc<Engine>> {
        let engine = Arc::new(Engine {
            store,
            runtime,
            tables: Arc::new(MemoryTables::new()),
            stats: Arc::new(Stats::default()),
            config,
            pipelines: RwLock::new(HashMap::new()),
            installed: RwLock::new(HashMap::new()),
        });
        engine.sync_tables().await?;
        engine.sync_pipelines().await?;
        let weak = Arc::downgrade(&engine);
        tokio::spawn(async move {
            let (mut pipelines_seen, mut tables_seen) = (None, None);
            loop {
                let Some(engine) = weak.upgrade() else { break };
                let interval = engine.config.sync_interval;
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

    /// Installs specs that changed in the store, stops deleted pipelines.
    async fn sync_pipelines(self: &Arc<Self>) -> Result<(), StoreError> {
        let stored = self.store.list_pipelines().await?;
        let ids: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
        for (id, spec_json) in stored {
            if self.installed.read().get(&id) == Some(&spec_json) {
                continue;
            }
            match PipelineSpec::parse(spec_json.as_bytes()) {
                Ok(spec) => match self.build(&id, spec).await {
                    Ok(pipeline) => self.install(pipeline, spec_json),
                    Err(e) => crate::metrics::pipeline_unavailable(&id, &e.to_string()),
                },
                Err(e) => crate::metrics::pipeline_unavailable(&id, &e),
            }
        }
        let gone: Vec<String> = self.pipelines.read().keys().filter(|id| !ids.contains(id)).cloned().collect();
        for id in gone {
            self.stop(&id).await;
        }
        Ok(())
    }

    /// The running pipeline `id`, if any.
    pub fn pipeline(&self, id: &str) -> Option<Arc<Pipeline>> {
        self.pipelines.read().get(id).map(|r| r.current.read().clone())
    }

    /// Validates `body`, resolves plugin versions, initialises every stage
    /// (a plugin rejecting its config refuses the spec), stores it and swaps
    /// it in. Answers whether it was created (vs replaced) and the stored spec.
    pub async fn put_pipeline(self: &Arc<Self>, id: &str, body: &[u8]) -> Result<(bool, PipelineSpec), SpecError> {
        let mut spec = PipelineSpec::parse(body).map_err(SpecError::Invalid)?;
        let plugins = self.store.list_plugins().await?;
        for (i, stage) in spec.stages.iter_mut().enumerate() {
            let versions: Vec<u32> = plugins.iter().filter(|p| p.name == stage.plugin).map(|p| p.version).collect();
            match stage.version {
                Some(v) if versions.contains(&v) => {}
                Some(v) => {
                    return Err(SpecError::Invalid(format!("stages[{i}]: plugin `{}` has no version {v}", stage.plugin)));
                }
                None => {
                    let latest = versions.iter().max().ok_or_else(|| {
                        SpecError::Invalid(format!("stages[{i}]: unknown plugin `{}` (upload it with PUT /v1/plugins/{})", stage.plugin, stage.plugin))
                    })?;
                    stage.version = Some(*latest);
                }
            }
        }
        if let Some(stored) = self.store.get_pipeline(id).await? {
            if let Ok(stored) = PipelineSpec::parse(stored.as_bytes()) {
                check_window_changes(&stored, &spec)?;
            }
        }
        let pipeline = self.build(id, spec.clone()).await?;
        let spec_json = serde_json::to_string(&spec).expect("spec serializes");
        let created = self.store.put_pipeline(id, &spec_json).await?;
        self.install(pipeline, spec_json);
        Ok((created, spec))
    }

    /// Makes the stages of a spec (plugin bytes from the store, compiled by
    /// the runtime, `init` run on the config).
    async fn build(&self, id: &str, spec: PipelineSpec) -> Result<Pipeline, SpecError> {
        let mut stages = Vec::with_capacity(spec.stages.len());
        for (i, decl) in spec.stages.iter().enumerate() {
            let version = decl.version.ok_or_else(|| SpecError::Invalid(format!("stages[{i}]: version unresolved")))?;
            let bytes = self.store.plugin_bytes(&decl.plugin, version).await?.ok_or_else(|| {
                SpecError::Invalid(format!("stages[{i}]: plugin `{}` version {version} does not exist", decl.plugin))
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
            .map_err(|e| SpecError::Invalid(format!("stages[{i}]: {e}")))?
            .map_err(|e| SpecError::Invalid(format!("stages[{i}] ({}): {e}", decl.name)))?;
            stages.push(ChainStage {
                name: decl.name.clone(),
                plugin: decl.plugin.clone(),
                plugin_version: version,
                retry: decl.retry.clone(),
                runner: Arc::new(runner),
            });
        }
        let windows = Arc::new(WindowSet::new(spec.windows.clone()));
        Ok(Pipeline { id: id.to_string(), spec, stages: Arc::new(stages), windows })
    }

    /// Swaps a built pipeline in; starts its workers the first time.
    fn install(self: &Arc<Self>, pipeline: Pipeline, spec_json: String) {
        let id = pipeline.id.clone();
        self.installed.write().insert(id.clone(), spec_json);
        let pipeline = Arc::new(pipeline);
        let mut running = self.pipelines.write();
        if let Some(existing) = running.get(&id) {
            // Workers pick the new stages up at their next batch; the queue is untouched.
            *existing.current.write() = pipeline;
            return;
        }
        let current = Arc::new(RwLock::new(pipeline));
        let watermark = Arc::new(AtomicI64::new(NO_WATERMARK));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let shared = Shared { engine: self.clone(), id: id.clone(), current: current.clone(), watermark: watermark.clone() };
        // `workers: 0` is an API-only process: no background work at all.
        for n in 0..self.config.workers {
            let consumer = format!("{}-w{n}", self.config.consumer_prefix);
            tasks.push(tokio::spawn(worker(shared.clone(), consumer, stopped.clone())));
        }
        if self.config.workers > 0 {
            tasks.push(tokio::spawn(maintenance(shared.clone(), stopped.clone())));
            tasks.push(tokio::spawn(closer(shared, stopped)));
        }
        running.insert(id, Running { current, stop, tasks });
    }

    async fn stop(&self, id: &str) {
        let running = self.pipelines.write().remove(id);
        self.installed.write().remove(id);
        if let Some(running) = running {
            let _ = running.stop.send(true);
            for task in running.tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
        }
        self.stats.forget(id);
    }

    /// Stops the pipeline here and deletes it (and its data) from the store.
    pub async fn delete_pipeline(&self, id: &str) -> Result<bool, StoreError> {
        self.stop(id).await;
        self.store.delete_pipeline(id).await
    }

    /// Whether any stored pipeline uses this plugin version.
    pub async fn plugin_in_use(&self, name: &str, version: u32) -> Result<Option<String>, StoreError> {
        for (id, spec_json) in self.store.list_pipelines().await? {
            if let Ok(spec) = serde_json::from_str::<PipelineSpec>(&spec_json) {
                if spec.stages.iter().any(|s| s.plugin == name && s.version == Some(version)) {
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    /// Replaces a lookup table, here at once and elsewhere within a sync interval.
    pub async fn put_table(&self, name: &str, entries: BTreeMap<String, String>) -> Result<(), StoreError> {
        self.store.put_table(name, &entries).await?;
        self.tables.put(name, entries.into_iter().collect());
        Ok(())
    }

    /// Stops every pipeline's workers (they finish their current batch).
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.pipelines.read().keys().cloned().collect();
        for id in ids {
            self.stop(&id).await;
        }
    }
}

/// A window kept under the same name must keep its shape, grouping and
/// aggregates (its stored panes were built with them); lateness, retention
/// and the spike rule may change. A new name starts a fresh window.
fn check_window_changes(stored: &PipelineSpec, new: &PipelineSpec) -> Result<(), SpecError> {
    for (i, window) in new.windows.iter().enumerate() {
        let Some(old) = stored.windows.iter().find(|w| w.name == window.name) else { continue };
        let shape = |w: &crate::window::WindowSpec| (w.kind, w.size_ms, w.slide_ms, w.gap_ms, w.group_by.clone(), w.aggregates.clone());
        if shape(old) != shape(window) {
            return Err(SpecError::Invalid(format!(
                "invalid pipeline spec at `windows[{i}]`: window `{}` already exists with another kind, size, slide, gap, \
                 group_by or aggregates; give the changed window a new name (its state starts fresh)",
                window.name
            )));
        }
    }
    Ok(())
}

/// What a pipeline's tasks share.
#[derive(Clone)]
struct Shared {
    engine: Arc<Engine>,
    id: String,
    current: Arc<RwLock<Arc<Pipeline>>>,
    /// The watermark this process last saw in the store (workers decide
    /// lateness with it; the store refuses a stale one).
    watermark: Arc<AtomicI64>,
}

async fn worker(shared: Shared, consumer: String, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, &shared.id);
    loop {
        if *stop.borrow() {
            break;
        }
        let read = tokio::select! {
            read = engine.store.read(id, &consumer, engine.config.read_entries, 250) => read,
            _ = stop.changed() => break,
        };
        match read {
            Ok(deliveries) if deliveries.is_empty() => {}
            Ok(deliveries) => process(&shared, deliveries).await,
            Err(e) => {
                crate::metrics::store_error("read", id, &e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn maintenance(shared: Shared, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, &shared.id);
    let consumer = format!("{}-reclaim", engine.config.consumer_prefix);
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => break,
        }
        tick += 1;
        if let Err(e) = engine.store.promote_retries(id, crate::event::now_ms(), 10_000).await {
            crate::metrics::store_error("promote_retries", id, &e);
        }
        // Output retention, every 5 s (one `XTRIM` or one transaction).
        if tick % 50 == 0 {
            let retention = shared.current.read().spec.output_retention_ms;
            if retention > 0 {
                let before = crate::event::now_ms().saturating_sub(retention as i64);
                if let Err(e) = engine.store.trim_output(id, before).await {
                    crate::metrics::store_error("trim_output", id, &e);
                }
            }
        }
        let every = (engine.config.reclaim_idle_ms / 400).clamp(1, 50);
        if tick % every == 0 {
            match engine.store.reclaim(id, &consumer, engine.config.reclaim_idle_ms, engine.config.read_entries).await {
                Ok(deliveries) if !deliveries.is_empty() => {
                    crate::metrics::reclaimed(id, deliveries.len());
                    process(&shared, deliveries).await;
                }
                Ok(_) => {}
                Err(e) => crate::metrics::store_error("reclaim", id, &e),
            }
        }
    }
}

/// Closes windows and checks spike rules every `window_tick` (the store's
/// gate lets one process at a time do a pass).
async fn closer(shared: Shared, mut stop: watch::Receiver<bool>) {
    let (engine, id) = (&shared.engine, &shared.id);
    let mut spikes = SpikeWatch::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(engine.config.window_tick) => {}
            _ = stop.changed() => break,
        }
        let pipeline = shared.current.read().clone();
        if pipeline.windows.is_empty() {
            continue;
        }
        let defs = &pipeline.windows.defs;
        let config = CloserConfig { idle_ms: pipeline.spec.watermark_idle_ms as i64, lease_ms: 10_000 };
        match close_pass(engine.store.as_ref(), id, defs, crate::event::now_ms(), config).await {
            Ok(report) => {
                if let Some(wm) = report.watermark {
                    shared.watermark.store(wm, Ordering::Relaxed);
                }
                crate::metrics::windows_closed(id, report.emitted.len(), report.finalized);
            }
            Err(e) => crate::metrics::store_error("close_windows", id, &e),
        }
        match spikes.check(engine.store.as_ref(), id, defs, crate::event::now_ms()).await {
            Ok(alerts) => {
                for alert in alerts {
                    crate::metrics::spike_alert(id, &alert.window, &alert.group, alert.start);
                }
            }
            Err(e) => crate::metrics::store_error("spike_check", id, &e),
        }
    }
}

/// Fills each entry's window deltas and late DLQ entries for `watermark`
/// (replacing those of an earlier assignment: `stage_dead[i]` is how many
/// DLQ entries entry `i` had from the stages); answers the watermark from
/// which a counted update would be late.
fn assign_windows(
    windows: &WindowSet,
    results: &mut [EntryResult],
    stage_dead: &[usize],
    replays: &[Vec<(String, crate::event::Event)>],
    watermark: i64,
    now_ms: i64,
) -> i64 {
    let mut valid_below = i64::MAX;
    for ((result, replayed), &keep) in results.iter_mut().zip(replays).zip(stage_dead) {
        result.dead.truncate(keep);
        let events = result.outputs.iter().map(|e| (e, None)).chain(replayed.iter().map(|(w, e)| (e, Some(w.as_str()))));
        let assignment = windows.assign(events, watermark);
        result.window_deltas = assignment.deltas;
        result.max_event_ts = assignment.max_event_ts;
        valid_below = valid_below.min(assignment.valid_below);
        for late in assignment.late {
            let lateness = windows.get(&late.window).map(|s| s.allowed_lateness_ms).unwrap_or(0);
            result.dead.push(DlqEntry {
                dlq_id: String::new(),
                error: format!(
                    "late: event time {} is past window [{}, {}) of `{}`, closed at watermark {} (allowed lateness {} ms)",
                    late.event.timestamp, late.start, late.end, late.window, watermark, lateness
                ),
                event: late.event,
                error_kind: crate::domain::ErrorKind::Late,
                failed_at: crate::domain::FailedAt::Window { window: late.window.clone() },
                attempts: 1,
                first_failed_at: now_ms,
                last_failed_at: now_ms,
            });
        }
    }
    valid_below
}

/// Runs delivered entries through the current stages and completes them
/// (with their window updates, decided against the store's watermark).
async fn process(shared: &Shared, deliveries: Vec<Delivery>) {
    let (engine, id) = (&shared.engine, shared.id.as_str());
    let pipeline = shared.current.read().clone();
    let entries: Vec<(String, Vec<crate::store::QueuedEvent>)> = deliveries.into_iter().map(|d| (d.id, d.events)).collect();
    let stages = pipeline.stages.clone();
    let windows = pipeline.windows.clone();
    let now = crate::event::now_ms();
    let watermark = shared.watermark.clone();
    // Stages and the first window assignment on a blocking thread.
    let ran = tokio::task::spawn_blocking(move || {
        let mut run = run_chain(&stages, entries, now, rand::random::<f64>);
        let stage_dead: Vec<usize> = run.results.iter().map(|r| r.dead.len()).collect();
        let valid_below = (!windows.is_empty()).then(|| {
            assign_windows(&windows, &mut run.results, &stage_dead, &run.window_replays, watermark.load(Ordering::Relaxed), now)
        });
        (run, stage_dead, valid_below)
    })
    .await;
    let (ChainRun { mut results, tallies, window_replays }, stage_dead, mut valid_below) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            // The entries stay pending and are reclaimed later: nothing lost.
            crate::metrics::chain_failed(id, &e.to_string());
            return;
        }
    };
    let processed: u64 = results.iter().map(|r| r.finished).sum();
    let emitted: u64 = results.iter().map(|r| r.outputs.len() as u64).sum();
    let mut wait = Duration::from_millis(100);
    let mut stale_rounds = 0u32;
    let mut attempt = 0u32;
    loop {
        match engine.store.complete_windowed(id, &results, valid_below, crate::event::now_ms()).await {
            Ok(report) if report.stale => {
                // The watermark moved past our lateness decisions, or a
                // closer is at work: look again and decide again.
                stale_rounds += 1;
                if stale_rounds % 50 == 0 {
                    crate::metrics::window_apply_waiting(id, stale_rounds);
                }
                tokio::time::sleep(Duration::from_millis(2 + u64::from(stale_rounds.min(20)))).await;
                match engine.store.window_clock(id).await {
                    Ok(clock) => shared.watermark.store(clock.watermark, Ordering::Relaxed),
                    Err(e) => crate::metrics::store_error("window_clock", id, &e),
                }
                let wm = shared.watermark.load(Ordering::Relaxed);
                // Only a watermark past our decisions needs new ones (a held
                // gate alone just needs another try).
                if valid_below.is_some_and(|v| wm >= v) {
                    valid_below = Some(assign_windows(&pipeline.windows, &mut results, &stage_dead, &window_replays, wm, now));
                }
            }
            Ok(_) => break,
            Err(e) => {
                crate::metrics::store_error("complete", id, &e);
                attempt += 1;
                if attempt >= 20 {
                    // Still pending in the store: another worker reclaims them.
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
    let dead: u64 = results.iter().map(|r| r.dead.len() as u64).sum();
    let names = pipeline.stage_names();
    engine.stats.record(id, &names, &tallies, processed);
    crate::metrics::batch_done(id, &names, &tallies, processed, emitted, dead);
}
