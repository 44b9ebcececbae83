//! The engine and the HTTP API, black-box: the real `sluice serve` binary on
//! every store (embedded, Redis, Redis Cluster), real wasm plugins, real HTTP.

use sluice_blackbox_tests as harness;

use std::time::Duration;

use harness::{on_both_stores, on_every_store, wait_for, Server, StoreKind};
use serde_json::{json, Value};

fn page_view(i: usize) -> Value {
    let ua = if i % 5 == 0 { "Googlebot/2.1" } else { "Mozilla/5.0 (X11; Linux)" };
    json!({"id": format!("e{i}"), "type": "page_view", "timestamp": 1_700_000_000_000i64 + i as i64,
           "data": {"url": format!("https://shop.example/p/{i}?ref=ad"), "ua": ua, "email": format!("u{i}@example.com")}})
}

fn chain_spec() -> Value {
    json!({"stages": [
        {"name": "drop-bots", "plugin": "bot-filter"},
        {"name": "parts", "plugin": "url-parts"},
        {"name": "redact", "plugin": "pii-redact", "config": {"fields": ["data.email"], "mode": "mask"}}
    ]})
}

fn events_through_the_chain(store: StoreKind) {
    let server = Server::start(store);
    assert_eq!(server.upload("bot-filter", "bot_filter"), 1);
    assert_eq!(server.upload("bot-filter", "bot_filter"), 1, "identical bytes: same version");
    server.upload("url-parts", "url_parts");
    server.upload("pii-redact", "pii_redact");
    server.put_pipeline("web", &chain_spec());
    let (status, stored) = server.get("/v1/pipelines/web");
    assert_eq!(status, 200);
    assert_eq!(stored["spec"]["stages"][0]["version"], json!(1), "version resolved: {stored}");

    let events: Vec<Value> = (0..50).map(page_view).collect();
    let (status, answer) = server.ingest_ndjson("web", &events);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], json!(50));
    assert_eq!(answer["ids"][3], json!("e3"));

    let outputs = wait_for("40 outputs", Duration::from_secs(30), || {
        let out = server.outputs("web");
        (out.len() >= 40).then_some(out)
    });
    assert_eq!(outputs.len(), 40, "10 bots filtered");
    let first = outputs.iter().find(|e| e["id"] == json!("e1")).expect("e1 emitted");
    assert_eq!(first["data"]["host"], json!("shop.example"));
    assert_eq!(first["data"]["path"], json!("/p/1"));
    assert_eq!(first["data"]["email"], json!("u***@example.com"));
    assert!(outputs.iter().all(|e| e["data"]["ua"] != json!("Googlebot/2.1")));

    let metrics = wait_for("processed 50", Duration::from_secs(10), || {
        let m = server.metrics("web");
        (m["processed"] == json!(50)).then_some(m)
    });
    assert_eq!(metrics["accepted"], json!(50));
    assert_eq!(metrics["emitted"], json!(40));
    assert_eq!(metrics["queue_depth"], json!(0));
    assert_eq!(metrics["dlq_size"], json!(0));
    assert_eq!(metrics["stages"][0]["name"], json!("drop-bots"));
    assert!(metrics["stages"][1]["calls"].as_u64().unwrap() >= 1);
    assert!(metrics["stages"][1]["fuel_per_event"].as_u64().unwrap() > 0);
}
on_every_store!(events_through_the_chain);

/// `output_retention_ms`: the server deletes outputs older than that (it
/// looks every 5 s); the counters keep the history.
fn outputs_past_their_retention_are_deleted(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("short", &json!({"stages": [{"name": "pass", "plugin": "bot-filter"}], "output_retention_ms": 1000}));
    server.put_pipeline("long", &json!({"stages": [{"name": "pass", "plugin": "bot-filter"}]}));
    let (status, stored) = server.get("/v1/pipelines/short");
    assert_eq!((status, &stored["spec"]["output_retention_ms"]), (200, &json!(1000)));
    let events: Vec<Value> = (1..=20).map(page_view).filter(|e| e["data"]["ua"] != json!("Googlebot/2.1")).collect();
    for pipeline in ["short", "long"] {
        assert_eq!(server.ingest_ndjson(pipeline, &events).0, 202);
        wait_for("16 outputs", Duration::from_secs(30), || (server.outputs(pipeline).len() == 16).then_some(()));
    }
    wait_for("the outputs trimmed", Duration::from_secs(15), || server.outputs("short").is_empty().then_some(()));
    assert_eq!(server.metrics("short")["emitted"], json!(16));
    // The default retention (a day) kept the other pipeline's.
    assert_eq!(server.outputs("long").len(), 16);
}
on_every_store!(outputs_past_their_retention_are_deleted);

