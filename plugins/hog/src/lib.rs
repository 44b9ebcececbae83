//! `hog` (hostile, for sandbox tests): `process` allocates without end,
//! keeping 1 MiB buffers (each page written to, through `black_box`) until
//! the host's memory limit stops it; in the guest that is a failed
//! allocation, which aborts (a trap). `init` succeeds; config is ignored.

use serde::de::IgnoredAny;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};
use std::hint::black_box;

pub struct Hog;

const CHUNK: usize = 1 << 20;
const PAGE: usize = 64 * 1024;

impl Stage for Hog {
    type Config = IgnoredAny;

    fn init(_config: IgnoredAny) -> Result<Self, String> {
        Ok(Hog)
    }

    fn process(&self, _event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            for offset in (0..CHUNK).step_by(PAGE) {
                chunk[offset] = 0xA5;
            }
            hoard.push(black_box(chunk));
            black_box(&mut hoard);
        }
    }
}

sluice_sdk::export_stage!(Hog);
