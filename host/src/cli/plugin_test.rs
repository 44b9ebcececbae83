//! `sluice plugin test`: an author's loop. Loads the component exactly as the
//! server would, runs it over NDJSON events, and prints each outcome with the
//! fuel it used.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use crate::domain::{now_ms, Event};
use crate::api::ingest::parse::parse_ingest;
use crate::runtime::{MemoryTables, Outcome, Runtime, RuntimeConfig, StageLimits, StageRunner, StageSpec};

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
}

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

    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load(&bytes).with_context(|| format!("{} was refused", args.file.display()))?;
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
    for (chunk_index, chunk) in events.chunks(args.batch).enumerate() {
        let (lines, batch): (Vec<usize>, Vec<Event>) = chunk.iter().cloned().unzip();
        let report = stage.process(args.attempt, &batch);
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
