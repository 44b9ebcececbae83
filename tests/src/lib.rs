//! The harness of the black-box tests (`tests/tests/*.rs`): they see Sluice
//! only as a user does, through the real `sluice` binary, its HTTP API and
//! its CLI.
//!
//! Owns: finding the binary and the built plugins, the stores a test server
//! runs on, [`Server`] (a `sluice serve` process and an HTTP client for
//! it), and the [`chaos`] soak built on them. May use: `sluice-testkit` (Redis), `reqwest`, `serde_json`,
//! `tempfile`. Never the host crate: a test that needs its internals belongs
//! in `host/tests/`.
//!
//! The binary is not built by `cargo test -p sluice-blackbox-tests` (cargo
//! only builds a package's own binaries for its tests): build it first with
//! `cargo build --release -p sluice` (`scripts/test.sh` does), or point
//! `SLUICE_BIN` at one.

pub mod chaos;
mod server;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

pub use server::{json_of, Server};

/// Where a test server keeps its data.
#[derive(Clone, Debug)]
pub enum StoreKind {
    /// `--store <dir>`: the embedded (redb) store in this directory.
    Embedded(PathBuf),
    /// `--store <url> --redis-prefix <prefix>`: keys of its own on a Redis
    /// (deleted when the [`Server`] is dropped).
    Redis { url: String, prefix: String },
    /// `--store redis+cluster://… --redis-prefix <prefix>`: keys of its own
    /// on the Redis Cluster this test binary shares
    /// ([`sluice_testkit::PrivateCluster::shared`]; deleted when the
    /// [`Server`] is dropped).
    Cluster { url: String, prefix: String },
}

impl StoreKind {
    /// The `--store` value.
    pub fn store_arg(&self) -> String {
        match self {
            StoreKind::Embedded(dir) => dir.to_string_lossy().into_owned(),
            StoreKind::Redis { url, .. } | StoreKind::Cluster { url, .. } => url.clone(),
        }
    }

    /// The `--redis-prefix` value, on Redis and on a cluster.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            StoreKind::Embedded(_) => None,
            StoreKind::Redis { prefix, .. } | StoreKind::Cluster { prefix, .. } => Some(prefix),
        }
    }
}

/// A port nothing listens on right now, for a test server of its own.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The workspace root (this package lives in `<workspace>/tests`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of a plugin's built component (by crate name, e.g. `bot_filter`).
pub fn wasm_path(crate_name: &str) -> PathBuf {
    workspace().join(format!("target/wasm32-wasip2/release/{crate_name}.wasm"))
}

/// A plugin's built component, to upload.
pub fn wasm(crate_name: &str) -> Vec<u8> {
    let path = wasm_path(crate_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-plugins.sh first", path.display()))
}

/// The languages with an SDK besides Rust, as `target/plugins-<dir>` names
/// them: `py` (plugin-sdk/python) and `js` (plugin-sdk/js).
pub const SDK_LANGS: [&str; 2] = ["py", "js"];

/// Where a Python or JavaScript stage's component is built
/// (`scripts/build-sdk-plugins.sh`): `target/plugins-<lang>/<name>.wasm`.
pub fn sdk_wasm_path(lang: &str, name: &str) -> PathBuf {
    workspace().join(format!("target/plugins-{lang}/{name}.wasm"))
}

/// A Python or JavaScript stage's built component, to upload.
pub fn sdk_wasm(lang: &str, name: &str) -> Vec<u8> {
    let path = sdk_wasm_path(lang, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-sdk-plugins.sh first", path.display()))
}

/// The `sluice` binary the tests run: `SLUICE_BIN` if set, else the one cargo
/// built next to this test executable (`<target>/<profile>/sluice`, the test
/// being `<target>/<profile>/deps/<test>-<hash>`). Panics with what to do
/// when it is missing, or older than one of its sources (a stale binary
/// would test old code).
pub fn sluice_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_sluice_bin).clone()
}

fn find_sluice_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "SLUICE_BIN={} is not a file: build it first: cargo build --release -p sluice", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
    let Some(profile_dir) = exe.parent().and_then(Path::parent) else {
        panic!("{}: not under <target>/<profile>/deps; set SLUICE_BIN to the sluice binary", exe.display())
    };
    let bin = profile_dir.join(format!("sluice{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!("{}: {e}; build it first: cargo build --release -p sluice (or set SLUICE_BIN)", bin.display())
    });
    if let Some(source) = newer_source(&bin, built) {
        panic!(
            "{} is older than {}: build it first: cargo build --release -p sluice (or set SLUICE_BIN)",
            bin.display(),
            source.display()
        );
    }
    bin
}

