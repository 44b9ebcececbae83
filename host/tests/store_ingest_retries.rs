//! Producer retries in the store's enqueue step (API.md v1.1), on both
//! backends (`conformance!`): the idempotency record is checked first and
//! written with the entry in one atomic step, and ids accepted within the
//! dedup window are dropped in that same step.

#[macro_use]
mod common;

use std::time::Duration;

use common::{counts, depth};

use sluice::domain::{now_ms, Counters, EnqueueOptions, EnqueueOutcome, Enqueued, Event, IdempotencyRecord, QueuedEvent};
use sluice::store::Store;

conformance!(
    a_stored_key_replays_its_answer_and_queues_nothing,
    a_refused_step_stores_no_record,
    a_record_expires_and_records_are_per_pipeline,
    ids_accepted_within_the_window_are_dropped,
    a_replay_keeps_its_steps_duplicates,
    a_refused_step_records_no_ids,
    deleting_a_pipeline_forgets_records_and_ids,
);

const P: &str = "p1";
/// A clock far from 0 (and from the real one, which only TTLs use).
const T0: i64 = 1_000_000_000;
const WINDOW: u64 = 60_000;

fn qes(ids: &[&str]) -> Vec<QueuedEvent> {
    ids.iter()
        .map(|id| QueuedEvent::new(Event { id: id.to_string(), kind: "t".into(), source: "s".into(), timestamp: 1, data: format!(r#"{{"id":"{id}"}}"#) }))
        .collect()
}

fn record(key: &str, body: &str, answer: &str) -> IdempotencyRecord {
    IdempotencyRecord { key_sha: format!("sha-of-{key}"), body_sha: format!("sha-of-{body}"), answer: answer.into(), ttl_ms: 86_400_000 }
}

fn once(record: IdempotencyRecord, now_ms: i64) -> EnqueueOptions {
    EnqueueOptions { idempotency: Some(record), dedup_window_ms: 0, now_ms }
}

fn dedup(now_ms: i64) -> EnqueueOptions {
    EnqueueOptions { idempotency: None, dedup_window_ms: WINDOW, now_ms }
}

fn ran(depth: u64, duplicates: u64) -> EnqueueOutcome {
    EnqueueOutcome::Ran { enqueued: Enqueued::Accepted { depth }, duplicates }
}

fn counters(accepted: u64, rejected: u64, queue_depth: u64) -> Counters {
    Counters { accepted, rejected, queue_depth, ..Counters::default() }
}

async fn go<S: Store>(s: &S, pipeline: &str, ids: &[&str], rejected: u64, options: &EnqueueOptions) -> EnqueueOutcome {
    s.enqueue_with(pipeline, &qes(ids), rejected, depth(1_000), options).await.unwrap()
}

/// The ids of every entry not yet handed out, one list per entry; checks
/// that the queued bytes are the entries' stored size.
async fn entries<S: Store>(s: &S, pipeline: &str) -> Vec<Vec<String>> {
    let got = s.read(pipeline, "w", 100, 0).await.unwrap();
    assert_eq!(got.iter().map(|d| d.bytes).sum::<u64>(), s.counters(pipeline).await.unwrap().queue_bytes, "queued bytes = stored entries");
    got.iter().map(|d| d.events.iter().map(|q| q.event.id.clone()).collect()).collect()
}

async fn a_stored_key_replays_its_answer_and_queues_nothing<S: Store>(s: &S) {
    let first = record("k1", "body-1", r#"{"accepted":2}"#);
    assert_eq!(go(s, P, &["a", "b"], 1, &once(first.clone(), T0)).await, ran(2, 0));
    // The same key and body: the stored answer, nothing queued or counted.
    let replayed = EnqueueOutcome::Replayed { answer: r#"{"accepted":2}"#.into(), duplicates: 0 };
    assert_eq!(go(s, P, &["a2", "b2"], 1, &once(first.clone(), T0 + 1)).await, replayed);
    // The same key with another body: refused, nothing queued or counted.
    let other = IdempotencyRecord { body_sha: "sha-of-body-2".into(), answer: "other".into(), ..first.clone() };
    assert_eq!(go(s, P, &["c"], 0, &once(other, T0 + 2)).await, EnqueueOutcome::KeyReused);
    assert_eq!(counts(s, P).await, counters(2, 1, 2));
    assert_eq!(entries(s, P).await, vec![vec!["a", "b"]]);
    // Another key is another request.
    assert_eq!(go(s, P, &["d"], 0, &once(record("k2", "body-1", "{}"), T0 + 3)).await, ran(3, 0));
    // A request with nothing valid in it keeps its answer too.
    assert_eq!(go(s, P, &[], 2, &once(record("k3", "bad", "rejected"), T0 + 4)).await, ran(3, 0));
    let replayed = EnqueueOutcome::Replayed { answer: "rejected".into(), duplicates: 0 };
    assert_eq!(go(s, P, &[], 2, &once(record("k3", "bad", "rejected"), T0 + 5)).await, replayed);
    assert_eq!(counts(s, P).await, counters(3, 3, 3));
}

async fn a_refused_step_stores_no_record<S: Store>(s: &S) {
    let r = record("k1", "body-1", "answer");
    let full = s.enqueue_with(P, &qes(&["a", "b"]), 1, depth(1), &once(r.clone(), T0)).await.unwrap();
    assert_eq!(full, EnqueueOutcome::Ran { enqueued: Enqueued::Full { depth: 0, bytes: 0 }, duplicates: 0 });
    assert_eq!(counts(s, P).await, Counters::default());
    // Retried once there is room: processed as new, then replayed.
    assert_eq!(go(s, P, &["a", "b"], 1, &once(r.clone(), T0 + 1)).await, ran(2, 0));
    assert_eq!(go(s, P, &["a", "b"], 1, &once(r, T0 + 2)).await, EnqueueOutcome::Replayed { answer: "answer".into(), duplicates: 0 });
    assert_eq!(counts(s, P).await, counters(2, 1, 2));
}

async fn a_record_expires_and_records_are_per_pipeline<S: Store>(s: &S) {
    // Real clock: Redis expires records by its own.
    let short = IdempotencyRecord { ttl_ms: 300, ..record("k1", "body-1", "answer") };
    assert_eq!(go(s, P, &["a"], 0, &once(short.clone(), now_ms())).await, ran(1, 0));
    assert_eq!(go(s, "p2", &["a"], 0, &once(short.clone(), now_ms())).await, ran(1, 0), "a key is per pipeline");
    assert!(matches!(go(s, P, &["a"], 0, &once(short.clone(), now_ms())).await, EnqueueOutcome::Replayed { .. }));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(go(s, P, &["a"], 0, &once(short, now_ms())).await, ran(2, 0), "expired: a new request");
    assert_eq!(entries(s, P).await, vec![vec!["a"], vec!["a"]]);
}

async fn ids_accepted_within_the_window_are_dropped<S: Store>(s: &S) {
    // The second `a` repeats one of the same request.
    assert_eq!(go(s, P, &["a", "b", "a"], 0, &dedup(T0)).await, ran(2, 1));
    assert_eq!(go(s, P, &["b", "c"], 0, &dedup(T0 + 30_000)).await, ran(3, 1));
    // Nothing but duplicates: nothing queued.
    assert_eq!(go(s, P, &["a", "c"], 1, &dedup(T0 + 59_999)).await, ran(3, 2));
    // `a` and `b` were accepted a whole window ago: accepted again.
    assert_eq!(go(s, P, &["a", "b", "c"], 0, &dedup(T0 + WINDOW as i64)).await, ran(5, 1));
    // Without a window nothing is a duplicate.
    let off = EnqueueOptions { dedup_window_ms: 0, ..dedup(T0 + 60_001) };
    assert_eq!(go(s, P, &["c", "c"], 0, &off).await, ran(7, 0));
    assert_eq!(counts(s, P).await, counters(7, 1, 7));
    assert_eq!(entries(s, P).await, vec![vec!["a", "b"], vec!["c"], vec!["a", "b"], vec!["c", "c"]]);
    // Turning it off forgot the ids: on again, `c` is new.
    assert_eq!(go(s, P, &["c"], 0, &dedup(T0 + 60_002)).await, ran(8, 0));
}

async fn a_replay_keeps_its_steps_duplicates<S: Store>(s: &S) {
    assert_eq!(go(s, P, &["a"], 0, &dedup(T0)).await, ran(1, 0));
    let both = |now| EnqueueOptions { idempotency: Some(record("k1", "body", "answer")), ..dedup(now) };
    assert_eq!(go(s, P, &["a", "b"], 0, &both(T0 + 1)).await, ran(2, 1));
    assert_eq!(go(s, P, &["a", "b"], 0, &both(T0 + 2)).await, EnqueueOutcome::Replayed { answer: "answer".into(), duplicates: 1 });
    assert_eq!(counts(s, P).await, counters(2, 0, 2));
    assert_eq!(entries(s, P).await, vec![vec!["a"], vec!["b"]]);
}

async fn a_refused_step_records_no_ids<S: Store>(s: &S) {
    let full = s.enqueue_with(P, &qes(&["a", "b"]), 0, depth(1), &dedup(T0)).await.unwrap();
    assert_eq!(full, EnqueueOutcome::Ran { enqueued: Enqueued::Full { depth: 0, bytes: 0 }, duplicates: 0 });
    assert_eq!(go(s, P, &["a", "b"], 0, &dedup(T0 + 1)).await, ran(2, 0), "the refused request's ids were not recorded");
}

async fn deleting_a_pipeline_forgets_records_and_ids<S: Store>(s: &S) {
    let both = |now| EnqueueOptions { idempotency: Some(record("k1", "body", "answer")), ..dedup(now) };
    assert_eq!(go(s, P, &["a"], 0, &both(T0)).await, ran(1, 0));
    s.delete_pipeline(P).await.unwrap();
    assert_eq!(go(s, P, &["a"], 0, &both(T0 + 1)).await, ran(1, 0), "made again: the key and the id are new");
}
