//! Windowed aggregations end to end: the real `sluice serve` on both stores,
//! real HTTP, compared with a small reference model written here.

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};


use harness::{wait_for, Server, StoreKind};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};

fn embedded() -> (StoreKind, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (StoreKind::Embedded(dir.path().join("store")), dir)
}

fn redis(name: &str) -> (StoreKind, tempfile::TempDir) {
    let url = common::redis_url_sync();
    (StoreKind::Redis { url, prefix: common::unique_prefix(name) }, tempfile::tempdir().unwrap())
}

macro_rules! on_both_stores {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn embedded() {
                let (store, _dir) = super::embedded();
                super::$scenario(store);
            }
            #[test]
            fn redis() {
                let (store, _dir) = super::redis(stringify!($scenario));
                super::$scenario(store);
            }
        }
    };
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A server with a fast closer and the pass-through plugin uploaded.
fn server(store: StoreKind) -> Server {
    let server = Server::start_with(store, None, &["--window-tick-ms", "50"]);
    server.upload("bot-filter", "bot_filter");
    server
}

fn spec_with(windows: Value, idle_ms: u64) -> Value {
    json!({"stages": [{"name": "pass", "plugin": "bot-filter"}], "windows": windows, "watermark_idle_ms": idle_ms})
}

fn results(server: &Server, pipeline: &str, window: &str, query: &str) -> (Vec<Value>, Value) {
    let (status, body) = server.get(&format!("/v1/pipelines/{pipeline}/windows/{window}{query}"));
    assert_eq!(status, 200, "{body}");
    (body["results"].as_array().unwrap().clone(), body["watermark"].clone())
}

// ---- the reference model ---------------------------------------------------

#[derive(Debug, Clone)]
struct Ev {
    id: String,
    ts: i64,
    group: Option<&'static str>,
    value: Option<Value>,
    user: Option<u32>,
}

impl Ev {
    fn json(&self) -> Value {
        let mut data = serde_json::Map::new();
        if let Some(g) = self.group {
            data.insert("g".into(), g.into());
        }
        if let Some(v) = &self.value {
            data.insert("v".into(), v.clone());
        }
        if let Some(u) = self.user {
            data.insert("u".into(), format!("user-{u}").into());
        }
        json!({"id": self.id, "type": "t", "timestamp": self.ts, "data": data})
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Panes { size: i64, slide: i64 },
    Session { gap: i64 },
}

#[derive(Debug, Clone)]
struct Def {
    name: &'static str,
    kind: Kind,
    lateness: i64,
    grouped: bool,
}

impl Def {
    fn spec(&self) -> Value {
        let aggregates = json!([{"op": "count"}, {"op": "sum", "field": "data.v"}, {"op": "min", "field": "data.v"},
            {"op": "max", "field": "data.v"}, {"op": "avg", "field": "data.v"}, {"op": "count_distinct", "field": "data.u"}]);
        let mut w = match self.kind {
            Kind::Panes { size, slide } if size == slide => json!({"name": self.name, "kind": "tumbling", "size_ms": size}),
            Kind::Panes { size, slide } => json!({"name": self.name, "kind": "sliding", "size_ms": size, "slide_ms": slide}),
            Kind::Session { gap } => json!({"name": self.name, "kind": "session", "gap_ms": gap}),
        };
        w["allowed_lateness_ms"] = self.lateness.into();
        w["aggregates"] = aggregates;
        if self.grouped {
            w["group_by"] = "data.g".into();
        }
        w
    }

