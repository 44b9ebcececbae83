//! Crashes and outages: kill -9 mid-load, Redis stopping mid-run, and two
//! servers sharing one pipeline on one Redis.

use sluice_blackbox_tests as harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{wait_for, Server, StoreKind};
use sluice_testkit::{redis_url_sync, unique_prefix, PrivateRedis};
use serde_json::{json, Value};

fn spec() -> Value {
    json!({"max_queue_depth": 1000000, "stages": [
        {"name": "parts", "plugin": "url-parts"},
        {"name": "check", "plugin": "schema-check", "config": {"required": ["data.n"]}}
    ]})
}

fn setup(server: &Server, pipeline: &str) {
    server.upload("url-parts", "url_parts");
    server.upload("schema-check", "schema_check");
    server.put_pipeline(pipeline, &spec());
}

/// Event `i`: every 7th lacks `data.n` and goes to the DLQ.
fn event(prefix: &str, i: usize) -> Value {
    if i % 7 == 0 {
        json!({"id": format!("{prefix}{i}"), "type": "t", "data": {"url": format!("https://h.example/{i}")}})
    } else {
        json!({"id": format!("{prefix}{i}"), "type": "t", "data": {"url": format!("https://h.example/{i}"), "n": i}})
    }
}

/// Every accepted id is in the output or the DLQ exactly once.
fn assert_exactly_once(server: &Server, pipeline: &str, accepted: &[String]) {
    let total = accepted.len();
    let (outputs, dlq) = wait_for("every accepted event accounted for", Duration::from_secs(90), || {
        let outputs = server.outputs(pipeline);
        let dlq = server.dlq(pipeline);
        (outputs.len() + dlq.len() >= total).then_some((outputs, dlq))
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in outputs.iter().map(|e| &e["id"]).chain(dlq.iter().map(|e| &e["event"]["id"])) {
        *seen.entry(id.as_str().unwrap().to_string()).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicates: {:?}", &duplicated[..duplicated.len().min(5)]);
    let missing: Vec<_> = accepted.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} accepted events lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(seen.len(), total, "outputs/DLQ hold events that were never accepted");
    for entry in &dlq {
        assert_eq!(entry["error"], json!("missing required fields: data.n"));
    }
}

/// Producers send batches until told to stop; answers accepted ids.
fn produce(server: &Server, pipeline: &str, prefix: &str, stop: &AtomicBool, accepted: &Mutex<Vec<String>>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && i < 40_000 {
        let batch: Vec<Value> = (i..i + 200).map(|k| event(prefix, k)).collect();
        i += 200;
        let body: String = batch.iter().map(|e| format!("{e}\n")).collect();
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        match client.post(server.url(&format!("/v1/pipelines/{pipeline}/events"))).header("content-type", "application/x-ndjson").body(body).send() {
            Ok(r) if r.status().as_u16() == 202 => {
                let answer: Value = r.json().unwrap();
                let ids = answer["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string());
                accepted.lock().unwrap().extend(ids);
            }
            // Refused, or the server died mid-request: not accepted.
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn kill9_mid_load(store: StoreKind) {
    let mut server = Server::start(store);
    setup(&server, "crash");
    let accepted = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| produce(&server, "crash", "a", &stop, &accepted));
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
    });
    let before = accepted.lock().unwrap().len();
    assert!(before > 1000, "only {before} accepted before the crash");
    // Kill while the workers are mid-queue, then restart on the same store.
    server.kill9();
    server.restart();
    // More load after the restart, too.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| produce(&server, "crash", "b", &stop, &accepted));
        std::thread::sleep(Duration::from_millis(800));
        stop.store(true, Ordering::Relaxed);
    });
    let accepted = accepted.into_inner().unwrap();
    assert_exactly_once(&server, "crash", &accepted);
    let m = server.metrics("crash");
    assert_eq!(m["queue_depth"], json!(0), "{m}");
}

#[test]
fn kill9_mid_load_embedded() {
    let dir = tempfile::tempdir().unwrap();
    kill9_mid_load(StoreKind::Embedded(dir.path().join("store")));
}

#[test]
fn kill9_mid_load_redis() {
    let url = redis_url_sync();
    kill9_mid_load(StoreKind::Redis { url, prefix: unique_prefix("kill9") });
}

#[test]
fn redis_outage_answers_503_and_recovers() {
    let mut redis = PrivateRedis::start_durable();
    let server = Server::start(StoreKind::Redis { url: redis.url(), prefix: "outage".into() });
    setup(&server, "o");
    let (status, _) = server.ingest_ndjson("o", &[event("x", 1)]);
    assert_eq!(status, 202);
    redis.stop();
    let (status, body, headers) =
        server.raw(reqwest::Method::POST, "/v1/pipelines/o/events", Some("application/x-ndjson"), format!("{}\n", event("x", 2)).into_bytes());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], json!("store_unavailable"));
    assert!(headers.get("retry-after").is_some());
    let (status, _) = server.get("/readyz");
    assert_eq!(status, 503);
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 200, "the process is still up");
    redis.restart();
    wait_for("readyz again", Duration::from_secs(20), || (server.get("/readyz").0 == 200).then_some(()));
    let (status, body) = server.ingest_ndjson("o", &[event("x", 3)]);
    assert_eq!(status, 202, "{body}");
    let outputs = wait_for("both accepted events emitted", Duration::from_secs(30), || {
        let out = server.outputs("o");
        (out.len() >= 2).then_some(out)
    });
    let mut ids: Vec<&str> = outputs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    // x1 was in flight during the outage and is finished after it: order may differ.
    ids.sort();
    assert_eq!(ids, vec!["x1", "x3"]);
}

