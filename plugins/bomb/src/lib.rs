//! `bomb` (hostile, for sandbox tests): replaces every input with one
//! million outputs (`Emit::Many`), ids `<id>:<n>` for n in 0..1_000_000,
//! type `b`, the input's timestamp, empty source and empty `data`. The
//! outputs are kept minimal so that the host's output cap, not the guest's
//! memory limit, is what stops it (the SDK hands them to the host one by
//! one after `process` returns). Config is ignored.

use serde::de::IgnoredAny;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct Bomb;

/// Outputs per input.
pub const COUNT: usize = 1_000_000;

impl Stage for Bomb {
    type Config = IgnoredAny;

    fn init(_config: IgnoredAny) -> Result<Self, String> {
        Ok(Bomb)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let (id, timestamp) = (event.id().to_string(), event.timestamp());
        Ok(Emit::each((0..COUNT).map(move |n| Event::new(format!("{id}:{n}"), "b", timestamp))))
    }
}

sluice_sdk::export_stage!(Bomb);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::native::{init, run, Result as Outcome};

    #[test]
    fn emits_a_million() {
        let stage = init::<Bomb>("null").unwrap();
        let event = Event::from_parts("x".into(), "hit".into(), "web".into(), 5, r#"{"a":1}"#.into());
        let Some(Outcome::Emitted(events)) = run(&stage, &Context::default(), vec![event]).pop() else {
            panic!("expected emitted events")
        };
        assert_eq!(events.len(), COUNT);
        let last = &events[COUNT - 1];
        assert_eq!((last.id(), last.kind(), last.timestamp()), ("x:999999", "b", 5));
        assert_eq!(last.data_json(), "{}");
    }
}