fn flaky_is_retried_then_emitted(store: StoreKind) {
    let server = Server::start(store);
    server.upload("flaky", "flaky");
    server.put_pipeline("retry", &json!({"stages": [{"name": "f", "plugin": "flaky",
        "retry": {"max_attempts": 4, "initial_backoff_ms": 50, "max_backoff_ms": 200}}]}));
    let (status, _) = server.ingest_ndjson("retry", &[
        json!({"id": "twice", "type": "t", "data": {"fail_attempts": 3}}),
        json!({"id": "never", "type": "t", "data": {"fail_attempts": 9}}),
        json!({"id": "ok", "type": "t", "data": {}}),
    ]);
    assert_eq!(status, 202);
    let outputs = wait_for("two outputs", Duration::from_secs(20), || {
        let out = server.outputs("retry");
        (out.len() >= 2).then_some(out)
    });
    let ids: Vec<&str> = outputs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"twice") && ids.contains(&"ok"), "{ids:?}");
    let dlq = wait_for("exhausted retries in the DLQ", Duration::from_secs(20), || {
        let dlq = server.dlq("retry");
        (!dlq.is_empty()).then_some(dlq)
    });
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["event"]["id"], json!("never"));
    assert_eq!(dlq[0]["error_kind"], json!("retryable"));
    assert_eq!(dlq[0]["attempts"], json!(4));
    assert!(dlq[0]["last_failed_at"].as_i64().unwrap() > dlq[0]["first_failed_at"].as_i64().unwrap());
    let m = server.metrics("retry");
    assert_eq!(m["stages"][0]["retries"], json!(5), "2 retries for `twice`, 3 for `never`: {m}");
    assert_eq!(m["queue_depth"], json!(0));
}
on_every_store!(flaky_is_retried_then_emitted);

fn dead_letters_are_fixed_and_replayed(store: StoreKind) {
    let server = Server::start(store);
    assert_eq!(server.upload("validator", "schema_check"), 1);
    let spec = |version: u32, config: Value| json!({"stages": [{"name": "check", "plugin": "validator", "version": version, "config": config}]});
    server.put_pipeline("orders", &spec(1, json!({"required": ["data.url", "data.user_id"]})));
    server.ingest_ndjson("orders", &[json!({"id": "bad", "type": "t", "data": {"url": "u"}}), json!({"id": "good", "type": "t", "data": {"url": "u", "user_id": "x"}})]);
    let dlq = wait_for("one DLQ entry", Duration::from_secs(20), || {
        let dlq = server.dlq("orders");
        (!dlq.is_empty()).then_some(dlq)
    });
    let entry = &dlq[0];
    assert_eq!(entry["event"]["id"], json!("bad"));
    assert_eq!(entry["error"], json!("missing required fields: data.user_id"));
    assert_eq!(entry["error_kind"], json!("rejected"));
    assert_eq!(entry["stage"], json!("check"));
    assert_eq!(entry["plugin"], json!("validator"));
    assert_eq!(entry["plugin_version"], json!(1));
    assert_eq!(entry["attempts"], json!(1));
    assert!(entry["dlq_id"].is_string());

    // The fix: a new version of the plugin (here a different component that
    // accepts the event), then replay.
    assert_eq!(server.upload("validator", "flaky"), 2);
    server.put_pipeline("orders", &spec(2, json!({})));
    let (status, replay) = server.post_json("/v1/pipelines/orders/dlq/replay", &json!({"ids": [entry["dlq_id"], "0-1"]}));
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay, json!({"replayed": 1, "failed": 1}));
    let outputs = wait_for("both emitted", Duration::from_secs(20), || {
        let out = server.outputs("orders");
        (out.len() >= 2).then_some(out)
    });
    let mut ids: Vec<&str> = outputs.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec!["bad", "good"]);
    assert!(server.dlq("orders").is_empty());
    let (status, body) = server.delete("/v1/plugins/validator/versions/2");
    assert_eq!(status, 409, "in use: {body}");
}
on_every_store!(dead_letters_are_fixed_and_replayed);