    fn group(&self, e: &Ev) -> Value {
        if self.grouped { e.group.map(Value::from).unwrap_or(Value::Null) } else { Value::Null }
    }
}

/// The expected state of every window after a sequence of ingest requests,
/// each applied with the watermark left by the ones before it.
#[derive(Default)]
struct Model {
    wm: Option<i64>,
    /// (def, start, end, group) → events counted.
    windows: BTreeMap<(usize, i64, i64, String), Vec<Ev>>,
    /// Session points not yet final: (def, group) → events.
    points: BTreeMap<(usize, String), Vec<Ev>>,
    late: BTreeSet<(String, &'static str)>,
}

impl Model {
    fn apply(&mut self, defs: &[Def], request: &[Ev]) {
        let mut newest: Option<i64> = None;
        for e in request {
            let mut counted = false;
            for (d, def) in defs.iter().enumerate() {
                let group = def.group(e).to_string();
                match def.kind {
                    Kind::Panes { size, slide } => {
                        let pane = e.ts.div_euclid(slide) * slide;
                        let mut any = false;
                        let mut s = pane - size + slide;
                        while s <= pane {
                            if self.wm.is_none_or(|wm| s + size + def.lateness > wm) {
                                self.windows.entry((d, s, s + size, group.clone())).or_default().push(e.clone());
                                any = true;
                            }
                            s += slide;
                        }
                        if any { counted = true } else { self.late.insert((e.id.clone(), def.name)); }
                    }
                    Kind::Session { gap } => {
                        if self.wm.is_some_and(|wm| e.ts + gap + def.lateness <= wm) {
                            self.late.insert((e.id.clone(), def.name));
                        } else {
                            self.points.entry((d, group)).or_default().push(e.clone());
                            counted = true;
                        }
                    }
                }
            }
            if counted {
                newest = Some(newest.map_or(e.ts, |n: i64| n.max(e.ts)));
            }
        }
        if let Some(n) = newest {
            self.wm = Some(self.wm.map_or(n, |w| w.max(n)));
        }
        // Sessions that became final are stored and their points dropped.
        let wm = self.wm;
        for ((d, group), points) in self.points.iter_mut() {
            let Kind::Session { gap } = defs[*d].kind else { continue };
            let mut keep = Vec::new();
            for (start, end, events) in sessions(points, gap) {
                if wm.is_some_and(|wm| end + defs[*d].lateness <= wm) {
                    self.windows.insert((*d, start, end, group.clone()), events);
                } else {
                    keep.extend(events);
                }
            }
            *points = keep;
        }
    }

    /// Every window of def `d` as the API should show it.
    fn expected(&self, defs: &[Def], d: usize) -> Vec<Value> {
        let mut all: Vec<(i64, String, i64, Vec<Ev>)> = self
            .windows
            .iter()
            .filter(|((dd, ..), _)| *dd == d)
            .map(|((_, s, e, g), evs)| (*s, g.clone(), *e, evs.clone()))
            .collect();
        if let Kind::Session { gap } = defs[d].kind {
            for ((dd, group), points) in &self.points {
                if *dd == d {
                    for (s, e, evs) in sessions(points, gap) {
                        all.push((s, group.clone(), e, evs));
                    }
                }
            }
        }
        all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        all.into_iter().map(|(start, group, end, evs)| self.render(start, end, &group, &evs)).collect()
    }

    fn render(&self, start: i64, end: i64, group: &str, evs: &[Ev]) -> Value {
        let nums: Vec<f64> = evs.iter().filter_map(|e| e.value.as_ref().and_then(Value::as_f64)).collect();
        let users: HashSet<u32> = evs.iter().filter_map(|e| e.user).collect();
        let num = |x: Option<f64>| x.map(Value::from).unwrap_or(Value::Null);
        json!({
            "group": serde_json::from_str::<Value>(group).unwrap(),
            "start": start, "end": end,
            "closed": self.wm.is_some_and(|wm| end <= wm),
            "count": evs.len(),
            "sum_data.v": nums.iter().sum::<f64>(),
            "min_data.v": num(nums.iter().copied().reduce(f64::min)),
            "max_data.v": num(nums.iter().copied().reduce(f64::max)),
            "avg_data.v": num((!nums.is_empty()).then(|| nums.iter().sum::<f64>() / nums.len() as f64)),
            "missing_data.v": evs.len() - nums.len(),
            "count_distinct_data.u": users.len(),
            "missing_data.u": evs.iter().filter(|e| e.user.is_none()).count(),
        })
    }
}

/// Sessions of some points: (start, end, events), a gap ≥ `gap` splits.
fn sessions(points: &[Ev], gap: i64) -> Vec<(i64, i64, Vec<Ev>)> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|e| e.ts);
    let mut out: Vec<(i64, i64, Vec<Ev>)> = Vec::new();
    for e in sorted {
        match out.last_mut() {
            Some((_, end, evs)) if e.ts < *end => {
                *end = (*end).max(e.ts + gap);
                evs.push(e);
            }
            _ => out.push((e.ts, e.ts + gap, vec![e])),
        }
    }
    out
}

/// Compares one result with the model's, allowing HyperLogLog its error.
fn same_result(got: &Value, want: &Value) -> Result<(), String> {
    let mut got = got.clone();
    let mut want = want.clone();
    let g = got["count_distinct_data.u"].as_f64().unwrap_or(-1.0);
    let w = want["count_distinct_data.u"].as_f64().unwrap();
    if (g - w).abs() > (w * 0.02).max(1.0) {
        return Err(format!("count_distinct {g} vs {w}"));
    }
    for v in [&mut got, &mut want] {
        v.as_object_mut().unwrap().remove("count_distinct_data.u");
        for key in ["sum_data.v", "avg_data.v", "min_data.v", "max_data.v"] {
            if let Some(x) = v[key].as_f64() {
                v[key] = json!((x * 1e6).round() / 1e6);
            }
        }
    }
    if got == want { Ok(()) } else { Err(format!("got {got}\nwant {want}")) }
}

