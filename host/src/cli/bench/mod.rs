//! `sluice bench`: the load benchmark. Starts `sluice serve` (this same
//! binary) on the chosen store, uploads the example plugins, creates the
//! 3-stage pipeline bot-filter → url-parts → pii-redact, drives it with HTTP
//! keep-alive clients posting NDJSON batches for a fixed time, and reports
//! events/s, ingest latency, event-to-output latency and the server's peak RSS;
//! with `--sink KIND`, the same pipeline delivering into one sink (`sink`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

mod cpu;
mod output_tail;
mod sink;
use cpu::CpuReading;
use output_tail::{read_outputs, OutputTail};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The store for the server under test: a redis:// URL, a Redis Cluster
    /// (redis+cluster://host:port[,host:port…]), or `embedded` (a fresh
    /// temporary directory).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub store: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Concurrent keep-alive HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Events per request (NDJSON).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Target events/s over all clients (0: as fast as the server takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Where the plugin components are.
    #[arg(long, default_value = "target/wasm32-wasip2/release")]
    pub plugins: PathBuf,
    /// Also run the backlog check: queue this many events with the workers
    /// stalled and report the server's RSS.
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// Also run at full speed with the windows of the windows issue (a
    /// tumbling count/avg by URL path over 10,000 paths and "online now")
    /// and report the share of the windowless throughput kept.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub windows: bool,
    /// Seconds to keep measuring the output while the backlog drains after
    /// the producers stop (the processing throughput without ingest).
    #[arg(long, default_value_t = 8)]
    pub drain: u64,
    /// Events queued for the processing-throughput runs (with and without
    /// windows) that compare the two.
    #[arg(long, default_value_t = 900_000)]
    pub drain_events: u64,
    /// Run only the processing-throughput comparison (with and without windows).
    #[arg(long)]
    pub processing_only: bool,
    /// Worker processes that drain the queue in the processing-throughput
    /// runs (Redis only), each with the default worker tasks; the bench
    /// prints how many events each one processed.
    #[arg(long, default_value_t = 1)]
    pub worker_processes: usize,
    /// Passed to the servers under test (`sluice serve --redis-wait-replicas`):
    /// replicas each enqueue and completion waits for.
    #[arg(long, default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// Run only the sink benchmark for this kind (`postgres`, `http`,
    /// `nats`): the pipeline delivering into it at full speed, then at
    /// half that rate for event-to-delivery latency.
    #[arg(long)]
    pub sink: Option<String>,
    /// The destination for `--sink postgres` or `nats` (default
    /// postgres://postgres@127.0.0.1:5432/test, nats://127.0.0.1:4222;
    /// `http` uses a receiver inside the bench).
    #[arg(long)]
    pub sink_url: Option<String>,
}

/// The pipeline every run drives.
const PIPELINE: &str = "bench";

/// `--redis-wait-replicas` of this bench run, handed to every server it starts.
static WAIT_REPLICAS: AtomicU32 = AtomicU32::new(0);

struct ServerUnderTest {
    child: Child,
    base: String,
    /// The store (embedded) and the plugin cache; `None` once handed on.
    dir: Option<tempfile::TempDir>,
    /// On Redis: the URL and this run's key prefix, deleted at the end.
    redis: Option<(String, String)>,
}