fn backpressure_refuses_whole_requests(store: StoreKind) {
    let server = Server::start(store);
    server.upload("spin", "spin");
    // Every event spins to its 40 ms deadline: the pipeline crawls.
    server.put_pipeline("slow", &json!({"max_queue_depth": 60, "stages": [{"name": "s", "plugin": "spin",
        "limits": {"fuel": 10000000000u64, "timeout_ms": 40}}]}));
    let mut accepted = 0u64;
    let mut refused = 0;
    for round in 0..30 {
        let events: Vec<Value> = (0..10).map(|i| json!({"id": format!("r{round}-{i}"), "type": "t"})).collect();
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        let (status, answer, headers) = server.raw(reqwest::Method::POST, "/v1/pipelines/slow/events", Some("application/x-ndjson"), body.into_bytes());
        match status {
            202 => accepted += answer["accepted"].as_u64().unwrap(),
            429 => {
                refused += 1;
                assert_eq!(answer["error"], json!("backpressure"));
                assert!(answer["queue_depth"].as_u64().unwrap() <= 60);
                assert!(headers.get("retry-after").is_some());
                assert!(answer["retry_after_s"].as_u64().unwrap() >= 1);
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        let depth = server.metrics("slow")["queue_depth"].as_u64().unwrap();
        assert!(depth <= 60, "queue depth {depth} beyond its bound");
    }
    assert!(refused > 0, "the bound was never hit");
    // Nothing accepted is lost: every accepted event ends up in the DLQ (timeout).
    let dlq = wait_for("all accepted events dead-lettered", Duration::from_secs(60), || {
        let dlq = server.dlq("slow");
        (dlq.len() as u64 >= accepted).then_some(dlq)
    });
    assert_eq!(dlq.len() as u64, accepted);
    assert!(dlq.iter().all(|e| e["error_kind"] == json!("timeout")));
}
on_every_store!(backpressure_refuses_whole_requests);

fn bad_inputs_get_clear_answers(store: StoreKind) {
    let server = Server::start_with(store, None, &["--max-body-bytes", "400000"]);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("p", &json!({"stages": [{"name": "b", "plugin": "bot-filter"}]}));
    let post = |ct: Option<&str>, body: &str| server.raw(reqwest::Method::POST, "/v1/pipelines/p/events", ct, body.as_bytes().to_vec());

    let (s, b, _) = post(Some("application/json"), "{\"type\": ");
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_json")));
    assert!(b["message"].as_str().unwrap().contains("line 1"), "{b}");
    let (s, b, _) = post(Some("text/csv"), "a,b");
    assert_eq!((s, b["error"].as_str()), (415, Some("unsupported_media_type")));
    let (s, b, _) = post(Some("application/json"), &format!("[{}]", vec!["{\"type\":\"t\"}"; 40_000].join(",")));
    assert_eq!((s, b["error"].as_str()), (413, Some("payload_too_large")));
    let (s, b, _) = server.raw(reqwest::Method::POST, "/v1/pipelines/nope/events", Some("application/json"), b"{\"type\":\"t\"}".to_vec());
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")));
    let (s, b, _) = post(Some("application/json"), r#"[{"type":"ok"},{"id":"x"},{"type":"t","timestamp":"noon"},5]"#);
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["accepted"], json!(1));
    assert_eq!(b["rejected"], json!(3));
    assert_eq!(b["ids"][1], Value::Null);
    assert_eq!(b["errors"][0], json!({"index": 1, "error": "`type` is required"}));
    assert_eq!(b["errors"][2]["index"], json!(3));
    let (s, b, _) = post(Some("application/x-ndjson"), "{\"type\":\"a\"}\nnot json\n");
    assert_eq!(s, 202);
    assert!(b["errors"][0]["error"].as_str().unwrap().contains("line 2"), "{b}");

    let (s, b, _) = server.raw(reqwest::Method::PUT, "/v1/plugins/Bad_Name", Some("application/wasm"), harness::wasm("bot_filter"));
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_name")));
    let (s, b, _) = server.raw(reqwest::Method::PUT, "/v1/plugins/junk", Some("application/wasm"), b"\0asm\x01\0\0\0".to_vec());
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_plugin")));
    assert!(b["message"].as_str().unwrap().contains("not a component"), "{b}");
    let (s, b) = server.put_json("/v1/pipelines/q", &json!({"stages": [{"name": "b", "plugin": "bot-filter", "config": {"patterns": [""]}}]}));
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_spec")));
    assert!(b["message"].as_str().unwrap().contains("empty string"), "plugin's own message: {b}");
    let (s, b) = server.put_json("/v1/pipelines/q", &json!({"stages": [{"name": "b", "plugin": "missing"}]}));
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("unknown plugin `missing`"), "{b}");
    let (s, b) = server.put_json("/v1/pipelines/q", &json!({"stages": [{"name": "b", "plugin": "bot-filter", "version": 7}]}));
    assert_eq!(s, 400);
    assert!(b["message"].as_str().unwrap().contains("no version 7"), "{b}");
    let (s, _) = server.get("/v1/pipelines/q");
    assert_eq!(s, 404);
    let (s, b) = server.get("/v1/pipelines/p/dlq?limit=5000");
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_limit")));
    let (s, b) = server.get("/v1/pipelines/p/output?cursor=not-a-cursor");
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_cursor")));
    let (s, _) = server.put_json("/v1/tables/geo", &json!({"a": 1}));
    assert_eq!(s, 400);
    let (s, _) = server.put_json("/v1/tables/geo", &json!({"81.2.69.0/24": "GB"}));
    assert_eq!(s, 200);
    assert_eq!(server.get("/v1/tables/geo"), (200, json!({"81.2.69.0/24": "GB"})));
    let (s, _) = server.delete("/v1/plugins/bot-filter/versions/9");
    assert_eq!(s, 404);
}
// Checks of input made before the store is asked; tables on the cluster are
// covered by the store conformance suite.
on_both_stores!(bad_inputs_get_clear_answers);

/// Plugin uploads have a limit of their own (`--max-plugin-bytes`, 64 MiB by
/// default: a Python or JavaScript stage's component weighs 12-20 MB), and
/// every other body keeps `--max-body-bytes`; each 413 names its flag.
fn plugin_uploads_have_their_own_limit(store: StoreKind) {
    let server = Server::start_with(store, None, &["--max-body-bytes", "100000", "--max-plugin-bytes", "1500000"]);
    let component = harness::wasm("bot_filter");
    assert!(component.len() > 100_000 && component.len() < 1_500_000, "{} bytes", component.len());
    assert_eq!(server.upload_bytes("bot-filter", component), 1, "over --max-body-bytes, within --max-plugin-bytes");
    let (status, body, _) = server.raw(reqwest::Method::PUT, "/v1/plugins/big", Some("application/wasm"), vec![0u8; 1_600_000]);
    assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("--max-plugin-bytes"), "{body}");
    server.put_pipeline("p", &json!({"stages": [{"name": "b", "plugin": "bot-filter"}]}));
    let big = vec![json!({"type": "t", "data": {"pad": "x".repeat(150_000)}})];
    let (status, body) = server.ingest_ndjson("p", &big);
    assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("--max-body-bytes"), "{body}");
}
on_both_stores!(plugin_uploads_have_their_own_limit);

