//! What goes wrong during a round: the server killed with SIGKILL and
//! started again, and on Redis the store paused (`CLIENT PAUSE`), slowed
//! past the server's timeouts (`DEBUG SLEEP`) or killed and restarted from
//! its append-only file.

use std::time::Duration;

use sluice_testkit::PrivateRedis;

use super::rng::Rng;
use crate::Server;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL the `sluice serve` process, then start it again on the same
    /// store: in-flight requests and batches die with it.
    KillServer,
    /// `CLIENT PAUSE <0.5–2.5 s> ALL`: every store command waits.
    PauseRedis,
    /// `DEBUG SLEEP <1–3 s>`: the store stops answering for longer than the
    /// server waits (its commands then run late, after it gave up).
    SlowRedis,
    /// SIGKILL `redis-server`, then start it again on the same port from its
    /// append-only file (`appendfsync always`) after 0.1–1 s.
    RestartRedis,
}

impl Fault {
    /// Every fault that applies to a store: the server's own death on both,
    /// the store's troubles only on Redis.
    pub fn all(redis: bool) -> &'static [Fault] {
        if redis {
            &[Fault::KillServer, Fault::PauseRedis, Fault::SlowRedis, Fault::RestartRedis]
        } else {
            &[Fault::KillServer]
        }
    }

    /// The name shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillServer => "kill-server",
            Fault::PauseRedis => "pause-redis",
            Fault::SlowRedis => "slow-redis",
            Fault::RestartRedis => "restart-redis",
        }
    }

    /// Does it: returns once the fault is over (the server is up again, or
    /// the store answers again); the server may still be reconnecting.
    pub fn inject(self, server: &mut Server, redis: Option<&mut PrivateRedis>, rng: &mut Rng) {
        match (self, redis) {
            (Fault::KillServer, _) => server.restart(),
            (Fault::PauseRedis, Some(redis)) => {
                let millis = rng.range(500, 2500);
                redis.client_pause(millis);
                std::thread::sleep(Duration::from_millis(millis));
            }
            (Fault::SlowRedis, Some(redis)) => redis.debug_sleep(rng.range(1, 4) as u32),
            (Fault::RestartRedis, Some(redis)) => {
                redis.stop();
                std::thread::sleep(Duration::from_millis(rng.range(100, 1000)));
                redis.restart();
            }
            (fault, None) => panic!("{} needs a Redis store", fault.name()),
        }
    }
}
