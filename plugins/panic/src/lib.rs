//! `panic` (hostile, for sandbox tests): panics with the message
//! `panic plugin: data.panic was true` on events whose `data.panic` is
//! `true` (in the guest a panic aborts: a trap); every other event passes
//! unchanged. Config is ignored.

use serde::de::IgnoredAny;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct Panic;

impl Stage for Panic {
    type Config = IgnoredAny;

    fn init(_config: IgnoredAny) -> Result<Self, String> {
        Ok(Panic)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        if event.get::<bool>("data.panic") == Some(true) {
            panic!("panic plugin: data.panic was true");
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(Panic);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::native::{init, run, Result as Outcome};

    fn one(data: &str) -> Outcome {
        let stage = init::<Panic>(r#"{"anything": 1}"#).unwrap();
        let event = Event::from_parts("e".into(), "hit".into(), "".into(), 0, data.into());
        run(&stage, &Context::default(), vec![event]).pop().unwrap()
    }

    #[test]
    fn passes_other_events() {
        assert!(matches!(one(r#"{}"#), Outcome::Kept));
        assert!(matches!(one(r#"{"panic":false}"#), Outcome::Kept));
        assert!(matches!(one(r#"{"panic":"true"}"#), Outcome::Kept));
    }

    #[test]
    #[should_panic(expected = "panic plugin: data.panic was true")]
    fn panics_on_data_panic() {
        one(r#"{"panic":true}"#);
    }
}
