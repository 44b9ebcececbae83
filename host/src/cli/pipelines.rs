//! `sluice apply -f FILE`, `sluice pipelines`, `sluice get PIPELINE`: pipeline
//! specs kept as files (JSON, YAML or TOML) put on a server, with the
//! difference from what it stored shown field by field.
//!
//! `--dry-run`: the server has no validate route (API.md v1.1 names none),
//! so the spec is parsed here, then PUT under a scratch pipeline id (which
//! makes the server check plugins, versions and stage `init`s exactly as for
//! the real id) and deleted again; the diff is against that resolved spec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::client::{print_json, Api, ServerArgs};

/// `sluice apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The spec file: `.json`, `.yaml`/`.yml` or `.toml`; `-` reads JSON or
    /// YAML from stdin.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The pipeline id (default: the spec's `id` field, else the file name
    /// without its extension).
    #[arg(long)]
    pub id: Option<String>,
    /// Check the spec (by the server, under a scratch id deleted after) and
    /// show the difference, without storing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sluice get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The pipeline id.
    pub pipeline: String,
}

/// Runs `sluice apply`.
pub fn apply(args: ApplyArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(300))?;
    let (mut spec, name) = read_spec(&args.file)?;
    let id = match (&args.id, spec.as_object_mut().and_then(|o| o.remove("id"))) {
        (Some(id), _) => id.clone(),
        (None, Some(Value::String(id))) => id,
        (None, Some(other)) => bail!("{}: `id` must be a string, not {other}", args.file.display()),
        (None, None) => name.with_context(|| "reading a spec from stdin: give its pipeline id with --id")?,
    };
    let before = api.json_opt(&format!("/v1/pipelines/{id}"))?.map(|p| p.get("spec").cloned().unwrap_or(Value::Null));
    let body = serde_json::to_vec(&spec)?;
    let after = if args.dry_run {
        // Short enough for the 64-character id limit, unlikely to collide.
        let scratch = format!("dry-run-{}", &uuid::Uuid::now_v7().simple().to_string()[..20]);
        let put = api.put(&format!("/v1/pipelines/{scratch}"), "application/json", body);
        let removed = api.call(reqwest::Method::DELETE, &format!("/v1/pipelines/{scratch}"), "application/json", Vec::new());
        let put = put.with_context(|| format!("the spec of {id} is not valid"))?;
        removed.with_context(|| format!("deleting the scratch pipeline {scratch} made for --dry-run"))?;
        put
    } else {
        api.put(&format!("/v1/pipelines/{id}"), "application/json", body).with_context(|| format!("applying {}", args.file.display()))?
    };
    let after = after.get("spec").cloned().unwrap_or(Value::Null);
    let changes = diff(before.as_ref().unwrap_or(&Value::Null), &after);
    if server.json {
        let changes: Vec<Value> = changes.iter().map(Change::to_json).collect();
        print_json(&json!({"id": id, "dry_run": args.dry_run, "created": before.is_none(), "changes": changes, "spec": after}))?;
        return Ok(0);
    }
    let verb = match (args.dry_run, before.is_some(), changes.is_empty()) {
        (true, _, true) => "is valid; it would not change",
        (true, false, _) => "is valid; it would be created",
        (true, true, _) => "is valid; it would change",
        (false, _, true) => "unchanged",
        (false, false, _) => "created",
        (false, true, _) => "changed",
    };
    println!("pipeline {id} {verb}");
    for change in &changes {
        println!("{change}");
    }
    Ok(0)
}

/// Parses a spec file by its extension (stdin: JSON, else YAML); answers it
/// as JSON and the file's stem.
fn read_spec(path: &Path) -> anyhow::Result<(Value, Option<String>)> {
    let (text, name) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading the spec from stdin")?;
        (text, None)
    } else {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        (text, path.file_stem().and_then(|s| s.to_str()).map(str::to_string))
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let spec: Value = match ext.as_str() {
        "toml" => toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?,
        "yaml" | "yml" => serde_yaml::from_str(&text).with_context(|| format!("{} is not valid YAML", path.display()))?,
        "json" => serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?,
        _ => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => serde_yaml::from_str(&text).with_context(|| format!("{} is neither JSON nor YAML (name it .toml for TOML)", path.display()))?,
        },
    };
    if !spec.is_object() {
        bail!("{}: a pipeline spec is an object (with `stages`), not {}", path.display(), kind(&spec));
    }
    Ok((spec, name))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One field that differs between two specs.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// A field the stored spec did not have: its path and new value.
    Added(String, Value),
    /// A field the new spec drops: its path and old value.
    Removed(String, Value),
    /// A field whose value changes: its path, old and new value.
    Changed(String, Value, Value),
}

