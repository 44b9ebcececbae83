//! Windowed aggregations end to end: the real `sluice serve` on both stores,
//! real HTTP, compared with a small reference model written here.

use sluice_blackbox_tests as harness;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};


use harness::{on_both_stores, wait_for, Server, StoreKind};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};


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

// ---- "users online now", spikes, the live feed, bad input --------------------

/// A 5-minute sliding window with a 1-second slide, count-distinct of
/// `data.user_id`, answers within 1 s of the events' ingest.
fn users_online_now(store: StoreKind) {
    let server = server(store);
    let spec = spec_with(
        json!([{"name": "online_now", "kind": "sliding", "size_ms": 300000, "slide_ms": 1000,
                "aggregates": [{"op": "count_distinct", "field": "data.user_id"}]}]),
        10_000,
    );
    server.put_pipeline("site", &spec);
    let mut users = HashSet::new();
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let ts = now_ms();
        // 400 events from 300 users, some seen in earlier rounds.
        let events: Vec<Value> = (0..400)
            .map(|i| {
                let user = format!("u{}", (round * 200 + i * 3) % 1000);
                users.insert(user.clone());
                json!({"id": format!("r{round}-{i}"), "type": "page_view", "timestamp": ts - (i as i64 % 50), "data": {"user_id": user}})
            })
            .collect();
        let sent = Instant::now();
        let (status, body) = server.ingest_ndjson("site", &events);
        assert_eq!(status, 202, "{body}");
        let start = ts.div_euclid(1000) * 1000 - 300_000 + 1000;
        let want = users.len() as f64;
        let got = wait_for("online-now count", Duration::from_secs(5), || {
            let (results, _) = results(&server, "site", "online_now", &format!("?from={start}&to={start}"));
            let n = results.first()?["count_distinct_data.user_id"].as_f64()?;
            ((n - want).abs() <= want * 0.02).then_some(n)
        });
        let took = sent.elapsed();
        worst = worst.max(took);
        assert!((got - want).abs() <= want * 0.02, "{got} vs {want}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(worst < Duration::from_secs(1), "online-now answered {worst:?} after ingest");
    eprintln!("users online now: answered within {worst:?} of ingest");
}
on_both_stores!(users_online_now);

/// Steady traffic for a few windows, then a surge: one alert, within 2 s.
fn spike_alerts_within_two_seconds(store: StoreKind) {
    let server = server(store);
    let spec = spec_with(
        json!([{"name": "per_sec", "kind": "tumbling", "size_ms": 1000, "group_by": "data.host",
                "aggregates": [{"op": "count"}],
                "spike": {"factor": 3.0, "baseline_windows": 3, "min_count": 25}}]),
        10_000,
    );
    server.put_pipeline("spiky", &spec);
    let mut n = 0;
    let mut send = |count: usize, host: &str| {
        let ts = now_ms();
        let events: Vec<Value> = (0..count)
            .map(|_| {
                n += 1;
                json!({"id": format!("s{n}"), "type": "view", "timestamp": ts, "data": {"host": host}})
            })
            .collect();
        let (status, body) = server.ingest_ndjson("spiky", &events);
        assert_eq!(status, 202, "{body}");
        ts
    };
    // ~10 events a second for 5 s on two hosts.
    let steady_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < steady_until {
        send(1, "a.example");
        send(1, "b.example");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, body) = server.get("/v1/pipelines/spiky/alerts");
    assert_eq!(body["entries"], json!([]), "no alert for steady traffic");
    let surge_at = Instant::now();
    let ts = send(80, "a.example");
    let alert = wait_for("a spike alert", Duration::from_secs(5), || {
        let (_, body) = server.get("/v1/pipelines/spiky/alerts");
        body["entries"].as_array().and_then(|e| e.first().cloned())
    });
    let took = surge_at.elapsed();
    assert!(took < Duration::from_secs(2), "alerted {took:?} after the surge");
    assert_eq!(alert["group"], "a.example");
    assert_eq!(alert["window"], "per_sec");
    assert_eq!(alert["start"], ts.div_euclid(1000) * 1000);
    assert!(alert["count"].as_u64().unwrap() >= 80, "{alert}");
    let baseline = alert["baseline"].as_f64().unwrap();
    assert!((5.0..=15.0).contains(&baseline), "baseline {baseline}");
    assert_eq!(alert["factor"], 3.0);
    // More of the surge in the same window: still one alert.
    send(40, "a.example");
    std::thread::sleep(Duration::from_millis(400));
    let (_, body) = server.get("/v1/pipelines/spiky/alerts");
    let same: Vec<_> = body["entries"].as_array().unwrap().iter().filter(|a| a["start"] == alert["start"] && a["group"] == "a.example").collect();
    assert_eq!(same.len(), 1, "{body}");
    eprintln!("spike alert after {took:?}");
}
on_both_stores!(spike_alerts_within_two_seconds);

/// Reads server-sent events until `want` returns Some or the time is up.
fn read_sse<T>(server: &Server, path: &str, timeout: Duration, mut want: impl FnMut(&str, &Value) -> Option<T>) -> T {
    let client = reqwest::blocking::Client::builder().timeout(timeout).build().unwrap();
    let response = client.get(server.url(path)).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut kind = String::new();
    for line in BufReader::new(response).lines() {
        let line = line.expect("the live feed stays open");
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            let value: Value = serde_json::from_str(data).unwrap();
            if let Some(found) = want(&kind, &value) {
                return found;
            }
        }
    }
    panic!("the live feed ended");
}

