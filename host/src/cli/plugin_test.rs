//! `sluice plugin test`: an author's loop. Loads the component exactly as the
//! server would (compiled once per content hash, kept in a verified cache
//! between runs like the server's), runs it over NDJSON events, and prints
//! each outcome with the fuel it used.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::domain::{now_ms, Event};
use crate::api::ingest::parse::parse_ingest;
use crate::runtime::{sha256_hex, MemoryTables, Outcome, Runtime, RuntimeConfig, StageLimits, StageRunner, StageSpec};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The plugin component (a .wasm built for wasm32-wasip2).
    pub file: PathBuf,
    /// The stage config, as JSON (default `{}`).
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// NDJSON events, one per line, in the ingest format; `-` for stdin.
    #[arg(long, default_value = "-")]
    pub events: String,
    /// Sandbox limits, as the spec's `limits` JSON (e.g. '{"fuel": 1000000}').
    #[arg(long)]
    pub limits: Option<String>,
    /// A lookup table the plugin may read: NAME=FILE.json (a JSON object of strings). Repeatable.
    #[arg(long = "table", value_name = "NAME=FILE")]
    pub tables: Vec<String>,
    /// Events per `process` call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// The attempt number the plugin sees.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// Where compiled components are kept between runs, keyed by the
    /// component's content hash and verified before use, as the server's
    /// `<data dir>/compiled` (default: $XDG_CACHE_HOME/sluice/compiled, else
    /// ~/.cache/sluice/compiled). A component of 10-20 MB (Python,
    /// JavaScript) takes seconds to compile; a second run loads it in
    /// milliseconds.
    #[arg(long, env = "SLUICE_PLUGIN_CACHE", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the component afresh, without reading or writing the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

/// The default directory of compiled components for `plugin test`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("sluice").join("compiled"))
}

/// Runs the plugin over the events; the answer is the exit code (2 when an
/// event failed).
pub fn run(args: TestArgs) -> anyhow::Result<i32> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read plugin file {}", args.file.display()))?;
    let config: serde_json::Value = serde_json::from_str(&args.config).with_context(|| format!("--config is not valid JSON: {}", args.config))?;
    let limits: StageLimits = match &args.limits {
        Some(text) => serde_json::from_str(text).with_context(|| format!("--limits is not a valid limits object: {text}"))?,
        None => StageLimits::default(),
    };
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let tables = Arc::new(MemoryTables::new());
    for spec in &args.tables {
        let (name, path) = spec.split_once('=').with_context(|| format!("--table {spec:?} must be NAME=FILE"))?;
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read table file {path}"))?;
        let entries: HashMap<String, String> =
            serde_json::from_str(&text).with_context(|| format!("table file {path} must be a JSON object of string values"))?;
        tables.put(name, entries);
    }
    let events = read_events(&args.events)?;

    let cache_dir = if args.no_cache { None } else { args.cache_dir.clone().or_else(default_cache_dir) };
    let runtime = Runtime::new(RuntimeConfig { cache_dir: cache_dir.clone(), ..RuntimeConfig::default() })?;
    let cached = cache_dir.as_ref().is_some_and(|dir| dir.join(format!("{}.cwasm", sha256_hex(&bytes))).is_file());
    let started = Instant::now();
    let plugin = runtime.load(&bytes).with_context(|| format!("{} was refused", args.file.display()))?;
    let how = match (&cache_dir, cached) {
        (Some(dir), true) => format!("loaded the compiled component from {}", dir.display()),
        (Some(dir), false) => format!("compiled, and cached in {}", dir.display()),
        (None, _) => "compiled (not cached)".to_string(),
    };
    eprintln!("{}: {} bytes, {how} in {:.2} s", args.file.display(), bytes.len(), started.elapsed().as_secs_f64());
    let name = args.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let spec = StageSpec {
        pipeline: "plugin-test".into(),
        stage: name.clone(),
        plugin_name: name,
        plugin_version: 0,
        config: config.to_string(),
        limits,
    };
    let stage = StageRunner::new(plugin, spec, tables)?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut kept, mut emitted, mut dropped, mut failed, mut fuel_total) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut processing = std::time::Duration::ZERO;
    for (chunk_index, chunk) in events.chunks(args.batch).enumerate() {
        let (lines, batch): (Vec<usize>, Vec<Event>) = chunk.iter().cloned().unzip();
        let call = Instant::now();
        let report = stage.process(args.attempt, &batch);
        processing += call.elapsed();
        for ((line, event), result) in lines.iter().zip(&batch).zip(report.results) {
            fuel_total += result.fuel;
            let head = format!("line {line} id={} fuel={}", event.id, result.fuel);
            match result.outcome {
                Outcome::Keep => {
                    kept += 1;
                    writeln!(out, "{head} kept (unchanged)")?;
                }
                Outcome::Drop => {
                    dropped += 1;
                    writeln!(out, "{head} dropped")?;
                }
                Outcome::Emitted(outputs) if outputs.is_empty() => {
                    dropped += 1;
                    writeln!(out, "{head} emitted 0 events (dropped)")?;
                }
                Outcome::Emitted(outputs) => {
                    emitted += 1;
                    writeln!(out, "{head} emitted {} event(s)", outputs.len())?;
                    for output in outputs.iter().take(20) {
                        writeln!(out, "    {}", serde_json::to_string(output)?)?;
                    }
                    if outputs.len() > 20 {
                        writeln!(out, "    ... and {} more", outputs.len() - 20)?;
                    }
                }
                Outcome::Failed { kind, message } => {
                    failed += 1;
                    writeln!(out, "{head} FAILED {kind}: {message}")?;
                }
            }
        }
        if events.len() > args.batch * 4 {
            eprintln!("batch {}/{} done", chunk_index + 1, events.len().div_ceil(args.batch));
        }
    }
    let n = events.len() as u64;
    writeln!(
        out,
        "{n} events: {kept} kept, {emitted} transformed/fanned out, {dropped} dropped, {failed} failed; fuel per event avg {}",
        if n == 0 { 0 } else { fuel_total / n }
    )?;
    if n > 0 {
        eprintln!(
            "processing took {:.1} ms: {:.1} µs per event (batches of {}, in the sandbox; a fresh instance per failed batch)",
            processing.as_secs_f64() * 1e3,
            processing.as_secs_f64() * 1e6 / n as f64,
            args.batch
        );
    }
    Ok(if failed > 0 { 2 } else { 0 })
}

/// Reads NDJSON events, answering (line number, event) pairs.
fn read_events(source: &str) -> anyhow::Result<Vec<(usize, Event)>> {
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(source).with_context(|| format!("cannot open events file {source}"))?))
    };
    let now = now_ms();
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("reading events line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_ingest(&line, now, || format!("line-{number}")).map_err(|e| match e.strip_prefix("not valid JSON: ") {
            Some(why) => anyhow::anyhow!("events line {number} is not valid JSON: {why}"),
            None => anyhow::anyhow!("events line {number}: {e}"),
        })?;
        events.push((number, event));
    }
    Ok(events)
}
