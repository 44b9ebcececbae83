//! The cost of a realistic 3-stage chain, bot-filter → url-parts → pii-redact,
//! run as WASM components by the host runtime and, for comparison, natively
//! through `sluice_sdk::native::run`.
//!
//! ```text
//! ./scripts/build-plugins.sh          # the .wasm files this bench loads
//! cargo bench --bench chain
//! ```
//!
//! Criterion reports per-event throughput (`chain/wasm/512`,
//! `chain/native/512`, ...). Afterwards a plain timed loop prints a summary
//! table (µs per event for the chain and per stage, and the WASM/native
//! ratio) meant to be pasted into the README, with the fuel each stage burns
//! per event (deterministic, so it shows guest-side changes that timing on a
//! busy machine would hide). Knobs:
//!
//! - `SLUICE_BENCH_SUMMARY_SECS`: seconds per cell of that table (default 2;
//!   0 skips it);
//! - `SLUICE_BENCH_SIZES`: its batch sizes, e.g. `512` (default `1,64,512`).
//!
//! The WASM path is the engine's own chain (`engine::chain::run_chain`, the
//! code workers run) over `StageRunner`s; the native path chains the same
//! way by hand: a stage's survivors are the inputs it kept (moved on, not
//! copied), plus the events it emitted in place of changed ones; dropped
//! inputs go nowhere. The input batch is owned by the chain, as an engine
//! owns a batch it read; making that fresh copy of the fixture each
//! iteration is outside the measured time.
//!
//! `native::run` consumes its inputs and answers `Kept` without the event,
//! so the native path copies each stage's input batch before the call to
//! get kept events back. That copy (4 allocations and a memcpy per event) is
//! the native stand-in for lowering the batch into the guest, which makes the
//! same allocations in guest memory.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use sluice::domain::{Event, QueuedEvent};
use sluice::engine::chain::{run_chain, ChainRun, ChainStage};
use sluice::engine::spec::RetryPolicy;
use sluice::runtime::{NoTables, Runtime, RuntimeConfig, StageLimits, StageRunner, StageSpec};
use sluice_sdk::native;
use sluice_sdk::{Context, Stage};

const BATCH_SIZES: [usize; 3] = [1, 64, 512];
const STAGES: [(&str, &str, &str); 3] = [
    ("bot-filter", "bot_filter", "{}"),
    ("url-parts", "url_parts", "{}"),
    ("pii-redact", "pii_redact", r#"{"fields":["data.email"],"mode":"hash","salt":"s"}"#),
];
/// Events generated (and cycled through) for the fixtures.
const POOL: usize = 4096;

// ---------------------------------------------------------------- the events

/// A small deterministic generator (Knuth's MMIX LCG), so every run sees the
/// same events.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const BROWSERS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
];
const BOTS: [&str; 5] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
];
const HOSTS: [&str; 4] = ["shop.example.com", "www.example.com", "blog.example.org", "app.example.io"];
const SECTIONS: [&str; 6] = ["products", "blog", "account", "search", "category", "help"];
const ITEMS: [&str; 8] = ["running-shoes", "winter-jacket", "orders", "settings", "2024", "gift-ideas", "returns", "checkout"];
const PARAMS: [(&str, &[&str]); 6] = [
    ("utm_source", &["google", "newsletter", "twitter", "partner"]),
    ("utm_campaign", &["spring_sale", "launch", "retarget%2D7"]),
    ("q", &["running+shoes", "winter%20jacket", "gift", "size+42"]),
    ("page", &["1", "2", "3", "12"]),
    ("color", &["blue", "black", "red"]),
    ("ref", &["home", "nav", "email"]),
];
const REFERRERS: [&str; 5] = ["https://www.google.com/", "https://t.co/x8Fq2", "https://www.bing.com/", "https://news.example.net/", ""];
const NAMES: [&str; 8] = ["jane", "john", "amira", "li", "carlos", "olga", "sam", "priya"];
const SURNAMES: [&str; 6] = ["doe", "smith", "khan", "chen", "garcia", "ivanova"];
const DOMAINS: [&str; 4] = ["example.com", "mail.example.org", "example.net", "corp.example.io"];

