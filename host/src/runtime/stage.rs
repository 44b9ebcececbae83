//! A stage of a pipeline: one plugin with its config and limits, a pool of
//! live instances (one per thread using it at once), and the isolation of
//! poison events when a batch traps.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::report;
use super::instance::{Batch, CallContext, StageInstance, Trapped};
use super::limits::StageLimits;
use super::outcome::{EventResult, FailureKind, Outcome};
use super::plugin::Plugin;
use super::sandbox::Attribution;
use super::tables::LookupTables;
use crate::domain::Event;

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

    /// Runs the batch in as few calls as traps allow. A call runs a range of
    /// the batch; when it traps on an event, that event fails alone and the
    /// two sides of it are run again as ranges of their own (the side before
    /// it on a fresh instance, since its outcomes were lost with the trapped
    /// one). Ranges are views of the batch, never copies, and every event
    /// runs at most twice: linear in the batch however many events trap.
    fn run(&self, attempt: u32, mut batch: Batch<'_>) -> BatchReport {
        let started = Instant::now();
        let len = batch.events().len();
        let ctx = CallContext { pipeline: self.spec.pipeline.clone(), stage: self.spec.stage.clone(), attempt };
        let mut results: Vec<Option<EventResult>> = vec![None; len];
        let mut calls = 0;
        let mut traps = 0;
        // Ranges of the batch still waiting for results, next one last.
        let mut todo: Vec<Range<usize>> = if len == 0 { Vec::new() } else { vec![0..len] };
        // After an unattributable trap, run what is left one event per call.
        let mut one_by_one = false;
        // Output bytes the batch may still produce (over all its calls).
        let mut budget_left = super::imports::MAX_BATCH_OUTPUT_BYTES;
        while let Some(mut range) = todo.pop() {
            if one_by_one && range.len() > 1 {
                todo.push(range.start + 1..range.end);
                range = range.start..range.start + 1;
            }
            let mut instance = match self.idle.lock().pop() {
                Some(instance) => instance,
                None => match self.new_instance() {
                    Ok(instance) => instance,
                    Err(e) => {
                        let message = format!("stage unavailable: {e}");
                        for i in std::iter::once(range).chain(todo.drain(..)).flatten() {
                            results[i] = Some(EventResult::failed(FailureKind::Trap, message.clone(), 0));
                        }
                        break;
                    }
                },
            };
            calls += 1;
            match instance.process(&ctx, batch.slice(range.clone()), budget_left) {
                Ok(batch_results) => {
                    let produced: usize = batch_results
                        .iter()
                        .map(|r| match &r.outcome {
                            Outcome::Emitted(outputs) => outputs.iter().map(Event::byte_size).sum(),
                            _ => 0,
                        })
                        .sum();
                    budget_left = budget_left.saturating_sub(produced);
                    for (i, result) in range.zip(batch_results) {
                        results[i] = Some(result);
                    }
                    self.idle.lock().push(instance);
                }
                Err(Trapped { index, kind, message, fuel }) => {
                    traps += 1;
                    drop(instance);
                    let k = match index {
                        Some(k) => k,
                        None if range.len() == 1 => 0,
                        None => {
                            one_by_one = true;
                            todo.push(range);
                            continue;
                        }
                    };
                    let poison = range.start + k;
                    report::stage_trap(&self.who, &batch.events()[poison].id, kind, &message);
                    results[poison] = Some(EventResult::failed(kind, message, fuel));
                    // The side after the poison event runs after the side before it.
                    for side in [poison + 1..range.end, range.start..poison] {
                        if !side.is_empty() {
                            todo.push(side);
                        }
                    }
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
