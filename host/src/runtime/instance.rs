//! One live instance of a stage: its store, and the calls into it.

use std::sync::Arc;

use wasmtime::error::Context as _;
use wasmtime::component::{ComponentType, Lift, Lower, TypedFunc};
use wasmtime::{AsContextMut as _, Store, Trap};

use super::report;
use super::limits::StageLimits;
use super::outcome::{FailureKind, EventResult, Outcome};
use super::plugin::Plugin;
use super::sandbox::{Attribution, Emitted, HostStop, StoreState};
use super::tables::LookupTables;
use crate::domain::Event;

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct CallContext {
    #[component(name = "pipeline")]
    pub(crate) pipeline: String,
    #[component(name = "stage")]
    pub(crate) stage: String,
    #[component(name = "attempt")]
    pub(crate) attempt: u32,
}

#[derive(ComponentType, Lift, Debug)]
#[component(record)]
struct GuestStageError {
    #[component(name = "retryable")]
    retryable: bool,
    #[component(name = "message")]
    message: String,
}

#[derive(ComponentType, Lift, Debug)]
#[component(variant)]
enum GuestOutcome {
    #[component(name = "keep")]
    Keep,
    #[component(name = "drop")]
    Drop,
    #[component(name = "emitted")]
    Emitted,
    #[component(name = "failed")]
    Failed(GuestStageError),
}

/// A batch packed for `process-packed`: every string in one text, their
/// lengths (four per event) and the timestamps. `None` if a length would
/// not fit a u32.
fn pack(events: &[Event]) -> Option<(String, Vec<u32>, Vec<i64>)> {
    let size: usize = events.iter().map(|e| e.id.len() + e.kind.len() + e.source.len() + e.data.len()).sum();
    if u32::try_from(size).is_err() {
        return None;
    }
    let mut text = String::with_capacity(size);
    let mut lengths = Vec::with_capacity(events.len() * 4);
    for event in events {
        for part in [&event.id, &event.kind, &event.source, &event.data] {
            text.push_str(part);
            lengths.push(part.len() as u32);
        }
    }
    Some((text, lengths, events.iter().map(|e| e.timestamp).collect()))
}

/// The events of one call: borrowed, or lent by a caller that drops every
/// input whose outcome is `Emitted` (as a chain does), whose strings an
/// `emit-data` output may then take instead of copying.
pub(crate) enum Batch<'a> {
    Borrowed(&'a [Event]),
    Lent(&'a mut [Event]),
}

impl Batch<'_> {
    /// The events in `range`, for one call: a view, nothing copied.
    pub(crate) fn slice(&mut self, range: std::ops::Range<usize>) -> Batch<'_> {
        match self {
            Batch::Borrowed(events) => Batch::Borrowed(&events[range]),
            Batch::Lent(events) => Batch::Lent(&mut events[range]),
        }
    }

    pub(crate) fn events(&self) -> &[Event] {
        match self {
            Batch::Borrowed(events) => events,
            Batch::Lent(events) => events,
        }
    }

    /// Input `index` with `data` in place of its own: taking its other
    /// strings when `consumed` and the batch is lent, else copying them.
    fn with_data(&mut self, index: usize, data: String, consumed: bool) -> Event {
        match self {
            Batch::Lent(events) if consumed => {
                let input = &mut events[index];
                Event {
                    id: std::mem::take(&mut input.id),
                    kind: std::mem::take(&mut input.kind),
                    source: std::mem::take(&mut input.source),
                    timestamp: input.timestamp,
                    data,
                }
            }
            _ => {
                let input = &self.events()[index];
                Event { id: input.id.clone(), kind: input.kind.clone(), source: input.source.clone(), timestamp: input.timestamp, data }
            }
        }
    }
}

/// A call that ended in a trap: the instance must be thrown away.
#[derive(Debug)]
pub(crate) struct Trapped {
    /// The batch index of the event being processed, if the guest had begun one.
    pub(crate) index: Option<usize>,
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) fuel: u64,
}

/// The guest's `process`, type-checked once when the instance is made.
/// (`'static` only in the type: `TypedFunc` is covariant in its params, so
/// it is called with borrows of any lifetime.)
type ProcessFunc = TypedFunc<(&'static CallContext, &'static [Event]), (Vec<GuestOutcome>,)>;

/// The guest's `process-packed` (the same batch, lowered as one text).
type PackedFunc = TypedFunc<(&'static CallContext, &'static str, &'static [u32], &'static [i64]), (Vec<GuestOutcome>,)>;

pub(crate) struct StageInstance {
    store: Store<StoreState>,
    /// The `list<event>` entry point of `sluice:stage@0.1.0` components
    /// (absent from 0.2.0 ones).
    process: Option<ProcessFunc>,
    /// Present when the component exports it and the plugin is called packed
    /// (every SDK-built component); preferred.
    packed: Option<PackedFunc>,
}

