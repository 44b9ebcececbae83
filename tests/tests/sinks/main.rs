//! Sinks (issue 13), on both stores, with the real binary and real
//! destinations: Postgres, NATS JetStream and an HTTP receiver written
//! here. Every output reaches Postgres exactly once and HTTP and NATS at
//! least once; a SIGKILL mid-delivery leaves Postgres with no duplicate and
//! no gap; a receiver down for 5 s gets everything after; one refusing
//! sends the batch to the DLQ and a replay delivers it to that sink only; a
//! stalled receiver raises the lag until ingest answers 429, and ingest
//! accepts again once it drains; window results upsert into a table; an
//! HTTPS receiver gets everything when its CA is trusted (`ca_file`) and
//! nothing, with the reason in `last_error`, when it is not.

mod https;
mod prometheus;
mod receiver;
mod removed_sink;
mod secrets;
mod services;
mod window_lag;

use sluice_blackbox_tests as harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::{on_both_stores, wait_for, Server, StoreKind};
use receiver::{Mode, Receiver};
use serde_json::{json, Value};
use services::{nats_delete_stream, nats_message_ids, nats_stream, nats_url, pg_column, pg_execute, pg_url, unique};

fn page_view(i: usize) -> Value {
    let ua = if i % 5 == 0 { "Googlebot/2.1" } else { "Mozilla/5.0 (X11; Linux)" };
    json!({"id": format!("e{i}"), "type": "page_view", "timestamp": 1_700_000_000_000i64 + i as i64,
           "data": {"url": format!("https://shop.example/p/{i}?ref=ad"), "ua": ua, "email": format!("u{i}@example.com")}})
}

/// The 3-stage chain of the README with `sinks` added.
fn chain_spec(sinks: Value) -> Value {
    json!({"stages": [
        {"name": "drop-bots", "plugin": "bot-filter"},
        {"name": "parts", "plugin": "url-parts"},
        {"name": "redact", "plugin": "pii-redact", "config": {"fields": ["data.email"], "mode": "mask"}}
    ], "sinks": sinks})
}

fn start(store: StoreKind) -> Server {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    server.upload("url-parts", "url_parts");
    server.upload("pii-redact", "pii_redact");
    server
}

/// A table for output events: id, type, time, url, payload.
fn event_table() -> String {
    let table = unique("sink_events");
    pg_execute(&format!("CREATE TABLE {table} (id text, kind text, ts bigint, url text, payload jsonb)"));
    table
}

fn pg_sink(name: &str, table: &str, batch_max: usize) -> Value {
    json!({"name": name, "kind": "postgres", "url": pg_url(), "table": table, "batch_max": batch_max,
           "columns": {"id": "id", "kind": "type", "ts": "timestamp", "url": "data.url", "payload": "data"}})
}

/// Ingests `events` in requests of `chunk`, each accepted.
fn ingest(server: &Server, pipeline: &str, events: &[Value], chunk: usize) {
    for part in events.chunks(chunk) {
        let (status, answer) = server.ingest_ndjson(pipeline, part);
        assert_eq!(status, 202, "{answer}");
    }
}

/// The ids of every output once `expected` are there.
fn output_ids(server: &Server, pipeline: &str, expected: usize) -> BTreeSet<String> {
    let ids = wait_for("the outputs", Duration::from_secs(60), || {
        let out = server.outputs(pipeline);
        (out.len() >= expected).then_some(out)
    });
    let ids: BTreeSet<String> = ids.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), expected, "outputs are unique");
    ids
}

/// The sink's entry in `GET …/sinks`.
fn sink_status(server: &Server, pipeline: &str, sink: &str) -> Value {
    let (status, body) = server.get(&format!("/v1/pipelines/{pipeline}/sinks"));
    assert_eq!(status, 200, "{body}");
    body["sinks"].as_array().unwrap().iter().find(|s| s["name"] == json!(sink)).cloned().unwrap_or_else(|| panic!("no sink {sink}: {body}"))
}