/// A quiet pipeline still closes its windows (the watermark moves with
/// processing time after the idle timeout); the live feed shows updates as
/// they happen and each closed window's result once.
fn quiet_pipeline_closes_and_streams_live(store: StoreKind) {
    let server = server(store);
    let spec = spec_with(
        json!([{"name": "views", "kind": "tumbling", "size_ms": 1000, "group_by": "data.url",
                "aggregates": [{"op": "count"}, {"op": "avg", "field": "data.ms"}]}]),
        300,
    );
    server.put_pipeline("quiet", &spec);
    let ts = now_ms();
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("q{i}"), "type": "v", "timestamp": ts, "data": {"url": "/home", "ms": i * 10}}))
        .collect();
    let sent = Instant::now();
    std::thread::scope(|s| {
        let feed = s.spawn(|| {
            read_sse(&server, "/v1/pipelines/quiet/windows/views/live", Duration::from_secs(15), |kind, v| {
                (kind == "result").then(|| v.clone())
            })
        });
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = server.ingest_ndjson("quiet", &events);
        assert_eq!(status, 202, "{body}");
        let result = feed.join().unwrap();
        assert_eq!(result["group"], "/home");
        assert_eq!(result["count"], 10);
        assert_eq!(result["avg_data.ms"], 45.0);
        assert_eq!(result["closed"], true);
        assert_eq!(result["start"], ts.div_euclid(1000) * 1000);
    });
    // Closed within: the rest of the window + the idle timeout + a few ticks.
    assert!(sent.elapsed() < Duration::from_secs(4), "closed after {:?}", sent.elapsed());
    let (_, body) = server.get("/v1/pipelines/quiet/windows/views/results");
    assert_eq!(body["entries"].as_array().unwrap().len(), 1, "one record per closed window: {body}");
    let (results, wm) = results(&server, "quiet", "views", "?group=/home");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["closed"], true);
    assert!(wm.as_i64().unwrap() >= ts.div_euclid(1000) * 1000 + 1000);
    // The live feed's updates: the current window, as events arrive.
    let ts2 = now_ms();
    std::thread::scope(|s| {
        let feed = s.spawn(|| {
            read_sse(&server, "/v1/pipelines/quiet/windows/views/live", Duration::from_secs(10), |kind, v| {
                let results = v["results"].as_array()?;
                (kind == "update" && results.iter().any(|r| r["group"] == "/cart" && r["count"] == 3)).then_some(())
            })
        });
        std::thread::sleep(Duration::from_millis(200));
        let events: Vec<Value> = (0..3).map(|i| json!({"id": format!("c{i}"), "type": "v", "timestamp": ts2, "data": {"url": "/cart"}})).collect();
        server.ingest_ndjson("quiet", &events);
        let started = Instant::now();
        feed.join().unwrap();
        assert!(started.elapsed() < Duration::from_millis(1500), "update after {:?}", started.elapsed());
    });
}
on_both_stores!(quiet_pipeline_closes_and_streams_live);