/// `n` page views, about 10% from bots, with ~300-byte `data`.
fn page_views(n: usize) -> Vec<Event> {
    let mut rng = Lcg(0x5eed_cafe);
    (0..n)
        .map(|i| {
            let host = rng.pick(&HOSTS);
            let mut path = String::new();
            for _ in 0..1 + rng.below(3) {
                path.push('/');
                path.push_str(if path.len() == 1 { rng.pick(&SECTIONS) } else { rng.pick(&ITEMS) });
            }
            let mut query = String::new();
            let first = rng.below(PARAMS.len());
            for k in 0..1 + rng.below(3) {
                let (name, values) = PARAMS[(first + k) % PARAMS.len()];
                query.push(if k == 0 { '?' } else { '&' });
                query.push_str(name);
                query.push('=');
                query.push_str(rng.pick(values));
            }
            let ua = if rng.below(10) == 0 { rng.pick(&BOTS) } else { rng.pick(&BROWSERS) };
            let email = format!("{}.{}{}@{}", rng.pick(&NAMES), rng.pick(&SURNAMES), rng.below(1000), rng.pick(&DOMAINS));
            let data = serde_json::json!({
                "url": format!("https://{host}{path}{query}"),
                "ua": ua,
                "email": email,
                "user_id": format!("u_{}", 10_000 + rng.below(90_000)),
                "ms": 20 + rng.below(3000),
                "referrer": rng.pick(&REFERRERS),
                "lang": rng.pick(&["en-US", "de-DE", "fr-FR", "es-ES"]),
            });
            Event {
                id: format!("01J{:023X}", 0x9e37_79b9_7f4a_u64.wrapping_mul(i as u64 + 1)),
                kind: "page_view".into(),
                source: "web".into(),
                timestamp: 1_767_225_600_000 + 137 * i as i64,
                data: data.to_string(),
            }
        })
        .collect()
}

fn to_sdk(events: &[Event]) -> Vec<sluice_sdk::Event> {
    events
        .iter()
        .map(|e| sluice_sdk::Event::from_parts(e.id.clone(), e.kind.clone(), e.source.clone(), e.timestamp, e.data.clone()))
        .collect()
}

/// The first `size` events of the pool, rotated by `offset` so successive
/// batches are not the same few events.
fn batch_of<T: Clone>(pool: &[T], size: usize, offset: usize) -> Vec<T> {
    (0..size).map(|i| pool[(offset + i) % pool.len()].clone()).collect()
}

// ---------------------------------------------------------------- WASM chain

/// The engine's own chain ([`run_chain`]) over the WASM stages.
struct WasmChain {
    stages: Vec<ChainStage>,
    _runtime: Runtime,
}

impl WasmChain {
    fn new() -> WasmChain {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
        let stages = STAGES
            .iter()
            .map(|&(name, file, config)| {
                let path = workspace.join("target/wasm32-wasip2/release").join(format!("{file}.wasm"));
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}: run scripts/build-plugins.sh first", path.display()));
                let plugin = runtime.load(&bytes).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
                let spec = StageSpec {
                    pipeline: "bench".into(),
                    stage: name.into(),
                    plugin_name: name.into(),
                    plugin_version: 1,
                    config: config.into(),
                    limits: StageLimits::default(),
                };
                let runner = StageRunner::new(plugin, spec, Arc::new(NoTables)).unwrap_or_else(|e| panic!("{name}: {e}"));
                ChainStage { name: name.into(), plugin: name.into(), plugin_version: 1, retry: RetryPolicy::default(), runner: Arc::new(runner) }
            })
            .collect();
        WasmChain { stages, _runtime: runtime }
    }

    /// Runs `batch` (one queue entry) through `stages` as the engine does.
    fn chain(stages: &[ChainStage], batch: Vec<Event>) -> ChainRun {
        let entry = ("bench".to_string(), batch.into_iter().map(QueuedEvent::new).collect());
        let run = run_chain(stages, vec![entry], 0, || 0.5);
        if let Some(dead) = run.results[0].dead.first() {
            panic!("event {} failed ({}): {}", dead.event.id, dead.error_kind, dead.error);
        }
        run
    }

    /// One stage: its survivors, ready for the next.
    fn stage(&self, index: usize, batch: Vec<Event>) -> Vec<Event> {
        Self::chain(&self.stages[index..=index], batch).results.swap_remove(0).outputs
    }

    /// Fuel (about one unit per wasm instruction) each stage burns per event
    /// it is given: deterministic, unlike time.
    fn fuel_per_event(&self, batch: Vec<Event>) -> [f64; 3] {
        let run = Self::chain(&self.stages, batch);
        let mut fuel = [0.0; 3];
        for (slot, tally) in fuel.iter_mut().zip(&run.tallies) {
            *slot = tally.fuel as f64 / tally.events.max(1) as f64;
        }
        fuel
    }

    fn run(&self, batch: Vec<Event>) -> Vec<Event> {
        Self::chain(&self.stages, batch).results.swap_remove(0).outputs
    }
}