/// Waits until the sink delivered `n` and nothing waits.
fn wait_delivered(server: &Server, pipeline: &str, sink: &str, n: u64, timeout: Duration) -> Value {
    wait_for(&format!("sink {sink} to deliver {n}"), timeout, || {
        let s = sink_status(server, pipeline, sink);
        (s["delivered"] == json!(n) && s["lag"] == json!(0)).then_some(s)
    })
}

/// Asserts two id sets are equal, naming a few differences (not all of them).
fn assert_same_ids(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = want.difference(got).take(5).collect();
    let extra: Vec<&String> = got.difference(want).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{what}: {} ids, want {}; missing e.g. {missing:?}, unexpected e.g. {extra:?}", got.len(), want.len());
}

fn pg_ids(table: &str) -> Vec<String> {
    pg_column(&format!("SELECT id FROM {table} ORDER BY id"))
}

/// 2,000 events through the 3-stage chain into a Postgres, an HTTP and a
/// NATS sink: Postgres has each output exactly once (row count and ids
/// equal the outputs), the receiver and the stream have every id.
fn three_sinks_deliver_every_output(store: StoreKind) {
    let server = start(store);
    let table = event_table();
    let stream = unique("SINKS");
    let subject = format!("{}.views", stream.to_lowercase());
    nats_stream(&stream, &subject);
    let hook = Receiver::start(Mode::Accept);
    let spec = chain_spec(json!([
        pg_sink("warehouse", &table, 500),
        {"name": "hook", "kind": "http", "url": hook.url, "batch_max": 300},
        {"name": "bus", "kind": "nats", "url": nats_url(), "subject": subject},
    ]));
    server.put_pipeline("web", &spec);
    let (_, stored) = server.get("/v1/pipelines/web");
    assert_eq!(stored["spec"]["sinks"][0]["table"], json!(table), "{stored}");
    let events: Vec<Value> = (0..2000).map(page_view).collect();
    ingest(&server, "web", &events, 250);
    let outputs = output_ids(&server, "web", 1600);

    wait_delivered(&server, "web", "warehouse", 1600, Duration::from_secs(60));
    let rows = pg_ids(&table);
    assert_eq!(rows.len(), 1600, "one row per output");
    assert_same_ids(&rows.iter().cloned().collect(), &outputs, "the rows are the outputs");
    let url = pg_column(&format!("SELECT url || '|' || kind || '|' || (payload->>'email') FROM {table} WHERE id = 'e1'"));
    assert_eq!(url, ["https://shop.example/p/1?ref=ad|page_view|u***@example.com"], "columns mapped from the event");

    let s = wait_delivered(&server, "web", "hook", 1600, Duration::from_secs(60));
    assert_eq!(s["kind"], json!("http"));
    assert_eq!(s["oldest_undelivered_at"], Value::Null);
    let got: BTreeSet<String> = hook.ids().into_iter().collect();
    assert_same_ids(&got, &outputs, "every output reached the receiver");
    assert!(hook.keys().keys().all(|k| k.starts_with("web:hook:")), "{:?}", hook.keys());

    wait_delivered(&server, "web", "bus", 1600, Duration::from_secs(60));
    let ids = nats_message_ids(&stream);
    assert_same_ids(&ids.iter().cloned().collect(), &outputs, "every output reached the stream (Nats-Msg-Id)");
    assert_eq!(ids.len(), 1600, "Nats-Msg-Id: no id twice");

    let m = server.metrics("web");
    assert_eq!(m["sinks"].as_array().map(Vec::len), Some(3), "{m}");
    let prom = server.client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(prom.lines().any(|l| l.starts_with("sluice_sink_lag_events{") && l.contains("sink=\"warehouse\"")), "lag gauge in /metrics");
    nats_delete_stream(&stream);
    pg_execute(&format!("DROP TABLE {table}"));
}
on_both_stores!(three_sinks_deliver_every_output);