fn bad_window_input_is_refused_clearly(store: StoreKind) {
    let server = server(store);
    let bad = spec_with(json!([{"name": "x", "kind": "sliding", "size_ms": 1000, "slide_ms": 300, "aggregates": [{"op": "count"}]}]), 1000);
    let (status, body) = server.put_json("/v1/pipelines/bad", &bad);
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("windows[0].slide_ms"), "{body}");
    let bad = spec_with(json!([{"name": "x", "kind": "tumbling", "size_ms": 1000, "aggregates": [{"op": "median", "field": "data.x"}]}]), 1000);
    let (status, body) = server.put_json("/v1/pipelines/bad", &bad);
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("windows[0].aggregates[0].op"), "{body}");
    let good = spec_with(json!([{"name": "w", "kind": "tumbling", "size_ms": 1000, "aggregates": [{"op": "count"}]}]), 1000);
    server.put_pipeline("good", &good);
    let (status, body) = server.get("/v1/pipelines/good/windows/nope");
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("no window `nope`"), "{body}");
    let (status, _) = server.get("/v1/pipelines/nope/windows/w");
    assert_eq!(status, 404);
    let (status, body) = server.get("/v1/pipelines/good/windows/w?from=yesterday");
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("`from`"), "{body}");
    let (status, _) = server.get("/v1/pipelines/good/windows/w?from=10&to=5");
    assert_eq!(status, 400);
    let (status, body) = server.get("/v1/pipelines/good/alerts?limit=0");
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("/v1/pipelines/good/windows/w");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"results": [], "watermark": null}));
}
on_both_stores!(bad_window_input_is_refused_clearly);

/// A window kept under its name cannot change shape (its panes were built
/// for the old one); lateness may change; a new name starts fresh.
fn replacing_a_spec_keeps_window_state_consistent(store: StoreKind) {
    let server = server(store);
    let w = |size: u64, lateness: u64| json!([{"name": "w", "kind": "tumbling", "size_ms": size, "allowed_lateness_ms": lateness, "aggregates": [{"op": "count"}]}]);
    server.put_pipeline("re", &spec_with(w(1000, 0), 86_400_000));
    let (status, body) = server.ingest_ndjson("re", &[json!({"id": "a", "type": "t", "timestamp": 500, "data": {}})]);
    assert_eq!(status, 202, "{body}");
    wait_for("counted", Duration::from_secs(10), || (results(&server, "re", "w", "").0.len() == 1).then_some(()));
    let (status, body) = server.put_json("/v1/pipelines/re", &spec_with(w(2000, 0), 86_400_000));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("new name"), "{body}");
    server.put_pipeline("re", &spec_with(w(1000, 5000), 86_400_000));
    let (got, _) = results(&server, "re", "w", "");
    assert_eq!(got[0]["count"], 1, "state kept across the replace");
}
on_both_stores!(replacing_a_spec_keeps_window_state_consistent);

/// Closed results are kept for `retention_ms` (of event time behind the
/// watermark), then expire: from queries and from the results stream.
fn results_expire_after_retention(store: StoreKind) {
    let server = server(store);
    let spec = spec_with(
        json!([{"name": "w", "kind": "tumbling", "size_ms": 1000, "retention_ms": 3000, "aggregates": [{"op": "count"}]}]),
        86_400_000,
    );
    server.put_pipeline("keep", &spec);
    let send = |id: &str, ts: i64| {
        let (status, body) = server.ingest_ndjson("keep", &[json!({"id": id, "type": "t", "timestamp": ts, "data": {}})]);
        assert_eq!(status, 202, "{body}");
    };
    let starts = |server: &Server| -> Vec<i64> {
        results(server, "keep", "w", "").0.iter().map(|r| r["start"].as_i64().unwrap()).collect()
    };
    for (i, ts) in [100, 1100, 2100].into_iter().enumerate() {
        send(&format!("a{i}"), ts);
    }
    wait_for("three windows", Duration::from_secs(10), || (starts(&server) == vec![0, 1000, 2000]).then_some(()));
    // The watermark moves to 5500: windows starting before 5500 - 3000 =
    // 2500 are past the retention and go; [5000, 6000) is open.
    send("b", 5500);
    wait_for("old windows expired", Duration::from_secs(10), || (starts(&server) == vec![5000]).then_some(()));
    wait_for("the results stream trimmed too", Duration::from_secs(10), || {
        let (_, body) = server.get("/v1/pipelines/keep/windows/w/results");
        let starts: Vec<i64> = body["entries"].as_array().unwrap().iter().map(|r| r["start"].as_i64().unwrap()).collect();
        starts.is_empty().then_some(())
    });
}
on_both_stores!(results_expire_after_retention);

