//! Faults (issue 11), on both stores, driving the real server: an entry
//! that runs longer than the reclaim time is not taken over while it runs.
//! (A closer paused past its lease is shown at the store level, in
//! `host/tests/store_windows.rs`: `fenced_closer_writes_nothing`.)

use sluice_blackbox_tests as harness;

use std::time::Duration;

use harness::{on_both_stores, wait_for, Server, StoreKind};
use serde_json::{json, Value};

/// How long the stage sleeps per event: well past the harness's
/// `--reclaim-idle-ms 1500`.
const SLEEP_MS: u64 = 4_000;

/// The value of `metric{pipeline="<pipeline>"}` in `GET /metrics` (0 when
/// it was never counted).
fn prometheus_counter(server: &Server, metric: &str, pipeline: &str) -> f64 {
    server.prometheus_sum(metric, &format!("pipeline=\"{pipeline}\""))
}

/// Every event runs for 4 s, past the 1.5 s reclaim time: the worker keeps
/// its claim fresh, so nothing is taken over (no reclaim counted) and each
/// event reaches the output exactly once.
fn an_entry_running_past_the_reclaim_time_is_not_run_twice(store: StoreKind) {
    let server = Server::start(store);
    server.upload("sleeper", "sleeper");
    server.put_pipeline("long", &json!({"stages": [{"name": "nap", "plugin": "sleeper",
        "config": {"mode": "sleep", "ms": SLEEP_MS}, "limits": {"timeout_ms": 30_000}}]}));
    // Two entries of one event each.
    for id in ["a", "b"] {
        let (status, answer) = server.ingest_ndjson("long", &[json!({"type": "v", "id": id})]);
        assert_eq!(status, 202, "{answer}");
    }
    wait_for("both events to finish", Duration::from_secs(60), || {
        let m = server.metrics("long");
        (m["processed"] == json!(2) && m["queue_depth"] == json!(0)).then_some(())
    });
    // Give a takeover that happened anyway the time to run and be counted.
    std::thread::sleep(Duration::from_millis(2 * 1500));
    let mut ids: Vec<String> = server.outputs("long").iter().map(|e| e["id"].as_str().unwrap_or_default().to_string()).collect();
    ids.sort();
    assert_eq!(ids, vec!["a", "b"], "each event reaches the output exactly once");
    assert!(server.dlq("long").is_empty(), "{:?}", server.dlq("long"));
    let reclaimed = prometheus_counter(&server, "sluice_reclaimed_entries_total", "long");
    assert_eq!(reclaimed, 0.0, "no entry was taken over while it ran");
    // A second run counts its events here even when its completion is
    // skipped (the first run had completed the entry).
    let ran = prometheus_counter(&server, "sluice_stage_events_total", "long");
    assert_eq!(ran, 2.0, "the stage ran each event once");
    let m: Value = server.metrics("long");
    assert_eq!((m["accepted"].clone(), m["processed"].clone(), m["emitted"].clone()), (json!(2), json!(2), json!(2)), "{m}");
}
on_both_stores!(an_entry_running_past_the_reclaim_time_is_not_run_twice);
