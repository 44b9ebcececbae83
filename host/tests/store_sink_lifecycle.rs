//! A sink's life beyond delivery, on every backend: a window sink's lag
//! carries the append time of the oldest result it has not passed; a sink
//! removed from the spec gives what waits on its redelivery list back to the
//! DLQ; a DLQ replay of a gone sink's failure keeps the entry in the DLQ
//! with an error saying why, instead of sending it to a list nobody reads.

#[macro_use]
mod common;

use std::time::Duration;

use sluice::domain::{now_ms, CloseCommit, CloseOutcome, DlqEntry, DlqSelector, ErrorKind, Event, FailedAt, SinkCommit, SinkPosition, SinkSource, WindowRecord};
use sluice::store::Store;

conformance!(
    a_window_sink_lags_by_the_results_after_it_and_the_oldest_ones_age,
    forgetting_a_sink_moves_its_waiting_replays_back_to_the_dlq,
    a_replay_for_a_gone_sink_stays_in_the_dlq_saying_why,
);

const P: &str = "p1";
const W: &str = "per_min";

fn ev(id: &str) -> Event {
    Event { id: id.into(), kind: "view".into(), source: "web".into(), timestamp: 1_700_000_000_000, data: "{}".into() }
}

/// A closer pass appending `starts` as results of window `W`.
async fn emit_results<S: Store>(s: &S, starts: &[i64]) {
    let lease = s.begin_close(P, now_ms(), 10_000).await.unwrap().expect("the close gate is free");
    let emit = starts.iter().map(|start| WindowRecord { window: W.into(), start: *start, group: "g".into(), json: "{\"count\":1}".into() }).collect();
    let commit = CloseCommit { token: lease.token, watermark: 0, emit, ..Default::default() };
    assert_eq!(s.finish_close(P, &commit).await.unwrap(), CloseOutcome::Committed);
}

/// A failure of sink `sink` for event `id`, as a runner writes it.
fn sink_failure(sink: &str, id: &str) -> DlqEntry {
    DlqEntry {
        dlq_id: String::new(),
        event: ev(id),
        error: format!("sink `{sink}` (http): the endpoint answered 400"),
        error_kind: ErrorKind::Sink,
        failed_at: FailedAt::Sink { sink: sink.into() },
        attempts: 1,
        first_failed_at: 1,
        last_failed_at: 2,
    }
}

/// Opens sink `sink` on the output, takes its lease and dead-letters `ids`.
async fn fail_at_sink<S: Store>(s: &S, sink: &str, ids: &[String]) {
    let record = s.sink_open(P, sink, &SinkSource::Output).await.unwrap();
    assert!(s.sink_lease(P, sink, "runner", now_ms(), 10_000).await.unwrap());
    let dead = ids.iter().map(|id| sink_failure(sink, id)).collect();
    assert!(s.sink_commit(P, sink, "runner", &SinkCommit { record, dead, replayed: Vec::new() }).await.unwrap());
}

async fn a_window_sink_lags_by_the_results_after_it_and_the_oldest_ones_age<S: Store>(s: &S) {
    let record = s.sink_open(P, "rollup", &SinkSource::Window(W.into())).await.unwrap();
    let lag = s.window_lag(P, W, &record.position, 100).await.unwrap();
    assert_eq!((lag.events, lag.oldest_at), (0, None), "nothing emitted yet");

    let before_first = now_ms();
    emit_results(s, &[0, 60_000]).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before_second = now_ms();
    emit_results(s, &[120_000]).await;

    let lag = s.window_lag(P, W, &record.position, 100).await.unwrap();
    assert_eq!(lag.events, 3);
    let oldest = lag.oldest_at.expect("the oldest waiting result's append time");
    assert!(oldest >= before_first - 1_000 && oldest <= before_second, "{oldest} is when the first pass appended ({before_first}..{before_second})");
    assert_eq!(s.window_lag(P, W, &record.position, 2).await.unwrap().events, 2, "counted up to the bound");

    // Past the first pass's two results: the second pass's time.
    let page = s.read_window_results(P, W, &record.position.cursor, 2).await.unwrap();
    let passed = SinkPosition { cursor: page.next_cursor, seq: 2 };
    let lag = s.window_lag(P, W, &passed, 100).await.unwrap();
    assert_eq!(lag.events, 1);
    let oldest = lag.oldest_at.expect("the second pass's append time");
    assert!(oldest >= before_second - 1_000 && oldest <= now_ms(), "{oldest} is when the second pass appended (from {before_second})");

    let page = s.read_window_results(P, W, &passed.cursor, 10).await.unwrap();
    let drained = SinkPosition { cursor: page.next_cursor, seq: 3 };
    let lag = s.window_lag(P, W, &drained, 100).await.unwrap();
    assert_eq!((lag.events, lag.oldest_at), (0, None), "drained: nothing waits");
}