/// The dashboard page is served openly (it holds no data); the live feed
/// takes the admin token as `?access_token=` (browsers' EventSource cannot
/// send headers) and refuses without it.
fn dashboard_and_live_feed_auth(store: StoreKind) {
    let server = Server::start_with(store, Some("s3cret"), &["--window-tick-ms", "50"]);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("dash", &spec_with(json!([{"name": "w", "kind": "tumbling", "size_ms": 1000, "aggregates": [{"op": "count"}]}]), 1000));
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let page = client.get(server.url("/")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().unwrap();
    assert!(html.contains("EventSource") && html.contains("/v1/pipelines"), "the page drives the API");
    let live = "/v1/pipelines/dash/windows/w/live";
    assert_eq!(client.get(server.url(live)).send().unwrap().status().as_u16(), 401);
    assert_eq!(client.get(server.url(&format!("{live}?access_token=wrong"))).send().unwrap().status().as_u16(), 401);
    let ok = client.get(server.url(&format!("{live}?access_token=s3cret"))).send().unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers()["content-type"], "text/event-stream");
    // A token in the query is for reading only.
    let post = client.post(server.url("/v1/pipelines/dash/events?access_token=s3cret")).body("{}").send().unwrap();
    assert_eq!(post.status().as_u16(), 401);
}
on_both_stores!(dashboard_and_live_feed_auth);

/// A closed window within its allowed lateness takes a late update and is
/// emitted again; past the lateness the event goes to the DLQ as `late`,
/// and a replay of it is late again (applied to that window only).
fn late_updates_re_emit_then_go_to_the_dlq(store: StoreKind) {
    let server = server(store);
    let spec = spec_with(
        json!([{"name": "w", "kind": "tumbling", "size_ms": 1000, "allowed_lateness_ms": 3000, "aggregates": [{"op": "count"}]}]),
        86_400_000,
    );
    server.put_pipeline("late", &spec);
    let send = |id: &str, ts: i64| {
        let (status, body) = server.ingest_ndjson("late", &[json!({"id": id, "type": "t", "timestamp": ts, "data": {}})]);
        assert_eq!(status, 202, "{body}");
    };
    let emitted = |server: &Server| -> Vec<(i64, u64)> {
        let (_, body) = server.get("/v1/pipelines/late/windows/w/results");
        body["entries"].as_array().unwrap().iter().map(|r| (r["start"].as_i64().unwrap(), r["count"].as_u64().unwrap())).collect()
    };
    send("a", 500);
    send("b", 1500);
    wait_for("[0, 1000) closed and emitted", Duration::from_secs(30), || (emitted(&server) == vec![(0, 1)]).then_some(()));
    // Late, but within the lateness: counted, and the window is emitted again.
    send("c", 600);
    wait_for("[0, 1000) re-emitted", Duration::from_secs(30), || (emitted(&server) == vec![(0, 1), (0, 2)]).then_some(()));
    // The watermark passes 1000 + 3000: [0, 1000) is final; an event for it is late.
    send("d", 4500);
    wait_for("watermark 4500", Duration::from_secs(30), || (results(&server, "late", "w", "?from=0&to=0").1 == json!(4500)).then_some(()));
    send("e", 700);
    let dlq = wait_for("the late event in the DLQ", Duration::from_secs(30), || {
        let dlq = server.dlq("late");
        (!dlq.is_empty()).then_some(dlq)
    });
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["event"]["id"], "e");
    assert_eq!(dlq[0]["error_kind"], "late");
    assert_eq!(dlq[0]["stage"], "window:w");
    let error = dlq[0]["error"].as_str().unwrap();
    assert!(error.contains("[0, 1000)") && error.contains("`w`"), "{error}");
    let (got, _) = results(&server, "late", "w", "?from=0&to=0");
    assert_eq!(got[0]["count"], 2, "the final result did not change");
    // It still went to the output: windows do not hold outputs back.
    assert!(server.outputs("late").iter().any(|e| e["id"] == "e"));
    // Replayed, it is applied to that window only: late again, once.
    let first_id = dlq[0]["dlq_id"].clone();
    let (status, body) = server.post_json("/v1/pipelines/late/dlq/replay", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 1, "{body}");
    let dlq = wait_for("late again", Duration::from_secs(30), || {
        let dlq = server.dlq("late");
        (dlq.len() == 1 && dlq[0]["dlq_id"] != first_id).then_some(dlq)
    });
    assert_eq!(dlq[0]["event"]["id"], "e");
    assert_eq!(server.outputs("late").iter().filter(|e| e["id"] == "e").count(), 1, "a replay does not emit the output again");
}
on_both_stores!(late_updates_re_emit_then_go_to_the_dlq);

