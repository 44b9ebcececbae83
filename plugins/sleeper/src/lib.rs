//! `sleeper` (hostile, for sandbox tests): waits on every event instead of
//! working, in a way epoch interruption cannot see. Config:
//!
//! - `{"mode": "sleep", "ms": N}`: `std::thread::sleep` for N ms (one
//!   blocking `wasi:io/poll` wait on a monotonic-clock pollable).
//! - `{"mode": "poll", "ms": N}`: loops until `Instant::now()` says N ms
//!   passed, sleeping a microsecond per turn (a poll loop on the clock).
//! - `{"mode": "read"}`: reads stdin to its end (a blocking stream read).
//!
//! `ms` defaults to an hour. An event that gets through passes unchanged.

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};
use std::io::Read;
use std::time::{Duration, Instant};

/// How to wait, and for how long.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: Mode,
    #[serde(default = "an_hour")]
    ms: u64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Sleep,
    Poll,
    Read,
}

fn an_hour() -> u64 {
    3_600_000
}

pub struct Sleeper {
    mode: Mode,
    wait: Duration,
}

impl Stage for Sleeper {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        Ok(Sleeper { mode: config.mode, wait: Duration::from_millis(config.ms) })
    }

    fn process(&self, _event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        match self.mode {
            Mode::Sleep => std::thread::sleep(self.wait),
            Mode::Poll => {
                let start = Instant::now();
                while start.elapsed() < self.wait {
                    std::thread::sleep(Duration::from_micros(1));
                }
            }
            Mode::Read => {
                let mut input = Vec::new();
                std::io::stdin().read_to_end(&mut input).map_err(|e| StageError::rejected(format!("reading stdin: {e}")))?;
            }
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(Sleeper);
