//! [`Server`]: the real `sluice serve` binary as a child process, and the
//! HTTP calls the tests make to it.
//!
//! Owns: starting, killing and restarting the process, and reading its
//! answers as JSON. May use: the crate root (binary, plugins, stores),
//! `sluice-testkit`, `reqwest`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::{free_port, sluice_bin, wasm, workspace, StoreKind};

/// A running `sluice serve` on a port of its own, killed when dropped (and
/// its Redis keys, if any, deleted).
pub struct Server {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Where it keeps its data (kept across [`Server::restart`]).
    pub store: StoreKind,
    /// Sent as the bearer token of every request, when set.
    pub admin_token: Option<String>,
    /// More `sluice serve` flags, kept across restarts.
    pub extra_args: Vec<String>,
    /// Where the process's stderr (its log, and any panic) is appended, when
    /// set; else it is inherited.
    pub log_file: Option<PathBuf>,
    /// More environment variables of the process (after the harness's own,
    /// so `SLUICE_LOG` can be raised), kept across restarts.
    pub envs: Vec<(String, String)>,
    client: Client,
}

impl Server {
    /// Starts a server on `store` in open mode (no tokens), and waits until
    /// `/healthz` answers.
    pub fn start(store: StoreKind) -> Server {
        Server::start_with(store, None, &[])
    }

    /// [`Server::start`] with an admin token and more `sluice serve` flags.
    pub fn start_with(store: StoreKind, admin_token: Option<&str>, extra_args: &[&str]) -> Server {
        Server::start_full(store, admin_token, extra_args, None)
    }

    /// [`Server::start_with`] with the process's stderr appended to
    /// `log_file` (kept across restarts), so a test can read what it logged
    /// (at `SLUICE_LOG`'s level, `error` by default) and find panics, which
    /// are printed to stderr whatever the level.
    pub fn start_logging(store: StoreKind, extra_args: &[&str], log_file: &Path) -> Server {
        Server::start_full(store, None, extra_args, Some(log_file))
    }

    /// [`Server::start_logging`] with more environment variables for the
    /// process: what a sink's `url_env`/`headers_env` name, or `SLUICE_LOG`.
    pub fn start_with_env(store: StoreKind, envs: &[(&str, &str)], log_file: &Path) -> Server {
        let mut server = Server::unlaunched(store, None, &[], Some(log_file));
        server.envs = envs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        server.launch();
        server
    }

    fn start_full(store: StoreKind, admin_token: Option<&str>, extra_args: &[&str], log_file: Option<&Path>) -> Server {
        let mut server = Server::unlaunched(store, admin_token, extra_args, log_file);
        server.launch();
        server
    }

    fn unlaunched(store: StoreKind, admin_token: Option<&str>, extra_args: &[&str], log_file: Option<&Path>) -> Server {
        let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Server {
            child: None,
            port: free_port(),
            store,
            admin_token: admin_token.map(String::from),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log_file: log_file.map(Path::to_path_buf),
            envs: Vec::new(),
            client,
        }
    }

    fn launch(&mut self) {
        let store = self.store.store_arg();
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--store", &store])
            .args(["--data-dir", workspace().join("target/sluice-test-server-cache").to_str().unwrap()])
            .args(["--reclaim-idle-ms", "1500"])
            .args(&self.extra_args)
            .env("SLUICE_LOG", std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "error".into()))
            .envs(self.envs.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null());
        if let Some(prefix) = self.store.prefix() {
            cmd.args(["--redis-prefix", prefix]);
        }
        if let Some(token) = &self.admin_token {
            cmd.args(["--admin-token", token]);
        }
        if let Some(path) = &self.log_file {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
            cmd.stderr(file.unwrap_or_else(|e| panic!("server log {}: {e}", path.display())));
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

    /// The server process's id (to read its memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The HTTP client this server's helpers use (for requests they don't cover).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The full URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Whether the process is still running (it has not exited or been killed).
    pub fn is_alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().is_ok_and(|status| status.is_none()))
    }

    /// SIGKILL: no shutdown, no flushing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Kills the process (SIGKILL) and starts it again on the same port and
    /// store: a crash and a recovery.
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

    /// GET `path`; answers (status, JSON body).
    pub fn get(&self, path: &str) -> (u16, Value) {
        json_of(self.auth(self.client.get(self.url(path))).send().unwrap())
    }

    /// PUT a JSON body; answers (status, JSON body).
    pub fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(self.auth(self.client.put(self.url(path)).json(body)).send().unwrap())
    }

    /// POST a JSON body; answers (status, JSON body).
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        json_of(self.auth(self.client.post(self.url(path)).json(body)).send().unwrap())
    }

    /// DELETE `path`; answers (status, JSON body).
    pub fn delete(&self, path: &str) -> (u16, Value) {
        json_of(self.auth(self.client.delete(self.url(path))).send().unwrap())
    }

    /// Any request with any body, for what the JSON helpers cannot say
    /// (content types, wasm uploads); answers the headers too.
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

    /// Runs `sluice catalog <verb> <dir>` against this server; answers
    /// whether it succeeded and what it printed (stdout, then stderr).
    pub fn catalog(&self, verb: &str, dir: &std::path::Path) -> (bool, String) {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["catalog", verb]).arg(dir).args(["--server", &self.url("")]);
        if let Some(token) = &self.admin_token {
            cmd.args(["--token", token]);
        }
        let out = cmd.output().expect("sluice catalog runs");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// Uploads a plugin's component under `name`; answers its version.
    pub fn upload(&self, name: &str, crate_name: &str) -> u32 {
        self.upload_bytes(name, wasm(crate_name))
    }

    /// Uploads component bytes (e.g. a Python or JavaScript stage's, see
    /// [`crate::sdk_wasm`]) under `name`; answers its version.
    pub fn upload_bytes(&self, name: &str, component: Vec<u8>) -> u32 {
        let (status, body, _) = self.raw(reqwest::Method::PUT, &format!("/v1/plugins/{name}"), Some("application/wasm"), component);
        assert!(status == 201 || status == 200, "upload {name}: {status} {body}");
        body["version"].as_u64().unwrap() as u32
    }

    /// Creates or replaces pipeline `id`, asserting it was accepted.
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

    /// Every DLQ entry so far, following cursors.
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

    /// The sum of `metric` over its series in `GET /metrics` whose labels
    /// include `label` (e.g. `pipeline="web"`); 0 when never counted.
    pub fn prometheus_sum(&self, metric: &str, label: &str) -> f64 {
        let text = self.auth(self.client.get(self.url("/metrics"))).send().expect("GET /metrics").text().expect("a text body");
        text.lines()
            .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with('{') && line.contains(label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The pipeline's metrics, asserting they answer 200.
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
        if let StoreKind::Redis { url, prefix } | StoreKind::Cluster { url, prefix } = &self.store {
            sluice_testkit::delete_keys_with_prefix(url, prefix);
        }
    }
}

/// An HTTP answer as (status, JSON body): `Null` when empty, `{"raw": text}`
/// when not JSON.
pub fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(json!({"raw": text})) };
    (status, value)
}
