//! Helpers shared by the integration tests (`mod common;`).
//!
//! - [`redis_url`]: a Redis to test against: `SLUICE_TEST_REDIS_URL` if set,
//!   else `redis://127.0.0.1:6379` if it answers PING, else a private
//!   `redis-server` started for this test binary (and stopped when it exits).
//!   `SLUICE_TEST_REDIS_URL=spawn` forces the private server.
//! - [`unique_prefix`]: a key prefix no other test, run or process shares.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The URL of a Redis server for tests (see the module docs).
pub async fn redis_url() -> String {
    tokio::task::spawn_blocking(redis_url_sync).await.expect("redis_url helper panicked")
}

/// [`redis_url`] for synchronous code.
pub fn redis_url_sync() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("SLUICE_TEST_REDIS_URL") {
        Ok(url) if url == "spawn" => spawn_redis(),
        Ok(url) if !url.is_empty() => url,
        _ if answers_ping("127.0.0.1:6379") => DEFAULT_URL.to_string(),
        _ => spawn_redis(),
    })
    .clone()
}

/// A prefix unique to this test, process, moment and call.
pub fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("test-{name}-{}-{nanos:x}-{n}", std::process::id())
}

/// Deletes every key starting with `prefix` (best effort; for cleaning up
/// after a test that passed).
pub fn delete_keys_with_prefix(url: &str, prefix: &str) {
    let Some(addr) = host_port(url) else { return };
    let Ok(mut conn) = connect(&addr) else { return };
    let pattern = format!("{prefix}*");
    let mut cursor = "0".to_string();
    loop {
        let Ok(reply) = command(&mut conn, &["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"]) else { return };
        let Some((next, keys)) = parse_scan(&reply) else { return };
        if !keys.is_empty() {
            let mut args = vec!["UNLINK"];
            args.extend(keys.iter().map(String::as_str));
            if command(&mut conn, &args).is_err() {
                return;
            }
        }
        if next == "0" {
            return;
        }
        cursor = next;
    }
}

fn answers_ping(addr: &str) -> bool {
    connect(addr).and_then(|mut c| command(&mut c, &["PING"])).map(|r| r.starts_with("+PONG")).unwrap_or(false)
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Sends one command and reads one whole reply (raw RESP text).
fn command(conn: &mut TcpStream, args: &[&str]) -> std::io::Result<String> {
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    conn.write_all(out.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(len) = complete_reply(&buf) {
            buf.truncate(len);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

/// The length of the first complete RESP reply in `buf`, if there is one.
fn complete_reply(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    fn value(buf: &[u8], at: usize) -> Option<usize> {
        let (head, next) = line(buf, at)?;
        let (kind, rest) = head.split_first()?;
        let n: i64 = std::str::from_utf8(rest).ok()?.parse().unwrap_or(0);
        match kind {
            b'$' if n < 0 => Some(next),
            b'$' => (buf.len() >= next + n as usize + 2).then_some(next + n as usize + 2),
            b'*' => (0..n.max(0)).try_fold(next, |at, _| value(buf, at)),
            _ => Some(next),
        }
    }
    value(buf, 0)
}

/// SCAN's reply: (next cursor, keys).
fn parse_scan(reply: &str) -> Option<(String, Vec<String>)> {
    let lines: Vec<&str> = reply.split("\r\n").collect();
    // *2, $n, cursor, *k, ($n, key)*
    let cursor = lines.get(2)?.to_string();
    let keys = lines.iter().skip(4).skip(1).step_by(2).filter(|l| !l.is_empty()).map(|l| l.to_string()).collect();
    Some((cursor, keys))
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("redis://")?;
    let rest = rest.rsplit('@').next()?;
    let host = rest.split('/').next()?;
    Some(if host.contains(':') { host.to_string() } else { format!("{host}:6379") })
}

/// Starts `redis-server` on a free port, kept for the life of this process:
/// a small shell watchdog stops it once this process is gone.
fn spawn_redis() -> String {
    static CHILD: OnceLock<Mutex<Child>> = OnceLock::new();
    if Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        panic!(
            "no Redis for the tests: nothing answers at 127.0.0.1:6379, SLUICE_TEST_REDIS_URL is not set, \
             and `redis-server` is not installed (install it, e.g. `apt-get install redis-server`, \
             or point SLUICE_TEST_REDIS_URL at a server)"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("no free port").port();
    let script = r#"redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
r=$!
while kill -0 "$2" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 1; done
kill "$r" 2>/dev/null"#;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sluice-test-redis")
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start redis-server");
    CHILD.set(Mutex::new(child)).ok();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    while !answers_ping(&addr) {
        if started.elapsed() > Duration::from_secs(10) {
            panic!("redis-server started on port {port} but does not answer PING");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("redis://{addr}")
}

/// A Redis store under a fresh key prefix: (store, url, prefix).
pub async fn redis_store(name: &str) -> (sluice::store::redis::RedisStore, String, String) {
    let url = redis_url().await;
    let prefix = unique_prefix(name);
    let store = sluice::store::redis::RedisStore::connect(&url, &prefix).await.expect("connect to Redis");
    (store, url, prefix)
}

/// Deletes what a test left under its prefix.
pub async fn cleanup_redis(url: String, prefix: String) {
    tokio::task::spawn_blocking(move || delete_keys_with_prefix(&url, &prefix)).await.unwrap();
}

/// For each generic `async fn name<S: Store>(s: &S)` listed, a
/// `redis_backend::name` test (real Redis, own prefix, cleaned up) and an
/// `embedded_backend::name` test (own temp directory). Needs
/// `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, url, prefix) = crate::common::redis_store(stringify!($name)).await;
                    super::$name(&store).await;
                    drop(store);
                    crate::common::cleanup_redis(url, prefix).await;
                }
            )*
        }
        mod embedded_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = sluice::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
    };
}
