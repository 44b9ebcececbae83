//! `bad-output` (hostile, for tests): when `data.bad` is true it emits an
//! event whose `data` is not JSON; when it is `"data"` it hands the host
//! text that is not JSON as the input's new data (`emit-data`, bypassing the
//! SDK, which only ever sends well-formed JSON); other events pass
//! unchanged. The host must refuse the output (a `trap` naming the
//! problem), not store it.

use serde::de::IgnoredAny;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct BadOutput;

impl Stage for BadOutput {
    type Config = IgnoredAny;

    fn init(_config: IgnoredAny) -> Result<Self, String> {
        Ok(BadOutput)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        if event.get::<bool>("data.bad") == Some(true) {
            let broken = Event::from_parts(event.id().into(), event.kind().into(), String::new(), event.timestamp(), "not {json".into());
            return Ok(Emit::Many(vec![broken]));
        }
        if event.get::<String>("data.bad").as_deref() == Some("data") {
            #[cfg(target_arch = "wasm32")]
            sluice_sdk::__export::bindings::sluice::stage::host::emit_data("{\"half\": ");
            return Ok(Emit::Drop);
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(BadOutput);