// -------------------------------------------------------------- native chain

struct NativeChain {
    bot_filter: bot_filter::BotFilter,
    url_parts: url_parts::UrlParts,
    pii_redact: pii_redact::PiiRedact,
    contexts: [Context; 3],
}

impl NativeChain {
    fn new() -> NativeChain {
        let context = |stage: &str| Context { pipeline: "bench".into(), stage: stage.into(), attempt: 1 };
        NativeChain {
            bot_filter: native::init(STAGES[0].2).expect("bot-filter init"),
            url_parts: native::init(STAGES[1].2).expect("url-parts init"),
            pii_redact: native::init(STAGES[2].2).expect("pii-redact init"),
            contexts: [context(STAGES[0].0), context(STAGES[1].0), context(STAGES[2].0)],
        }
    }

    fn stage(&self, index: usize, batch: Vec<sluice_sdk::Event>) -> Vec<sluice_sdk::Event> {
        match index {
            0 => native_stage(&self.bot_filter, &self.contexts[0], batch),
            1 => native_stage(&self.url_parts, &self.contexts[1], batch),
            _ => native_stage(&self.pii_redact, &self.contexts[2], batch),
        }
    }

    fn run(&self, batch: Vec<sluice_sdk::Event>) -> Vec<sluice_sdk::Event> {
        let batch = self.stage(0, batch);
        let batch = self.stage(1, batch);
        self.stage(2, batch)
    }
}

fn native_stage<S: Stage>(stage: &S, ctx: &Context, inputs: Vec<sluice_sdk::Event>) -> Vec<sluice_sdk::Event> {
    // `run` consumes its inputs; the copy is how kept ones come back (see the top).
    let results = native::run(stage, ctx, inputs.clone());
    let mut out = Vec::with_capacity(inputs.len());
    for (event, result) in inputs.into_iter().zip(results) {
        match result {
            native::Result::Kept => out.push(event),
            native::Result::Emitted(events) => out.extend(events),
            native::Result::Dropped => {}
            native::Result::Failed(e) => panic!("event {} failed: {}", event.id(), e.message),
        }
    }
    out
}

// ---------------------------------------------------------------- criterion

fn criterion_benches(c: &mut Criterion, wasm: &WasmChain, native: &NativeChain, pool: &[Event], sdk_pool: &[sluice_sdk::Event]) {
    for (mode, is_wasm) in [("chain/wasm", true), ("chain/native", false)] {
        let mut group = c.benchmark_group(mode);
        group.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(20);
        for size in BATCH_SIZES {
            group.throughput(Throughput::Elements(size as u64));
            let mut offset = 0;
            group.bench_function(BenchmarkId::from_parameter(size), |b| {
                if is_wasm {
                    b.iter_batched(
                        || {
                            offset = (offset + size) % POOL;
                            batch_of(pool, size, offset)
                        },
                        |batch| wasm.run(batch),
                        BatchSize::SmallInput,
                    )
                } else {
                    b.iter_batched(
                        || {
                            offset = (offset + size) % POOL;
                            batch_of(sdk_pool, size, offset)
                        },
                        |batch| native.run(batch),
                        BatchSize::SmallInput,
                    )
                }
            });
        }
        group.finish();
    }
}

// ---------------------------------------------------------------- the table

