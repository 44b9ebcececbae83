//! `sluice top`: every pipeline, its stages and its sinks on one screen,
//! refreshed each `--interval` (like `vector top`): events/s, errors, queue
//! depth, DLQ size and sink lag. `--once` prints one frame as plain text
//! (for scripts and tests) instead of taking over the terminal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode};
use ratatui::layout::Constraint;
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Row, Table};
use serde_json::{json, Value};

use super::client::{print_json, Api, ServerArgs};

/// `sluice top`.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Print one frame as text and exit.
    #[arg(long)]
    pub once: bool,
    /// How often to refresh.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// The columns of every row.
const HEADER: [&str; 8] = ["PIPELINE / STAGE / SINK", "EVENTS/S", "IN", "OUT", "ERRORS", "QUEUE", "DLQ", "LAG"];

/// One reading of the server: per pipeline its metrics and its sinks.
struct Snapshot {
    at: Instant,
    pipelines: Vec<(String, Value, Value)>,
}

fn snapshot(api: &Api) -> anyhow::Result<Snapshot> {
    let list: Value = api.json("/v1/pipelines")?;
    let mut pipelines = Vec::new();
    for p in list.get("pipelines").and_then(Value::as_array).context("GET /v1/pipelines: no pipelines")? {
        let id = p["id"].as_str().context("GET /v1/pipelines: a pipeline without an id")?.to_string();
        let metrics: Value = api.json(&format!("/v1/pipelines/{id}/metrics"))?;
        let sinks: Value = api.json(&format!("/v1/pipelines/{id}/sinks"))?;
        pipelines.push((id, metrics, sinks));
    }
    Ok(Snapshot { at: Instant::now(), pipelines })
}

/// The table rows of a snapshot; stage rates come from the calls counted
/// since `previous` (blank on the first frame).
fn rows(now: &Snapshot, previous: Option<&Snapshot>) -> Vec<[String; 8]> {
    let mut before: HashMap<(String, String), u64> = HashMap::new();
    let mut secs = 0.0;
    if let Some(prev) = previous {
        secs = now.at.duration_since(prev.at).as_secs_f64();
        for (id, m, _) in &prev.pipelines {
            for s in m["stages"].as_array().into_iter().flatten() {
                before.insert((id.clone(), s["name"].as_str().unwrap_or("").to_string()), s["calls"].as_u64().unwrap_or(0));
            }
        }
    }
    let text = |v: &Value| if v.is_null() { String::new() } else { v.to_string() };
    let mut out = Vec::new();
    for (id, m, sinks) in &now.pipelines {
        let rate = m["throughput_per_s"].as_f64().map(|r| format!("{r:.0}")).unwrap_or_default();
        out.push([id.clone(), rate, text(&m["accepted"]), text(&m["emitted"]), text(&m["rejected"]), text(&m["queue_depth"]), text(&m["dlq_size"]), String::new()]);
        for s in m["stages"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or("?").to_string();
            let calls = s["calls"].as_u64().unwrap_or(0);
            let rate = match before.get(&(id.clone(), name.clone())) {
                Some(was) if secs > 0.0 => format!("{:.0}", calls.saturating_sub(*was) as f64 / secs),
                _ => String::new(),
            };
            out.push([format!("  {name}"), rate, calls.to_string(), String::new(), text(&s["errors"]), String::new(), String::new(), String::new()]);
        }
        for s in sinks["sinks"].as_array().into_iter().flatten() {
            let name = format!("  sink:{} ({})", s["name"].as_str().unwrap_or("?"), s["kind"].as_str().unwrap_or("?"));
            out.push([name, String::new(), String::new(), text(&s["delivered"]), text(&s["failed"]), String::new(), String::new(), text(&s["lag"])]);
        }
    }
    out
}

/// Runs `sluice top`.
pub fn run(args: TopArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(10))?;
    if args.once {
        let now = snapshot(&api)?;
        if server.json {
            let pipelines: Vec<Value> = now.pipelines.iter().map(|(id, m, s)| json!({"id": id, "metrics": m, "sinks": s["sinks"]})).collect();
            return print_json(&json!({"pipelines": pipelines})).map(|()| 0);
        }
        let rows = rows(&now, None);
        let widths: Vec<usize> = (0..HEADER.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).chain([HEADER[i].len()]).max().unwrap_or(0)).collect();
        let line = |cells: Vec<&str>| {
            cells.iter().enumerate().map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) }).collect::<Vec<_>>().join("  ")
        };
        println!("{}", line(HEADER.to_vec()));
        for r in &rows {
            println!("{}", line(r.iter().map(String::as_str).collect()));
        }
        return Ok(0);
    }
    let mut terminal = ratatui::try_init().context("taking over the terminal (use --once when not on a terminal)")?;
    let result = live(&api, &args, &mut terminal);
    ratatui::restore();
    result.map(|()| 0)
}

/// Redraws until `q` or Esc.
fn live(api: &Api, args: &TopArgs, terminal: &mut ratatui::DefaultTerminal) -> anyhow::Result<()> {
    let mut previous: Option<Snapshot> = None;
    loop {
        let now = snapshot(api)?;
        let rows = rows(&now, previous.as_ref());
        let title = format!(" sluice top — {} — q to quit ", api.base);
        terminal
            .draw(|frame| {
                let widths = [Constraint::Fill(3), Constraint::Fill(1), Constraint::Fill(1), Constraint::Fill(1), Constraint::Fill(1), Constraint::Fill(1), Constraint::Fill(1), Constraint::Fill(1)];
                let table = Table::new(rows.iter().map(|r| Row::new(r.clone())), widths)
                    .header(Row::new(HEADER).style(Style::default().add_modifier(Modifier::BOLD)))
                    .block(Block::bordered().title(title));
                frame.render_widget(table, frame.area());
            })
            .context("drawing")?;
        previous = Some(now);
        let until = Instant::now() + args.interval;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if event::poll(left).context("reading the keyboard")? {
                if let Event::Key(key) = event::read().context("reading the keyboard")? {
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(());
                    }
                }
            }
        }
    }
}
