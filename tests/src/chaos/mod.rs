//! The chaos soak: a real `sluice serve` on one store, under load through a
//! pipeline with retries, fan-out, a DLQ, DLQ replays and two windows, hit
//! by a fault at a random moment of each phase, for N rounds. After each
//! round every accepted event must be in the output, the DLQ or filtered,
//! exactly once, every window result exact, and the queue empty.
//!
//! A round, on a pipeline of its own (`chaos-<round>`):
//! 1. *load*: producers send paced batches with idempotency keys (retrying
//!    503, 429 and dead connections with the same key), a replayer sends
//!    DLQ entries back (they fail again: the strict spec), and a fault
//!    strikes at a random moment;
//! 2. *check*: once drained, outputs, DLQ and windows must equal what the
//!    workload says;
//! 3. *replay*: the spec is relaxed so the DLQ's events pass, the whole DLQ
//!    is replayed, and a second fault strikes meanwhile;
//! 4. *check* again (the DLQ now empty, its events in the output and the
//!    windows), then the pipeline is deleted.
//!
//! Owns: the rounds ([`Soak`]), their figures ([`Totals`]). The parts:
//! [`workload`] (events and expectations), [`producer`], [`faults`],
//! [`check`]. Run it with `scripts/chaos.sh`; the test command runs a short
//! one (`tests/tests/chaos.rs`).

pub mod check;
pub mod faults;
pub mod producer;
mod rng;
pub mod workload;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::PrivateRedis;

use crate::{Server, StoreKind};
use check::Findings;
use faults::Fault;
use producer::{Producer, SendStats};
use rng::Rng;
use workload::Expected;

/// How long an admin call (a spec, a delete) is retried across a fault.
const ADMIN_DEADLINE: Duration = Duration::from_secs(120);

/// Which store the soak's server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaosStore {
    /// The embedded store in a fresh directory: faults are SIGKILLs.
    Embedded,
    /// A private `redis-server` with AOF (`appendfsync always`) and `DEBUG`
    /// enabled: all four faults.
    Redis,
}

impl ChaosStore {
    /// The name shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            ChaosStore::Embedded => "embedded",
            ChaosStore::Redis => "redis",
        }
    }
}

/// How hard and how long the soak pushes.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// The seed of every random moment and fault (the same seed picks the
    /// same faults and moments).
    pub seed: u64,
    /// How long each round's producers send.
    pub load_ms: u64,
    /// Events per second, over all producers.
    pub rate: u64,
    /// Concurrent producers.
    pub producers: u64,
    /// Events per request.
    pub batch: u64,
    /// Take the store's faults in turn instead of at random, so a short run
    /// meets each of them.
    pub cycle_faults: bool,
    /// Send each batch with an `Idempotency-Key` (the default). Off, a
    /// retry after a lost answer queues the batch twice, and the checks
    /// find the duplicates: the way to see that the soak can fail.
    pub idempotency_keys: bool,
}

impl Default for ChaosConfig {
    fn default() -> ChaosConfig {
        ChaosConfig { seed: 1, load_ms: 2000, rate: 10_000, producers: 2, batch: 100, cycle_faults: false, idempotency_keys: true }
    }
}

/// What one round did and found.
#[derive(Debug)]
pub struct RoundReport {
    pub round: u32,
    /// The fault of the load phase, then of the replay phase.
    pub faults: [Fault; 2],
    /// Events sent and accepted (each exactly once, thanks to the keys).
    pub accepted: u64,
    /// DLQ entries the replays sent back.
    pub replayed: u64,
    /// The check after the load.
    pub before_replay: Findings,
    /// The check after the replay (none when the first check failed).
    pub after_replay: Option<Findings>,
    pub elapsed: Duration,
}

impl RoundReport {
    /// Both checks passed.
    pub fn is_clean(&self) -> bool {
        self.before_replay.is_clean() && self.after_replay.as_ref().is_some_and(Findings::is_clean)
    }

    /// Every problem the checks spelled out.
    pub fn problems(&self) -> Vec<String> {
        let mut all = self.before_replay.problems.clone();
        match &self.after_replay {
            Some(after) => all.extend(after.problems.iter().map(|p| format!("after replay: {p}"))),
            None => all.push("the replay phase did not run".into()),
        }
        all
    }
}

/// The figures of a soak so far.
#[derive(Debug, Default)]
pub struct Totals {
    pub rounds: u32,
    pub accepted: u64,
    /// Units in the output at the end of each round.
    pub outputs: u64,
    /// Units in the DLQ before the replay phase.
    pub dead_lettered: u64,
    pub replayed: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub misplaced: u64,
    pub window_mismatches: u64,
    /// Rounds whose queue did not drain.
    pub undrained: u64,
    pub faults: BTreeMap<Fault, u32>,
    pub elapsed: Duration,
}