/// `?latest=true` (API.md v1.1): one result per group, for a sliding window
/// the one ending at the group's newest pane with data (all of the last
/// `size` ms), for a tumbling window the newest one; filters still apply;
/// a `latest` that is neither `true` nor `false` is refused.
fn latest_window_per_group(store: StoreKind) {
    let server = server(store);
    let spec = spec_with(
        json!([{"name": "last10s", "kind": "sliding", "size_ms": 10000, "slide_ms": 1000, "group_by": "data.g",
                "aggregates": [{"op": "count"}]},
               {"name": "per_sec", "kind": "tumbling", "size_ms": 1000, "aggregates": [{"op": "count"}]}]),
        600_000,
    );
    server.put_pipeline("now", &spec);
    let pane = now_ms().div_euclid(1000) * 1000 - 5000;
    // Group "a": 3 events in `pane`, 2 in `pane + 3000`; group "b": 4 in `pane`.
    let mut events = Vec::new();
    for (i, (group, ts)) in [("a", pane), ("a", pane + 10), ("a", pane + 999), ("a", pane + 3000), ("a", pane + 3500),
        ("b", pane + 1), ("b", pane + 2), ("b", pane + 3), ("b", pane + 4)].into_iter().enumerate()
    {
        events.push(json!({"id": format!("e{i}"), "type": "t", "timestamp": ts, "data": {"g": group}}));
    }
    let (status, body) = server.ingest_ndjson("now", &events);
    assert_eq!(status, 202, "{body}");
    let window = |group: &str, start: i64| (json!(group), start, start + 10_000);
    let want_sliding = vec![window("b", pane + 1000 - 10_000), window("a", pane + 4000 - 10_000)];
    let want_counts = [4, 5];
    let got = wait_for("latest sliding windows", Duration::from_secs(10), || {
        let (results, _) = results(&server, "now", "last10s", "?latest=true");
        let counts: Vec<u64> = results.iter().filter_map(|r| r["count"].as_u64()).collect();
        (counts == want_counts).then_some(results)
    });
    let shape: Vec<(Value, i64, i64)> =
        got.iter().map(|r| (r["group"].clone(), r["start"].as_i64().unwrap(), r["end"].as_i64().unwrap())).collect();
    assert_eq!(shape, want_sliding, "{got:?}");
    // Without `latest`, every overlapping window shows (10 for "b", 13 for "a").
    let (all, _) = results(&server, "now", "last10s", "");
    assert_eq!(all.len(), 23, "{all:?}");
    // The group filter still applies.
    let (only_a, _) = results(&server, "now", "last10s", "?latest=true&group=a");
    assert_eq!(only_a.len(), 1, "{only_a:?}");
    assert_eq!(only_a[0]["start"], json!(pane + 4000 - 10_000));
    // Tumbling, ungrouped: the newest second with data.
    let (tumbling, _) = results(&server, "now", "per_sec", "?latest=true");
    assert_eq!(tumbling.len(), 1, "{tumbling:?}");
    assert_eq!((tumbling[0]["group"].clone(), tumbling[0]["start"].clone(), tumbling[0]["count"].clone()), (Value::Null, json!(pane + 3000), json!(2)));
    let (status, body) = server.get("/v1/pipelines/now/windows/per_sec?latest=yes");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_query");
    assert!(body["message"].as_str().unwrap_or_default().contains("latest"), "{body}");
}
on_both_stores!(latest_window_per_group);
