//! One conformance suite, run against both store backends: every test body
//! below is a generic async fn over `Store`, and `conformance!` makes a
//! `redis_backend::<name>` and an `embedded_backend::<name>` test of it.
//! Each test gets its own key prefix (Redis) or temp directory (embedded).

#[macro_use]
mod common;

use common::{counts, depth};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice::domain::Event;
use sluice::domain::{ErrorKind, FailedAt};
use sluice::store::embedded::EmbeddedStore;
use sluice::store::prelude::*;
use sluice::store::redis::RedisStore;
use sluice::store::{Store, StoreError};
use sluice::domain::{
    CompleteReport, Counters, Delivery, DlqEntry, DlqSelector, Enqueued, EntryResult, PluginVersion, QueueLimits, QueuedEvent, ReplayReport, Retry,
};

// ---- fixtures ---------------------------------------------------------------

conformance!(
    plugins_version_dedup_list_delete,
    pipelines_put_list_delete_removes_data,
    tables_put_get_versions,
    enqueue_read_complete_output_paging,
    queued_event_fields_round_trip,
    backpressure_refuses_whole_request,
    complete_is_idempotent,
    reclaim_takes_over_idle_entries,
    read_blocks_until_an_entry_arrives,
    retries_promote_only_when_due,
    dlq_list_and_paging,
    dlq_replay_by_ids_oldest_all,
    dlq_delete_by_ids_oldest_all,
    counters_exact_after_scenario,
    pipelines_are_isolated,
    trim_output_deletes_only_what_is_older,
    output_pages_span_many_entries,
    queued_bytes_follow_entries_retries_and_replays,
    enqueue_over_max_bytes_appends_nothing,
    touch_keeps_an_entry_from_being_reclaimed,
);

// ---- helpers ----------------------------------------------------------------

const P: &str = "p1";

fn ev(id: &str) -> Event {
    Event {
        id: id.to_string(),
        kind: "view".to_string(),
        source: "web".to_string(),
        timestamp: 1_700_000_000_000,
        data: format!(r#"{{"id":"{id}","big":12345678901234567890,"f":0.1,"s":"é \"q\" / \\ \n","nested":{{"a":[1,2,{{"b":null}}]}}}}"#),
    }
}

fn qe(id: &str) -> QueuedEvent {
    QueuedEvent::new(ev(id))
}

fn qes(ids: &[&str]) -> Vec<QueuedEvent> {
    ids.iter().map(|id| qe(id)).collect()
}

fn dead(id: &str, stage: &str) -> DlqEntry {
    DlqEntry {
        dlq_id: String::new(),
        event: ev(id),
        error: format!("stage {stage} failed on {id}"),
        error_kind: ErrorKind::Rejected,
        failed_at: FailedAt::Stage { stage: stage.to_string(), plugin: "bot-filter".to_string(), plugin_version: 7 },
        attempts: 3,
        first_failed_at: 100,
        last_failed_at: 200,
    }
}

fn done(d: &Delivery, outputs: Vec<Event>) -> EntryResult {
    EntryResult { delivery_id: d.id.clone(), entry_bytes: d.bytes, outputs, finished: d.events.len() as u64, ..Default::default() }
}

fn ids(events: &[QueuedEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.id.clone()).collect()
}

fn all_ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().flat_map(|d| ids(&d.events)).collect()
}

async fn read_now<S: Store>(s: &S, pipeline: &str, consumer: &str) -> Vec<Delivery> {
    s.read(pipeline, consumer, 100, 0).await.unwrap()
}

async fn enqueue_ok<S: Store>(s: &S, pipeline: &str, events: &[QueuedEvent]) -> u64 {
    match enqueue_depth(s, pipeline, events, 0, 1_000_000).await {
        Enqueued::Accepted { depth } => depth,
        full => panic!("expected Accepted, got {full:?}"),
    }
}

/// Every output, following cursors `limit` at a time.
async fn all_outputs<S: Store>(s: &S, pipeline: &str, limit: usize) -> Vec<String> {
    let mut cursor = String::new();
    let mut out = Vec::new();
    loop {
        let page = s.read_output(pipeline, &cursor, limit).await.unwrap();
        if page.items.is_empty() {
            assert_eq!(page.next_cursor, if cursor.is_empty() { page.next_cursor.clone() } else { cursor.clone() });
            return out;
        }
        assert!(page.items.len() <= limit);
        out.extend(page.items.into_iter().map(|e| e.id));
        cursor = page.next_cursor;
    }
}

async fn all_dlq<S: Store>(s: &S, pipeline: &str) -> Vec<DlqEntry> {
    s.dlq_list(pipeline, "", 1000).await.unwrap().items
}

fn counters(accepted: u64, rejected: u64, processed: u64, emitted: u64, dlq_size: u64, queue_depth: u64) -> Counters {
    Counters { accepted, rejected, processed, emitted, dlq_size, queue_depth, queue_bytes: 0 }
}


/// The answer of a refused enqueue as [`enqueue_depth`] gives it.
fn full(depth: u64) -> Enqueued {
    Enqueued::Full { depth, bytes: 0 }
}


/// An enqueue bounded by depth only; a refusal's `bytes` must be the stored
/// count (then zeroed, see [`full`]).
async fn enqueue_depth<S: Store>(s: &S, pipeline: &str, events: &[QueuedEvent], rejected: u64, max_depth: u64) -> Enqueued {
    match s.enqueue(pipeline, events, rejected, depth(max_depth)).await.unwrap() {
        Enqueued::Full { depth, bytes } => {
            assert_eq!(bytes, s.counters(pipeline).await.unwrap().queue_bytes);
            full(depth)
        }
        accepted => accepted,
    }
}

// ---- catalog ----------------------------------------------------------------