/// One measured stretch of batches: wall time in each stage (incl. building
/// its survivors) per event entering the chain, µs.
#[derive(Default, Clone, Copy)]
struct Chunk {
    stage_us: [f64; 3],
}

impl Chunk {
    fn chain_us(&self) -> f64 {
        self.stage_us.iter().sum()
    }
}

/// Chunks of one configuration, sorted by chain time.
struct Timing {
    chunks: Vec<Chunk>,
}

impl Timing {
    /// The chunk at quantile `q` of chain time (0.5: the median).
    fn at(&self, q: f64) -> Chunk {
        self.chunks[((self.chunks.len() - 1) as f64 * q).round() as usize]
    }
}

/// Wall time of one chunk: long enough that timer overhead and the odd slow
/// batch average out, short enough that other load on the machine spoils
/// only some chunks (the table shows their median).
const CHUNK: Duration = Duration::from_millis(50);

/// Runs batches of `size` for `length`, timing each stage (the copy of the
/// fixture that starts each batch is not timed).
fn chunk<T: Clone>(pool: &[T], size: usize, offset: &mut usize, length: Duration, stage: &mut impl FnMut(usize, Vec<T>) -> Vec<T>) -> Chunk {
    let mut ns = [0u128; 3];
    let mut events = 0u64;
    let started = Instant::now();
    while started.elapsed() < length {
        let mut batch = batch_of(pool, size, *offset);
        *offset = (*offset + size) % POOL;
        for (index, ns) in ns.iter_mut().enumerate() {
            let started = Instant::now();
            batch = stage(index, batch);
            *ns += started.elapsed().as_nanos();
        }
        black_box(batch);
        events += size as u64;
    }
    Chunk { stage_us: ns.map(|ns| ns as f64 / events as f64 / 1000.0) }
}

/// Times the WASM and the native chain at batch `size` for about `seconds`
/// each, in alternating chunks, so that a busy spell on the machine hits
/// both alike and the ratio stays meaningful.
fn time_both(wasm: &WasmChain, native: &NativeChain, pool: &[Event], sdk_pool: &[sluice_sdk::Event], size: usize, seconds: f64) -> (Timing, Timing) {
    let mut wasm_stage = |i: usize, batch: Vec<Event>| wasm.stage(i, batch);
    let mut native_stage = |i: usize, batch: Vec<sluice_sdk::Event>| native.stage(i, batch);
    let (mut wasm_offset, mut native_offset) = (0, 0);
    let warm_up = Duration::from_secs_f64((seconds / 5.0).min(0.5));
    chunk(pool, size, &mut wasm_offset, warm_up, &mut wasm_stage);
    chunk(sdk_pool, size, &mut native_offset, warm_up, &mut native_stage);
    let count = ((seconds / CHUNK.as_secs_f64()).round() as usize).max(1);
    let (mut w, mut n) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for _ in 0..count {
        w.push(chunk(pool, size, &mut wasm_offset, CHUNK, &mut wasm_stage));
        n.push(chunk(sdk_pool, size, &mut native_offset, CHUNK, &mut native_stage));
    }
    for chunks in [&mut w, &mut n] {
        chunks.sort_by(|a, b| a.chain_us().total_cmp(&b.chain_us()));
    }
    (Timing { chunks: w }, Timing { chunks: n })
}