impl Totals {
    /// Adds a round.
    pub fn add(&mut self, report: &RoundReport) {
        self.rounds += 1;
        self.accepted += report.accepted;
        self.replayed += report.replayed;
        self.dead_lettered += report.before_replay.dlq as u64;
        self.elapsed += report.elapsed;
        for fault in report.faults {
            *self.faults.entry(fault).or_default() += 1;
        }
        for findings in std::iter::once(&report.before_replay).chain(&report.after_replay) {
            self.lost += findings.lost as u64;
            self.duplicated += findings.duplicated as u64;
            self.misplaced += findings.misplaced as u64;
            self.window_mismatches += findings.window_mismatches as u64;
            self.undrained += u64::from(!findings.drained);
        }
        if let Some(after) = &report.after_replay {
            self.outputs += after.outputs as u64;
        }
    }

    /// Nothing lost, duplicated or misplaced; every window exact; every queue drained.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.misplaced == 0 && self.window_mismatches == 0 && self.undrained == 0
    }
}

/// A server (and on Redis its private `redis-server`) the rounds run against.
pub struct Soak {
    server: Server,
    redis: Option<PrivateRedis>,
    _dir: tempfile::TempDir,
    config: ChaosConfig,
    rng: Rng,
    store: ChaosStore,
    /// What the producers saw so far.
    pub stats: SendStats,
}

impl Soak {
    /// Starts the store and the server (its log appended to `log_file`) and
    /// uploads the workload's plugins.
    pub fn start(store: ChaosStore, config: ChaosConfig, log_file: &Path) -> Soak {
        let dir = tempfile::tempdir().expect("a directory for the soak");
        let (kind, redis) = match store {
            ChaosStore::Embedded => (StoreKind::Embedded(dir.path().join("store")), None),
            ChaosStore::Redis => {
                let redis = PrivateRedis::start_durable_with_args(&["--enable-debug-command", "local"]);
                (StoreKind::Redis { url: redis.url(), prefix: "chaos".into() }, Some(redis))
            }
        };
        let server = Server::start_logging(kind, &[], log_file);
        for (name, crate_name) in workload::PLUGINS {
            server.upload(name, crate_name);
        }
        let rng = Rng::new(config.seed);
        Soak { server, redis, _dir: dir, config, rng, store, stats: SendStats::default() }
    }

    /// Runs round `round` (see the module docs); `Err` when the soak itself
    /// could not go on (a batch never accepted, an admin call that kept
    /// failing), as opposed to findings, which the report carries.
    pub fn round(&mut self, round: u32) -> Result<RoundReport, String> {
        let started = Instant::now();
        let pipeline = format!("chaos-{round}");
        let faults = [self.pick_fault(round, 0), self.pick_fault(round, 1)];
        self.admin("PUT", &format!("/v1/pipelines/{pipeline}"), Some(workload::spec(false)))?;

        let replayed = AtomicU64::new(0);
        let numbers = self.load_phase(&pipeline, faults[0], &replayed)?;
        self.wait_ready()?;
        let before_replay = check::check(&self.server, &pipeline, &Expected::of(numbers.iter().copied(), false));
        let mut after_replay = None;
        if before_replay.is_clean() {
            self.admin("PUT", &format!("/v1/pipelines/{pipeline}"), Some(workload::spec(true)))?;
            self.replay_phase(&pipeline, faults[1], &replayed)?;
            self.wait_ready()?;
            after_replay = Some(check::check(&self.server, &pipeline, &Expected::of(numbers.iter().copied(), true)));
            self.admin("DELETE", &format!("/v1/pipelines/{pipeline}"), None)?;
        }
        Ok(RoundReport {
            round,
            faults,
            accepted: numbers.len() as u64,
            replayed: replayed.into_inner(),
            before_replay,
            after_replay,
            elapsed: started.elapsed(),
        })
    }

    fn pick_fault(&mut self, round: u32, phase: u32) -> Fault {
        let all = Fault::all(self.store == ChaosStore::Redis);
        let index = if self.config.cycle_faults { (round * 2 + phase) as usize } else { self.rng.next_u64() as usize };
        all[index % all.len()]
    }

