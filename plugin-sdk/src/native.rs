//! Running a stage natively, with the same batch semantics as in the host:
//! for unit tests of a stage and for benchmarks against the WASM build.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::host::Level;
use crate::{Context, Emit, Event, Stage, StageError};

/// One input's result, as the host would see it.
#[derive(Debug)]
pub enum Result {
    /// Passed on unchanged.
    Kept,
    /// Filtered out.
    Dropped,
    /// Replaced by these events (one for a transform).
    Emitted(Vec<Event>),
    /// Failed.
    Failed(StageError),
}

/// Parses `config` and initialises the stage, as the host's `init` call does.
pub fn init<S: Stage>(config: &str) -> std::result::Result<S, String> {
    S::init(crate::parse_config::<S::Config>(config)?)
}

/// Runs a batch through the stage. Changed events are serialized back to
/// JSON text, as they would be to cross into the host.
pub fn run<S: Stage>(stage: &S, ctx: &Context, events: Vec<Event>) -> Vec<Result> {
    events
        .into_iter()
        .map(|mut event| match stage.process(&mut event, ctx) {
            Ok(Emit::Pass) if !event.is_changed() => Result::Kept,
            Ok(Emit::Pass) => Result::Emitted(vec![reserialize(event)]),
            Ok(Emit::Drop) => Result::Dropped,
            Ok(Emit::Many(outputs)) => Result::Emitted(outputs.into_iter().map(reserialize).collect()),
            Ok(Emit::Each(outputs)) => Result::Emitted(outputs.map(reserialize).collect()),
            Err(e) => Result::Failed(e),
        })
        .collect()
}

fn reserialize(event: Event) -> Event {
    let (id, kind, source, timestamp, data) = event.into_parts();
    Event::from_parts(id, kind, source, timestamp, data)
}

thread_local! {
    static TABLES: RefCell<HashMap<String, HashMap<String, String>>> = RefCell::new(HashMap::new());
}

/// Sets a lookup table for native runs of this thread.
pub fn set_table(name: &str, entries: HashMap<String, String>) {
    TABLES.with(|t| t.borrow_mut().insert(name.to_string(), entries));
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn lookup(table: &str, key: &str) -> Option<String> {
    TABLES.with(|t| t.borrow().get(table).and_then(|entries| entries.get(key).cloned()))
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    if level >= Level::Warn {
        eprintln!("[{level:?}] {message} {fields:?}");
    }
}