#[test]
fn auth_is_refused_where_it_must_be() {
    let (store, _dir) = harness::embedded_store();
    let server = Server::start_with(store, Some("admin-secret"), &["--ingest-token", "ingest-1,ingest-2"]);
    let client = reqwest::blocking::Client::new();
    let status = |req: reqwest::blocking::RequestBuilder| req.send().unwrap().status().as_u16();
    assert_eq!(status(client.get(server.url("/healthz"))), 200);
    assert_eq!(status(client.get(server.url("/v1/plugins"))), 401);
    assert_eq!(status(client.get(server.url("/v1/plugins")).bearer_auth("wrong")), 401);
    assert_eq!(status(client.get(server.url("/v1/plugins")).bearer_auth("ingest-1")), 403);
    assert_eq!(status(client.get(server.url("/metrics"))), 401);
    assert_eq!(status(client.get(server.url("/metrics")).bearer_auth("admin-secret")), 200);
    server.upload("bot-filter", "bot_filter");
    server.put_pipeline("p", &json!({"stages": [{"name": "b", "plugin": "bot-filter"}]}));
    let ingest = |token: &str| status(client.post(server.url("/v1/pipelines/p/events")).bearer_auth(token).json(&json!({"type": "t"})));
    assert_eq!(ingest("ingest-2"), 202);
    assert_eq!(ingest("admin-secret"), 202);
    assert_eq!(ingest("nope"), 401);
    assert_eq!(status(client.put(server.url("/v1/pipelines/x")).bearer_auth("ingest-1").json(&json!({}))), 403);
}

#[test]
fn open_mode_refuses_a_public_address() {
    let out = std::process::Command::new(harness::sluice_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--store", "/tmp/unused-sluice-store"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen on 0.0.0.0:0 with no tokens"));
}