fn summary(wasm: &WasmChain, native: &NativeChain, pool: &[Event], sdk_pool: &[sluice_sdk::Event], seconds: f64) {
    let mean_data = pool.iter().map(|e| e.data.len()).sum::<usize>() as f64 / pool.len() as f64;
    let bots = pool.iter().filter(|e| BOTS.iter().any(|b| e.data.contains(b))).count();
    let sizes: Vec<usize> = std::env::var("SLUICE_BENCH_SIZES")
        .ok()
        .map(|list| list.split(',').filter_map(|n| n.trim().parse().ok()).filter(|&n| n > 0).collect::<Vec<usize>>())
        .filter(|sizes| !sizes.is_empty())
        .unwrap_or_else(|| BATCH_SIZES.to_vec());
    let rows: Vec<(usize, Timing, Timing)> = sizes
        .iter()
        .map(|&size| {
            let (w, n) = time_both(wasm, native, pool, sdk_pool, size, seconds);
            (size, w, n)
        })
        .collect();
    println!();
    println!(
        "chain bot-filter -> url-parts -> pii-redact: page views with {:.0}-byte data on average, {:.1}% bots; {} cores",
        mean_data,
        100.0 * bots as f64 / pool.len() as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!(
        "µs per event: the median of {}-ms chunks over {seconds} s per cell, WASM and native chunks alternating (p10-p90 shows the spread)",
        CHUNK.as_millis()
    );
    println!();
    println!("| batch | WASM µs/event, chain | native µs/event, chain | WASM µs/event/stage | native µs/event/stage | WASM/native | WASM chain p10-p90 |");
    println!("|------:|---------------------:|-----------------------:|--------------------:|----------------------:|------------:|-------------------:|");
    for (size, w, n) in &rows {
        let (wc, nc) = (w.at(0.5).chain_us(), n.at(0.5).chain_us());
        let spread = format!("{:.2}-{:.2}", w.at(0.1).chain_us(), w.at(0.9).chain_us());
        println!("| {size:>5} | {wc:>20.2} | {nc:>22.2} | {:>19.2} | {:>21.2} | {:>10.2}x | {spread:>18} |", wc / 3.0, nc / 3.0, wc / nc);
    }
    println!();
    let fuel = wasm.fuel_per_event(pool[..512].to_vec());
    println!("fuel per event each stage is given (~wasm instructions): bot-filter {:.0}, url-parts {:.0}, pii-redact {:.0}", fuel[0], fuel[1], fuel[2]);
    println!();
    println!("each stage, µs per event entering the chain (WASM / native; from the median chunks):");
    println!();
    println!("| batch |    bot-filter |     url-parts |    pii-redact |");
    println!("|------:|--------------:|--------------:|--------------:|");
    for (size, w, n) in &rows {
        let (w, n) = (w.at(0.5), n.at(0.5));
        let cell = |i: usize| format!("{:.2} / {:.2}", w.stage_us[i], n.stage_us[i]);
        println!("| {size:>5} | {:>13} | {:>13} | {:>13} |", cell(0), cell(1), cell(2));
    }
    println!();
}

/// The chain gives the same events both ways, and drops exactly the bots.
fn check(wasm: &WasmChain, native: &NativeChain, pool: &[Event], sdk_pool: &[sluice_sdk::Event]) {
    let from_wasm = wasm.run(pool[..512].to_vec());
    let from_native = native.run(sdk_pool[..512].to_vec());
    let bots = pool[..512].iter().filter(|e| BOTS.iter().any(|b| e.data.contains(b))).count();
    assert_eq!(from_wasm.len(), 512 - bots, "bot-filter should drop exactly the bots");
    assert_eq!(from_native.len(), from_wasm.len());
    for (w, n) in from_wasm.iter().zip(&from_native) {
        let (id, kind, source, timestamp, data) = n.clone().into_parts();
        assert_eq!((&w.id, &w.kind, &w.source, w.timestamp), (&id, &kind, &source, timestamp));
        let (w_data, n_data): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&w.data).unwrap(), serde_json::from_str(&data).unwrap());
        assert_eq!(w_data, n_data, "WASM and native disagree on {id}");
        assert!(w_data["host"].is_string() && w_data["query"].is_object(), "url-parts ran: {w_data}");
        assert_eq!(w_data["email"].as_str().map(str::len), Some(64), "pii-redact hashed the email: {w_data}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing = args.iter().any(|a| a == "--list");
    // `cargo bench` passes --bench; `cargo test --benches` does not (criterion then runs each once).
    let benchmarking = args.iter().any(|a| a == "--bench");

    let pool = page_views(POOL);
    let sdk_pool = to_sdk(&pool);
    let wasm = WasmChain::new();
    let native = NativeChain::new();
    if !listing {
        check(&wasm, &native, &pool, &sdk_pool);
    }

    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &wasm, &native, &pool, &sdk_pool);
    criterion.final_summary();

    let seconds = std::env::var("SLUICE_BENCH_SUMMARY_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    if benchmarking && !listing && seconds > 0.0 {
        summary(&wasm, &native, &pool, &sdk_pool, seconds);
    }
}