impl Change {
    fn to_json(&self) -> Value {
        match self {
            Change::Added(path, new) => json!({"path": path, "op": "add", "new": new}),
            Change::Removed(path, old) => json!({"path": path, "op": "remove", "old": old}),
            Change::Changed(path, old, new) => json!({"path": path, "op": "change", "old": old, "new": new}),
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added(path, new) => write!(f, "+ {path}: {new}"),
            Change::Removed(path, old) => write!(f, "- {path}: {old}"),
            Change::Changed(path, old, new) => write!(f, "~ {path}: {old} -> {new}"),
        }
    }
}

/// Every leaf field (`stages[0].config.patterns[1]`) of a spec with its value.
fn leaves(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                leaves(v, sub, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{path}[{i}]"), out);
            }
        }
        _ if path.is_empty() => {}
        _ => {
            out.insert(path, value.clone());
        }
    }
}

/// The field-by-field difference from `before` to `after` (`null` = none).
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    leaves(before, String::new(), &mut old);
    leaves(after, String::new(), &mut new);
    let mut changes = Vec::new();
    for (path, was) in &old {
        match new.remove(path) {
            None => changes.push(Change::Removed(path.clone(), was.clone())),
            Some(now) if &now != was => changes.push(Change::Changed(path.clone(), was.clone(), now)),
            Some(_) => {}
        }
    }
    changes.extend(new.into_iter().map(|(path, now)| Change::Added(path, now)));
    changes.sort_by(|a, b| key(a).cmp(key(b)));
    changes
}

fn key(change: &Change) -> &str {
    match change {
        Change::Added(p, _) | Change::Removed(p, _) | Change::Changed(p, _, _) => p,
    }
}

/// Runs `sluice pipelines`: one line per pipeline with its stages.
pub fn list(server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(30))?;
    let answer: Value = api.json("/v1/pipelines")?;
    if server.json {
        print_json(&answer)?;
        return Ok(0);
    }
    let pipelines = answer.get("pipelines").and_then(Value::as_array).context("GET /v1/pipelines: the answer has no pipelines")?;
    println!("{:<24} {:>6} {:>7} {:>5}  STAGES", "PIPELINE", "STAGES", "WINDOWS", "SINKS");
    for p in pipelines {
        let spec = &p["spec"];
        let count = |field: &str| spec.get(field).and_then(Value::as_array).map_or(0, Vec::len);
        let stages: Vec<String> = spec
            .get("stages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| format!("{}={}@{}", s["name"].as_str().unwrap_or("?"), s["plugin"].as_str().unwrap_or("?"), s["version"]))
            .collect();
        println!(
            "{:<24} {:>6} {:>7} {:>5}  {}",
            p["id"].as_str().unwrap_or("?"),
            count("stages"),
            count("windows"),
            count("sinks"),
            stages.join(" → ")
        );
    }
    Ok(0)
}

/// Runs `sluice get`: the stored spec and the pipeline's counters.
pub fn get(args: GetArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Api::new(server, Duration::from_secs(30))?;
    let Some(pipeline) = api.json_opt(&format!("/v1/pipelines/{}", args.pipeline))? else {
        bail!("no pipeline {} on {}", args.pipeline, api.base);
    };
    let metrics: Value = api.json(&format!("/v1/pipelines/{}/metrics", args.pipeline))?;
    if server.json {
        print_json(&json!({"id": args.pipeline, "spec": pipeline["spec"], "metrics": metrics}))?;
        return Ok(0);
    }
    println!("pipeline {}", args.pipeline);
    println!(
        "accepted {}  rejected {}  processed {}  emitted {}  dlq {}  queue {}  {} events/s",
        metrics["accepted"], metrics["rejected"], metrics["processed"], metrics["emitted"], metrics["dlq_size"], metrics["queue_depth"], metrics["throughput_per_s"]
    );
    println!("{}", serde_json::to_string_pretty(&pipeline["spec"])?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_field_that_changed() {
        let before = json!({"stages": [{"name": "a", "config": {"p": ["bot"]}}], "max_queue_depth": 10});
        let after = json!({"stages": [{"name": "a", "config": {"p": ["bot", "spider"]}}], "max_queue_depth": 20, "dedup_window_ms": 5});
        let shown: Vec<String> = diff(&before, &after).iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["+ dedup_window_ms: 5", "~ max_queue_depth: 10 -> 20", "+ stages[0].config.p[1]: \"spider\""]);
        assert!(diff(&after, &after).is_empty());
    }
}