/// A NATS sink whose subject no stream captures yet: its batches (several
/// in flight, 50 events each) fail with "no stream" and are retried; once
/// the stream is made, every output lands in it exactly once (the retried
/// and re-sent messages are de-duplicated by `Nats-Msg-Id`) and nothing
/// went to the DLQ.
fn nats_sink_retries_until_a_stream_captures_the_subject(store: StoreKind) {
    let server = start(store);
    let stream = unique("LATE");
    let subject = format!("{}.views", stream.to_lowercase());
    server.put_pipeline("web", &chain_spec(json!([{"name": "bus", "kind": "nats", "url": nats_url(), "subject": subject, "batch_max": 50}])));
    ingest(&server, "web", &(0..1000).map(page_view).collect::<Vec<_>>(), 250);
    let outputs = output_ids(&server, "web", 800);
    let s = wait_for("a failed publish", Duration::from_secs(30), || {
        let s = sink_status(&server, "web", "bus");
        s["last_error"].as_str().is_some_and(|e| e.contains("no stream")).then_some(s)
    });
    assert_eq!(s["delivered"], json!(0), "{s}");
    nats_stream(&stream, &subject);
    let s = wait_delivered(&server, "web", "bus", 800, Duration::from_secs(60));
    assert_eq!((s["failed"].clone(), s["last_error"].clone()), (json!(0), Value::Null), "{s}");
    let ids = nats_message_ids(&stream);
    assert_same_ids(&ids.iter().cloned().collect(), &outputs, "every output reached the stream");
    assert_eq!(ids.len(), 800, "no message twice");
    assert!(server.dlq("web").is_empty());
    nats_delete_stream(&stream);
}
on_both_stores!(nats_sink_retries_until_a_stream_captures_the_subject);

/// A server killed with SIGKILL while its Postgres sink delivers small
/// batches, then restarted: every output is in the table once.
fn killed_mid_delivery_leaves_no_gap_or_duplicate(store: StoreKind) {
    let mut server = start(store);
    let table = event_table();
    server.put_pipeline("web", &chain_spec(json!([pg_sink("warehouse", &table, 20)])));
    let events: Vec<Value> = (0..5000).map(page_view).collect();
    ingest(&server, "web", &events, 500);
    let outputs = output_ids(&server, "web", 4000);
    wait_for("some rows, not all", Duration::from_secs(60), || {
        let n = pg_column(&format!("SELECT count(*)::text FROM {table}"))[0].parse::<usize>().unwrap();
        (n > 0).then_some(())
    });
    server.kill9();
    let at_kill = pg_column(&format!("SELECT count(*)::text FROM {table}"))[0].parse::<usize>().unwrap();
    assert!(at_kill < 4000, "killed mid-delivery ({at_kill} rows)");
    server.restart();
    wait_delivered(&server, "web", "warehouse", 4000, Duration::from_secs(90));
    let rows = pg_ids(&table);
    assert_eq!(rows.len(), 4000, "no duplicate");
    assert_same_ids(&rows.into_iter().collect(), &outputs, "no gap");
    pg_execute(&format!("DROP TABLE {table}"));
}
on_both_stores!(killed_mid_delivery_leaves_no_gap_or_duplicate);

