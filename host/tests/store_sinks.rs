//! The sinks capability on both backends: a sink's record starts at the
//! output's end, lag is what was emitted after it, a commit needs the lease
//! (and writes nothing without it), output retention never deletes what a
//! sink has not passed, and a DLQ replay of a sink's failure goes to that
//! sink's redelivery list, not the queue.

#[macro_use]
mod common;

use sluice::domain::{
    now_ms, Delivery, DlqEntry, DlqSelector, EntryResult, ErrorKind, Event, FailedAt, QueuedEvent, SinkCommit, SinkPosition, SinkSource,
};
use sluice::store::Store;

conformance!(a_new_sink_starts_at_the_end_and_lags_by_what_follows, commits_need_the_lease, retention_waits_for_sinks, sink_failures_replay_to_that_sink_only,);

const P: &str = "p1";

fn ev(id: &str) -> Event {
    Event { id: id.into(), kind: "view".into(), source: "web".into(), timestamp: 1_700_000_000_000, data: "{}".into() }
}

/// Ingests one event per output id and completes it with those outputs.
async fn emit<S: Store>(s: &S, ids: &[&str]) {
    let queued: Vec<QueuedEvent> = ids.iter().map(|id| QueuedEvent::new(ev(id))).collect();
    s.enqueue(P, &queued, 0, common::depth(1_000_000)).await.unwrap();
    let got = s.read(P, "w", 10, 500).await.unwrap();
    let results: Vec<EntryResult> = got
        .iter()
        .map(|d: &Delivery| EntryResult {
            delivery_id: d.id.clone(),
            outputs: d.events.iter().map(|q| q.event.clone()).collect(),
            finished: d.events.len() as u64,
            entry_bytes: d.bytes,
            ..Default::default()
        })
        .collect();
    s.complete(P, &results).await.unwrap();
}