fn event_strategy() -> impl Strategy<Value = (i64, Option<&'static str>, Option<Value>, Option<u32>)> {
    (
        0i64..12_000,
        prop::option::weighted(0.85, prop::sample::select(vec!["a", "b", "c"])),
        prop_oneof![
            6 => (-50i64..100).prop_map(|n| Some(json!(n))),
            1 => Just(Some(json!("slow"))),
            1 => Just(None),
        ],
        prop::option::weighted(0.9, 0u32..25),
    )
}

fn defs_strategy() -> impl Strategy<Value = Vec<Def>> {
    (prop::sample::select(vec![0i64, 700]), prop::sample::select(vec![0i64, 1500]), prop::sample::select(vec![0i64, 400]), any::<bool>()).prop_map(
        |(l1, l2, l3, grouped)| {
            vec![
                Def { name: "tumble", kind: Kind::Panes { size: 1000, slide: 1000 }, lateness: l1, grouped },
                Def { name: "slide", kind: Kind::Panes { size: 3000, slide: 1000 }, lateness: l2, grouped: !grouped },
                Def { name: "sess", kind: Kind::Session { gap: 600 }, lateness: l3, grouped: true },
            ]
        },
    )
}

/// Runs one generated case through the server and compares every window.
fn run_case(server: &Server, case: usize, defs: &[Def], requests: &[Vec<Ev>]) -> Result<(), TestCaseError> {
    let id = format!("prop-{case}");
    let spec = spec_with(Value::Array(defs.iter().map(Def::spec).collect()), 86_400_000);
    server.put_pipeline(&id, &spec);
    let mut model = Model::default();
    let mut sent = 0u64;
    for request in requests {
        let body: Vec<Value> = request.iter().map(Ev::json).collect();
        let (status, answer) = server.ingest_ndjson(&id, &body);
        prop_assert_eq!(status, 202, "{}", answer);
        sent += request.len() as u64;
        model.apply(defs, request);
        // Wait until the batch is applied and the closer has caught up, so
        // the next request sees the watermark the model expects.
        let want_wm = model.wm.map(Value::from).unwrap_or(Value::Null);
        wait_for("batch applied and watermark settled", Duration::from_secs(20), || {
            let m = server.metrics(&id);
            let (_, wm) = results(server, &id, defs[0].name, "?from=0&to=0");
            (m["processed"].as_u64() == Some(sent) && wm == want_wm).then_some(())
        });
    }
    for (d, def) in defs.iter().enumerate() {
        let (got, _) = results(server, &id, def.name, "");
        let want = model.expected(defs, d);
        let brief = |v: &[Value]| v.iter().map(|r| format!("{}@{}:{}", r["group"], r["start"], r["count"])).collect::<Vec<_>>();
        prop_assert_eq!(brief(&got), brief(&want), "window `{}` (lateness {})", def.name, def.lateness);
        for (g, w) in got.iter().zip(&want) {
            if let Err(e) = same_result(g, w) {
                return Err(TestCaseError::fail(format!("window `{}`: {e}", def.name)));
            }
        }
    }
    let late: BTreeSet<(String, String)> = server
        .dlq(&id)
        .iter()
        .map(|e| {
            assert_eq!(e["error_kind"], "late", "{e}");
            (e["event"]["id"].as_str().unwrap().to_string(), e["stage"].as_str().unwrap().trim_start_matches("window:").to_string())
        })
        .collect();
    let want_late: BTreeSet<(String, String)> = model.late.iter().map(|(id, w)| (id.clone(), w.to_string())).collect();
    prop_assert_eq!(late, want_late, "late events in the DLQ");
    server.delete(&format!("/v1/pipelines/{id}"));
    Ok(())
}

fn windows_match_the_reference_model(store: StoreKind) {
    let server = server(store);
    let cases: u32 = std::env::var("SLUICE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let mut runner = TestRunner::new(PropConfig { cases, failure_persistence: None, max_shrink_iters: 20, ..PropConfig::default() });
    let strategy = (defs_strategy(), prop::collection::vec(prop::collection::vec(event_strategy(), 1..8), 1..7));
    let counter = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |(defs, requests)| {
            counter.set(counter.get() + 1);
            let case = counter.get();
            let mut n = 0;
            let requests: Vec<Vec<Ev>> = requests
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|(ts, group, value, user)| {
                            n += 1;
                            Ev { id: format!("c{case}-e{n}"), ts, group, value, user }
                        })
                        .collect()
                })
                .collect();
            run_case(&server, case, &defs, &requests)
        })
        .unwrap();
}
on_both_stores!(windows_match_the_reference_model);
