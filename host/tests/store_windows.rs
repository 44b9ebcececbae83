//! The window half of the store interface, run against both backends like
//! `store_conformance.rs`: every test body is a generic async fn over
//! `Store`, and `conformance!` makes a `redis_backend::<name>` and an
//! `embedded_backend::<name>` test of it. Each test gets its own key prefix
//! (Redis) or temp directory (embedded).
//!
//! What is pinned down: deltas land exactly once, with the acknowledgement;
//! a stale watermark or a held close gate applies nothing; the clock; HLL
//! unions (and their accuracy at a million values); what a closer pass
//! commits; alert dedup and paging; and that deleting a pipeline deletes its
//! window data.

#[macro_use]
mod common;

use common::{counts, depth};

use sluice::domain::Event;
use sluice::store::embedded::EmbeddedStore;
use sluice::store::prelude::*;
use sluice::store::{Store, StoreError};
use sluice::domain::{AlertRecord, CloseCommit, CloseOutcome, CompleteReport, Counters, Delivery, DirtyMark, DistinctQuery, Enqueued, EntryResult, FieldAgg, PaneAgg, PaneDelta, PaneRef, PaneRow, QueuedEvent, WindowClock, WindowRecord, NO_WATERMARK};

// ---- fixtures ---------------------------------------------------------------

conformance!(
    deltas_apply_with_the_ack_exactly_once,
    stale_watermark_and_close_gate_apply_nothing,
    dirty_at_marks_updates_to_closed_windows,
    clock_tracks_event_time_and_last_apply,
    distinct_counts_are_union_cardinalities,
    finish_close_emits_finalizes_drops_and_expires,
    alerts_dedupe_per_window_start_group_and_page,
    alerts_older_than_retention_are_trimmed,
    hll_within_two_percent_at_a_million,
    delete_pipeline_removes_window_data,
    tail_cursor_skips_what_is_stored,
    non_finite_completion_writes_nothing,
    integer_sums_past_i64_keep_counting,
    fenced_closer_writes_nothing,
    finish_close_never_moves_the_watermark_backwards,
);

// ---- helpers ----------------------------------------------------------------

const P: &str = "p1";
/// The main window; `W_LIKE` shares its name as a prefix, to catch key
/// ranges or patterns that leak from one window into another.
const W: &str = "w5m";
const W_LIKE: &str = "w5mx";
const HOUR: &str = "w1h";
/// A minute-aligned pane start; panes below are `T + k * MIN`.
const T: i64 = 1_699_999_980_000;
const MIN: i64 = 60_000;

