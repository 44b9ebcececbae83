//! `spin` (hostile, for sandbox tests): `process` never returns. It spins on
//! a counter kept opaque to the optimiser with `black_box`, so the host's
//! per-event fuel or time limit is what ends it. `init` succeeds; config is
//! ignored.

use serde::de::IgnoredAny;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};
use std::hint::black_box;

pub struct Spin;

impl Stage for Spin {
    type Config = IgnoredAny;

    fn init(_config: IgnoredAny) -> Result<Self, String> {
        Ok(Spin)
    }

    fn process(&self, _event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let mut counter: u64 = 0;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

sluice_sdk::export_stage!(Spin);
