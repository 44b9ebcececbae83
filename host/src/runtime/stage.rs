//! A stage of a pipeline: one plugin with its config and limits, a pool of
//! live instances (one per thread using it at once), and the isolation of
//! poison events when a batch traps.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::instance::{Batch, CallContext, StageInstance, Trapped};
use super::limits::StageLimits;
use super::outcome::{ErrorKind, EventResult};
use super::plugin::Plugin;
use super::sandbox::Attribution;
use super::tables::LookupTables;
use crate::event::Event;

/// What the runtime needs to know to run a plugin as a stage.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub pipeline: String,
    /// The stage's name in the pipeline spec.
    pub stage: String,
    /// The plugin's name and version, for attribution in logs and the DLQ.
    pub plugin_name: String,
    pub plugin_version: u32,
    /// `config` from the spec, as JSON text (`{}` when absent).
    pub config: String,
    pub limits: StageLimits,
}

/// Why a stage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StageSetupError {
    /// The plugin's `init` refused its config (or trapped in it).
    #[error("plugin `{plugin}` rejected its config: {message}")]
    InitRejected { plugin: String, message: String },
    #[error("{0}")]
    InvalidLimits(String),
    #[error("could not start plugin `{plugin}`: {error:#}")]
    Internal { plugin: String, error: anyhow::Error },
}

/// A batch's results and what the call cost.
#[derive(Debug)]
pub struct BatchReport {
    /// One per input event, in order.
    pub results: Vec<EventResult>,
    /// `process` calls made (more than one when a trap was isolated).
    pub calls: u32,
    /// Instances thrown away after traps.
    pub traps: u32,
    /// Wall time of the whole batch, µs.
    pub elapsed_us: u64,
}

/// A runnable stage. Cheap to share across threads: each thread takes an
/// idle instance from the pool (or makes one) for the length of a call.
pub struct StageRunner {
    plugin: Arc<Plugin>,
    spec: StageSpec,
    who: Arc<Attribution>,
    tables: Arc<dyn LookupTables>,
    idle: Mutex<Vec<StageInstance>>,
}

impl StageRunner {
    /// Makes the first instance and runs the plugin's `init` on the config:
    /// a plugin that rejects its config fails here, with its message.
    pub fn new(plugin: Arc<Plugin>, spec: StageSpec, tables: Arc<dyn LookupTables>) -> Result<Self, StageSetupError> {
        spec.limits.validate().map_err(StageSetupError::InvalidLimits)?;
        let who = Arc::new(Attribution {
            pipeline: spec.pipeline.clone(),
            stage: spec.stage.clone(),
            plugin: spec.plugin_name.clone(),
            plugin_version: spec.plugin_version,
        });
        let runner = StageRunner { plugin, spec, who, tables, idle: Mutex::new(Vec::new()) };
        let first = runner.new_instance()?;
        runner.idle.lock().push(first);
        Ok(runner)
    }

    pub fn spec(&self) -> &StageSpec {
        &self.spec
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    fn new_instance(&self) -> Result<StageInstance, StageSetupError> {
        let plugin = &self.spec.plugin_name;
        match StageInstance::create(&self.plugin, &self.spec.limits, self.tables.clone(), self.who.clone(), &self.spec.config) {
            Ok(Ok(instance)) => Ok(instance),
            Ok(Err(message)) => Err(StageSetupError::InitRejected { plugin: plugin.clone(), message }),
            Err(error) => Err(StageSetupError::Internal { plugin: plugin.clone(), error: error.into() }),
        }
    }

    /// Runs `events` (all on their `attempt`-th try) through the stage.
    /// Every event gets a result, whatever the plugin does: when a call
    /// traps, the event it trapped on fails with the trap's kind and the
    /// others run again on a fresh instance.
    pub fn process(&self, attempt: u32, events: &[Event]) -> BatchReport {
        self.run(attempt, Batch::Borrowed(events))
    }

    /// [`StageRunner::process`] for a caller that drops every input whose
    /// outcome is `Emitted` (as a chain does): such an input may be left
    /// with empty strings, moved into its output instead of copied.
    pub fn process_lent(&self, attempt: u32, events: &mut [Event]) -> BatchReport {
        self.run(attempt, Batch::Lent(events))
    }

    fn run(&self, attempt: u32, mut batch: Batch<'_>) -> BatchReport {
        let started = Instant::now();
        let len = batch.events().len();
        let ctx = CallContext { pipeline: self.spec.pipeline.clone(), stage: self.spec.stage.clone(), attempt };
        let mut results: Vec<Option<EventResult>> = vec![None; len];
        let mut calls = 0;
        let mut traps = 0;
        // Indices (into `events`) still waiting for a result.
        let mut pending: Vec<usize> = (0..len).collect();
        let mut owned: Option<Vec<Event>> = None;
        // After an unattributable trap, run what is left one event per call.
        let mut one_by_one = false;
        while !pending.is_empty() {
            let mut instance = match self.idle.lock().pop() {
                Some(instance) => instance,
                None => match self.new_instance() {
                    Ok(instance) => instance,
                    Err(e) => {
                        for &i in &pending {
                            results[i] = Some(EventResult::failed(ErrorKind::Trap, format!("stage unavailable: {e}"), 0));
                        }
                        break;
                    }
                },
            };
            let take = if one_by_one { 1 } else { pending.len() };
            let call = if take == len {
                batch.reborrow()
            } else {
                let events = batch.events();
                Batch::Borrowed(owned.insert(pending[..take].iter().map(|&i| events[i].clone()).collect()))
            };
            calls += 1;
            match instance.process(&ctx, call) {
                Ok(batch_results) => {
                    for (k, result) in batch_results.into_iter().enumerate() {
                        results[pending[k]] = Some(result);
                    }
                    pending.drain(..take);
                    self.idle.lock().push(instance);
                }
                Err(Trapped { index, kind, message, fuel }) => {
                    traps += 1;
                    drop(instance);
                    let k = match index {
                        Some(k) => k,
                        None if take == 1 => 0,
                        None => {
                            one_by_one = true;
                            continue;
                        }
                    };
                    crate::metrics::stage_trap(&self.who, &batch.events()[pending[k]].id, kind, &message);
                    results[pending[k]] = Some(EventResult::failed(kind, message, fuel));
                    pending.remove(k);
                }
            }
        }
        BatchReport {
            results: results.into_iter().map(|r| r.expect("every event has a result")).collect(),
            calls,
            traps,
            elapsed_us: started.elapsed().as_micros() as u64,
        }
    }
}
