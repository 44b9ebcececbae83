//! Test helpers shared by the host's own tests (`host/tests/`) and the
//! black-box tests (`tests/`), so both find and clean Redis the same way.
//!
//! Owns: which Redis a test talks to ([`redis_url`]), key prefixes no two
//! tests share ([`unique_prefix`]), cleaning up after them
//! ([`delete_keys_with_prefix`]) and the one way tests start a
//! `redis-server` of their own ([`PrivateRedis`]), and a Redis Cluster of
//! their own ([`PrivateCluster`]: 3 masters, 3 replicas).
//! May use: the `redis` crate, `tokio`'s blocking pool, the standard library.
//! Never the host crate (`sluice`): this crate must build in seconds.
//!
//! Which Redis: `SLUICE_TEST_REDIS_URL` if set, else `redis://127.0.0.1:6379`
//! if it answers PING, else a private `redis-server` started for this test
//! binary (and stopped once it exits). `SLUICE_TEST_REDIS_URL=spawn` forces
//! the private server.

mod private_cluster;
mod private_redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use private_cluster::{Failover, PrivateCluster};
pub use private_redis::PrivateRedis;

/// The Redis the tests use when nothing else is said (the one `scripts/test.sh`
/// makes sure of).
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The URL of a Redis server for tests (see the crate docs), from async code:
/// the discovery blocks (PING, maybe starting a server), so it runs on
/// tokio's blocking pool.
pub async fn redis_url() -> String {
    tokio::task::spawn_blocking(redis_url_sync).await.expect("redis_url helper panicked")
}

/// [`redis_url`] for synchronous code. Decided once per test binary, so every
/// test of a run talks to the same server.
pub fn redis_url_sync() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("SLUICE_TEST_REDIS_URL") {
        Ok(url) if url == "spawn" => shared_private_url(),
        Ok(url) if !url.is_empty() => url,
        _ if answers_ping(DEFAULT_URL) => DEFAULT_URL.to_string(),
        _ => shared_private_url(),
    })
    .clone()
}

/// A private server kept for the life of the test process (a static is never
/// dropped; its watchdog stops the server once the process is gone).
fn shared_private_url() -> String {
    static SERVER: OnceLock<PrivateRedis> = OnceLock::new();
    SERVER.get_or_init(PrivateRedis::start).url()
}

/// A key prefix unique to this test name, process, moment and call, so tests
/// sharing one Redis (in parallel, or left over from a failed run) never see
/// each other's keys.
pub fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("test-{name}-{}-{nanos:x}-{n}", std::process::id())
}

/// Deletes every key starting with `prefix`, to leave a shared Redis as it was
/// found. Best effort (SCAN then UNLINK, errors ignored): it cleans up after a
/// test and must never be the reason one fails. A `redis+cluster://h:p,…`
/// URL cleans every master of that cluster.
pub fn delete_keys_with_prefix(url: &str, prefix: &str) {
    if let Some(seeds) = url.strip_prefix("redis+cluster://") {
        let seeds: Vec<String> = seeds.split(',').map(|s| format!("redis://{s}")).collect();
        return private_cluster::delete_cluster_keys_with_prefix(&seeds, prefix);
    }
    let Ok(mut conn) = connect(url) else { return };
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let page: redis::RedisResult<(u64, Vec<Vec<u8>>)> =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query(&mut conn);
        let Ok((next, keys)) = page else { return };
        if !keys.is_empty() && redis::cmd("UNLINK").arg(&keys).query::<()>(&mut conn).is_err() {
            return;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Whether a Redis at `url` answers PING now (a server still loading its
/// append-only file answers an error, so it counts as not ready).
pub fn answers_ping(url: &str) -> bool {
    connect(url).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)).is_ok_and(|reply| reply == "PONG")
}

/// A synchronous connection with short timeouts, so a missing or stuck server
/// makes a test fail quickly instead of hanging it.
pub(crate) fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}