async fn plugins_version_dedup_list_delete<S: Store>(s: &S) {
    assert_eq!(s.list_plugins().await.unwrap(), vec![]);
    let bin_one: &[u8] = &[0, 97, 115, 109, 0xff, 0xfe, 1, 0];
    let bin_two: &[u8] = b"\0asm two";

    let a1 = s.put_plugin("alpha", "sha-one", bin_one, 100).await.unwrap();
    assert!(a1.created);
    assert_eq!(a1.version, PluginVersion { name: "alpha".into(), version: 1, sha256: "sha-one".into(), size: 8, uploaded_at: 100 });

    // Identical bytes again: the existing version, nothing new.
    let again = s.put_plugin("alpha", "sha-one", bin_one, 999).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.version, a1.version);

    let a2 = s.put_plugin("alpha", "sha-two", bin_two, 200).await.unwrap();
    assert!(a2.created);
    assert_eq!(a2.version.version, 2);
    assert_eq!(a2.version.size, 8);

    // Versions count per name; the same bytes under another name are new.
    let b1 = s.put_plugin("beta", "sha-one", bin_one, 300).await.unwrap();
    assert!(b1.created);
    assert_eq!(b1.version.version, 1);

    let list = s.list_plugins().await.unwrap();
    let names: Vec<(String, u32)> = list.iter().map(|v| (v.name.clone(), v.version)).collect();
    assert_eq!(names, vec![("alpha".into(), 1), ("alpha".into(), 2), ("beta".into(), 1)]);
    assert_eq!(list[1], a2.version);

    assert_eq!(s.plugin_bytes("alpha", 1).await.unwrap().as_deref(), Some(bin_one));
    assert_eq!(s.plugin_bytes("alpha", 2).await.unwrap().as_deref(), Some(bin_two));
    assert_eq!(s.plugin_bytes("alpha", 3).await.unwrap(), None);
    assert_eq!(s.plugin_bytes("gamma", 1).await.unwrap(), None);

    assert!(s.delete_plugin_version("alpha", 1).await.unwrap());
    assert!(!s.delete_plugin_version("alpha", 1).await.unwrap());
    assert!(!s.delete_plugin_version("gamma", 1).await.unwrap());
    assert_eq!(s.plugin_bytes("alpha", 1).await.unwrap(), None);
    let names: Vec<(String, u32)> = s.list_plugins().await.unwrap().iter().map(|v| (v.name.clone(), v.version)).collect();
    assert_eq!(names, vec![("alpha".into(), 2), ("beta".into(), 1)]);

    // Version numbers are never reused: the deleted bytes come back as a new version.
    let a3 = s.put_plugin("alpha", "sha-one", bin_one, 400).await.unwrap();
    assert!(a3.created);
    assert_eq!(a3.version.version, 3);
    assert_eq!(a3.version.uploaded_at, 400);
    assert!(s.delete_plugin_version("alpha", 3).await.unwrap());
    let a4 = s.put_plugin("alpha", "sha-four", b"four", 500).await.unwrap();
    assert_eq!((a4.created, a4.version.version, a4.version.size), (true, 4, 4));
    // Deleting one version keeps the dedup of the others.
    let again2 = s.put_plugin("alpha", "sha-two", bin_two, 600).await.unwrap();
    assert_eq!((again2.created, again2.version.version, again2.version.uploaded_at), (false, 2, 200));
}