#[test]
fn two_servers_share_one_pipeline() {
    let url = redis_url_sync();
    let store = StoreKind::Redis { url, prefix: unique_prefix("shared") };
    let a = Server::start(store.clone());
    setup(&a, "shared");
    let b = Server::start(store);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    for (n, server) in [&a, &b].iter().enumerate() {
        for round in 0..10 {
            let events: Vec<Value> = (0..100).map(|i| event(&format!("s{n}-{round}-"), i)).collect();
            let (status, answer) = server.ingest_ndjson("shared", &events);
            assert_eq!(status, 202, "{answer}");
            accepted.lock().unwrap().extend(answer["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()));
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_exactly_once(&a, "shared", &accepted);
    // Both processes did part of the work.
    let calls = |s: &Server| s.metrics("shared")["stages"][0]["calls"].as_u64().unwrap();
    assert!(calls(&a) > 0 && calls(&b) > 0, "a: {}, b: {}", calls(&a), calls(&b));
}

/// Event `i` of the windowed crash test: its time falls in one of 20
/// one-second windows, round robin, out of order.
fn timed_event(prefix: &str, i: usize) -> Value {
    let window = (i * 7) % 20;
    json!({"id": format!("{prefix}{i}"), "type": "t", "timestamp": 1_000_000 + window as i64 * 1000 + (i % 997) as i64,
           "data": {"url": format!("https://h.example/{}", i % 3), "n": i}})
}

/// Kill -9 mid-load with windows: afterwards every window's count equals
/// the number of accepted events whose time falls in it, exactly.
fn kill9_mid_load_windows(store: StoreKind) {
    let mut server = Server::start(store);
    server.upload("url-parts", "url_parts");
    let spec = json!({"max_queue_depth": 1000000, "watermark_idle_ms": 86400000,
        "stages": [{"name": "parts", "plugin": "url-parts"}],
        "windows": [
            {"name": "per-second", "kind": "tumbling", "size_ms": 1000, "allowed_lateness_ms": 86400000,
             "aggregates": [{"op": "count"}, {"op": "sum", "field": "data.n"}]},
            {"name": "by-host", "kind": "sliding", "size_ms": 4000, "slide_ms": 1000, "group_by": "data.host",
             "allowed_lateness_ms": 86400000, "aggregates": [{"op": "count"}]}
        ]});
    server.put_pipeline("wcrash", &spec);
    let accepted: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    let send_until = |server: &Server, prefix: &str, offset: usize, stop: &AtomicBool| {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut i = offset;
        while !stop.load(Ordering::Relaxed) && i < offset + 40_000 {
            let numbers: Vec<usize> = (i..i + 200).collect();
            i += 200;
            let body: String = numbers.iter().map(|&k| format!("{}\n", timed_event(prefix, k))).collect();
            let sent = client.post(server.url("/v1/pipelines/wcrash/events")).header("content-type", "application/x-ndjson").body(body).send();
            match sent {
                Ok(r) if r.status().as_u16() == 202 => accepted.lock().unwrap().extend(numbers),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| send_until(&server, "a", 0, &stop));
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
    });
    let before = accepted.lock().unwrap().len();
    assert!(before > 1000, "only {before} accepted before the crash");
    server.kill9();
    server.restart();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| send_until(&server, "b", 100_000, &stop));
        std::thread::sleep(Duration::from_millis(800));
        stop.store(true, Ordering::Relaxed);
    });
    let accepted = accepted.into_inner().unwrap();
    let total = accepted.len() as u64;
    wait_for("every accepted event processed", Duration::from_secs(90), || {
        (server.metrics("wcrash")["processed"].as_u64() == Some(total)).then_some(())
    });
    let mut want: HashMap<i64, (u64, f64)> = HashMap::new();
    for &i in &accepted {
        let ts = timed_event("x", i)["timestamp"].as_i64().unwrap();
        let entry = want.entry(ts.div_euclid(1000) * 1000).or_default();
        entry.0 += 1;
        entry.1 += i as f64;
    }
    let (status, body) = server.get("/v1/pipelines/wcrash/windows/per-second");
    assert_eq!(status, 200, "{body}");
    let got: HashMap<i64, (u64, f64)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["start"].as_i64().unwrap(), (r["count"].as_u64().unwrap(), r["sum_data.n"].as_f64().unwrap())))
        .collect();
    assert_eq!(got, want, "per-window count and sum after kill -9 ({total} accepted)");
    // The sliding window: each 4 s window per host counts its 4 panes' events.
    let (_, body) = server.get("/v1/pipelines/wcrash/windows/by-host?group=h.example&from=1003000&to=1003000");
    let sliding: u64 = body["results"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    let expect: u64 = (1_003_000..1_007_000).step_by(1000).map(|s| want.get(&s).map_or(0, |w| w.0)).sum();
    assert_eq!(sliding, expect, "{body}");
    assert!(server.dlq("wcrash").is_empty(), "nothing is late with a day of allowed lateness");
}

#[test]
fn kill9_mid_load_windows_embedded() {
    let dir = tempfile::tempdir().unwrap();
    kill9_mid_load_windows(StoreKind::Embedded(dir.path().join("store")));
}

#[test]
fn kill9_mid_load_windows_redis() {
    let url = redis_url_sync();
    kill9_mid_load_windows(StoreKind::Redis { url, prefix: unique_prefix("kill9w") });
}
