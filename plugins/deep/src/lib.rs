//! `deep` (hostile, for sandbox tests): `process` recurses without bound on
//! the wasm call stack, so the host's stack limit stops it.
//!
//! The recursion keeps its state in wasm locals (nothing address-taken, so
//! nothing on Rust's shadow stack in linear memory), and the work after each
//! call (a multiply and a rotate) keeps it from becoming a loop. The stop
//! condition depends on the event (`data.depth`, absent = never), so the
//! compiler cannot see it is unreachable. Config is ignored.

use serde::de::IgnoredAny;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct Deep;

#[inline(never)]
fn dive(depth: u64, stop: u64) -> u64 {
    if depth == stop {
        return depth;
    }
    let below = dive(depth.wrapping_add(1), stop);
    below.wrapping_mul(depth | 1).rotate_left((depth % 63) as u32)
}

impl Stage for Deep {
    type Config = IgnoredAny;

    fn init(_config: IgnoredAny) -> Result<Self, String> {
        Ok(Deep)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let stop = event.get::<u64>("data.depth").unwrap_or(u64::MAX);
        let result = dive(0, stop);
        event.set("data.dive", result);
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(Deep);