async fn pipelines_put_list_delete_removes_data<S: Store>(s: &S) {
    let v0 = s.pipelines_version().await.unwrap();
    assert_eq!(s.list_pipelines().await.unwrap(), vec![]);
    assert_eq!(s.get_pipeline("p1").await.unwrap(), None);

    assert!(s.put_pipeline("p1", r#"{"stages":[]}"#).await.unwrap());
    let v1 = s.pipelines_version().await.unwrap();
    assert_ne!(v1, v0);
    assert!(!s.put_pipeline("p1", r#"{"stages":[1]}"#).await.unwrap());
    let v2 = s.pipelines_version().await.unwrap();
    assert_ne!(v2, v1);
    assert!(s.put_pipeline("a0", r#"{"a":0}"#).await.unwrap());
    assert_eq!(s.get_pipeline("p1").await.unwrap().as_deref(), Some(r#"{"stages":[1]}"#));
    assert_eq!(
        s.list_pipelines().await.unwrap(),
        vec![("a0".to_string(), r#"{"a":0}"#.to_string()), ("p1".to_string(), r#"{"stages":[1]}"#.to_string())]
    );

    // Data of every kind for p1: queue entries (one pending), outputs, DLQ, retries.
    enqueue_ok(s, "p1", &qes(&["a", "b"])).await;
    enqueue_ok(s, "p1", &qes(&["c"])).await;
    let got = s.read("p1", "w", 1, 0).await.unwrap();
    assert_eq!(got.len(), 1);
    let mut r = done(&got[0], vec![ev("out")]);
    r.dead = vec![dead("a", "s")];
    r.retries = vec![Retry { event: qe("b"), due_at_ms: 50 }];
    r.finished = 1;
    assert_eq!(s.complete("p1", &[r]).await.unwrap(), CompleteReport { applied: 1, skipped: 0, stale: false });
    enqueue_ok(s, "p1", &qes(&["d"])).await;
    assert_eq!(counts(s, "p1").await, counters(4, 0, 1, 1, 1, 3));

    let v3 = s.pipelines_version().await.unwrap();
    assert!(s.delete_pipeline("p1").await.unwrap());
    assert_ne!(s.pipelines_version().await.unwrap(), v3);
    assert!(!s.delete_pipeline("p1").await.unwrap());
    assert_eq!(s.get_pipeline("p1").await.unwrap(), None);
    assert_eq!(s.list_pipelines().await.unwrap(), vec![("a0".to_string(), r#"{"a":0}"#.to_string())]);

    // Made again: nothing of the old data is left.
    assert!(s.put_pipeline("p1", r#"{"stages":[]}"#).await.unwrap());
    assert_eq!(counts(s, "p1").await, Counters::default());
    assert_eq!(s.read_output("p1", "", 100).await.unwrap().items, vec![]);
    assert_eq!(all_dlq(s, "p1").await, vec![]);
    assert_eq!(read_now(s, "p1", "w").await, vec![]);
    assert_eq!(s.reclaim("p1", "w2", 0, 100).await.unwrap(), vec![]);
    assert_eq!(s.promote_retries("p1", i64::MAX, 100).await.unwrap(), 0);
    // And it works as new.
    assert_eq!(enqueue_ok(s, "p1", &qes(&["e"])).await, 1);
    assert_eq!(all_ids(&read_now(s, "p1", "w").await), vec!["e"]);
}

async fn tables_put_get_versions<S: Store>(s: &S) {
    let v0 = s.tables_version().await.unwrap();
    assert_eq!(s.get_table("geo").await.unwrap(), None);
    assert_eq!(s.list_tables().await.unwrap(), vec![]);

    let t1: BTreeMap<String, String> = [("1.2.3.4", "DE"), ("5.6.7.8", "FR \"é\"")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    s.put_table("geo", &t1).await.unwrap();
    let v1 = s.tables_version().await.unwrap();
    assert_ne!(v1, v0);
    assert_eq!(s.get_table("geo").await.unwrap(), Some(t1.clone()));

    // Replaced whole.
    let t2: BTreeMap<String, String> = [("9.9.9.9".to_string(), "US".to_string())].into_iter().collect();
    s.put_table("geo", &t2).await.unwrap();
    let v2 = s.tables_version().await.unwrap();
    assert_ne!(v2, v1);
    assert_eq!(s.get_table("geo").await.unwrap(), Some(t2.clone()));

    s.put_table("agents", &BTreeMap::new()).await.unwrap();
    assert_ne!(s.tables_version().await.unwrap(), v2);
    assert_eq!(s.get_table("agents").await.unwrap(), Some(BTreeMap::new()));
    assert_eq!(s.list_tables().await.unwrap(), vec![("agents".to_string(), BTreeMap::new()), ("geo".to_string(), t2)]);
}

// ---- queue ------------------------------------------------------------------

async fn enqueue_read_complete_output_paging<S: Store>(s: &S) {
    assert_eq!(s.read_output(P, "", 10).await.unwrap().items, vec![]);
    assert_eq!(enqueue_depth(s, P, &qes(&["a", "b", "c"]), 0, 100).await, Enqueued::Accepted { depth: 3 });
    assert_eq!(enqueue_depth(s, P, &qes(&["d", "e"]), 0, 100).await, Enqueued::Accepted { depth: 5 });

    let got = s.read(P, "w1", 10, 0).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].events, qes(&["a", "b", "c"]));
    assert_eq!(got[1].events, qes(&["d", "e"]));
    assert_ne!(got[0].id, got[1].id);
    // Handed out once only.
    assert_eq!(read_now(s, P, "w1").await, vec![]);
    assert_eq!(read_now(s, P, "w2").await, vec![]);

    let outs1 = vec![ev("o1"), ev("o2"), ev("o3")];
    let outs2 = vec![ev("o4"), ev("o5"), ev("o6")];
    let report = s.complete(P, &[done(&got[0], outs1.clone()), done(&got[1], outs2)]).await.unwrap();
    assert_eq!(report, CompleteReport { applied: 2, skipped: 0, stale: false });
    assert_eq!(counts(s, P).await, counters(5, 0, 5, 6, 0, 0));

    // Paging: 2 at a time, in order, then an empty page whose cursor still works.
    let p1 = s.read_output(P, "", 2).await.unwrap();
    assert_eq!(p1.items, outs1[..2].to_vec());
    let p2 = s.read_output(P, &p1.next_cursor, 2).await.unwrap();
    assert_eq!(p2.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["o3", "o4"]);
    let p3 = s.read_output(P, &p2.next_cursor, 2).await.unwrap();
    assert_eq!(p3.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["o5", "o6"]);
    let p4 = s.read_output(P, &p3.next_cursor, 2).await.unwrap();
    assert_eq!(p4.items, vec![]);
    assert_eq!(p4.next_cursor, p3.next_cursor);
    // Re-reading a page gives the same answer.
    assert_eq!(s.read_output(P, &p1.next_cursor, 2).await.unwrap(), p2);

    // Something new shows up after the last cursor.
    enqueue_ok(s, P, &qes(&["f"])).await;
    let got = read_now(s, P, "w1").await;
    assert_eq!(all_ids(&got), vec!["f"]);
    s.complete(P, &[done(&got[0], vec![ev("o7")])]).await.unwrap();
    let p5 = s.read_output(P, &p4.next_cursor, 2).await.unwrap();
    assert_eq!(p5.items, vec![ev("o7")]);
    assert_eq!(all_outputs(s, P, 3).await, vec!["o1", "o2", "o3", "o4", "o5", "o6", "o7"]);
    assert_eq!(s.read_output(P, "", 1000).await.unwrap().items.len(), 7);
    // An empty first page has a usable cursor too.
    let empty = s.read_output("other", "", 10).await.unwrap();
    assert_eq!(empty.items, vec![]);
    assert_eq!(s.read_output("other", &empty.next_cursor, 10).await.unwrap().items, vec![]);
    assert_eq!(counts(s, P).await, counters(6, 0, 6, 7, 0, 0));
}

async fn trim_output_deletes_only_what_is_older<S: Store>(s: &S) {
    enqueue_ok(s, P, &qes(&["a", "b"])).await;
    enqueue_ok(s, "other", &qes(&["x"])).await;
    let got = read_now(s, P, "w").await;
    s.complete(P, &[done(&got[0], vec![ev("o1"), ev("o2")])]).await.unwrap();
    let other = read_now(s, "other", "w").await;
    s.complete("other", &[done(&other[0], vec![ev("ox")])]).await.unwrap();
    let first = s.read_output(P, "", 1).await.unwrap();
    let now = sluice::domain::now_ms();

    // Nothing was appended an hour ago.
    assert_eq!(s.trim_output(P, now - 3_600_000).await.unwrap(), 0);
    assert_eq!(all_outputs(s, P, 10).await, vec!["o1", "o2"]);

    // Everything was appended before an hour from now; the other pipeline keeps its own.
    assert!(s.trim_output(P, now + 3_600_000).await.unwrap() >= 1);
    assert_eq!(all_outputs(s, P, 10).await, Vec::<String>::new());
    assert_eq!(all_outputs(s, "other", 10).await, vec!["ox"]);
    // The counters are history, not what is stored.
    assert_eq!(counts(s, P).await.emitted, 2);

    // Outputs appended after the trim read on, also from a cursor of before it.
    enqueue_ok(s, P, &qes(&["c"])).await;
    let got = read_now(s, P, "w").await;
    s.complete(P, &[done(&got[0], vec![ev("o3")])]).await.unwrap();
    assert_eq!(s.read_output(P, &first.next_cursor, 10).await.unwrap().items, vec![ev("o3")]);
    assert_eq!(all_outputs(s, P, 10).await, vec!["o3"]);
}

/// Pages that take many small entries (one request's outputs each) and
/// pages that end inside a bigger one.
async fn output_pages_span_many_entries<S: Store>(s: &S) {
    let mut expected = Vec::new();
    for i in 0..12 {
        enqueue_ok(s, P, &qes(&[&format!("in{i}")])).await;
        let got = read_now(s, P, "w").await;
        let outputs: Vec<Event> = (0..1 + i % 3).map(|k| ev(&format!("o{i}-{k}"))).collect();
        expected.extend(outputs.iter().map(|e| e.id.clone()));
        s.complete(P, &[done(&got[0], outputs)]).await.unwrap();
    }
    assert_eq!(expected.len(), 24);
    for limit in [1, 2, 5, 7, 23, 1000] {
        assert_eq!(all_outputs(s, P, limit).await, expected, "limit {limit}");
    }
    let page = s.read_output(P, "", 17).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), expected[..17].to_vec());
    let rest = s.read_output(P, &page.next_cursor, 1000).await.unwrap();
    assert_eq!(rest.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), expected[17..].to_vec());
}

async fn queued_event_fields_round_trip<S: Store>(s: &S) {
    let special = QueuedEvent { event: ev("x"), start_stage: Some("enrich".into()), attempt: 3, first_failed_at: Some(42) };
    enqueue_ok(s, P, &[special.clone(), qe("y")]).await;
    let got = read_now(s, P, "w").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].events, vec![special, qe("y")]);
    assert_eq!(got[0].events[0].event.data, ev("x").data);
}

async fn backpressure_refuses_whole_request<S: Store>(s: &S) {
    assert_eq!(enqueue_depth(s, P, &qes(&["a", "b", "c"]), 0, 5).await, Enqueued::Accepted { depth: 3 });
    // Would cross the bound: refused whole, nothing changes (not even rejected).
    assert_eq!(enqueue_depth(s, P, &qes(&["d", "e", "f"]), 4, 5).await, full(3));
    assert_eq!(counts(s, P).await, counters(3, 0, 0, 0, 0, 3));
    // Up to the bound exactly is fine.
    assert_eq!(enqueue_depth(s, P, &qes(&["g", "h"]), 1, 5).await, Enqueued::Accepted { depth: 5 });
    assert_eq!(enqueue_depth(s, P, &qes(&["i"]), 0, 5).await, full(5));
    // Nothing to append, only rejected ones to count: never refused.
    assert_eq!(enqueue_depth(s, P, &[], 2, 5).await, Enqueued::Accepted { depth: 5 });
    assert_eq!(counts(s, P).await, counters(5, 3, 0, 0, 0, 5));

    // In-flight events still count.
    let got = read_now(s, P, "w").await;
    assert_eq!(all_ids(&got), vec!["a", "b", "c", "g", "h"]);
    assert_eq!(enqueue_depth(s, P, &qes(&["i"]), 0, 5).await, full(5));
    // Completion lowers the depth; then it is accepted.
    s.complete(P, &[done(&got[0], vec![])]).await.unwrap();
    assert_eq!(counts(s, P).await.queue_depth, 2);
    assert_eq!(enqueue_depth(s, P, &qes(&["i", "j", "k", "l"]), 0, 5).await, full(2));
    assert_eq!(enqueue_depth(s, P, &qes(&["i", "j", "k"]), 0, 5).await, Enqueued::Accepted { depth: 5 });
    assert_eq!(all_ids(&read_now(s, P, "w").await), vec!["i", "j", "k"]);
    assert_eq!(counts(s, P).await, counters(8, 3, 3, 0, 0, 5));
}

async fn complete_is_idempotent<S: Store>(s: &S) {
    enqueue_ok(s, P, &qes(&["a", "b"])).await;
    let got = read_now(s, P, "w").await;
    let r = done(&got[0], vec![ev("o1"), ev("o2")]);
    assert_eq!(s.complete(P, &[r.clone()]).await.unwrap(), CompleteReport { applied: 1, skipped: 0, stale: false });
    assert_eq!(s.complete(P, &[r.clone()]).await.unwrap(), CompleteReport { applied: 0, skipped: 1, stale: false });
    assert_eq!(counts(s, P).await, counters(2, 0, 2, 2, 0, 0));
    assert_eq!(all_outputs(s, P, 10).await, vec!["o1", "o2"]);

    // The same entry twice in one call, plus an id that never existed.
    enqueue_ok(s, P, &qes(&["c"])).await;
    let got = read_now(s, P, "w").await;
    let r2 = done(&got[0], vec![ev("o3")]);
    let bogus = EntryResult { delivery_id: "no-such-entry".into(), outputs: vec![ev("bad")], finished: 1, ..Default::default() };
    let report = s.complete(P, &[r2.clone(), r2.clone(), bogus, r]).await.unwrap();
    assert_eq!(report, CompleteReport { applied: 1, skipped: 3, stale: false });
    assert_eq!(all_outputs(s, P, 10).await, vec!["o1", "o2", "o3"]);
    assert_eq!(counts(s, P).await, counters(3, 0, 3, 3, 0, 0));
    // Nothing left to hand out or reclaim.
    assert_eq!(read_now(s, P, "w").await, vec![]);
    assert_eq!(s.reclaim(P, "w2", 0, 10).await.unwrap(), vec![]);
}

async fn reclaim_takes_over_idle_entries<S: Store>(s: &S) {
    enqueue_ok(s, P, &qes(&["a"])).await;
    let a = s.read(P, "crashed", 10, 0).await.unwrap();
    assert_eq!(a.len(), 1);
    // Not idle long enough yet.
    assert_eq!(s.reclaim(P, "rescuer", 60_000, 10).await.unwrap(), vec![]);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let b = s.reclaim(P, "rescuer", 100, 10).await.unwrap();
    assert_eq!(b, a);
    // Not handed out again by read, nor by another reclaim (the claim is fresh).
    enqueue_ok(s, P, &qes(&["b"])).await;
    assert_eq!(all_ids(&read_now(s, P, "other").await), vec!["b"]);
    assert_eq!(s.reclaim(P, "third", 60_000, 10).await.unwrap(), vec![]);

    // The rescuer completes; the crashed worker's late completion is a no-op.
    assert_eq!(s.complete(P, &[done(&b[0], vec![ev("o-a")])]).await.unwrap(), CompleteReport { applied: 1, skipped: 0, stale: false });
    assert_eq!(s.complete(P, &[done(&a[0], vec![ev("o-a")])]).await.unwrap(), CompleteReport { applied: 0, skipped: 1, stale: false });
    assert_eq!(all_outputs(s, P, 10).await, vec!["o-a"]);
    // Only "b" is still pending; reclaim with min_idle 0 takes exactly that, up to max_entries.
    let c = s.reclaim(P, "third", 0, 10).await.unwrap();
    assert_eq!(all_ids(&c), vec!["b"]);
    enqueue_ok(s, P, &qes(&["c"])).await;
    enqueue_ok(s, P, &qes(&["d"])).await;
    assert_eq!(read_now(s, P, "x").await.len(), 2);
    assert_eq!(all_ids(&s.reclaim(P, "y", 0, 2).await.unwrap()), vec!["b", "c"]);
    assert_eq!(counts(s, P).await, counters(4, 0, 1, 1, 0, 3));
}

/// A worker still running an entry refreshes its claim (`touch`): no
/// reclaim takes it over, however long it runs, while entries it stops
/// touching are taken over as before; touching an entry that is no longer
/// the caller's (taken over, completed) leaves it alone.
async fn touch_keeps_an_entry_from_being_reclaimed<S: Store>(s: &S) {
    enqueue_ok(s, P, &qes(&["a"])).await;
    enqueue_ok(s, P, &qes(&["b"])).await;
    let got = read_now(s, P, "busy").await;
    assert_eq!(all_ids(&got), vec!["a", "b"]);
    let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
    // Twice the reclaim time (250 ms) goes by, touched every 100 ms: kept.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.touch(P, "busy", &ids).await.unwrap(), 2);
        assert_eq!(s.reclaim(P, "rescuer", 250, 10).await.unwrap(), vec![], "a touched entry is not taken over");
    }
    // Only "a" is touched from now on: "b" goes idle and is taken over.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.touch(P, "busy", &ids[..1]).await.unwrap(), 1);
    }
    let taken = s.reclaim(P, "rescuer", 250, 10).await.unwrap();
    assert_eq!(all_ids(&taken), vec!["b"]);
    // "b" is the rescuer's now: touching it is not taking it back.
    assert_eq!(s.touch(P, "busy", &ids).await.unwrap(), 1);
    assert_eq!(s.touch(P, "rescuer", &ids).await.unwrap(), 1);
    // Completed entries are not pending for anyone.
    assert_eq!(s.complete(P, &[done(&got[0], vec![]), done(&taken[0], vec![])]).await.unwrap().applied, 2);
    assert_eq!(s.touch(P, "busy", &ids).await.unwrap(), 0);
    assert_eq!(s.touch(P, "busy", &[]).await.unwrap(), 0);
    assert_eq!(s.reclaim(P, "third", 0, 10).await.unwrap(), vec![]);
}

async fn read_blocks_until_an_entry_arrives<S: Store>(s: &S) {
    // Nothing arrives: waits about block_ms, answers empty.
    let started = Instant::now();
    assert_eq!(s.read(P, "w", 10, 300).await.unwrap(), vec![]);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "returned after {waited:?}");
    assert!(waited < Duration::from_millis(2500), "returned after {waited:?}");

    // Something arrives while waiting: answers soon after.
    let started = Instant::now();
    let (got, ()) = tokio::join!(s.read(P, "w", 10, 5000), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        enqueue_ok(s, P, &qes(&["late"])).await;
    });
    let got = got.unwrap();
    assert_eq!(all_ids(&got), vec!["late"]);
    assert!(started.elapsed() < Duration::from_millis(2000), "took {:?}", started.elapsed());
    // Already waiting entries are answered at once.
    enqueue_ok(s, P, &qes(&["now"])).await;
    let started = Instant::now();
    assert_eq!(all_ids(&s.read(P, "w", 10, 5000).await.unwrap()), vec!["now"]);
    assert!(started.elapsed() < Duration::from_millis(1000));
}

async fn retries_promote_only_when_due<S: Store>(s: &S) {
    enqueue_ok(s, P, &qes(&["a", "b", "c"])).await;
    let got = read_now(s, P, "w").await;
    let rb = QueuedEvent { event: ev("b"), start_stage: Some("enrich".into()), attempt: 2, first_failed_at: Some(900) };
    let rc = QueuedEvent { event: ev("c"), start_stage: Some("enrich".into()), attempt: 2, first_failed_at: Some(950) };
    let r = EntryResult {
        delivery_id: got[0].id.clone(),
        entry_bytes: got[0].bytes,
        outputs: vec![ev("a")],
        dead: vec![],
        retries: vec![Retry { event: rc.clone(), due_at_ms: 2000 }, Retry { event: rb.clone(), due_at_ms: 1000 }],
        finished: 1,
        ..Default::default()
    };
    s.complete(P, &[r]).await.unwrap();
    // The retries stay counted in the depth all along.
    assert_eq!(counts(s, P).await, counters(3, 0, 1, 1, 0, 2));

    assert_eq!(s.promote_retries(P, 999, 100).await.unwrap(), 0);
    assert_eq!(read_now(s, P, "w").await, vec![]);
    assert_eq!(s.promote_retries(P, 1000, 100).await.unwrap(), 1);
    assert_eq!(counts(s, P).await.queue_depth, 2);
    let got = read_now(s, P, "w").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].events, vec![rb]);
    assert_eq!(s.promote_retries(P, 1999, 100).await.unwrap(), 0);
    s.complete(P, &[done(&got[0], vec![ev("b")])]).await.unwrap();
    assert_eq!(counts(s, P).await, counters(3, 0, 2, 2, 0, 1));

    assert_eq!(s.promote_retries(P, 5000, 100).await.unwrap(), 1);
    assert_eq!(s.promote_retries(P, 5000, 100).await.unwrap(), 0);
    let got = read_now(s, P, "w").await;
    assert_eq!(got[0].events, vec![rc.clone()]);

    // Identical retries are kept apart; max_events bounds one promotion; due order.
    let r = EntryResult {
        delivery_id: got[0].id.clone(),
        entry_bytes: got[0].bytes,
        retries: vec![
            Retry { event: rc.clone(), due_at_ms: 30 },
            Retry { event: rc.clone(), due_at_ms: 10 },
            Retry { event: rc.clone(), due_at_ms: 10 },
            Retry { event: qe("z"), due_at_ms: 20 },
        ],
        finished: 0,
        ..Default::default()
    };
    // The entry had one event, retried as four (finished 0): the depth stays as the caller says.
    s.complete(P, &[r]).await.unwrap();
    assert_eq!(counts(s, P).await.queue_depth, 1);
    assert_eq!(s.promote_retries(P, 100, 3).await.unwrap(), 3);
    let got = read_now(s, P, "w").await;
    assert_eq!(got.len(), 1);
    assert_eq!(ids(&got[0].events), vec!["c", "c", "z"]);
    assert_eq!(s.promote_retries(P, 100, 3).await.unwrap(), 1);
    assert_eq!(s.promote_retries(P, 100, 3).await.unwrap(), 0);
    assert_eq!(all_ids(&read_now(s, P, "w").await), vec!["c"]);
    assert_eq!(s.promote_retries(P, 100, 0).await.unwrap(), 0);
}

// ---- dead letter queue ------------------------------------------------------

/// Puts events `ids` in the DLQ (failed at `stage`) through a normal delivery.
async fn fill_dlq<S: Store>(s: &S, ids: &[&str], stage: &str) {
    enqueue_ok(s, P, &qes(ids)).await;
    let got = read_now(s, P, "w").await;
    assert_eq!(got.len(), 1);
    let r = EntryResult {
        delivery_id: got[0].id.clone(),
        entry_bytes: got[0].bytes,
        dead: ids.iter().map(|id| dead(id, stage)).collect(),
        finished: ids.len() as u64,
        ..Default::default()
    };
    assert_eq!(s.complete(P, &[r]).await.unwrap(), CompleteReport { applied: 1, skipped: 0, stale: false });
}

async fn dlq_list_and_paging<S: Store>(s: &S) {
    let empty = s.dlq_list(P, "", 10).await.unwrap();
    assert_eq!(empty.items, vec![]);
    assert_eq!(s.dlq_list(P, &empty.next_cursor, 10).await.unwrap().items, vec![]);

    fill_dlq(s, &["a", "b", "c", "d", "e"], "enrich").await;
    assert_eq!(counts(s, P).await, counters(5, 0, 5, 0, 5, 0));

    let p1 = s.dlq_list(P, "", 2).await.unwrap();
    let p2 = s.dlq_list(P, &p1.next_cursor, 2).await.unwrap();
    let p3 = s.dlq_list(P, &p2.next_cursor, 2).await.unwrap();
    let p4 = s.dlq_list(P, &p3.next_cursor, 2).await.unwrap();
    assert_eq!((p1.items.len(), p2.items.len(), p3.items.len(), p4.items.len()), (2, 2, 1, 0));
    assert_eq!(p4.next_cursor, p3.next_cursor);
    let all: Vec<DlqEntry> = [p1.items, p2.items, p3.items].concat();
    assert_eq!(all, all_dlq(s, P).await);
    for (entry, id) in all.iter().zip(["a", "b", "c", "d", "e"]) {
        assert!(!entry.dlq_id.is_empty());
        let mut expected = dead(id, "enrich");
        expected.dlq_id = entry.dlq_id.clone();
        assert_eq!(entry, &expected);
    }
    let mut dlq_ids: Vec<&str> = all.iter().map(|e| e.dlq_id.as_str()).collect();
    dlq_ids.dedup();
    assert_eq!(dlq_ids.len(), 5);

    // New failures appear after the last cursor.
    fill_dlq(s, &["f"], "other").await;
    let p5 = s.dlq_list(P, &p4.next_cursor, 2).await.unwrap();
    assert_eq!(p5.items.len(), 1);
    assert_eq!((p5.items[0].event.id.as_str(), p5.items[0].failed_at.stage_field().as_str()), ("f", "other"));
    assert_eq!(p5.next_cursor, p5.items[0].dlq_id);
}

async fn dlq_replay_by_ids_oldest_all<S: Store>(s: &S) {
    fill_dlq(s, &["a", "b", "c", "d", "e"], "enrich").await;
    let entries = all_dlq(s, P).await;
    let id = |i: usize| entries[i].dlq_id.clone();
    let replayed = |ids: &[&str]| -> Vec<QueuedEvent> {
        ids.iter().map(|id| QueuedEvent { event: ev(id), start_stage: Some("enrich".into()), attempt: 1, first_failed_at: None }).collect()
    };

    // By ids: unknown ones count as failed, known ones move.
    let report = s.dlq_replay(P, &DlqSelector::Ids(vec![id(0), "no-such-id".into(), id(2)])).await.unwrap();
    assert_eq!(report, ReplayReport { replayed: 2, failed: 1 });
    assert_eq!(counts(s, P).await, counters(5, 0, 5, 0, 3, 2));
    let got = read_now(s, P, "w").await;
    assert_eq!(got.iter().flat_map(|d| d.events.clone()).collect::<Vec<_>>(), replayed(&["a", "c"]));
    // Gone from the DLQ: a second replay of the same id fails.
    assert_eq!(s.dlq_replay(P, &DlqSelector::Ids(vec![id(0)])).await.unwrap(), ReplayReport { replayed: 0, failed: 1 });
    let left: Vec<String> = all_dlq(s, P).await.into_iter().map(|e| e.event.id).collect();
    assert_eq!(left, vec!["b", "d", "e"]);

    // The oldest n.
    assert_eq!(s.dlq_replay(P, &DlqSelector::Oldest(1)).await.unwrap(), ReplayReport { replayed: 1, failed: 0 });
    let got = read_now(s, P, "w").await;
    assert_eq!(got.iter().flat_map(|d| d.events.clone()).collect::<Vec<_>>(), replayed(&["b"]));
    let left: Vec<String> = all_dlq(s, P).await.into_iter().map(|e| e.event.id).collect();
    assert_eq!(left, vec!["d", "e"]);

    // All.
    assert_eq!(s.dlq_replay(P, &DlqSelector::All).await.unwrap(), ReplayReport { replayed: 2, failed: 0 });
    assert_eq!(all_dlq(s, P).await, vec![]);
    let got = read_now(s, P, "w").await;
    assert_eq!(got.iter().flat_map(|d| d.events.clone()).collect::<Vec<_>>(), replayed(&["d", "e"]));
    assert_eq!(counts(s, P).await, counters(5, 0, 5, 0, 0, 5));
    assert_eq!(s.dlq_replay(P, &DlqSelector::All).await.unwrap(), ReplayReport::default());
    assert_eq!(s.dlq_replay(P, &DlqSelector::Oldest(10)).await.unwrap(), ReplayReport::default());

    // A bigger replay (more than one queue chunk), then everything completes.
    let many: Vec<String> = (0..1203).map(|i| format!("m{i}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    fill_dlq(s, &many_refs, "enrich").await;
    assert_eq!(s.dlq_replay(P, &DlqSelector::All).await.unwrap(), ReplayReport { replayed: 1203, failed: 0 });
    let got = s.read(P, "w", 1000, 0).await.unwrap();
    assert!(got.len() >= 3, "1203 events in chunks of at most 500");
    assert_eq!(all_ids(&got), many);
    assert_eq!(counts(s, P).await, counters(1208, 0, 1208, 0, 0, 1208));
}

async fn dlq_delete_by_ids_oldest_all<S: Store>(s: &S) {
    fill_dlq(s, &["a", "b", "c", "d", "e", "f"], "enrich").await;
    let entries = all_dlq(s, P).await;
    assert_eq!(s.dlq_delete(P, &DlqSelector::Ids(vec![entries[1].dlq_id.clone(), "nope".into(), entries[1].dlq_id.clone()])).await.unwrap(), 1);
    assert_eq!(s.dlq_delete(P, &DlqSelector::Ids(vec![entries[1].dlq_id.clone()])).await.unwrap(), 0);
    assert_eq!(s.dlq_delete(P, &DlqSelector::Oldest(2)).await.unwrap(), 2);
    let left: Vec<String> = all_dlq(s, P).await.into_iter().map(|e| e.event.id).collect();
    assert_eq!(left, vec!["d", "e", "f"]);
    assert_eq!(counts(s, P).await.dlq_size, 3);
    assert_eq!(s.dlq_delete(P, &DlqSelector::All).await.unwrap(), 3);
    assert_eq!(all_dlq(s, P).await, vec![]);
    assert_eq!(s.dlq_delete(P, &DlqSelector::All).await.unwrap(), 0);
    assert_eq!(s.dlq_delete(P, &DlqSelector::Oldest(5)).await.unwrap(), 0);
    // Deleting does not put anything back on the queue.
    assert_eq!(counts(s, P).await, counters(6, 0, 6, 0, 0, 0));
    assert_eq!(read_now(s, P, "w").await, vec![]);
    // The DLQ works after being emptied.
    fill_dlq(s, &["g"], "enrich").await;
    assert_eq!(all_dlq(s, P).await.into_iter().map(|e| e.event.id).collect::<Vec<_>>(), vec!["g"]);
    assert_eq!(counts(s, P).await.dlq_size, 1);
}

// ---- queued bytes ---------------------------------------------------------------

fn json_len<T: serde::Serialize>(value: &T) -> u64 {
    serde_json::to_string(value).unwrap().len() as u64
}

async fn queued_bytes<S: Store>(s: &S) -> u64 {
    s.counters(P).await.unwrap().queue_bytes
}

async fn queued_bytes_follow_entries_retries_and_replays<S: Store>(s: &S) {
    assert_eq!(queued_bytes(s).await, 0);
    let (one, two) = (qes(&["a", "b", "c"]), qes(&["d"]));
    enqueue_ok(s, P, &one).await;
    let after_one = queued_bytes(s).await;
    assert_eq!(after_one, json_len(&one), "an entry counts its stored JSON");
    enqueue_ok(s, P, &two).await;
    assert_eq!(queued_bytes(s).await, after_one + json_len(&two));
    let got = read_now(s, P, "w").await;
    assert_eq!(got.iter().map(|d| d.bytes).collect::<Vec<_>>(), vec![json_len(&one), json_len(&two)]);
    // Reading (and reclaiming) moves nothing.
    assert_eq!(queued_bytes(s).await, json_len(&one) + json_len(&two));
    assert_eq!(s.reclaim(P, "w2", 0, 10).await.unwrap().iter().map(|d| d.bytes).collect::<Vec<_>>(), vec![json_len(&one), json_len(&two)]);

    // a emitted, b dead, c retried: the entry's bytes leave, the retry's come in.
    let retry = QueuedEvent { event: ev("c"), start_stage: Some("enrich".into()), attempt: 2, first_failed_at: Some(5) };
    let r = EntryResult {
        delivery_id: got[0].id.clone(),
        entry_bytes: got[0].bytes,
        outputs: vec![ev("a")],
        dead: vec![dead("b", "enrich")],
        retries: vec![Retry { event: retry.clone(), due_at_ms: 10 }],
        finished: 2,
        ..Default::default()
    };
    s.complete(P, &[r, done(&got[1], vec![])]).await.unwrap();
    assert_eq!(queued_bytes(s).await, json_len(&retry));
    assert_eq!(s.promote_retries(P, 10, 10).await.unwrap(), 1);
    let got = read_now(s, P, "w").await;
    assert_eq!(got[0].bytes, json_len(&vec![retry.clone()]));
    assert_eq!(queued_bytes(s).await, got[0].bytes, "a promotion counts the entry it makes");
    s.complete(P, &[done(&got[0], vec![ev("c")])]).await.unwrap();
    assert_eq!(counts(s, P).await, counters(4, 0, 4, 2, 1, 0));
    assert_eq!(queued_bytes(s).await, 0);

    // A DLQ replay counts the entries it makes; completing them brings it back to 0.
    s.dlq_replay(P, &DlqSelector::All).await.unwrap();
    let got = read_now(s, P, "w").await;
    assert_eq!(all_ids(&got), vec!["b"]);
    assert_eq!(queued_bytes(s).await, got[0].bytes);
    assert!(got[0].bytes > 0);
    s.complete(P, &[done(&got[0], vec![])]).await.unwrap();
    assert_eq!(queued_bytes(s).await, 0);
    assert_eq!(counts(s, P).await, counters(4, 0, 5, 2, 0, 0));
}

async fn enqueue_over_max_bytes_appends_nothing<S: Store>(s: &S) {
    let (first, second) = (qes(&["a"]), qes(&["b", "c"]));
    let (b1, b2) = (json_len(&first), json_len(&second));
    let limits = |max_bytes| QueueLimits { max_depth: 100, max_bytes };
    assert_eq!(s.enqueue(P, &first, 0, limits(b1)).await.unwrap(), Enqueued::Accepted { depth: 1 });
    // One byte short: nothing appended, nothing counted, the answer says bytes.
    assert_eq!(s.enqueue(P, &second, 3, limits(b1 + b2 - 1)).await.unwrap(), Enqueued::Full { depth: 1, bytes: b1 });
    assert_eq!(counts(s, P).await, counters(1, 0, 0, 0, 0, 1));
    assert_eq!(queued_bytes(s).await, b1);
    assert_eq!(all_ids(&read_now(s, P, "w").await), vec!["a"]);
    // An entry bigger than the whole bound never fits, even on an empty queue.
    assert_eq!(s.enqueue("empty", &second, 0, limits(b2 - 1)).await.unwrap(), Enqueued::Full { depth: 0, bytes: 0 });
    assert_eq!(counts(s, "empty").await, Counters::default());
    // Exactly at the bound fits; the depth bound still holds on its own.
    assert_eq!(s.enqueue(P, &second, 0, limits(b1 + b2)).await.unwrap(), Enqueued::Accepted { depth: 3 });
    assert_eq!(queued_bytes(s).await, b1 + b2);
    let full = QueueLimits { max_depth: 3, max_bytes: u64::MAX };
    assert_eq!(s.enqueue(P, &first, 0, full).await.unwrap(), Enqueued::Full { depth: 3, bytes: b1 + b2 });
    assert_eq!(all_ids(&read_now(s, P, "w").await), vec!["b", "c"]);
}

// ---- counters -----------------------------------------------------------------

async fn counters_exact_after_scenario<S: Store>(s: &S) {
    assert_eq!(counts(s, P).await, Counters::default());
    assert_eq!(enqueue_depth(s, P, &qes(&["a", "b", "c", "d"]), 2, 10).await, Enqueued::Accepted { depth: 4 });
    assert_eq!(enqueue_depth(s, P, &qes(&["e", "f", "g"]), 0, 10).await, Enqueued::Accepted { depth: 7 });
    assert_eq!(enqueue_depth(s, P, &qes(&["h", "i", "j", "k"]), 5, 10).await, full(7));
    let got = read_now(s, P, "w").await;
    assert_eq!(got.len(), 2);
    // a: fan-out to two, b: filtered, c: dead, d: retried.
    let first = EntryResult {
        delivery_id: got[0].id.clone(),
        entry_bytes: got[0].bytes,
        outputs: vec![ev("a1"), ev("a2")],
        dead: vec![dead("c", "s")],
        retries: vec![Retry { event: qe("d"), due_at_ms: 10 }],
        finished: 3,
        ..Default::default()
    };
    // e, f, g all filtered out.
    let second = done(&got[1], vec![]);
    assert_eq!(s.complete(P, &[first, second]).await.unwrap(), CompleteReport { applied: 2, skipped: 0, stale: false });
    assert_eq!(counts(s, P).await, counters(7, 2, 6, 2, 1, 1));
    assert_eq!(s.promote_retries(P, 10, 10).await.unwrap(), 1);
    assert_eq!(counts(s, P).await, counters(7, 2, 6, 2, 1, 1));
    let got = read_now(s, P, "w").await;
    s.complete(P, &[done(&got[0], vec![ev("d")])]).await.unwrap();
    assert_eq!(counts(s, P).await, counters(7, 2, 7, 3, 1, 0));
    s.dlq_replay(P, &DlqSelector::All).await.unwrap();
    assert_eq!(counts(s, P).await, counters(7, 2, 7, 3, 0, 1));
}

async fn pipelines_are_isolated<S: Store>(s: &S) {
    enqueue_ok(s, "left", &qes(&["l1"])).await;
    enqueue_ok(s, "right", &qes(&["r1", "r2"])).await;
    assert_eq!(enqueue_depth(s, "left", &qes(&["l2", "l3"]), 0, 2).await, full(1));
    assert_eq!(all_ids(&read_now(s, "left", "w").await), vec!["l1"]);
    let right = read_now(s, "right", "w").await;
    assert_eq!(all_ids(&right), vec!["r1", "r2"]);
    s.complete("right", &[done(&right[0], vec![ev("ro")])]).await.unwrap();
    // A right delivery completed against left does nothing.
    assert_eq!(counts(s, "left").await, counters(1, 0, 0, 0, 0, 1));
    assert_eq!(counts(s, "right").await, counters(2, 0, 2, 1, 0, 0));
    assert_eq!(s.read_output("left", "", 10).await.unwrap().items, vec![]);
    assert_eq!(all_outputs(s, "right", 10).await, vec!["ro"]);
}

// ---- embedded only --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (first_id, second_id, output_cursor);
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.put_plugin("alpha", "sha", b"bytes", 1).await.unwrap();
        s.put_pipeline(P, "{}").await.unwrap();
        s.put_table("t", &[("k".to_string(), "v".to_string())].into_iter().collect()).await.unwrap();
        enqueue_ok(&s, P, &qes(&["a"])).await;
        enqueue_ok(&s, P, &qes(&["b", "c"])).await;
        let got = read_now(&s, P, "w").await;
        assert_eq!(got.len(), 2);
        first_id = got[0].id.clone();
        second_id = got[1].id.clone();
        let r = EntryResult {
            delivery_id: first_id.clone(),
            outputs: vec![ev("o1")],
            dead: vec![],
            retries: vec![Retry { event: qe("a"), due_at_ms: 50 }],
            finished: 0,
            ..Default::default()
        };
        s.complete(P, &[r]).await.unwrap();
        fill_dlq(&s, &["d"], "enrich").await;
        output_cursor = s.read_output(P, "", 10).await.unwrap().next_cursor;
        assert_eq!(counts(&s, P).await, counters(4, 0, 1, 1, 1, 3));
    }
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(s.list_plugins().await.unwrap().len(), 1);
    assert_eq!(s.plugin_bytes("alpha", 1).await.unwrap().as_deref(), Some(&b"bytes"[..]));
    assert_eq!(s.get_pipeline(P).await.unwrap().as_deref(), Some("{}"));
    assert_eq!(s.get_table("t").await.unwrap().unwrap().get("k").map(String::as_str), Some("v"));
    assert_eq!(counts(&s, P).await, counters(4, 0, 1, 1, 1, 3));
    assert_eq!(all_outputs(&s, P, 10).await, vec!["o1"]);
    assert_eq!(s.read_output(P, &output_cursor, 10).await.unwrap().items, vec![]);
    assert_eq!(all_dlq(&s, P).await.len(), 1);

    // The entry pending at the restart is delivered again, with its id; the completed one is not.
    let got = read_now(&s, P, "w").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, second_id);
    assert_ne!(got[0].id, first_id);
    assert_eq!(got[0].events, qes(&["b", "c"]));
    assert_eq!(s.complete(P, &[done(&got[0], vec![])]).await.unwrap(), CompleteReport { applied: 1, skipped: 0, stale: false });
    // The retry survived too; new ids keep counting up.
    assert_eq!(s.promote_retries(P, 50, 10).await.unwrap(), 1);
    let got = read_now(&s, P, "w").await;
    assert_eq!(all_ids(&got), vec!["a"]);
    assert!(got[0].id.parse::<u64>().unwrap() > second_id.parse::<u64>().unwrap());
    assert_eq!(counts(&s, P).await, counters(4, 0, 3, 1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_open_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let s = EmbeddedStore::open(&nested).unwrap();
    s.ping().await.unwrap();
    assert!(nested.join("sluice.redb").exists());
}

// ---- Redis only -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_layout_output_stream() {
    let (s, url, prefix) = common::redis_store("layout").await;
    assert_eq!(s.output_stream_key("p1"), format!("{prefix}:{{p1}}:output"));
    enqueue_ok(&s, "p1", &qes(&["a"])).await;
    let got = read_now(&s, "p1", "w").await;
    s.complete("p1", &[done(&got[0], vec![ev("o1"), ev("o2")])]).await.unwrap();

    // Downstream consumers read the output stream directly: one entry per
    // completed queue entry, `n` the count and `e` a JSON array of events.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(s.output_stream_key("p1")).arg("-").arg("+").query_async(&mut c).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1[0], ("n".to_string(), "2".to_string()));
    assert_eq!(entries[0].1[1].0, "e");
    assert_eq!(serde_json::from_str::<Vec<Event>>(&entries[0].1[1].1).unwrap(), vec![ev("o1"), ev("o2")]);
    // Cursors inside an entry: after its first event, then after all of it.
    let first = s.read_output("p1", "", 1).await.unwrap();
    assert_eq!(first.next_cursor, format!("{}.1", entries[0].0));
    let second = s.read_output("p1", &first.next_cursor, 5).await.unwrap();
    assert_eq!((second.items, second.next_cursor), (vec![ev("o2")], entries[0].0.clone()));
    // Completed queue entries are deleted from the stream; the group exists.
    let queue = format!("{prefix}:{{p1}}:queue");
    let len: u64 = redis::cmd("XLEN").arg(&queue).query_async(&mut c).await.unwrap();
    assert_eq!(len, 0);
    let depth: String = redis::cmd("GET").arg(format!("{prefix}:{{p1}}:depth")).query_async(&mut c).await.unwrap();
    assert_eq!(depth, "0");
    drop(s);
    common::cleanup_redis(url, prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_is_unavailable_fast() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "x").await.err().expect("must fail");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_recovers_when_the_server_comes_back() {
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("skipped: redis-server is not installed");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = || {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let mut server = start();
    let s = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "sluice").await.unwrap();
    enqueue_ok(&s, P, &qes(&["a"])).await;

    server.kill().unwrap();
    server.wait().unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        let err = s.counters(P).await.err().expect("server is down");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let err = s.enqueue(P, &qes(&["b"]), 0, depth(100)).await.err().expect("server is down");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let err = s.read(P, "w", 10, 100).await.err().expect("server is down");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // Back (empty: it kept nothing): the same store object works again.
    let mut server = start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.ping().await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "did not recover: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(enqueue_ok(&s, P, &qes(&["c"])).await, 1);
    assert_eq!(all_ids(&s.read(P, "w", 10, 100).await.unwrap()), vec!["c"]);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// `--redis-wait-replicas`: an enqueue or a completion counts only once
/// the replicas asked for have it. A Redis without replicas cannot give
/// one, so the step is reported unavailable (503 on ingest) after the WAIT
/// timeout, with the write kept on the master (a completion retried later
/// finds its entry acknowledged and skips it); the test cluster's masters
/// each have a replica in sync, so there both steps succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_replicas_counts_only_replicated_steps() {
    use sluice::store::redis::RedisOptions;
    let wait = RedisOptions { wait_replicas: 1 };

    let url = sluice_testkit::redis_url().await;
    let prefix = sluice_testkit::unique_prefix("wait1");
    let alone = RedisStore::open(&url, &prefix, wait).await.unwrap();
    let started = Instant::now();
    let err = alone.enqueue(P, &qes(&["a"]), 0, depth(100)).await.err().expect("no replica can acknowledge");
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("0 of 1 replicas")), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "WAIT waited its timeout: {:?}", started.elapsed());
    // The write itself is on the master: the entry is there to read.
    let delivered = alone.read(P, "w", 10, 0).await.unwrap();
    assert_eq!(all_ids(&delivered), vec!["a"]);
    drop(alone);
    common::cleanup_redis(url, prefix).await;

    let prefix = sluice_testkit::unique_prefix("wait1c");
    let s = RedisStore::open(&common::cluster_url().await, &prefix, wait).await.unwrap();
    assert_eq!(enqueue_ok(&s, P, &qes(&["b", "c"])).await, 2);
    let delivered = s.read(P, "w", 10, 0).await.unwrap();
    assert_eq!(all_ids(&delivered), vec!["b", "c"]);
    let results: Vec<EntryResult> = delivered.iter().map(|d| done(d, d.events.iter().map(|q| q.event.clone()).collect())).collect();
    let report = s.complete(P, &results).await.unwrap();
    assert_eq!(report.applied, 1);
    assert_eq!(counts(&s, P).await.queue_depth, 0);
    common::cleanup_cluster(prefix).await;
}

/// On a cluster `WAIT` goes to the master that ran the script and counts
/// that master's replica: while the replica of the pipeline's slot sleeps
/// (`DEBUG SLEEP`), an enqueue with `--redis-wait-replicas 1` is reported
/// unavailable; once it wakes and catches up, the same store succeeds and
/// the entry written meanwhile is there too (it was on the master all
/// along). Its own cluster: the sleep must not stall other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_replicas_sees_a_sleeping_replica_on_a_cluster() {
    use sluice::store::redis::RedisOptions;
    let cluster = tokio::task::spawn_blocking(sluice_testkit::PrivateCluster::start).await.unwrap();
    let s = RedisStore::open(&cluster.store_url(), "wait", RedisOptions { wait_replicas: 1 }).await.unwrap();
    assert_eq!(enqueue_ok(&s, P, &qes(&["a"])).await, 1);
    let replica = cluster.replica_port_of_slot(cluster.slot_of(&format!("{{{P}}}")));
    let cluster = std::sync::Arc::new(cluster);
    let sleeper = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.debug_sleep(replica, 2500))
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = s.enqueue(P, &qes(&["b"]), 0, depth(100)).await.err().expect("the replica is asleep");
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("0 of 1 replicas")), "{err:?}");
    sleeper.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.enqueue(P, &qes(&["c"]), 0, depth(100)).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "the replica did not catch up: {e:?}"),
        }
    }
    let ids = all_ids(&s.read(P, "w", 10, 0).await.unwrap());
    assert_eq!(&ids[..2], ["a", "b"], "{ids:?}");
    assert!(ids[2..].iter().all(|id| id == "c"), "{ids:?}");
}