fn ev(id: &str) -> Event {
    Event {
        id: id.to_string(),
        kind: "view".to_string(),
        source: "web".to_string(),
        timestamp: T,
        data: format!(r#"{{"id":"{id}"}}"#),
    }
}

async fn enqueue_ok<S: Store>(s: &S, pipeline: &str, ids: &[&str]) {
    let events: Vec<QueuedEvent> = ids.iter().map(|id| QueuedEvent::new(ev(id))).collect();
    match s.enqueue(pipeline, &events, 0, depth(1_000_000)).await.unwrap() {
        Enqueued::Accepted { .. } => {}
        full => panic!("expected Accepted, got {full:?}"),
    }
}

/// Enqueues one entry of one event and reads it back.
async fn deliver<S: Store>(s: &S, pipeline: &str, id: &str) -> Delivery {
    enqueue_ok(s, pipeline, &[id]).await;
    let mut got = s.read(pipeline, "w", 10, 0).await.unwrap();
    assert_eq!(got.len(), 1, "expected exactly the entry just enqueued");
    got.remove(0)
}

/// A completed entry: its event emitted as `out-<id>`, with window updates.
fn windowed(d: &Delivery, deltas: Vec<PaneDelta>, dirty: Vec<DirtyMark>, max_event_ts: Option<i64>) -> EntryResult {
    let out = ev(&format!("out-{}", d.events[0].event.id));
    EntryResult {
        delivery_id: d.id.clone(),
        entry_bytes: d.bytes,
        outputs: vec![out],
        finished: d.events.len() as u64,
        window_deltas: deltas,
        dirty,
        max_event_ts,
        ..Default::default()
    }
}

fn fa(n: u64, sum: f64, min: Option<f64>, max: Option<f64>, missing: u64) -> FieldAgg {
    FieldAgg { n, sum, min, max, missing }
}

fn pa(count: u64, fields: Vec<FieldAgg>) -> PaneAgg {
    PaneAgg { count, fields }
}

fn delta(window: &str, pane: i64, group: &str, agg: PaneAgg, distinct: Vec<Vec<String>>) -> PaneDelta {
    PaneDelta { window: window.to_string(), pane, group: group.to_string(), agg, distinct, dirty_at: None }
}

/// A delta counting `n` events, adding `values` to aggregate 0's sketch. No
/// per-field state: how fields round-trip is the business of
/// `deltas_apply_with_the_ack_exactly_once` alone.
fn counted(window: &str, pane: i64, group: &str, n: u64, values: Vec<String>) -> PaneDelta {
    delta(window, pane, group, pa(n, vec![]), vec![values])
}

fn row(pane: i64, group: &str, agg: PaneAgg) -> PaneRow {
    PaneRow { pane, group: group.to_string(), agg }
}

fn mark(window: &str, pane: i64, group: &str) -> DirtyMark {
    DirtyMark { window: window.to_string(), pane, group: group.to_string() }
}

fn rec(window: &str, start: i64, group: &str, json: &str) -> WindowRecord {
    WindowRecord { window: window.to_string(), start, group: group.to_string(), json: json.to_string() }
}

fn alert(window: &str, start: i64, group: &str, json: &str) -> AlertRecord {
    AlertRecord { window: window.to_string(), start, group: group.to_string(), json: json.to_string() }
}

fn q(agg: usize, group: &str, panes: &[i64]) -> DistinctQuery {
    DistinctQuery { agg, group: group.to_string(), panes: panes.to_vec() }
}

/// `prefix0`, `prefix1`, ... for `range`.
fn values(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn applied(n: usize) -> CompleteReport {
    CompleteReport { applied: n, skipped: 0, stale: false }
}

const STALE: CompleteReport = CompleteReport { applied: 0, skipped: 0, stale: true };

fn clock(watermark: i64, max_event_ts: i64, last_event_at: i64, gate_until: i64) -> WindowClock {
    WindowClock { watermark, max_event_ts, last_event_at, gate_until }
}

/// The stored watermark of `P`.
async fn watermark<S: Store>(s: &S) -> i64 {
    s.window_clock(P).await.unwrap().watermark
}

/// Takes the close gate (it must be free) and answers the lease's token.
async fn lease<S: Store>(s: &S, pipeline: &str, now_ms: i64, lease_ms: i64) -> u64 {
    s.begin_close(pipeline, now_ms, lease_ms).await.unwrap().expect("the gate is free").token
}

/// Commits a closer pass that holds its lease: it must apply.
async fn commit<S: Store>(s: &S, pipeline: &str, commit: CloseCommit) {
    assert_eq!(s.finish_close(pipeline, &commit).await.unwrap(), CloseOutcome::Committed);
}

fn assert_within(actual: u64, expected: u64, tolerance: f64, what: &str) {
    let error = (actual as f64 - expected as f64).abs() / expected as f64;
    assert!(error <= tolerance, "{what}: {actual} is {:.3}% off {expected}", error * 100.0);
}

/// Every record of a window's results stream, following cursors `limit` at a time.
async fn all_results<S: Store>(s: &S, pipeline: &str, window: &str, limit: usize) -> Vec<WindowRecord> {
    let mut cursor = String::new();
    let mut out = Vec::new();
    loop {
        let page = s.read_window_results(pipeline, window, &cursor, limit).await.unwrap();
        if page.items.is_empty() {
            if !cursor.is_empty() {
                assert_eq!(page.next_cursor, cursor, "an empty page keeps the cursor");
            }
            return out;
        }
        assert!(page.items.len() <= limit);
        out.extend(page.items);
        cursor = page.next_cursor;
    }
}

async fn sorted_marks<S: Store>(s: &S, pipeline: &str, window: &str) -> Vec<DirtyMark> {
    let mut marks = s.dirty_marks(pipeline, window).await.unwrap();
    marks.sort();
    marks
}

// ---- applying deltas ----------------------------------------------------------

async fn deltas_apply_with_the_ack_exactly_once<S: Store>(s: &S) {
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![]);

    // One entry: two deltas for the same (pane, group) sum up; several panes,
    // groups and windows. Fields as the workers make them: aggregate 0
    // numeric (sum/min/max, some missing), aggregate 1 a `count_distinct`
    // (values taken but no min/max; its values go to the sketch), and a
    // count without a field keeps its default entry.
    let d1 = deliver(s, P, "a").await;
    let de = |count, sum, min, max, missing, distinct: &[&str]| {
        delta(
            W,
            T,
            "\"de\"",
            pa(count, vec![fa(count - missing, sum, min, max, missing), fa(0, 0.0, None, None, count)]),
            vec![vec![], distinct.iter().map(|v| v.to_string()).collect()],
        )
    };
    let r1 = windowed(
        &d1,
        vec![
            de(2, 3.5, Some(1.5), Some(2.0), 0, &["u1", "u2", "u3"]),
            de(3, 10.25, Some(0.25), Some(8.0), 1, &["u3", "u4"]),
            delta(W, T, "\"fr\"", pa(1, vec![fa(1, -4.5, Some(-4.5), Some(-4.5), 0), fa(1, 0.0, None, None, 0)]), vec![vec![], vec!["u9".into()]]),
            // Given out of order: rows come back by pane, then group.
            delta(W, T + 10 * MIN, "\"de\"", pa(1, vec![fa(0, 0.0, None, None, 1)]), vec![]),
            // Deltas keep `n + missing == count` per field (FieldAgg's invariant).
            delta(W, T + 10 * MIN, "\"no-field\"", pa(2, vec![fa(2, 0.0, None, None, 0)]), vec![]),
            delta(W, T + 2 * MIN, "\"de\"", pa(4, vec![fa(4, 8.0, Some(1.0), Some(3.0), 0)]), vec![]),
            delta(W_LIKE, T, "\"de\"", pa(7, vec![]), vec![]),
            delta(HOUR, T, "null", pa(6, vec![fa(6, 60.0, Some(5.0), Some(15.0), 0)]), vec![]),
        ],
        vec![],
        Some(T + 10 * MIN + 5),
    );
    assert_eq!(s.complete_windowed(P, &[r1.clone()], Some(i64::MAX), 1_000).await.unwrap(), applied(1));

    let de_t = row(T, "\"de\"", pa(5, vec![fa(4, 13.75, Some(0.25), Some(8.0), 1), fa(0, 0.0, None, None, 5)]));
    let fr_t = row(T, "\"fr\"", pa(1, vec![fa(1, -4.5, Some(-4.5), Some(-4.5), 0), fa(1, 0.0, None, None, 0)]));
    let de_2 = row(T + 2 * MIN, "\"de\"", pa(4, vec![fa(4, 8.0, Some(1.0), Some(3.0), 0)]));
    let de_10 = row(T + 10 * MIN, "\"de\"", pa(1, vec![fa(0, 0.0, None, None, 1)]));
    let nf_10 = row(T + 10 * MIN, "\"no-field\"", pa(2, vec![fa(2, 0.0, None, None, 0)]));
    let all = vec![de_t.clone(), fr_t.clone(), de_2.clone(), de_10.clone(), nf_10.clone()];
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), all);
    // Both ends inclusive.
    assert_eq!(s.read_panes(P, W, T, T + 10 * MIN).await.unwrap(), all);
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), vec![de_t.clone(), fr_t.clone()]);
    assert_eq!(s.read_panes(P, W, T + 1, T + 2 * MIN).await.unwrap(), vec![de_2.clone()]);
    assert_eq!(s.read_panes(P, W, T + 2 * MIN + 1, T + 10 * MIN - 1).await.unwrap(), vec![]);
    assert_eq!(s.read_panes(P, W_LIKE, T, T).await.unwrap(), vec![row(T, "\"de\"", pa(7, vec![]))]);
    assert_eq!(
        s.read_panes(P, HOUR, T, T).await.unwrap(),
        vec![row(T, "null", pa(6, vec![fa(6, 60.0, Some(5.0), Some(15.0), 0)]))]
    );
    assert_eq!(s.read_panes("p2", W, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    assert_eq!(s.distinct_counts(P, W, &[q(1, "\"de\"", &[T]), q(1, "\"fr\"", &[T])]).await.unwrap(), vec![4, 1]);
    // The ack happened with it: outputs and counters.
    assert_eq!(s.read_output(P, "", 10).await.unwrap().items, vec![ev("out-a")]);
    assert_eq!(counts(s, P).await, Counters { accepted: 1, processed: 1, emitted: 1, ..Default::default() });

    // Redelivered (e.g. reclaimed after a crash) and completed again: nothing changes.
    assert_eq!(
        s.complete_windowed(P, &[r1.clone()], Some(i64::MAX), 2_000).await.unwrap(),
        CompleteReport { applied: 0, skipped: 1, stale: false }
    );
    assert_eq!(s.complete_windowed(P, &[r1.clone()], None, 2_000).await.unwrap(), CompleteReport { applied: 0, skipped: 1, stale: false });
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), all);
    assert_eq!(s.distinct_counts(P, W, &[q(1, "\"de\"", &[T])]).await.unwrap(), vec![4]);
    assert_eq!(s.read_output(P, "", 10).await.unwrap().items, vec![ev("out-a")]);

    // Two more entries in one call, one of them the old one again: the new
    // one merges into the stored rows, the old one is skipped.
    let d2 = deliver(s, P, "b").await;
    let r2 = windowed(
        &d2,
        vec![
            de(1, 0.5, Some(0.5), Some(0.5), 0, &["u1", "u5"]),
            delta(W, T + MIN, "\"it\"", pa(2, vec![fa(2, 3.0, Some(1.0), Some(2.0), 0)]), vec![]),
        ],
        vec![],
        Some(T + MIN),
    );
    assert_eq!(
        s.complete_windowed(P, &[r1, r2.clone()], Some(i64::MAX), 3_000).await.unwrap(),
        CompleteReport { applied: 1, skipped: 1, stale: false }
    );
    let de_t2 = row(T, "\"de\"", pa(6, vec![fa(5, 14.25, Some(0.25), Some(8.0), 1), fa(0, 0.0, None, None, 6)]));
    let it_1 = row(T + MIN, "\"it\"", pa(2, vec![fa(2, 3.0, Some(1.0), Some(2.0), 0)]));
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![de_t2, fr_t, it_1, de_2, de_10, nf_10]);
    assert_eq!(s.distinct_counts(P, W, &[q(1, "\"de\"", &[T])]).await.unwrap(), vec![5]);
    assert_eq!(s.complete_windowed(P, &[r2], Some(i64::MAX), 4_000).await.unwrap(), CompleteReport { applied: 0, skipped: 1, stale: false });
    assert_eq!(counts(s, P).await, Counters { accepted: 2, processed: 2, emitted: 2, ..Default::default() });
}

