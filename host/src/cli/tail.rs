//! `sluice tail PIPELINE`: the pipeline's outputs as they come, by cursor
//! (`GET …/output`); `--window W` follows a window's live feed instead
//! (`GET …/windows/W/live`, Server-Sent Events).

use std::io::{BufRead, BufReader, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

use super::client::{encode, Api, ServerArgs};

/// `sluice tail`.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// The pipeline.
    pub pipeline: String,
    /// Follow this window's live results instead of the outputs.
    #[arg(long)]
    pub window: Option<String>,
    /// Start after this cursor (default: the oldest output kept).
    #[arg(long, default_value = "")]
    pub cursor: String,
    /// Stop after this many events (or window updates).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop at the first empty page instead of waiting for more.
    #[arg(long)]
    pub no_follow: bool,
    /// How long to wait between polls when nothing is new.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// Runs `sluice tail`.
pub fn run(args: TailArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    match &args.window {
        Some(window) => live(&args, window, server),
        None => outputs(&args, server),
    }
}

fn outputs(args: &TailArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(30))?;
    let path = format!("/v1/pipelines/{}/output", args.pipeline);
    let mut cursor = args.cursor.clone();
    let mut seen = 0u64;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut out = std::io::stdout().lock();
    while seen < limit {
        let page: Value = api.json(&format!("{path}?limit=1000&cursor={}", encode(&cursor)))?;
        let entries = page.get("entries").and_then(Value::as_array).with_context(|| format!("GET {path}: the answer has no entries"))?;
        if entries.is_empty() {
            if args.no_follow {
                break;
            }
            out.flush().context("writing to stdout")?;
            std::thread::sleep(args.interval);
            continue;
        }
        for entry in entries.iter().take((limit - seen).min(usize::MAX as u64) as usize) {
            let event = &entry["event"];
            let written = if server.json {
                writeln!(out, "{event}")
            } else {
                let at = event["timestamp"]
                    .as_u64()
                    .map(|ms| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string())
                    .unwrap_or_default();
                writeln!(out, "{at} {} {} {}", event["type"].as_str().unwrap_or("?"), event["id"].as_str().unwrap_or("?"), event["data"])
            };
            written.context("writing to stdout")?;
            seen += 1;
        }
        cursor = page.get("next_cursor").and_then(Value::as_str).with_context(|| format!("GET {path}: no next_cursor"))?.to_string();
    }
    out.flush().context("writing to stdout")?;
    Ok(0)
}

/// Prints each `data:` of the SSE feed, one line per update.
fn live(args: &TailArgs, window: &str, server: &ServerArgs) -> anyhow::Result<i32> {
    // The feed is open-ended: no overall timeout, only on connecting.
    let api = Api::new(server, Duration::from_secs(24 * 3600))?;
    let path = format!("/v1/pipelines/{}/windows/{window}/live", args.pipeline);
    let what = format!("GET {path}");
    let response = api.ok(&what, api.request(reqwest::Method::GET, &path).header("accept", "text/event-stream"))?;
    let mut reader = BufReader::new(response);
    let mut line = String::new();
    let mut seen = 0u64;
    let limit = args.count.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    while seen < limit {
        line.clear();
        if reader.read_line(&mut line).with_context(|| format!("{what}: reading the feed"))? == 0 {
            bail!("{what}: the server closed the feed after {:?}", started.elapsed());
        }
        let Some(data) = line.strip_prefix("data:") else { continue };
        let data = data.trim();
        let written = if server.json {
            writeln!(out, "{data}")
        } else {
            match serde_json::from_str::<Value>(data) {
                Ok(update) => writeln!(out, "{}", human_update(&update)),
                Err(_) => writeln!(out, "{data}"),
            }
        };
        written.context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
        seen += 1;
    }
    Ok(0)
}

/// A window update as `[start, end) group: field=value …`.
fn human_update(update: &Value) -> String {
    let Some(map) = update.as_object() else { return update.to_string() };
    let fields: Vec<String> =
        map.iter().filter(|(k, _)| !["start", "end", "group", "window"].contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")).collect();
    format!("[{}, {}) {}: {}", update["start"], update["end"], update["group"], fields.join(" "))
}
