//! The glue between the WIT exports and a [`Stage`]: the batch loop.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use crate::{Context, Emit, Event, Stage};

/// The bindings of `sluice:stage@0.2.0` (`wit/stage.wit`), what the SDK
/// targets.
#[cfg(not(feature = "stage-0-1"))]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "stage",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "sluice_sdk::__export::bindings",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// The bindings of the earlier `sluice:stage@0.1.0`
/// (`wit/v0.1.0/stage.wit`): feature `stage-0-1`, for checking that the host
/// still runs components built against it.
#[cfg(feature = "stage-0-1")]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "stage",
        path: "../wit/v0.1.0",
        pub_export_macro: true,
        default_bindings_module: "sluice_sdk::__export::bindings",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

use bindings::sluice::stage::host;
// The borrowed event `emit` takes: in 0.1.0 the world's `process` also takes
// events (owned), so wit-bindgen names the borrowed form differently.
#[cfg(feature = "stage-0-1")]
use bindings::sluice::stage::types::EventParam as EventArg;
#[cfg(not(feature = "stage-0-1"))]
use bindings::sluice::stage::types::Event as EventArg;
use bindings::sluice::stage::types::StageError;
use bindings::{CallContext, Outcome};

thread_local! {
    static STAGE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

// Each export call turns the allocator's arena off for the stage's own code
// and back on when it returns, for the host lowering the next call's
// arguments (see `alloc.rs`).

pub fn init<S: Stage>(config: &str) -> Result<(), String> {
    crate::lowering(false);
    let result = init_stage::<S>(config);
    crate::lowering(true);
    result
}

fn init_stage<S: Stage>(config: &str) -> Result<(), String> {
    let config = crate::parse_config::<S::Config>(config)?;
    let stage = S::init(config)?;
    STAGE.with(|slot| *slot.borrow_mut() = Some(Box::new(stage)));
    Ok(())
}

#[cfg(feature = "stage-0-1")]
pub fn process<S: Stage>(ctx: CallContext, events: Vec<bindings::Event>) -> Vec<Outcome> {
    crate::lowering(false);
    let count = events.len();
    let events = events.into_iter().map(|raw| Event::from_parts(raw.id, raw.kind, raw.source, raw.timestamp, raw.data));
    let outcomes = process_batch::<S>(ctx, count, events);
    crate::lowering(true);
    outcomes
}

pub fn process_packed<S: Stage>(ctx: CallContext, text: String, lengths: Vec<u32>, timestamps: Vec<i64>) -> Vec<Outcome> {
    crate::lowering(false);
    // The batch's events share the text (no copy per event).
    let batch = Arc::new(text);
    let mut at = 0usize;
    // The host makes the lengths; one running past the text or off a char
    // boundary reads as empty rather than panicking.
    let mut next = |len: u32| {
        let end = at.checked_add(len as usize).filter(|&end| end <= batch.len() && batch.is_char_boundary(end));
        let range = at..end.unwrap_or(at);
        at = range.end;
        range
    };
    let mut heads = Vec::with_capacity(timestamps.len());
    for l in lengths.chunks_exact(4) {
        heads.push([next(l[0]), next(l[1]), next(l[2]), next(l[3])]);
    }
    let events = heads.into_iter().zip(&timestamps).map(|(ranges, &timestamp)| Event::from_batch(&batch, ranges, timestamp));
    let outcomes = process_batch::<S>(ctx, timestamps.len(), events);
    crate::lowering(true);
    outcomes
}

fn process_batch<S: Stage>(ctx: CallContext, count: usize, events: impl Iterator<Item = Event>) -> Vec<Outcome> {
    STAGE.with(|slot| {
        let slot = slot.borrow();
        let Some(stage) = slot.as_ref().and_then(|s| s.downcast_ref::<S>()) else {
            let error = StageError { retryable: false, message: "stage used before init".into() };
            return (0..count).map(|_| Outcome::Failed(error.clone())).collect();
        };
        let ctx = Context { pipeline: ctx.pipeline, stage: ctx.stage, attempt: ctx.attempt };
        let mut outcomes = Vec::with_capacity(count);
        for (index, mut event) in events.enumerate() {
            host::begin(index as u32);
            let outcome = match stage.process(&mut event, &ctx) {
                Ok(Emit::Pass) if !event.is_changed() => Outcome::Keep,
                Ok(Emit::Pass) if !event.is_head_changed() => {
                    host::emit_data(&event.data_json());
                    Outcome::Emitted
                }
                Ok(Emit::Pass) => {
                    emit(event);
                    Outcome::Emitted
                }
                Ok(Emit::Drop) => Outcome::Drop,
                Ok(Emit::Many(outputs)) => {
                    outputs.into_iter().for_each(emit);
                    Outcome::Emitted
                }
                Ok(Emit::Each(outputs)) => {
                    outputs.for_each(emit);
                    Outcome::Emitted
                }
                Err(e) => Outcome::Failed(StageError { retryable: e.retryable, message: e.message }),
            };
            outcomes.push(outcome);
        }
        outcomes
    })
}

fn emit(event: Event) {
    let (id, kind, source, timestamp, data) = event.into_parts();
    host::emit(EventArg { id: &id, kind: &kind, source: &source, timestamp, data: &data });
}
