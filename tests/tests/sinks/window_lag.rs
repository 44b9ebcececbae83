//! A sink of a window's results shows how old its oldest undelivered
//! result is (`oldest_undelivered_at` in `GET …/sinks` and the pipeline
//! metrics, the age gauge in Prometheus) while its receiver stalls, and
//! nothing once it drained.

use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{on_both_stores, wait_for, Server, StoreKind};
use super::receiver::{Mode, Receiver};
use super::sink_status;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The Prometheus age gauge of sink `sink`, in seconds.
fn age_gauge(server: &Server, sink: &str) -> f64 {
    server.prometheus_sum("sluice_sink_oldest_undelivered_age_seconds", &format!("sink=\"{sink}\""))
}

fn a_window_sinks_lag_has_the_age_of_its_oldest_result(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    let hook = Receiver::start(Mode::Stall);
    server.put_pipeline("win", &json!({
        "stages": [{"name": "pass", "plugin": "bot-filter"}],
        "windows": [{"name": "per_min", "kind": "tumbling", "size_ms": 60000, "group_by": "data.url", "aggregates": [{"op": "count"}]}],
        "sinks": [{"name": "feed", "kind": "http", "url": hook.url, "from": "window:per_min", "batch_max": 1, "batch_ms": 0}]
    }));
    let at = |ms: i64, url: &str, id: &str| json!({"id": id, "type": "v", "timestamp": ms, "data": {"url": url}});
    let before = now_ms();
    let (status, body) = server.ingest_ndjson("win", &[at(1_000, "/a", "a1"), at(2_000, "/b", "b1"), at(3_000, "/c", "c1")]);
    assert_eq!(status, 202, "{body}");
    // An event two windows on closes the first one: three results.
    let (status, body) = server.ingest_ndjson("win", &[at(130_000, "/d", "d1")]);
    assert_eq!(status, 202, "{body}");

    let stalled = wait_for("three results waiting, with the oldest one's time", Duration::from_secs(30), || {
        let s = sink_status(&server, "win", "feed");
        (s["lag"].as_u64() == Some(3) && s["oldest_undelivered_at"].is_i64()).then_some(s)
    });
    let oldest = stalled["oldest_undelivered_at"].as_i64().unwrap();
    assert!(oldest >= before - 1_000 && oldest <= now_ms(), "appended after the ingest began ({before}): {stalled}");
    wait_for("the first result held by the receiver", Duration::from_secs(10), || (hook.requests() >= 1).then_some(()));
    assert_eq!(sink_status(&server, "win", "feed")["lag"], json!(3), "not delivered while held");
    let metrics = server.metrics("win");
    let listed: &Value = metrics["sinks"].as_array().and_then(|s| s.iter().find(|s| s["name"] == json!("feed"))).expect("the sink in the metrics");
    assert_eq!(listed["oldest_undelivered_at"], json!(oldest), "the metrics show the same age: {metrics}");
    wait_for("a growing age in Prometheus", Duration::from_secs(10), || (age_gauge(&server, "feed") > 0.2).then_some(()));

    hook.set(Mode::Accept);
    let drained = wait_for("the sink to drain", Duration::from_secs(30), || {
        let s = sink_status(&server, "win", "feed");
        (s["lag"] == json!(0)).then_some(s)
    });
    assert_eq!(drained["oldest_undelivered_at"], Value::Null, "nothing waits: {drained}");
    assert_eq!(drained["delivered"], json!(3), "{drained}");
    assert_eq!(hook.ids().len(), 3, "one line per result");
    wait_for("the age gauge back to 0", Duration::from_secs(10), || (age_gauge(&server, "feed") == 0.0).then_some(()));
}
on_both_stores!(a_window_sinks_lag_has_the_age_of_its_oldest_result);