async fn stale_watermark_and_close_gate_apply_nothing<S: Store>(s: &S) {
    assert_eq!(s.window_clock(P).await.unwrap(), WindowClock::default());
    assert_eq!(WindowClock::default(), clock(NO_WATERMARK, NO_WATERMARK, 0, 0));

    let d1 = deliver(s, P, "a").await;
    let r1 = windowed(&d1, vec![counted(W, T, "g", 3, values("v", 0..3))], vec![mark(W, T, "g")], Some(T + 7));

    // Valid only below "no watermark at all": nothing at all happens.
    assert_eq!(s.complete_windowed(P, &[r1.clone()], Some(NO_WATERMARK), 1_000).await.unwrap(), STALE);
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    assert_eq!(s.distinct_counts(P, W, &[q(0, "g", &[T])]).await.unwrap(), vec![0]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![]);
    assert_eq!(s.read_output(P, "", 10).await.unwrap().items, vec![]);
    assert_eq!(counts(s, P).await, Counters { accepted: 1, queue_depth: 1, ..Default::default() });
    assert_eq!(s.window_clock(P).await.unwrap(), WindowClock::default());
    // Still pending: another worker could take it over ...
    let taken = s.reclaim(P, "w2", 0, 10).await.unwrap();
    assert_eq!(taken.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), vec![d1.id.clone()]);
    // ... and valid below any watermark it applies.
    assert_eq!(s.complete_windowed(P, &[r1.clone()], Some(T), 1_000).await.unwrap(), applied(1));
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), vec![row(T, "g", pa(3, vec![]))]);
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 7, 1_000, 0));

    // A closer takes the gate until 2_000 + 30_000.
    let got = s.begin_close(P, 2_000, 30_000).await.unwrap().expect("the gate is free");
    assert_eq!((got.clock.watermark, got.clock.max_event_ts, got.clock.last_event_at), (NO_WATERMARK, T + 7, 1_000));
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 7, 1_000, 32_000));
    // Nobody else gets it, not even just before it runs out.
    assert_eq!(s.begin_close(P, 2_500, 30_000).await.unwrap(), None);
    assert_eq!(s.begin_close(P, 31_999, 30_000).await.unwrap(), None);
    // Applies are stale while it is held, whatever they are valid below.
    let d2 = deliver(s, P, "b").await;
    let r2 = windowed(&d2, vec![counted(W, T + MIN, "g", 2, values("v", 3..5))], vec![], Some(T + MIN));
    assert_eq!(s.complete_windowed(P, &[r2.clone()], Some(i64::MAX), 3_000).await.unwrap(), STALE);
    assert_eq!(s.read_panes(P, W, T + MIN, T + MIN).await.unwrap(), vec![]);
    assert_eq!(counts(s, P).await.queue_depth, 1);

    // The closer commits: the watermark moves, the gate is free again.
    commit(s, P, CloseCommit { token: got.token, watermark: T, ..Default::default() }).await;
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T, T + 7, 1_000, 0));
    // Decisions valid only below T are stale now; valid below T + 1 they apply.
    assert_eq!(s.complete_windowed(P, &[r2.clone()], Some(NO_WATERMARK), 4_000).await.unwrap(), STALE);
    assert_eq!(s.complete_windowed(P, &[r2.clone()], Some(T), 4_000).await.unwrap(), STALE);
    assert_eq!(s.complete_windowed(P, &[r2.clone()], Some(T + 1), 4_000).await.unwrap(), applied(1));
    assert_eq!(s.read_panes(P, W, T + MIN, T + MIN).await.unwrap(), vec![row(T + MIN, "g", pa(2, vec![]))]);
    assert_eq!(counts(s, P).await, Counters { accepted: 2, processed: 2, emitted: 2, ..Default::default() });
    // The watermark check comes first, even for an entry already done.
    assert_eq!(s.complete_windowed(P, &[r2], Some(NO_WATERMARK), 4_000).await.unwrap(), STALE);

    // A lease runs out: a crashed closer does not block the next one forever.
    assert!(s.begin_close(P, 10_000, 1_000).await.unwrap().is_some());
    assert_eq!(s.begin_close(P, 10_500, 1_000).await.unwrap(), None);
    let got = s.begin_close(P, 11_001, 1_000).await.unwrap().expect("the lease ran out");
    assert_eq!(got.clock.watermark, T);
    assert_eq!(s.window_clock(P).await.unwrap().gate_until, 12_001);
    let d3 = deliver(s, P, "c").await;
    let r3 = windowed(&d3, vec![counted(W, T + 2 * MIN, "g", 1, vec![])], vec![], Some(T + 2 * MIN));
    assert_eq!(s.complete_windowed(P, &[r3.clone()], Some(T + 1), 11_500).await.unwrap(), STALE);
    // Past the lease the gate no longer holds applies back, and such an
    // apply revokes the lease that ran out: that pass read the panes before
    // the apply, so its commit is fenced (nothing written; the gate is free).
    assert_eq!(s.complete_windowed(P, &[r3], Some(T + 1), 12_002).await.unwrap(), applied(1));
    assert_eq!(s.finish_close(P, &CloseCommit { token: got.token, watermark: T + MIN, ..Default::default() }).await.unwrap(), CloseOutcome::Fenced);
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T, T + 2 * MIN, 12_002, 0));
    // The next pass decides again, on what is stored now.
    let token = lease(s, P, 12_003, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + MIN, ..Default::default() }).await;
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + MIN, T + 2 * MIN, 12_002, 0));

    // The gate is per pipeline.
    assert!(s.begin_close(P, 20_000, 60_000).await.unwrap().is_some());
    let other = s.begin_close("p2", 20_000, 60_000).await.unwrap().expect("p2 has a gate of its own");
    assert_eq!((other.clock.watermark, other.clock.max_event_ts, other.clock.last_event_at), (NO_WATERMARK, NO_WATERMARK, 0));
    assert_eq!(s.window_clock("p2").await.unwrap(), clock(NO_WATERMARK, NO_WATERMARK, 0, 80_000));
    let d4 = deliver(s, "p2", "x").await;
    assert_eq!(s.complete_windowed("p2", &[windowed(&d4, vec![], vec![], None)], Some(NO_WATERMARK), 20_001).await.unwrap(), STALE);
    commit(s, "p2", CloseCommit { token: other.token, watermark: NO_WATERMARK, ..Default::default() }).await;
    assert_eq!(s.window_clock(P).await.unwrap().gate_until, 80_000);
    assert_eq!(s.window_clock("p2").await.unwrap(), WindowClock::default());
}

/// A delta marks its (window, pane, group) dirty when the stored watermark
/// has reached its `dirty_at` as it is applied.
async fn dirty_at_marks_updates_to_closed_windows<S: Store>(s: &S) {
    let token = lease(s, P, 1_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T, ..Default::default() }).await;
    let d = deliver(s, P, "a").await;
    let mut closed = counted(W, T - MIN, "g", 1, vec![]);
    closed.dirty_at = Some(T);
    let mut open = counted(W, T, "g", 1, vec![]);
    open.dirty_at = Some(T + 1);
    let never = counted(W, T + MIN, "h", 1, vec![]);
    let r = windowed(&d, vec![closed, open, never], vec![], Some(T));
    assert_eq!(s.complete_windowed(P, &[r], Some(i64::MAX), 2_000).await.unwrap(), applied(1));
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![mark(W, T - MIN, "g")]);
}

async fn clock_tracks_event_time_and_last_apply<S: Store>(s: &S) {
    let d1 = deliver(s, P, "a").await;
    let r1 = windowed(&d1, vec![counted(W, T, "g", 1, vec![])], vec![], Some(T + 5_000));
    assert_eq!(s.complete_windowed(P, &[r1.clone()], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 5_000, 1_000, 0));

    // Older events: the newest event time stays, the apply time moves.
    let d2 = deliver(s, P, "b").await;
    let r2 = windowed(&d2, vec![counted(W, T, "g", 1, vec![])], vec![], Some(T + 1_000));
    assert_eq!(s.complete_windowed(P, &[r2], Some(i64::MAX), 2_000).await.unwrap(), applied(1));
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 5_000, 2_000, 0));

    // An entry with no window updates (everything filtered out) is no apply of events.
    let d3 = deliver(s, P, "c").await;
    assert_eq!(s.complete_windowed(P, &[windowed(&d3, vec![], vec![], None)], Some(i64::MAX), 3_000).await.unwrap(), applied(1));
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 5_000, 2_000, 0));

    // Skipped and stale completions change nothing.
    assert_eq!(
        s.complete_windowed(P, &[r1.clone()], Some(i64::MAX), 4_000).await.unwrap(),
        CompleteReport { applied: 0, skipped: 1, stale: false }
    );
    let d4 = deliver(s, P, "d").await;
    let r4 = windowed(&d4, vec![counted(W, T + MIN, "g", 1, vec![])], vec![], Some(T + 9 * MIN));
    assert_eq!(s.complete_windowed(P, &[r4.clone()], Some(NO_WATERMARK), 5_000).await.unwrap(), STALE);
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 5_000, 2_000, 0));

    // Newer events move it forward; a closer pass keeps both fields.
    assert_eq!(s.complete_windowed(P, &[r4], Some(i64::MAX), 6_000).await.unwrap(), applied(1));
    assert_eq!(s.window_clock(P).await.unwrap(), clock(NO_WATERMARK, T + 9 * MIN, 6_000, 0));
    let token = lease(s, P, 7_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + 5 * MIN, ..Default::default() }).await;
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + 5 * MIN, T + 9 * MIN, 6_000, 0));
    // Other pipelines have their own clock.
    assert_eq!(s.window_clock("p2").await.unwrap(), WindowClock::default());
}