    /// Producers and a replayer for `load_ms`, a fault at a random moment;
    /// answers the numbers of the events accepted.
    fn load_phase(&mut self, pipeline: &str, fault: Fault, replayed: &AtomicU64) -> Result<Vec<u64>, String> {
        let load = Duration::from_millis(self.config.load_ms);
        let fault_at = Duration::from_millis(self.rng.range(self.config.load_ms / 10, self.config.load_ms * 9 / 10));
        let base = self.server.url("");
        let next_number = AtomicU64::new(0);
        let accepted = Mutex::new(Vec::new());
        let load_over = AtomicBool::new(false);
        let (config, stats, server, redis, rng) = (&self.config, &self.stats, &mut self.server, self.redis.as_mut(), &mut self.rng);
        let interval = Duration::from_secs_f64((config.batch * config.producers) as f64 / config.rate.max(1) as f64);
        let started = Instant::now();
        std::thread::scope(|s| {
            let producers: Vec<_> = (0..config.producers)
                .map(|p| {
                    let (base, next_number, accepted) = (base.clone(), &next_number, &accepted);
                    s.spawn(move || -> Result<(), String> {
                        let producer = Producer::new(base, stats, config.idempotency_keys);
                        let mut tick = Instant::now();
                        while started.elapsed() < load {
                            let first = next_number.fetch_add(config.batch, Ordering::Relaxed);
                            let events: Vec<Value> = (first..first + config.batch).map(workload::event).collect();
                            let key = format!("{pipeline}-p{p}-{first}");
                            let answer = producer.send(pipeline, &key, &events)?;
                            producer::check_accepted(&key, &events, &answer)?;
                            accepted.lock().expect("accepted list").extend(first..first + config.batch);
                            tick += interval;
                            std::thread::sleep(tick.saturating_duration_since(Instant::now()));
                        }
                        Ok(())
                    })
                })
                .collect();
            s.spawn(|| replay_while(&base, pipeline, &json!({"limit": 20}), &load_over, replayed));
            std::thread::sleep(fault_at);
            fault.inject(server, redis, rng);
            let mut failure = Ok(());
            for producer in producers {
                let done = producer.join().unwrap_or_else(|_| Err("a producer panicked".into()));
                failure = failure.and(done);
            }
            load_over.store(true, Ordering::Relaxed);
            failure
        })?;
        Ok(accepted.into_inner().expect("accepted list"))
    }

    /// Replays the whole DLQ until it is empty, a fault striking at a random
    /// moment of it (or of the processing after it).
    fn replay_phase(&mut self, pipeline: &str, fault: Fault, replayed: &AtomicU64) -> Result<(), String> {
        let fault_at = Duration::from_millis(self.rng.range(0, 600));
        let base = self.server.url("");
        let (server, redis, rng) = (&mut self.server, self.redis.as_mut(), &mut self.rng);
        let emptied = AtomicBool::new(false);
        std::thread::scope(|s| {
            let replayer = s.spawn(|| {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(15)).build().expect("an HTTP client");
                let started = Instant::now();
                while started.elapsed() < ADMIN_DEADLINE {
                    replay_once(&client, &base, pipeline, &json!({}), replayed);
                    let dlq_size = client
                        .get(format!("{base}/v1/pipelines/{pipeline}/metrics"))
                        .send()
                        .ok()
                        .filter(|r| r.status().is_success())
                        .and_then(|r| r.json::<Value>().ok())
                        .and_then(|m| m["dlq_size"].as_u64());
                    if dlq_size == Some(0) {
                        emptied.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            std::thread::sleep(fault_at);
            fault.inject(server, redis, rng);
            replayer.join().ok();
        });
        if emptied.into_inner() {
            Ok(())
        } else {
            Err(format!("{pipeline}: the DLQ did not empty in {ADMIN_DEADLINE:?} of replays"))
        }
    }

    /// Waits until `/readyz` answers 200 (the store reachable again).
    fn wait_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < ADMIN_DEADLINE {
            if self.server.client().get(self.server.url("/readyz")).send().is_ok_and(|r| r.status().as_u16() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("/readyz did not answer 200 in {ADMIN_DEADLINE:?}"))
    }

    /// An admin call, retried across faults until it succeeds (a 404 on a
    /// DELETE counts: an earlier try whose answer was lost did it).
    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Result<(), String> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < ADMIN_DEADLINE {
            let client = self.server.client();
            let request = match method {
                "PUT" => client.put(self.server.url(path)).json(body.as_ref().unwrap_or(&Value::Null)),
                _ => client.delete(self.server.url(path)),
            };
            match request.send() {
                Ok(r) if r.status().is_success() || (method == "DELETE" && r.status().as_u16() == 404) => return Ok(()),
                Ok(r) if r.status().as_u16() == 503 => last = "503".into(),
                Ok(r) => return Err(format!("{method} {path}: {} {}", r.status(), r.text().unwrap_or_default())),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{method} {path}: no success in {ADMIN_DEADLINE:?} (last: {last})"))
    }

    /// Where the soak's server listens (for a look at it after a failure).
    pub fn server_url(&self) -> String {
        self.server.url("")
    }
}

/// Sends `body` to the DLQ replay every 150 ms until `over`.
fn replay_while(base: &str, pipeline: &str, body: &Value, over: &AtomicBool, replayed: &AtomicU64) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(15)).build().expect("an HTTP client");
    while !over.load(Ordering::Relaxed) {
        replay_once(&client, base, pipeline, body, replayed);
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// One replay request; a failed one (the server down, the store away) is
/// simply made again later: entries leave the DLQ only once re-queued.
fn replay_once(client: &reqwest::blocking::Client, base: &str, pipeline: &str, body: &Value, replayed: &AtomicU64) {
    let answer = client.post(format!("{base}/v1/pipelines/{pipeline}/dlq/replay")).json(body).send();
    if let Some(n) = answer.ok().filter(|r| r.status().is_success()).and_then(|r| r.json::<Value>().ok()).and_then(|a| a["replayed"].as_u64()) {
        replayed.fetch_add(n, Ordering::Relaxed);
    }
}