/// A receiver answering 503 for its first 5 s gets every output after,
/// each retry of a batch under the same Idempotency-Key; nothing goes to
/// the DLQ.
fn receiver_down_for_five_seconds_gets_everything(store: StoreKind) {
    let server = start(store);
    let hook = Receiver::start(Mode::Answer(503));
    server.put_pipeline("web", &chain_spec(json!([{"name": "hook", "kind": "http", "url": hook.url, "batch_max": 100}])));
    let started = std::time::Instant::now();
    ingest(&server, "web", &(0..500).map(page_view).collect::<Vec<_>>(), 100);
    let outputs = output_ids(&server, "web", 400);
    wait_for("a refused delivery", Duration::from_secs(20), || (hook.requests() >= 2).then_some(()));
    let s = sink_status(&server, "web", "hook");
    assert!(s["last_error"].as_str().unwrap_or_default().contains("503"), "{s}");
    assert!(s["lag"].as_u64().unwrap() > 0 && s["oldest_undelivered_at"].is_i64(), "{s}");
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    hook.set(Mode::Accept);
    let s = wait_delivered(&server, "web", "hook", 400, Duration::from_secs(60));
    assert_eq!(s["failed"], json!(0));
    assert_eq!(s["last_error"], Value::Null, "cleared by a delivery");
    assert_same_ids(&hook.ids().into_iter().collect(), &outputs, "the receiver got every output");
    let retried = hook.keys().values().filter(|sizes| sizes.len() > 1).count();
    assert!(retried >= 1, "a batch retried under its key: {:?}", hook.keys());
    assert!(hook.keys().values().all(|sizes| sizes.iter().all(|n| *n == sizes[0])), "a key always names the same batch");
    assert!(server.dlq("web").is_empty());
}
on_both_stores!(receiver_down_for_five_seconds_gets_everything);

/// A receiver answering 400 sends the batches to the DLQ (`error_kind`
/// sink, `stage` sink:hook); after it is fixed, a replay delivers them to
/// that sink only: the Postgres sink of the same pipeline gets no second copy.
fn refused_batches_go_to_the_dlq_and_replay_to_that_sink(store: StoreKind) {
    let server = start(store);
    let table = event_table();
    let hook = Receiver::start(Mode::Answer(400));
    server.put_pipeline("web", &chain_spec(json!([{"name": "hook", "kind": "http", "url": hook.url, "batch_max": 50}, pg_sink("warehouse", &table, 100)])));
    ingest(&server, "web", &(0..100).map(page_view).collect::<Vec<_>>(), 100);
    let outputs = output_ids(&server, "web", 80);
    let dlq = wait_for("80 DLQ entries", Duration::from_secs(30), || {
        let dlq = server.dlq("web");
        (dlq.len() >= 80).then_some(dlq)
    });
    assert_eq!(dlq.len(), 80);
    assert!(dlq.iter().all(|e| e["error_kind"] == json!("sink") && e["stage"] == json!("sink:hook") && e["attempts"] == json!(1)), "{}", dlq[0]);
    assert!(dlq[0]["error"].as_str().unwrap().contains("400"), "{}", dlq[0]);
    let s = sink_status(&server, "web", "hook");
    assert_eq!((s["failed"].clone(), s["delivered"].clone(), s["lag"].clone()), (json!(80), json!(0), json!(0)), "{s}");
    wait_delivered(&server, "web", "warehouse", 80, Duration::from_secs(30));
    assert!(hook.ids().is_empty());

    hook.set(Mode::Accept);
    let (status, answer) = server.post_json("/v1/pipelines/web/dlq/replay", &json!({}));
    assert_eq!((status, answer["replayed"].clone()), (200, json!(80)), "{answer}");
    wait_delivered(&server, "web", "hook", 80, Duration::from_secs(30));
    assert_same_ids(&hook.ids().into_iter().collect(), &outputs, "the receiver got every output");
    assert!(server.dlq("web").is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pg_ids(&table).len(), 80, "the replay went to the hook only");
    assert_eq!(server.metrics("web")["processed"], json!(100), "replayed events did not run the stages again");
    pg_execute(&format!("DROP TABLE {table}"));
}
on_both_stores!(refused_batches_go_to_the_dlq_and_replay_to_that_sink);