async fn forgetting_a_sink_moves_its_waiting_replays_back_to_the_dlq<S: Store>(s: &S) {
    // More than one script run's worth on Redis.
    let ids: Vec<String> = (0..1_200).map(|i| format!("e{i}")).collect();
    fail_at_sink(s, "hook", &ids).await;
    let report = s.dlq_replay(P, &DlqSelector::All).await.unwrap();
    assert_eq!((report.replayed, report.failed), (1_200, 0));
    assert_eq!(s.sink_replays(P, "hook", 2_000).await.unwrap().len(), 1_200, "waiting for redelivery");
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 0);

    let at = now_ms();
    s.sink_forget(P, "hook", at).await.unwrap();
    assert!(s.sink_replays(P, "hook", 10).await.unwrap().is_empty(), "the list is gone");
    assert!(s.sink_records(P).await.unwrap().is_empty(), "the record is gone");
    let mut back = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = s.dlq_list(P, &cursor, 500).await.unwrap();
        if page.items.is_empty() {
            break;
        }
        back.extend(page.items);
        cursor = page.next_cursor;
    }
    assert_eq!(back.iter().map(|e| e.event.id.clone()).collect::<Vec<_>>(), ids, "every waiting event back, in order");
    let first = &back[0];
    assert_eq!((first.error_kind, first.failed_at.clone(), first.last_failed_at), (ErrorKind::Sink, FailedAt::Sink { sink: "hook".into() }, at));
    assert!(first.error.starts_with("sink `hook` no longer exists in the pipeline's spec"), "{}", first.error);
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 1_200);
    // Forgetting again finds nothing more to move.
    s.sink_forget(P, "hook", now_ms()).await.unwrap();
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 1_200);
}

async fn a_replay_for_a_gone_sink_stays_in_the_dlq_saying_why<S: Store>(s: &S) {
    fail_at_sink(s, "gone", &["x".to_string()]).await;
    fail_at_sink(s, "live", &["y".to_string()]).await;
    s.sink_forget(P, "gone", now_ms()).await.unwrap();
    let listed = s.dlq_list(P, "", 10).await.unwrap().items;
    let (x, y) = (listed[0].clone(), listed[1].clone());
    assert_eq!((x.event.id.as_str(), y.event.id.as_str()), ("x", "y"));

    // By id: refused, kept (at the end, under a new id), saying why.
    let report = s.dlq_replay(P, &DlqSelector::Ids(vec![x.dlq_id.clone()])).await.unwrap();
    assert_eq!((report.replayed, report.failed), (0, 1));
    let listed = s.dlq_list(P, "", 10).await.unwrap().items;
    assert_eq!(listed.iter().map(|e| e.event.id.as_str()).collect::<Vec<_>>(), ["y", "x"], "x moved to the end");
    let kept = &listed[1];
    assert_ne!(kept.dlq_id, x.dlq_id);
    assert_eq!(
        kept.error,
        "sink `gone` no longer exists in the pipeline's spec: replay refused (the delivery had failed with: sink `gone` (http): the endpoint answered 400)"
    );
    assert_eq!((kept.error_kind, kept.failed_at.clone(), kept.attempts, kept.first_failed_at), (ErrorKind::Sink, x.failed_at.clone(), 1, 1));
    assert!(kept.last_failed_at > 2, "refused now");
    assert!(s.sink_replays(P, "gone", 10).await.unwrap().is_empty(), "nothing on the gone sink's list");
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 2);

    // All: the live sink's failure goes to its list; the gone one's stays,
    // read once (its new id is past the end the replay started with).
    let report = s.dlq_replay(P, &DlqSelector::All).await.unwrap();
    assert_eq!((report.replayed, report.failed), (1, 1));
    assert_eq!(s.sink_replays(P, "live", 10).await.unwrap().iter().map(|r| r.event.id.as_str()).collect::<Vec<_>>(), ["y"]);
    let listed = s.dlq_list(P, "", 10).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].error, kept.error, "the reason is not wrapped again");
    let report = s.dlq_replay(P, &DlqSelector::Oldest(10)).await.unwrap();
    assert_eq!((report.replayed, report.failed), (0, 1));
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 1);
}

/// Redis: a redelivery-list entry without its event (stored data is not
/// trusted) stops the forget before its first write, naming the entry:
/// the record, the lease and every waiting event stay where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_forget_checks_the_whole_chunk_before_moving_anything() {
    use sluice::store::{DeadLetters, Queue, SinkState};
    let (s, url, prefix) = common::redis_store("forget_unreadable").await;
    let ids: Vec<String> = (0..3).map(|i| format!("e{i}")).collect();
    fail_at_sink(&s, "hook", &ids).await;
    assert_eq!(s.dlq_replay(P, &sluice::domain::DlqSelector::All).await.unwrap().replayed, 3);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let list = format!("{prefix}:{{{P}}}:sink:hook:replay");
    let bad: String = redis::cmd("XADD").arg(&list).arg("*").arg("x").arg("no event").query_async(&mut c).await.unwrap();

    let error = s.sink_forget(P, "hook", now_ms()).await.expect_err("an entry without its event is refused").to_string();
    assert!(error.contains(&bad) && error.contains("has no event"), "{error}");
    let len: u64 = redis::cmd("XLEN").arg(&list).query_async(&mut c).await.unwrap();
    assert_eq!(len, 4, "nothing moved off the list");
    assert_eq!(s.sink_records(P).await.unwrap().len(), 1, "the record stays");
    assert_eq!(s.counters(P).await.unwrap().dlq_size, 0, "nothing added to the DLQ");
    drop(s);
    common::cleanup_redis(url, prefix).await;
}