/// Fuel and time for `init`: generous, but still bounded.
const INIT_BUDGET_FACTOR: u64 = 10;

impl StageInstance {
    /// Instantiates the plugin and runs its `init` with `config`.
    /// `Ok(Err(message))` is the plugin refusing its config.
    pub(crate) fn create(
        plugin: &Plugin,
        limits: &StageLimits,
        tables: Arc<dyn LookupTables>,
        who: Arc<Attribution>,
        config: &str,
    ) -> wasmtime::Result<Result<StageInstance, String>> {
        let engine = plugin.pre.engine();
        let mut store = Store::new(engine, StoreState::new(limits.clone(), tables, who));
        store.limiter(|state| &mut state.memory);
        store.set_fuel(limits.fuel.saturating_mul(INIT_BUDGET_FACTOR))?;
        StoreState::arm_deadline(&mut store.as_context_mut(), u64::from(limits.timeout_ms) * INIT_BUDGET_FACTOR);
        let instance = match plugin.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => {
                let trapped = classify(&e, &mut store, limits);
                return Ok(Err(format!("instantiating the plugin failed ({}): {}", trapped.0, trapped.1)));
            }
        };
        let init = instance
            .get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, "init")
            .context("the plugin's `init` does not have the signature init(config: string) -> result<_, string>")?;
        let process: Option<ProcessFunc> = match instance.get_func(&mut store, "process") {
            None => None,
            Some(func) => Some(func.typed(&store).context("the plugin's `process` does not have the signature of the sluice:stage@0.1.0 world")?),
        };
        let packed: Option<PackedFunc> = match instance.get_func(&mut store, "process-packed").filter(|_| plugin.packed) {
            None => None,
            Some(func) => Some(
                func.typed(&store)
                    .context("the plugin's `process-packed` does not have the signature of the sluice:stage world (wit/stage.wit)")?,
            ),
        };
        if process.is_none() && packed.is_none() {
            return Err(wasmtime::Error::msg("the plugin exports neither `process-packed` nor `process`"));
        }
        let answer = init.call(&mut store, (config,));
        drain_guest_output(&mut store);
        match answer {
            Ok((Ok(()),)) => Ok(Ok(StageInstance { store, process, packed })),
            Ok((Err(message),)) => Ok(Err(message)),
            Err(e) => {
                let (kind, message) = classify(&e, &mut store, limits);
                Ok(Err(format!("init trapped ({kind}): {message}")))
            }
        }
    }

    /// Runs one `process` call over `events`. On a trap the instance is
    /// unusable and the caller must drop it.
    pub(crate) fn process(&mut self, ctx: &CallContext, mut batch: Batch<'_>, output_budget: usize) -> Result<Vec<EventResult>, Trapped> {
        let events = batch.events();
        let limits = self.store.data().limits.clone();
        {
            let state = self.store.data_mut();
            state.call = Default::default();
            state.call.call_output_budget = output_budget;
            state.call.batch_len = events.len() as u32;
            state.call.fuel_used = vec![0; events.len()];
            state.call.head_bytes = events.iter().map(|e| (e.id.len() + e.kind.len() + e.source.len() + 8) as u32).collect();
            state.memory.denied = false;
        }
        let setup = self.store.set_fuel(limits.fuel);
        StoreState::arm_deadline(&mut self.store.as_context_mut(), u64::from(limits.timeout_ms));
        let packed = match (&self.packed, &self.process) {
            (Some(packed), _) => pack(events).map(|batch| (packed, batch)),
            (None, _) => None,
        };
        let answer = match (setup, packed, &self.process) {
            (Err(e), _, _) => Err(e),
            (Ok(()), Some((func, (text, lengths, timestamps))), _) => {
                func.call(&mut self.store, (ctx, text.as_str(), lengths.as_slice(), timestamps.as_slice()))
            }
            (Ok(()), None, Some(process)) => process.call(&mut self.store, (ctx, events)),
            (Ok(()), None, None) => {
                // Only a batch over 4 GiB does not pack; the engine's batches
                // are far smaller.
                return Err(Trapped {
                    index: None,
                    kind: FailureKind::Trap,
                    message: "the batch is too large to pack (over 4 GiB of text) and the plugin exports no `process`".into(),
                    fuel: 0,
                });
            }
        };
        drain_guest_output(&mut self.store);
        let remaining = self.store.get_fuel().unwrap_or(0);
        let state = self.store.data_mut();
        let current = state.call.current.map(|i| i as usize);
        if let Some(i) = current {
            state.call.fuel_used[i] = limits.fuel.saturating_sub(remaining);
        }
        match answer {
            Ok((outcomes,)) => {
                let state = self.store.data_mut();
                if outcomes.len() != events.len() {
                    return Err(Trapped {
                        index: None,
                        kind: FailureKind::Trap,
                        message: format!("plugin answered {} outcomes for a batch of {} events", outcomes.len(), events.len()),
                        fuel: 0,
                    });
                }
                let count = events.len();
                let outputs = std::mem::take(&mut state.call.emitted);
                // How many `emit-data` outputs each input has left: the last
                // one of an input that is `Emitted` may take its strings.
                let mut data_left = vec![0u32; count];
                for (index, output) in &outputs {
                    if matches!(output, Emitted::Data(_)) {
                        data_left[*index as usize] += 1;
                    }
                }
                let mut emitted: Vec<Vec<Event>> = vec![Vec::new(); count];
                for (index, output) in outputs {
                    let i = index as usize;
                    let event = match output {
                        Emitted::Event(event) => event,
                        Emitted::Data(data) => {
                            data_left[i] -= 1;
                            let consumed = data_left[i] == 0 && matches!(outcomes[i], GuestOutcome::Emitted);
                            batch.with_data(i, data, consumed)
                        }
                    };
                    emitted[i].push(event);
                }
                let state = self.store.data_mut();
                let results = outcomes
                    .into_iter()
                    .zip(emitted)
                    .zip(state.call.fuel_used.iter())
                    .map(|((outcome, outputs), &fuel)| {
                        let outcome = match outcome {
                            GuestOutcome::Keep => Outcome::Keep,
                            GuestOutcome::Drop => Outcome::Drop,
                            GuestOutcome::Emitted => Outcome::Emitted(outputs),
                            GuestOutcome::Failed(e) => Outcome::Failed {
                                kind: if e.retryable { FailureKind::Retryable } else { FailureKind::Rejected },
                                message: e.message,
                            },
                        };
                        EventResult { outcome, fuel }
                    })
                    .collect();
                Ok(results)
            }
            Err(e) => {
                let (kind, message) = classify(&e, &mut self.store, &limits);
                let fuel = current.map_or(0, |i| self.store.data().call.fuel_used[i]);
                Err(Trapped { index: current, kind, message, fuel })
            }
        }
    }
}