async fn a_new_sink_starts_at_the_end_and_lags_by_what_follows<S: Store>(s: &S) {
    emit(s, &["before"]).await;
    let record = s.sink_open(P, "hook", &SinkSource::Output).await.unwrap();
    assert_eq!(record.position.seq, 1, "starts after what was emitted before it");
    assert!(!record.epoch.is_empty());
    assert_eq!(s.output_lag(P, &record.position).await.unwrap().events, 0);
    emit(s, &["a", "b"]).await;
    let lag = s.output_lag(P, &record.position).await.unwrap();
    assert_eq!(lag.events, 2);
    let oldest = lag.oldest_at.expect("the oldest waiting output's time");
    assert!((now_ms() - oldest).abs() < 60_000, "{oldest}");
    let page = s.read_output(P, &record.position.cursor, 10).await.unwrap();
    assert_eq!(page.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a", "b"], "reads on from its cursor");
    // Opening again answers the stored record.
    assert_eq!(s.sink_open(P, "hook", &SinkSource::Output).await.unwrap(), record);
    let window = s.sink_open(P, "rollup", &SinkSource::Window("w".into())).await.unwrap();
    assert_eq!((window.from.as_str(), window.position.cursor.as_str()), ("window:w", ""));
    assert_eq!(s.sink_records(P).await.unwrap().len(), 2);
    s.sink_forget(P, "rollup", now_ms()).await.unwrap();
    assert_eq!(s.sink_records(P).await.unwrap().len(), 1);
}

async fn commits_need_the_lease<S: Store>(s: &S) {
    let mut record = s.sink_open(P, "hook", &SinkSource::Output).await.unwrap();
    let now = now_ms();
    assert!(s.sink_lease(P, "hook", "one", now, 10_000).await.unwrap());
    assert!(!s.sink_lease(P, "hook", "two", now + 1, 10_000).await.unwrap(), "held by one");
    record.delivered = 5;
    let commit = SinkCommit { record: record.clone(), ..Default::default() };
    assert!(!s.sink_commit(P, "hook", "two", &commit).await.unwrap(), "two holds nothing");
    assert_eq!(s.sink_records(P).await.unwrap()[0].1.delivered, 0, "nothing written");
    assert!(s.sink_commit(P, "hook", "one", &commit).await.unwrap());
    assert_eq!(s.sink_records(P).await.unwrap()[0].1.delivered, 5);
    // Run out: two takes it, one is fenced.
    assert!(s.sink_lease(P, "hook", "two", now + 20_000, 10_000).await.unwrap());
    record.delivered = 9;
    assert!(!s.sink_commit(P, "hook", "one", &SinkCommit { record, ..Default::default() }).await.unwrap());
    assert_eq!(s.sink_records(P).await.unwrap()[0].1.delivered, 5);
}

async fn retention_waits_for_sinks<S: Store>(s: &S) {
    let record = s.sink_open(P, "hook", &SinkSource::Output).await.unwrap();
    emit(s, &["a"]).await;
    emit(s, &["b"]).await;
    let later = now_ms() + 3_600_000;
    s.trim_output(P, later).await.unwrap();
    let page = s.read_output(P, &record.position.cursor, 10).await.unwrap();
    assert_eq!(page.items.len(), 2, "nothing the sink has not passed is trimmed");
    // The sink passes `a`: `a` may go, `b` stays.
    let first = s.read_output(P, &record.position.cursor, 1).await.unwrap();
    assert!(s.sink_lease(P, "hook", "one", now_ms(), 10_000).await.unwrap());
    let mut moved = record.clone();
    moved.position = SinkPosition { cursor: first.next_cursor.clone(), seq: 1 };
    assert!(s.sink_commit(P, "hook", "one", &SinkCommit { record: moved, ..Default::default() }).await.unwrap());
    s.trim_output(P, later).await.unwrap();
    let left = s.read_output(P, &record.position.cursor, 10).await.unwrap();
    assert_eq!(left.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["b"]);
    // Without sinks everything before the bound goes.
    s.sink_forget(P, "hook", now_ms()).await.unwrap();
    s.trim_output(P, later).await.unwrap();
    assert!(s.read_output(P, "", 10).await.unwrap().items.is_empty());
}

async fn sink_failures_replay_to_that_sink_only<S: Store>(s: &S) {
    let record = s.sink_open(P, "hook", &SinkSource::Output).await.unwrap();
    assert!(s.sink_lease(P, "hook", "one", now_ms(), 10_000).await.unwrap());
    let dead = |id: &str| DlqEntry {
        dlq_id: String::new(),
        event: ev(id),
        error: "the endpoint answered 400".into(),
        error_kind: ErrorKind::Sink,
        failed_at: FailedAt::Sink { sink: "hook".into() },
        attempts: 1,
        first_failed_at: 1,
        last_failed_at: 2,
    };
    let mut failed = record.clone();
    failed.failed = 2;
    let commit = SinkCommit { record: failed, dead: vec![dead("x"), dead("y")], replayed: Vec::new() };
    assert!(s.sink_commit(P, "hook", "one", &commit).await.unwrap());
    let listed = s.dlq_list(P, "", 10).await.unwrap().items;
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].error_kind, listed[0].failed_at.clone()), (ErrorKind::Sink, FailedAt::Sink { sink: "hook".into() }));
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 2);

    let report = s.dlq_replay(P, &DlqSelector::All).await.unwrap();
    assert_eq!(report.replayed, 2);
    assert!(s.dlq_list(P, "", 10).await.unwrap().items.is_empty());
    let c = s.counters(P).await.unwrap();
    assert_eq!((c.queue_depth, c.dlq_size), (0, 0), "not on the queue");
    let replays = s.sink_replays(P, "hook", 10).await.unwrap();
    assert_eq!(replays.iter().map(|r| r.event.id.as_str()).collect::<Vec<_>>(), ["x", "y"]);
    assert!(s.sink_replays(P, "other", 10).await.unwrap().is_empty());
    // Delivered: the commit removes them.
    let commit = SinkCommit { record, dead: Vec::new(), replayed: vec![replays[0].id.clone()] };
    assert!(s.sink_commit(P, "hook", "one", &commit).await.unwrap());
    let left = s.sink_replays(P, "hook", 10).await.unwrap();
    assert_eq!(left.iter().map(|r| r.event.id.as_str()).collect::<Vec<_>>(), ["y"]);
}
