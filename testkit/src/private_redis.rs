//! [`PrivateRedis`]: the one way tests start a `redis-server` of their own.
//!
//! Owns: starting the server on a free port, waiting until it answers,
//! stopping and restarting it, and making sure it never outlives the test
//! process. May use: the standard library, `tempfile`, `redis` (FLUSHALL),
//! the crate root.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::answers_ping;

/// How long a fresh (or restarted) server may take to answer PING.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` owned by a test (or by a whole test binary, as the
/// fallback of [`crate::redis_url`]), on a port chosen for it. Dropping it
/// stops the server; a small shell watchdog also stops it if the test process
/// dies without dropping it (a static, a SIGKILL), so no server is left
/// behind.
pub struct PrivateRedis {
    port: u16,
    /// `Some` for a durable server: where its append-only file lives, so a
    /// restart finds it again.
    dir: Option<TempDir>,
    /// More `redis-server` arguments (e.g. `--maxmemory-policy`), kept
    /// across restarts.
    args: Vec<String>,
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl PrivateRedis {
    /// A server that keeps everything in memory (fast; a restart loses the
    /// data), for tests that only need a Redis nobody else uses.
    pub fn start() -> PrivateRedis {
        PrivateRedis::launched(None)
    }

    /// A server that writes every command to its append-only file before
    /// answering (`appendfsync always`), for tests that stop and restart it
    /// and expect nothing to be lost.
    pub fn start_durable() -> PrivateRedis {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a directory for a private redis-server: {e}"));
        PrivateRedis::launched(Some(dir))
    }

    /// [`PrivateRedis::start_durable`] with more `redis-server` arguments
    /// (e.g. `["--enable-debug-command", "local"]` for
    /// [`PrivateRedis::debug_sleep`]).
    pub fn start_durable_with_args(args: &[&str]) -> PrivateRedis {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a directory for a private redis-server: {e}"));
        let mut redis = PrivateRedis::unlaunched(Some(dir));
        redis.args = args.iter().map(|a| a.to_string()).collect();
        redis.launch();
        redis
    }

    /// A memory-only server started with more `redis-server` arguments, for
    /// tests of how Sluice treats a Redis's settings (e.g.
    /// `["--maxmemory-policy", "allkeys-lru"]`).
    pub fn start_with_args(args: &[&str]) -> PrivateRedis {
        let mut redis = PrivateRedis::unlaunched(None);
        redis.args = args.iter().map(|a| a.to_string()).collect();
        redis.launch();
        redis
    }

    /// Deletes every key of every database (`FLUSHALL`): a Redis that lost
    /// everything under a running server, as a restart with no persistence
    /// does.
    pub fn flush_all(&self) {
        let flushed = crate::connect(&self.url()).and_then(|mut c| redis::cmd("FLUSHALL").query::<String>(&mut c));
        assert!(flushed.is_ok_and(|reply| reply == "OK"), "FLUSHALL on the private redis-server on port {} failed", self.port);
    }

    /// Blocks the whole server for `seconds` (`DEBUG SLEEP`): a Redis that
    /// is slow, not gone, so commands sent meanwhile run once it wakes.
    /// Returns when it wakes. Needs a server started with
    /// `--enable-debug-command local`.
    pub fn debug_sleep(&self, seconds: u32) {
        let slept = crate::connect(&self.url()).and_then(|mut c| {
            c.set_read_timeout(Some(std::time::Duration::from_secs(u64::from(seconds) + 30)))?;
            redis::cmd("DEBUG").arg("SLEEP").arg(seconds).query::<String>(&mut c)
        });
        assert!(
            slept.as_ref().is_ok_and(|reply| reply == "OK"),
            "DEBUG SLEEP on the private redis-server on port {} failed (started with --enable-debug-command local?): {slept:?}",
            self.port
        );
    }

    /// Stops serving every client for `millis` (`CLIENT PAUSE <millis> ALL`):
    /// commands sent meanwhile wait and run once the pause ends. Returns at
    /// once, while the pause lasts.
    /// Tried three times, each waiting up to 30 s for the answer: a server
    /// busy with `appendfsync always` on a loaded machine can take seconds.
    pub fn client_pause(&self, millis: u64) {
        let mut paused = Ok(String::new());
        for _ in 0..3 {
            paused = crate::connect(&self.url()).and_then(|mut c| {
                c.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
                redis::cmd("CLIENT").arg("PAUSE").arg(millis).arg("ALL").query::<String>(&mut c)
            });
            if paused.as_ref().is_ok_and(|reply| reply == "OK") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("CLIENT PAUSE on the private redis-server on port {} failed 3 times: {paused:?}", self.port);
    }

    fn launched(dir: Option<TempDir>) -> PrivateRedis {
        let mut redis = PrivateRedis::unlaunched(dir);
        redis.launch();
        redis
    }

    fn unlaunched(dir: Option<TempDir>) -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("no free port for a private redis-server: {e}"))
            .port();
        PrivateRedis { port, dir, args: Vec::new(), server: None, watchdog: None }
    }

    /// The port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to hand to a store or a `sluice serve --store`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown). A durable
    /// server's data is on disk for [`PrivateRedis::restart`].
    pub fn stop(&mut self) {
        for child in [self.server.take(), self.watchdog.take()].into_iter().flatten() {
            let mut child = child;
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Stops the server and starts it again on the same port, then waits
    /// until it answers (for a durable one: until its data is loaded).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        match &self.dir {
            Some(dir) => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "always", "--dir"]).arg(dir.path());
            }
            None => {
                cmd.args(["--appendonly", "no"]);
            }
        }
        cmd.args(&self.args);
        let server = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!(
                "no Redis for the tests: cannot start `redis-server` ({e}). Install it (e.g. `apt-get install \
                 redis-server`) or point SLUICE_TEST_REDIS_URL at a running server"
            )
        });
        self.watchdog = Some(watchdog(server.id()));
        self.server = Some(server);
        let started = Instant::now();
        while !answers_ping(&self.url()) {
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited during startup: {status}", self.port);
            }
            assert!(started.elapsed() < STARTUP_TIMEOUT, "redis-server started on port {} but does not answer PING", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A shell loop that kills `server_pid` once this process is gone (and ends
/// by itself once the server is).
pub(crate) fn watchdog(server_pid: u32) -> Child {
    let script = r#"while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
kill "$2" 2>/dev/null"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sluice-test-redis-watchdog")
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the watchdog of a private redis-server: {e}"))
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