/// Sends what the guest printed to the host log, attributed.
fn drain_guest_output(store: &mut Store<StoreState>) {
    let state = store.data_mut();
    for (stream, output) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
        let (text, dropped) = output.take();
        if !text.is_empty() || dropped > 0 {
            report::guest_output(&state.who, stream, &text, dropped);
        }
        if stream == "stderr" {
            state.last_stderr = text;
        }
    }
    let dropped = std::mem::take(&mut state.call.log.dropped);
    if dropped > 0 {
        report::guest_log_dropped(&state.who, dropped);
    }
}

/// Names the cause of a failed call, with a message that says which limit.
fn classify(error: &wasmtime::Error, store: &mut Store<StoreState>, limits: &StageLimits) -> (FailureKind, String) {
    let state = store.data();
    if let Some(stop) = error.downcast_ref::<HostStop>() {
        return match stop {
            HostStop::OutputLimit(m) => (FailureKind::OutputLimit, m.clone()),
            HostStop::Contract(m) => (FailureKind::Trap, m.clone()),
            HostStop::Timeout(call) => (
                FailureKind::Timeout,
                format!("exceeded the deadline of {} ms per event (limits.timeout_ms) waiting in {call}", limits.timeout_ms),
            ),
        };
    }
    if state.memory.denied {
        return (FailureKind::Memory, format!("exceeded the memory cap of {} MiB (limits.memory_mb)", limits.memory_mb));
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (FailureKind::Fuel, format!("ran out of fuel: used all {} units allowed per event (limits.fuel)", limits.fuel)),
        Some(Trap::Interrupt) => (FailureKind::Timeout, format!("exceeded the deadline of {} ms per event (limits.timeout_ms)", limits.timeout_ms)),
        Some(Trap::StackOverflow) => (FailureKind::Stack, "overflowed the wasm stack (endless or too deep recursion)".into()),
        Some(trap) => match store.data().call.uncaught.clone().or_else(|| last_panic(store)) {
            Some(panic) => (FailureKind::Panic, panic),
            None => (FailureKind::Trap, format!("trapped: {trap}")),
        },
        None => (FailureKind::Trap, format!("{error:#}")),
    }
}

/// The panic message a Rust guest printed to stderr, if it printed one.
fn last_panic(store: &mut Store<StoreState>) -> Option<String> {
    let text = &store.data().last_stderr;
    let start = text.rfind("panicked at")?;
    let tail = &text[start..];
    let message: Vec<&str> = tail.lines().take_while(|l| !l.starts_with("note:")).collect();
    Some(message.join(" ").trim().to_string())
}