/// A source of the binary changed after it was built, if there is one: the
/// sources are those cargo lists in the binary's dep-info (`sluice.d` beside
/// it, the host's files, not registry crates), so a file cargo would not
/// rebuild for never counts. Only sources in this workspace count: a target
/// directory copied from another checkout keeps a `sluice.d` naming that
/// checkout's files (`cargo test --no-run` rebuilds the binary without
/// rewriting it). No dep-info, no check.
fn newer_source(bin: &Path, built: SystemTime) -> Option<PathBuf> {
    let dep_info = std::fs::read_to_string(bin.with_extension("d")).ok()?;
    let root = std::fs::canonicalize(workspace()).unwrap_or_else(|_| workspace());
    dep_info_sources(&dep_info)
        .into_iter()
        .filter(|p| p.starts_with(&root))
        .find(|p| std::fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|m| m > built))
}

/// The sources a make-style dep-info line lists (`target: a b c`); a space
/// inside a path is escaped as `\ `.
fn dep_info_sources(dep_info: &str) -> Vec<PathBuf> {
    let Some((_, sources)) = dep_info.lines().next().and_then(|l| l.split_once(": ")) else { return Vec::new() };
    sources.replace("\\ ", "\0").split(' ').filter(|p| !p.is_empty()).map(|p| PathBuf::from(p.replace('\0', " "))).collect()
}

/// Polls `check` until it answers `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh embedded store (its directory lives as long as the `TempDir`).
pub fn embedded_store() -> (StoreKind, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (StoreKind::Embedded(dir.path().join("store")), dir)
}

/// The test Redis under a key prefix of its own (the `TempDir` is unused,
/// so both kinds have the same shape).
pub fn redis_store(name: &str) -> (StoreKind, tempfile::TempDir) {
    let url = sluice_testkit::redis_url_sync();
    (StoreKind::Redis { url, prefix: sluice_testkit::unique_prefix(name) }, tempfile::tempdir().unwrap())
}

/// The test binary's shared Redis Cluster under a key prefix of its own
/// (the cluster starts on first use; the `TempDir` is unused, as for Redis).
pub fn cluster_store(name: &str) -> (StoreKind, tempfile::TempDir) {
    let url = sluice_testkit::PrivateCluster::shared().store_url();
    (StoreKind::Cluster { url, prefix: sluice_testkit::unique_prefix(name) }, tempfile::tempdir().unwrap())
}

/// A fresh store of the kind named (`embedded`, `redis` or `cluster`), for
/// the scenario macros below.
pub fn store_named(kind: &str, scenario: &str) -> (StoreKind, tempfile::TempDir) {
    match kind {
        "embedded" => embedded_store(),
        "redis" => redis_store(scenario),
        "cluster" => cluster_store(scenario),
        other => panic!("no store kind {other:?}"),
    }
}

/// Runs a scenario `fn(StoreKind)` once per store kind listed, as
/// `<scenario>::<kind>`.
#[macro_export]
macro_rules! on_stores {
    ($scenario:ident: $($kind:ident),+) => {
        mod $scenario {
            $(
                #[test]
                fn $kind() {
                    let (store, _dir) = $crate::store_named(stringify!($kind), stringify!($scenario));
                    super::$scenario(store);
                }
            )+
        }
    };
}

/// Runs a scenario `fn(StoreKind)` once per store, the Redis Cluster
/// included: `<scenario>::embedded`, `<scenario>::redis` and
/// `<scenario>::cluster`.
#[macro_export]
macro_rules! on_every_store {
    ($scenario:ident) => {
        $crate::on_stores!($scenario: embedded, redis, cluster);
    };
}

/// Runs a scenario `fn(StoreKind)` once per store: `<scenario>::embedded`
/// and `<scenario>::redis`.
#[macro_export]
macro_rules! on_both_stores {
    ($scenario:ident) => {
        $crate::on_stores!($scenario: embedded, redis);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_each_source_with_escaped_spaces_kept() {
        let sources = dep_info_sources("/t/release/sluice: /w/host/src/main.rs /w/my\\ dir/lib.rs\n");
        assert_eq!(sources, vec![PathBuf::from("/w/host/src/main.rs"), PathBuf::from("/w/my dir/lib.rs")]);
        assert!(dep_info_sources("").is_empty());
    }
}
