//! Reading a pipeline back once it has drained, and comparing it with what
//! the workload says must be there: each unit in its place exactly once, and
//! both windows exact.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::workload::{Expected, Place};
use crate::Server;

/// How long a pipeline may take to drain after a round's load and fault.
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);
/// How long window results may lag behind outputs that are all in place
/// before a difference counts.
const WINDOW_GRACE: Duration = Duration::from_secs(10);

/// What a check found. All zeros (and `drained`) is a pass.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Units found in the output.
    pub outputs: usize,
    /// Units found in the DLQ.
    pub dlq: usize,
    /// Units expected in the output or the DLQ and found in neither.
    pub lost: usize,
    /// Extra copies: a unit found n > 1 times counts n − 1.
    pub duplicated: usize,
    /// Units found in the wrong place (filtered ones anywhere, outputs in the
    /// DLQ and the reverse), or never sent.
    pub misplaced: usize,
    /// Window results (per window and group) whose values differ from the
    /// expected ones, missing ones and extra ones included.
    pub window_mismatches: usize,
    /// Whether the queue reached depth 0.
    pub drained: bool,
    /// The first few problems, spelled out.
    pub problems: Vec<String>,
}

impl Findings {
    /// Nothing lost, nothing twice, nothing misplaced, windows exact, queue empty.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.misplaced == 0 && self.window_mismatches == 0 && self.drained
    }

    fn note(&mut self, problem: String) {
        if self.problems.len() < 8 {
            self.problems.push(problem);
        }
    }
}

/// Waits until `pipeline` has drained to what `expected` says (queue depth
/// 0 and every unit placed), or [`DRAIN_DEADLINE`] passes, then compares.
pub fn check(server: &Server, pipeline: &str, expected: &Expected) -> Findings {
    let started = Instant::now();
    let mut last = Findings::default();
    let mut windows_off_since: Option<Instant> = None;
    loop {
        if let Ok(findings) = try_check(server, pipeline, expected) {
            // Duplicates and misplaced units never go away: no use waiting.
            if findings.is_clean() || findings.duplicated > 0 || findings.misplaced > 0 {
                return findings;
            }
            if findings.drained && findings.lost == 0 {
                let since = *windows_off_since.get_or_insert_with(Instant::now);
                if since.elapsed() > WINDOW_GRACE {
                    return findings;
                }
            }
            last = findings;
        }
        if started.elapsed() > DRAIN_DEADLINE {
            last.note(format!("not drained after {DRAIN_DEADLINE:?}"));
            return last;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn try_check(server: &Server, pipeline: &str, expected: &Expected) -> Result<Findings, String> {
    let metrics = get(server, &format!("/v1/pipelines/{pipeline}/metrics"))?;
    let mut findings = Findings { drained: metrics["queue_depth"].as_u64() == Some(0), ..Findings::default() };
    if !findings.drained {
        return Ok(findings);
    }
    let outputs = page_all(server, &format!("/v1/pipelines/{pipeline}/output"), "/event/id")?;
    let dlq = page_all(server, &format!("/v1/pipelines/{pipeline}/dlq"), "/event/id")?;
    findings.outputs = outputs.len();
    findings.dlq = dlq.len();
    let mut seen: HashMap<&str, (Place, usize)> = HashMap::new();
    for (id, place) in outputs.iter().map(|id| (id, Place::Output)).chain(dlq.iter().map(|id| (id, Place::Dlq))) {
        let entry = seen.entry(id.as_str()).or_insert((place, 0));
        entry.1 += 1;
        if entry.1 > 1 {
            findings.duplicated += 1;
            findings.note(format!("{id} found {} times", entry.1));
        }
        let want = expected.places.get(id.as_str());
        if want != Some(&place) {
            findings.misplaced += 1;
            findings.note(format!("{id} in {place:?}, expected {want:?}"));
        }
    }
    for (id, place) in &expected.places {
        if *place != Place::Filtered && !seen.contains_key(id.as_str()) {
            findings.lost += 1;
            findings.note(format!("{id} expected in {place:?}, not found"));
        }
    }
    if findings.lost > 0 {
        // Still on its way (a retry's backoff, a reclaim): the windows can wait.
        return Ok(findings);
    }
    compare_windows(server, pipeline, expected, &mut findings)?;
    Ok(findings)
}

fn compare_windows(server: &Server, pipeline: &str, expected: &Expected, findings: &mut Findings) -> Result<(), String> {
    let per_second = get(server, &format!("/v1/pipelines/{pipeline}/windows/per-second"))?;
    let got: BTreeMap<i64, (u64, f64)> = results(&per_second)?
        .iter()
        .filter(|r| r["count"].as_u64() != Some(0))
        .map(|r| (r["start"].as_i64().unwrap_or(-1), (r["count"].as_u64().unwrap_or(0), r["sum_data.n"].as_f64().unwrap_or(f64::NAN))))
        .collect();
    diff("per-second", &expected.per_second, &got, findings);
    let by_host = get(server, &format!("/v1/pipelines/{pipeline}/windows/by-host"))?;
    let got: BTreeMap<(String, i64), u64> = results(&by_host)?
        .iter()
        .filter(|r| r["count"].as_u64() != Some(0))
        .map(|r| ((r["group"].as_str().unwrap_or("?").to_string(), r["start"].as_i64().unwrap_or(-1)), r["count"].as_u64().unwrap_or(0)))
        .collect();
    diff("by-host", &expected.by_host, &got, findings);
    Ok(())
}

fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(name: &str, want: &BTreeMap<K, V>, got: &BTreeMap<K, V>, findings: &mut Findings) {
    for (key, value) in want {
        if got.get(key) != Some(value) {
            findings.window_mismatches += 1;
            findings.note(format!("window {name} {key:?}: expected {value:?}, got {:?}", got.get(key)));
        }
    }
    for (key, value) in got {
        if !want.contains_key(key) {
            findings.window_mismatches += 1;
            findings.note(format!("window {name} {key:?}: unexpected {value:?}"));
        }
    }
}

fn results(answer: &Value) -> Result<&Vec<Value>, String> {
    answer["results"].as_array().ok_or_else(|| format!("window results without `results`: {answer}"))
}

/// GET `path`, 200 and JSON, or why not.
fn get(server: &Server, path: &str) -> Result<Value, String> {
    let response = server.client().get(server.url(path)).send().map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status().as_u16();
    let body: Value = response.json().map_err(|e| format!("GET {path}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {path}: {status} {body}"));
    }
    Ok(body)
}

/// Every entry of a paged list, as the string at `pointer` in each.
fn page_all(server: &Server, path: &str, pointer: &str) -> Result<Vec<String>, String> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    // Bounded: a page holds up to 1,000 entries, and no round comes near
    // ten million.
    for _ in 0..10_000 {
        let page = get(server, &format!("{path}?limit=1000&cursor={cursor}"))?;
        let entries = page["entries"].as_array().ok_or_else(|| format!("{path}: no entries in {page}"))?;
        if entries.is_empty() {
            return Ok(all);
        }
        for entry in entries {
            let id = entry.pointer(pointer);
            all.push(id.and_then(Value::as_str).ok_or_else(|| format!("{path}: an entry without {pointer}: {entry}"))?.to_string());
        }
        cursor = page["next_cursor"].as_str().ok_or_else(|| format!("{path}: no next_cursor"))?.to_string();
    }
    Err(format!("{path}: more than 10,000 pages"))
}