/// A receiver that stops answering raises its sink's lag past
/// `max_sink_lag`: ingest answers 429 naming the sink, with Retry-After;
/// once the receiver answers again the sink drains and ingest accepts.
fn stalled_receiver_pushes_back_on_ingest(store: StoreKind) {
    let server = start(store);
    let hook = Receiver::start(Mode::Stall);
    let mut spec = chain_spec(json!([{"name": "hook", "kind": "http", "url": hook.url, "batch_max": 50}]));
    spec["max_sink_lag"] = json!(200);
    server.put_pipeline("web", &spec);
    let mut sent = 0usize;
    let refused = wait_for("a 429", Duration::from_secs(30), || {
        let events: Vec<Value> = (sent..sent + 100).map(page_view).collect();
        let (status, body, headers) = server.raw(
            reqwest::Method::POST,
            "/v1/pipelines/web/events",
            Some("application/x-ndjson"),
            events.iter().map(|e| format!("{e}\n")).collect::<String>().into_bytes(),
        );
        if status == 202 {
            sent += 100;
            std::thread::sleep(Duration::from_millis(100));
            return None;
        }
        assert_eq!(status, 429, "{body}");
        Some((body, headers))
    });
    assert_eq!(refused.0["error"], json!("backpressure"));
    assert_eq!(refused.0["sink"], json!("hook"), "{}", refused.0);
    assert!(refused.1.get("retry-after").is_some());
    let lag = sink_status(&server, "web", "hook")["lag"].as_u64().unwrap();
    assert!(lag > 200, "lag {lag}");

    hook.set(Mode::Accept);
    let expected = (0..sent).filter(|i| i % 5 != 0).count() as u64;
    wait_delivered(&server, "web", "hook", expected, Duration::from_secs(60));
    let accepted = wait_for("ingest to accept again", Duration::from_secs(10), || {
        let (status, _) = server.ingest_ndjson("web", &[page_view(sent + 1)]);
        (status == 202).then_some(())
    });
    let _ = accepted;
}
on_both_stores!(stalled_receiver_pushes_back_on_ingest);

/// A window's results reach a Postgres table, one row per (window, group,
/// start); a late event re-emits its window and the row is replaced.
fn window_results_upsert_into_postgres(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    let table = unique("sink_windows");
    pg_execute(&format!(
        "CREATE TABLE {table} (\"window\" text, \"group\" jsonb, \"start\" bigint, \"end\" bigint, result jsonb, UNIQUE (\"window\", \"group\", \"start\"))"
    ));
    server.put_pipeline("win", &json!({
        "stages": [{"name": "pass", "plugin": "bot-filter"}],
        "windows": [{"name": "per_min", "kind": "tumbling", "size_ms": 60000, "group_by": "data.url", "allowed_lateness_ms": 600000,
                     "aggregates": [{"op": "count"}]}],
        "sinks": [{"name": "rollup", "kind": "postgres", "url": pg_url(), "table": table, "from": "window:per_min", "batch_ms": 20}]
    }));
    let at = |ms: i64, url: &str, id: &str| json!({"id": id, "type": "v", "timestamp": ms, "data": {"url": url}});
    let (status, _) = server.ingest_ndjson("win", &[at(1_000, "/a", "a1"), at(2_000, "/a", "a2"), at(3_000, "/b", "b1")]);
    assert_eq!(status, 202);
    // An event two windows on closes the first window.
    let (status, _) = server.ingest_ndjson("win", &[at(130_000, "/c", "c1")]);
    assert_eq!(status, 202);
    let count = |group: &str| {
        pg_column(&format!("SELECT (result->>'count') FROM {table} WHERE \"window\" = 'per_min' AND \"start\" = 0 AND \"group\" = '\"{group}\"'::jsonb"))
    };
    wait_for("the closed window's rows", Duration::from_secs(30), || (count("/a") == ["2"] && count("/b") == ["1"]).then_some(()));
    // Late but within the lateness: the window is re-emitted, its row replaced.
    let (status, _) = server.ingest_ndjson("win", &[at(4_000, "/a", "a3")]);
    assert_eq!(status, 202);
    wait_for("the re-emitted row", Duration::from_secs(30), || (count("/a") == ["3"]).then_some(()));
    let rows = pg_column(&format!("SELECT count(*)::text FROM {table} WHERE \"start\" = 0"));
    assert_eq!(rows, ["2"], "one row per group and window start");
    let end = pg_column(&format!("SELECT \"end\"::text FROM {table} WHERE \"group\" = '\"/b\"'::jsonb"));
    assert_eq!(end, ["60000"]);
    pg_execute(&format!("DROP TABLE {table}"));
}
on_both_stores!(window_results_upsert_into_postgres);

