//! Hostile and unlucky input (issue 10): one test per row of the issue's
//! "Why", on both stores, each driving the real server. Every test checks
//! that the pipeline keeps flowing (`queue_depth` back to 0, `processed`
//! equal to `accepted`), that the handler answers, and that the host stays up.

use sluice_blackbox_tests as harness;

use std::time::{Duration, Instant};

use harness::{on_both_stores, wait_for, Server, StoreKind};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Waits until every accepted event finished and the queue is empty.
fn drained(server: &Server, pipeline: &str, accepted: u64) -> Value {
    wait_for("the pipeline to drain", Duration::from_secs(30), || {
        let m = server.metrics(pipeline);
        (m["accepted"] == json!(accepted) && m["processed"] == json!(accepted) && m["queue_depth"] == json!(0)).then_some(m)
    })
}

fn post(server: &Server, pipeline: &str, content_type: &str, body: Vec<u8>) -> (u16, Value, reqwest::header::HeaderMap) {
    server.raw(reqwest::Method::POST, &format!("/v1/pipelines/{pipeline}/events"), Some(content_type), body)
}

/// Row 1: a number too big for a double (and a sum that would overflow)
/// counts as missing; nothing stalls.
fn numbers_too_big_count_as_missing(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("nums", &json!({"stages": [{"name": "f", "plugin": "bot-filter"}],
        "windows": [{"name": "ms", "kind": "tumbling", "size_ms": 60000, "aggregates": [{"op": "count"}, {"op": "avg", "field": "data.ms"}, {"op": "sum", "field": "data.big"}]}]}));
    let t = now_ms();
    let (status, answer, _) = post(&server, "nums", "application/x-ndjson",
        format!("{{\"type\":\"v\",\"timestamp\":{t},\"data\":{{\"ms\":1,\"big\":1.7e308}}}}\n{{\"type\":\"v\",\"timestamp\":{t},\"data\":{{\"ms\":1e400,\"big\":1.7e308}}}}\n").into_bytes());
    assert_eq!((status, answer["accepted"].clone()), (202, json!(2)), "{answer}");
    drained(&server, "nums", 2);
    let (status, w) = server.get("/v1/pipelines/nums/windows/ms");
    assert_eq!(status, 200, "{w}");
    let r = &w["results"][0];
    assert_eq!((r["count"].clone(), r["avg_data.ms"].clone(), r["missing_data.ms"].clone()), (json!(2), json!(1.0), json!(1)), "{w}");
    assert_eq!(r["missing_data.big"], json!(1), "the second 1.7e308 would make the sum infinite: {w}");
    // Later batches go through as before.
    let (status, _) = server.ingest_ndjson("nums", &[json!({"type": "v", "timestamp": t, "data": {"ms": 3}})]);
    assert_eq!(status, 202);
    drained(&server, "nums", 3);
    assert!(server.dlq("nums").is_empty());
}
on_both_stores!(numbers_too_big_count_as_missing);