impl ServerUnderTest {
    /// Kills the server and hands its directory on (for a next server on
    /// the same store).
    fn stop_keeping_store(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.child.kill()?;
        self.child.wait()?;
        self.dir.take().context("the store directory was handed on already")
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A run leaves up to gigabytes in Redis (outputs of a million
        // events); the store stays with the directory if it was handed on.
        if let (Some((url, prefix)), Some(_)) = (&self.redis, &self.dir) {
            if let Err(e) = delete_redis_prefix(url, prefix) {
                eprintln!("could not delete the bench's Redis keys ({prefix}*): {e}");
            }
        }
    }
}

/// Deletes every key starting with `prefix`: the bench's keys sit under two
/// hash tags, the pipeline's and the catalog's, so on a cluster each tag's
/// keys are on the master of its slot (`SCAN` goes there).
fn delete_redis_prefix(url: &str, prefix: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut conn = crate::store::redis::connect_url(url).await?;
        for tag in [PIPELINE, "_catalog"] {
            let under = format!("{prefix}:{{{tag}}}");
            let mut cursor: u64 = 0;
            loop {
                let scan = ::redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{under}*")).arg("COUNT").arg(1000).clone();
                let (next, keys): (u64, Vec<String>) = ::redis::from_owned_redis_value(conn.on_master_of(&under, &scan).await?)?;
                if !keys.is_empty() {
                    let _: i64 = ::redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    })
}

fn start_server(store: &str) -> anyhow::Result<ServerUnderTest> {
    start_server_in(store, tempfile::tempdir()?, None)
}

/// Starts `sluice serve` with its store in `dir` (embedded) or under a key
/// prefix named after `dir` (Redis), so a second server can reuse it.
fn start_server_in(store: &str, dir: tempfile::TempDir, workers: Option<usize>) -> anyhow::Result<ServerUnderTest> {
    let prefix = format!("bench-{}", dir.path().file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()));
    let data_dir = dir.path().join("data");
    let mut server = start_server_as(store, dir, workers, &prefix, &data_dir)?;
    server.redis = (store != "embedded").then(|| (store.to_string(), prefix));
    Ok(server)
}

/// One more worker process on a Redis store another process started in
/// `dir` uses (same key prefix; that process deletes the keys at the end),
/// sharing its compiled-plugin cache so it starts as fast.
fn start_sibling(store: &str, dir: &std::path::Path) -> anyhow::Result<ServerUnderTest> {
    if store == "embedded" {
        bail!("only processes on Redis share a store");
    }
    let prefix = format!("bench-{}", dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()));
    start_server_as(store, tempfile::tempdir()?, None, &prefix, &dir.join("data"))
}

fn start_server_as(store: &str, dir: tempfile::TempDir, workers: Option<usize>, prefix: &str, data_dir: &std::path::Path) -> anyhow::Result<ServerUnderTest> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let store_arg = if store == "embedded" { dir.path().join("store").to_string_lossy().into_owned() } else { store.to_string() };
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--store", &store_arg])
        .args(["--redis-prefix", prefix])
        .args(["--redis-wait-replicas", &WAIT_REPLICAS.load(Ordering::Relaxed).to_string()])
        .args(["--data-dir", &data_dir.to_string_lossy()])
        .env("SLUICE_LOG", "error")
        .stdout(Stdio::null());
    if let Some(n) = workers {
        command.args(["--workers", &n.to_string()]);
    }
    let child = command.spawn().context("starting sluice serve")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not come up");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ServerUnderTest { child, base, dir: Some(dir), redis: None })
}

fn setup(base: &str, plugins: &std::path::Path, pipeline: &str, spec: &Value) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::new();
    for name in ["bot-filter", "url-parts", "pii-redact", "spin"] {
        let file = plugins.join(format!("{}.wasm", name.replace('-', "_")));
        let bytes = std::fs::read(&file).with_context(|| format!("{} (run scripts/build-plugins.sh)", file.display()))?;
        let r = client.put(format!("{base}/v1/plugins/{name}")).body(bytes).send()?;
        if !r.status().is_success() {
            bail!("uploading {name}: {}", r.text()?);
        }
    }
    let r = client.put(format!("{base}/v1/pipelines/{pipeline}")).json(spec).send()?;
    if !r.status().is_success() {
        bail!("creating {pipeline}: {}", r.text()?);
    }
    Ok(())
}

/// A realistic ~300-byte page view; `sent_at` lets the reader time it.
fn page_view(n: u64, sent_at: i64) -> String {
    let mut line = String::with_capacity(320);
    write_page_view(&mut line, n, sent_at);
    line
}

/// Appends [`page_view`]'s text to `out` (the load clients build a body
/// without an allocation per event).
fn write_page_view(out: &mut String, n: u64, sent_at: i64) {
    use std::fmt::Write as _;
    let ua = if n % 11 == 0 { "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)" } else { "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36" };
    let _ = write!(
        out,
        r#"{{"type":"page_view","source":"web","data":{{"url":"https://shop{}.example.com/products/{}?ref=newsletter&utm_campaign=w{}","ua":"{ua}","email":"user{}@example.com","user_id":"u{}","ms":{},"sent_at":{sent_at}}}}}"#,
        n % 50, n % 10_000, n % 7, n % 100_000, n % 100_000, n % 900
    );
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()).map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()).map_or(0.0, |kb| kb / 1024.0)
}

