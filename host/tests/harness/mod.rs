//! Runs the real `sluice serve` binary for black-box tests, and talks to it
//! over real HTTP.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

/// Where a test server keeps its data.
#[derive(Clone, Debug)]
pub enum StoreKind {
    Embedded(PathBuf),
    Redis { url: String, prefix: String },
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn wasm(crate_name: &str) -> Vec<u8> {
    let path = workspace().join(format!("target/wasm32-wasip2/release/{crate_name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-plugins.sh first", path.display()))
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub store: StoreKind,
    pub admin_token: Option<String>,
    pub extra_args: Vec<String>,
    client: Client,
}

impl Server {
    pub fn start(store: StoreKind) -> Server {
        Server::start_with(store, None, &[])
    }

    pub fn start_with(store: StoreKind, admin_token: Option<&str>, extra_args: &[&str]) -> Server {
        let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let mut server = Server {
            child: None,
            port: free_port(),
            store,
            admin_token: admin_token.map(String::from),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            client,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let store = match &self.store {
            StoreKind::Embedded(dir) => dir.to_string_lossy().into_owned(),
            StoreKind::Redis { url, .. } => url.clone(),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--store", &store])
            .args(["--data-dir", workspace().join("target/sluice-test-server-cache").to_str().unwrap()])
            .args(["--reclaim-idle-ms", "1500"])
            .args(&self.extra_args)
            .env("SLUICE_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(Stdio::null());
        if let StoreKind::Redis { prefix, .. } = &self.store {
            cmd.args(["--redis-prefix", prefix]);
        }
        if let Some(token) = &self.admin_token {
            cmd.args(["--admin-token", token]);
        }
        self.child = Some(cmd.spawn().expect("sluice serve starts"));
        let started = Instant::now();
        loop {
            if let Ok(r) = self.client.get(self.url("/healthz")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sluice serve exited during startup: {status}");
            }
            assert!(started.elapsed() < Duration::from_secs(60), "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no shutdown, no flushing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    fn auth(&self, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.admin_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        json_of(self.auth(self.client.get(self.url(path))).send().unwrap())
    }

    pub fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(self.auth(self.client.put(self.url(path)).json(body)).send().unwrap())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(self.auth(self.client.post(self.url(path)).json(body)).send().unwrap())
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        json_of(self.auth(self.client.delete(self.url(path))).send().unwrap())
    }

    pub fn raw(&self, method: reqwest::Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.auth(self.client.request(method, self.url(path))).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let response = req.send().unwrap();
        let headers = response.headers().clone();
        let (status, value) = json_of(response);
        (status, value, headers)
    }

    /// Uploads a plugin's component under `name`; answers its version.
    pub fn upload(&self, name: &str, crate_name: &str) -> u32 {
        let (status, body, _) = self.raw(reqwest::Method::PUT, &format!("/v1/plugins/{name}"), Some("application/wasm"), wasm(crate_name));
        assert!(status == 201 || status == 200, "upload {name}: {status} {body}");
        body["version"].as_u64().unwrap() as u32
    }

    pub fn put_pipeline(&self, id: &str, spec: &Value) {
        let (status, body) = self.put_json(&format!("/v1/pipelines/{id}"), spec);
        assert!(status == 201 || status == 200, "pipeline {id}: {status} {body}");
    }

    /// Posts events as NDJSON; answers (status, body).
    pub fn ingest_ndjson(&self, pipeline: &str, events: &[Value]) -> (u16, Value) {
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        let (status, value, _) = self.raw(reqwest::Method::POST, &format!("/v1/pipelines/{pipeline}/events"), Some("application/x-ndjson"), body.into_bytes());
        (status, value)
    }

    /// Every output event so far, following cursors.
    pub fn outputs(&self, pipeline: &str) -> Vec<Value> {
        self.page_all(&format!("/v1/pipelines/{pipeline}/output"), |e| e["event"].clone())
    }

    pub fn dlq(&self, pipeline: &str) -> Vec<Value> {
        self.page_all(&format!("/v1/pipelines/{pipeline}/dlq"), |e| e.clone())
    }

    fn page_all(&self, path: &str, pick: impl Fn(&Value) -> Value) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = self.get(&format!("{path}?limit=1000&cursor={cursor}"));
            assert_eq!(status, 200, "{path}: {page}");
            let entries = page["entries"].as_array().unwrap();
            if entries.is_empty() {
                return all;
            }
            all.extend(entries.iter().map(&pick));
            cursor = page["next_cursor"].as_str().unwrap().to_string();
        }
    }

    pub fn metrics(&self, pipeline: &str) -> Value {
        let (status, m) = self.get(&format!("/v1/pipelines/{pipeline}/metrics"));
        assert_eq!(status, 200, "{m}");
        m
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // Leave the shared Redis as it was found.
        if let StoreKind::Redis { url, prefix } = &self.store {
            crate::common::delete_keys_with_prefix(url, prefix);
        }
    }
}

pub fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(json!({"raw": text})) };
    (status, value)
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

/// A redis-server of the test's own, on a port it chooses (so the test may
/// stop and restart it).
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let mut redis = OwnRedis { port: free_port(), child: None, dir: tempfile::tempdir().unwrap() };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            // Persistent (append-only, fsync always) so a restart loses nothing.
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        self.child = Some(child);
        wait_for("own redis to answer", Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", self.port)).ok());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
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
    let url = crate::common::redis_url_sync();
    (StoreKind::Redis { url, prefix: crate::common::unique_prefix(name) }, tempfile::tempdir().unwrap())
}

/// Runs a scenario `fn(StoreKind)` once per store: `<scenario>::embedded`
/// and `<scenario>::redis` (needs `#[macro_use] mod harness;`).
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn embedded() {
                let (store, _dir) = crate::harness::embedded_store();
                super::$scenario(store);
            }
            #[test]
            fn redis() {
                let (store, _dir) = crate::harness::redis_store(stringify!($scenario));
                super::$scenario(store);
            }
        }
    };
}