async fn distinct_counts_are_union_cardinalities<S: Store>(s: &S) {
    let panes = [T, T + MIN, T + 2 * MIN];
    // Sketches on aggregate 2 (0 and 1 have none). Pane 1's values arrive in two entries.
    let d1 = deliver(s, P, "a").await;
    let d2 = deliver(s, P, "b").await;
    let on2 = |pane, group: &str, vals: Vec<String>| delta(W, pane, group, pa(vals.len() as u64, vec![]), vec![vec![], vec![], vals]);
    let r1 = windowed(
        &d1,
        vec![on2(panes[0], "g", values("v", 0..100)), on2(panes[1], "g", values("v", 50..120)), on2(panes[0], "h", values("x", 0..10))],
        vec![],
        Some(T),
    );
    let r2 = windowed(
        &d2,
        // Repeats within and across entries count once.
        vec![on2(panes[1], "g", values("v", 100..150)), on2(panes[2], "g", values("v", 100..200)), on2(panes[2], "g", values("v", 150..200))],
        vec![],
        Some(T),
    );
    assert_eq!(s.complete_windowed(P, &[r1], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
    assert_eq!(s.complete_windowed(P, &[r2], Some(i64::MAX), 1_000).await.unwrap(), applied(1));

    let queries = vec![
        q(2, "g", &panes),
        q(2, "g", &panes[..1]),
        q(2, "g", &panes[..2]),
        q(2, "g", &panes[1..]),
        q(2, "h", &panes[..1]),
        q(0, "g", &panes),
        q(2, "g", &[T + 3 * MIN]),
        q(2, "g", &[T + 3 * MIN, panes[2]]),
        q(2, "nobody", &panes),
        q(2, "g", &[]),
        q(2, "h", &panes),
    ];
    let got = s.distinct_counts(P, W, &queries).await.unwrap();
    assert_eq!(got.len(), queries.len(), "one answer per query: {got:?}");
    let expected = [200, 100, 150, 150, 10, 0, 0, 100, 0, 0, 10];
    for (i, (got, want)) in got.iter().zip(expected).enumerate() {
        if want <= 10 {
            assert_eq!(*got, want, "query {i}: {:?}", queries[i]);
        } else {
            assert_within(*got, want, 0.02, &format!("query {i}: {:?}", queries[i]));
        }
    }
    // Same panes, another window or pipeline: nothing.
    assert_eq!(s.distinct_counts(P, W_LIKE, &queries[..1]).await.unwrap(), vec![0]);
    assert_eq!(s.distinct_counts("p2", W, &queries[..1]).await.unwrap(), vec![0]);
    assert_eq!(s.distinct_counts(P, W, &[]).await.unwrap(), Vec::<u64>::new());
}

// ---- closing ------------------------------------------------------------------

async fn finish_close_emits_finalizes_drops_and_expires<S: Store>(s: &S) {
    // State to close: panes T, T+1m (groups a, b) and T+2m (a), sketches on
    // some, dirty marks (one of them twice).
    let d1 = deliver(s, P, "a").await;
    let r1 = windowed(
        &d1,
        vec![
            counted(W, T, "a", 1, values("a", 0..5)),
            counted(W, T, "b", 2, values("b", 0..6)),
            counted(W, T + MIN, "a", 3, values("c", 0..7)),
            counted(W, T + MIN, "b", 4, values("d", 0..8)),
            counted(W, T + 2 * MIN, "a", 5, vec![]),
            counted(HOUR, T, "a", 9, vec![]),
        ],
        vec![mark(W, T, "a"), mark(W, T + MIN, "b"), mark(HOUR, T, "a")],
        Some(T + 2 * MIN),
    );
    let d2 = deliver(s, P, "b").await;
    let r2 = windowed(&d2, vec![], vec![mark(W, T, "a"), mark(W_LIKE, T, "a")], None);
    assert_eq!(s.complete_windowed(P, &[r1, r2], Some(i64::MAX), 1_000).await.unwrap(), applied(2));
    assert_eq!(sorted_marks(s, P, W).await, vec![mark(W, T, "a"), mark(W, T + MIN, "b")]);
    assert_eq!(s.dirty_marks(P, HOUR).await.unwrap(), vec![mark(HOUR, T, "a")]);
    assert_eq!(s.dirty_marks(P, W_LIKE).await.unwrap(), vec![mark(W_LIKE, T, "a")]);
    let sketches = [q(0, "a", &[T]), q(0, "b", &[T]), q(0, "a", &[T + MIN]), q(0, "b", &[T + MIN])];
    assert_eq!(s.distinct_counts(P, W, &sketches).await.unwrap(), vec![5, 6, 7, 8]);

    // Pass 1: close T; drop pane T whole and group b of T+1m.
    let token = lease(s, P, 2_000, 60_000).await;
    let emits = vec![
        rec(W, T, "a", r#"{"group":"a","start":1}"#),
        rec(W, T, "b", r#"{"group":"b","start":1}"#),
        rec(W, T + MIN, "b", r#"{"group":"b","start":2}"#),
    ];
    let hour_emit = rec(HOUR, T, "a", r#"{"hour":true}"#);
    let mut emit = emits.clone();
    emit.insert(1, hour_emit.clone());
    let finals = vec![
        rec(W, T, "b", r#"{"final":"b"}"#),
        rec(W, T, "a", r#"{"final":"a1"}"#),
        rec(W, T + MIN, "b", r#"{"final":"b2"}"#),
        rec(HOUR, T, "a", r#"{"final":"hour"}"#),
    ];
    commit(
        s,
        P,
        CloseCommit {
            token,
            watermark: T + MIN,
            emit,
            finals: finals.clone(),
            drop_panes: vec![
                PaneRef { window: W.into(), pane: T, group: None },
                PaneRef { window: W.into(), pane: T + MIN, group: Some("b".into()) },
            ],
            dirty_done: vec![mark(W, T, "a"), mark(HOUR, T, "a")],
            expire: vec![],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + MIN, T + 2 * MIN, 1_000, 0));

    // Dropped: pane T (both groups, with their sketches) and (T+1m, b).
    assert_eq!(
        s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(),
        vec![row(T + MIN, "a", pa(3, vec![])), row(T + 2 * MIN, "a", pa(5, vec![]))]
    );
    assert_eq!(s.distinct_counts(P, W, &sketches).await.unwrap(), vec![0, 0, 7, 0]);
    assert_eq!(s.read_panes(P, HOUR, T, T).await.unwrap().len(), 1, "other windows keep their panes");
    // Dirty marks handled are gone, the others stay.
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![mark(W, T + MIN, "b")]);
    assert_eq!(s.dirty_marks(P, HOUR).await.unwrap(), vec![]);
    assert_eq!(s.dirty_marks(P, W_LIKE).await.unwrap(), vec![mark(W_LIKE, T, "a")]);

    // The results stream, per window, in emission order, paged.
    let page1 = s.read_window_results(P, W, "", 2).await.unwrap();
    assert_eq!(page1.items, emits[..2].to_vec());
    let page2 = s.read_window_results(P, W, &page1.next_cursor, 2).await.unwrap();
    assert_eq!(page2.items, emits[2..].to_vec());
    let page3 = s.read_window_results(P, W, &page2.next_cursor, 2).await.unwrap();
    assert_eq!(page3.items, vec![]);
    assert_eq!(page3.next_cursor, page2.next_cursor);
    assert_eq!(s.read_window_results(P, W, &page1.next_cursor, 2).await.unwrap(), page2, "re-reading a page answers the same");
    assert_eq!(all_results(s, P, HOUR, 10).await, vec![hour_emit.clone()]);
    let empty = s.read_window_results(P, W_LIKE, "", 10).await.unwrap();
    assert_eq!(empty.items, vec![]);
    assert_eq!(s.read_window_results(P, W_LIKE, &empty.next_cursor, 10).await.unwrap().items, vec![]);

    // Finals, by start then group, both ends inclusive.
    let (fa1, fb1, fb2) = (finals[1].clone(), finals[0].clone(), finals[2].clone());
    assert_eq!(s.final_results(P, W, T, T + MIN).await.unwrap(), vec![fa1.clone(), fb1.clone(), fb2.clone()]);
    assert_eq!(s.final_results(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![fa1.clone(), fb1.clone(), fb2.clone()]);
    assert_eq!(s.final_results(P, W, T, T).await.unwrap(), vec![fa1, fb1.clone()]);
    assert_eq!(s.final_results(P, W, T + 1, T + MIN).await.unwrap(), vec![fb2.clone()]);
    assert_eq!(s.final_results(P, W, T + 1, T + MIN - 1).await.unwrap(), vec![]);
    assert_eq!(s.final_results(P, HOUR, T, T).await.unwrap(), vec![finals[3].clone()]);
    assert_eq!(s.final_results(P, W_LIKE, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    // A bounded read: the first `max` by start then group, and whether there were more.
    let (first, more) = s.final_results_at_most(P, W, i64::MIN, i64::MAX, 2).await.unwrap();
    assert_eq!((first.len(), more), (2, true));
    assert_eq!(first[0].start, T);
    let (all, more) = s.final_results_at_most(P, W, i64::MIN, i64::MAX, 3).await.unwrap();
    assert_eq!((all.len(), more), (3, false));
    assert_eq!(s.final_results_at_most(P, W, i64::MIN, i64::MAX, 0).await.unwrap(), (vec![], true));

    // Pass 2: a late update re-finalizes (T, a): replaced, and re-emitted to the stream.
    let again = rec(W, T, "a", r#"{"final":"a2"}"#);
    let token = lease(s, P, 3_000, 60_000).await;
    commit(
        s,
        P,
        CloseCommit {
            token,
            watermark: T + MIN,
            emit: vec![again.clone()],
            finals: vec![again.clone()],
            dirty_done: vec![mark(W, T + MIN, "b")],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(s.final_results(P, W, T, T).await.unwrap(), vec![again.clone(), fb1]);
    let mut stream = emits.clone();
    stream.push(again.clone());
    assert_eq!(all_results(s, P, W, 3).await, stream);
    assert_eq!(s.read_window_results(P, W, &page2.next_cursor, 10).await.unwrap().items, vec![again]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![]);

    // Pass 3: expire everything of W that started before T+1m, finals and stream alike.
    let token = lease(s, P, 4_000, 60_000).await;
    commit(s, P, CloseCommit { token, watermark: T + 2 * MIN, expire: vec![(W.to_string(), T + MIN)], ..Default::default() })
        .await;
    assert_eq!(s.final_results(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![fb2]);
    assert_eq!(all_results(s, P, W, 10).await, vec![emits[2].clone()]);
    // Other windows are untouched.
    assert_eq!(s.final_results(P, HOUR, i64::MIN, i64::MAX).await.unwrap(), vec![finals[3].clone()]);
    assert_eq!(all_results(s, P, HOUR, 10).await, vec![hour_emit]);
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + 2 * MIN, T + 2 * MIN, 1_000, 0));
}

/// A closer paused past its lease, taken over by another closer meanwhile,
/// cannot commit: its watermark, results, finals, dropped panes and dirty
/// marks are all refused (nothing written), so a window is emitted once and
/// the watermark never goes back. The holder's commit applies as usual.
async fn fenced_closer_writes_nothing<S: Store>(s: &S) {
    let d = deliver(s, P, "a").await;
    let r = windowed(&d, vec![counted(W, T, "g", 2, values("v", 0..4))], vec![mark(W, T, "g")], Some(T + 9));
    assert_eq!(s.complete_windowed(P, &[r], Some(i64::MAX), 1_000).await.unwrap(), applied(1));

    // Closer A takes the gate until 3_000, plans, and pauses past its lease.
    let a = lease(s, P, 2_000, 1_000).await;
    let a_result = rec(W, T, "g", r#"{"count":2,"by":"a"}"#);
    let a_commit = CloseCommit {
        token: a,
        watermark: T + MIN,
        horizon: Some(T + MIN),
        emit: vec![a_result.clone()],
        finals: vec![a_result],
        drop_panes: vec![PaneRef { window: W.into(), pane: T, group: None }],
        dirty_done: vec![mark(W, T, "g")],
        expire: vec![(W.to_string(), T + MIN)],
    };
    // Closer B takes the gate over once A's lease ran out, and closes the
    // window without finalizing it (the lateness keeps its panes).
    let b = lease(s, P, 3_001, 10_000).await;
    assert!(b > a, "every lease gets a greater token: {b} > {a}");
    let b_result = rec(W, T, "g", r#"{"count":2,"by":"b"}"#);
    commit(s, P, CloseCommit { token: b, watermark: T + MIN, emit: vec![b_result.clone()], ..Default::default() }).await;

    // A wakes up: its commit is refused, nothing of it is written.
    assert_eq!(s.finish_close(P, &a_commit).await.unwrap(), CloseOutcome::Fenced);
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + MIN, T + 9, 1_000, 0));
    assert_eq!(all_results(s, P, W, 10).await, vec![b_result.clone()], "emitted once, by B");
    assert_eq!(s.final_results(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), vec![row(T, "g", pa(2, vec![]))]);
    assert_eq!(s.distinct_counts(P, W, &[q(0, "g", &[T])]).await.unwrap(), vec![4]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![mark(W, T, "g")]);

    // A stale token does not release the gate of the closer holding it now,
    // nor does a made-up one (0: no lease at all).
    let c = lease(s, P, 4_000, 10_000).await;
    for token in [a, b, 0, c + 1] {
        let stale = CloseCommit { token, watermark: T + 5 * MIN, emit: vec![rec(W, T + MIN, "g", "{}")], ..Default::default() };
        assert_eq!(s.finish_close(P, &stale).await.unwrap(), CloseOutcome::Fenced, "token {token}");
    }
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + MIN, T + 9, 1_000, 14_000));
    assert_eq!(all_results(s, P, W, 10).await, vec![b_result.clone()]);
    // The holder commits; its token is spent (a second commit is fenced).
    let final_result = rec(W, T, "g", r#"{"final":true}"#);
    let c_commit = CloseCommit { token: c, watermark: T + 2 * MIN, finals: vec![final_result.clone()], dirty_done: vec![mark(W, T, "g")], ..Default::default() };
    commit(s, P, c_commit.clone()).await;
    assert_eq!(s.finish_close(P, &c_commit).await.unwrap(), CloseOutcome::Fenced, "a lease commits once");
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T + 2 * MIN, T + 9, 1_000, 0));
    assert_eq!(s.final_results(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![final_result]);
    assert_eq!(all_results(s, P, W, 10).await, vec![b_result]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![]);
}

/// `finish_close` never moves the watermark backwards (the rest of such a
/// commit applies), except the clamp of `next_watermark`: a stored watermark
/// past the commit's horizon (the clock plus `max_future_ms`) comes down to
/// that horizon, and no further.
async fn finish_close_never_moves_the_watermark_backwards<S: Store>(s: &S) {
    let token = lease(s, P, 1_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + MIN, ..Default::default() }).await;
    assert_eq!(watermark(s).await, T + MIN);

    // Lower, without and with a horizon the stored watermark is within.
    let r = rec(W, T, "g", "{}");
    let token = lease(s, P, 2_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T, emit: vec![r.clone()], ..Default::default() }).await;
    assert_eq!(watermark(s).await, T + MIN, "kept");
    assert_eq!(all_results(s, P, W, 10).await, vec![r], "the rest of the commit applied");
    let token = lease(s, P, 3_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: NO_WATERMARK, horizon: Some(T + MIN), ..Default::default() }).await;
    assert_eq!(watermark(s).await, T + MIN, "at the horizon is not past it");
    assert_eq!(s.window_clock(P).await.unwrap().gate_until, 0, "the gate opened all the same");

    // Stored past the horizon: down to the horizon, not below.
    let token = lease(s, P, 4_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + 10 * MIN, ..Default::default() }).await;
    let token = lease(s, P, 5_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + 2 * MIN, horizon: Some(T + 5 * MIN), ..Default::default() }).await;
    assert_eq!(watermark(s).await, T + 5 * MIN);
    // A far-future watermark (as stored by earlier versions) comes back too.
    let token = lease(s, P, 6_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: i64::MAX - 1, ..Default::default() }).await;
    assert_eq!(watermark(s).await, i64::MAX - 1);
    let token = lease(s, P, 7_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + 3 * MIN, horizon: Some(T + 3 * MIN), ..Default::default() }).await;
    assert_eq!(watermark(s).await, T + 3 * MIN);
    // Forward is always fine.
    let token = lease(s, P, 8_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + 4 * MIN, horizon: Some(T + 9 * MIN), ..Default::default() }).await;
    assert_eq!(watermark(s).await, T + 4 * MIN);
}

// ---- alerts -------------------------------------------------------------------

/// A live feed starts at the tail: it sees only what is stored after.
async fn tail_cursor_skips_what_is_stored<S: Store>(s: &S) {
    let tail = s.tail_cursor(P, Some(W)).await.unwrap();
    assert_eq!(s.read_window_results(P, W, &tail, 10).await.unwrap().items, vec![], "an empty stream");
    let old = rec(W, T, "a", r#"{"n":1}"#);
    let token = lease(s, P, 1_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T, emit: vec![old.clone()], ..Default::default() }).await;
    assert!(s.put_alert(P, &alert(W, T, "a", r#"{"a":1}"#), 1_000, 60_000).await.unwrap());
    let results_tail = s.tail_cursor(P, Some(W)).await.unwrap();
    let alerts_tail = s.tail_cursor(P, None).await.unwrap();
    assert_eq!(s.read_window_results(P, W, &results_tail, 10).await.unwrap().items, vec![]);
    assert_eq!(s.read_alerts(P, &alerts_tail, 10).await.unwrap().items, vec![]);
    let new = rec(W, T + MIN, "a", r#"{"n":2}"#);
    let token = lease(s, P, 2_000, 1_000).await;
    commit(s, P, CloseCommit { token, watermark: T + MIN, emit: vec![new.clone()], ..Default::default() }).await;
    let a2 = alert(W, T + MIN, "a", r#"{"a":2}"#);
    assert!(s.put_alert(P, &a2, 2_000, 60_000).await.unwrap());
    assert_eq!(s.read_window_results(P, W, &results_tail, 10).await.unwrap().items, vec![new]);
    assert_eq!(s.read_alerts(P, &alerts_tail, 10).await.unwrap().items, vec![a2]);
}

async fn alerts_dedupe_per_window_start_group_and_page<S: Store>(s: &S) {
    const KEEP: i64 = 60_000;
    let empty = s.read_alerts(P, "", 10).await.unwrap();
    assert_eq!(empty.items, vec![]);
    assert_eq!(s.read_alerts(P, &empty.next_cursor, 10).await.unwrap().items, vec![]);

    let a1 = alert(W, T, "a", r#"{"n":1}"#);
    assert!(s.put_alert(P, &a1, 1_000, KEEP).await.unwrap());
    // Same (window, start, group), other content: already raised.
    assert!(!s.put_alert(P, &alert(W, T, "a", r#"{"n":2}"#), 1_100, KEEP).await.unwrap());
    assert!(!s.put_alert(P, &a1, 1_150, KEEP).await.unwrap());
    // Any part different: a new alert.
    let others = [alert(W, T, "b", r#"{"n":3}"#), alert(W, T + MIN, "a", r#"{"n":4}"#), alert(HOUR, T, "a", r#"{"n":5}"#)];
    for (i, a) in others.iter().enumerate() {
        assert!(s.put_alert(P, a, 1_200 + i as i64 * 100, KEEP).await.unwrap(), "{a:?}");
    }
    // Per pipeline.
    assert!(s.put_alert("p2", &a1, 1_600, KEEP).await.unwrap());

    let mut all = vec![a1.clone()];
    all.extend(others.iter().cloned());
    let page1 = s.read_alerts(P, "", 3).await.unwrap();
    assert_eq!(page1.items, all[..3].to_vec());
    let page2 = s.read_alerts(P, &page1.next_cursor, 3).await.unwrap();
    assert_eq!(page2.items, all[3..].to_vec());
    let page3 = s.read_alerts(P, &page2.next_cursor, 3).await.unwrap();
    assert_eq!(page3.items, vec![]);
    assert_eq!(page3.next_cursor, page2.next_cursor);
    assert_eq!(s.read_alerts(P, "", 100).await.unwrap().items, all);
    assert_eq!(s.read_alerts("p2", "", 100).await.unwrap().items, vec![a1.clone()]);

    // A new alert appears after the last cursor.
    let late = alert(W, T + 2 * MIN, "a", r#"{"n":6}"#);
    assert!(s.put_alert(P, &late, 1_700, KEEP).await.unwrap());
    assert_eq!(s.read_alerts(P, &page3.next_cursor, 3).await.unwrap().items, vec![late.clone()]);

    // Nothing is older than the retention yet: all kept.
    all.push(late);
    assert_eq!(s.read_alerts(P, "", 100).await.unwrap().items, all);
}

async fn alerts_older_than_retention_are_trimmed<S: Store>(s: &S) {
    const KEEP: i64 = 60_000;
    let a: Vec<AlertRecord> = (0..4).map(|i| alert(W, T + i * MIN, "a", &format!(r#"{{"n":{i}}}"#))).collect();
    assert!(s.put_alert(P, &a[0], 1_000, KEEP).await.unwrap());
    assert!(s.put_alert(P, &a[1], 1_200, KEEP).await.unwrap());
    assert!(s.put_alert(P, &a[2], 1_300, KEEP).await.unwrap());
    assert!(s.put_alert("p2", &a[0], 1_100, KEEP).await.unwrap());
    // At 61_250 the alerts appended before 1_250 (at 1_000 and 1_200) are
    // older than 60 s: trimmed by this append.
    assert!(s.put_alert(P, &a[3], 61_250, KEEP).await.unwrap());
    assert_eq!(s.read_alerts(P, "", 100).await.unwrap().items, a[2..].to_vec());
    // Alerts still kept still dedupe.
    assert!(!s.put_alert(P, &a[2], 61_300, KEEP).await.unwrap());
    assert_eq!(s.read_alerts(P, "", 100).await.unwrap().items, a[2..].to_vec());
    // The other pipeline is not trimmed by this one's appends.
    assert_eq!(s.read_alerts("p2", "", 100).await.unwrap().items, vec![a[0].clone()]);
}

// ---- accuracy -------------------------------------------------------------------

async fn hll_within_two_percent_at_a_million<S: Store>(s: &S) {
    const ENTRIES: u32 = 50;
    const PER_ENTRY: u32 = 20_000;
    const PANES: u32 = 5;
    let ids: Vec<String> = (0..ENTRIES).map(|i| format!("e{i}")).collect();
    for id in &ids {
        enqueue_ok(s, P, &[id]).await;
    }
    let deliveries = s.read(P, "w", ENTRIES as usize, 0).await.unwrap();
    assert_eq!(deliveries.len(), ENTRIES as usize);

    // Entry k carries user values [k * 20k, (k + 1) * 20k) for pane k % 5;
    // completed 5 entries per call.
    let pane = |k: u32| T + i64::from(k % PANES) * MIN;
    let results: Vec<EntryResult> = deliveries
        .iter()
        .zip(0u32..)
        .map(|(d, k)| {
            let vals = values("user-", k * PER_ENTRY..(k + 1) * PER_ENTRY);
            windowed(d, vec![counted(W, pane(k), "all", u64::from(PER_ENTRY), vals)], vec![], Some(pane(k)))
        })
        .collect();
    for chunk in results.chunks(5) {
        assert_eq!(s.complete_windowed(P, chunk, Some(i64::MAX), 1_000).await.unwrap(), applied(chunk.len()));
    }
    // The first 100k values again, in the last pane: the union must not count
    // them twice. Pane 4 already holds 80k..100k (entry 4), so it gains 80k.
    let d = deliver(s, P, "dup").await;
    let dup = windowed(&d, vec![counted(W, pane(PANES - 1), "all", 100_000, values("user-", 0..100_000))], vec![], None);
    assert_eq!(s.complete_windowed(P, &[dup], Some(i64::MAX), 2_000).await.unwrap(), applied(1));

    let panes: Vec<i64> = (0..PANES).map(pane).collect();
    let got = s.distinct_counts(P, W, &[q(0, "all", &panes), q(0, "all", &panes[..1]), q(0, "all", &panes[PANES as usize - 1..])]).await.unwrap();
    assert_within(got[0], 1_000_000, 0.02, "union of 5 panes");
    assert_within(got[1], 200_000, 0.02, "pane 0 alone");
    assert_within(got[2], 280_000, 0.02, "pane 4 with the repeats");
    let rows = s.read_panes(P, W, T, T + 4 * MIN).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.agg.count).sum::<u64>(), 1_100_000);
}

// ---- deleting -------------------------------------------------------------------

async fn delete_pipeline_removes_window_data<S: Store>(s: &S) {
    // The same data in "p1" and in "p10" (a name with "p1" as prefix).
    for p in [P, "p10"] {
        assert!(s.put_pipeline(p, "{}").await.unwrap());
        let d = deliver(s, p, "a").await;
        let r = windowed(
            &d,
            vec![counted(W, T, "g", 2, values("v", 0..20)), counted(W, T + MIN, "g", 1, values("v", 0..3))],
            vec![mark(W, T, "g")],
            Some(T + MIN),
        );
        assert_eq!(s.complete_windowed(p, &[r], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
        let token = lease(s, p, 2_000, 60_000).await;
        commit(
            s,
            p,
            CloseCommit {
                token,
                watermark: T,
                emit: vec![rec(W, T, "g", "{}")],
                finals: vec![rec(W, T, "g", "{}")],
                ..Default::default()
            },
        )
        .await;
        assert!(s.put_alert(p, &alert(W, T, "g", "{}"), 3_000, 3_600_000).await.unwrap());
        // A closer holds the gate when the pipeline goes.
        assert!(s.begin_close(p, 4_000, 60_000).await.unwrap().is_some());
    }

    assert!(s.delete_pipeline(P).await.unwrap());
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    assert_eq!(s.distinct_counts(P, W, &[q(0, "g", &[T, T + MIN])]).await.unwrap(), vec![0]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![]);
    assert_eq!(s.final_results(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    assert_eq!(s.read_window_results(P, W, "", 10).await.unwrap().items, vec![]);
    assert_eq!(s.read_alerts(P, "", 10).await.unwrap().items, vec![]);
    assert_eq!(s.window_clock(P).await.unwrap(), WindowClock::default());

    // "p10" keeps everything.
    assert_eq!(s.read_panes("p10", W, i64::MIN, i64::MAX).await.unwrap().len(), 2);
    assert_eq!(s.distinct_counts("p10", W, &[q(0, "g", &[T, T + MIN])]).await.unwrap(), vec![20]);
    assert_eq!(s.dirty_marks("p10", W).await.unwrap(), vec![mark(W, T, "g")]);
    assert_eq!(s.final_results("p10", W, i64::MIN, i64::MAX).await.unwrap(), vec![rec(W, T, "g", "{}")]);
    assert_eq!(s.read_window_results("p10", W, "", 10).await.unwrap().items, vec![rec(W, T, "g", "{}")]);
    assert_eq!(s.read_alerts("p10", "", 10).await.unwrap().items, vec![alert(W, T, "g", "{}")]);
    assert_eq!(s.window_clock("p10").await.unwrap(), clock(T, T + MIN, 1_000, 64_000));

    // Made again, it starts from nothing: the alert can be raised again, the clock is fresh.
    assert!(s.put_pipeline(P, "{}").await.unwrap());
    assert!(s.put_alert(P, &alert(W, T, "g", "{}"), 5_000, 3_600_000).await.unwrap());
    assert!(s.begin_close(P, 5_000, 60_000).await.unwrap().is_some());
}

// ---- embedded only --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_window_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let d = deliver(&s, P, "a").await;
        let r = windowed(&d, vec![counted(W, T, "g", 2, values("v", 0..30))], vec![mark(W, T, "g")], Some(T + 9));
        assert_eq!(s.complete_windowed(P, &[r], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
        let token = lease(&s, P, 2_000, 60_000).await;
        commit(&s, P, CloseCommit { token, watermark: T, emit: vec![rec(W, T, "g", "{}")], finals: vec![rec(W, T, "g", "{}")], ..Default::default() })
            .await;
        assert!(s.put_alert(P, &alert(W, T, "g", "{}"), 3_000, 3_600_000).await.unwrap());
        // Held when the process stops.
        assert!(s.begin_close(P, 4_000, 60_000).await.unwrap().is_some());
    }
    let s = EmbeddedStore::open(dir.path()).unwrap();
    // The clock is durable; the gate was in memory and is free after a restart.
    assert_eq!(s.window_clock(P).await.unwrap(), clock(T, T + 9, 1_000, 0));
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), vec![row(T, "g", pa(2, vec![]))]);
    assert_eq!(s.distinct_counts(P, W, &[q(0, "g", &[T])]).await.unwrap(), vec![30]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![mark(W, T, "g")]);
    assert_eq!(s.final_results(P, W, T, T).await.unwrap(), vec![rec(W, T, "g", "{}")]);
    assert_eq!(s.read_window_results(P, W, "", 10).await.unwrap().items, vec![rec(W, T, "g", "{}")]);
    assert!(!s.put_alert(P, &alert(W, T, "g", "{}"), 5_000, 3_600_000).await.unwrap());
    assert!(s.begin_close(P, 5_000, 60_000).await.unwrap().is_some());
    // Sketches keep counting across the restart without counting old values twice.
    let d = deliver(&s, P, "b").await;
    let r = windowed(&d, vec![counted(W, T, "g", 1, values("v", 20..40))], vec![], None);
    assert_eq!(s.complete_windowed(P, &[r], None, 6_000).await.unwrap(), applied(1));
    assert_eq!(s.distinct_counts(P, W, &[q(0, "g", &[T])]).await.unwrap(), vec![40]);
}

// ---- numbers that do not fit ----------------------------------------------------

/// A completion whose deltas carry a number that is not finite, or whose sum
/// would stop being finite on top of what is stored, is refused before
/// anything is written; the same entry completes afterwards with a clean result.
async fn non_finite_completion_writes_nothing<S: Store>(s: &S) {
    let d = deliver(s, P, "a").await;
    let before = s.counters(P).await.unwrap();
    let bad = |sum: f64, min: Option<f64>| delta(W, T, "\"g\"", pa(1, vec![fa(1, sum, min, Some(1.0), 0)]), vec![vec!["x".into()]]);
    let mut r = windowed(&d, vec![bad(f64::INFINITY, Some(1.0))], vec![mark(W, T, "\"g\"")], Some(T));
    r.dead = vec![];
    r.retries = vec![sluice::domain::Retry { event: QueuedEvent::new(ev("again")), due_at_ms: 0 }];
    for r in [r.clone(), EntryResult { window_deltas: vec![bad(1.0, Some(f64::NAN))], ..r.clone() }] {
        let err = s.complete_windowed(P, &[r], Some(i64::MAX), 1_000).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
        assert!(err.to_string().contains(W), "the error names the window: {err}");
        assert_nothing_written(s, &before).await;
    }

    // Finite on its own, infinite on top of what is stored: refused whole too.
    let big = |sum: f64| delta(W, T, "\"g\"", pa(1, vec![fa(1, sum, None, None, 0)]), vec![]);
    assert_eq!(s.complete_windowed(P, &[windowed(&d, vec![big(1.5e308)], vec![], Some(T))], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
    let e = deliver(s, P, "b").await;
    let before = s.counters(P).await.unwrap();
    let stored = s.read_panes(P, W, T, T).await.unwrap();
    let err = s.complete_windowed(P, &[windowed(&e, vec![big(1.5e308)], vec![], Some(T))], Some(i64::MAX), 2_000).await.unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert_eq!(s.counters(P).await.unwrap(), before);
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), stored);
    assert_eq!(all_ids_out(s).await, vec!["out-a"]);
    // Still pending: a clean result applies.
    assert_eq!(s.complete_windowed(P, &[windowed(&e, vec![big(-1.0e308)], vec![], Some(T))], Some(i64::MAX), 3_000).await.unwrap(), applied(1));
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), vec![row(T, "\"g\"", pa(2, vec![fa(2, 0.5e308, None, None, 0)]))]);
    assert_eq!(counts(s, P).await, Counters { accepted: 2, processed: 2, emitted: 2, ..Default::default() });
}

async fn all_ids_out<S: Store>(s: &S) -> Vec<String> {
    s.read_output(P, "", 100).await.unwrap().items.into_iter().map(|e| e.id).collect()
}

/// After a refused completion of the one delivered entry: counters, outputs,
/// DLQ, panes, sketches, dirty marks, clock unchanged and the entry still
/// pending (a clean result applies, then nothing is left).
async fn assert_nothing_written<S: Store>(s: &S, before: &Counters) {
    assert_eq!(&s.counters(P).await.unwrap(), before);
    assert_eq!(all_ids_out(s).await, Vec::<String>::new());
    assert_eq!(s.dlq_list(P, "", 10).await.unwrap().items, vec![]);
    assert_eq!(s.read_panes(P, W, i64::MIN, i64::MAX).await.unwrap(), vec![]);
    assert_eq!(s.distinct_counts(P, W, &[q(0, "\"g\"", &[T])]).await.unwrap(), vec![0]);
    assert_eq!(s.dirty_marks(P, W).await.unwrap(), vec![]);
    assert_eq!(s.window_clock(P).await.unwrap().max_event_ts, NO_WATERMARK);
    assert_eq!(s.promote_retries(P, i64::MAX, 10).await.unwrap(), 0);
    let pending = s.reclaim(P, "w", 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "the entry is still pending");
}

/// Integer sums (what `sum` of a millisecond timestamp makes) keep counting
/// past `i64::MAX` (as a float), in one completion and across several.
async fn integer_sums_past_i64_keep_counting<S: Store>(s: &S) {
    let step = 8.9e15; // an integer sum the stores may keep as an integer
    let d = deliver(s, P, "a").await;
    let deltas: Vec<PaneDelta> = (0..1100).map(|_| delta(W, T, "null", pa(1, vec![fa(1, step, Some(step), Some(step), 0)]), vec![])).collect();
    assert_eq!(s.complete_windowed(P, &[windowed(&d, deltas, vec![], Some(T))], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
    let total = 1100.0 * step;
    assert!(total > i64::MAX as f64);
    assert_eq!(s.read_panes(P, W, T, T).await.unwrap(), vec![row(T, "null", pa(1100, vec![fa(1100, total, Some(step), Some(step), 0)]))]);
    for (i, id) in ["b", "c"].into_iter().enumerate() {
        let d = deliver(s, P, id).await;
        let more = delta(W, T, "null", pa(1, vec![fa(1, 3.0, Some(3.0), Some(3.0), 0)]), vec![]);
        assert_eq!(s.complete_windowed(P, &[windowed(&d, vec![more], vec![], Some(T))], Some(i64::MAX), 2_000).await.unwrap(), applied(1));
        let rows = s.read_panes(P, W, T, T).await.unwrap();
        let f = &rows[0].agg.fields[0];
        assert_eq!((rows[0].agg.count, f.n, f.min, f.max), (1101 + i as u64, 1101 + i as u64, Some(3.0), Some(step)));
        let expected = total + 3.0 * (i + 1) as f64;
        assert!((f.sum - expected).abs() <= expected * 1e-15, "sum {} != {expected}", f.sum);
    }
    assert_eq!(counts(s, P).await, Counters { accepted: 3, processed: 3, emitted: 3, ..Default::default() });
}

// ---- a bad stored pane row --------------------------------------------------------

/// A pane row that cannot be read is read as missing, and a completion over
/// it applies: one bad row does not make every later read fail.
async fn bad_row_is_read_as_missing<S: Store>(s: &S, good: PaneRow) {
    let rows = s.read_panes(P, W, i64::MIN, i64::MAX).await.expect("a bad row does not fail the read");
    assert_eq!(rows, vec![good.clone()]);
    let d = deliver(s, P, "a").await;
    let fix = delta(W, T, "\"bad\"", pa(1, vec![fa(1, 2.0, Some(2.0), Some(2.0), 0)]), vec![vec!["u1".into()]]);
    assert_eq!(s.complete_windowed(P, &[windowed(&d, vec![fix], vec![], Some(T))], Some(i64::MAX), 1_000).await.unwrap(), applied(1));
    let rows = s.read_panes(P, W, i64::MIN, i64::MAX).await.expect("reads go on");
    assert!(rows.contains(&good), "{rows:?}");
    // A sketch that was not one is started again.
    assert_eq!(s.distinct_counts(P, W, &[q(0, "\"bad\"", &[T])]).await.unwrap(), vec![1]);
    assert_eq!(s.read_output(P, "", 10).await.unwrap().items.last().map(|e| e.id.as_str()), Some("out-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_bad_pane_row_is_read_as_missing() {
    let (store, url, prefix) = common::redis_store("bad_pane_row").await;
    let good = row(T, "\"ok\"", pa(1, vec![fa(1, 4.0, Some(4.0), Some(4.0), 0)]));
    let d = deliver(&store, P, "seed").await;
    let seed = delta(W, T, "\"ok\"", good.agg.clone(), vec![]);
    assert_eq!(store.complete_windowed(P, &[windowed(&d, vec![seed], vec![], Some(T))], Some(i64::MAX), 1).await.unwrap(), applied(1));
    {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{prefix}:{{{P}}}:w:{W}:p:{T}");
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(&["c|\"bad\"", "1", "s|0|\"bad\"", "inf", "mn|0|\"bad\"", "not a number", "m|0|\"bad\"", "x"])
            .query_async(&mut c)
            .await
            .unwrap();
        let sketch = format!("{prefix}:{{{P}}}:w:{W}:h:{T}:0:\"bad\"");
        let _: () = redis::cmd("SET").arg(&sketch).arg("not a HyperLogLog").query_async(&mut c).await.unwrap();
    }
    bad_row_is_read_as_missing(&store, good).await;
    drop(store);
    common::cleanup_redis(url, prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_backend_bad_pane_row_is_read_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let good = row(T, "\"ok\"", pa(1, vec![fa(1, 4.0, Some(4.0), Some(4.0), 0)]));
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let d = deliver(&store, P, "seed").await;
        let seed = delta(W, T, "\"ok\"", good.agg.clone(), vec![]);
        assert_eq!(store.complete_windowed(P, &[windowed(&d, vec![seed], vec![], Some(T))], Some(i64::MAX), 1).await.unwrap(), applied(1));
    }
    {
        // What an infinite sum used to be stored as: `null`.
        const PANES: redb::TableDefinition<(&str, &str, i64, &str), &[u8]> = redb::TableDefinition::new("window_panes");
        let db = redb::Database::create(dir.path().join("sluice.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(PANES)
            .unwrap()
            .insert((P, W, T, "\"bad\""), br#"{"count":1,"fields":[{"n":1,"sum":null,"min":null,"max":null,"missing":0}]}"#.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    bad_row_is_read_as_missing(&store, good).await;
}