/// Specs are checked at PUT with messages naming the field; an environment
/// variable that is not set is refused naming it.
fn sink_specs_are_checked(store: StoreKind) {
    let server = start(store);
    let bad = [
        (json!({"name": "x", "kind": "postgres", "url_env": "SLUICE_TEST_SURELY_UNSET_VAR", "table": "t"}), "SLUICE_TEST_SURELY_UNSET_VAR"),
        (json!({"name": "x", "kind": "postgres", "url": "postgres://u:pw@127.0.0.1/db", "table": "t"}), "holds a password"),
        (json!({"name": "x", "kind": "nats", "url": "nats://127.0.0.1:4222"}), "needs `subject`"),
        (json!({"name": "x", "kind": "http", "url": "http://127.0.0.1:1/x", "from": "window:none"}), "no window"),
        (json!({"name": "x", "kind": "kafka", "url": "x"}), "sinks[0].kind"),
    ];
    for (sink, want) in bad {
        let (status, body) = server.put_json("/v1/pipelines/bad", &chain_spec(json!([sink])));
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(want), "{want}: {body}");
    }
    let (status, body) = server.get("/v1/pipelines/bad/sinks");
    assert_eq!(status, 404, "{body}");
}
on_both_stores!(sink_specs_are_checked);

/// The value of `metric` with `sink="<sink>"` in a server's `/metrics` (0 if never counted).
fn prometheus_sink_counter(server: &Server, metric: &str, sink: &str) -> f64 {
    server.prometheus_sum(metric, &format!("sink=\"{sink}\""))
}

/// Two processes on one Redis share the pipeline's work, but each sink is
/// delivered by one of them (its lease): Postgres gets every output once
/// and only one process counts deliveries. Killing that process hands the
/// sink to the other (once the 10 s lease runs out), which delivers the
/// rest, still exactly once.
#[test]
fn two_servers_run_each_sink_once() {
    let (store, _dir) = harness::redis_store("two_sinks");
    let mut a = start(store.clone());
    let table = event_table();
    a.put_pipeline("web", &chain_spec(json!([pg_sink("warehouse", &table, 100)])));
    let mut b = Server::start(store);
    // Both run the pipeline (and a sink runner) before events come.
    std::thread::sleep(Duration::from_millis(1500));
    let events: Vec<Value> = (0..3000).map(page_view).collect();
    for (i, part) in events.chunks(250).enumerate() {
        let server = if i % 2 == 0 { &a } else { &b };
        let (status, answer) = server.ingest_ndjson("web", part);
        assert_eq!(status, 202, "{answer}");
    }
    output_ids(&a, "web", 2400);
    wait_delivered(&a, "web", "warehouse", 2400, Duration::from_secs(60));
    let (da, db) = (prometheus_sink_counter(&a, "sluice_sink_delivered_total", "warehouse"), prometheus_sink_counter(&b, "sluice_sink_delivered_total", "warehouse"));
    assert!((da == 0.0) != (db == 0.0) && da + db == 2400.0, "one process delivered: a {da}, b {db}");
    // Kill the one delivering; the other takes over.
    let (dead, alive) = if da > 0.0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
    dead.kill9();
    let more: Vec<Value> = (3000..4000).map(page_view).collect();
    ingest(alive, "web", &more, 250);
    let outputs = output_ids(alive, "web", 3200);
    wait_delivered(alive, "web", "warehouse", 3200, Duration::from_secs(60));
    assert_eq!(prometheus_sink_counter(alive, "sluice_sink_delivered_total", "warehouse"), 800.0, "the survivor delivered the rest");
    let rows = pg_ids(&table);
    assert_eq!(rows.len(), 3200, "no row twice");
    assert_same_ids(&rows.into_iter().collect(), &outputs, "every output in the table");
    pg_execute(&format!("DROP TABLE {table}"));
}
