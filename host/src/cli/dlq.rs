//! `sluice dlq ls|show|replay|purge PIPELINE`: the dead letter queue, with
//! filters on the error kind, the stage and the time of the last failure.
//!
//! The API selects entries by id only, so the filters are applied here over
//! the listed entries, and replay/purge send the chosen ids in chunks (with
//! a progress bar on a terminal for long replays).

use std::io::IsTerminal as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::client::{print_json, Api, ServerArgs};

/// Ids per replay or delete request.
const CHUNK: usize = 500;
/// The most entries one command looks through.
const MAX_ENTRIES: usize = 10_000_000;

/// `sluice dlq`.
#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List the entries (id, kind, stage, attempts, when, error).
    Ls(Select),
    /// One entry in full: its event and its error.
    Show {
        /// The pipeline.
        pipeline: String,
        /// The entry's `dlq_id`.
        dlq_id: String,
    },
    /// Put the chosen entries back on the queue, at the stage that failed them.
    Replay(Select),
    /// Delete the chosen entries.
    Purge(Select),
}

/// Which entries: all of a pipeline's, or those matching every filter given.
#[derive(clap::Args, Debug)]
pub struct Select {
    /// The pipeline.
    pub pipeline: String,
    /// Only this `error_kind` (retryable, rejected, fuel, memory, timeout,
    /// stack, panic, trap, output_limit, late, sink).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only entries failed by this stage (`sink:<name>` for a sink).
    #[arg(long)]
    pub stage: Option<String>,
    /// Only entries whose last failure is this recent (`10m`, `2h`), or
    /// after this time (RFC 3339 or ms since the epoch).
    #[arg(long)]
    pub since: Option<String>,
}

impl Select {
    fn filtered(&self) -> bool {
        self.kind.is_some() || self.stage.is_some() || self.since.is_some()
    }

    /// The `since` filter as ms since the epoch.
    fn since_ms(&self) -> anyhow::Result<Option<u64>> {
        let Some(text) = &self.since else { return Ok(None) };
        if let Ok(ms) = text.parse::<u64>() {
            return Ok(Some(ms));
        }
        let at = match humantime::parse_duration(text) {
            Ok(ago) => SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH),
            Err(_) => humantime::parse_rfc3339_weak(text)
                .with_context(|| format!("--since {text:?}: give a duration (10m), an RFC 3339 time or ms since the epoch"))?,
        };
        Ok(Some(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64))
    }

    /// The matching entries, oldest first.
    fn entries(&self, api: &Api) -> anyhow::Result<Vec<Value>> {
        let since = self.since_ms()?;
        let all = api.page_all(&format!("/v1/pipelines/{}/dlq", self.pipeline), MAX_ENTRIES)?;
        Ok(all
            .into_iter()
            .filter(|e| self.kind.as_deref().is_none_or(|k| e["error_kind"].as_str() == Some(k)))
            .filter(|e| self.stage.as_deref().is_none_or(|s| e["stage"].as_str() == Some(s)))
            .filter(|e| since.is_none_or(|t| e["last_failed_at"].as_u64().is_some_and(|at| at >= t)))
            .collect())
    }
}

/// Runs a `dlq` command.
pub fn run(command: DlqCommand, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(120))?;
    match command {
        DlqCommand::Ls(select) => ls(&api, &select, server.json),
        DlqCommand::Show { pipeline, dlq_id } => show(&api, &pipeline, &dlq_id, server.json),
        DlqCommand::Replay(select) => act(&api, &select, server.json, true),
        DlqCommand::Purge(select) => act(&api, &select, server.json, false),
    }
}

fn ls(api: &Api, select: &Select, as_json: bool) -> anyhow::Result<i32> {
    let entries = select.entries(api)?;
    if as_json {
        print_json(&json!({"entries": entries}))?;
        return Ok(0);
    }
    println!("{:<28} {:<12} {:<20} {:>8}  ERROR", "DLQ_ID", "KIND", "STAGE", "ATTEMPTS");
    for e in &entries {
        let error = e["error"].as_str().unwrap_or("");
        println!(
            "{:<28} {:<12} {:<20} {:>8}  {}",
            e["dlq_id"].as_str().unwrap_or("?"),
            e["error_kind"].as_str().unwrap_or("?"),
            e["stage"].as_str().unwrap_or("?"),
            e["attempts"],
            error.chars().take(80).collect::<String>()
        );
    }
    println!("{} entries", entries.len());
    Ok(0)
}

fn show(api: &Api, pipeline: &str, dlq_id: &str, as_json: bool) -> anyhow::Result<i32> {
    let all = api.page_all(&format!("/v1/pipelines/{pipeline}/dlq"), MAX_ENTRIES)?;
    let Some(entry) = all.into_iter().find(|e| e["dlq_id"].as_str() == Some(dlq_id)) else {
        bail!("pipeline {pipeline} has no DLQ entry {dlq_id}");
    };
    if as_json {
        print_json(&entry)?;
    } else {
        for field in ["dlq_id", "error_kind", "stage", "plugin", "plugin_version", "attempts", "first_failed_at", "last_failed_at"] {
            println!("{field:<16} {}", entry[field]);
        }
        println!("error            {}", entry["error"].as_str().unwrap_or(""));
        println!("event            {}", serde_json::to_string_pretty(&entry["event"])?);
    }
    Ok(0)
}

/// Replay (or purge) the selected entries, in chunks of ids.
fn act(api: &Api, select: &Select, as_json: bool, replay: bool) -> anyhow::Result<i32> {
    let verb = if replay { "replayed" } else { "deleted" };
    let path = if replay { format!("/v1/pipelines/{}/dlq/replay", select.pipeline) } else { format!("/v1/pipelines/{}/dlq", select.pipeline) };
    let method = if replay { reqwest::Method::POST } else { reqwest::Method::DELETE };
    if !replay && !select.filtered() {
        // Everything: one request, whatever the size.
        let answer = api.call(method, &path, "application/json", Vec::new())?;
        return summary(as_json, verb, answer["deleted"].as_u64().unwrap_or(0), 0);
    }
    let ids: Vec<String> = select.entries(api)?.iter().filter_map(|e| e["dlq_id"].as_str().map(str::to_string)).collect();
    let bar = if std::io::stderr().is_terminal() && ids.len() > CHUNK {
        ProgressBar::new(ids.len() as u64).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let (mut done, mut failed) = (0u64, 0u64);
    for chunk in ids.chunks(CHUNK) {
        let body = serde_json::to_vec(&json!({"ids": chunk}))?;
        let answer = api.call(method.clone(), &path, "application/json", body)?;
        done += answer[if replay { "replayed" } else { "deleted" }].as_u64().unwrap_or(0);
        failed += answer["failed"].as_u64().unwrap_or(0);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let code = summary(as_json, verb, done, failed)?;
    Ok(if failed > 0 { 1 } else { code })
}

fn summary(as_json: bool, verb: &str, done: u64, failed: u64) -> anyhow::Result<i32> {
    if as_json {
        let mut answer = json!({"failed": failed});
        answer[verb] = json!(done);
        print_json(&answer)?;
    } else if failed > 0 && verb == "replayed" {
        // The server's `failed`: ids no longer in the DLQ, or entries of a sink that no longer exists.
        println!("{done} entries {verb}, {failed} failed (gone from the DLQ meanwhile, or failures of a sink no longer in the spec: those stay in the DLQ saying so)");
    } else if failed > 0 {
        println!("{done} entries {verb}, {failed} failed");
    } else {
        println!("{done} entries {verb}");
    }
    Ok(0)
}
