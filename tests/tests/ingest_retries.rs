//! Safe retries for producers (API.md v1.1), black-box on both stores: an
//! `Idempotency-Key` makes a retried POST answer the first answer again
//! and queue nothing, the same key with another body is 422, a
//! `dedup_window_ms` drops a resent id, and — on Redis — a POST answered
//! 503 while Redis stalled (`DEBUG SLEEP`), retried with the same key,
//! lands exactly once.

use sluice_blackbox_tests as harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{on_both_stores, wait_for, Server, StoreKind};
use serde_json::{json, Value};
use sluice_testkit::PrivateRedis;

/// A pipeline that emits every event it gets (no `data.ua`: no bot).
fn pass_through(server: &Server, id: &str, extra: Value) {
    server.upload("bot-filter", "bot_filter");
    let mut spec = json!({"stages": [{"name": "pass", "plugin": "bot-filter"}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    server.put_pipeline(id, &spec);
}

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// POSTs an NDJSON body with an `Idempotency-Key`; answers (status, body).
fn post_with_key(server: &Server, pipeline: &str, key: &str, body: &str) -> (u16, Value) {
    let response = server
        .client()
        .post(server.url(&format!("/v1/pipelines/{pipeline}/events")))
        .header("content-type", "application/x-ndjson")
        .header("idempotency-key", key)
        .body(body.to_string())
        .send()
        .unwrap();
    harness::json_of(response)
}

/// Once everything accepted is processed: how many times each id is in
/// the output.
fn output_counts(server: &Server, pipeline: &str) -> BTreeMap<String, usize> {
    wait_for("everything accepted processed", Duration::from_secs(30), || {
        let m = server.metrics(pipeline);
        (m["queue_depth"] == json!(0) && m["processed"] == m["accepted"]).then_some(())
    });
    let mut counts = BTreeMap::new();
    for event in server.outputs(pipeline) {
        *counts.entry(event["id"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
    }
    counts
}

fn once_each(ids: &[&str]) -> BTreeMap<String, usize> {
    ids.iter().map(|id| (id.to_string(), 1)).collect()
}

fn same_key_same_body_is_answered_once(store: StoreKind) {
    let server = Server::start(store);
    pass_through(&server, "p", json!({}));
    // One event without an id: the replay must give the id it was assigned.
    let body = ndjson(&[json!({"id": "a", "type": "t"}), json!({"type": "t"}), json!({"id": "b"}), json!({"id": "c", "type": "t"})]);
    let (status, first) = post_with_key(&server, "p", "order-42/try", &body);
    assert_eq!(status, 202, "{first}");
    assert_eq!((&first["accepted"], &first["rejected"]), (&json!(3), &json!(1)), "{first}");
    let assigned = first["ids"][1].as_str().expect("an id assigned").to_string();
    for _ in 0..2 {
        assert_eq!(post_with_key(&server, "p", "order-42/try", &body), (202, first.clone()), "the stored answer, again");
    }
    assert_eq!(output_counts(&server, "p"), once_each(&["a", &assigned, "c"]), "queued once");
    let m = server.metrics("p");
    assert_eq!((&m["accepted"], &m["rejected"]), (&json!(3), &json!(1)), "counted once: {m}");

    // The same key on another pipeline is another request.
    pass_through(&server, "q", json!({}));
    assert_eq!(post_with_key(&server, "q", "order-42/try", &body).0, 202);
    assert_eq!(server.metrics("q")["accepted"], json!(3));

    // A bad key is refused whole.
    for bad in ["", &"k".repeat(129), "tab\there"] {
        let (status, answer) = post_with_key(&server, "p", bad, &body);
        assert_eq!((status, &answer["error"]), (400, &json!("invalid_idempotency_key")), "{bad:?}: {answer}");
    }
    assert_eq!(post_with_key(&server, "p", &"k".repeat(128), &body).0, 202, "128 characters are fine");
}
on_both_stores!(same_key_same_body_is_answered_once);

fn same_key_other_body_is_refused(store: StoreKind) {
    let server = Server::start(store);
    pass_through(&server, "p", json!({}));
    let (status, answer) = post_with_key(&server, "p", "k1", &ndjson(&[json!({"id": "a", "type": "t"})]));
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post_with_key(&server, "p", "k1", &ndjson(&[json!({"id": "b", "type": "t"})]));
    assert_eq!((status, &answer["error"]), (422, &json!("idempotency_key_reused")), "{answer}");
    assert_eq!(output_counts(&server, "p"), once_each(&["a"]), "nothing of the second body queued");
    assert_eq!(server.metrics("p")["accepted"], json!(1));
}
on_both_stores!(same_key_other_body_is_refused);

fn dedup_window_drops_a_resent_id(store: StoreKind) {
    let server = Server::start(store);
    server.upload("bot-filter", "bot_filter");
    let (status, answer) = server.put_json("/v1/pipelines/p", &json!({"stages": [{"name": "pass", "plugin": "bot-filter"}], "dedup_window_ms": 86_400_001}));
    assert_eq!((status, &answer["error"]), (400, &json!("invalid_spec")), "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("dedup_window_ms"), "{answer}");
    pass_through(&server, "p", json!({"dedup_window_ms": 60_000}));
    assert_eq!(server.get("/v1/pipelines/p").1["spec"]["dedup_window_ms"], json!(60_000));

    let (status, answer) = server.ingest_ndjson("p", &[json!({"id": "x", "type": "t"})]);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer.get("duplicates"), None, "no duplicates, no field: {answer}");
    let (status, answer) = server.ingest_ndjson("p", &[json!({"id": "x", "type": "t"}), json!({"id": "y", "type": "t"}), json!({"type": "t"})]);
    assert_eq!(status, 202, "{answer}");
    assert_eq!((&answer["accepted"], &answer["duplicates"]), (&json!(2), &json!(1)), "{answer}");
    assert_eq!((&answer["ids"][0], &answer["ids"][1]), (&json!("x"), &json!("y")), "a duplicate's entry is its id: {answer}");
    let fresh = answer["ids"][2].as_str().expect("an id assigned").to_string();
    assert_eq!(output_counts(&server, "p"), once_each(&["x", "y", &fresh]));
    assert_eq!(server.metrics("p")["accepted"], json!(3));
}
on_both_stores!(dedup_window_drops_a_resent_id);

/// The first row: Redis stalls (`DEBUG SLEEP 3`) while a POST's
/// enqueue waits in it; the server gives up after ~2 s with 503 (outcome
/// unknown), Redis then runs the enqueue anyway; the producer's retry with
/// the same key gets the first answer, and the events land exactly once.
#[test]
fn a_post_during_a_redis_stall_retried_with_the_same_key_lands_once() {
    let redis = PrivateRedis::start_with_args(&["--enable-debug-command", "local"]);
    let server = Server::start(StoreKind::Redis { url: redis.url(), prefix: "stall".into() });
    pass_through(&server, "p", json!({}));
    // Running here before Redis stalls, so the POST's only store step is the enqueue.
    assert_eq!(server.ingest_ndjson("p", &[json!({"id": "warm", "type": "t"})]).0, 202);
    assert_eq!(output_counts(&server, "p"), once_each(&["warm"]));
    let ids = ["s0", "s1", "s2", "s3", "s4"];
    let body = ndjson(&ids.iter().map(|id| json!({"id": id, "type": "t"})).collect::<Vec<_>>());

    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| redis.debug_sleep(3));
        std::thread::sleep(Duration::from_millis(300));
        let (status, answer) = post_with_key(&server, "p", "stall-1", &body);
        assert_eq!(status, 503, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("outcome is unknown") && message.contains("same Idempotency-Key"), "{answer}");
        sleeper.join().unwrap();
    });
    let answer = wait_for("the retry answered 202", Duration::from_secs(30), || {
        let (status, answer) = post_with_key(&server, "p", "stall-1", &body);
        (status == 202).then_some(answer)
    });
    assert_eq!((&answer["accepted"], &answer["ids"]), (&json!(5), &json!(ids)), "{answer}");
    assert_eq!(output_counts(&server, "p"), once_each(&["warm", "s0", "s1", "s2", "s3", "s4"]), "exactly once");
    assert_eq!(server.metrics("p")["accepted"], json!(6));
}