/// Row 2: `data` nested deeper than 64 levels is refused per event; events
/// nested up to 64 levels are served by the output page and the DLQ listing.
fn deep_nesting_is_refused_and_pages_stay_readable(store: StoreKind) {
    let server = Server::start(store);
    server.upload("schema-check", "schema_check");
    server.put_pipeline("deep", &json!({"stages": [{"name": "need-url", "plugin": "schema-check", "config": {"required": ["data.url"]}}]}));
    let nested = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels - 1), "}".repeat(levels - 1));
    let deep = format!(r#"{{"type":"v","data":{}}}"#, nested(200));
    let ok_out = format!(r#"{{"type":"v","id":"out","data":{{"url":"/x","n":{}}}}}"#, nested(62));
    let ok_dlq = format!(r#"{{"type":"v","id":"dead","data":{}}}"#, nested(64));
    let (status, answer, _) = post(&server, "deep", "application/x-ndjson", format!("{deep}\n{ok_out}\n{ok_dlq}\n").into_bytes());
    assert_eq!(status, 202, "{answer}");
    assert_eq!((answer["accepted"].clone(), answer["rejected"].clone()), (json!(2), json!(1)), "{answer}");
    assert_eq!(answer["errors"][0]["index"], json!(0));
    assert!(answer["errors"][0]["error"].as_str().unwrap().contains("nested deeper than 64"), "{answer}");
    assert_eq!(answer["ids"][0], Value::Null);
    drained(&server, "deep", 2);
    let outputs = server.outputs("deep");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["id"], json!("out"));
    let dlq = server.dlq("deep");
    assert_eq!((dlq.len(), dlq[0]["event"]["id"].clone()), (1, json!("dead")));
    assert_eq!(server.get("/healthz").0, 200);
}
on_both_stores!(deep_nesting_is_refused_and_pages_stay_readable);

/// Row 3: a far-future timestamp is refused per event (`max_future_ms`), and
/// one within the bound cannot push the watermark past the clock plus it.
fn far_future_timestamps_cannot_make_every_event_late(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("time", &json!({"stages": [{"name": "f", "plugin": "bot-filter"}], "max_future_ms": 5000,
        "windows": [{"name": "s", "kind": "tumbling", "size_ms": 1000, "allowed_lateness_ms": 30000, "aggregates": [{"op": "count"}]}]}));
    let now = now_ms();
    let events = [
        json!({"type": "v", "timestamp": "2100-01-01T00:00:00Z"}),
        json!({"type": "v", "timestamp": 9223372036854775807i64}),
        json!({"type": "v", "timestamp": now + 60_000}),
        json!({"type": "v", "id": "soon", "timestamp": now + 3000}),
    ];
    let (status, answer) = server.ingest_ndjson("time", &events);
    assert_eq!(status, 202, "{answer}");
    assert_eq!((answer["accepted"].clone(), answer["rejected"].clone()), (json!(1), json!(3)), "{answer}");
    for e in answer["errors"].as_array().unwrap() {
        assert!(e["error"].as_str().unwrap().contains("ahead of the server's clock"), "{e}");
    }
    drained(&server, "time", 1);
    // Events at the current time still count: nothing is late.
    let (status, _) = server.ingest_ndjson("time", &(0..5).map(|i| json!({"type": "v", "timestamp": now_ms() + i})).collect::<Vec<_>>());
    assert_eq!(status, 202);
    drained(&server, "time", 6);
    assert!(server.dlq("time").is_empty(), "no event went to the DLQ as late");
    let (_, w) = server.get("/v1/pipelines/time/windows/s");
    let wm = w["watermark"].as_i64().unwrap_or(i64::MIN);
    assert!(wm <= now_ms() + 5000, "the watermark {wm} stays within the clock plus max_future_ms");
    let counted: i64 = w["results"].as_array().unwrap().iter().map(|r| r["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 6, "{w}");
}
on_both_stores!(far_future_timestamps_cannot_make_every_event_late);

/// Row 4: a stage that sleeps far past its deadline fails its event with
/// `timeout` in under a second and holds up nothing.
fn a_sleeping_plugin_is_cut_at_its_deadline(store: StoreKind) {
    let server = Server::start(store);
    server.upload("sleeper", "sleeper");
    server.put_pipeline("sleepy", &json!({"stages": [{"name": "nap", "plugin": "sleeper",
        "config": {"mode": "sleep", "ms": 3_600_000}, "limits": {"timeout_ms": 200}}]}));
    let started = Instant::now();
    let (status, _) = server.ingest_ndjson("sleepy", &[json!({"type": "v", "id": "a"}), json!({"type": "v", "id": "b"})]);
    assert_eq!(status, 202);
    drained(&server, "sleepy", 2);
    let took = started.elapsed();
    let dlq = server.dlq("sleepy");
    assert_eq!(dlq.len(), 2);
    assert!(dlq.iter().all(|e| e["error_kind"] == json!("timeout")), "{dlq:?}");
    assert!(took < Duration::from_secs(3), "two 200 ms deadlines took {took:?}");
}
on_both_stores!(a_sleeping_plugin_is_cut_at_its_deadline);

/// Resident memory high-water mark of a process, MB (Linux).
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0) / 1024
}

/// Row 5: one request cannot need gigabytes: a 16 MiB body of `1` lines is
/// refused whole with a short answer, a body of many invalid events lists
/// 1,000 errors, and a fan-out past its caps fails fast, per event.
fn one_request_cannot_take_the_host(store: StoreKind) {
    let server = Server::start(store);
    server.upload("split-items", "split_items");
    server.put_pipeline("fan", &json!({"stages": [{"name": "split", "plugin": "split-items", "limits": {"fuel": 2_000_000_000u64}}]}));
    let (status, answer, headers) = post(&server, "fan", "application/x-ndjson", b"1\n".repeat(8 << 20));
    assert_eq!((status, answer["error"].clone()), (413, json!("too_many_events")), "{answer}");
    assert!(headers.get("retry-after").is_none(), "it can never fit: no Retry-After");
    assert!(answer.to_string().len() < 2000);

    let (status, answer, _) = post(&server, "fan", "application/x-ndjson", b"1\n".repeat(50_000));
    assert_eq!(status, 202, "{answer}");
    assert_eq!((answer["rejected"].clone(), answer["errors"].as_array().unwrap().len()), (json!(50_000), 1000));
    assert_eq!(answer["errors_truncated"], json!(49_000));

    // 40 events of 1,001 items each: every one passes `max_outputs` (1,000).
    let items: Vec<Value> = (0..1001).map(|i| json!({"k": i, "pad": "x".repeat(64)})).collect();
    let events: Vec<Value> = (0..40).map(|i| json!({"type": "v", "id": format!("f{i}"), "data": {"items": items}})).collect();
    let started = Instant::now();
    let (status, answer) = server.ingest_ndjson("fan", &events);
    assert_eq!(status, 202, "{answer}");
    drained(&server, "fan", 40);
    let dlq = server.dlq("fan");
    assert_eq!(dlq.len(), 40);
    let kinds: Vec<&Value> = dlq.iter().map(|e| &e["error_kind"]).collect();
    assert!(kinds.iter().all(|k| **k == json!("output_limit")), "{kinds:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "isolating 40 poison events took {:?}", started.elapsed());
    let rss = peak_rss_mb(server.pid().unwrap());
    assert!(rss < 600, "the server's peak RSS was {rss} MB");
    assert_eq!(server.get("/healthz").0, 200);
}
on_both_stores!(one_request_cannot_take_the_host);

/// Row 6: a request that can never fit is 413 (no retry can help); byte
/// backpressure refuses a request that would pass `max_queue_bytes`.
fn impossible_requests_and_byte_backpressure(store: StoreKind) {
    let server = Server::start_with(store, None, &["--workers", "0"]);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("small", &json!({"stages": [{"name": "f", "plugin": "bot-filter"}], "max_queue_depth": 10, "max_queue_bytes": 4096}));
    let eleven: Vec<Value> = (0..11).map(|i| json!({"type": "v", "id": format!("e{i}")})).collect();
    let (status, answer) = server.ingest_ndjson("small", &eleven);
    assert_eq!((status, answer["error"].clone()), (413, json!("too_many_events")), "{answer}");
    let big = json!({"type": "v", "data": {"pad": "x".repeat(5000)}});
    let (status, answer) = server.ingest_ndjson("small", &[big]);
    assert_eq!((status, answer["error"].clone()), (413, json!("too_many_events")), "{answer}");
    // Workers are off: what is queued stays. 3 × ~1.3 KB fit in 4 KiB, a 4th does not.
    let event = |i: usize| json!({"type": "v", "id": format!("b{i}"), "data": {"pad": "y".repeat(1200)}});
    for i in 0..3 {
        let (status, answer) = server.ingest_ndjson("small", &[event(i)]);
        assert_eq!(status, 202, "{answer}");
    }
    let (status, answer, headers) =
        post(&server, "small", "application/x-ndjson", format!("{}\n", event(3)).into_bytes());
    assert_eq!((status, answer["error"].clone()), (429, json!("backpressure")), "{answer}");
    assert!(headers.get("retry-after").is_some());
    let m = server.metrics("small");
    assert_eq!((m["accepted"].clone(), m["queue_depth"].clone()), (json!(3), json!(3)), "nothing of the refused request was queued: {m}");
}
on_both_stores!(impossible_requests_and_byte_backpressure);

/// Row 7: in open mode, a request for another host name (DNS rebinding) and
/// a change from another site's page are refused.
fn open_mode_refuses_other_hosts_and_sites(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("open", &json!({"stages": [{"name": "f", "plugin": "bot-filter"}]}));
    let client = server.client();
    let send = |req: reqwest::blocking::RequestBuilder| harness::json_of(req.send().unwrap());
    let (status, body) = send(client.get(server.url("/v1/pipelines")).header("host", format!("rebound.example:{}", server.port)));
    assert_eq!((status, body["error"].clone()), (403, json!("forbidden_host")), "{body}");
    let events = server.url("/v1/pipelines/open/events");
    let (status, body) = send(client.post(&events).header("origin", "https://evil.example").body(r#"{"type":"v"}"#));
    assert_eq!((status, body["error"].clone()), (403, json!("cross_origin")), "{body}");
    let (status, body) = send(client.post(server.url("/v1/pipelines/open/dlq/replay")).header("origin", "null").body("{}"));
    assert_eq!((status, body["error"].clone()), (403, json!("cross_origin")), "{body}");
    let (status, _) = send(client.get(server.url("/v1/pipelines")).header("origin", "https://evil.example"));
    assert_eq!(status, 200, "reading is not a change");
    let own = format!("http://127.0.0.1:{}", server.port);
    let (status, body) = send(client.post(&events).header("origin", own).body(r#"{"type":"v"}"#));
    assert_eq!(status, 202, "the server's own page may change things: {body}");
    let (status, body) = send(client.get(server.url("/healthz")).header("host", format!("localhost:{}", server.port)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.metrics("open")["accepted"], json!(1), "only the own-origin event was queued");
}
on_both_stores!(open_mode_refuses_other_hosts_and_sites);

/// Row 8: `?access_token=` works on the live feed only; live feeds are
/// bounded per process.
fn tokens_in_queries_and_live_feeds_are_bounded(store: StoreKind) {
    let server = Server::start_with(store, Some("s3cret"), &["--max-live-feeds", "1"]);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("live", &json!({"stages": [{"name": "f", "plugin": "bot-filter"}],
        "windows": [{"name": "w", "kind": "tumbling", "size_ms": 1000, "aggregates": [{"op": "count"}]}]}));
    let plain = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let status = plain.get(server.url("/v1/pipelines?access_token=s3cret")).send().unwrap().status().as_u16();
    assert_eq!(status, 401, "a query token is not taken on an ordinary route");
    let first = plain.get(server.url("/v1/pipelines/live/windows/w/live?access_token=s3cret")).send().unwrap();
    assert_eq!(first.status().as_u16(), 200, "the live feed takes the query token");
    let second = plain.get(server.url("/v1/pipelines/live/windows/w/live?access_token=s3cret")).send().unwrap();
    assert_eq!(second.status().as_u16(), 503, "a second feed is over --max-live-feeds 1");
    drop(first);
    let third = wait_for("the first feed's slot to come back", Duration::from_secs(25), || {
        let r = plain.get(server.url("/v1/pipelines/live/windows/w/live?access_token=s3cret")).send().unwrap();
        (r.status().as_u16() == 200).then_some(r)
    });
    drop(third);
    let wrong = plain.get(server.url("/v1/pipelines/live/windows/w/live?access_token=nope")).send().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
}
on_both_stores!(tokens_in_queries_and_live_feeds_are_bounded);

/// A completion that keeps failing ends: a sum that is finite in each
/// batch but would overflow on top of what the pane holds is refused by the
/// store (before it writes anything). The batch is retried, then run alone
/// on its next delivery, then goes to the DLQ whole as `internal`; the
/// counters stay exact and later batches flow.
fn a_completion_the_store_keeps_refusing_ends_in_the_dlq(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("refused", &json!({"stages": [{"name": "f", "plugin": "bot-filter"}],
        "windows": [{"name": "big", "kind": "tumbling", "size_ms": 3_600_000, "aggregates": [{"op": "sum", "field": "data.big"}]}]}));
    let t = now_ms();
    let big = |id: &str| json!({"type": "v", "id": id, "timestamp": t, "data": {"big": 1.7e308}});
    assert_eq!(server.ingest_ndjson("refused", &[big("first")]).0, 202);
    drained(&server, "refused", 1);
    assert_eq!(server.ingest_ndjson("refused", &[big("second")]).0, 202);
    let m = drained(&server, "refused", 2);
    assert_eq!((m["emitted"].clone(), m["dlq_size"].clone()), (json!(1), json!(1)), "{m}");
    let dlq = server.dlq("refused");
    assert_eq!((dlq[0]["event"]["id"].clone(), dlq[0]["error_kind"].clone(), dlq[0]["stage"].clone()), (json!("second"), json!("internal"), json!("f")), "{}", dlq[0]);
    // Later batches go through.
    assert_eq!(server.ingest_ndjson("refused", &[json!({"type": "v", "timestamp": t, "data": {"big": 1}})]).0, 202);
    drained(&server, "refused", 3);
}
on_both_stores!(a_completion_the_store_keeps_refusing_ends_in_the_dlq);