struct LoadResult {
    events_per_s: f64,
    output_per_s: f64,
    /// Output rate after the producers stop, while the queue drains: the
    /// processing throughput without ingest competing for the cores.
    drain_per_s: f64,
    ingest_us: Histogram<u64>,
    e2e_ms: Histogram<u64>,
    refused: u64,
}

async fn load(base: &str, tail: OutputTail, args: &BenchArgs, rate: u64) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let ingest_us = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?));
    let url = format!("{base}/v1/pipelines/bench/events");
    let per_client_interval = (rate > 0).then(|| Duration::from_secs_f64(args.batch as f64 * args.clients as f64 / rate as f64));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, url, stop, accepted, refused, hist) = (client.clone(), url.clone(), stop.clone(), accepted.clone(), refused.clone(), ingest_us.clone());
        let batch = args.batch as u64;
        tasks.push(tokio::spawn(async move {
            let mut n = c as u64 * 1_000_000_000;
            let mut next = tokio::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(interval) = per_client_interval {
                    tokio::time::sleep_until(next).await;
                    next += interval;
                }
                let now = crate::domain::now_ms();
                let mut body = String::with_capacity(batch as usize * 400);
                for _ in 0..batch {
                    write_page_view(&mut body, n, now);
                    body.push('\n');
                    n += 1;
                }
                let started = Instant::now();
                match client.post(&url).header("content-type", "application/x-ndjson").body(body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let _ = r.bytes().await;
                        hist.lock().saturating_record(started.elapsed().as_micros() as u64);
                        accepted.fetch_add(batch, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let _ = r.bytes().await;
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    // The reader tails the output and times each event from send to output.
    let e2e_ms = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000, 3)?));
    let outputs = Arc::new(AtomicU64::new(0));
    let reader = {
        let (client, stop, hist, outputs) = (client.clone(), stop_reader.clone(), e2e_ms.clone(), outputs.clone());
        tokio::spawn(async move {
            let mut cursor = String::new();
            let mut redis = None;
            while !stop.load(Ordering::Relaxed) {
                let sent = match read_outputs(&tail, &client, &mut redis, &mut cursor).await {
                    Ok(sent) => sent,
                    Err(e) => {
                        eprintln!("  reading the outputs: {e}");
                        redis = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let now = crate::domain::now_ms();
                {
                    let mut hist = hist.lock();
                    for sent_at in sent.iter().flatten() {
                        hist.saturating_record((now - sent_at).max(1) as u64);
                    }
                }
                outputs.fetch_add(sent.len() as u64, Ordering::Relaxed);
                if sent.len() < 1000 && matches!(tail, OutputTail::Http { .. }) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let warmup = Duration::from_secs(2);
    tokio::time::sleep(warmup).await;
    let (a0, o0, t0) = (accepted.load(Ordering::Relaxed), outputs.load(Ordering::Relaxed), Instant::now());
    ingest_us.lock().reset();
    e2e_ms.lock().reset();
    let mut last_report = Instant::now();
    while t0.elapsed() < Duration::from_secs(args.duration) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last_report.elapsed() >= Duration::from_secs(5) {
            let secs = t0.elapsed().as_secs_f64();
            eprintln!("  {:>4.0}s: {:>8.0} events/s in, {:>8.0} out", secs, (accepted.load(Ordering::Relaxed) - a0) as f64 / secs, (outputs.load(Ordering::Relaxed) - o0) as f64 / secs);
            last_report = Instant::now();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (a1, o1) = (accepted.load(Ordering::Relaxed), outputs.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    // Drain: the reader goes on while the queue empties (only meaningful
    // when the queue has a backlog, i.e. at full speed).
    let drain_for = Duration::from_secs(args.drain.min(args.duration));
    let (o2, t2) = (outputs.load(Ordering::Relaxed), Instant::now());
    let mut drained = 0;
    while t2.elapsed() < drain_for && o2 + drained < a1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drained = outputs.load(Ordering::Relaxed) - o2;
    }
    let drain_secs = t2.elapsed().as_secs_f64().max(0.001);
    stop_reader.store(true, Ordering::Relaxed);
    let _ = reader.await;
    let ingest_us = ingest_us.lock().clone();
    let e2e_ms = e2e_ms.lock().clone();
    Ok(LoadResult {
        events_per_s: (a1 - a0) as f64 / secs,
        output_per_s: (o1 - o0) as f64 / secs,
        drain_per_s: drained as f64 / drain_secs,
        ingest_us,
        e2e_ms,
        refused: refused.load(Ordering::Relaxed),
    })
}

fn chain_spec(max_queue_depth: u64) -> Value {
    json!({"max_queue_depth": max_queue_depth, "stages": [
        {"name": "drop-bots", "plugin": "bot-filter"},
        {"name": "parts", "plugin": "url-parts"},
        {"name": "redact", "plugin": "pii-redact", "config": {"fields": ["data.email"], "mode": "hash", "salt": "s"}}
    ]})
}

/// The chain plus the windows of the issue: page views per URL path (10,000
/// of them) per 10 s with their average load time, and "online now".
fn windowed_spec(max_queue_depth: u64) -> Value {
    let mut spec = chain_spec(max_queue_depth);
    spec["windows"] = json!([
        {"name": "views_per_path", "kind": "tumbling", "size_ms": 10_000, "group_by": "data.path", "allowed_lateness_ms": 60_000,
         "aggregates": [{"op": "count"}, {"op": "avg", "field": "data.ms"}]},
        {"name": "online_now", "kind": "sliding", "size_ms": 300_000, "slide_ms": 1000,
         "aggregates": [{"op": "count_distinct", "field": "data.user_id"}]}
    ]);
    spec
}

/// Processing throughput with and without the windows: a backlog queued,
/// then timed while the workers empty it with nothing else running.
fn processing_comparison(args: &BenchArgs) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    for (label, spec) in [("without windows", chain_spec(1_000_000)), ("with windows", windowed_spec(1_000_000))] {
        eprintln!("processing {} queued events {label} ...", args.drain_events);
        let rate = drain_run(&args.store, args, &spec)?;
        println!("processing throughput {label:<16} {rate:>8.0} events/s ({} events queued, then drained)", args.drain_events);
        rates.push(rate);
    }
    println!("windows keep {:.0}% of the processing throughput without them", 100.0 * rates[1] / rates[0].max(1.0));
    Ok(())
}

/// Processing throughput alone: an API-only server (`--workers 0`) queues
/// `--drain-events` events; then a server with workers on the same store
/// empties the queue, timed from its first output to the last.
fn drain_run(store: &str, args: &BenchArgs, spec: &Value) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let keep = dir.path().to_path_buf();
    let filler = start_server_in(store, dir, Some(0))?;
    setup(&filler.base, &args.plugins, PIPELINE, spec)?;
    let base = filler.base.clone();
    let client = reqwest::blocking::Client::new();
    let processed = || -> anyhow::Result<u64> {
        let m: Value = client.get(format!("{base}/v1/pipelines/bench/metrics")).send()?.json()?;
        Ok(m["processed"].as_u64().unwrap_or(0))
    };
    let redis_url = filler.redis.as_ref().map(|(url, _)| url.clone());
    let fill_cpu = CpuReading::now(&[filler.child.id()], redis_url.as_deref())?;
    let queued = AtomicU64::new(0);
    let requests = args.drain_events.div_ceil(args.batch as u64);
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..args.clients.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let client = reqwest::blocking::Client::new();
                    loop {
                        let r = next.fetch_add(1, Ordering::Relaxed);
                        if r >= requests {
                            return Ok(());
                        }
                        let now = crate::domain::now_ms();
                        let first = r * args.batch as u64;
                        let body: String = (first..first + args.batch as u64).map(|n| page_view(n, now) + "\n").collect();
                        let answer = client.post(format!("{base}/v1/pipelines/bench/events")).header("content-type", "application/x-ndjson").body(body).send()?;
                        if answer.status().as_u16() != 202 {
                            bail!("ingest refused while queueing: {}", answer.text()?);
                        }
                        queued.fetch_add(answer.json::<Value>()?["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        }
        Ok(())
    })?;
    let queued = queued.into_inner();
    if processed()? != 0 {
        bail!("the API-only server processed events");
    }
    let (ingest_us, ingest_redis_us) = fill_cpu.per_event_us(&CpuReading::now(&[filler.child.id()], redis_url.as_deref())?, queued);
    // Stop the filler (the embedded store is one process's) and start the workers.
    let dir = filler.stop_keeping_store()?;
    anyhow::ensure!(dir.path() == keep.as_path(), "the store directory changed hands");
    // More worker processes start together with the first, from the same
    // plugin cache; each one's share is counted from the moment all are up.
    let (workers, siblings) = std::thread::scope(|scope| -> anyhow::Result<(ServerUnderTest, Vec<ServerUnderTest>)> {
        let started: Vec<_> = (1..args.worker_processes.max(1)).map(|_| scope.spawn(|| start_sibling(store, &keep))).collect();
        let first = start_server_in(store, dir, None)?;
        let siblings = started.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("starting a worker process panicked"))?).collect::<anyhow::Result<_>>()?;
        Ok((first, siblings))
    })?;
    let bases: Vec<String> = std::iter::once(&workers).chain(&siblings).map(|s| s.base.clone()).collect();
    let shares_before = bases.iter().map(|b| processed_here(&client, b)).collect::<anyhow::Result<Vec<u64>>>()?;
    let base = workers.base.clone();
    let processed = || -> anyhow::Result<u64> {
        let m: Value = client.get(format!("{base}/v1/pipelines/bench/metrics")).send()?.json()?;
        Ok(m["processed"].as_u64().unwrap_or(0))
    };
    // Timed from the first finished events (startup and compiling the
    // plugins are not processing).
    let started = Instant::now();
    let mut p0 = processed()?;
    while p0 == 0 {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("nothing was processed in 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
        p0 = processed()?;
    }
    let t0 = Instant::now();
    let pids: Vec<u32> = std::iter::once(&workers).chain(&siblings).map(|s| s.child.id()).collect();
    let drain_cpu = CpuReading::now(&pids, redis_url.as_deref())?;
    let mut p1 = p0;
    while p1 < queued {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("the queue did not drain in 10 minutes ({p1} of {queued})");
        }
        std::thread::sleep(Duration::from_millis(50));
        p1 = processed()?;
    }
    let rate = (p1 - p0) as f64 / t0.elapsed().as_secs_f64();
    let (work_us, work_redis_us) = drain_cpu.per_event_us(&CpuReading::now(&pids, redis_url.as_deref())?, p1 - p0);
    println!(
        "  CPU per event: ingest {ingest_us:.2} µs in sluice + {ingest_redis_us:.2} µs in Redis (masters); \
         processing {work_us:.2} µs in sluice + {work_redis_us:.2} µs in Redis (masters)"
    );
    if let Some((url, prefix)) = &workers.redis {
        let m: Value = client.get(format!("{base}/v1/pipelines/{PIPELINE}/metrics")).send()?.json()?;
        let emitted = m["emitted"].as_u64().unwrap_or(0);
        let bytes = cpu::output_bytes_per_event(url, &format!("{prefix}:{{{PIPELINE}}}:output"), emitted)?;
        println!("  output stream: {bytes:.0} bytes of Redis memory per output event ({emitted} events)");
    }
    if !siblings.is_empty() {
        let mut shares = Vec::new();
        for (base, before) in bases.iter().zip(&shares_before) {
            shares.push(processed_here(&client, base)?.saturating_sub(*before));
        }
        let total: u64 = shares.iter().sum::<u64>().max(1);
        let shares: Vec<String> = shares.iter().map(|n| format!("{n} ({:.0}%)", 100.0 * *n as f64 / total as f64)).collect();
        println!("  {} worker processes: events processed by each: {}", shares.len(), shares.join(", "));
    }
    Ok(rate)
}

/// Events this one process finished (its Prometheus counter
/// `sluice_events_processed_total`; the pipeline metrics count the store's,
/// shared by every process).
fn processed_here(client: &reqwest::blocking::Client, base: &str) -> anyhow::Result<u64> {
    let text = client.get(format!("{base}/metrics")).send()?.text()?;
    let line = format!("sluice_events_processed_total{{pipeline=\"{PIPELINE}\"}} ");
    // Absent until the process finished its first batch.
    Ok(text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0) as u64)
}

fn print(label: &str, r: &LoadResult) {
    println!(
        "{label:<28} {:>8.0} events/s in  {:>8.0} out/s  (draining: {:>6.0} out/s)  ingest p50 {:>6.1} ms p99 {:>7.1} ms  event-to-output p50 {:>6} ms p99 {:>6} ms  (429/errors: {})",
        r.events_per_s,
        r.output_per_s,
        r.drain_per_s,
        r.ingest_us.value_at_quantile(0.5) as f64 / 1000.0,
        r.ingest_us.value_at_quantile(0.99) as f64 / 1000.0,
        r.e2e_ms.value_at_quantile(0.5),
        r.e2e_ms.value_at_quantile(0.99),
        r.refused
    );
}

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    WAIT_REPLICAS.store(args.redis_wait_replicas, Ordering::Relaxed);
    println!(
        "sluice bench: store {}, {} clients × {} events/request, {} s per run, redis-wait-replicas {}",
        args.store, args.clients, args.batch, args.duration, args.redis_wait_replicas
    );
    if args.processing_only {
        return processing_comparison(&args).map(|_| 0);
    }
    if let Some(kind) = &args.sink {
        return sink::run(&rt, &args, kind).map(|_| 0);
    }

    let server = start_server(&args.store)?;
    setup(&server.base, &args.plugins, PIPELINE, &chain_spec(1_000_000))?;
    eprintln!("max throughput run ...");
    let max = rt.block_on(load(&server.base, OutputTail::of(&server, PIPELINE), &args, args.rate))?;
    print("max throughput", &max);
    let half_rate = if args.rate > 0 { args.rate / 2 } else { (max.output_per_s.min(max.events_per_s) / 2.0) as u64 };
    drop(server);

    if args.windows {
        let server = start_server(&args.store)?;
        setup(&server.base, &args.plugins, PIPELINE, &windowed_spec(1_000_000))?;
        eprintln!("max throughput run with windows ...");
        let windowed = rt.block_on(load(&server.base, OutputTail::of(&server, PIPELINE), &args, args.rate))?;
        print("max throughput + windows", &windowed);
        let groups = reqwest::blocking::get(format!("{}/v1/pipelines/bench/windows/views_per_path", server.base))?
            .json::<Value>()?["results"]
            .as_array()
            .map_or(0, |r| r.iter().map(|w| w["group"].to_string()).collect::<std::collections::HashSet<_>>().len());
        drop(server);
        println!(
            "under load: windows keep {:.0}% of the output rate ({:.0} vs {:.0} out/s; {groups} URL paths seen)",
            100.0 * windowed.output_per_s / max.output_per_s.max(1.0),
            windowed.output_per_s,
            max.output_per_s,
        );
        processing_comparison(&args)?;
    }

    let server = start_server(&args.store)?;
    setup(&server.base, &args.plugins, PIPELINE, &chain_spec(1_000_000))?;
    eprintln!("half rate run ({half_rate} events/s) ...");
    let half = rt.block_on(load(&server.base, OutputTail::of(&server, PIPELINE), &args, half_rate.max(1)))?;
    print(&format!("at {half_rate} events/s"), &half);
    let pid = server.child.id();
    println!("server peak RSS during the runs: {:.0} MB", peak_rss_mb(pid));
    drop(server);

    if args.backlog > 0 {
        // Workers stalled by a stage that never finishes within the test.
        let server = start_server(&args.store)?;
        let spec = json!({"max_queue_depth": args.backlog, "stages": [{"name": "stall", "plugin": "spin",
            "limits": {"fuel": 10_000_000_000u64, "timeout_ms": 60_000}}]});
        setup(&server.base, &args.plugins, "backlog", &spec)?;
        let client = reqwest::blocking::Client::new();
        let mut queued = 0;
        let mut n = 0;
        while queued < args.backlog {
            let now = crate::domain::now_ms();
            let body: String = (0..args.batch.min((args.backlog - queued) as usize)).map(|_| { n += 1; page_view(n, now) + "\n" }).collect();
            let r = client.post(format!("{}/v1/pipelines/backlog/events", server.base)).header("content-type", "application/x-ndjson").body(body).send()?;
            if r.status().as_u16() != 202 {
                break;
            }
            queued += r.json::<Value>()?["accepted"].as_u64().unwrap_or(0);
        }
        let depth = client.get(format!("{}/v1/pipelines/backlog/metrics", server.base)).send()?.json::<Value>()?["queue_depth"].as_u64().unwrap_or(0);
        std::thread::sleep(Duration::from_secs(1));
        let pid = server.child.id();
        println!("backlog: {depth} events queued, server RSS {:.0} MB (peak {:.0} MB)", rss_mb(pid), peak_rss_mb(pid));
    }
    Ok(0)
}
